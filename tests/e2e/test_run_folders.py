"""`local demo` and `local run` with the folders people actually pass: they never delete what they
did not write, never upload their own output, and never mix two runs in one `--out`."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatar_local.run_folder import MARKER
from tests.e2e.conftest import local_run, run_cli, write_job

pytestmark = pytest.mark.e2e


def test_the_demo_refuses_a_folder_it_did_not_write_and_leaves_it_alone(tmp_path: Path) -> None:
    """Case 5: `local demo --out DIR` deleted DIR with all it held, without a word."""
    precious = tmp_path / "holiday"
    precious.mkdir()
    (precious / "photo.jpg").write_bytes(b"not ours")

    done = run_cli("local", "demo", "--out", str(precious), timeout=120)

    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "did not write" in done.stderr
    assert "Traceback" not in done.stderr
    assert [p.name for p in precious.iterdir()] == ["photo.jpg"]


def test_a_run_in_the_current_folder_twice_uploads_only_the_jobs(tmp_path: Path) -> None:
    """Case 6: `local run --inbox . --out out` uploaded its own output on the second run (a job file in
    out/inputs/processed/ became a job again: a second billed submit), and a reused --out kept the
    first run's videos beside the new summary. A file of the user's in --out stays."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    write_job(
        workspace,
        "hello.json",
        {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": "Hello", "script": "Hello."},
        photo="face.png",
    )
    out = workspace / "out"
    first = local_run(workspace, out, "--time-scale", "0.01")
    assert first.exit_code == 0, first.stderr[-3000:]
    assert (out / MARKER).is_file()
    (out / "my-notes.txt").write_text("mine")
    (out / "outputs" / "stale.mp4").write_bytes(b"from the first run")

    (workspace / "hello.json").rename(workspace / "again.json")
    second = local_run(workspace, out, "--time-scale", "0.01")

    assert second.exit_code == 0, second.stderr[-3000:]
    assert [job["input_key"] for job in second.summary["jobs"]] == ["inbox/again.json"]
    assert second.summary["provider"]["submits_accepted"] == 1
    outputs = sorted(p.relative_to(out / "outputs").as_posix() for p in (out / "outputs").rglob("*") if p.is_file())
    assert outputs == ["videos/again.json", "videos/again.mp4"]
    assert (out / "my-notes.txt").read_text() == "mine"


def test_an_out_folder_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    write_job(inbox, "a.json", {"model": "heygen-avatar-v", "prompt": "Hi."})
    target = tmp_path / "results.txt"
    target.write_text("keep me")

    done = local_run(inbox, target, timeout=120)

    assert done.exit_code == 2
    assert "is a file" in done.stderr
    assert target.read_text() == "keep me"
