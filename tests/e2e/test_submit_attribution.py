"""summary.json counts each job's accepted submits exactly, even when many jobs share a title (as
a campaign's rows usually do): a submit is the job's because the emulator recorded it for that job,
never because its title matches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import local_run, write_job
from tests.support.media import make_png

pytestmark = pytest.mark.e2e

TITLE = "Spring promo"
JOBS = 6


def test_jobs_sharing_a_title_each_report_their_own_submits(inbox: Path, tmp_path: Path) -> None:
    """Given six Avatar IV jobs with the same title, photo and script, one of whose submits Segmind accepts but never
    answers (so its request id is never recorded), and every event delivered three times, then each
    job reports exactly the one submit the emulator accepted for it, the unanswered one included, and
    the jobs' submits add up to the emulator's."""
    (inbox / "promo").mkdir()
    (inbox / "promo" / "face.png").write_bytes(make_png(64, 64))
    for n in range(JOBS):
        # Not even the payload tells them apart: one photo, one script, one title.
        write_job(
            inbox,
            f"promo/row-{n}.json",
            {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": TITLE, "script": "Spring is here."},
        )
    lost_answer = {"endpoint": "submit", "fault": "read_timeout", "times": 1, "delay_seconds": 7}
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"provider": {"rules": [{**lost_answer, "title_pattern": f"^{TITLE}$"}]}}))

    result = local_run(
        inbox, tmp_path / "out", "--faults", str(faults), "--duplicate-events", "3", "--time-scale", "0.01"
    )

    assert result.exit_code == 0, result.stderr[-3000:]
    jobs = result.summary["jobs"]
    outcomes = sorted((j["status"], j["error_code"]) for j in jobs)
    assert outcomes == [("FAILED", "INTERNAL")] + [("SUCCEEDED", None)] * (JOBS - 1)
    assert [j["provider_submits"] for j in jobs] == [1] * JOBS
    assert result.summary["provider"]["submits_accepted"] == JOBS
