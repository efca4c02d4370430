"""A campaign's ending: once every row of its run is terminal, exactly one completer writes the report,
moves the campaign's inputs out of inbox/ and announces it (one SNS message, kind=campaign, and one
"Avatar Campaign Completed" event).

Whoever ends the last row (a row job's close, or the split itself when no row is left running: a dry
run, every row failed or skipped) calls try_complete; the campaign record grants the completion as a
lease, confirmed when done, so a completer that dies leaves it to the next run of the same step.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

from avatar_pipeline.campaigns.records import (
    CampaignErrorReport,
    CampaignNotification,
    CampaignRecord,
    CampaignReport,
    CampaignReportRow,
    CampaignStatus,
    CampaignTotals,
    RowCounts,
    RowRecord,
    RowStatus,
)
from avatar_pipeline.domain.ports import CampaignPorts, ObjectReplaced, RowEnd
from avatar_pipeline.errors import ADVICE, PipelineError
from avatar_pipeline.keys import archived_key, campaign_report_key
from avatar_pipeline.observability import logger

if TYPE_CHECKING:
    from avatar_pipeline.campaigns.spec import CampaignSpec

COMPLETION_LEASE_SECONDS = 120


def end_row(
    campaign_id: str, run_id: str, row_id: str, status: RowStatus, detail: RowEnd, ports: CampaignPorts
) -> bool:
    """A row's job ended (the shared close path): count it once, then complete the campaign if it was the
    last. True when this call completed the campaign."""
    ports.campaigns.end_row(campaign_id, run_id, row_id, status, detail)
    # Also when the row was counted already: the run that counted it may have died before completing.
    return try_complete(campaign_id, run_id, ports)


def try_complete(campaign_id: str, run_id: str, ports: CampaignPorts) -> bool:
    record = ports.campaigns.get(campaign_id)
    if record is None or record.run_id != run_id or not record.all_rows_ended or record.completed_run == run_id:
        return False
    now = ports.clock.now()
    if not ports.campaigns.claim_completion(
        campaign_id, run_id, now, now + timedelta(seconds=COMPLETION_LEASE_SECONDS)
    ):
        return False
    report = build_report(record, ports.campaigns.rows(campaign_id))
    report_key = campaign_report_key(record.campaign_key, "json")
    ports.storage.put_json(ports.settings.output_bucket, report_key, report)
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


def build_report(record: CampaignRecord, rows: Iterable[RowRecord]) -> CampaignReport:
    """report.json from the campaign's record and rows (rebuilt from the table whenever it is written).
    Rows in their order in the rows file."""
    report_rows = sorted(rows, key=lambda row: row.number)
    counts = record.counts
    status = "PLANNED" if record.dry_run else ("COMPLETED" if record.all_rows_ended else "RUNNING")
    return CampaignReport(
        campaign_key=record.campaign_key,
        status=status,
        dry_run=record.dry_run,
        totals=_totals(counts, record.rows_total if record.rows_total is not None else len(report_rows)),
        rows=[
            CampaignReportRow(
                row_id=row.row_id.split("#", 1)[0],
                status=row.status,
                error_code=row.error_code,
                error_message=row.error_message,
                job_id=row.job_id,
                video_key=row.video_key if row.status is RowStatus.SUCCEEDED else None,
                cost_usd=row.cost_usd,
            )
            for row in report_rows
        ],
    )


def _totals(counts: RowCounts, rows: int) -> CampaignTotals:
    return CampaignTotals(
        rows=rows,
        succeeded=counts.succeeded,
        failed=counts.failed,
        skipped=counts.skipped,
        planned=counts.planned,
        estimated_cost_usd=counts.estimated_cost_usd,
        cost_usd=counts.cost_usd,
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
            totals=_totals(RowCounts(), 0),
            report_key=report_key,
            error_code=error.code.value,
            error_message=error.message,
            archived_keys=moved,
        )
    )
    logger.warning("campaign rejected", extra={"error_code": error.code.value, "error_message": error.message})
