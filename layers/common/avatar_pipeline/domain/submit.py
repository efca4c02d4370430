"""Submit: a job file arrived in inbox/ -> validate -> check media -> POST once -> start the execution.

Exactly once: the provider bills every accepted POST and S3/EventBridge/SQS deliver at least once.
The jobs table item is the guard: only the worker that creates the SUBMITTING item may POST; the
request id is recorded before anything else can fail; a redelivery finds the item and only
(re)starts the execution. A POST is retried only when it provably never reached the provider.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from avatar_pipeline.adapters.request_budget import Denied
from avatar_pipeline.adapters.storage import ObjectMissing, ObjectReplaced, ObjectTooLarge, plain_etag
from avatar_pipeline.domain.context import InboxObject, JobRef
from avatar_pipeline.domain.failure import fail_job
from avatar_pipeline.domain.inbox import media_named_in, model_named_in
from avatar_pipeline.domain.poll_policy import render_class
from avatar_pipeline.errors import (
    InvalidJob,
    MediaNotYetAvailable,
    MediaTooLarge,
    MissingMedia,
    PipelineError,
    ProviderBadResponse,
    ProviderConnectionError,
    ProviderThrottled,
    ProviderUnavailable,
    SubmissionInProgress,
    SubmissionUncertain,
    TransientError,
    UnsupportedMedia,
)
from avatar_pipeline.jobs.spec import AvatarIVJob, AvatarVJob, parse_job_file
from avatar_pipeline.keys import (
    UnsafeKey,
    default_video_key,
    derive_job_id,
    is_job_file_key,
    resolve_media_key,
    without_query,
)
from avatar_pipeline.media import SNIFF_BYTES, sniff_audio, sniff_image
from avatar_pipeline.observability import job_submitted, logger
from avatar_pipeline.records import JobRecord, JobStatus
from avatar_pipeline.state import PollState, RenderJob, RenderState

if TYPE_CHECKING:
    from avatar_pipeline.runtime import Dependencies

MEDIA_RECHECK_SECONDS = 15
# A backlog of submits denied by the request budget comes back spread out, not in lockstep.
BUDGET_RETRY_SPREAD_SECONDS = 110


class SubmitResult(StrEnum):
    STARTED = "STARTED"  # posted to the provider and the execution started
    RESUMED = "RESUMED"  # already posted earlier; the execution was (re)started
    DUPLICATE = "DUPLICATE"  # already rendering or finished: nothing to do
    REJECTED = "REJECTED"  # failed fast with a report (bad input, provider refusal)
    IGNORED = "IGNORED"  # not a job file, or an upload that has since been replaced or removed


def submit_job(obj: InboxObject, deps: Dependencies) -> SubmitResult:
    if obj.bucket != deps.settings.input_bucket or not is_job_file_key(obj.key):
        logger.warning("ignoring an object that is not a job file", extra={"key": obj.key})
        return SubmitResult.IGNORED
    job_id = derive_job_id(obj.bucket, obj.key, obj.version_id or obj.etag, obj.sequencer)
    logger.set_correlation_id(job_id)
    existing = deps.jobs.get(job_id)
    if existing is not None:
        return _continue_existing(existing, obj, deps)

    head = deps.storage.head(obj.bucket, obj.key)
    if head is None or (obj.etag and head.etag != obj.etag.strip('"')):
        logger.info("job file was replaced or removed since the event; its own event covers it")
        return SubmitResult.IGNORED
    # The job holds on to the ETags of what it read: when it ends, only those objects leave inbox/.
    ref = JobRef(
        job_id=job_id, input_bucket=obj.bucket, job_key=obj.key, received_at=obj.event_time, job_etag=head.etag or None
    )
    raw = b""
    try:
        raw = _read_job_file(obj, ref.job_etag, deps)
        spec = parse_job_file(raw)
        ref = replace(ref, model=spec.model, metadata=dict(spec.metadata))
        media_keys = _resolve_media(obj.key, spec)
        ref = replace(ref, media_keys=tuple(media_keys.values()))
        ref = replace(ref, media_etags=_check_media(obj, media_keys, deps))
    except MediaNotYetAvailable:
        raise
    except ObjectReplaced:
        logger.info("job file was replaced while it was read; its own event covers the new upload")
        return SubmitResult.IGNORED
    except PipelineError as error:
        if ref.model is None:
            # Too broken to validate: still name its model and take the files it names out of inbox/.
            ref = replace(ref, model=model_named_in(raw), media_keys=media_named_in(obj.key, raw))
        fail_job(ref, error.code, error.message, deps)
        return SubmitResult.REJECTED
    return _post_once(ref, obj, spec, media_keys, deps)


def _media_recheck_delay(receive_count: int, remaining_seconds: float, max_receives: int) -> int:
    """Early rechecks come quickly (media usually follows its job file within seconds), later ones
    back off; the next-to-last receive waits out the rest, so the last one falls at the deadline.
    Every recheck is an SQS receive, and the queue's redrive allows only `max_receives` of them."""
    if receive_count >= max_receives - 1:
        return max(1, math.ceil(remaining_seconds))
    backoff: int = MEDIA_RECHECK_SECONDS * 2 ** (receive_count - 1)
    return max(1, min(math.ceil(remaining_seconds), backoff))


