"""The shared request budget (adapters/request_budget.py) against moto DynamoDB, its in-memory twin,
and the poll step spending it (domain/poll.py)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws

from avatar_pipeline.adapters.request_budget import RequestBudget
from avatar_pipeline.domain.poll import check_status
from avatar_pipeline.domain.poll_policy import PollPolicy
from avatar_pipeline.domain.ports import PollPorts
from avatar_pipeline.domain.ports import RequestBudget as PortBudget
from avatar_pipeline.domain.request_budget import BucketShape, Denied, Grant, InMemoryRequestBudget, RequestKind
from avatar_pipeline.domain.submit import retry_delay_for
from avatar_pipeline.errors import ProviderThrottled
from avatar_pipeline.provider.wire import StatusReport
from avatar_pipeline.state import RenderState
from tests.support import TEST_REGION
from tests.support.events import load_event
from tests.support.fakes import FakeClock, FakeJobStore, FakeProvider

pytestmark = pytest.mark.unit

TABLE = "avatar-pipeline-state"
T0 = datetime(2026, 11, 21, 10, 0, 0, 250_000, tzinfo=UTC)
RPM = 50  # burst 5, refill 45 a minute: one token every 60/45 s
INTERVAL = 60 / 45


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture
def state_table() -> Iterator[str]:
    """Given the pipeline state table (key `pk`, string) in moto."""
    with mock_aws():
        boto3.client("dynamodb", region_name=TEST_REGION).create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield TABLE


@pytest.fixture
def budget(state_table: str) -> RequestBudget:
    return RequestBudget(state_table, RPM)


def granted(decision: Grant | Denied) -> bool:
    return isinstance(decision, Grant)


# --- the shape ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("rpm", "burst", "reserve", "interval"), [(50, 5, 2.0, 60 / 45), (5, 1, 1.0, 15.0)])
def test_the_default_shape_keeps_any_minute_within_the_limit(
    rpm: int, burst: int, reserve: float, interval: float
) -> None:
    """Given a limit of 50 (pro) or 5 (free) requests a minute
    When the bucket is shaped
    Then burst + a minute of refill is exactly the limit, and submits keep a reserve for polls."""
    shape = BucketShape.for_limit(rpm)
    assert (shape.burst, shape.submit_reserve) == (burst, reserve)
    assert shape.interval_seconds == pytest.approx(interval)
    assert shape.burst + shape.refill_per_minute == rpm


@pytest.mark.parametrize(("rpm", "burst", "reserve"), [(1, None, None), (10, 10, None), (10, 0, None), (10, 2, -1)])
def test_impossible_shapes_are_refused(rpm: int, burst: int | None, reserve: float | None) -> None:
    with pytest.raises(ValueError, match="must"):
        BucketShape.for_limit(rpm, burst, reserve)


# --- the bucket in DynamoDB ----------------------------------------------------------------------


def test_a_fresh_bucket_grants_its_burst_then_asks_to_wait_one_interval(budget: RequestBudget) -> None:
    """Given an unused key
    When result fetches arrive all at once (the kind that may take every token)
    Then the first five (the burst) go out and the sixth waits for the next token, one interval."""
    decisions = [budget.try_acquire("result", at(0)) for _ in range(6)]

    assert [granted(d) for d in decisions] == [True] * 5 + [False]
    denied = decisions[-1]
    assert isinstance(denied, Denied)
    assert denied.retry_after_seconds == pytest.approx(INTERVAL, abs=1e-3)


def test_tokens_refill_with_elapsed_time(budget: RequestBudget) -> None:
    """Given an empty bucket
    When one interval passes
    Then exactly one more request may go."""
    for _ in range(5):
        budget.try_acquire("result", at(0))

    assert not granted(budget.try_acquire("result", at(INTERVAL - 0.01)))
    assert granted(budget.try_acquire("result", at(INTERVAL + 0.01)))
    assert not granted(budget.try_acquire("result", at(INTERVAL + 0.02)))


def test_a_long_idle_never_saves_up_more_than_the_burst(budget: RequestBudget) -> None:
    """Given a key idle for an hour
    When requests arrive at once
    Then still only the burst goes out: tokens never exceed the capacity."""
    budget.try_acquire("result", at(0))

    decisions = [budget.try_acquire("result", at(3600)) for _ in range(7)]

    assert sum(granted(d) for d in decisions) == 5


def test_no_sixty_seconds_ever_see_more_requests_than_the_limit(budget: RequestBudget) -> None:
    """Given callers asking twice a second for three minutes (polls and submits mixed), well over the
    bucket's 0.75 tokens a second
    When every grant is counted
    Then no 60 s window holds more than 50 grants, and the sustained rate is the refill (45 a minute)."""
    rng = random.Random(7)
    grants: list[float] = []
    for step in range(3 * 60 * 2):
        moment = step * 0.5
        kind: RequestKind = rng.choice(["poll", "poll", "submit", "result"])
        if granted(budget.try_acquire(kind, at(moment))):
            grants.append(moment)

    windows = [sum(1 for g in grants if start <= g < start + 60) for start in (i * 0.5 for i in range(2 * 120))]
    assert max(windows) <= RPM
    assert len(grants) == pytest.approx(5 + 45 * 3, abs=2)


def test_submits_leave_a_reserve_for_status_checks(budget: RequestBudget) -> None:
    """Given a bucket down to its reserve (2 of 5 tokens left)
    When a submit and then a status check ask
    Then the submit waits (it would dip into the reserve) and the check goes out."""
    for _ in range(3):
        assert granted(budget.try_acquire("poll", at(0)))

    submit = budget.try_acquire("submit", at(0))
    assert isinstance(submit, Denied)
    assert submit.retry_after_seconds == pytest.approx(INTERVAL, abs=1e-3)
    assert granted(budget.try_acquire("poll", at(0)))
    assert granted(budget.try_acquire("result", at(0)))


def test_status_checks_leave_the_last_token_to_result_fetches(budget: RequestBudget) -> None:
    """Given a bucket down to its last token (4 of 5 taken)
    When a status check and then a result fetch ask
    Then the check waits one interval and the fetch goes out: a finished render is not kept waiting
    (Finalize waits through the state machine's Retry, whose attempts are few)."""
    for _ in range(4):
        assert granted(budget.try_acquire("poll", at(0)))

    check = budget.try_acquire("poll", at(0))
    assert isinstance(check, Denied)
    assert check.retry_after_seconds == pytest.approx(INTERVAL, abs=1e-3)
    assert granted(budget.try_acquire("result", at(0)))


@pytest.mark.parametrize(("rpm", "tiers"), [(50, (3.0, 2.0, 1.0)), (20, (2.0, 1.0, 1.0)), (5, (2.0, 1.0, 1.0))])
def test_tokens_needed_by_kind(rpm: int, tiers: tuple[float, float, float]) -> None:
    """Submits need the most tokens in the bucket, result fetches the fewest; small buckets merge tiers."""
    shape = BucketShape.for_limit(rpm)
    assert tuple(shape.tokens_needed(kind) for kind in ("submit", "poll", "result")) == tiers


def test_submits_go_while_the_bucket_holds_more_than_the_reserve(budget: RequestBudget) -> None:
    decisions = [budget.try_acquire("submit", at(0)) for _ in range(4)]

    assert [granted(d) for d in decisions] == [True, True, True, False]


def test_a_reserve_above_the_burst_means_the_bucket_must_have_stood_full_a_while(state_table: str) -> None:
    """Given a free-tier key (5 a minute: burst 1, one token every 15 s) with a submit reserve of 1
    When a check takes the token, and submits ask as the bucket refills
    Then a submit waits until the bucket has been full for another interval: no check wanted it."""
    budget = RequestBudget(state_table, 5)
    assert granted(budget.try_acquire("poll", at(0)))

    assert not granted(budget.try_acquire("submit", at(15.5)))  # full again, but only just
    assert granted(budget.try_acquire("submit", at(30.5)))
    assert not granted(budget.try_acquire("poll", at(31)))


def test_writers_with_separate_clients_share_one_bucket(state_table: str) -> None:
    """Given two functions' adapters on the same table
    When both take tokens
    Then they draw from the same bucket."""
    poll_function, submit_function = RequestBudget(state_table, RPM), RequestBudget(state_table, RPM)

    grants = [granted(poll_function.try_acquire("result", at(0))) for _ in range(3)]
    grants += [granted(submit_function.try_acquire("result", at(0))) for _ in range(3)]

    assert grants == [True] * 5 + [False]


def test_a_writer_whose_clock_lags_sees_fewer_tokens_never_more(state_table: str) -> None:
    """Given a writer whose clock is 30 s behind the others
    When it asks right after the others emptied the bucket
    Then it is denied (the bucket's 'full again' time only moves forward), and waits longer."""
    on_time, lagging = RequestBudget(state_table, RPM), RequestBudget(state_table, RPM)
    for _ in range(5):
        on_time.try_acquire("poll", at(100))

    late = lagging.try_acquire("poll", at(70))

    assert isinstance(late, Denied)
    assert late.retry_after_seconds > 30


def test_a_writer_whose_clock_runs_ahead_cannot_exceed_the_capacity(state_table: str) -> None:
    """Given a writer whose clock is an hour ahead
    When it takes tokens
    Then it gets at most the burst, and the others then see an empty bucket."""
    ahead, on_time = RequestBudget(state_table, RPM), RequestBudget(state_table, RPM)

    assert sum(granted(ahead.try_acquire("result", at(3600))) for _ in range(8)) == 5
    assert not granted(on_time.try_acquire("result", at(0)))


def test_the_dynamodb_bucket_decides_exactly_as_its_in_memory_twin(budget: RequestBudget) -> None:
    """Given a random stream of requests of every kind
    When both buckets decide
    Then they agree on every grant (the benchmark's simulations use the twin)."""
    twin = InMemoryRequestBudget(BucketShape.for_limit(RPM))
    rng = random.Random(11)
    moment = 0.0
    for _ in range(150):
        moment += rng.expovariate(1.0)
        kind: RequestKind = rng.choice(["poll", "submit", "result"])
        assert granted(budget.try_acquire(kind, at(moment))) == granted(twin.try_acquire(kind, at(moment))), moment


def test_an_unreachable_table_fails_open() -> None:
    """Given DynamoDB refusing (here: no such table)
    When a request asks for a token
    Then it is granted: the provider's own 429 is still retried by the ASL and SQS."""
    with mock_aws():
        assert granted(RequestBudget("no-such-table", RPM).try_acquire("poll", at(0)))


# --- a denied submit waits in the queue -----------------------------------------------------------


def test_a_denied_submit_becomes_a_throttle_the_submit_handler_already_retries() -> None:
    """Given a submit denied for 1.3 s
    When it is turned into an error
    Then it is ProviderThrottled with a reset time, so Submit releases its lease and SQS redelivers it
    after the delay `retry_delay_for` derives from it."""
    error = Denied("submit", 1.3).as_error(T0)

    assert isinstance(error, ProviderThrottled)
    assert error.reset_at == T0 + timedelta(seconds=2)
    assert retry_delay_for(error, T0) == 3
    assert "request budget" in error.message


def test_denied_submits_come_back_spread_out() -> None:
    """Given 200 submits denied at the same moment
    When each is turned into an error with the job id as spread key (spread up to 110 s)
    Then their redeliveries are spread over the whole range, deterministically, within SQS's 120 s cap."""
    delays = [
        retry_delay_for(Denied("submit", 1.3).as_error(T0, f"job-{i}", spread_seconds=110), T0) for i in range(200)
    ]
    again = [
        retry_delay_for(Denied("submit", 1.3).as_error(T0, f"job-{i}", spread_seconds=110), T0) for i in range(200)
    ]

    assert delays == again
    assert all(d is not None and 3 <= d <= 120 for d in delays)
    assert len(set(delays)) > 80


# --- the poll step spends it ----------------------------------------------------------------------


class CountingProvider(FakeProvider):
    def __init__(self, status: str = "PROCESSING") -> None:
        super().__init__()
        self.status_value = status

    def status(self, request_id: str) -> StatusReport:
        self.calls["status"] += 1
        return StatusReport(status=self.status_value)


class RecordingJobs(FakeJobStore):
    def __init__(self) -> None:
        super().__init__()
        self.polls: list[tuple[str, int]] = []

    def record_poll(self, job_id: str, provider_status: str, status_calls: int, now: datetime) -> None:
        self.polls.append((provider_status, status_calls))


class SpentBudget:
    def __init__(self, retry_after: float = 1.3) -> None:
        self.retry_after, self.asked = retry_after, 0

    def try_acquire(self, kind: RequestKind, now: datetime) -> Grant | Denied:
        self.asked += 1
        return Denied(kind, self.retry_after)


def poll_state() -> RenderState:
    event = load_event("poll_state.json")
    event["poll"].update({"status": "PROCESSING", "wait_seconds": 9, "polls": 6})
    return RenderState.model_validate(event)


def ports(
    now: datetime, provider: CountingProvider, jobs: RecordingJobs, budget: PortBudget | None = None
) -> PollPorts:
    return PollPorts(clock=FakeClock(now), provider=provider, jobs=jobs, schedule=PollPolicy(), budget=budget)


def test_a_check_denied_by_the_budget_does_not_call_the_provider() -> None:
    """Given a render 150 s in and a spent budget
    When the poll step runs
    Then Segmind is not asked, the job record is untouched, and the same state comes back with a
    short wait (at least the time to the next token), so the ASL loops once more."""
    state, provider, jobs = poll_state(), CountingProvider(), RecordingJobs()
    now = state.job.submitted_at + timedelta(seconds=150)

    after = check_status(state, ports(now, provider, jobs, budget=SpentBudget(retry_after=1.3)))

    assert provider.calls["status"] == 0
    assert jobs.polls == []
    assert after.poll.status == "PROCESSING"
    assert after.poll.polls == 6
    assert after.poll.deadline_passed is False
    assert 2 <= after.poll.wait_seconds <= 2 + 11
    assert after.job == state.job


def test_deferred_checks_of_different_jobs_come_back_at_different_times() -> None:
    waits = set()
    for i in range(30):
        event: dict[str, Any] = load_event("poll_state.json")
        event["job"]["job_id"] = f"job-{i}"
        state = RenderState.model_validate(event)
        now = state.job.submitted_at + timedelta(seconds=150)
        after = check_status(state, ports(now, CountingProvider(), RecordingJobs(), budget=SpentBudget()))
        waits.add(after.poll.wait_seconds)
    assert len(waits) >= 5


@pytest.mark.parametrize("remaining", [0.4, 0.999])
def test_a_check_denied_in_the_last_second_ends_the_loop_at_the_deadline(remaining: float) -> None:
    """Given a spent budget and less than a second to the deadline
    When the poll step runs
    Then the deadline counts as passed (no whole-second wait fits before it)."""
    state = poll_state()
    now = state.job.deadline_at - timedelta(seconds=remaining)

    after = check_status(state, ports(now, CountingProvider(), RecordingJobs(), budget=SpentBudget()))

    assert after.poll.deadline_passed is True


def test_a_deferred_wait_never_ends_after_the_deadline() -> None:
    state = poll_state()
    now = state.job.deadline_at - timedelta(seconds=3.5)

    after = check_status(state, ports(now, CountingProvider(), RecordingJobs(), budget=SpentBudget(30)))

    assert now + timedelta(seconds=after.poll.wait_seconds) <= state.job.deadline_at


def test_a_granted_check_asks_the_provider_once(budget: RequestBudget) -> None:
    state, provider, jobs = poll_state(), CountingProvider(), RecordingJobs()
    now = state.job.submitted_at + timedelta(seconds=150)

    after = check_status(state, ports(now, provider, jobs, budget=budget))

    assert provider.calls["status"] == 1
    assert jobs.polls == [("PROCESSING", 7)]
    assert after.poll.polls == 7


@pytest.mark.parametrize("remaining", [0.3, 0.999])
def test_a_render_still_running_in_the_last_second_has_passed_its_deadline(remaining: float) -> None:
    """Given a check less than a whole second before the deadline that finds the render processing
    When the poll step runs
    Then the deadline counts as passed now, instead of one more check after it."""
    state = poll_state()
    now = state.job.deadline_at - timedelta(seconds=remaining)

    after = check_status(state, ports(now, CountingProvider(), RecordingJobs()))

    assert after.poll.deadline_passed is True


def test_a_render_completing_in_the_last_second_still_completes() -> None:
    state = poll_state()
    now = state.job.deadline_at - timedelta(seconds=0.5)

    after = check_status(state, ports(now, CountingProvider("COMPLETED"), RecordingJobs()))

    assert (after.poll.status, after.poll.deadline_passed) == ("COMPLETED", False)
