"""When to check a render's status next, learned from how long renders of the same kind took.

Segmind allows a key a few requests per minute (free 5, pro 50) and status checks may count, so
every check saved is throughput, and every second between completion and the check that sees it is
latency. Segmind's SDK example checks every 2 s: ~70 calls for a 140 s render.

The model: render times of one kind (model + resolution) are lognormal. `RenderStats` keeps an
exponentially weighted estimate of the mean and variance of ln(render seconds), starting from a
prior of ~140 s (the seed pages) and updated at each completion. From it the policy derives:

* the first check, at a low quantile of the distribution (few renders finish before it);
* then checks spaced by the cost-optimal interval: with h(t) the hazard (the chance per second
  that a render still running at t completes now) and `delay_price` the number of status calls
  one second of detection delay is worth, checking every d seconds costs about 1/d calls and
  h*d/2 seconds of delay per second, which is least at d = sqrt(2 / (delay_price * h)): dense
  where completion is likely, sparse where it is not;
* bounds on that interval inside the distribution's bulk (7-11 s by default): users feel the worst
  delays, so a slow kind of render (low hazard) must still be checked often enough, and a fast one
  (high hazard) need not be checked more often than the delay targets ask;
* geometric backoff beyond the bulk (a render that late is more likely stuck in a queue than about
  to finish on the lognormal's schedule), capped;
* never a wait that ends after the deadline: whole seconds, at least one, rounded down.

Everything here is pure and deterministic: a function of the stats, the elapsed time, the previous
wait and the deadline, so the benchmark (bench/bench_poll.py) drives this very code.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

PRIOR_RENDER_SECONDS = 140.0
# The prior's spread in log space: the seed pages give one figure, so start wider than renders of
# one kind usually are (about 0.3-0.4), and let the first completions narrow it.
PRIOR_LOG_SD = 0.4
# The prior counts as this many observations, so the first real completions move it quickly.
PRIOR_WEIGHT = 2
# Once past 1/MIN_ALPHA observations the estimate forgets with a half-life of ~14 completions, so
# it follows the provider's load instead of averaging over its whole history.
MIN_ALPHA = 0.05
# Bounds on the spread: a tiny spread would bet everything on one instant; a huge one (a
# misconfiguration, or mixed kinds) would wash the schedule out.
MIN_LOG_SD = 0.1
MAX_LOG_SD = 1.5
# A single observation moves the estimate by at most this many standard deviations, so one
# render stuck for half an hour does not blow the spread up (a real shift still gets through:
# the spread grows with each surprising observation).
MAX_SURPRISE_SD = 4.0
# Slack when checking a provider-reported time against our own clock (clocks and rounding differ).
PROVIDER_TIME_SLACK_SECONDS = 2.0


def render_class(model: str, parameters: Mapping[str, object]) -> str:
    """What render times are learned per: the model and the output size (the one parameter the seed
    pages say changes render time). Explicit width x height override the resolution preset."""
    width, height = parameters.get("width"), parameters.get("height")
    if isinstance(width, int) and isinstance(height, int):
        return f"{model}#{width}x{height}"
    resolution = parameters.get("resolution")
    return f"{model}#{resolution if isinstance(resolution, str) else 'default'}"


@dataclass(frozen=True)
class RenderStats:
    """A sketch of one kind's render times: EW mean and variance of ln(seconds)."""

    log_mean: float
    log_var: float
    observations: int = 0

    @classmethod
    def prior(cls) -> RenderStats:
        return cls(log_mean=math.log(PRIOR_RENDER_SECONDS), log_var=PRIOR_LOG_SD**2, observations=0)

    @property
    def log_sd(self) -> float:
        return min(MAX_LOG_SD, max(MIN_LOG_SD, math.sqrt(max(self.log_var, 0.0))))

    @property
    def median_seconds(self) -> float:
        return math.exp(self.log_mean)

    def quantile_seconds(self, z: float) -> float:
        return math.exp(self.log_mean + z * self.log_sd)

    def observe(self, render_seconds: float) -> RenderStats:
        """The estimate after one more completion (West's weighted mean/variance update)."""
        alpha = max(1.0 / (self.observations + PRIOR_WEIGHT + 1), MIN_ALPHA)
        limit = MAX_SURPRISE_SD * self.log_sd
        deviation = max(-limit, min(limit, math.log(max(render_seconds, 1.0)) - self.log_mean))
        log_var = (1.0 - alpha) * (self.log_var + alpha * deviation * deviation)
        return RenderStats(
            log_mean=self.log_mean + alpha * deviation,
            log_var=min(MAX_LOG_SD**2, max(MIN_LOG_SD**2, log_var)),
            observations=self.observations + 1,
        )

    def hazard(self, seconds: float) -> float:
        """Completions per second among renders still running after `seconds` (lognormal)."""
        if seconds <= 0:
            return 0.0
        sd = self.log_sd
        z = (math.log(seconds) - self.log_mean) / sd
        survival = 0.5 * math.erfc(z / math.sqrt(2.0))
        if survival <= 0.0:
            return math.inf
        density = math.exp(-0.5 * z * z) / (math.sqrt(2.0 * math.pi) * sd * seconds)
        return density / survival


