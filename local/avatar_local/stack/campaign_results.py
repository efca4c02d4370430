"""A local run's campaigns in summary.json: one entry per campaign file dropped, and each of its rows in
"jobs" with input_key "<campaign key>#<row id>" (the key its job record carries).

A row's status, error and cost are the campaign's view of it (CampaignsTable), which also covers the
rows that never had a job: FAILED by the split, SKIPPED past max_spend_usd, PLANNED in a dry run.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import boto3

from avatar_local.job_records import get_record
from avatar_pipeline.adapters.campaigns_table import CampaignsTable
from avatar_pipeline.campaigns.records import RowRecord, RowStatus, derive_campaign_id
from avatar_pipeline.keys import row_input_key

if TYPE_CHECKING:
    from avatar_local.stack.runner import LocalPipeline


def campaign_results(
    pipeline: LocalPipeline, submits: Counter[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(summary["campaigns"], the rows' entries for summary["jobs"])."""
    assert pipeline.stack is not None
    outputs = pipeline.stack.outputs
    table = CampaignsTable(boto3.resource("dynamodb").Table(outputs["CampaignsTableName"]))
    campaigns: list[dict[str, Any]] = []
    jobs: list[dict[str, Any]] = []
    for key in pipeline.campaign_keys:
        campaign_id = derive_campaign_id(outputs["InputBucketName"], key)
        rows = sorted(table.rows(campaign_id), key=lambda row: row.number)
        jobs.extend(_row_job(pipeline, key, row, submits) for row in rows)
        campaigns.append(_campaign(pipeline, key, table, campaign_id, rows))
    return campaigns, jobs


def _campaign(
    pipeline: LocalPipeline, key: str, table: CampaignsTable, campaign_id: str, rows: list[RowRecord]
) -> dict[str, Any]:
    notification = pipeline.campaign_notification(key)
    if notification is not None:
        message = notification["message"]
        totals = message["totals"]
        status, report_key = message["status"], message.get("report_key")
    else:  # not finished in time: what the table says so far
        record = table.get(campaign_id)
        status, report_key = (record.status.value if record else "PENDING"), None
        totals = {
            name: sum(row.status.value.lower() == name for row in rows) for name in ("succeeded", "failed", "skipped")
        }
        totals["rows"] = len(rows)
    return {
        "campaign_key": key,
        "status": status,
        "rows": totals["rows"],
        "succeeded": totals["succeeded"],
        "failed": totals["failed"],
        "skipped": totals["skipped"],
        "report_key": report_key,
    }


def _row_job(pipeline: LocalPipeline, campaign_key: str, row: RowRecord, submits: Counter[str]) -> dict[str, Any]:
    assert pipeline.stack is not None
    record = get_record(pipeline.stack.outputs["JobsTableName"], row.job_id) if row.job_id else None
    # A repeated id's row is kept under "<id>#<number>"; its input key names the id as the file has it.
    row_id = row.row_id.split("#", 1)[0]
    return {
        "input_key": row_input_key(campaign_key, row_id),
        "job_id": row.job_id,
        "row_number": row.number,
        "status": row.status.value,
        "error_code": row.error_code,
        "error_message": row.error_message,
        "outputs": record.output_keys if record is not None and row.status is RowStatus.SUCCEEDED else [],
        "provider_submits": submits[row.job_id] if row.job_id else 0,
        "notifications": len(pipeline.notifications_for(row.job_id)) if row.job_id else 0,
        "status_calls": record.status_calls if record is not None else 0,
        "cost_usd": float(row.cost_usd),
        "cost_source": record.cost_source if record is not None else None,
    }
