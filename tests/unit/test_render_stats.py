"""What the poll policy learns, persisted per render class (adapters/render_stats.py), against moto
DynamoDB; and the poll step teaching it at each completion (domain/poll.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from avatar_pipeline.adapters.render_stats import RenderStatsTable, VersionedStats
from avatar_pipeline.domain.poll import check_status
from avatar_pipeline.domain.poll_policy import PollPolicy, PollSchedule, RenderStats, poll_schedule
from avatar_pipeline.domain.ports import PollPorts
from avatar_pipeline.provider.wire import StatusReport
from avatar_pipeline.state import RenderState
from tests.support import TEST_REGION
from tests.support.events import load_event
from tests.support.fakes import FakeClock, FakeJobStore, FakeProvider

pytestmark = pytest.mark.unit

TABLE = "avatar-pipeline-state"
CLASS = "heygen-avatar-iv#720p"
NOW = datetime(2026, 11, 21, 10, 2, 30, tzinfo=UTC)


@pytest.fixture
def stats_table() -> Iterator[RenderStatsTable]:
    """Given the pipeline state table (key `pk`, string) in moto."""
    with mock_aws():
        boto3.client("dynamodb", region_name=TEST_REGION).create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield RenderStatsTable(TABLE)


def stored_item(render_class: str = CLASS) -> dict[str, Any]:
    table = boto3.resource("dynamodb", region_name=TEST_REGION).Table(TABLE)
    return dict(table.get_item(Key={"pk": f"render-stats#{render_class}"})["Item"])


def assert_close(actual: RenderStats, expected: RenderStats) -> None:
    """Stored numbers keep nine decimals."""
    assert actual.observations == expected.observations
    assert actual.log_mean == pytest.approx(expected.log_mean, abs=1e-8)
    assert actual.log_var == pytest.approx(expected.log_var, abs=1e-8)


def test_nothing_learned_yet_means_the_prior(stats_table: RenderStatsTable) -> None:
    assert stats_table.get(CLASS) == RenderStats.prior()


def test_a_recorded_render_is_what_the_next_reader_sees(stats_table: RenderStatsTable) -> None:
    """Given no stats for a class
    When a 150 s render is recorded
    Then readers get the prior updated by that one observation, stored at version 1 with a
    readable median."""
    written = stats_table.record(CLASS, 150.0, NOW)

    expected = RenderStats.prior().observe(150.0)
    assert written == expected
    assert_close(stats_table.get(CLASS), expected)
    item = stored_item()
    assert item["version"] == 1
    assert item["observations"] == 1
    assert float(item["median_seconds"]) == pytest.approx(expected.median_seconds)
    assert item["updated_at"] == "2026-11-21T10:02:30.000Z"


def test_every_record_folds_in_one_observation(stats_table: RenderStatsTable) -> None:
    expected = RenderStats.prior()
    for seconds in (120.0, 180.0, 95.5, 141.0):
        stats_table.record(CLASS, seconds, NOW)
        expected = expected.observe(seconds)

    learned = stats_table.get(CLASS)
    assert learned.observations == 4
    assert learned.log_mean == pytest.approx(expected.log_mean)
    assert learned.log_var == pytest.approx(expected.log_var)
    assert stored_item()["version"] == 4


def test_classes_are_learned_separately(stats_table: RenderStatsTable) -> None:
    stats_table.record("heygen-avatar-v#4k", 600.0, NOW)

    assert stats_table.get(CLASS) == RenderStats.prior()
    assert stats_table.get("heygen-avatar-v#4k").median_seconds > RenderStats.prior().median_seconds


class RacingStatsTable(RenderStatsTable):
    """Lets another writer record between this writer's read and its conditional write, once."""

    def __init__(self, table_name: str, rival: RenderStatsTable, rival_seconds: float) -> None:
        super().__init__(table_name)
        self.rival, self.rival_seconds, self.raced = rival, rival_seconds, False

    def load(self, render_class: str) -> VersionedStats:
        seen = super().load(render_class)
        if not self.raced:
            self.raced = True
            self.rival.record(render_class, self.rival_seconds, NOW)
        return seen


@pytest.mark.parametrize("existing", [False, True])
def test_concurrent_completions_do_not_lose_an_update(stats_table: RenderStatsTable, existing: bool) -> None:
    """Given two completions of the same class recorded at the same time (the rival writes between
    our read and our write), on a new item or an existing one
    When both are recorded
    Then both observations are in the stats: the loser of the conditional write read again."""
    if existing:
        stats_table.record(CLASS, 140.0, NOW)
    before = stats_table.get(CLASS)
    racing = RacingStatsTable(TABLE, rival=stats_table, rival_seconds=300.0)

    racing.record(CLASS, 100.0, NOW)

    learned = stats_table.get(CLASS)
    assert learned.observations == before.observations + 2
    assert learned.log_mean == pytest.approx(before.observe(300.0).observe(100.0).log_mean)


def test_an_unreachable_table_degrades_to_the_prior_without_failing() -> None:
    """Given a table that does not exist (or DynamoDB refusing)
    When stats are read and a render is recorded
    Then reading gives the prior and recording is dropped: learning never fails a job."""
    with mock_aws():
        missing = RenderStatsTable("no-such-table")
        assert missing.get(CLASS) == RenderStats.prior()
        assert missing.record(CLASS, 150.0, NOW) is None


# --- the poll step teaches it -----------------------------------------------------------------------


