"""A campaign's ending: once every row of its run is terminal, exactly one completer writes the report,
moves the campaign's inputs out of inbox/ and announces it (one SNS message, kind=campaign, and one
"Avatar Campaign Completed" event).

While the campaign runs, its report is rewritten at a bounded rate: by whoever ends a row (or the
split, once every row is entered) when the last rewrite of this run is REPORT_REFRESH_SECONDS old or
more, granted by the campaign record to one writer. So at most one rewrite a minute, whatever the
number of rows (each costs one Query of the rows and three small PUTs), plus the final one.

Whoever ends the last row (a row job's close, or the split itself when no row is left running: a dry
run, every row failed or skipped) calls try_complete; the campaign record grants the completion as a
lease, confirmed when done, so a completer that dies leaves it to the next run of the same step.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from avatar_pipeline.campaigns.records import (
    OPEN_GATES,
    CampaignErrorReport,
    CampaignNotification,
    CampaignRecord,
    CampaignStatus,
    RowRecord,
    RowStatus,
    SampleGate,
)
from avatar_pipeline.campaigns.report import ReportSummary, ReportTotals, ReportWriter, RowResult
from avatar_pipeline.domain.ports import CampaignPorts, ObjectReplaced, RowEnd
from avatar_pipeline.errors import ADVICE, PipelineError
from avatar_pipeline.keys import archived_key, campaign_approval_key, campaign_output_folder, campaign_report_key
from avatar_pipeline.observability import logger

if TYPE_CHECKING:
    from avatar_pipeline.campaigns.spec import CampaignSpec

COMPLETION_LEASE_SECONDS = 120
# A running campaign's report is rewritten at most this often (see above).
REPORT_REFRESH_SECONDS = 60


def end_row(
    campaign_id: str, run_id: str, row_id: str, status: RowStatus, detail: RowEnd, ports: CampaignPorts
) -> bool:
    """A row's job ended (the shared close path): count it once, then complete the campaign if it was the
    last. True when this call completed the campaign."""
    ports.campaigns.end_row(campaign_id, run_id, row_id, status, detail)
    # Also when the row was counted already: the run that counted it may have died before completing.
    return settle(campaign_id, run_id, ports)


def settle(campaign_id: str, run_id: str, ports: CampaignPorts) -> bool:
    """What is owed once a row ended or the split entered every row: the completion if no row is left
    running, else the sample's "ready" if it just ended, else a refresh of the running report (at most
    once a minute). True when this call completed the campaign."""
    if try_complete(campaign_id, run_id, ports):
        return True
    if not try_sample_ready(campaign_id, run_id, ports):
        refresh_report(campaign_id, run_id, ports)
    return False


def try_sample_ready(campaign_id: str, run_id: str, ports: CampaignPorts) -> bool:
    """The sample (approve_after) ended: once, the report and a "sample ready" notification (kind=campaign,
    status SAMPLE_READY); the held rows then wait for a person (campaigns/approval.py) at no cost."""
    record = ports.campaigns.get(campaign_id)
    if record is None or record.run_id != run_id or record.gate is not SampleGate.SAMPLING or not record.sample_ended:
        return False
    if not ports.campaigns.move_gate(campaign_id, run_id, frozenset({SampleGate.SAMPLING}), SampleGate.READY):
        return False
    report = write_report(record.model_copy(update={"gate": SampleGate.READY}), ports)
    ports.announcer.publish(
        CampaignNotification(
            campaign_key=record.campaign_key,
            bucket=record.bucket,
            status="SAMPLE_READY",
            dry_run=False,
            totals=report.totals,
            report_key=campaign_report_key(record.campaign_key, "json"),
            approve_key=campaign_approval_key(record.campaign_key),
        )
    )
    logger.info("campaign sample ready", extra={"campaign_key": record.campaign_key, "held": record.held})
    return True


def refresh_report(campaign_id: str, run_id: str, ports: CampaignPorts) -> None:
    """Rewrite the running campaign's report, unless this run's was rewritten less than
    REPORT_REFRESH_SECONDS ago (by anyone)."""
    now = ports.clock.now()
    if not ports.campaigns.claim_report_refresh(
        campaign_id, run_id, now, now - timedelta(seconds=REPORT_REFRESH_SECONDS)
    ):
        return
    record = ports.campaigns.get(campaign_id)
    if record is not None and record.run_id == run_id and record.completed_run != run_id:
        write_report(record, ports)


def try_complete(campaign_id: str, run_id: str, ports: CampaignPorts) -> bool:
    record = ports.campaigns.get(campaign_id)
    if record is None or record.run_id != run_id or not record.all_rows_ended or record.completed_run == run_id:
        return False
    now = ports.clock.now()
    if not ports.campaigns.claim_completion(
        campaign_id, run_id, now, now + timedelta(seconds=COMPLETION_LEASE_SECONDS)
    ):
        return False
    report = write_report(record, ports)
    report_key = campaign_report_key(record.campaign_key, "json")
    archived = _archive(record, succeeded=True, ports=ports)
    status = CampaignStatus.PLANNED if record.dry_run else CampaignStatus.COMPLETED
    ports.announcer.publish(
        CampaignNotification(
            campaign_key=record.campaign_key,
            bucket=record.bucket,
            status=status.value,
            dry_run=record.dry_run,
            totals=report.totals,
            report_key=report_key,
            archived_keys=archived,
        )
    )
    ports.campaigns.confirm_completion(campaign_id, run_id, status, ports.clock.now())
    logger.info("campaign completed", extra={"campaign_key": record.campaign_key, "rows": report.totals.rows})
    return True


def write_report(record: CampaignRecord, ports: CampaignPorts) -> ReportSummary:
    """report.json, report.csv and report.html, side by side in the campaign's output folder, rebuilt
    from the campaign's rows (in row order, a page at a time) whenever they are written."""
    gate_open = record.gate in OPEN_GATES
    folder = campaign_output_folder(record.campaign_key)
    with ReportWriter(record.campaign_key, folder, dry_run=record.dry_run) as writer:
        for row in ports.campaigns.rows(record.campaign_id):
            writer.add(_result(row, gate_open))
        for file in writer.files():
            ports.storage.put_file(ports.settings.output_bucket, file.key, file.body, file.content_type)
        return writer.summary


