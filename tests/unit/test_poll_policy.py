"""When to check a render's status next, and what is learned from each render (domain/poll_policy.py)."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, datetime, timedelta

import pytest

from avatar_pipeline.domain.poll_policy import (
    MAX_LOG_SD,
    MIN_LOG_SD,
    PRIOR_RENDER_SECONDS,
    FixedIntervalPolicy,
    PollPolicy,
    RenderStats,
    observed_render_seconds,
    poll_schedule,
    render_class,
)

pytestmark = pytest.mark.unit

# Job timestamps carry milliseconds (events/poll_state.json: submitted_at ...01.250Z).
SUBMITTED = datetime(2026, 11, 21, 10, 0, 1, 250_000, tzinfo=UTC)
DEADLINE = SUBMITTED + timedelta(minutes=45)
POLICY = PollPolicy()
PRIOR = RenderStats.prior()
# What a few hundred renders of the reference distribution (median 140 s, sigma 0.35) teach it.
LEARNED = RenderStats(log_mean=math.log(140), log_var=0.35**2, observations=300)
SLOW = RenderStats(log_mean=math.log(420), log_var=0.35**2, observations=300)
FAST = RenderStats(log_mean=math.log(60), log_var=0.35**2, observations=300)
ALL_STATS = (PRIOR, LEARNED, SLOW, FAST, RenderStats(math.log(30), MIN_LOG_SD**2), RenderStats(math.log(900), 1.0))


def wait_at(
    elapsed: float, previous_wait: int = 8, deadline: datetime = DEADLINE, stats: RenderStats | None = None
) -> int:
    return POLICY.next_wait(SUBMITTED, SUBMITTED + timedelta(seconds=elapsed), deadline, previous_wait, stats)


def schedule(stats: RenderStats, until: float = 2700, deadline: datetime = DEADLINE) -> list[float]:
    """Check times (seconds after submission) of a render that never finishes."""
    elapsed = float(POLICY.first_wait(stats))
    checks, previous = [elapsed], POLICY.first_wait(stats)
    while elapsed < until and SUBMITTED + timedelta(seconds=elapsed) < deadline - timedelta(seconds=1):
        previous = wait_at(elapsed, previous, deadline, stats)
        elapsed += previous
        checks.append(elapsed)
    return checks


# --- the first check -------------------------------------------------------------------------------


def test_first_wait_from_the_prior_skips_the_part_of_a_140_s_render_that_rarely_completes() -> None:
    """Given nothing learned yet (the prior: ~140 s)
    When the first wait is chosen
    Then it falls early in the distribution: about half the median, where ~4% of renders are done."""
    assert POLICY.first_wait() == POLICY.first_wait(PRIOR) == math.floor(PRIOR.quantile_seconds(-1.8))
    assert 0.4 * PRIOR_RENDER_SECONDS <= POLICY.first_wait() <= 0.6 * PRIOR_RENDER_SECONDS


@pytest.mark.parametrize(("stats", "low", "high"), [(FAST, 25, 35), (LEARNED, 65, 80), (SLOW, 200, 240)])
def test_first_wait_follows_what_was_learned(stats: RenderStats, low: int, high: int) -> None:
    """Given learned render times of 60 s, 140 s or 420 s
    When the first wait is chosen
    Then it scales with them."""
    assert low <= POLICY.first_wait(stats) <= high


def test_first_wait_is_at_least_one_second() -> None:
    """Given a tiny expected render time
    When the first wait is chosen
    Then it is still at least one second (a Wait state needs a positive number)."""
    assert POLICY.first_wait(RenderStats(log_mean=math.log(0.5), log_var=0.01)) == 1


@pytest.mark.parametrize("elapsed", [0, 10, 30, 50])
def test_a_check_before_the_first_check_point_waits_for_it(elapsed: float) -> None:
    """Given a check well before the first check point (a redelivered start, a deferred check)
    When the next wait is chosen
    Then it waits until that point."""
    first = LEARNED.quantile_seconds(POLICY.first_check_z)
    assert wait_at(elapsed, stats=LEARNED) == math.floor(first - elapsed)


def test_a_check_just_before_the_first_check_point_goes_dense_instead_of_checking_again_at_once() -> None:
    """Given a check a fraction of a second before the first check point (the first wait is rounded down)
    When the next wait is chosen
    Then it is a full dense interval, not a one-second wait that would waste a call."""
    first = LEARNED.quantile_seconds(POLICY.first_check_z)
    assert wait_at(first - 0.7, stats=LEARNED) >= POLICY.min_dense_interval_seconds


# --- dense checks where completion is likely --------------------------------------------------------


@pytest.mark.parametrize("stats", ALL_STATS)
@pytest.mark.parametrize("z", [-1.5, -1.0, 0.0, 1.0, 1.9])
@pytest.mark.parametrize("previous_wait", [1, 8, 60])
def test_inside_the_bulk_checks_are_dense_and_bounded(stats: RenderStats, z: float, previous_wait: int) -> None:
    """Given a check inside the bulk of the distribution (any learned stats)
    When the next wait is chosen
    Then it is between the dense bounds (7-11 s), whatever the previous wait."""
    far_deadline = SUBMITTED + timedelta(hours=10)  # the widest stats' bulk reaches past 45 minutes
    wait = wait_at(stats.quantile_seconds(z), previous_wait, far_deadline, stats)
    assert math.floor(POLICY.min_dense_interval_seconds) <= wait <= POLICY.max_dense_interval_seconds


def test_checks_are_densest_where_completion_is_most_likely() -> None:
    """Given the learned reference distribution (median 140 s)
    When waits are chosen early in the bulk and at the median
    Then the early ones are longer: the interval follows the completion hazard."""
    assert wait_at(80, stats=LEARNED) > wait_at(140, stats=LEARNED)
    assert wait_at(140, stats=LEARNED) <= 9


def test_slow_renders_are_still_checked_at_least_every_dense_maximum() -> None:
    """Given slow renders (median 420 s: a low hazard everywhere)
    When waits are chosen through the bulk
    Then none exceeds the dense maximum, which bounds the detection delay."""
    waits = [wait_at(t, stats=SLOW) for t in range(230, 800, 7)]
    assert max(waits) == POLICY.max_dense_interval_seconds


def test_fast_renders_are_not_checked_more_often_than_the_dense_minimum() -> None:
    """Given fast renders (median 60 s: a high hazard)
    When waits are chosen through the bulk
    Then none is below the dense minimum."""
    waits = [wait_at(t, stats=FAST) for t in range(32, 110, 3)]
    assert min(waits) == POLICY.min_dense_interval_seconds


def test_the_median_render_is_seen_by_the_eighth_check() -> None:
    """Given the learned reference distribution
    When a render is checked on the schedule
    Then by the eighth check at least half of all renders are done (median calls <= 8)."""
    assert schedule(LEARNED)[7] >= 140


# --- backing off beyond the distribution ----------------------------------------------------------


def test_backoff_beyond_the_bulk_grows_and_is_capped() -> None:
    """Given checks past the bulk (beyond the 97.7% quantile), each feeding its wait to the next
    When the waits are chosen
    Then they grow by the backoff factor from the dense interval and stop at max_interval."""
    # Just past the edge (times are rounded to microseconds on the way to datetimes).
    elapsed, previous, waits = LEARNED.quantile_seconds(POLICY.backoff_from_z) + 0.01, 8, []
    for _ in range(9):
        previous = wait_at(elapsed, previous, stats=LEARNED)
        waits.append(previous)
        elapsed += previous

    assert waits[:2] == [12, 18]
    assert all(b >= a for a, b in itertools.pairwise(waits))
    assert waits[-3:] == [60, 60, 60]


@pytest.mark.parametrize("stats", ALL_STATS)
@pytest.mark.parametrize("previous_wait", [60, 90, 600])
def test_backoff_never_exceeds_max_interval(stats: RenderStats, previous_wait: int) -> None:
    """Given a large previous wait far past the bulk
    When the next wait is chosen
    Then it is capped at max_interval."""
    assert wait_at(stats.quantile_seconds(3.5), previous_wait, stats=stats) <= POLICY.max_interval_seconds


def test_backoff_never_drops_below_the_dense_interval() -> None:
    """Given a tiny previous wait past the bulk (e.g. after a deferred check)
    When the next wait is chosen
    Then it is at least the dense interval at the bulk's edge."""
    assert wait_at(600, previous_wait=1, stats=LEARNED) >= POLICY.min_dense_interval_seconds


