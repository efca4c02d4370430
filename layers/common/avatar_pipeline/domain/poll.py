"""Poll: one status check, and the wait before the next one. The loop itself lives in the ASL.

The wait comes from the poll policy and what has been learned about renders of the same class
(model + resolution); a check that sees COMPLETED teaches it one more render time. With a request
budget, a check takes a token first; when the budget is spent the provider is not called at all:
the same state comes back with a wait until the turn the budget booked for it, so the ASL simply
loops once more. (Raising a
transient error for the ASL's Retry instead would give up after its MaxAttempts and fail the
job, and its backoff knows nothing of when the next token comes.)
"""

from __future__ import annotations

import math
import zlib
from datetime import datetime, timedelta

from avatar_pipeline.domain.poll_policy import (
    PollSchedule,
    RenderStats,
    observed_render_seconds,
    render_class,
)
from avatar_pipeline.domain.ports import PollPorts, RenderStatsStore
from avatar_pipeline.domain.request_budget import Denied, throttled_wait
from avatar_pipeline.errors import (
    ProviderBadResponse,
    ProviderConnectionError,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
)
from avatar_pipeline.observability import logger
from avatar_pipeline.provider.wire import StatusReport
from avatar_pipeline.state import PollState, RenderState

# A wait must end at or before the deadline and last a whole second or more: with less than a second
# left none fits, so the deadline counts as reached now rather than one check after it.
_LAST_WAIT = timedelta(seconds=1)
# A check that failed transiently: the next one after 5 s, doubling up to a minute. The render goes on
# meanwhile and stays billable, so these never end the job; only its deadline does.
_FAILED_CHECK_FIRST_SECONDS = 5
_FAILED_CHECK_MAX_SECONDS = 60
_CHECK_FAULTS = (ProviderUnavailable, ProviderTimeout, ProviderConnectionError, ProviderBadResponse)


def check_status(state: RenderState, ports: PollPorts) -> RenderState:
    """Ask Segmind once; 404 (RESULT_EXPIRED) propagates as a typed error, transient faults become a
    longer wait. Without `ports.render_stats` the schedule uses its prior and learns nothing; without
    `ports.budget` every check goes out."""
    job = state.job
    kind = render_class(job.model, job.parameters)
    learned = ports.render_stats.get(kind) if ports.render_stats is not None else RenderStats.prior()
    schedule = ports.schedule
    if ports.budget is not None:
        decision = ports.budget.try_acquire("poll", ports.clock.now())
        # Submits waiting for tokens: the next check comes where it is likely to find the render done.
        schedule = schedule.under_backlog() if decision.submits_waiting else schedule
        if isinstance(decision, Denied):
            # Its turn in the budget's queue of checks: when a token is likely to be there for it.
            return _deferred(state, ports.clock.now(), decision.retry_after_seconds, "the request budget is spent")
    try:
        report = ports.provider.status(job.request_id)
    except ProviderThrottled as throttled:
        # Segmind says when its window resets: check again then, without spending a Retry attempt.
        now = ports.clock.now()
        wait = _after_throttle(state, now, throttled_wait(throttled, now), schedule, learned)
        return _deferred(state, now, wait, "Segmind answered 429")
    except _CHECK_FAULTS as fault:
        return _after_failed_check(state, ports.clock.now(), fault.message)
    return _after_check(state, report, ports, kind, learned, schedule)