def observed_render_seconds(
    elapsed_seconds: float, since_last_check_seconds: float, metrics: Mapping[str, object] | None = None
) -> float:
    """The render time to learn from, when a check `elapsed_seconds` after submission saw COMPLETED.

    The check only tells us the render finished after the previous check (`since_last_check_seconds`
    ago: the time since the last check that reached Segmind, not the last wait, which after checks
    deferred by the request budget is shorter) and by this one, so using the detection time would
    overstate every render by the detection delay (and the policy would drift later and later). The
    provider's own total time is used when it is plausible, i.e. not after this check (a figure in
    milliseconds, say, is not); otherwise the middle of the interval, which is unbiased when
    completions are spread evenly across it. `inference_time` alone excludes queueing, so it only
    raises the lower bound.
    """
    upper = max(elapsed_seconds, 0.0)
    lower = min(upper, max(0.0, elapsed_seconds - since_last_check_seconds))
    metrics = metrics or {}
    total = _seconds(metrics.get("total_time"))
    queue, inference = _seconds(metrics.get("queue_time")), _seconds(metrics.get("inference_time"))
    if total is None and queue is not None and inference is not None:
        total = queue + inference
    slack = PROVIDER_TIME_SLACK_SECONDS
    if total is not None and total <= upper + slack:
        return min(upper, total)
    if inference is not None and lower < inference <= upper:
        lower = inference
    return (lower + upper) / 2.0


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


class PollSchedule(Protocol):
    """What the Submit and Poll steps ask of a schedule: the adaptive PollPolicy or a fixed interval."""

    def first_wait(self, stats: RenderStats | None = None) -> int: ...

    def next_wait(
        self,
        submitted_at: datetime,
        now: datetime,
        deadline_at: datetime,
        previous_wait: int,
        stats: RenderStats | None = None,
    ) -> int: ...


def poll_schedule(fixed_interval_seconds: int = 0) -> PollSchedule:
    """The schedule the settings ask for: 0 (the default) is the adaptive policy."""
    return FixedIntervalPolicy(fixed_interval_seconds) if fixed_interval_seconds > 0 else PollPolicy()


@dataclass(frozen=True)
class FixedIntervalPolicy:
    """Segmind's SDK way: the same wait every time (its example uses 2 s), learning nothing.

    Not the default. It exists for comparison runs (bench/bench_throughput.py runs the offline stack
    with it) and for a provider whose render times the lognormal model does not fit. Like the
    adaptive policy it never waits past the deadline.
    """

    seconds: int

    def __post_init__(self) -> None:
        if self.seconds < 1:
            raise ValueError("a fixed poll interval must be at least 1 second")

    def first_wait(self, stats: RenderStats | None = None) -> int:
        return self.seconds

    def next_wait(
        self,
        submitted_at: datetime,
        now: datetime,
        deadline_at: datetime,
        previous_wait: int,
        stats: RenderStats | None = None,
    ) -> int:
        remaining = (deadline_at - now).total_seconds()
        return max(1, math.floor(min(float(self.seconds), remaining)))


