"""What a local run prints: its own progress, and nothing of the machinery under it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import local_run, write_job

pytestmark = pytest.mark.e2e


def test_a_run_with_a_failed_execution_prints_no_warnings_or_interpreter_dumps_and_names_a_skipped_file(
    inbox: Path, tmp_path: Path
) -> None:
    """Given a job Segmind fails (its execution runs the failure branch after task errors), a job that
    succeeds, and `Upper.JSON`, which the bucket's rule does not pick up
    When they are run locally
    Then the console shows neither Powertools' "No application metrics" warning nor moto's interpreter
    errors, and says it skipped Upper.JSON, which starts no job."""
    write_job(inbox, "ok.json", {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": "Fine",
                                 "script": "This one works."}, photo="face.png")  # fmt: skip
    write_job(inbox, "bad.json", {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": "Broken",
                                  "script": "This one fails."})  # fmt: skip
    (inbox / "Upper.JSON").write_text("{}")
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"rules": [{"endpoint": "status", "fault": "failed", "title_pattern": "^Broken"}]}))

    result = local_run(inbox, tmp_path / "out", "--time-scale", "0.01", "--faults", str(faults))

    assert result.exit_code == 0, result.stderr[-3000:]
    assert result.summary["counts"] == {**result.summary["counts"], "succeeded": 1, "failed": 1, "jobs": 2}
    console = result.stdout + result.stderr
    assert "No application metrics" not in console
    assert "moto.stepfunctions" not in console
    assert "Exception=" not in console
    assert "Traceback" not in console
    assert "skipped inbox/Upper.JSON" in result.stdout
