"""Submit: a job file arrived in inbox/ -> take it in (domain/intake.py) -> POST once -> start the execution.

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
from typing import Any

from avatar_pipeline.domain.closing import Failed, close_job
from avatar_pipeline.domain.context import InboxObject, JobRef
from avatar_pipeline.domain.failure import fail_job
from avatar_pipeline.domain.intake import Intake, Rejected, take_in
from avatar_pipeline.domain.poll_policy import render_class
from avatar_pipeline.domain.ports import ObjectReplaced, StartingPorts, SubmitPorts, plain_etag
from avatar_pipeline.domain.request_budget import Denied, throttled_wait
from avatar_pipeline.domain.spend import SpendRefused, give_back, reserve
from avatar_pipeline.errors import (
    ErrorCode,
    MediaNotYetAvailable,
    NotificationInProgress,
    PipelineError,
    ProviderBadResponse,
    ProviderConnectionError,
    ProviderSubmitAmbiguous,
    ProviderThrottled,
    ProviderUnavailable,
    SpendLimitReached,
    SubmissionInProgress,
    SubmissionUncertain,
    SubmitNeverAccepted,
    TransientError,
)
from avatar_pipeline.keys import derive_job_id, is_job_file_key, without_query
from avatar_pipeline.observability import job_submitted, logger
from avatar_pipeline.records import TERMINAL_STATUSES, JobRecord, JobStatus
from avatar_pipeline.state import PollState, RenderJob, RenderState

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
    obj: InboxObject, ports: SubmitPorts, time_left: Callable[[], float] | None = None
) -> SubmitResult | Requeue:
    """`time_left`: seconds left in the invocation (None: no limit). A POST starts only with a
    submit's worst case left; otherwise the event is requeued untouched."""
    if obj.bucket != ports.settings.input_bucket or not is_job_file_key(obj.key):
        # A campaign file's event comes here too (the job rule cannot exclude it): Split takes it.
        logger.info("ignoring an object that is not a job file", extra={"key": obj.key})
        return SubmitResult.IGNORED
    job_id = derive_job_id(obj.bucket, obj.key, obj.version_id or obj.etag, obj.sequencer)
    logger.set_correlation_id(job_id)
    existing = ports.jobs.get(job_id)
    if existing is not None:
        return continue_existing(existing, obj, ports)
    intake = _take_in(obj, job_id, ports)
    if not isinstance(intake, Intake):
        return intake
    return submit_intake(intake, obj, ports, time_left)


def submit_intake(
    intake: Intake, obj: InboxObject, ports: SubmitPorts, time_left: Callable[[], float] | None = None
) -> SubmitResult | Requeue:
    """A job taken in (a job file's, or a campaign row's): POST it once, unless it must wait."""
    if not intake.output_claimed:
        logger.info("an earlier upload of this job file is still rendering to the same path; waiting for it")
        return _requeue_unchanged(obj, OUTPUT_BUSY_RECHECK_SECONDS, "an earlier upload is still rendering")
    if time_left is not None and time_left() < ports.settings.submit_worst_case_seconds:
        logger.info("not enough time left in this invocation for a submit; the event goes back to the queue")
        return _requeue_unchanged(obj, NO_TIME_LEFT_REQUEUE_SECONDS, "no time left for a submit")
    return _post_once(intake, obj, ports)


def _take_in(obj: InboxObject, job_id: str, ports: SubmitPorts) -> Intake | SubmitResult:
    head = ports.storage.head(obj.bucket, obj.key)
    if head is None or (obj.etag and head.etag != plain_etag(obj.etag)):
        logger.info("job file was replaced or removed since the event; its own event covers it")
        return SubmitResult.IGNORED
    # The job holds on to the ETags of what it read: when it ends, only those objects leave inbox/.
    ref = JobRef.from_upload(obj, job_id, head.etag or None)
    try:
        return take_in(obj, ref, ports)
    except ObjectReplaced:
        logger.info("job file was replaced while it was read; its own event covers the new upload")
        return SubmitResult.IGNORED
    except Rejected as rejected:
        fail_job(rejected.ref, rejected.error.code, rejected.error.message, ports)
        return SubmitResult.REJECTED


def _requeue_unchanged(obj: InboxObject, delay_seconds: int, reason: str) -> Requeue:
    return Requeue(delay_seconds, reason, obj.provider_failures, obj.provider_failing_since)