def retry_delay_for(error: TransientError, now: datetime) -> int | None:
    """Seconds until a record that failed transiently should be tried again (None: the queue's default)."""
    if isinstance(error, MediaNotYetAvailable):
        return error.retry_after_seconds
    if isinstance(error, ProviderThrottled) and error.reset_at is not None:
        return max(1, min(120, math.ceil((error.reset_at - now).total_seconds()) + 1))
    if isinstance(error, ProviderThrottled | SubmissionInProgress):
        return 30
    return None


def _read_job_file(obj: InboxObject, etag: str | None, deps: Dependencies) -> bytes:
    try:
        return deps.storage.read(obj.bucket, obj.key, deps.settings.max_job_file_bytes, if_match=etag)
    except ObjectTooLarge as exc:
        raise InvalidJob(f"the job file is {exc.size} bytes; job files are at most {exc.limit} bytes") from None
    except ObjectMissing:
        raise InvalidJob("the job file disappeared before it could be read") from None


def _resolve_media(job_key: str, spec: AvatarIVJob | AvatarVJob) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for parameter, reference in spec.media_references().items():
        try:
            resolved[parameter] = resolve_media_key(job_key, reference)
        except UnsafeKey as exc:
            field = "photo" if parameter == "image_url" else "audio"
            raise InvalidJob(f"{field}: {exc}") from None
    return resolved


def _check_media(obj: InboxObject, media_keys: dict[str, str], deps: Dependencies) -> dict[str, str]:
    """Each media file is there, within its limit and of its kind; returns their ETags by key."""
    settings = deps.settings
    etags: dict[str, str] = {}
    for parameter, key in media_keys.items():
        is_photo = parameter == "image_url"
        info = deps.storage.head(obj.bucket, key)
        if info is None:
            # S3's clock and ours may disagree a little: a negative wait counts as none.
            waited = max(0.0, (deps.clock.now() - obj.event_time).total_seconds())
            remaining = settings.media_wait_seconds - waited
            last_receive = obj.receive_count >= settings.submit_max_receives
            if remaining > 0 and not last_receive:
                raise MediaNotYetAvailable(
                    f"{key} has not arrived yet (waited {waited:.0f} s)",
                    retry_after_seconds=_media_recheck_delay(
                        obj.receive_count, remaining, settings.submit_max_receives
                    ),
                )
            raise MissingMedia(f"{key} was not found beside the job file (waited {waited:.0f} s)")
        limit = settings.max_photo_bytes if is_photo else settings.max_audio_bytes
        if info.size == 0:
            raise UnsupportedMedia(f"{key} is empty")
        if info.size > limit:
            raise MediaTooLarge(f"{key} is {info.size} bytes; the limit is {limit} bytes")
        head = deps.storage.read_prefix(obj.bucket, key, SNIFF_BYTES)
        kind = sniff_image(head) if is_photo else sniff_audio(head)
        if kind is None:
            expected = "a PNG, JPEG or WebP image" if is_photo else "WAV, MP3, M4A, OGG or FLAC audio"
            raise UnsupportedMedia(f"{key} is not {expected} (checked by its content)")
        if info.etag:
            etags[key] = info.etag
    return etags


def _post_once(
    ref: JobRef, obj: InboxObject, spec: AvatarIVJob | AvatarVJob, media_keys: dict[str, str], deps: Dependencies
) -> SubmitResult:
    now = deps.clock.now()
    settings = deps.settings
    claim = JobRecord(
        job_id=ref.job_id,
        status=JobStatus.SUBMITTING,
        model=spec.model,
        input_bucket=ref.input_bucket,
        job_key=ref.job_key,
        media_keys=list(media_keys.values()),
        received_at=ref.received_at,
        updated_at=now,
        lease_until=now + timedelta(seconds=settings.submit_lease_seconds),
        claimed_by_message=obj.message_id,
        expires_at=int((now + timedelta(days=settings.job_record_ttl_days)).timestamp()),
    )
    if not deps.jobs.claim_submission(claim):
        existing = deps.jobs.get(ref.job_id)
        if existing is None:
            raise SubmissionInProgress("the job record vanished while claiming it; retrying")
        return _continue_existing(existing, obj, deps)

    media_urls = {
        parameter: deps.storage.presign_get(ref.input_bucket, key, settings.presign_expiry_seconds)
        for parameter, key in media_keys.items()
    }
    payload = spec.provider_payload(media_urls)
    try:
        _take_submit_token(ref.job_id, deps)
        accepted = deps.provider.submit(spec.model, payload)
    except (ProviderConnectionError, ProviderThrottled, ProviderUnavailable):
        # Provably not accepted: give the lease back so SQS redelivery can try again.
        deps.jobs.release_submission(ref.job_id)
        raise
    except ProviderBadResponse as error:
        # A 2xx we cannot read may still be an accepted (billed) job: do not post again.
        fail_job(ref, SubmissionUncertain.code, f"{error.message}; the job may have been accepted", deps)
        return SubmitResult.REJECTED
    except PipelineError as error:
        fail_job(ref, error.code, error.message, deps)
        return SubmitResult.REJECTED

    submitted_at = deps.clock.now()
    render_job = RenderJob(
        job_id=ref.job_id,
        model=spec.model,
        request_id=accepted.request_id,
        input_bucket=ref.input_bucket,
        job_key=ref.job_key,
        media_keys=list(media_keys.values()),
        job_etag=ref.job_etag,
        media_etags=dict(ref.media_etags),
        video_key=spec.output_key or default_video_key(ref.job_key, spec.video_extension),
        video_extension="webm" if spec.video_extension == "webm" else "mp4",
        wants_captions=spec.wants_captions,
        title=getattr(spec, "video_title", None),
        parameters=_recordable(payload, media_urls),
        metadata=dict(spec.metadata),
        received_at=ref.received_at,
        submitted_at=submitted_at,
        deadline_at=submitted_at + timedelta(minutes=settings.render_deadline_minutes),
    )
    deps.jobs.mark_submitted(ref.job_id, accepted.request_id, submitted_at, render_job.model_dump_json())
    logger.info("submitted to Segmind", extra={"request_id": accepted.request_id, "model": spec.model})
    job_submitted(spec.model)
    _start_execution(render_job, deps)
    return SubmitResult.STARTED


