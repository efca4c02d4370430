"""Submit: a job file arrived in inbox/ -> validate -> check media -> POST once -> start the execution.

Exactly once: the provider bills every accepted POST and S3/EventBridge/SQS deliver at least once.
The jobs table item is the guard: only the worker that creates the SUBMITTING item may POST; the
request id is recorded before anything else can fail; a redelivery finds the item and only
(re)starts the execution. A POST is retried only when it provably never reached the provider.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace
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
    OutputConflict,
    PipelineError,
    ProviderBadResponse,
    ProviderConnectionError,
    ProviderThrottled,
    ProviderUnavailable,
    SubmissionInProgress,
    SubmissionUncertain,
    SubmitNeverAccepted,
    TransientError,
    UnsupportedMedia,
)
from avatar_pipeline.jobs.spec import AvatarIVJob, AvatarVJob, parse_job_file
from avatar_pipeline.keys import (
    UnsafeKey,
    default_video_key,
    derive_job_id,
    is_job_file_key,
    output_stem,
    resolve_media_key,
    sibling_key,
    without_query,
)
from avatar_pipeline.media import SNIFF_BYTES, sniff_audio, sniff_image
from avatar_pipeline.observability import job_submitted, logger
from avatar_pipeline.records import TERMINAL_STATUSES, JobRecord, JobStatus
from avatar_pipeline.state import PollState, RenderJob, RenderState

if TYPE_CHECKING:
    from avatar_pipeline.runtime import Dependencies

MEDIA_RECHECK_SECONDS = 15
# A backlog of submits denied by the request budget comes back spread out, not in lockstep.
BUDGET_RETRY_SPREAD_SECONDS = 110
# Segmind refusing submits (5xx, unreachable): the first retry after 15 s, doubling to 5 minutes.
PROVIDER_RETRY_FIRST_SECONDS = 15
PROVIDER_RETRY_MAX_SECONDS = 300
# A re-upload of a job file whose earlier upload still renders to the same path waits this long between looks.
OUTPUT_BUSY_RECHECK_SECONDS = 60
# A record with less than a submit's worst case left in its invocation goes back to the queue at once.
NO_TIME_LEFT_REQUEUE_SECONDS = 1


@dataclass(frozen=True)
class Requeue:
    """Not a failure: the event goes back on the queue as a delayed message, spending none of the
    queue's receives (those are for faults; a long wait would otherwise end in the DLQ)."""

    delay_seconds: int
    reason: str
    # The streak of refused submits the requeued event carries on (see InboxObject).
    provider_failures: int = 0
    provider_failing_since: datetime | None = None


class SubmitResult(StrEnum):
    STARTED = "STARTED"  # posted to the provider and the execution started
    RESUMED = "RESUMED"  # already posted earlier; the execution was (re)started
    DUPLICATE = "DUPLICATE"  # already rendering or finished: nothing to do
    REJECTED = "REJECTED"  # failed fast with a report (bad input, provider refusal)
    IGNORED = "IGNORED"  # not a job file, or an upload that has since been replaced or removed


def submit_job(
    obj: InboxObject, deps: Dependencies, time_left: Callable[[], float] | None = None
) -> SubmitResult | Requeue:
    """`time_left`: seconds left in the invocation (None: no limit). A POST starts only with a
    submit's worst case left; otherwise the event is requeued untouched."""
    if obj.bucket != deps.settings.input_bucket or not is_job_file_key(obj.key):
        logger.warning("ignoring an object that is not a job file", extra={"key": obj.key})
        return SubmitResult.IGNORED
    job_id = derive_job_id(obj.bucket, obj.key, obj.version_id or obj.etag, obj.sequencer)
    logger.set_correlation_id(job_id)
    existing = deps.jobs.get(job_id)
    if existing is not None:
        return continue_existing(existing, obj, deps)

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
        # Before the media check: a job still waiting for its photo already counts as one of its users.
        _register_media(ref, deps)
        ref = replace(ref, media_etags=_check_media(obj, media_keys, deps))
        ref = replace(ref, video_key=spec.output_key or default_video_key(ref.job_key, spec.video_extension))
        output_claimed = _claim_output(ref, deps)
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
    if not output_claimed:
        logger.info("an earlier upload of this job file is still rendering to the same path; waiting for it")
        return _requeue_unchanged(obj, OUTPUT_BUSY_RECHECK_SECONDS, "an earlier upload is still rendering")
    if time_left is not None and time_left() < deps.settings.submit_worst_case_seconds:
        logger.info("not enough time left in this invocation for a submit; the event goes back to the queue")
        return _requeue_unchanged(obj, NO_TIME_LEFT_REQUEUE_SECONDS, "no time left for a submit")
    return _post_once(ref, obj, spec, media_keys, deps)


def _requeue_unchanged(obj: InboxObject, delay_seconds: int, reason: str) -> Requeue:
    return Requeue(delay_seconds, reason, obj.provider_failures, obj.provider_failing_since)


def _register_media(ref: JobRef, deps: Dependencies) -> None:
    if deps.media_users is not None and ref.media_keys:
        deps.media_users.register(ref.job_id, ref.input_bucket, list(ref.media_keys), deps.clock.now())