# --- never past the deadline ---------------------------------------------------------------------


@pytest.mark.parametrize("past", [0, 0.001, 1, 30, 3600])
def test_at_or_after_the_deadline_the_wait_is_one_second(past: float) -> None:
    """Given a check at or after the deadline
    When the next wait is chosen
    Then it is the minimum, one second (domain/poll.py reports the deadline as passed)."""
    now = DEADLINE + timedelta(seconds=past)
    assert POLICY.next_wait(SUBMITTED, now, DEADLINE, 60) == 1


@pytest.mark.parametrize("remaining", [0.2, 0.5, 0.999])
def test_within_the_last_second_the_wait_is_the_minimum(remaining: float) -> None:
    """Given less than a second to the deadline
    When the next wait is chosen
    Then it is one second: no whole-second wait fits, and domain/poll.py ends the loop instead."""
    now = DEADLINE - timedelta(seconds=remaining)
    assert POLICY.next_wait(SUBMITTED, now, DEADLINE, 60) == 1


def test_a_very_slow_and_spread_class_is_checked_at_most_every_dense_minimum_on_average() -> None:
    """Given a class whose bulk covers the whole deadline (median 15 min, spread 1.0)
    When a render that never finishes is polled until the deadline
    Then the dense maximum keeps the delay bounded, at about a check every 11 s, never the SDK's 2 s."""
    checks = schedule(ALL_STATS[-1])
    assert len(checks) <= 2700 / POLICY.min_dense_interval_seconds


