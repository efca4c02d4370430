"""Bad input through the offline stack: every case fails fast with its code, a report, one
notification, zero provider submits, its inputs moved out of inbox/, and nothing in the DLQ."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.e2e.conftest import RunResult, local_run
from tests.support.media import make_png

pytestmark = pytest.mark.e2e

PNG = make_png(16, 16)
WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40
IV = {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": "Bad", "script": "Hello."}
V = {"model": "heygen-avatar-v", "prompt": "Hello."}


@dataclass
class Case:
    name: str
    job: dict[str, Any] | bytes
    code: str
    files: dict[str, bytes] = field(default_factory=lambda: {"face.png": PNG})
    folder: str | None = None  # defaults to the case name

    @property
    def job_key(self) -> str:
        return f"inbox/{self.folder or self.name}/job.json"

    @property
    def named_files(self) -> set[str]:
        """Files beside the job that its photo/audio fields name (a broken job file names none)."""
        if isinstance(self.job, bytes):
            return set()
        named = {str(self.job[key]) for key in ("photo", "audio") if key in self.job}
        return named & set(self.files)


def iv(**changes: Any) -> dict[str, Any]:
    job = {**IV, **changes}
    return {k: v for k, v in job.items() if v is not None}


def v(**changes: Any) -> dict[str, Any]:
    job = {**V, **changes}
    return {k: v for k, v in job.items() if v is not None}


CASES = [
    # The file itself
    Case("malformed-json", b'{"model": "heygen-avatar-iv", ', "INVALID_JOB"),
    Case("trailing-comma", b'{"model": "heygen-avatar-v", "prompt": "hi",}', "INVALID_JOB"),
    Case("json-array", b'[{"model": "heygen-avatar-v", "prompt": "hi"}]', "INVALID_JOB"),
    Case("json-string", b'"heygen-avatar-v"', "INVALID_JOB"),
    Case("json-number", b"42", "INVALID_JOB"),
    Case("json-null", b"null", "INVALID_JOB"),
    Case("empty-file", b"", "INVALID_JOB"),
    Case("whitespace-only", b"   \n\t ", "INVALID_JOB"),
    Case("not-utf8", b"\xff\xfe{\x00}", "INVALID_JOB"),
    Case("over-64kb", json.dumps({**V, "metadata": {"x": "y" * 70_000}}).encode(), "INVALID_JOB"),
    # The model
    Case("model-missing", iv(model=None), "INVALID_JOB"),
    Case("model-unsupported", iv(model="heygen-avatar-vi"), "INVALID_JOB"),
    Case("unknown-key", iv(colour="blue"), "INVALID_JOB"),
    # Wrong types
    Case("title-not-string", iv(video_title=42), "INVALID_JOB"),
    Case("caption-string-bool", v(caption="yes"), "INVALID_JOB"),
    Case("enhance-string-bool", iv(enhance_custom_motion_prompt="true"), "INVALID_JOB"),
    Case("width-string", iv(width="640", height=360), "INVALID_JOB"),
    Case("metadata-list", iv(metadata=["a"]), "INVALID_JOB"),
    Case("remove-background-int", v(remove_background=1), "INVALID_JOB"),
    # Every enum violated
    Case("orientation", iv(video_orientation="square"), "INVALID_JOB"),
    Case("fit-iv", iv(fit="stretch"), "INVALID_JOB"),
    Case("resolution-iv", iv(resolution="8k"), "INVALID_JOB"),
    Case("aspect-ratio", v(aspect_ratio="21:9"), "INVALID_JOB"),
    Case("resolution-v", v(resolution="480p"), "INVALID_JOB"),
    Case("fit-v", v(fit="fill"), "INVALID_JOB"),
    Case("output-format", v(output_format="mov"), "INVALID_JOB"),
    # The seed's rules
    Case("width-without-height", iv(width=640), "INVALID_JOB"),
    Case("height-without-width", iv(height=360), "INVALID_JOB"),
    Case("width-out-of-range", iv(width=10_000, height=360), "INVALID_JOB"),
    Case("prompt-and-audio-url", v(audio_url="https://example.com/a.wav"), "INVALID_JOB"),
    Case("neither-prompt-nor-audio", v(prompt=None), "INVALID_JOB"),
    Case("no-script-no-audio", iv(script=None), "INVALID_JOB"),
    Case("photo-and-image-url", iv(image_url="https://example.com/a.png"), "INVALID_JOB"),
    Case("no-photo-no-image-url", iv(photo=None), "INVALID_JOB"),
    Case("image-url-plain-http", iv(photo=None, image_url="http://example.com/a.png"), "INVALID_JOB"),
    Case("over-long-script", iv(script="word " * 1001), "INVALID_JOB"),
    Case("empty-title", iv(video_title=""), "INVALID_JOB"),
    Case("unknown-voice-name-iv", iv(voice_id="Morgan Freeman"), "INVALID_JOB"),
    Case("unknown-voice-name-v", v(voice="Robot"), "INVALID_JOB"),
    Case("unknown-avatar", v(avatar="Nobody Sofa Front"), "INVALID_JOB"),
    Case("avatar-id-with-spaces", v(avatar_id="not an id"), "INVALID_JOB"),
    Case("background-junk", v(background="blue-ish"), "INVALID_JOB"),
    Case("metadata-over-2kb", iv(metadata={"notes": "x" * 3000}), "INVALID_JOB"),
    # Paths
    Case("output-key-traversal", iv(output_key="../escape.mp4"), "INVALID_JOB"),
    Case("output-key-absolute", iv(output_key="/root/escape.mp4"), "INVALID_JOB"),
    Case("output-key-wrong-extension", iv(output_key="clips/a.webm"), "INVALID_JOB"),
    Case("photo-traversal", iv(photo="../../secrets/face.png"), "INVALID_JOB"),
    Case("photo-absolute", iv(photo="/etc/passwd"), "INVALID_JOB"),
    # Media
    Case("photo-missing", iv(photo="never-uploaded.png"), "MISSING_MEDIA", files={}),
    Case("photo-is-html", iv(), "UNSUPPORTED_MEDIA", files={"face.png": b"<html><body>hi</body></html>"}),
    Case("photo-zero-bytes", iv(), "UNSUPPORTED_MEDIA", files={"face.png": b""}),
    Case("photo-gif", iv(photo="face.gif"), "UNSUPPORTED_MEDIA", files={"face.gif": b"GIF89a" + b"\x00" * 64}),
    Case("photo-oversized", iv(), "MEDIA_TOO_LARGE", files={"face.png": PNG + b"\x00" * (21 * 1024 * 1024)}),
    Case("audio-is-text", v(prompt=None, audio="talk.wav"), "UNSUPPORTED_MEDIA", files={"talk.wav": b"just text"}),
    Case("audio-zero-bytes", v(prompt=None, audio="talk.wav"), "UNSUPPORTED_MEDIA", files={"talk.wav": b""}),
    # Keys S3 URL-encodes in its events: the failure is still reported under the right names.
    Case("key-with-spaces", iv(fit="stretch"), "INVALID_JOB", folder="team a/draft 1"),
    Case("key-with-plus", iv(fit="stretch"), "INVALID_JOB", folder="c++/a+b"),
    Case("key-unicode", iv(fit="stretch"), "INVALID_JOB", folder="équipe/ünïcödé"),
    Case("key-percent", iv(fit="stretch"), "INVALID_JOB", folder="100%/50% off"),
]


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    inbox = tmp_path_factory.mktemp("bad") / "inbox"
    for case in CASES:
        folder = inbox / (case.folder or case.name)
        folder.mkdir(parents=True)
        body = case.job if isinstance(case.job, bytes) else json.dumps(case.job).encode()
        (folder / "job.json").write_bytes(body)
        for name, content in case.files.items():
            (folder / name).write_bytes(content)
    return local_run(inbox, tmp_path_factory.mktemp("bad-out"), "--time-scale", "0.01", "--timeout", "240")


def test_the_suite_is_large_enough_and_every_job_is_accounted_for(bad_run: RunResult) -> None:
    assert len(CASES) >= 40
    assert bad_run.exit_code == 0, bad_run.stderr[-3000:]
    summary = bad_run.summary
    assert sorted(j["input_key"] for j in summary["jobs"]) == sorted(c.job_key for c in CASES)
    assert summary["counts"]["failed"] == len(CASES)
    assert summary["counts"]["dead_letters"] == 0
    assert summary["provider"]["submits_accepted"] == 0
    assert summary["queue"]["errors"] == []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_bad_job_fails_fast_with_its_code_a_report_and_one_notification(bad_run: RunResult, case: Case) -> None:
    job = bad_run.job(case.job_key)
    assert (job["status"], job["error_code"]) == ("FAILED", case.code), job["error_message"]
    assert job["notifications"] == 1
    assert job["provider_submits"] == 0
    relative = case.job_key.removeprefix("inbox/")
    inputs = bad_run.out / "inputs"
    report = json.loads((inputs / "failed" / relative.replace(".json", ".error.json")).read_text())
    assert report["error_code"] == case.code
    assert report["what_to_do"]
    assert (inputs / "failed" / relative).is_file(), "the job file moves to failed/"
    assert not (inputs / case.job_key).exists(), "nothing stays in inbox/"
    folder = case.job_key.rsplit("/", 1)[0]
    for name in case.files:
        in_inbox = (inputs / folder / name).exists()
        if name in case.named_files:
            assert not in_inbox, f"{name} should have left inbox/ with its job"
            assert (inputs / "failed" / folder.removeprefix("inbox/") / name).is_file()
        else:
            # Nothing the pipeline can read names it: it is not the job's to move.
            assert in_inbox, f"{name} is named by no readable job and should stay where it is"
