"""Ending a job, the same way whether it succeeded or failed.

Every job ends here, exactly once in effect: its inputs leave inbox/ (archive_inputs), the document
a person reads is written (the manifest beside the video, or the error report beside the inputs),
the jobs table gets the terminal record, and one notification (plus one completion event) goes
out, granted by the jobs table whatever runs twice. The order matters: the manifest is written
after the video and captions it describes, and before anything announces the job as done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from avatar_pipeline.campaigns.complete import end_row
from avatar_pipeline.campaigns.records import RowStatus
from avatar_pipeline.domain.context import Ending, JobRef
from avatar_pipeline.domain.inbox import ArchivedInputs, archive_inputs
from avatar_pipeline.domain.notify import publish_once
from avatar_pipeline.domain.ports import ClosingPorts, CopiedObject, RowEnd
from avatar_pipeline.domain.spend import give_back, settle
from avatar_pipeline.errors import ADVICE, ErrorCode
from avatar_pipeline.keys import error_report_key, output_stem, row_error_report_key, sibling_key
from avatar_pipeline.money import ZERO
from avatar_pipeline.observability import job_failed, job_spent, job_succeeded, logger
from avatar_pipeline.records import (
    CostSource,
    ErrorReport,
    FailedJobInput,
    FailureTimings,
    JobRecord,
    JobStatus,
    Manifest,
    ManifestInput,
    ManifestOutputs,
    Notification,
    NotificationInput,
    NotificationOutput,
    Timings,
    VideoFile,
)
from avatar_pipeline.state import JobOutcome, RenderJob


@dataclass(frozen=True)
class Delivered:
    """A job whose video (and captions) are in the output bucket."""

    job: RenderJob
    video: CopiedObject
    captions_key: str | None
    timings: Timings
    provider_metrics: dict[str, Any]
    status_calls: int
    # What Segmind's metrics (the result's, else the last status check's) say the render cost.
    provider_cost: Decimal | None = None

    @property
    def manifest_key(self) -> str:
        return sibling_key(self.video.key, "json")

    @property
    def output_keys(self) -> list[str]:
        return [self.video.key, *([self.captions_key] if self.captions_key else []), self.manifest_key]


@dataclass(frozen=True)
class Failed:
    code: ErrorCode
    message: str
    # The POST may have reached Segmind (no answer; a worker that died after it): billed, unless it says.
    maybe_billed: bool = False
    # What Segmind's metrics say the request cost, when the job reached it and it says.
    provider_cost: Decimal | None = None


@dataclass(frozen=True)
class Cost:
    usd: Decimal
    source: CostSource


def close_job(ref: JobRef, ending: Delivered | Failed, ports: ClosingPorts) -> JobOutcome:
    if isinstance(ending, Delivered):
        return _close_delivered(ref, ending, ports)
    return _close_failed(ref, ending, ports)


def _close_delivered(ref: JobRef, ending: Delivered, ports: ClosingPorts) -> JobOutcome:
    now = ports.clock.now()
    cost = _settle_cost(ref, ending, ports)
    archived = _archive(ref, True, ports, now)
    # Written last of all the outputs: its presence tells consumers the video and captions are complete.
    ports.storage.put_json(ports.settings.output_bucket, ending.manifest_key, _manifest(ending, archived, cost, ports))
    end = Ending(JobStatus.SUCCEEDED, cost.usd, cost.source, ending.output_keys)
    _save_terminal(ref, end, now, ports, ports.jobs.get(ref.job_id))
    notified = publish_once(_delivered_notification(ending, archived, cost, ports), ports, _announced(ref))
    _end_campaign_row(ref, RowStatus.SUCCEEDED, RowEnd(cost_usd=cost.usd), ports)
    return _outcome(ref, ending, ending.output_keys, notified, cost)


def _close_failed(ref: JobRef, ending: Failed, ports: ClosingPorts) -> JobOutcome:
    """The terminal record first: a run that dies after it leaves a FAILED job whose next delivery (or
    retry) completes the ending (submit.continue_existing), where a job file already moved to failed/
    and no record would leave nothing to find."""
    now = ports.clock.now()
    previous = ports.jobs.get(ref.job_id)
    if previous is not None and previous.status == JobStatus.SUCCEEDED:
        # Its video was delivered: a failure reported late (a step retried after the success) changes nothing.
        logger.warning("the job already succeeded; its late failure is ignored", extra={"error": ending.message})
        return JobOutcome(job_id=ref.job_id, status="SUCCEEDED", output_keys=previous.output_keys, notified=False)
    cost = _settle_cost(ref, ending, ports)
    end = Ending(JobStatus.FAILED, cost.usd, cost.source, [], ending.code.value, ending.message)
    _save_terminal(ref, end, now, ports, previous)
    archived = _archive(ref, False, ports, now)
    _release_output(ref, ports)
    report_key = _error_report_key(ref)
    ports.storage.put_json(ref.input_bucket, report_key, _error_report(ref, ending, archived, cost, now))
    notification = _failed_notification(ref, ending, archived, report_key, cost, now)
    notified = publish_once(notification, ports, _announced(ref))
    _end_campaign_row(ref, RowStatus.FAILED, RowEnd(ending.code.value, ending.message, cost.usd), ports)
    return _outcome(ref, ending, [], notified, cost)


# --- campaign rows -----------------------------------------------------------------------------------
# A campaign row's job ends like any job (record, manifest or error report, cost), except that its inputs
# are the campaign's (they leave inbox/ when the campaign completes), its own notification goes out only
# with the campaign's notify_rows, and its ending is counted into its campaign, exactly once (the row
# moves from PENDING under a condition), the last one completing the campaign.


def _archive(ref: JobRef, succeeded: bool, ports: ClosingPorts, now: datetime) -> ArchivedInputs:
    if ref.campaign_row is not None:
        return ArchivedInputs()
    return archive_inputs(ref, succeeded, ports, now)


def _announced(ref: JobRef) -> bool:
    return ref.campaign_row is None or ref.campaign_row.notify


def _error_report_key(ref: JobRef) -> str:
    row = ref.campaign_row
    return row_error_report_key(row.campaign_key, row.row_id) if row is not None else error_report_key(ref.job_key)


def _end_campaign_row(ref: JobRef, status: RowStatus, detail: RowEnd, ports: ClosingPorts) -> None:
    row = ref.campaign_row
    if row is not None and ports.campaign is not None:
        end_row(row.campaign_id, row.run_id, row.row_id, status, detail, ports.campaign)


def _settle_cost(ref: JobRef, ending: Delivered | Failed, ports: ClosingPorts) -> Cost:
    """What the job cost: Segmind's word, else the estimate, for a job that reached it (or may have); else
    nothing, and its reservation goes back to the day (domain/spend.py)."""
    reported = ending.provider_cost
    reached = isinstance(ending, Delivered) or ref.request_id is not None or ending.maybe_billed
    if not reached:
        give_back(ref.job_id, ports)
        return Cost(ZERO, "none")
    cost = Cost(reported, "provider") if reported is not None else Cost(ref.estimated_cost_usd, "estimate")
    settle(ref, cost.usd, ports)
    return cost


def _release_output(ref: JobRef, ports: ClosingPorts) -> None:
    """A failed job's output path is free again: the usual fix is to upload the job file again."""
    if ref.video_key is not None and ports.output_claims is not None:
        ports.output_claims.release(ref.job_id, ports.settings.output_bucket, output_stem(ref.video_key))