@pytest.mark.parametrize("stats", ALL_STATS)
def test_waits_never_go_past_the_deadline_on_whole_seconds(stats: RenderStats) -> None:
    """Given checks at every whole second of a short deadline, with any previous wait and any stats
    When each next wait is chosen
    Then it is at least one second and ends at or before the deadline whenever a second or more remains."""
    deadline = SUBMITTED + timedelta(seconds=400)
    for elapsed in range(400):
        for previous in (1, 8, 30, 60):
            wait = wait_at(elapsed, previous, deadline, stats)
            assert wait >= 1
            assert elapsed + wait <= 400, (elapsed, previous, wait)


@pytest.mark.parametrize("remaining", [1.0, 1.4, 1.6, 10.5, 10.6, 59.7, 200.3])
@pytest.mark.parametrize("stats", ALL_STATS)
def test_waits_never_go_past_a_deadline_a_fraction_of_a_second_away(remaining: float, stats: RenderStats) -> None:
    """Given a deadline a whole number of seconds plus a fraction away (timestamps carry milliseconds)
    When the next wait is chosen
    Then the wait ends at or before the deadline (rounded down, never up)."""
    now = DEADLINE - timedelta(seconds=remaining)
    wait = POLICY.next_wait(SUBMITTED, now, DEADLINE, 60, stats)
    assert wait >= 1
    assert now + timedelta(seconds=wait) <= DEADLINE


@pytest.mark.parametrize(("stats", "most_checks"), [(PRIOR, 75), (LEARNED, 75), (FAST, 75), (SLOW, 100)])
def test_a_whole_render_window_is_polled_economically(stats: RenderStats, most_checks: int) -> None:
    """Given a render that never finishes, polled from submission until the 45-minute deadline
    When every wait is taken from the policy
    Then it takes about 70 checks (the SDK's 2 s interval: 1350) and the last lands within a second
    before the deadline."""
    checks = schedule(stats)
    assert len(checks) <= most_checks
    last = SUBMITTED + timedelta(seconds=checks[-1])
    assert timedelta(0) <= DEADLINE - last < timedelta(seconds=1)


def test_the_policy_is_deterministic() -> None:
    """Given the same stats, elapsed time, previous wait and deadline
    When the next wait is chosen twice
    Then it is the same (the benchmark drives this very code)."""
    assert [wait_at(t, 9, stats=LEARNED) for t in range(0, 600, 13)] == [
        wait_at(t, 9, stats=LEARNED) for t in range(0, 600, 13)
    ]


# --- what is learned ------------------------------------------------------------------------------


def test_the_prior_is_about_140_seconds() -> None:
    assert PRIOR.median_seconds == pytest.approx(140)
    assert PRIOR.observations == 0


def test_learning_moves_the_estimate_towards_what_was_observed() -> None:
    """Given the prior
    When one 200 s render is observed
    Then the median moves a third of the way in log space (the prior counts as two observations)."""
    after = PRIOR.observe(200)
    assert after.median_seconds == pytest.approx(140 * (200 / 140) ** (1 / 3))
    assert after.observations == 1


@pytest.mark.parametrize("median", [60, 420])
def test_fifty_renders_teach_a_shifted_distribution(median: float) -> None:
    """Given the prior (140 s) and 50 renders of another kind, observed as the policy observes them
    When they are folded in
    Then the learned median is within 10% of the new one and the spread is sane."""
    stats = PRIOR
    for i in range(50):
        z = (i % 10 - 4.5) / 3  # a deterministic spread of z-scores around 0
        stats = stats.observe(median * math.exp(0.35 * z))
    assert stats.median_seconds == pytest.approx(median, rel=0.1)
    assert 0.2 < stats.log_sd < 0.6


def test_recent_renders_weigh_more_than_old_ones() -> None:
    """Given 200 renders at 100 s and then 40 at 300 s
    When they are folded in
    Then the estimate follows the recent ones (the provider's load changes)."""
    stats = PRIOR
    for _ in range(200):
        stats = stats.observe(100)
    for _ in range(40):
        stats = stats.observe(300)
    assert stats.median_seconds > 250