def retry_delay_for(error: TransientError, now: datetime) -> int | None:
    """Seconds until a record that failed transiently should be tried again (None: the queue's default)."""
    if isinstance(error, MediaNotYetAvailable):
        return error.retry_after_seconds
    if isinstance(error, ProviderThrottled):
        # A second past the reset time it names, and never more than two minutes.
        named = 1 if error.reset_at is not None else 0
        return max(1, min(120, math.ceil(throttled_wait(error, now)) + named))
    if isinstance(error, SubmissionInProgress | NotificationInProgress):
        return 30
    return None


# --- the POST -----------------------------------------------------------------------------------------


def _post_once(intake: Intake, obj: InboxObject, ports: SubmitPorts) -> SubmitResult | Requeue:
    ref, settings = intake.ref, ports.settings
    lease = timedelta(seconds=settings.submit_lease_seconds)
    claim = ref.claim_record(ports.clock.now(), lease, obj.message_id, settings.job_record_ttl_days)
    if not ports.jobs.claim_submission(claim):
        existing = ports.jobs.get(ref.job_id)
        if existing is None:
            raise SubmissionInProgress("the job record vanished while claiming it; retrying")
        return continue_existing(existing, obj, ports)
    budget_wait = _wait_for_submit_token(ref.job_id, ports)
    if budget_wait is not None:
        ports.jobs.release_submission(ref.job_id)
        return _requeue_unchanged(obj, budget_wait, "the request budget is spent")
    reserved = reserve(ref, intake.price, ports)
    if isinstance(reserved, SpendRefused):
        fail_job(ref, SpendLimitReached.code, reserved.message(ports.clock.now()), ports)
        return SubmitResult.REJECTED
    return _post(replace(intake, ref=reserved), obj, ports)


def _post(intake: Intake, obj: InboxObject, ports: SubmitPorts) -> SubmitResult | Requeue:
    """The POST itself, with the job's claim and reservation held."""
    ref, settings = intake.ref, ports.settings
    media_urls = {
        parameter: ports.storage.presign_get(ref.input_bucket, key, settings.presign_expiry_seconds)
        for parameter, key in intake.media_keys.items()
    }
    payload = intake.spec.provider_payload(media_urls)
    # From here a death may leave the job billed; before it, a dead worker's job is simply tried again.
    ports.jobs.mark_posting(ref.job_id, ports.clock.now())
    try:
        accepted = ports.provider.submit(intake.spec.model, payload)
    except (ProviderConnectionError, ProviderThrottled, ProviderUnavailable) as error:
        # Provably not accepted: give the reservation and the lease back so a later delivery may try again.
        give_back(ref.job_id, ports)
        ports.jobs.release_submission(ref.job_id)
        return _retry_refused_submit(ref, obj, error, ports)
    except ProviderBadResponse as error:
        # A 2xx we cannot read may still be an accepted (billed) job: do not post again.
        message = f"{error.message}; the job may have been accepted"
        fail_job(ref, SubmissionUncertain.code, message, ports, maybe_billed=True)
        return SubmitResult.REJECTED
    except PipelineError as error:
        # No answer at all may still have been accepted; a refusal (400/401/403/406) was not billed.
        fail_job(ref, error.code, error.message, ports, maybe_billed=isinstance(error, ProviderSubmitAmbiguous))
        return SubmitResult.REJECTED
    _record_submitted(intake, accepted.request_id, _recordable(payload, media_urls), ports)
    return SubmitResult.STARTED


def _record_submitted(intake: Intake, request_id: str, parameters: dict[str, Any], ports: SubmitPorts) -> None:
    """Segmind accepted the job: record the request id first of all, then start the execution."""
    submitted_at = ports.clock.now()
    deadline = timedelta(minutes=ports.settings.render_deadline_minutes)
    render_job = intake.ref.submitted(intake.spec, request_id, parameters, submitted_at, deadline)
    ports.jobs.mark_submitted(render_job.job_id, request_id, submitted_at, render_job.model_dump_json())
    logger.info("submitted to Segmind", extra={"request_id": request_id, "model": render_job.model})
    job_submitted(render_job.model)
    _start_execution(render_job, ports)


def _wait_for_submit_token(job_id: str, ports: SubmitPorts) -> int | None:
    """None: a token was taken (or there is no budget). Otherwise the seconds to wait in the queue
    (not in a 429) before trying again."""
    if ports.budget is None:
        return None
    now = ports.clock.now()
    decision = ports.budget.try_acquire("submit", now)
    if not isinstance(decision, Denied):
        return None
    throttled = decision.as_error(now, f"{job_id}:{now.isoformat()}", BUDGET_RETRY_SPREAD_SECONDS)
    return retry_delay_for(throttled, now)


