"""Finalize: copy the finished video (and captions) into the output bucket, manifest last, notify once.

Safe to run twice and to crash in: each object is written whole or not at all (the multipart
upload is aborted on failure), the manifest is written only after everything it describes, and
the notification is granted once by the jobs table.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from avatar_pipeline.adapters.request_budget import Denied
from avatar_pipeline.adapters.transfer import CopiedObject
from avatar_pipeline.domain.context import JobRef
from avatar_pipeline.domain.inbox import archive_inputs
from avatar_pipeline.domain.notify import publish_once
from avatar_pipeline.errors import (
    ProviderBadResponse,
    ProviderJobFailed,
    ResultUnavailable,
    TransientError,
)
from avatar_pipeline.keys import sibling_key
from avatar_pipeline.observability import job_succeeded, logger
from avatar_pipeline.provider.wire import RenderResult
from avatar_pipeline.records import JobStatus, Manifest, Notification, Timings
from avatar_pipeline.state import FetchRetry, JobOutcome, RenderState

if TYPE_CHECKING:
    from avatar_pipeline.runtime import Dependencies

# Kept back from the invocation's remaining time when the copies start: what Finalize does after
# them (archive the inputs, manifest, jobs table, notification: a few seconds) or, if a copy runs out
# of time, waiting for the parts still sending (at most 4 x 8 MiB) and aborting the upload. A tenth
# of the remaining time at most, for functions with short timeouts (the time-scaled local stack).
COPY_RESERVE_SECONDS = 15.0
# Segmind keeps a request's result for an hour after submission. A finished render is fetched again
# (after a transient fault) until shortly before that: the margin covers one more attempt and clocks.
RESULT_RETENTION = timedelta(hours=1)
RESULT_RETENTION_MARGIN = timedelta(minutes=2)
_FETCH_RETRY_FIRST_SECONDS = 5
_FETCH_RETRY_MAX_SECONDS = 60


def finalize_or_retry_later(
    state: RenderState, deps: Dependencies, finalize: Callable[[RenderState], JobOutcome]
) -> JobOutcome | RenderState:
    """Run `finalize` (finalize_job, made idempotent by the caller). A transient fault (Segmind's
    5xx/429/timeouts, the request budget, a failed download or upload) does not end the job: the
    render is finished and billed, so the state comes back with a `fetch_retry` wait and the state
    machine runs Finalize again, with backoff, until shortly before Segmind drops the result. Only
    then does the job fail, with RESULT_UNAVAILABLE."""
    try:
        return finalize(state)
    except TransientError as fault:
        return _fetch_again_later(state, fault.message, deps.clock.now())
    except (ClientError, BotoCoreError) as fault:
        # An AWS call failed (throttled, a blip): the same as a provider fault, not the job's end.
        return _fetch_again_later(state, f"{type(fault).__name__}: {fault}", deps.clock.now())


def fetch_retry_wait(job_id: str, attempts: int) -> int:
    """Seconds before Finalize runs again after its `attempts`-th transient failure: 5 s doubling up to a
    minute, between half and all of that step, the same for the same job and attempt, so finishes that
    failed together (a provider outage) do not all come back together."""
    step: int = min(_FETCH_RETRY_MAX_SECONDS, _FETCH_RETRY_FIRST_SECONDS * 2 ** min(attempts - 1, 10))
    return max(1, step - zlib.crc32(f"{job_id}:{attempts}".encode()) % (step // 2 + 1))


def _fetch_again_later(state: RenderState, fault: str, now: datetime) -> RenderState:
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


def finalize_job(state: RenderState, deps: Dependencies, remaining_ms: Callable[[], int] | None = None) -> JobOutcome:
    """`remaining_ms`: the invocation's time left (the Lambda context's get_remaining_time_in_millis);
    a copy that cannot finish before it (less COPY_RESERVE_SECONDS) aborts its upload and raises
    OutputTransferError, which the state machine retries, instead of being killed by the timeout."""
    job = state.job
    settings = deps.settings
    if deps.request_budget is not None:
        now = deps.clock.now()
        decision = deps.request_budget.try_acquire("result", now)
        if isinstance(decision, Denied):
            raise decision.as_error(now)  # ProviderThrottled: the ASL's Retry brings it back
    result = deps.provider.result(job.request_id)
    if not isinstance(result, RenderResult):
        if result.status == "FAILED":
            raise ProviderJobFailed(result.error or "Segmind reported the render as FAILED")
        raise ProviderBadResponse(f"the result is not ready (status {result.status})")

    object_metadata = {"job-id": job.job_id, "request-id": job.request_id, "model": job.model}
    deadline = copy_deadline(remaining_ms(), time.monotonic()) if remaining_ms is not None else None
    video = deps.copier.copy(
        result.video_url, settings.output_bucket, job.video_key, "video", object_metadata, deadline
    )
    captions: CopiedObject | None = None
    if result.caption_url:
        captions = deps.copier.copy(
            result.caption_url,
            settings.output_bucket,
            sibling_key(job.video_key, "srt"),
            "captions",
            object_metadata,
            deadline,
        )
    elif job.wants_captions:
        logger.warning("captions were requested but the result carries no caption URL")

    now = deps.clock.now()
    manifest_key = sibling_key(job.video_key, "json")
    output_keys = [video.key, *([captions.key] if captions else []), manifest_key]
    ref = JobRef.from_render_job(job)
    archived = archive_inputs(ref, True, deps.storage, deps.media_users, now)
    timings = Timings(
        received_at=job.received_at,
        submitted_at=job.submitted_at,
        completed_at=now,
        queued_seconds=_seconds(job.submitted_at, state.poll.first_seen_processing_at),
        rendering_seconds=_seconds(state.poll.first_seen_processing_at, state.poll.completed_seen_at),
        total_seconds=round((now - job.received_at).total_seconds(), 3),
    )
    manifest = Manifest(
        job_id=job.job_id,
        model=job.model,
        request_id=job.request_id,
        parameters=job.parameters,
        input={
            "bucket": job.input_bucket,
            "job_key": job.job_key,
            "media_keys": job.media_keys,
            "archived": archived.moved,
            "superseded": archived.superseded,
            "kept": archived.kept,
        },
        outputs={
            "bucket": settings.output_bucket,
            "video_key": video.key,
            "captions_key": captions.key if captions else None,
        },
        video={"size": video.size, "sha256": video.sha256, "content_type": video.content_type},
        timings=timings,
        provider_metrics=result.metrics,
        metadata=job.metadata,
    )
    # Written last: its presence tells consumers the video and captions are complete.
    deps.storage.put_json(settings.output_bucket, manifest_key, manifest)

    previous = deps.jobs.get(job.job_id)
    deps.jobs.save_terminal(
        ref.terminal_record(
            JobStatus.SUCCEEDED, now, settings.job_record_ttl_days, output_keys=output_keys, previous=previous
        )
    )
    notification = Notification(
        job_id=job.job_id,
        status="SUCCEEDED",
        model=job.model,
        input={
            "bucket": job.input_bucket,
            "job_key": job.job_key,
            "archived_keys": archived.moved,
            "superseded_keys": archived.superseded,
            "kept_keys": archived.kept,
        },
        output={
            "bucket": settings.output_bucket,
            "video_key": video.key,
            "captions_key": captions.key if captions else None,
            "manifest_key": manifest_key,
            "size": video.size,
            "sha256": video.sha256,
        },
        timings=timings.model_dump(mode="json"),
        metadata=job.metadata,
    )
    notified = publish_once(notification, deps)
    logger.info("job succeeded", extra={"video_key": video.key, "size": video.size})
    job_succeeded(job.model, timings.total_seconds, timings.rendering_seconds, state.poll.polls)
    return JobOutcome(job_id=job.job_id, status="SUCCEEDED", output_keys=output_keys, notified=notified)


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start).total_seconds(), 3)
