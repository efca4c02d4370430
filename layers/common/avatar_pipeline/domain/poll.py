"""Poll: one status check, and the wait before the next one. The loop itself lives in the ASL.

The wait comes from the poll policy and what has been learned about renders of the same class
(model + resolution); a check that sees COMPLETED teaches it one more render time. With a request
budget, a check takes a token first; when the budget is spent the provider is not called at all:
the same state comes back with a short wait, so the ASL simply loops once more. (Raising a
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
from avatar_pipeline.domain.ports import PollPorts
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
    if ports.budget is not None:
        decision = ports.budget.try_acquire("poll", ports.clock.now())
        if isinstance(decision, Denied):
            return _deferred(state, ports.clock.now(), decision, ports.schedule, learned)
    try:
        report = ports.provider.status(job.request_id)
    except ProviderThrottled as throttled:
        # Segmind says when its window resets: check again then, without spending a Retry attempt.
        now = ports.clock.now()
        return _deferred(state, now, Denied("poll", max(1.0, throttled_wait(throttled, now))), ports.schedule, learned)
    except _CHECK_FAULTS as fault:
        return _after_failed_check(state, ports.clock.now(), fault.message)
    return _after_check(state, report, ports, kind, learned)


def _after_check(
    state: RenderState, report: StatusReport, ports: PollPorts, kind: str, learned: RenderStats
) -> RenderState:
    """Record what Segmind said, learn a render time from a completion, and schedule the next check."""
    job = state.job
    now = ports.clock.now()
    polls = state.poll.polls + 1
    finished = report.status in ("COMPLETED", "FAILED")
    ports.jobs.record_poll(job.job_id, report.status, polls, now)
    if report.status == "COMPLETED" and ports.render_stats is not None:
        elapsed = (now - job.submitted_at).total_seconds()
        last_check = state.poll.last_checked_at
        # Checks deferred by the budget did not look: the render finished after the last real one.
        since_last_check = (now - last_check).total_seconds() if last_check else float(state.poll.wait_seconds)
        ports.render_stats.record(kind, observed_render_seconds(elapsed, since_last_check, report.metrics), now)
    next_poll = PollState(
        status=report.status,
        wait_seconds=ports.schedule.next_wait(job.submitted_at, now, job.deadline_at, state.poll.wait_seconds, learned),
        polls=polls,
        deadline_passed=not finished and job.deadline_at - now < _LAST_WAIT,
        error_message=report.error if report.status == "FAILED" else None,
        provider_metrics=report.metrics,
        first_seen_processing_at=state.poll.first_seen_processing_at
        or (now if report.status in ("PROCESSING", "COMPLETED") else None),
        completed_seen_at=now if report.status == "COMPLETED" else None,
        last_checked_at=now,
        failed_checks=0,
    )
    return RenderState(job=job, poll=next_poll)


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


def _deferred(
    state: RenderState, now: datetime, denied: Denied, policy: PollSchedule, learned: RenderStats
) -> RenderState:
    """The budget is spent: no call, the same status, and a wait until a token is likely free.

    Checks denied together would all come back together and all but one be denied again, and when
    tokens are scarce retrying sooner than the schedule buys nothing, so the wait is the time to the
    next token plus a deterministic spread (by job and moment) of up to the scheduled interval.
    """
    job = state.job
    remaining = (job.deadline_at - now).total_seconds()
    scheduled = policy.next_wait(job.submitted_at, now, job.deadline_at, state.poll.wait_seconds, learned)
    spread = zlib.crc32(f"{job.job_id}:{state.poll.polls}:{now.timestamp():.3f}".encode()) % (scheduled + 1)
    wait = max(1, math.floor(min(math.ceil(denied.retry_after_seconds) + spread, remaining)))
    logger.info(
        "status check deferred: the request budget is spent",
        extra={"retry_after_seconds": round(denied.retry_after_seconds, 2), "wait_seconds": wait},
    )
    deadline_passed = job.deadline_at - now < _LAST_WAIT
    poll = state.poll.model_copy(update={"wait_seconds": wait, "deadline_passed": deadline_passed})
    return RenderState(job=job, poll=poll)