def _save_terminal(ref: JobRef, end: Ending, now: datetime, ports: ClosingPorts, previous: JobRecord | None) -> None:
    ports.jobs.save_terminal(ref.terminal_record(end, now, ports.settings.job_record_ttl_days, previous))


def _outcome(ref: JobRef, ending: Delivered | Failed, output_keys: list[str], notified: bool, cost: Cost) -> JobOutcome:
    if cost.usd > ZERO:
        job_spent(ref.model, float(cost.usd))
    if isinstance(ending, Delivered):
        logger.info("job succeeded", extra={"video_key": ending.video.key, "size": ending.video.size})
        timings = ending.timings
        job_succeeded(ending.job.model, timings.total_seconds, timings.rendering_seconds, ending.status_calls)
        return JobOutcome(job_id=ref.job_id, status="SUCCEEDED", output_keys=output_keys, notified=notified)
    logger.warning("job failed", extra={"error_code": ending.code.value, "error_message": ending.message})
    job_failed(ref.model, ending.code.value)
    return JobOutcome(
        job_id=ref.job_id,
        status="FAILED",
        error_code=ending.code.value,
        error_message=ending.message,
        output_keys=[],
        notified=notified,
    )


# --- what a person reads -----------------------------------------------------------------------------


def _manifest(ending: Delivered, archived: ArchivedInputs, cost: Cost, ports: ClosingPorts) -> Manifest:
    job = ending.job
    return Manifest(
        job_id=job.job_id,
        model=job.model,
        request_id=job.request_id,
        parameters=job.parameters,
        input=ManifestInput(
            bucket=job.input_bucket,
            job_key=job.job_key,
            media_keys=job.media_keys,
            archived=archived.moved,
            superseded=archived.superseded,
            kept=archived.kept,
        ),
        outputs=ManifestOutputs(
            bucket=ports.settings.output_bucket,
            video_key=ending.video.key,
            captions_key=ending.captions_key,
        ),
        video=VideoFile(size=ending.video.size, sha256=ending.video.sha256, content_type=ending.video.content_type),
        timings=ending.timings,
        provider_metrics=ending.provider_metrics,
        metadata=job.metadata,
        cost_usd=cost.usd,
        cost_source=cost.source,
    )