def test_one_absurd_render_cannot_blow_the_spread_up() -> None:
    """Given well-learned stats
    When one render reported as taking ten hours is observed
    Then the estimate moves by at most a few standard deviations' worth."""
    after = LEARNED.observe(36_000)
    assert after.median_seconds < 140 * math.exp(4 * 0.35)
    assert after.log_sd < 0.6


@pytest.mark.parametrize("seconds", [0, -5, 1e-9, 1e12])
def test_spread_stays_within_bounds(seconds: float) -> None:
    stats = RenderStats(log_mean=math.log(140), log_var=0.0).observe(seconds)
    assert MIN_LOG_SD <= stats.log_sd <= MAX_LOG_SD


# --- the observation at completion ------------------------------------------------------------------


def test_without_provider_figures_the_middle_of_the_last_interval_is_learned() -> None:
    """Given a check at 150 s that saw COMPLETED, 10 s after the previous check
    When the observation is taken
    Then it is 145 s: the detection delay is not learned as render time."""
    assert observed_render_seconds(150, 10) == 145


def test_the_providers_total_time_is_used_when_plausible() -> None:
    assert observed_render_seconds(150, 10, {"total_time": 142.3}) == pytest.approx(142.3)
    # A total slightly after our check (clocks and rounding differ) is clamped to the check.
    assert observed_render_seconds(150, 10, {"total_time": 151.0}) == 150
    # After deferred checks our lower bound is too high; the provider's figure still wins.
    assert observed_render_seconds(150, 2, {"total_time": 120.0}) == 120


def test_queue_plus_inference_time_stand_in_for_a_missing_total() -> None:
    assert observed_render_seconds(150, 10, {"queue_time": 20, "inference_time": 121.5}) == pytest.approx(141.5)


def test_inference_time_alone_only_raises_the_lower_bound() -> None:
    """Given only the inference time (it excludes queueing)
    When the observation is taken
    Then it narrows the interval from below and the middle of the rest is learned."""
    assert observed_render_seconds(150, 10, {"inference_time": 146}) == 148
    assert observed_render_seconds(150, 10, {"inference_time": 90}) == 145


@pytest.mark.parametrize(
    "metrics",
    [{"total_time": 142_000}, {"total_time": "142"}, {"total_time": True}, {"total_time": -1}, {"total_time": None}],
)
def test_implausible_provider_figures_are_ignored(metrics: dict[str, object]) -> None:
    """Given a total in milliseconds, as text, a boolean, negative or null
    When the observation is taken
    Then our own clock decides."""
    assert observed_render_seconds(150, 10, metrics) == 145


def test_a_completion_seen_at_the_first_check_learns_the_middle_since_submission() -> None:
    assert observed_render_seconds(68.3, 68) == pytest.approx(68.3 / 2 + 0.15)


# --- what is learned per ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "parameters", "expected"),
    [
        ("heygen-avatar-iv", {"resolution": "720p"}, "heygen-avatar-iv#720p"),
        ("heygen-avatar-v", {"resolution": "4k", "aspect_ratio": "9:16"}, "heygen-avatar-v#4k"),
        ("heygen-avatar-iv", {"resolution": "720p", "width": 640, "height": 480}, "heygen-avatar-iv#640x480"),
        ("heygen-avatar-iv", {}, "heygen-avatar-iv#default"),
    ],
)
def test_render_class_is_the_model_and_the_output_size(
    model: str, parameters: dict[str, object], expected: str
) -> None:
    assert render_class(model, parameters) == expected


# --- the fixed interval (POLL_FIXED_INTERVAL_SECONDS) -------------------------------------------------


def test_the_schedule_is_adaptive_unless_a_fixed_interval_is_set() -> None:
    assert poll_schedule(0) == PollPolicy()
    assert poll_schedule(2) == FixedIntervalPolicy(2)


@pytest.mark.parametrize("learned", [PRIOR, RenderStats(log_mean=math.log(420), log_var=0.09)])
def test_a_fixed_interval_waits_the_same_whatever_the_render_times(learned: RenderStats) -> None:
    fixed = FixedIntervalPolicy(2)
    submitted = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)

    assert fixed.first_wait(learned) == 2
    for elapsed in (1, 60, 140, 900):
        now = submitted + timedelta(seconds=elapsed)
        assert fixed.next_wait(submitted, now, submitted + timedelta(minutes=45), 2, learned) == 2


def test_a_fixed_interval_never_waits_past_the_deadline() -> None:
    fixed = FixedIntervalPolicy(30)
    submitted = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
    deadline = submitted + timedelta(minutes=45)

    assert fixed.next_wait(submitted, deadline - timedelta(seconds=12.5), deadline, 30) == 12
    assert fixed.next_wait(submitted, deadline - timedelta(seconds=0.4), deadline, 30) == 1


def test_a_fixed_interval_below_one_second_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1 second"):
        FixedIntervalPolicy(0)
