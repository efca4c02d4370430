"""The trade-off issue 16 asks for, pinned without timing anything: while submits wait for the request
budget, a status check is worth less than a new render's token, so checks thin out; with no submit
waiting, the schedule is the single-job one again. And a waiting submit holds a turn, so the last ones
of a burst neither come back at random while tokens sit idle nor wait behind a whole wave of checks.

Everything runs on the domain's in-memory bucket (held to the DynamoDB adapter in
test_request_budget.py) and the in-memory fakes."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta

import pytest

from avatar_pipeline.domain.context import InboxObject
from avatar_pipeline.domain.poll import check_status
from avatar_pipeline.domain.poll_policy import FixedIntervalPolicy, PollPolicy, RenderStats
from avatar_pipeline.domain.request_budget import (
    LAST_SUBMITS_SECONDS,
    MAX_TURN_AHEAD_SECONDS,
    BucketShape,
    Denied,
    Grant,
    InMemoryRequestBudget,
    Queues,
)
from avatar_pipeline.domain.submit import Requeue, SubmitResult, submit_job
from avatar_pipeline.provider.wire import StatusReport
from avatar_pipeline.state import RenderState
from tests.support.events import load_event
from tests.support.fakes import INPUT_BUCKET, World
from tests.support.media import make_png

pytestmark = pytest.mark.unit

RPM = 50
SHAPE = BucketShape.for_limit(RPM)
INTERVAL = SHAPE.interval_seconds
T0 = datetime(2026, 11, 21, 10, 0, 0, tzinfo=UTC)
POLICY = PollPolicy()
# What the reference renders (median 140 s, sigma 0.35) teach the policy.
LEARNED = RenderStats.prior().observe(140.0)


def budget_with_waiting_submits(now: datetime, waiting: int) -> InMemoryRequestBudget:
    """A bucket emptied by result fetches, then `waiting` submits denied: each booked a turn."""
    budget = InMemoryRequestBudget(SHAPE)
    while isinstance(budget.try_acquire("result", now), Grant):
        pass
    for _ in range(waiting):
        assert isinstance(budget.try_acquire("submit", now), Denied)
    return budget


def checks_of_a_render_that_never_ends(policy: PollPolicy, until: float = 600) -> list[float]:
    """Seconds after submission at which a still-running render is checked."""
    submitted = T0
    deadline = submitted + timedelta(minutes=45)
    elapsed, wait, checks = 0.0, policy.first_wait(LEARNED), []
    while elapsed + wait <= until:
        elapsed += wait
        checks.append(elapsed)
        wait = policy.next_wait(submitted, submitted + timedelta(seconds=elapsed), deadline, wait, LEARNED)
    return checks


# --- the policy -------------------------------------------------------------------------------------


def test_a_backlog_makes_checks_thinner_and_puts_the_first_where_most_renders_are_done() -> None:
    """Given renders learned at a 140 s median
    When the schedule of a render that has not finished by 10 minutes is laid out with and without a backlog
    Then with one the first check comes after most renders are done (beyond the median, where the
    single-job schedule's comes before it) and there are far fewer checks in all."""
    alone = checks_of_a_render_that_never_ends(POLICY)
    backlog = checks_of_a_render_that_never_ends(POLICY.under_backlog())

    assert alone[0] < LEARNED.median_seconds < backlog[0]
    assert backlog[0] >= LEARNED.quantile_seconds(1.0)
    assert len(backlog) <= len(alone) / 2


def test_no_backlog_is_the_single_job_schedule_itself() -> None:
    """The backlog's knobs change nothing until asked for, and the fixed-interval baseline ignores them."""
    assert PollPolicy() == POLICY
    assert POLICY.under_backlog() != POLICY
    assert FixedIntervalPolicy(2).under_backlog() == FixedIntervalPolicy(2)


# --- the poll step ----------------------------------------------------------------------------------


def poll_state(world: World, elapsed: float = 150) -> RenderState:
    state = RenderState.model_validate(load_event("poll_state.json"))
    state.poll.status, state.poll.wait_seconds, state.poll.polls = "PROCESSING", 9, 6
    world.clock.moment = state.job.submitted_at + timedelta(seconds=elapsed)
    return state


def next_wait_after_a_still_rendering_check(waiting_submits: int) -> int:
    world = World()
    state = poll_state(world)
    world.budget = budget_with_waiting_submits(world.clock.now() - timedelta(seconds=100), waiting_submits)
    world.provider.statuses = [StatusReport(status="PROCESSING")]
    after = check_status(state, world.poll())
    assert world.provider.calls["status"] == 1
    return after.poll.wait_seconds


def test_a_check_while_submits_wait_schedules_the_next_one_later() -> None:
    """Given a render 150 s in, still rendering, and the bucket's tokens back (the denials were 100 s ago)
    When it is checked with many submits holding turns, and with none
    Then the next check comes later with the backlog; without it, at the single-job interval."""
    many = int(2 * LAST_SUBMITS_SECONDS / INTERVAL) + 60  # turns still ahead 100 s later

    with_backlog, alone = next_wait_after_a_still_rendering_check(many), next_wait_after_a_still_rendering_check(0)

    assert alone <= POLICY.max_dense_interval_seconds
    assert with_backlog > alone


# --- the budget's queue of submits ------------------------------------------------------------------


def test_denied_submits_book_turns_one_token_interval_apart() -> None:
    """Given an empty bucket
    When five submits are denied at the same moment
    Then each is told to come back at its own turn, one interval after the one before: no two together,
    and none later than the queue needs (the old way spread them at random over two minutes)."""
    budget = budget_with_waiting_submits(T0, 0)
    moment = T0

    turns = [budget.try_acquire("submit", moment) for _ in range(5)]

    waits = [t.retry_after_seconds for t in turns if isinstance(t, Denied)]
    assert len(waits) == 5
    assert [round(b - a, 6) for a, b in itertools.pairwise(waits)] == [round(INTERVAL, 6)] * 4
    assert waits[-1] < 5 * INTERVAL + SHAPE.tokens_needed("submit") * INTERVAL


def test_grants_say_submits_wait_while_a_turn_is_ahead_and_not_after_the_last() -> None:
    """Given three submits denied at once (turns about 4, 5.3 and 6.7 s later)
    When requests are granted 5 s later and a minute later
    Then the first grant says submits are waiting and the second does not: the single-job schedule is back."""
    moment = T0
    budget = budget_with_waiting_submits(moment, 3)

    assert budget.try_acquire("result", moment + timedelta(seconds=5)).submits_waiting is True
    assert budget.try_acquire("result", moment + timedelta(seconds=60)).submits_waiting is False


def test_a_turn_further_ahead_than_sqs_can_delay_is_not_booked() -> None:
    """A submit whose turn would be more than 15 minutes away comes back then and asks again; it holds
    no turn it could not keep."""
    turn, queue_end = SHAPE.turn(queue_until=2000.0, earliest=10.0, now=0.0)

    assert (turn, queue_end) == (MAX_TURN_AHEAD_SECONDS, None)


def test_the_last_few_queued_submits_go_before_a_waiting_check_but_a_long_queue_does_not() -> None:
    """Given a bucket holding one token and a check holding a turn
    When a submit asks with a short queue of submits behind it (the last of a burst), and with a long one
    Then with the short queue it goes (or the last submits would wait out the whole wave of checks and
    render at the very end while tokens sit idle); with the long one it waits, so no render waits long
    for its check; a check itself always ranks as a check."""
    now = 1000.0
    full_at = now + (SHAPE.burst - 1) * INTERVAL  # one token left
    short_queue = Queues(submits_until=now + LAST_SUBMITS_SECONDS / 2, checks_until=now + 5)
    long_queue = Queues(submits_until=now + 3 * LAST_SUBMITS_SECONDS, checks_until=now + 5)

    just_past = Queues(submits_until=now - LAST_SUBMITS_SECONDS / 2, checks_until=now + 5)  # a late last turn
    long_past = Queues(submits_until=now - 3 * LAST_SUBMITS_SECONDS, checks_until=now + 5)

    assert SHAPE.take(full_at, SHAPE.ranks_as("submit", short_queue, now), now) is not None
    assert SHAPE.take(full_at, SHAPE.ranks_as("submit", just_past, now), now) is not None
    assert SHAPE.take(full_at, SHAPE.ranks_as("submit", long_queue, now), now) is None
    assert SHAPE.take(full_at, SHAPE.ranks_as("submit", long_past, now), now) is None
    assert SHAPE.ranks_as("poll", short_queue, now) == "poll"
    assert SHAPE.ranks_as("result", short_queue, now) == "result"


def test_a_submit_keeps_its_reserve_only_while_a_check_or_fetch_holds_a_turn() -> None:
    """Given a bucket holding one token
    When a submit asks with a check holding a turn, and with none
    Then it waits in the first case (the token is the check's) and goes in the second: a reserve nobody
    waits for would only leave tokens idle."""
    now = 1000.0
    full_at = now + (SHAPE.burst - 1) * INTERVAL  # one token left

    assert SHAPE.take(full_at, SHAPE.ranks_as("submit", Queues(checks_until=now + 5), now), now) is None
    assert SHAPE.take(full_at, SHAPE.ranks_as("submit", Queues(), now), now) is not None


# --- the submit step --------------------------------------------------------------------------------


def drop(world: World, number: int) -> InboxObject:
    world.storage.put(INPUT_BUCKET, "inbox/b/face.png", make_png())
    key = f"inbox/b/job-{number}.json"
    document = {
        "model": "heygen-avatar-iv",
        "photo": "face.png",
        "video_title": "Hi",
        "script": "Hello.",
        "resolution": "720p",
    }
    etag = world.storage.put(INPUT_BUCKET, key, json.dumps(document).encode())
    return InboxObject(
        bucket=INPUT_BUCKET,
        key=key,
        etag=etag,
        version_id=None,
        sequencer=f"00{number:016d}",
        event_time=world.clock.now(),
        message_id=f"msg-{number}",
    )


def test_a_denied_submit_waits_in_the_queue_until_its_turn() -> None:
    """Given an empty bucket
    When two job files are taken in at the same moment
    Then neither is posted, and they come back at consecutive turns, whole seconds, never early."""
    world = World()
    world.budget = budget_with_waiting_submits(world.clock.now(), 0)

    first, second = submit_job(drop(world, 1), world.submit()), submit_job(drop(world, 2), world.submit())

    assert isinstance(first, Requeue)
    assert isinstance(second, Requeue)
    assert world.provider.calls["submit"] == 0
    assert 1 <= second.delay_seconds - first.delay_seconds <= 2
    assert first.delay_seconds >= INTERVAL


def first_wait_of_a_submitted_job(waiting_submits: int) -> int:
    world = World()
    world.render_stats.stats["heygen-avatar-iv#720p"] = LEARNED
    budget = InMemoryRequestBudget(SHAPE)
    if waiting_submits:
        budget = budget_with_waiting_submits(world.clock.now() - timedelta(seconds=5), waiting_submits)
    world.budget = budget
    event = drop(world, 7)

    assert submit_job(event, world.submit()) == SubmitResult.STARTED
    (started,) = world.executions.started.values()
    return started.poll.wait_seconds


def test_a_job_submitted_while_others_wait_is_first_checked_where_most_renders_are_done() -> None:
    """Given renders learned at a 140 s median
    When a job is submitted with other submits holding turns, and when none waits
    Then its first check comes beyond the median with them, and before it without."""
    with_backlog, alone = first_wait_of_a_submitted_job(200), first_wait_of_a_submitted_job(0)

    assert alone < LEARNED.median_seconds < with_backlog