@dataclass(frozen=True)
class PollPolicy:
    """The schedule's knobs. The defaults are tuned by bench/bench_poll.py (tests pin its targets)."""

    # The first check where this share of renders is done (z of the lognormal: -1.8 ~ 3.6%).
    first_check_z: float = -1.8
    # Status calls one second of detection delay is worth (sets the dense interval near the median).
    delay_price: float = 1.5
    # Inside the bulk, never wait longer than this: bounds the delay of slow kinds of render.
    max_dense_interval_seconds: float = 11.0
    # Nor shorter than this: the ideal interval shrinks with the square root of the render time, but
    # users' tolerance for delay does not, so fast kinds of render would buy delay nobody needs.
    min_dense_interval_seconds: float = 7.0
    # Beyond this quantile (z; 2.0 ~ 97.7%) the lognormal is no longer trusted: back off.
    backoff_from_z: float = 2.0
    backoff_factor: float = 1.5
    max_interval_seconds: float = 60.0

    def first_check_seconds(self, stats: RenderStats | None = None) -> float:
        return (stats or RenderStats.prior()).quantile_seconds(self.first_check_z)

    def first_wait(self, stats: RenderStats | None = None) -> int:
        """The Wait before the first check (the execution input's poll.wait_seconds)."""
        return max(1, math.floor(self.first_check_seconds(stats)))

    def next_wait(
        self,
        submitted_at: datetime,
        now: datetime,
        deadline_at: datetime,
        previous_wait: int,
        stats: RenderStats | None = None,
    ) -> int:
        """Seconds to wait after a check at `now` that found the render still running."""
        elapsed = (now - submitted_at).total_seconds()
        remaining = (deadline_at - now).total_seconds()
        return self.next_wait_seconds(elapsed, remaining, previous_wait, stats)

    def next_wait_seconds(
        self, elapsed: float, remaining: float, previous_wait: float, stats: RenderStats | None = None
    ) -> int:
        stats = stats or RenderStats.prior()
        wait = self._ideal_wait(stats, elapsed, previous_wait)
        # Whole seconds, rounded down so the wait never ends after the deadline. With less than a
        # second left no wait fits: the minimum is returned and the caller treats the deadline as
        # reached (domain/poll.py), so the loop ends instead of checking once more past it.
        return max(1, math.floor(min(wait, remaining)))

    def _ideal_wait(self, stats: RenderStats, elapsed: float, previous_wait: float) -> float:
        until_first = self.first_check_seconds(stats) - elapsed
        if until_first >= self.min_dense_interval_seconds:
            # Early (a redelivered start, a deferred check): few renders finish before the first check.
            # Closer than a dense interval to it, checking at once would waste a call: go dense instead.
            return until_first
        backoff_from = stats.quantile_seconds(self.backoff_from_z)
        if elapsed < backoff_from:
            return self._dense_interval(stats, elapsed)
        floor = self._dense_interval(stats, backoff_from)
        return min(self.max_interval_seconds, max(floor, previous_wait * self.backoff_factor))

    def _dense_interval(self, stats: RenderStats, elapsed: float) -> float:
        # The hazard changes across the interval; evaluating it at the interval's middle (two
        # fixed-point steps) keeps the first dense interval from taking the low hazard at its start.
        interval = self._interval_at(stats, elapsed)
        for _ in range(2):
            interval = self._interval_at(stats, elapsed + interval / 2.0)
        return interval

    def _interval_at(self, stats: RenderStats, seconds: float) -> float:
        hazard = stats.hazard(seconds)
        ideal = math.sqrt(2.0 / (self.delay_price * hazard)) if hazard > 0 else math.inf
        return min(self.max_dense_interval_seconds, max(self.min_dense_interval_seconds, ideal))