def _claim_output(ref: JobRef, deps: Dependencies) -> bool:
    """Claim the job's output path (video, captions and manifest share it) before it is submitted.

    The rule, so one job's manifest never describes another job's video:
    * a path that is free, or held by a job that failed, is taken;
    * a path held by an earlier upload of the same job file is taken over once that job has ended (a
      re-upload re-renders; the versioned output bucket keeps the replaced video); while it still runs,
      False: the event waits in the queue;
    * a path held by another job file fails this job with OUTPUT_CONFLICT, unless that job's video was
      since deleted (its manifest is gone).
    """
    claims = deps.output_claims
    if claims is None or ref.video_key is None:
        return True
    bucket = deps.settings.output_bucket
    stem = output_stem(ref.video_key)
    holder_id = claims.claim(ref.job_id, bucket, stem)
    if holder_id is None:
        return True
    holder = deps.jobs.get(holder_id)
    running = holder is not None and holder.status not in TERMINAL_STATUSES
    same_file = holder is not None and (holder.input_bucket, holder.job_key) == (ref.input_bucket, ref.job_key)
    if same_file and running:
        return False
    free = same_file or _claim_is_stale(holder, ref.video_key, deps)
    if free and claims.take_over(ref.job_id, bucket, stem, holder_id):
        logger.info("took over the output path of an earlier job", extra={"previous_job_id": holder_id})
        return True
    origin = f" (from {holder.job_key}, {holder.status.value})" if holder is not None else ""
    raise OutputConflict(
        f"the output path {stem} (video, captions and manifest) belongs to job {holder_id}{origin}; "
        "two job files never write the same video"
    )


def _claim_is_stale(holder: JobRecord | None, video_key: str, deps: Dependencies) -> bool:
    """The holder failed, or it succeeded (or its record expired) and its video was since deleted."""
    if holder is not None and holder.status not in TERMINAL_STATUSES:
        return False
    if holder is not None and holder.status == JobStatus.FAILED:
        return True
    return deps.storage.head(deps.settings.output_bucket, sibling_key(video_key, "json")) is None


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
) -> SubmitResult | Requeue:
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
        return continue_existing(existing, obj, deps)

    media_urls = {
        parameter: deps.storage.presign_get(ref.input_bucket, key, settings.presign_expiry_seconds)
        for parameter, key in media_keys.items()
    }
    payload = spec.provider_payload(media_urls)
    budget_wait = _wait_for_submit_token(ref.job_id, deps)
    if budget_wait is not None:
        deps.jobs.release_submission(ref.job_id)
        return _requeue_unchanged(obj, budget_wait, "the request budget is spent")
    try:
        accepted = deps.provider.submit(spec.model, payload)
    except (ProviderConnectionError, ProviderThrottled, ProviderUnavailable) as error:
        # Provably not accepted: give the lease back so a later delivery may try again.
        deps.jobs.release_submission(ref.job_id)
        return _retry_refused_submit(ref, obj, error, deps)
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
        video_key=ref.video_key or default_video_key(ref.job_key, spec.video_extension),
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


def _wait_for_submit_token(job_id: str, deps: Dependencies) -> int | None:
    """None: a token was taken (or there is no budget). Otherwise the seconds to wait in the queue
    (not in a 429) before trying again."""
    if deps.request_budget is None:
        return None
    now = deps.clock.now()
    decision = deps.request_budget.try_acquire("submit", now)
    if not isinstance(decision, Denied):
        return None
    throttled = decision.as_error(now, f"{job_id}:{now.isoformat()}", BUDGET_RETRY_SPREAD_SECONDS)
    return retry_delay_for(throttled, now)


def _retry_refused_submit(
    ref: JobRef, obj: InboxObject, error: TransientError, deps: Dependencies
) -> SubmitResult | Requeue:
    """Segmind refused the submit (429/5xx) or could not be reached: nothing was accepted. Try again
    later, with backoff, for up to SUBMIT_RETRY_SECONDS from the first refusal in a row; then end the
    job, saying it was never accepted (and so never billed)."""
    now = deps.clock.now()
    since = obj.provider_failing_since or now
    failures = obj.provider_failures + 1
    elapsed = max(0.0, (now - since).total_seconds())
    limit = deps.settings.submit_retry_seconds
    if elapsed >= limit:
        message = (
            f"Segmind did not accept the submit in {elapsed / 60:.0f} minutes of trying ({failures} attempts; "
            f"the last: {error.message}). The job was never accepted, so nothing was billed"
        )
        fail_job(ref, SubmitNeverAccepted.code, message, deps)
        return SubmitResult.REJECTED
    delay = min(_refused_submit_delay(error, failures, now, ref.job_id), max(1, math.ceil(limit - elapsed)))
    logger.info(
        "Segmind refused the submit; it is tried again later",
        extra={"error": error.message, "attempt": failures, "delay_seconds": delay},
    )
    return Requeue(delay, error.message, failures, since)


def _refused_submit_delay(error: TransientError, failures: int, now: datetime, job_id: str) -> int:
    """Segmind's own reset time for a 429; otherwise exponential backoff with jitter (between half and
    all of the step, the same for the same job and attempt), so a backlog does not retry in lockstep."""
    if isinstance(error, ProviderThrottled) and error.reset_at is not None:
        delay = retry_delay_for(error, now)
        if delay is not None:
            return delay
    step: int = min(PROVIDER_RETRY_MAX_SECONDS, PROVIDER_RETRY_FIRST_SECONDS * 2 ** min(failures - 1, 10))
    jitter = zlib.crc32(f"{job_id}:{failures}".encode()) % (step // 2 + 1)
    return max(1, step - jitter)


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


def continue_existing(record: JobRecord, obj: InboxObject, deps: Dependencies) -> SubmitResult:
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
