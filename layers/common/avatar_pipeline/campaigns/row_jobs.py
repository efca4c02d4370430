"""A campaign row on the submit queue -> its job, submitted at most once per run of the campaign.

The split hands each valid row out as a RowMessage: the job object validated already, its media
checked, its job id derived from bucket, campaign key and row id. Submit takes it as it takes a job
file, except that:
* nothing is read or checked again: the job is in the message, and its media are the campaign's
  (checked once per file by the split, archived with the campaign, never registered or moved per row);
* the job id is the row's, the same in every run of the campaign, so the run carried by the message
  decides what its job record means:
  - no record, or a record of this run: as for any job (a duplicate delivery never submits twice);
  - a FAILED record of an earlier run: the row is rendered again (the claim replaces that record);
  - a SUCCEEDED record of an earlier run: reported to this run from its record, nothing submitted;
  - a record of an earlier run still rendering (a resume uploaded meanwhile): the message waits in
    the queue for that job to end, then one of the two above.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from avatar_pipeline.campaigns.complete import end_row
from avatar_pipeline.campaigns.records import RowMessage, RowStatus
from avatar_pipeline.domain.context import InboxObject, JobRef
from avatar_pipeline.domain.failure import fail_job
from avatar_pipeline.domain.intake import Intake, Rejected, claim_output, spec_price
from avatar_pipeline.domain.ports import DeadLetterPorts, RowEnd, StartingPorts, SubmitPorts
from avatar_pipeline.domain.submit import (
    OUTPUT_BUSY_RECHECK_SECONDS,
    Requeue,
    SubmitResult,
    continue_existing,
    submit_intake,
)
from avatar_pipeline.errors import ErrorCode, PipelineError
from avatar_pipeline.jobs.spec import parse_job_object
from avatar_pipeline.keys import row_input_key
from avatar_pipeline.money import ZERO
from avatar_pipeline.observability import logger
from avatar_pipeline.records import TERMINAL_STATUSES, JobRecord, JobStatus


def submit_row(
    row: RowMessage, obj: InboxObject, ports: SubmitPorts, time_left: Callable[[], float] | None = None
) -> SubmitResult | Requeue:
    """`obj`: the delivery (its receive count, message id and the streak of refused submits it carries)."""
    logger.set_correlation_id(row.job_id)
    existing = ports.jobs.get(row.job_id)
    if existing is not None and _run_of(existing) == row.run_id:
        return continue_existing(existing, obj, ports)
    if existing is not None and existing.status not in TERMINAL_STATUSES:
        logger.info("the row's job from an earlier run is still rendering; waiting for it to end")
        reason = "the row's job from an earlier run is still rendering"
        return Requeue(OUTPUT_BUSY_RECHECK_SECONDS, reason, obj.provider_failures, obj.provider_failing_since)
    if existing is not None and existing.status == JobStatus.SUCCEEDED:
        _report_earlier_success(existing, row, ports)
        return SubmitResult.DUPLICATE
    try:
        intake = take_in_row(row, obj, ports)
    except Rejected as rejected:
        fail_job(rejected.ref, rejected.error.code, rejected.error.message, ports)
        return SubmitResult.REJECTED
    return submit_intake(intake, obj, ports, time_left)


def take_in_row(row: RowMessage, obj: InboxObject, ports: SubmitPorts) -> Intake:
    """What Submit needs to post a row's job; Rejected if the job no longer validates (a changed price
    table, say): the row then fails alone, like a job file."""
    ref = JobRef(
        job_id=row.job_id,
        input_bucket=row.bucket,
        job_key=row_input_key(row.campaign_key, row.row_id),
        received_at=obj.event_time,
        media_keys=tuple(row.media_keys.values()),
        video_key=row.video_key,
        campaign_row=row.ref(),
    )
    try:
        spec = parse_job_object(row.job, subject=f"row {row.number} (id {row.row_id}): the job")
        ref = replace(ref, model=spec.model, metadata=dict(spec.metadata))
        price = spec_price(spec, ports)
        return Intake(ref, spec, dict(row.media_keys), output_claimed=claim_output(ref, ports), price=price)
    except PipelineError as error:
        raise Rejected(error, ref) from None


def _run_of(record: JobRecord) -> str | None:
    return record.campaign_row.run_id if record.campaign_row is not None else None


def end_dead_lettered_row(row: RowMessage, obj: InboxObject, ports: DeadLetterPorts) -> SubmitResult:
    """A row whose message failed every delivery to Submit ends FAILED (INTERNAL) in its run, so its
    campaign still completes; unless its job of this run is known (the rules of a redelivery) or it
    succeeded in an earlier run."""
    logger.set_correlation_id(row.job_id)
    existing = ports.jobs.get(row.job_id)
    if existing is not None and _run_of(existing) == row.run_id:
        result = continue_existing(existing, obj, ports)
        if not isinstance(result, Requeue):
            return result
    elif existing is not None and existing.status == JobStatus.SUCCEEDED:
        _report_earlier_success(existing, row, ports)
        return SubmitResult.DUPLICATE
    ref = JobRef(
        job_id=row.job_id,
        input_bucket=row.bucket,
        job_key=row_input_key(row.campaign_key, row.row_id),
        received_at=obj.event_time,
        model=str(row.job.get("model")),
        video_key=row.video_key,
        campaign_row=row.ref(),
    )
    message = (
        f"Submit failed on every delivery of this row ({obj.receive_count} attempts; its logs carry the job id "
        f"{row.job_id}). The row was not submitted to Segmind in this run, so nothing was billed for it"
    )
    fail_job(ref, ErrorCode.INTERNAL, message, ports)
    return SubmitResult.REJECTED


def _report_earlier_success(record: JobRecord, row: RowMessage, ports: StartingPorts) -> None:
    """The row's video was delivered by an earlier run: this run counts it, with what it cost then."""
    logger.info("the row succeeded in an earlier run; reported from its record", extra={"row_id": row.row_id})
    if ports.campaign is None:
        return
    detail = RowEnd(cost_usd=record.cost_usd or ZERO)
    end_row(row.campaign_id, row.run_id, row.row_id, RowStatus.SUCCEEDED, detail, ports.campaign)
