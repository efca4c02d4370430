"""Finalize: fetch the finished render's result, copy the video (and captions) into the output bucket,
then close the job (inputs archived, manifest last, one notification: domain/closing.py).

Safe to run twice, at once, and to crash in, without a lock: each object is written whole or not at
all (the multipart upload is aborted on failure) and a second copy writes the same bytes; the manifest
is written only after everything it describes, so a run that finds this job's manifest finishes the
ending from it without fetching again; every write of the ending is idempotent and the notification is
granted once by the jobs table. A run that dies is retried by the state machine at once: nothing it
held has to expire first.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from avatar_pipeline.domain.closing import Delivered, close_job
from avatar_pipeline.domain.context import JobRef
from avatar_pipeline.domain.ports import CopiedObject, FinalizePorts, ObjectMissing, ObjectTooLarge
from avatar_pipeline.domain.pricing import provider_cost
from avatar_pipeline.domain.request_budget import Denied
from avatar_pipeline.errors import (
    ProviderBadResponse,
    ProviderJobFailed,
    ResultUnavailable,
    TransientError,
)
from avatar_pipeline.keys import sibling_key
from avatar_pipeline.observability import logger
from avatar_pipeline.provider.wire import RenderResult
from avatar_pipeline.records import Manifest, Timings
from avatar_pipeline.state import FetchRetry, JobOutcome, RenderJob, RenderState

if TYPE_CHECKING:
    from avatar_pipeline.clock import Clock

# Kept back from the invocation's remaining time when the copies start: what Finalize does after
# them (archive the inputs, manifest, jobs table, notification: a few seconds) or, if a copy runs out
# of time, waiting for the parts still sending (at most 4 x 8 MiB) and aborting the upload. A tenth
# of the remaining time at most, for functions with short timeouts (the time-scaled local stack).
COPY_RESERVE_SECONDS = 15.0
# Segmind keeps a request's result for an hour after submission. A finished render is fetched again
# (after a transient fault) until shortly before that: the margin covers one more attempt and clocks.
RESULT_RETENTION = timedelta(hours=1)
RESULT_RETENTION_MARGIN = timedelta(minutes=2)
# Far above any manifest (a few KiB): reading one never holds a whole video in memory.
MANIFEST_MAX_BYTES = 1024 * 1024
_FETCH_RETRY_FIRST_SECONDS = 5
_FETCH_RETRY_MAX_SECONDS = 60


def finalize_or_retry_later(
    state: RenderState,
    clock: Clock,
    finalize: Callable[[RenderState], JobOutcome],
    retryable: tuple[type[BaseException], ...] = (TransientError,),
) -> JobOutcome | RenderState:
    """Run `finalize` (finalize_job, made idempotent by the caller). A transient fault (Segmind's
    5xx/429/timeouts, the request budget, a failed download or upload; `retryable` adds the AWS SDK's
    errors) does not end the job: the render is finished and billed, so the state comes back with a
    `fetch_retry` wait and the state machine runs Finalize again, with backoff, until shortly before
    Segmind drops the result. Only then does the job fail, with RESULT_UNAVAILABLE."""
    try:
        return finalize(state)
    except retryable as fault:
        reason = fault.message if isinstance(fault, TransientError) else f"{type(fault).__name__}: {fault}"
        return _fetch_again_later(state, reason, clock.now())


def fetch_retry_wait(job_id: str, attempts: int) -> int:
    """Seconds before Finalize runs again after its `attempts`-th transient failure: 5 s doubling up to a
    minute, between half and all of that step, the same for the same job and attempt, so finishes that
    failed together (a provider outage) do not all come back together."""
    step: int = min(_FETCH_RETRY_MAX_SECONDS, _FETCH_RETRY_FIRST_SECONDS * 2 ** min(attempts - 1, 10))
    return max(1, step - zlib.crc32(f"{job_id}:{attempts}".encode()) % (step // 2 + 1))


def _fetch_again_later(state: RenderState, fault: str, now: datetime, grace: timedelta = timedelta(0)) -> RenderState:
    attempts = (state.fetch_retry.attempts if state.fetch_retry else 0) + 1
    wait = fetch_retry_wait(state.job.job_id, attempts)
    give_up_at = state.job.submitted_at + RESULT_RETENTION - RESULT_RETENTION_MARGIN
    if now + timedelta(seconds=wait) >= give_up_at:
        minutes = (now - state.job.submitted_at).total_seconds() / 60
        raise ResultUnavailable(
            f"the render finished (and was billed), but its result could not be fetched and copied in "
            f"{attempts} attempts over the hour Segmind keeps it ({minutes:.0f} minutes after submission; "
            f"the last error: {fault})"
        )
    logger.info(
        "the finished render could not be fetched this time; trying again later",
        extra={"error": fault, "attempt": attempts, "wait_seconds": wait},
    )
    return state.model_copy(update={"fetch_retry": FetchRetry(attempts=attempts, wait_seconds=wait, last_error=fault)})


def copy_deadline(remaining_ms: int, now: float) -> float:
    """The `time.monotonic()` instant by which the copies must be done, `remaining_ms` from `now`."""
    remaining = remaining_ms / 1000
    return now + remaining - min(COPY_RESERVE_SECONDS, remaining / 10)


def finalize_job(state: RenderState, ports: FinalizePorts, remaining_ms: Callable[[], int] | None = None) -> JobOutcome:
    """`remaining_ms`: the invocation's time left (the Lambda context's get_remaining_time_in_millis);
    a copy that cannot finish before it (less COPY_RESERVE_SECONDS) aborts its upload and raises
    OutputTransferError, which finalize_or_retry_later turns into another try, instead of being
    killed by the timeout."""
    delivered = _delivered_before(state, ports)
    if delivered is None:
        result = _fetch_result(state.job, ports)
        deadline = copy_deadline(remaining_ms(), time.monotonic()) if remaining_ms is not None else None
        video, captions = _copy_outputs(state.job, result, ports, deadline)
        delivered = Delivered(
            job=state.job,
            video=video,
            captions_key=captions.key if captions else None,
            timings=_timings(state, ports.clock.now()),
            provider_metrics=result.metrics,
            status_calls=state.poll.polls,
            provider_cost=_reported_cost(result, state),
        )
    return close_job(JobRef.from_render_job(state.job), delivered, ports)


def _delivered_before(state: RenderState, ports: FinalizePorts) -> Delivered | None:
    """The job as an earlier run delivered it, if that run died after writing the manifest.

    The manifest is written after everything it describes, so its presence means the video (and
    captions) are complete: the ending is finished from it, without fetching the result again
    (Segmind may have dropped it by now; the render was billed). Any other document at that key (not
    this job's request) is none of ours: the copy goes ahead and its manifest replaces it.
    """
    job = state.job
    try:
        body = ports.storage.read(ports.settings.output_bucket, sibling_key(job.video_key, "json"), MANIFEST_MAX_BYTES)
        manifest = Manifest.model_validate_json(body)
    except (ObjectMissing, ObjectTooLarge, ValueError):
        return None
    if (manifest.job_id, manifest.request_id) != (job.job_id, job.request_id):
        return None
    logger.info("the manifest is there: an earlier run delivered the job and died before ending it")
    video = manifest.video
    return Delivered(
        job=job,
        video=CopiedObject(manifest.outputs.video_key, video.size, video.sha256, video.content_type),
        captions_key=manifest.outputs.captions_key,
        timings=manifest.timings,
        provider_metrics=manifest.provider_metrics,
        status_calls=state.poll.polls,
        provider_cost=manifest.cost_usd if manifest.cost_source == "provider" else None,
    )


def _reported_cost(result: RenderResult, state: RenderState) -> Decimal | None:
    """Segmind's cost for the request: from the result, else from the status check that saw it complete."""
    reported = provider_cost(result.metrics)
    return reported if reported is not None else provider_cost(state.poll.provider_metrics)


def _fetch_result(job: RenderJob, ports: FinalizePorts) -> RenderResult:
    """A token from the request budget, then GET the result; transient errors when either must wait."""
    if ports.budget is not None:
        now = ports.clock.now()
        decision = ports.budget.try_acquire("result", now)
        if isinstance(decision, Denied):
            raise decision.as_error(now)  # ProviderThrottled: finalize_or_retry_later waits it out
    result = ports.provider.result(job.request_id)
    if isinstance(result, RenderResult):
        return result
    if result.status == "FAILED":
        raise ProviderJobFailed(result.error or "Segmind reported the render as FAILED")
    raise ProviderBadResponse(f"the result is not ready (status {result.status})")


def _copy_outputs(
    job: RenderJob, result: RenderResult, ports: FinalizePorts, deadline: float | None
) -> tuple[CopiedObject, CopiedObject | None]:
    bucket = ports.settings.output_bucket
    object_metadata = {"job-id": job.job_id, "request-id": job.request_id, "model": job.model}
    video = ports.copier.copy(result.video_url, bucket, job.video_key, "video", object_metadata, deadline)
    if result.caption_url:
        captions_key = sibling_key(job.video_key, "srt")
        return video, ports.copier.copy(result.caption_url, bucket, captions_key, "captions", object_metadata, deadline)
    if job.wants_captions:
        logger.warning("captions were requested but the result carries no caption URL")
    return video, None


def _timings(state: RenderState, now: datetime) -> Timings:
    job, poll = state.job, state.poll
    return Timings(
        received_at=job.received_at,
        submitted_at=job.submitted_at,
        completed_at=now,
        queued_seconds=_seconds(job.submitted_at, poll.first_seen_processing_at),
        rendering_seconds=_seconds(poll.first_seen_processing_at, poll.completed_seen_at),
        total_seconds=round((now - job.received_at).total_seconds(), 3),
    )


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)
