"""Campaigns at volume (issue 15): the split at constant memory, and shared photos at constant cost.

1. Splitting: a rows file of 1,000 and of 10,000 rows in S3 on a moto server, split by the real split code
   (campaigns/split.py, with the real adapters) in a process of its own, so `ru_maxrss` is the split's
   peak and nothing else's: rows per second and peak RSS, side by side. Flat memory: 10x the rows may not
   take 10x the memory.
2. Finishing rows that share one photo: 20 and 200 row jobs end through the shared close path
   (domain/closing.py -> campaigns/complete.py, on the in-memory fakes, which count every S3 request),
   then the campaign completes: S3 requests per row, side by side. Flat: the photo is the campaign's,
   moved once when it completes, never looked at per row.

Writes bench/results/campaign.json. On a moto server each row's transaction is an HTTP round trip to a
single-threaded Python server, so the split's rows per second there are far below DynamoDB's (what the
figures show is the shape: memory flat, time linear).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "campaign.json"
REGION = "eu-west-1"
INPUT, OUTPUT, TABLE, QUEUE, TOPIC = "bench-input", "bench-output", "bench-campaigns", "bench-rows", "bench-topic"
CAMPAIGN_KEY = "inbox/bench/volume.campaign.json"
SPLIT_SIZES = (1_000, 10_000)
SHARED_SIZES = (20, 200)
TEMPLATE = {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": "Hi {{name}}", "script": "Hello {{name}}."}


def _aws_env(endpoint: str) -> dict[str, str]:
    return {
        **os.environ,
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "POWERTOOLS_LOG_LEVEL": "ERROR",
        "POWERTOOLS_METRICS_NAMESPACE": "Bench",
        "POWERTOOLS_SERVICE_NAME": "bench",
    }


# --- 1. the split ---------------------------------------------------------------------------------------


def _prepare(endpoint: str, rows: int) -> str:
    """A fresh campaign (its own table and queue contents) with `rows` rows; the campaign file's ETag."""
    import boto3

    from avatar_local.stack.local_aws import bucket_location
    from tests.support.media import make_png

    os.environ.update(_aws_env(endpoint))
    httpx_reset(endpoint)
    s3 = boto3.client("s3")
    for bucket in (INPUT, OUTPUT):
        s3.create_bucket(Bucket=bucket, **bucket_location(REGION))
    boto3.client("dynamodb").create_table(
        TableName=TABLE,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    boto3.client("sqs").create_queue(QueueName=QUEUE)
    boto3.client("sns").create_topic(Name=TOPIC)
    s3.put_object(Bucket=INPUT, Key="inbox/bench/face.png", Body=make_png(64, 64))
    csv = io.BytesIO(b"id,name\r\n" + b"".join(f"r{n},Name {n}\r\n".encode() for n in range(1, rows + 1)))
    s3.upload_fileobj(csv, INPUT, "inbox/bench/rows.csv")
    document = json.dumps({"rows": "rows.csv", "row_id": "id", "template": TEMPLATE}).encode()
    return str(s3.put_object(Bucket=INPUT, Key=CAMPAIGN_KEY, Body=document)["ETag"]).strip('"')


def httpx_reset(endpoint: str) -> None:
    import httpx

    httpx.post(f"{endpoint}/moto-api/reset")


def child_split(endpoint: str, etag: str) -> dict[str, Any]:
    """In its own process: the real split, timed, and this process's peak memory."""
    import boto3

    from avatar_pipeline.adapters.campaign_outbox import CampaignAnnouncer, SqsRowQueue
    from avatar_pipeline.adapters.campaigns_table import CampaignsTable
    from avatar_pipeline.adapters.storage import S3Storage
    from avatar_pipeline.campaigns.split import split_campaign
    from avatar_pipeline.clock import SystemClock
    from avatar_pipeline.domain.context import InboxObject
    from avatar_pipeline.domain.ports import SplitPorts
    from avatar_pipeline.settings import Settings

    os.environ.update(_aws_env(endpoint))
    sqs, sns = boto3.client("sqs"), boto3.client("sns")
    topic = sns.create_topic(Name=TOPIC)["TopicArn"]
    settings = Settings.model_validate(
        {"INPUT_BUCKET": INPUT, "OUTPUT_BUCKET": OUTPUT, "JOBS_TABLE": "unused", "NOTIFICATION_TOPIC_ARN": topic,
         "SEGMIND_API_KEY_SECRET_ARN": "unused"}
    )  # fmt: skip
    ports = SplitPorts(
        settings=settings,
        clock=SystemClock(),
        storage=S3Storage(boto3.client("s3")),
        campaigns=CampaignsTable(boto3.resource("dynamodb").Table(TABLE)),
        announcer=CampaignAnnouncer(sns, topic, boto3.client("events"), "default"),
        rows=SqsRowQueue(sqs, sqs.get_queue_url(QueueName=QUEUE)["QueueUrl"]),
    )
    obj = InboxObject(INPUT, CAMPAIGN_KEY, etag, None, "0001", datetime.now(UTC))
    started = time.perf_counter()
    result = split_campaign(obj, ports)
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"result": str(result), "seconds": seconds, "peak_rss_mb": usage.ru_maxrss / 1024}


def measure_split(endpoint: str, rows: int) -> dict[str, Any]:
    etag = _prepare(endpoint, rows)
    command = [sys.executable, "-m", "bench.bench_campaign", "--child", endpoint, etag]
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        command, cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False, env=_aws_env(endpoint)
    )
    if done.returncode != 0:
        raise RuntimeError(f"the split of {rows} rows failed:\n{done.stderr[-3000:]}")
    measured: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return {"rows": rows, "rows_per_second": round(rows / measured["seconds"], 1), **measured}


