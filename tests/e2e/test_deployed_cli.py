"""`avatar-pipeline submit | status | logs` against a stack: the offline stack is a real
CloudFormation stack (in moto), found by name through its outputs, as on AWS."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from avatar_local.cli import main
from avatar_local.stack.runner import LocalPipeline, LocalRunConfig

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(*argv: str) -> tuple[int, str]:
    console = io.StringIO()
    code = main(list(argv), console=console)
    return code, console.getvalue()


def test_submit_wait_status_and_logs_against_a_stack() -> None:
    with LocalPipeline(LocalRunConfig(time_scale=0.01)):
        code, out = run(
            "submit", str(EXAMPLES / "alice.png"), "--script", "Hello from the command line.",
            "--prefix", "cli", "--stack", "avatar-pipeline", "--wait", "--timeout", "90",
        )  # fmt: skip
        assert code == 0, out
        assert "uploaded 2 file(s); the job file is s3://" in out
        assert "SUCCEEDED" in out
        video_line = next(line for line in out.splitlines() if line.startswith("video: s3://"))
        assert video_line.endswith("/videos/cli/alice.mp4")
        job_id = next(word for word in out.split() if word.startswith("job-")).rstrip(":")

        code, table = run("status", "--recent", "5", "--stack", "avatar-pipeline")
        assert code == 0
        header, *rows = table.splitlines()
        assert header.split()[:3] == ["JOB", "ID", "STATUS"]
        assert any(job_id in row and "SUCCEEDED" in row and "inbox/cli/alice.json" in row for row in rows)
        # Segmind's own metrics.cost (the emulator's 1.00 for Avatar IV), not the $2.20 estimate.
        assert "COST" in header
        assert any(job_id in row and "$1.00" in row and "est." not in row for row in rows)

        code, one = run("status", job_id, "--stack", "avatar-pipeline")
        assert code == 0
        assert job_id in one

        code, history = run("logs", job_id, "--stack", "avatar-pipeline")
        assert code == 0
        assert "received inbox/cli/alice.json" in history
        assert "state CheckRenderStatus" in history
        assert "state FinalizeVideo" in history
        assert "SUCCEEDED outputs: videos/cli/alice.mp4" in history
        assert "cost $1.00" in history

        # A job file with its media, without waiting.
        code, out = run("submit", str(EXAMPLES / "welcome.json"), "--prefix", "cli2", "--stack", "avatar-pipeline")
        assert code == 0
        assert "uploaded 2 file(s)" in out


def test_bad_usage_is_exit_2_with_the_reason() -> None:
    with pytest.raises(SystemExit) as exited:
        run("submit", str(EXAMPLES / "alice.png"), "--input-bucket", "b", "--output-bucket", "o", "--jobs-table", "t")
    assert exited.value.code == 2
