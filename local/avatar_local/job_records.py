"""Job records as the local tools read them (the offline stack, the CLI against a deployed stack, the
benchmarks), and waiting for jobs to end: one home for both.

The pipeline itself reads and writes records through its adapter (avatar_pipeline/adapters/jobs_table.py);
these are the read-only views a person or a harness needs: every record, one job's, a job file's
newest, the most recent ones by status.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, TypeVar

import boto3
from boto3.dynamodb.conditions import Attr, Key

from avatar_pipeline.records import JobRecord, JobStatus

# The jobs table's index of records by status, newest first (template.yaml).
STATUS_INDEX = "status-updated_at-index"
T = TypeVar("T")


def scan_records(table_name: str, job_key: str | None = None) -> list[JobRecord]:
    """Every record in the jobs table (all pages of one scan); only `job_key`'s when given."""
    table = boto3.resource("dynamodb").Table(table_name)
    scan: dict[str, Any] = {"FilterExpression": Attr("job_key").eq(job_key)} if job_key is not None else {}
    items: list[dict[str, Any]] = []
    while True:
        page = table.scan(**scan)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return [JobRecord.model_validate(item) for item in items]
        scan["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def get_record(table_name: str, job_id: str) -> JobRecord | None:
    item = boto3.resource("dynamodb").Table(table_name).get_item(Key={"job_id": job_id}).get("Item")
    return JobRecord.model_validate(item) if item else None


def recent_records(table_name: str, limit: int, status: str | None = None) -> list[JobRecord]:
    """The newest records, by the status index (one query per status; no table scan)."""
    table = boto3.resource("dynamodb").Table(table_name)
    statuses = [status] if status else [s.value for s in JobStatus]
    records: list[JobRecord] = []
    for value in statuses:
        page = table.query(
            IndexName=STATUS_INDEX,
            KeyConditionExpression=Key("status").eq(value),
            ScanIndexForward=False,
            Limit=limit,
        )
        records.extend(JobRecord.model_validate(item) for item in page["Items"])
    return sorted(records, key=lambda r: r.updated_at, reverse=True)[:limit]


def latest_per_job_file(records: Iterable[JobRecord]) -> dict[str, JobRecord]:
    """The newest record (by received_at) of each job file key: a re-upload is a new job."""
    return {record.job_key: record for record in sorted(records, key=lambda r: r.received_at)}


def newest_since(records: Iterable[JobRecord], since: datetime) -> JobRecord | None:
    """The newest record received at or after `since`."""
    return max((r for r in records if r.received_at >= since), key=lambda r: r.received_at, default=None)


def wait_until(check: Callable[[], T], interval: float, give_up: Callable[[], bool]) -> T | None:
    """Ask `check` every `interval` seconds until it gives a true answer (returned), or `give_up`
    says so after an answer that was not (None). The one waiting loop of the local tools: a job, a run, a benchmark."""
    while True:
        answer = check()
        if answer:
            return answer
        if give_up():
            return None
        time.sleep(interval)


def after(seconds: float) -> Callable[[], bool]:
    """A `give_up` for wait_until: `seconds` of wall time from now."""
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() >= deadline
