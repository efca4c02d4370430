"""What a local run leaves on disk: summary.json, notifications.jsonl, outputs/ and inputs/."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from avatar_local.emulator import JobStats
from avatar_local.job_records import get_record
from avatar_local.stack.campaign_results import campaign_results
from avatar_pipeline.records import TERMINAL_STATUSES

if TYPE_CHECKING:
    from avatar_local.stack.runner import LocalPipeline


def download_bucket(bucket: str, target: Path) -> list[str]:
    s3 = boto3.client("s3")
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            path = target / key
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            keys.append(key)
    return keys


def accepted_submits_by_job(snapshot: list[JobStats]) -> Counter[str]:
    """Accepted (billable) submits per job id, as the emulator recorded them: each submit names its
    job (avatar_local.stack.submit_tags), so jobs sharing a title, a photo or a whole payload are told
    apart, and a submit whose answer was lost (no request id on record) still counts for its job."""
    return Counter(job.client_job_id for job in snapshot if job.client_job_id is not None)


def write_results(
    pipeline: LocalPipeline, out: Path, job_keys: list[str], duration_s: float, completed: bool
) -> dict[str, Any]:
    assert pipeline.stack is not None and pipeline.emulator is not None and pipeline.poller is not None
    out.mkdir(parents=True, exist_ok=True)
    outputs = download_bucket(pipeline.stack.outputs["OutputBucketName"], out / "outputs")
    download_bucket(pipeline.stack.outputs["InputBucketName"], out / "inputs")
    with (out / "notifications.jsonl").open("w", encoding="utf-8") as stream:
        for notification in pipeline.notifications:
            stream.write(json.dumps(notification) + "\n")

    progress = pipeline.progress()
    submits = accepted_submits_by_job(pipeline.emulator.jobs_snapshot())
    jobs: list[dict[str, Any]] = []
    for key in job_keys:
        job = progress.get(key)
        if job is None:
            jobs.append({"input_key": key, "job_id": None, "status": "PENDING", "error_code": None,
                         "error_message": None, "outputs": [], "provider_submits": 0, "notifications": 0,
                         "cost_usd": None, "cost_source": None})  # fmt: skip
            continue
        record = get_record(pipeline.stack.outputs["JobsTableName"], job.job_id)
        assert record is not None, f"the job record of {job.job_id} is gone"
        jobs.append(
            {
                "input_key": key,
                "job_id": job.job_id,
                "status": record.status.value if record.status in TERMINAL_STATUSES else "PENDING",
                "error_code": record.error_code,
                "error_message": record.error_message,
                "outputs": record.output_keys,
                "provider_submits": submits[job.job_id],
                "notifications": len(pipeline.notifications_for(job.job_id)),
                "status_calls": record.status_calls,
                "cost_usd": float(record.cost_usd) if record.cost_usd is not None else None,
                "cost_source": record.cost_source,
            }
        )
    campaigns, rows = campaign_results(pipeline, submits)
    jobs.extend(rows)
    sqs = boto3.client("sqs")
    dlq = sqs.get_queue_attributes(
        QueueUrl=pipeline.stack.outputs["SubmitDeadLetterQueueUrl"], AttributeNames=["ApproximateNumberOfMessages"]
    )["Attributes"]["ApproximateNumberOfMessages"]
    stats = pipeline.emulator.stats()
    summary: dict[str, Any] = {
        "jobs": jobs,
        "campaigns": campaigns,
        "completed": completed,
        "duration_seconds": round(duration_s, 2),
        "time_scale": pipeline.config.time_scale,
        "counts": {
            "jobs": len(jobs),
            "succeeded": sum(j["status"] == "SUCCEEDED" for j in jobs),
            "failed": sum(j["status"] == "FAILED" for j in jobs),
            "pending": sum(j["status"] == "PENDING" for j in jobs),
            "notifications": len(pipeline.notifications),
            "dead_letters": int(dlq),
        },
        "cost_usd": round(sum(j["cost_usd"] or 0.0 for j in jobs), 2),
        "provider": stats.model_dump(mode="json"),
        "queue": vars(pipeline.poller.stats),
        "output_keys": outputs,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n", encoding="utf-8")
    return summary
