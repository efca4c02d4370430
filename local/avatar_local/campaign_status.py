"""`avatar-pipeline campaign status NAME|KEY [--watch]`: a deployed campaign's totals and a progress bar,
read from its record in the campaigns table (one GetItem per look; no scan, no report download)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

import boto3

from avatar_local.campaign_decision import campaign_key_of
from avatar_pipeline.adapters.campaigns_table import CampaignsTable
from avatar_pipeline.campaigns.records import CampaignRecord, CampaignStatus, SampleGate, derive_campaign_id
from avatar_pipeline.keys import campaign_approval_key, campaign_rejection_key, campaign_report_key

BAR_WIDTH = 30
ENDED = frozenset({CampaignStatus.COMPLETED, CampaignStatus.PLANNED, CampaignStatus.FAILED})


class StatusUsageError(ValueError):
    """Names missing: one line says what to give."""


def table_names(stack: str | None, input_bucket: str | None, campaigns_table: str | None) -> tuple[str, str]:
    """(input bucket, campaigns table) from the flags, else the stack's outputs."""
    outputs: dict[str, str] = {}
    if stack:
        described = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    bucket = input_bucket or outputs.get("InputBucketName")
    table = campaigns_table or outputs.get("CampaignsTableName")
    if not bucket:
        raise StatusUsageError("give --stack NAME or --input-bucket")
    if not table:
        raise StatusUsageError("give --stack NAME or --campaigns-table")
    return bucket, table


def describe(record: CampaignRecord) -> str:
    """One line: status, a bar of the rows ended, the totals and the cost; the sample gate if it waits."""
    counts = record.counts
    total = record.rows_total
    ended = counts.terminal
    filled = BAR_WIDTH if not total else min(BAR_WIDTH, round(BAR_WIDTH * ended / total))
    rows = f"{ended}/{total}" if total is not None else f"{ended}/? (still splitting)"
    line = (
        f"{record.campaign_key}: {record.status.value} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {rows} rows ended: "
        f"{counts.succeeded} succeeded, {counts.failed} failed, {counts.skipped} skipped, {counts.planned} planned; "
        f"${counts.cost_usd:.2f} spent of ${counts.estimated_cost_usd:.2f} estimated"
    )
    if record.gate is SampleGate.READY:
        line += (
            f"\n  sample ready ({record.held} rows held): drop {campaign_approval_key(record.campaign_key)} "
            f"or {campaign_rejection_key(record.campaign_key)}, or run `avatar-pipeline campaign approve|reject`"
        )
    if record.status in ENDED and record.status is not CampaignStatus.FAILED:
        line += f"\n  report: {campaign_report_key(record.campaign_key, 'html')} in the output bucket"
    return line


def show_status(
    bucket: str,
    table: str,
    name_or_key: str,
    console: TextIO,
    watch: bool = False,
    interval: float = 5.0,
    timeout: float = 3600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """0 once shown (with --watch: once the campaign ended); 1 if there is no such campaign or time ran out."""
    key = campaign_key_of(name_or_key)
    campaigns = CampaignsTable(boto3.resource("dynamodb").Table(table))
    campaign_id = derive_campaign_id(bucket, key)
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        record = campaigns.get(campaign_id)
        if record is None:
            console.write(f"no campaign {key} in {bucket} (was it uploaded there?)\n")
            return 1
        line = describe(record)
        if line != last:
            console.write(line + "\n")
            console.flush()
            last = line
        if not watch or record.status in ENDED:
            return 0
        if time.monotonic() >= deadline:
            return 1
        sleep(interval)
