"""Working with a deployed stack: drop a job, follow it, list jobs, show a job's history.

Names come from the stack's outputs (`--stack NAME`) or explicit flags. The same code runs against
AWS or against the offline stack (which is a real CloudFormation stack in moto).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import boto3

from avatar_local.job_records import after, get_record, newest_since, recent_records, scan_records, wait_until
from avatar_pipeline.jobs.spec import parse_job_file
from avatar_pipeline.keys import INBOX_PREFIX, resolve_media_key
from avatar_pipeline.money import usd
from avatar_pipeline.records import TERMINAL_STATUSES, JobRecord, JobStatus

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


class UsageError(ValueError):
    """Bad arguments or files: the CLI exits 2 with this message."""


@dataclass(frozen=True)
class StackNames:
    input_bucket: str
    output_bucket: str
    jobs_table: str
    state_machine_arn: str | None = None
    campaigns_table: str = ""

    @classmethod
    def resolve(
        cls,
        stack: str | None,
        input_bucket: str | None = None,
        output_bucket: str | None = None,
        jobs_table: str | None = None,
        needs: tuple[str, ...] = ("input_bucket", "output_bucket", "jobs_table"),
        campaigns_table: str | None = None,
    ) -> StackNames:
        """The names a command `needs`, from the flags or else the stack's outputs; a name it does not
        need may stay empty (`status --jobs-table T` reads no bucket)."""
        outputs: dict[str, str] = {}
        if stack:
            described = boto3.client("cloudformation").describe_stacks(StackName=stack)["Stacks"][0]
            outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
        names = {
            "input_bucket": input_bucket or outputs.get("InputBucketName"),
            "output_bucket": output_bucket or outputs.get("OutputBucketName"),
            "jobs_table": jobs_table or outputs.get("JobsTableName"),
            "campaigns_table": campaigns_table or outputs.get("CampaignsTableName"),
        }
        missing = [name for name in needs if not names[name]]
        if missing:
            raise UsageError(f"give --stack NAME or --{missing[0].replace('_', '-')}")
        return cls(**{k: str(v or "") for k, v in names.items()}, state_machine_arn=outputs.get("StateMachineArn"))


def build_photo_job(photo: Path, script: str, title: str | None, voice: str | None) -> dict[str, Any]:
    job: dict[str, Any] = {
        "model": "heygen-avatar-iv",
        "photo": photo.name,
        "video_title": title or photo.stem,
        "script": script,
    }
    if voice:
        job["voice_id"] = voice
    return job


def plan_upload(
    source: Path, prefix: str, script: str | None, title: str | None, voice: str | None
) -> list[tuple[str, bytes]]:
    """(key, body) pairs to upload, media first and the job file last (it is the trigger)."""
    folder = INBOX_PREFIX + (prefix.strip("/") + "/" if prefix.strip("/") else "")
    if source.suffix.lower() in IMAGE_SUFFIXES:
        if not script:
            raise UsageError("a photo needs --script TEXT (what the avatar says)")
        job = build_photo_job(source, script, title, voice)
        return [(folder + source.name, source.read_bytes()), (f"{folder}{source.stem}.json", json.dumps(job).encode())]
    if source.suffix.lower() != ".json":
        raise UsageError(f"{source} is neither a job file (.json) nor a photo ({', '.join(sorted(IMAGE_SUFFIXES))})")
    raw = source.read_bytes()
    spec = parse_job_file(raw)  # fail here, with the pipeline's own message, rather than after upload
    job_key = folder + source.name
    uploads = []
    for reference in spec.media_references().values():
        media_key = resolve_media_key(job_key, reference)
        media_path = source.parent / media_key[len(folder) :]
        if not media_path.is_file():
            raise UsageError(f"{source} names {reference}, which is not at {media_path}")
        uploads.append((media_key, media_path.read_bytes()))
    return [*uploads, (job_key, raw)]


def upload(names: StackNames, uploads: list[tuple[str, bytes]]) -> str:
    s3 = boto3.client("s3")
    for key, body in uploads:
        s3.put_object(Bucket=names.input_bucket, Key=key, Body=body)
    return uploads[-1][0]


def latest_record_for(names: StackNames, job_key: str, since: datetime) -> JobRecord | None:
    """The job created by an upload of `job_key` at or after `since` (the newest one)."""
    return newest_since(scan_records(names.jobs_table, job_key=job_key), since)


def wait_for(
    names: StackNames,
    job_key: str,
    since: datetime,
    timeout: float,
    on_change: Callable[[JobRecord], None],
    poll_seconds: float = 2.0,
) -> JobRecord | None:
    seen: list[tuple[str, str | None]] = []

    def ended() -> JobRecord | None:
        record = latest_record_for(names, job_key, since)
        if record is None:
            return None
        state = (record.status.value, record.provider_status)
        if state not in seen[-1:]:
            on_change(record)
            seen.append(state)
        return record if record.status in TERMINAL_STATUSES else None

    return wait_until(ended, interval=poll_seconds, give_up=after(timeout))


def get_job(names: StackNames, job_id: str) -> JobRecord | None:
    return get_record(names.jobs_table, job_id)


def recent_jobs(names: StackNames, limit: int, status: str | None = None) -> list[JobRecord]:
    """The newest jobs, by the status GSI (one query per status; no table scan)."""
    return recent_records(names.jobs_table, limit, status)


def print_jobs(records: list[JobRecord], console: TextIO) -> None:
    header = ("JOB ID", "STATUS", "MODEL", "UPDATED", "COST", "INPUT", "RESULT")
    rows = [
        (
            r.job_id,
            r.status.value
            + (f" ({r.provider_status})" if r.status == JobStatus.RENDERING and r.provider_status else ""),
            r.model or "-",
            r.updated_at.strftime("%Y-%m-%d %H:%M:%S"),
            describe_cost(r),
            r.job_key,
            r.error_code or (r.output_keys[0] if r.output_keys else "-"),
        )
        for r in records
    ]
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        console.write(
            "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
        )


def describe_cost(record: JobRecord) -> str:
    """$1.00 (Segmind's own figure), $2.20 est. (the price table's), or - (nothing billed)."""
    if record.cost_usd is None or record.cost_source == "none":
        return "-"
    return usd(record.cost_usd) + (" est." if record.cost_source == "estimate" else "")


def job_history(record: JobRecord) -> list[str]:
    """What happened, in order: the record's milestones, then every state the execution went through."""
    lines = [f"{record.received_at:%H:%M:%S}  received {record.job_key}"]
    if record.submitted_at:
        lines.append(f"{record.submitted_at:%H:%M:%S}  submitted to Segmind as {record.request_id}")
    if record.execution_arn:
        history = boto3.client("stepfunctions").get_execution_history(
            executionArn=record.execution_arn, maxResults=1000
        )["events"]
        for event in history:
            lines.extend(_describe_event(dict(event)))
    if record.completed_at:
        outcome = record.error_code or "outputs: " + ", ".join(record.output_keys)
        lines.append(f"{record.completed_at:%H:%M:%S}  {record.status.value} {outcome}")
        if record.error_message:
            lines.append(f"          {record.error_message}")
        if describe_cost(record) != "-":
            lines.append(f"          cost {describe_cost(record)}")
    return lines


def _describe_event(event: dict[str, Any]) -> Iterator[str]:
    stamp = f"{event['timestamp']:%H:%M:%S}"
    if "stateEnteredEventDetails" in event:
        yield f"{stamp}  state {event['stateEnteredEventDetails']['name']}"
    elif event["type"] == "TaskFailed":
        details = event["taskFailedEventDetails"]
        yield f"{stamp}  task failed: {details.get('error')} (retried or caught by the state machine)"
    elif event["type"] in ("ExecutionSucceeded", "ExecutionFailed", "ExecutionTimedOut", "ExecutionAborted"):
        yield f"{stamp}  execution {event['type'].removeprefix('Execution').lower()}"