def _take_submit_token(job_id: str, deps: Dependencies) -> None:
    """Wait in the queue, not in a 429: a denial is a ProviderThrottled, which the caller's except
    clause already handles (claim released, SQS redelivers after retry_delay_for)."""
    if deps.request_budget is None:
        return
    now = deps.clock.now()
    decision = deps.request_budget.try_acquire("submit", now)
    if isinstance(decision, Denied):
        raise decision.as_error(now, f"{job_id}:{now.isoformat()}", BUDGET_RETRY_SPREAD_SECONDS)


_URL_PARAMETERS = ("image_url", "audio_url", "video_url", "background")


def _recordable(payload: dict[str, Any], media_urls: dict[str, str]) -> dict[str, Any]:
    """The parameters sent, as the manifest and job record keep them: our own presigned URLs left
    out, and any URL the job file gave without its query string (it may be the user's presigned one)."""
    kept = {k: v for k, v in payload.items() if k not in media_urls}
    for name in _URL_PARAMETERS:
        if isinstance(kept.get(name), str):
            kept[name] = without_query(kept[name])
    return kept


def _start_execution(render_job: RenderJob, deps: Dependencies) -> None:
    # The first check comes from what was learned about renders like this one (or the prior);
    # next_wait also resumes correctly when an old job's execution is (re)started late.
    learned = (
        deps.render_stats.get(render_class(render_job.model, render_job.parameters)) if deps.render_stats else None
    )
    now = deps.clock.now()
    first_wait = deps.poll_schedule.next_wait(render_job.submitted_at, now, render_job.deadline_at, 1, learned)
    state = RenderState(job=render_job, poll=PollState(status="QUEUED", wait_seconds=first_wait))
    execution_arn = deps.executions.start(render_job.job_id, state)
    deps.jobs.mark_rendering(render_job.job_id, execution_arn, deps.clock.now())


def _continue_existing(record: JobRecord, obj: InboxObject, deps: Dependencies) -> SubmitResult:
    """A redelivered event for a job we already know: never POST again."""
    if record.status in (JobStatus.RENDERING, JobStatus.SUCCEEDED, JobStatus.FAILED):
        logger.info("duplicate delivery ignored", extra={"status": record.status.value})
        return SubmitResult.DUPLICATE
    if record.status == JobStatus.SUBMITTED and record.render_job_json:
        _start_execution(RenderJob.model_validate_json(record.render_job_json), deps)
        return SubmitResult.RESUMED
    # SUBMITTING: a worker claimed the job and may have posted it.
    own_message = obj.message_id is not None and obj.message_id == record.claimed_by_message
    lease_running = record.lease_until is not None and record.lease_until > deps.clock.now()
    if lease_running and not own_message:
        # Another delivery of the same event is being submitted right now. Its message stays on the
        # queue until that worker records the outcome (and comes back if the worker dies), so this
        # copy can go: waiting on it would only spend the queue's receives.
        logger.info("duplicate delivery dropped while another worker submits the job")
        return SubmitResult.DUPLICATE
    # The claiming worker's own message came back, or its lease ran out: it died mid-submit.
    ref = JobRef(
        job_id=record.job_id,
        input_bucket=record.input_bucket,
        job_key=record.job_key,
        received_at=record.received_at,
        media_keys=tuple(record.media_keys),
        model=record.model,
        job_etag=plain_etag(obj.etag) or None,  # the job id derives from this upload: its ETag
    )
    fail_job(
        ref,
        SubmissionUncertain.code,
        "a previous submit attempt stopped before its outcome was recorded; it may have been "
        "accepted by Segmind, so it was not repeated",
        deps,
    )
    return SubmitResult.REJECTED
