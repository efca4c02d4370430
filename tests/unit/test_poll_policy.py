"""When to check a render's status next (domain/poll_policy.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from avatar_pipeline.domain.poll_policy import PRIOR_RENDER_SECONDS, PollPolicy

pytestmark = pytest.mark.unit

# Job timestamps carry milliseconds (events/poll_state.json: submitted_at ...01.250Z).
SUBMITTED = datetime(2026, 11, 21, 10, 0, 1, 250_000, tzinfo=UTC)
DEADLINE = SUBMITTED + timedelta(minutes=45)
POLICY = PollPolicy()
FIRST_CHECK = PRIOR_RENDER_SECONDS * 0.75
DENSE_UNTIL = PRIOR_RENDER_SECONDS * 1.6


def wait_at(elapsed: float, previous_wait: int = 8, deadline: datetime = DEADLINE) -> int:
    return POLICY.next_wait(SUBMITTED, SUBMITTED + timedelta(seconds=elapsed), deadline, previous_wait)


def test_first_wait_skips_the_part_of_the_render_that_never_completes() -> None:
    """Given the prior render time of about 140 s
    When the first wait is chosen
    Then it is about 0.75 x 140 s."""
    assert POLICY.first_wait() == pytest.approx(0.75 * 140, abs=1)


def test_first_wait_is_at_least_one_second() -> None:
    """Given a tiny expected render time
    When the first wait is chosen
    Then it is still at least one second (a Wait state needs a positive number)."""
    assert PollPolicy(expected_render_seconds=0.1).first_wait() == 1


@pytest.mark.parametrize(("elapsed", "expected"), [(0, 105), (30, 75), (100, 5), (104.6, 1)])
def test_early_checks_wait_until_the_first_check_point(elapsed: float, expected: int) -> None:
    """Given a status check before the first check point (e.g. a retry landed early)
    When the next wait is chosen
    Then it waits until that point, never less than one second."""
    assert wait_at(elapsed) == expected


@pytest.mark.parametrize("elapsed", [FIRST_CHECK, 110, 140, 180, DENSE_UNTIL - 0.5])
@pytest.mark.parametrize("previous_wait", [1, 8, 60])
def test_dense_checks_while_completion_is_likely(elapsed: float, previous_wait: int) -> None:
    """Given a check inside the window where completion is likely (0.75x to 1.6x the render time)
    When the next wait is chosen
    Then it is the dense interval, whatever the previous wait."""
    assert wait_at(elapsed, previous_wait) == 8


def test_backoff_beyond_the_window_grows_and_is_capped() -> None:
    """Given checks past the likely-completion window, each feeding its wait to the next
    When the waits are chosen
    Then they grow by the backoff factor from the dense interval and stop at max_interval."""
    elapsed, previous, waits = DENSE_UNTIL, 8, []
    for _ in range(8):
        previous = wait_at(elapsed, previous)
        waits.append(previous)
        elapsed += previous

    assert waits == [12, 18, 27, 40, 60, 60, 60, 60]


@pytest.mark.parametrize("previous_wait", [60, 90, 600])
def test_backoff_never_exceeds_max_interval(previous_wait: int) -> None:
    """Given a large previous wait past the window
    When the next wait is chosen
    Then it is capped at max_interval."""
    assert wait_at(1000, previous_wait) == 60


def test_backoff_never_drops_below_the_dense_interval() -> None:
    """Given a tiny previous wait past the window (e.g. the first wait after a retry)
    When the next wait is chosen
    Then it is at least the dense interval."""
    assert wait_at(1000, previous_wait=1) == 8


@pytest.mark.parametrize("past", [0, 0.001, 1, 30, 3600])
def test_at_or_after_the_deadline_the_wait_is_one_second(past: float) -> None:
    """Given a check at or after the deadline
    When the next wait is chosen
    Then it is one second (the state machine then sees deadline_passed)."""
    now = DEADLINE + timedelta(seconds=past)
    assert POLICY.next_wait(SUBMITTED, now, DEADLINE, 60) == 1


@pytest.mark.parametrize("remaining", [0.2, 0.5, 0.999])
def test_within_the_last_second_one_final_check_is_made(remaining: float) -> None:
    """Given less than a second to the deadline
    When the next wait is chosen
    Then it is one second: one last check right at the deadline."""
    now = DEADLINE - timedelta(seconds=remaining)
    assert POLICY.next_wait(SUBMITTED, now, DEADLINE, 60) == 1


def test_waits_never_go_past_the_deadline_on_whole_seconds() -> None:
    """Given checks at every whole second of a short deadline, with any previous wait
    When each next wait is chosen
    Then it is at least one second and ends at or before the deadline whenever a second or more remains."""
    deadline = SUBMITTED + timedelta(seconds=400)
    for elapsed in range(400):
        for previous in (1, 8, 30, 60):
            wait = wait_at(elapsed, previous, deadline)
            assert wait >= 1
            assert elapsed + wait <= 400, (elapsed, previous, wait)


@pytest.mark.parametrize("remaining", [1.4, 1.6, 10.5, 10.6, 59.7])
def test_waits_never_go_past_a_deadline_a_fraction_of_a_second_away(remaining: float) -> None:
    """Given a deadline a whole number of seconds plus a fraction away (timestamps carry milliseconds)
    and a backoff wait longer than that
    When the next wait is chosen
    Then the wait ends at or before the deadline (the module promises "never beyond it")."""
    now = DEADLINE - timedelta(seconds=remaining)
    wait = POLICY.next_wait(SUBMITTED, now, DEADLINE, 60)
    assert now + timedelta(seconds=wait) <= DEADLINE


def test_a_whole_render_window_is_polled_economically() -> None:
    """Given a render that never finishes, polled from submission until the deadline
    When every wait is taken from the policy
    Then the checks stay well under the SDK's one-every-2-seconds rate and the last lands at the deadline."""
    now, previous, checks = SUBMITTED + timedelta(seconds=POLICY.first_wait()), POLICY.first_wait(), 0
    while now < DEADLINE:
        checks += 1
        previous = POLICY.next_wait(SUBMITTED, now, DEADLINE, previous)
        now += timedelta(seconds=previous)

    assert checks < 70
    assert now - DEADLINE < timedelta(seconds=1)