def _after_check(
    state: RenderState,
    report: StatusReport,
    ports: PollPorts,
    kind: str,
    learned: RenderStats,
    schedule: PollSchedule,
) -> RenderState:
    """Record what Segmind said, learn a render time from a completion, and schedule the next check."""
    job = state.job
    now = ports.clock.now()
    polls = state.poll.polls + 1
    finished = report.status in ("COMPLETED", "FAILED")
    ports.jobs.record_poll(job.job_id, report.status, polls, now)
    if report.status == "COMPLETED" and ports.render_stats is not None:
        _learn(state, report, ports.render_stats, kind, learned, now)
    next_poll = PollState(
        status=report.status,
        wait_seconds=schedule.next_wait(job.submitted_at, now, job.deadline_at, state.poll.wait_seconds, learned),
        polls=polls,
        deadline_passed=not finished and job.deadline_at - now < _LAST_WAIT,
        error_message=report.error if report.status == "FAILED" else None,
        provider_metrics=report.metrics,
        first_seen_processing_at=state.poll.first_seen_processing_at
        or (now if report.status in ("PROCESSING", "COMPLETED") else None),
        completed_seen_at=now if report.status == "COMPLETED" else None,
        last_checked_at=now,
        first_checked_at=state.poll.first_checked_at or now,
        failed_checks=0,
    )
    return RenderState(job=job, poll=next_poll)


def _learn(
    state: RenderState, report: StatusReport, stats: RenderStatsStore, kind: str, learned: RenderStats, now: datetime
) -> None:
    """Teach the schedule this render's time, when this completion tells it (observed_render_seconds)."""
    job = state.job
    elapsed = (now - job.submitted_at).total_seconds()
    last_check = state.poll.last_checked_at
    # Checks deferred by the budget did not look: the render finished after the last real one, or at
    # any time since submission when none has looked yet (a first check deferred again and again).
    since_last_check = (
        (now - last_check).total_seconds()
        if last_check
        else elapsed
        if state.poll.polls == 0
        else float(state.poll.wait_seconds)
    )
    # The first look: this check if none came before; unknown (taken as early) in states written before
    # the field existed.
    first_checked_at = state.poll.first_checked_at or (now if state.poll.polls == 0 else job.submitted_at)
    first_check = (first_checked_at - job.submitted_at).total_seconds()
    observed = observed_render_seconds(elapsed, since_last_check, report.metrics, learned.median_seconds, first_check)
    if observed is not None:
        stats.record(kind, observed, now)


def _after_failed_check(state: RenderState, now: datetime, reason: str) -> RenderState:
    """No news this time: the same status, and the next check after a backoff (never past the deadline)."""
    job = state.job
    failed = state.poll.failed_checks + 1
    backoff = min(_FAILED_CHECK_MAX_SECONDS, _FAILED_CHECK_FIRST_SECONDS * 2 ** min(failed - 1, 10))
    remaining = (job.deadline_at - now).total_seconds()
    wait = max(1, math.floor(min(backoff, remaining)))
    logger.info("status check failed; trying again later", extra={"error": reason, "failed_checks": failed})
    poll = state.poll.model_copy(
        update={"wait_seconds": wait, "failed_checks": failed, "deadline_passed": job.deadline_at - now < _LAST_WAIT}
    )
    return RenderState(job=job, poll=poll)


def _deferred(state: RenderState, now: datetime, wait_seconds: float, reason: str) -> RenderState:
    """No call: the same status, and the next check after `wait_seconds` (never past the deadline)."""
    job = state.job
    remaining = (job.deadline_at - now).total_seconds()
    wait = max(1, math.floor(min(math.ceil(wait_seconds), remaining)))
    logger.info("status check deferred", extra={"reason": reason, "wait_seconds": wait})
    deadline_passed = job.deadline_at - now < _LAST_WAIT
    poll = state.poll.model_copy(update={"wait_seconds": wait, "deadline_passed": deadline_passed})
    return RenderState(job=job, poll=poll)


def _after_throttle(
    state: RenderState, now: datetime, reset_seconds: float, schedule: PollSchedule, learned: RenderStats
) -> float:
    """Seconds to wait after Segmind's own 429: to the reset it named, plus a deterministic spread (by job
    and moment) of up to the scheduled interval, as checks throttled together must not come back together."""
    job = state.job
    scheduled = schedule.next_wait(job.submitted_at, now, job.deadline_at, state.poll.wait_seconds, learned)
    spread = zlib.crc32(f"{job.job_id}:{state.poll.polls}:{now.timestamp():.3f}".encode()) % (scheduled + 1)
    return max(1.0, reset_seconds) + spread
