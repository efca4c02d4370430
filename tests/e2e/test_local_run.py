"""`avatar-pipeline local run`: real handlers, the real ASL in moto, the emulator over real HTTP."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from avatar_local.media_probe import probe
from tests.e2e.conftest import local_run, run_cli, write_job

pytestmark = pytest.mark.e2e


def test_both_models_with_captions_and_webm(inbox: Path, tmp_path: Path) -> None:
    """Given an Avatar IV photo job, an Avatar V job with captions and an Avatar V WebM job,
    when they are dropped together, then each ends SUCCEEDED with a playable video, captions and a
    manifest beside it, one notification, one provider submit, and its inputs in processed/."""
    write_job(
        inbox,
        "iv/hello.json",
        {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": "Hello", "script": "Hello from the photo."},
        photo="face.png",
    )
    write_job(
        inbox,
        "v/captioned.json",
        {"model": "heygen-avatar-v", "prompt": "Captions make videos accessible.", "caption": True},
    )
    write_job(
        inbox,
        "v/alpha.json",
        {"model": "heygen-avatar-v", "prompt": "A transparent background.", "output_format": "webm",
         "remove_background": True, "avatar": "Anja Office Front", "voice": "Daniel"},
    )  # fmt: skip
    out = tmp_path / "out"

    result = local_run(inbox, out, "--time-scale", "0.01")

    assert result.exit_code == 0, result.stderr[-3000:]
    summary = result.summary
    assert summary["counts"]["succeeded"] == 3, summary
    hello = result.job("inbox/iv/hello.json")
    assert hello["outputs"] == ["videos/iv/hello.mp4", "videos/iv/hello.json"]
    captioned = result.job("inbox/v/captioned.json")
    assert captioned["outputs"] == ["videos/v/captioned.mp4", "videos/v/captioned.srt", "videos/v/captioned.json"]
    assert "-->" in (out / "outputs/videos/v/captioned.srt").read_text()
    alpha = result.job("inbox/v/alpha.json")
    assert alpha["outputs"] == ["videos/v/alpha.webm", "videos/v/alpha.json"]
    for job in (hello, captioned, alpha):
        assert job["provider_submits"] == 1
        assert job["notifications"] == 1
    mp4 = probe(out / "outputs/videos/iv/hello.mp4")
    assert (mp4.video_codec, mp4.audio_codec) == ("h264", "aac")
    webm = probe(out / "outputs/videos/v/alpha.webm")
    assert webm.container == "webm"
    assert webm.video_codec in ("vp8", "vp9")
    manifest = json.loads((out / "outputs/videos/iv/hello.json").read_text())
    assert manifest["video"]["size"] == (out / "outputs/videos/iv/hello.mp4").stat().st_size
    inputs = sorted(p.relative_to(out / "inputs").as_posix() for p in (out / "inputs").rglob("*") if p.is_file())
    assert inputs == [
        "processed/iv/face.png",
        "processed/iv/hello.json",
        "processed/v/alpha.json",
        "processed/v/captioned.json",
    ]
    statuses = sorted(n["attributes"]["status"] for n in result.notifications())
    assert statuses == ["SUCCEEDED"] * 3


def test_a_batch_of_twenty_jobs_sharing_one_photo(inbox: Path, tmp_path: Path) -> None:
    """Given 20 jobs dropped at once that all use the same photo, then all 20 succeed, each posted
    once and notified once, and the shared photo leaves inbox/ only with the last of them."""
    (inbox / "team").mkdir()
    (inbox / "team" / "face.png").write_bytes((Path(__file__).parents[2] / "examples" / "alice.png").read_bytes())
    for n in range(20):
        write_job(
            inbox,
            f"team/clip-{n:02d}.json",
            {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": f"Clip {n}", "script": f"Clip {n}."},
        )
    out = tmp_path / "out"

    result = local_run(inbox, out, "--time-scale", "0.01", "--render-seconds", "60")

    assert result.exit_code == 0, result.stderr[-3000:]
    jobs = result.summary["jobs"]
    assert len(jobs) == 20
    assert {j["status"] for j in jobs} == {"SUCCEEDED"}
    assert {j["provider_submits"] for j in jobs} == {1}
    assert {j["notifications"] for j in jobs} == {1}
    assert result.summary["provider"]["submits_accepted"] == 20
    assert not (out / "inputs" / "inbox").exists()
    assert (out / "inputs" / "processed" / "team" / "face.png").is_file()


def test_bad_usage_exits_2(tmp_path: Path) -> None:
    done = run_cli("local", "run", "--inbox", str(tmp_path / "missing"), "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "is not a folder" in done.stderr


def test_timeout_exits_1_and_still_writes_a_summary(inbox: Path, tmp_path: Path) -> None:
    """Given a render far longer than the timeout, then the run stops at the timeout with exit 1
    and a summary that lists the job as not finished."""
    write_job(
        inbox,
        "slow.json",
        {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": "Slow", "script": "Slow."},
        photo="face.png",
    )
    out = tmp_path / "out"

    result = local_run(inbox, out, "--time-scale", "1", "--timeout", "4")

    assert result.exit_code == 1
    assert result.job("inbox/slow.json")["status"] == "PENDING"