def _delivered_notification(
    ending: Delivered, archived: ArchivedInputs, cost: Cost, ports: ClosingPorts
) -> Notification:
    job = ending.job
    return Notification(
        job_id=job.job_id,
        status="SUCCEEDED",
        model=job.model,
        input=NotificationInput(
            bucket=job.input_bucket,
            job_key=job.job_key,
            archived_keys=archived.moved,
            superseded_keys=archived.superseded,
            kept_keys=archived.kept,
        ),
        output=NotificationOutput(
            bucket=ports.settings.output_bucket,
            video_key=ending.video.key,
            captions_key=ending.captions_key,
            manifest_key=ending.manifest_key,
            size=ending.video.size,
            sha256=ending.video.sha256,
        ),
        timings=ending.timings,
        metadata=job.metadata,
        cost_usd=cost.usd,
        cost_source=cost.source,
    )


def _error_report(ref: JobRef, failed: Failed, archived: ArchivedInputs, cost: Cost, now: datetime) -> ErrorReport:
    return ErrorReport(
        job_id=ref.job_id,
        error_code=failed.code.value,
        error_message=failed.message,
        what_to_do=ADVICE[failed.code],
        job_key=ref.job_key,
        moved_inputs=archived.moved,
        superseded_inputs=archived.superseded,
        kept_inputs=archived.kept,
        request_id=ref.request_id,
        failed_at=now,
        metadata=ref.metadata,
        cost_usd=cost.usd,
        cost_source=cost.source,
    )


def _failed_notification(
    ref: JobRef, failed: Failed, archived: ArchivedInputs, report_key: str, cost: Cost, now: datetime
) -> Notification:
    return Notification(
        job_id=ref.job_id,
        status="FAILED",
        model=ref.model,
        input=FailedJobInput(
            bucket=ref.input_bucket,
            job_key=ref.job_key,
            archived_keys=archived.moved,
            superseded_keys=archived.superseded,
            kept_keys=archived.kept,
            error_report_key=report_key,
        ),
        error_code=failed.code.value,
        error_message=failed.message,
        timings=FailureTimings(received_at=ref.received_at, failed_at=now),
        metadata=ref.metadata,
        cost_usd=cost.usd,
        cost_source=cost.source,
    )