class StatusScript(FakeProvider):
    """Segmind answering every status check with one report."""

    def __init__(self, status: str, metrics: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.report = StatusReport(status=status, metrics=metrics or {})

    def status(self, request_id: str) -> StatusReport:
        self.calls["status"] += 1
        return self.report


def poll_state(wait_seconds: int = 10, polls: int = 7) -> RenderState:
    event = load_event("poll_state.json")
    event["poll"].update({"status": "PROCESSING", "wait_seconds": wait_seconds, "polls": polls})
    return RenderState.model_validate(event)


def ports_at(
    elapsed: float,
    provider: StatusScript,
    stats: RenderStatsTable | None = None,
    schedule: PollSchedule | None = None,
) -> PollPorts:
    """The poll step's ports `elapsed` seconds after submission (a job with no record: nothing to update)."""
    clock = FakeClock(poll_state().job.submitted_at + timedelta(seconds=elapsed))
    return PollPorts(
        clock=clock, provider=provider, jobs=FakeJobStore(), schedule=schedule or PollPolicy(), render_stats=stats
    )


def test_a_completed_check_teaches_the_render_time_without_the_detection_delay(
    stats_table: RenderStatsTable,
) -> None:
    """Given a 720p Avatar IV render (events/poll_state.json) seen COMPLETED 150 s after submission,
    10 s after the previous check, with no provider timings
    When the poll step runs with the stats store
    Then 145 s is learned for heygen-avatar-iv#720p (the middle of the last interval)."""
    check_status(poll_state(wait_seconds=10), ports_at(150, StatusScript("COMPLETED"), stats_table))

    assert_close(stats_table.get(CLASS), RenderStats.prior().observe(145.0))


def test_after_deferred_checks_the_render_is_learned_from_the_last_check_that_looked(
    stats_table: RenderStatsTable,
) -> None:
    """Given a render last checked (PROCESSING) 100 s after submission, whose next checks were then
    deferred by the request budget (the last wait was only 4 s)
    When a check at 150 s sees it COMPLETED, with no provider timings
    Then 125 s is learned (the middle of 100-150 s), not 148 s (the middle of the last 4 s wait)."""
    state = poll_state(wait_seconds=4)
    state.poll.last_checked_at = state.job.submitted_at + timedelta(seconds=100)

    check_status(state, ports_at(150, StatusScript("COMPLETED"), stats_table))

    assert_close(stats_table.get(CLASS), RenderStats.prior().observe(125.0))


def test_a_check_that_reaches_segmind_records_when_it_looked(stats_table: RenderStatsTable) -> None:
    ports = ports_at(150, StatusScript("PROCESSING"), stats_table)

    after = check_status(poll_state(), ports)

    assert after.poll.last_checked_at == ports.clock.now()


def test_the_providers_total_time_is_learned_when_it_reports_one(stats_table: RenderStatsTable) -> None:
    provider = StatusScript("COMPLETED", {"total_time": 138.2, "inference_time": 120.0, "queue_time": 18.2})

    check_status(poll_state(wait_seconds=10), ports_at(150, provider, stats_table))

    assert stats_table.get(CLASS).median_seconds == pytest.approx(RenderStats.prior().observe(138.2).median_seconds)


@pytest.mark.parametrize("status", ["QUEUED", "PROCESSING", "FAILED"])
def test_only_completions_are_learned(stats_table: RenderStatsTable, status: str) -> None:
    """Given a check that finds the render still running, or FAILED (failures take their own time)
    When the poll step runs
    Then nothing is recorded."""
    check_status(poll_state(), ports_at(150, StatusScript(status), stats_table))

    assert stats_table.get(CLASS) == RenderStats.prior()


def test_the_next_wait_comes_from_what_was_learned(stats_table: RenderStatsTable) -> None:
    """Given renders of this class known to take about 420 s
    When a check at 150 s finds it still processing
    Then the next wait is the policy's for those stats: minutes, to their first check point, where
    the prior would check again within seconds."""
    for _ in range(60):
        stats_table.record(CLASS, 420.0, NOW)
    learned = stats_table.get(CLASS)
    assert learned.median_seconds == pytest.approx(420, rel=0.05)

    after = check_status(poll_state(), ports_at(150, StatusScript("PROCESSING"), stats_table))

    policy = PollPolicy()
    assert after.poll.wait_seconds == policy.next_wait_seconds(150, 2700 - 150, 10, learned)
    assert after.poll.wait_seconds > 60
    assert policy.next_wait_seconds(150, 2700 - 150, 10, RenderStats.prior()) <= 11


def test_without_a_stats_store_the_prior_decides(stats_table: RenderStatsTable) -> None:
    """Given the current call sites (functions/poll/app.py passes no stats store)
    When a check at 150 s finds the render processing
    Then the prior's schedule applies and nothing is written."""
    after = check_status(poll_state(), ports_at(150, StatusScript("PROCESSING")))

    assert after.poll.wait_seconds == PollPolicy().next_wait_seconds(150, 2700 - 150, 10, RenderStats.prior())
    assert stats_table.get(CLASS) == RenderStats.prior()


def test_a_fixed_interval_schedule_checks_every_n_seconds_whatever_was_learned(
    stats_table: RenderStatsTable,
) -> None:
    """Given renders known to take about 420 s, and the fixed 2 s schedule (POLL_FIXED_INTERVAL_SECONDS=2)
    When a check at 150 s finds the render processing
    Then the next check comes 2 s later (the adaptive policy would wait minutes), and the completion
    is still learned, so switching back to the adaptive schedule starts informed."""
    for _ in range(60):
        stats_table.record(CLASS, 420.0, NOW)

    after = check_status(poll_state(), ports_at(150, StatusScript("PROCESSING"), stats_table, poll_schedule(2)))
    check_status(after, ports_at(152, StatusScript("COMPLETED"), stats_table, poll_schedule(2)))

    assert after.poll.wait_seconds == 2
    assert stats_table.get(CLASS).observations == 61