def _result(row: RowRecord, gate_open: bool) -> RowResult:
    # A row the sample gate holds back shows as PLANNED (waiting for approval), not PENDING.
    held = gate_open and row.held_message is not None and row.status is RowStatus.PENDING
    return RowResult(
        # A repeated id's row is kept under "<id>#<number>" (it must not touch the earlier row's record).
        row_id=row.row_id.split("#", 1)[0],
        status=RowStatus.PLANNED if held else row.status,
        error_code=row.error_code,
        error_message=row.error_message,
        job_id=row.job_id,
        video_key=row.video_key if row.status is RowStatus.SUCCEEDED else None,
        cost_usd=row.cost_usd,
        estimated_cost_usd=row.estimated_cost_usd,
    )


def _archive(record: CampaignRecord, succeeded: bool, ports: CampaignPorts) -> dict[str, str]:
    """The campaign file, its rows file and its media leave inbox/ (to processed/, or failed/)."""
    moved: dict[str, str] = {}
    media = list(ports.campaigns.media(record.campaign_id))
    inputs = [(record.campaign_key, record.campaign_etag), *([(record.rows_key, None)] if record.rows_key else [])]
    for key, etag in [*inputs, *((key, None) for key in media)]:
        target = archived_key(key, succeeded)
        try:
            if ports.storage.move(record.bucket, key, target, if_match=etag):
                moved[key] = target
        except ObjectReplaced:
            logger.info("campaign input replaced by a newer upload; left in inbox", extra={"key": key})
    return moved


def fail_campaign(
    bucket: str, campaign_key: str, etag: str, spec: CampaignSpec | None, error: PipelineError, ports: CampaignPorts
) -> None:
    """The campaign is invalid as a whole: nothing was submitted. Its file moves to failed/ with a report
    beside it, and one campaign notification says why."""
    report_key = archived_key(campaign_key, succeeded=False).removesuffix(".json") + ".error.json"
    ports.storage.put_json(
        bucket,
        report_key,
        CampaignErrorReport(
            campaign_key=campaign_key,
            error_code=error.code.value,
            error_message=error.message,
            what_to_do=ADVICE[error.code],
        ),
    )
    moved: dict[str, str] = {}
    try:
        if ports.storage.move(bucket, campaign_key, archived_key(campaign_key, succeeded=False), if_match=etag):
            moved[campaign_key] = archived_key(campaign_key, succeeded=False)
    except ObjectReplaced:
        logger.info("the invalid campaign file was replaced by a newer upload; left in inbox")
    ports.announcer.publish(
        CampaignNotification(
            campaign_key=campaign_key,
            bucket=bucket,
            status="FAILED",
            dry_run=bool(spec and spec.dry_run),
            totals=ReportTotals(),
            report_key=report_key,
            error_code=error.code.value,
            error_message=error.message,
            archived_keys=moved,
        )
    )
    logger.warning("campaign rejected", extra={"error_code": error.code.value, "error_message": error.message})