def _retry_refused_submit(
    ref: JobRef, obj: InboxObject, error: TransientError, ports: SubmitPorts
) -> SubmitResult | Requeue:
    """Segmind refused the submit (429/5xx) or could not be reached: nothing was accepted. Try again
    later, with backoff, for up to SUBMIT_RETRY_MINUTES from the first refusal in a row; then end the
    job, saying it was never accepted (and so never billed)."""
    now = ports.clock.now()
    since = obj.provider_failing_since or now
    failures = obj.provider_failures + 1
    elapsed = max(0.0, (now - since).total_seconds())
    limit = ports.settings.submit_retry_seconds
    if elapsed >= limit:
        message = (
            f"Segmind did not accept the submit in {elapsed / 60:.0f} minutes of trying ({failures} attempts; "
            f"the last: {error.message}). The job was never accepted, so nothing was billed"
        )
        fail_job(ref, SubmitNeverAccepted.code, message, ports)
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


# --- executions and redeliveries ------------------------------------------------------------------------


def _start_execution(render_job: RenderJob, ports: StartingPorts) -> None:
    # The first check comes from what was learned about renders like this one (or the prior);
    # next_wait also resumes correctly when an old job's execution is (re)started late.
    stats = ports.render_stats
    learned = stats.get(render_class(render_job.model, render_job.parameters)) if stats else None
    now = ports.clock.now()
    first_wait = ports.schedule.next_wait(render_job.submitted_at, now, render_job.deadline_at, 1, learned)
    state = RenderState(job=render_job, poll=PollState(status="QUEUED", wait_seconds=first_wait))
    execution_arn = ports.executions.start(render_job.job_id, state)
    ports.jobs.mark_rendering(render_job.job_id, execution_arn, ports.clock.now())


def continue_existing(record: JobRecord, obj: InboxObject, ports: StartingPorts) -> SubmitResult | Requeue:
    """A redelivered event for a job we already know: never POST again."""
    if record.status in TERMINAL_STATUSES:
        return _finish_ending(record, obj, ports)
    if record.status == JobStatus.RENDERING:
        logger.info("duplicate delivery ignored", extra={"status": record.status.value})
        return SubmitResult.DUPLICATE
    if record.status == JobStatus.SUBMITTED and record.render_job_json:
        _start_execution(RenderJob.model_validate_json(record.render_job_json), ports)
        return SubmitResult.RESUMED
    # SUBMITTING: a worker claimed the job and may have posted it.
    own_message = obj.message_id is not None and obj.message_id == record.claimed_by_message
    lease_running = record.lease_until is not None and record.lease_until > ports.clock.now()
    if lease_running and not own_message:
        # Another delivery of the same event is being submitted right now. Its message stays on the
        # queue until that worker records the outcome (and comes back if the worker dies), so this
        # copy can go: waiting on it would only spend the queue's receives.
        logger.info("duplicate delivery dropped while another worker submits the job")
        return SubmitResult.DUPLICATE
    # The claiming worker's own message came back, or its lease ran out: it died mid-submit. The job
    # id derives from this upload, so its ETag is the event's.
    ref = JobRef.from_record(record, job_etag=plain_etag(obj.etag) or None)
    if record.posting_at is None:
        # It died before its POST: nothing reached Segmind. Start over (the reservation goes back too).
        logger.info("the worker that claimed the job died before its POST; trying again")
        give_back(record.job_id, ports)
        ports.jobs.release_submission(record.job_id)
        return _requeue_unchanged(obj, NO_TIME_LEFT_REQUEUE_SECONDS, "the previous attempt died before its POST")
    fail_job(
        ref,
        SubmissionUncertain.code,
        "a previous submit attempt stopped before its outcome was recorded; it may have been "
        "accepted by Segmind, so it was not repeated",
        ports,
        maybe_billed=True,
    )
    return SubmitResult.REJECTED


def _finish_ending(record: JobRecord, obj: InboxObject, ports: StartingPorts) -> SubmitResult:
    """An ended job: nothing to do, unless its ending stopped before its notification went out (a
    worker that died after the terminal record): then the failure is ended again, the same way."""
    if record.notified_status in TERMINAL_STATUSES or record.status != JobStatus.FAILED:
        logger.info("duplicate delivery ignored", extra={"status": record.status.value})
        return SubmitResult.DUPLICATE
    ref = JobRef.from_record(record, job_etag=plain_etag(obj.etag) or None)
    failed = Failed(
        ErrorCode(record.error_code or ErrorCode.INTERNAL.value),
        record.error_message or "the job failed",
        maybe_billed=record.cost_source in ("estimate", "provider"),
        provider_cost=record.cost_usd if record.cost_source == "provider" else None,
    )
    close_job(ref, failed, ports)
    return SubmitResult.REJECTED