# --- 2. rows sharing a photo ------------------------------------------------------------------------------


def measure_shared_photo(rows: int) -> dict[str, Any]:
    """S3 requests of `rows` row jobs ending (delivered) and their campaign completing, on the fakes."""
    from avatar_pipeline.campaigns.records import CampaignRecord, CampaignStatus, RowRecord, RowStatus
    from avatar_pipeline.domain.closing import Delivered, close_job
    from avatar_pipeline.domain.context import JobRef
    from avatar_pipeline.domain.ports import CopiedObject
    from avatar_pipeline.keys import derive_row_job_id, row_input_key
    from avatar_pipeline.records import CampaignRowRef, Timings
    from tests.support.fakes import INPUT_BUCKET, T0, FakeStorage, World
    from tests.support.media import make_png

    class CountingStorage(FakeStorage):
        def __init__(self) -> None:
            super().__init__()
            self.requests: Counter[str] = Counter()

        def __getattribute__(self, name: str) -> Any:
            attribute = super().__getattribute__(name)
            if callable(attribute) and not name.startswith("_") and name not in ("put", "body", "keys"):
                super().__getattribute__("requests")[name] += 1
            return attribute

    storage = CountingStorage()
    world = World(storage=storage)
    key = "inbox/shared/volume.campaign.json"
    storage.put(INPUT_BUCKET, key, b"{}")
    storage.put(INPUT_BUCKET, "inbox/shared/face.png", make_png(64, 64))
    campaign_id = "campaign-shared"
    record = CampaignRecord(
        campaign_id=campaign_id, bucket=INPUT_BUCKET, campaign_key=key, run_id="run", campaign_etag="",
        status=CampaignStatus.RUNNING, started_at=T0, updated_at=T0,
    )  # fmt: skip
    world.campaigns.start_run(record)
    for n in range(1, rows + 1):
        world.campaigns.enter_row(
            campaign_id, RowRecord(row_id=f"r{n}", number=n, run_id="run", status=RowStatus.PENDING)
        )
    world.campaigns.add_media(campaign_id, ["inbox/shared/face.png"])
    world.campaigns.finish_split(campaign_id, "run", rows, T0)
    storage.requests.clear()
    for n in range(1, rows + 1):
        row = CampaignRowRef(campaign_id=campaign_id, campaign_key=key, run_id="run", row_id=f"r{n}")
        ref = JobRef(
            job_id=derive_row_job_id(INPUT_BUCKET, key, f"r{n}"), input_bucket=INPUT_BUCKET,
            job_key=row_input_key(key, f"r{n}"), received_at=T0, media_keys=("inbox/shared/face.png",),
            model="heygen-avatar-iv", request_id=f"req-{n}", submitted_at=T0,
            video_key=f"campaigns/shared/volume/r{n}.mp4", campaign_row=row,
        )  # fmt: skip
        job = ref.submitted(_spec(), f"req-{n}", {}, T0, timedelta(minutes=45))
        video = CopiedObject(job.video_key, 1000, "0" * 64, "video/mp4")
        timings = Timings(received_at=T0, completed_at=T0 + timedelta(minutes=3), total_seconds=180.0)
        close_job(ref, Delivered(job, video, None, timings, {}, 3, Decimal("2.2")), world.closing())
    completed = [n for n in world.announcer.published if n.status == "COMPLETED"]
    total = sum(storage.requests.values())
    return {
        "rows": rows,
        "s3_requests": total,
        "s3_requests_per_row": round(total / rows, 3),
        "by_call": dict(storage.requests),
        "photo_moves": sum(1 for n in completed for k in n.archived_keys if k.endswith("face.png")),
        "completed": len(completed),
    }


def _spec() -> Any:
    from avatar_pipeline.jobs.spec import parse_job_object

    return parse_job_object({"model": "heygen-avatar-iv", "photo": "face.png", "video_title": "Hi", "script": "Hi."})


# --- the run ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench campaign", description=__doc__)
    parser.add_argument("--child", nargs=2, metavar=("ENDPOINT", "ETAG"), help=argparse.SUPPRESS)
    parser.add_argument("--split-rows", type=int, nargs="*", default=list(SPLIT_SIZES), help="row counts to split")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child_split(*args.child)))
        return 0
    from bench.bench_copy import s3_server

    with s3_server("moto") as server:
        split = [measure_split(server.endpoint, rows) for rows in args.split_rows]
    with contextlib.redirect_stdout(io.StringIO()):  # the closers' metrics (EMF lines) are not figures
        shared = [measure_shared_photo(rows) for rows in SHARED_SIZES]
    print(f"{'split rows':>12} {'rows/s':>10} {'peak RSS MB':>12}")
    for entry in split:
        print(f"{entry['rows']:>12} {entry['rows_per_second']:>10} {entry['peak_rss_mb']:>12.1f}")
    print(f"\n{'shared-photo rows':>18} {'S3 requests/row':>16} {'photo moves':>12}")
    for entry in shared:
        print(f"{entry['rows']:>18} {entry['s3_requests_per_row']:>16} {entry['photo_moves']:>12}")
    RESULTS.write_text(json.dumps({"split": split, "shared_photo": shared}, indent=2) + "\n", encoding="utf-8")
    print(f"\nwritten to {RESULTS.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
