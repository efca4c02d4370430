"""Poll: one status check, and the wait before the next one. The loop itself lives in the ASL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from avatar_pipeline.domain.poll_policy import PollPolicy
from avatar_pipeline.state import PollState, RenderState

if TYPE_CHECKING:
    from avatar_pipeline.runtime import Dependencies


def check_status(state: RenderState, deps: Dependencies, policy: PollPolicy | None = None) -> RenderState:
    """Ask Segmind once; transient faults and 404 (RESULT_EXPIRED) propagate as typed errors."""
    policy = policy or PollPolicy()
    report = deps.provider.status(state.job.request_id)
    now = deps.clock.now()
    job = state.job
    polls = state.poll.polls + 1
    finished = report.status in ("COMPLETED", "FAILED")
    deps.jobs.record_poll(job.job_id, report.status, polls, now)
    next_poll = PollState(
        status=report.status,
        wait_seconds=policy.next_wait(job.submitted_at, now, job.deadline_at, state.poll.wait_seconds),
        polls=polls,
        deadline_passed=not finished and now >= job.deadline_at,
        error_message=report.error if report.status == "FAILED" else None,
        provider_metrics=report.metrics,
        first_seen_processing_at=state.poll.first_seen_processing_at
        or (now if report.status in ("PROCESSING", "COMPLETED") else None),
        completed_seen_at=now if report.status == "COMPLETED" else None,
    )
    return RenderState(job=job, poll=next_poll)
