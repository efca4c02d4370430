"""The promises under sustained faults and in ordinary folder layouts, through `avatar-pipeline local run`.

Each case here was a reproduced defect: a job lost to the DLQ after five submit 500s in a row; a
finished (billed) render thrown away after six result 500s in a row; a photo shared across folders
moved from under the job that had not started yet; two jobs writing one video. One run holds them
all, every event delivered twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import RunResult, local_run, write_job
from tests.support.media import make_png

pytestmark = pytest.mark.e2e


def avatar_iv(title: str, photo: str, **extra: Any) -> dict[str, Any]:
    return {"model": "heygen-avatar-iv", "photo": photo, "video_title": title, "script": f"This is {title}."} | extra


FAULTS = [
    # 1. A few minutes of outage on one job's submit: retried, not dead-lettered.
    {"endpoint": "submit", "fault": "http_500", "times": 5, "title_pattern": "^outage$"},
    # ... and an outage longer than SubmitRetryMinutes (30): the job ends, never accepted.
    {"endpoint": "submit", "fault": "http_502", "times": 1000, "title_pattern": "^gone$"},
    # 2. Six 500s in a row on the result of a COMPLETED render.
    {"endpoint": "result", "fault": "http_500", "times": 6, "title_pattern": "^result$"},
    # 3. The job naming a shared photo from the folder above is held back by submit faults.
    {"endpoint": "submit", "fault": "http_500", "times": 2, "title_pattern": "^intro-late$"},
]


@pytest.fixture(scope="module")
def promises_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    inbox = tmp_path_factory.mktemp("promises") / "inbox"
    inbox.mkdir()
    write_job(inbox, "outage/outage.json", avatar_iv("outage", "face.png"), photo="face.png")
    write_job(inbox, "gone/gone.json", avatar_iv("gone", "face.png"), photo="face.png")
    write_job(inbox, "result/result.json", avatar_iv("result", "face.png"), photo="face.png")
    # 3. inbox/proj/intro.json names shared/alice.png; inbox/proj/shared/outro.json names alice.png (the
    # same object) and is invalid, so it ends first, at once.
    write_job(inbox, "proj/intro.json", avatar_iv("intro", "shared/alice.png"))
    write_job(inbox, "proj/shared/outro.json", avatar_iv("outro", "alice.png", fit="stretch"))
    (inbox / "proj/shared/alice.png").write_bytes(make_png(64, 64))
    # ... and the same layout where both are valid and intro's submit is held back by two 500s.
    write_job(inbox, "late/intro.json", avatar_iv("intro-late", "shared/bob.png"))
    write_job(inbox, "late/shared/outro.json", avatar_iv("outro-late", "bob.png"))
    (inbox / "late/shared/bob.png").write_bytes(make_png(64, 64))
    # 4. Two job files with the same output_key; an .mp4 and a .webm job with the same stem.
    for name in ("first", "second"):
        write_job(
            inbox, f"same/{name}.json", avatar_iv(name, "face.png", output_key="clips/same.mp4"), photo="face.png"
        )
    write_job(inbox, "stem/mp4.json", {"model": "heygen-avatar-v", "prompt": "One.", "output_key": "stems/x.mp4"})
    write_job(
        inbox,
        "stem/webm.json",
        {"model": "heygen-avatar-v", "prompt": "Two.", "output_format": "webm", "output_key": "stems/x.webm"},
    )
    # 7. URLs the user gave, with query strings (a presigned URL is a credential).
    write_job(
        inbox,
        "urls/twin.json",
        {
            "model": "heygen-avatar-v",
            "prompt": "A digital twin.",
            "video_url": "https://footage.example.com/me.mp4?X-Amz-Signature=s3cr3t&X-Amz-Credential=AKIA",
            "background": "https://images.example.com/bg.png?token=hunter2",
        },
    )
    faults = inbox.parent / "faults.json"
    faults.write_text(json.dumps(FAULTS))
    return local_run(
        inbox,
        tmp_path_factory.mktemp("promises-out"),
        "--faults",
        str(faults),
        "--duplicate-events",
        "2",
        "--time-scale",
        "0.01",
        "--timeout",
        "240",
        timeout=300,
    )


def outcome(run: RunResult, key: str) -> tuple[str, str | None]:
    job = run.job(key)
    return job["status"], job["error_code"]


def report(run: RunResult, path: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((run.out / "inputs" / path).read_text())
    return data


def test_every_job_ends_with_one_notification_and_nothing_reaches_the_dlq(promises_run: RunResult) -> None:
    assert promises_run.exit_code == 0, promises_run.stderr[-3000:]
    summary = promises_run.summary
    assert summary["counts"]["pending"] == 0
    assert summary["counts"]["dead_letters"] == 0
    for job in summary["jobs"]:
        assert job["notifications"] == 1, job
        assert job["provider_submits"] <= 1, job
    inbox_left = [p for p in (promises_run.out / "inputs" / "inbox").rglob("*") if p.is_file()]
    assert inbox_left == []


def test_five_submit_500s_in_a_row_are_waited_out(promises_run: RunResult) -> None:
    """Case 1: the job used to stay SUBMITTING forever, its event in the DLQ."""
    assert outcome(promises_run, "inbox/outage/outage.json") == ("SUCCEEDED", None)
    assert promises_run.job("inbox/outage/outage.json")["provider_submits"] == 1


def test_an_outage_longer_than_the_retry_time_ends_the_job_unbilled(promises_run: RunResult) -> None:
    assert outcome(promises_run, "inbox/gone/gone.json") == ("FAILED", "PROVIDER_UNAVAILABLE")
    assert promises_run.job("inbox/gone/gone.json")["provider_submits"] == 0
    error = report(promises_run, "failed/gone/gone.error.json")
    assert "never accepted" in error["error_message"]
    assert "nothing was billed" in error["what_to_do"]


def test_six_result_500s_after_completion_do_not_throw_the_render_away(promises_run: RunResult) -> None:
    """Case 2: the job used to end INTERNAL two minutes later, although Segmind keeps the result an hour."""
    assert outcome(promises_run, "inbox/result/result.json") == ("SUCCEEDED", None)
    assert (promises_run.out / "outputs/videos/result/result.mp4").stat().st_size > 0


def test_a_photo_shared_across_folders_stays_for_the_job_that_has_not_ended(promises_run: RunResult) -> None:
    """Case 3: outro (invalid) ended first and took alice.png to failed/; intro then failed MISSING_MEDIA."""
    assert outcome(promises_run, "inbox/proj/shared/outro.json") == ("FAILED", "INVALID_JOB")
    assert outcome(promises_run, "inbox/proj/intro.json") == ("SUCCEEDED", None)
    outro = report(promises_run, "failed/proj/shared/outro.error.json")
    assert "inbox/proj/shared/alice.png" not in outro["moved_inputs"]
    inputs = promises_run.out / "inputs"
    assert (inputs / "processed/proj/shared/alice.png").is_file()


def test_a_shared_photo_waits_for_a_sibling_held_back_by_submit_faults(promises_run: RunResult) -> None:
    assert outcome(promises_run, "inbox/late/shared/outro.json") == ("SUCCEEDED", None)
    assert outcome(promises_run, "inbox/late/intro.json") == ("SUCCEEDED", None)
    assert (promises_run.out / "inputs/processed/late/shared/bob.png").is_file()


def test_two_jobs_never_write_one_video(promises_run: RunResult) -> None:
    """Case 4: both used to succeed; the later one replaced the first video under the first's manifest."""
    results = sorted(outcome(promises_run, f"inbox/same/{name}.json") for name in ("first", "second"))
    assert results == [("FAILED", "OUTPUT_CONFLICT"), ("SUCCEEDED", None)]
    winner = next(
        j
        for j in promises_run.summary["jobs"]
        if j["input_key"].startswith("inbox/same/") and j["status"] == "SUCCEEDED"
    )
    loser = next(
        j for j in promises_run.summary["jobs"] if j["input_key"].startswith("inbox/same/") and j["status"] == "FAILED"
    )
    assert loser["provider_submits"] == 0
    manifest = json.loads((promises_run.out / "outputs/clips/same.json").read_text())
    assert manifest["job_id"] == winner["job_id"]
    assert manifest["video"]["size"] == (promises_run.out / "outputs/clips/same.mp4").stat().st_size


