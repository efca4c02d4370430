"""The local tools' one reading of job records and one waiting loop (avatar_local/job_records.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from avatar_local.job_records import latest_per_job_file, newest_since, wait_until
from avatar_pipeline.records import JobRecord, JobStatus

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def record(job_id: str, job_key: str, minutes: int, status: JobStatus = JobStatus.RENDERING) -> JobRecord:
    at = T0 + timedelta(minutes=minutes)
    return JobRecord(
        job_id=job_id, status=status, input_bucket="in", job_key=job_key, received_at=at, updated_at=at, expires_at=0
    )


def test_the_latest_record_of_each_job_file_is_the_last_received() -> None:
    """Given two uploads of one job file and another job file, read in any order
    When the latest per job file is taken
    Then the re-upload (received later) stands for its key."""
    older, newer, other = (
        record("a1", "inbox/a.json", 0),
        record("a2", "inbox/a.json", 5),
        record("b", "inbox/b.json", 1),
    )

    latest = latest_per_job_file([newer, other, older])

    assert {key: r.job_id for key, r in latest.items()} == {"inbox/a.json": "a2", "inbox/b.json": "b"}


def test_newest_since_ignores_records_received_before() -> None:
    records = [record("old", "inbox/a.json", 0), record("mid", "inbox/a.json", 3), record("new", "inbox/a.json", 4)]

    assert newest_since(records, T0 + timedelta(minutes=1)) == records[2]
    assert newest_since(records, T0 + timedelta(minutes=10)) is None


def test_wait_until_returns_the_first_true_answer() -> None:
    """Given a check that answers on its third call
    When waited for without a deadline
    Then its answer comes back, after exactly three calls."""
    answers = iter([None, None, "done"])
    calls: list[int] = []

    def check() -> str | None:
        calls.append(1)
        return next(answers)

    assert wait_until(check, interval=0, give_up=lambda: False) == "done"
    assert len(calls) == 3


def test_wait_until_gives_up_after_a_false_answer() -> None:
    """Given a check that never answers and a give_up that says so at once
    When waited for
    Then the check was still asked once, and the wait ends with None."""
    calls: list[int] = []

    def check() -> bool:
        calls.append(1)
        return False

    assert wait_until(check, interval=0, give_up=lambda: True) is None
    assert calls == [1]