def test_an_mp4_and_a_webm_job_with_one_stem_do_not_share_a_manifest(promises_run: RunResult) -> None:
    results = sorted(outcome(promises_run, f"inbox/stem/{name}.json") for name in ("mp4", "webm"))
    assert results == [("FAILED", "OUTPUT_CONFLICT"), ("SUCCEEDED", None)]
    manifest = json.loads((promises_run.out / "outputs/stems/x.json").read_text())
    video = Path(manifest["outputs"]["video_key"])
    assert (promises_run.out / "outputs" / video).is_file()


def test_manifests_keep_user_urls_without_their_query_strings(promises_run: RunResult) -> None:
    """Case 7: a user's presigned URL is a credential; the manifest keeps where, not how."""
    assert outcome(promises_run, "inbox/urls/twin.json") == ("SUCCEEDED", None)
    text = (promises_run.out / "outputs/videos/urls/twin.json").read_text()
    parameters = json.loads(text)["parameters"]
    assert parameters["video_url"] == "https://footage.example.com/me.mp4"
    assert parameters["background"] == "https://images.example.com/bg.png"
    for secret in ("s3cr3t", "AKIA", "hunter2", "X-Amz-Signature", "token="):
        assert secret not in text
    notifications = (promises_run.out / "notifications.jsonl").read_text()
    assert "hunter2" not in notifications
    assert "s3cr3t" not in notifications
