"""Campaigns at volume: splitting 10,000 rows at flat memory, and finishing rows that share one photo at a
flat number of S3 requests per row, each beside a baseline measured in the same run.

    python -m bench campaign                      # 10,000 vs 1,000 rows; 200 vs 20 -> bench/results/campaign.json
    python -m bench.bench_campaign --rows 200 --baseline-rows 20 --finish-rows 20 --finish-baseline-rows 5 \\
        --output /tmp/campaign.json

AWS is a threaded moto server on loopback, as the offline stack runs it (avatar_local.stack.local_aws),
in this process; the pipeline's work runs in a child process per measurement, through the Lambda
functions' own composition root (avatar_pipeline.runtime: S3Storage, CampaignsTable, the SQS row
queue, the campaign announcer), so its peak RSS (VmHWM) is that work's and nothing else's. Each child
counts the HTTP requests its clients send, by service and operation (a botocore `before-send` hook
on the session every client is made from, so a retry counts too).

* split: one campaign, `<rows>` rows in a CSV in S3 (every row valid, one shared photo), split by
  campaigns/split.py's `split_campaign` in one invocation. Rows per second of the split call, and the
  child's peak RSS during the split (its RSS before the split beside it; Linux resets the peak then):
  memory is flat if the peaks at 10,000 and at 1,000 rows are about the same. The peak is also taken
  just before the split writes its first report (every row entered and handed out; the report is then
  written from the rows read back in row order), which tells streaming the rows apart from the report.
  The split's S3 requests per row show that the rows file is streamed and the shared photo checked once.
* finish: a campaign of `<rows>` rows sharing one photo, split (not counted), then every row ended the
  way a row job's close ends it (campaigns/complete.py's `end_row`, SUCCEEDED with a cost) until the
  last one completes the campaign: report, the campaign file, rows file and photo out of inbox/, the
  notification. S3 requests per row: flat if finishing 200 rows costs no more per row than 20.
  This is the campaign's side of each row's ending; the row's own close (its video, manifest and job
  record) is per job and does not touch the shared photo.

Two costs of moto's that grow with the size of what is stored, which AWS does not have, are kept out:
* TransactWriteItems copies every table it names, whole, before each transaction: a 10,000-row split
  would copy about 10^8 items. The server runs with that copy replaced by a backup of the items each
  transaction names (avatar_local.stack.dynamodb_transactions).
* SendMessage works out every attribute of the queue, ApproximateNumberOfMessages among them, by
  looking at every message in it: 10,000 rows waiting on the queue make the split quadratic. While a
  split runs, a thread of this process takes the row messages off the queue as they come (ReceiveMessage,
  DeleteMessageBatch), as Submit does on AWS, and checks that every row was handed out exactly once.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest import mock

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import DeleteMessageBatchRequestEntryTypeDef, MessageTypeDef

    from avatar_pipeline.domain.context import InboxObject
    from avatar_pipeline.domain.ports import SplitPorts

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results" / "campaign.json"
PHOTO = ROOT / "examples" / "alice.png"
INPUT, OUTPUT, TABLE = "bench-campaign-input", "bench-campaign-output", "bench-campaigns"
ROWS, BASELINE_ROWS = 10_000, 1_000
FINISH_ROWS, FINISH_BASELINE_ROWS = 200, 20
TEMPLATE = {
    "model": "heygen-avatar-iv",
    "photo": "shared.png",
    "video_title": "Hello {{first_name}}",
    "script": "Hi {{first_name}}, your order {{order}} ships today. Thank you for shopping with us!",
}
# Targets (DESIGN.md section 7: 10,000 rows at constant memory; rows sharing a photo cost each other
# nothing that grows with the campaign): the larger run's peak RSS within 10% of the baseline's, and
# no more S3 requests per finished row at 200 rows than at 20.
MAX_RSS_RATIO = 1.10
MAX_FINISH_S3_PER_ROW_RATIO = 1.0
CHILD_TIMEOUT_SECONDS = 3600


# --- the campaign in S3 -------------------------------------------------------------------------------


def rows_csv(rows: int) -> bytes:
    lines = ["id,first_name,order"]
    lines += [f"c{n:05d},Customer {n},A-{n * 7919 % 1_000_003:07d}" for n in range(1, rows + 1)]
    return ("\r\n".join(lines) + "\r\n").encode()


def upload_campaign(s3: Any, name: str, rows: int) -> str:
    """Photo and rows first, the campaign file last (as a person uploads them): the campaign's key."""
    folder = f"inbox/bench/{name}/"
    s3.put_object(Bucket=INPUT, Key=folder + "shared.png", Body=PHOTO.read_bytes())
    s3.put_object(Bucket=INPUT, Key=folder + "people.csv", Body=rows_csv(rows))
    campaign = {"rows": "people.csv", "row_id": "id", "template": TEMPLATE}
    key = f"{folder}{name}.campaign.json"
    s3.put_object(Bucket=INPUT, Key=key, Body=json.dumps(campaign).encode())
    return key


# --- the child: the pipeline's own code, counted ------------------------------------------------------


class RequestCounter:
    """HTTP requests by service and operation, from botocore's before-send event."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def __call__(self, event_name: str, **_: Any) -> None:
        self.counts[event_name.removeprefix("before-send.")] += 1  # before-send.<service>.<operation>


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status (kB), in MB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def peak_rss_mb() -> float:
    """This process's peak RSS since it started, or since reset_peak_rss. Not getrusage's ru_maxrss:
    a process started by fork and exec inherits its parent's peak there (Linux keeps the larger of
    the two), and the parent is the moto server, which grows with everything it stores."""
    return _status_mb("VmHWM")


def reset_peak_rss() -> float:
    """Start the peak afresh at the current RSS (Linux: "5" to /proc/self/clear_refs), so the peak seen
    after the split is the split's and not start-up's. The RSS now, in MB."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _status_mb("VmRSS")


def cpu_seconds() -> float:
    """This process's CPU time: the child's own work, or (in the parent) the moto server's."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(mode: str, campaigns: list[tuple[str, int]]) -> list[dict[str, Any]]:
    """The child's work: each campaign (key, rows) split, or split and finished, in turn."""
    import boto3

    counter = RequestCounter()
    boto3.setup_default_session()
    assert boto3.DEFAULT_SESSION is not None
    # Before the composition root makes its clients: each copies the session's handlers when made.
    boto3.DEFAULT_SESSION.events.register("before-send", counter)

    from avatar_pipeline import runtime

    ports = runtime.dependencies().split_ports
    ports.campaigns.get("warm-up")  # the table's client and connection, before the clock starts
    measured = []
    for key, rows in campaigns:
        obj = inbox_object(ports, key)
        counter.counts.clear()
        measure_one = measure_split if mode == "split" else measure_finish
        measured.append(measure_one(ports, obj, rows, counter))
    return measured


def inbox_object(ports: SplitPorts, key: str) -> InboxObject:
    from avatar_pipeline.domain.context import InboxObject

    head = ports.storage.head(INPUT, key)
    assert head is not None, key
    return InboxObject(
        bucket=INPUT,
        key=key,
        etag=head.etag,
        version_id=None,
        sequencer="0000000000000001",
        event_time=datetime.now(UTC),
    )


@contextmanager
def peak_before_the_report(seen: list[float]) -> Iterator[None]:
    """The peak RSS when the split, every row entered and handed out, writes its first report (the
    rows read back a page at a time): what streaming the rows took, apart from what the report takes."""
    from avatar_pipeline.campaigns.complete import refresh_report  # what settle calls, by that name

    def noting_the_peak(*args: Any, **kwargs: Any) -> None:
        seen.append(peak_rss_mb())
        refresh_report(*args, **kwargs)

    with mock.patch("avatar_pipeline.campaigns.complete.refresh_report", noting_the_peak):
        yield


def measure_split(ports: SplitPorts, obj: InboxObject, rows: int, counter: RequestCounter) -> dict[str, Any]:
    from avatar_pipeline.campaigns.records import derive_campaign_id
    from avatar_pipeline.campaigns.split import SplitResult, split_campaign

    rss_before, cpu_before = reset_peak_rss(), cpu_seconds()
    before_report: list[float] = []
    started = time.perf_counter()
    with peak_before_the_report(before_report):
        result = split_campaign(obj, ports)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    rss_peak = peak_rss_mb()
    requests = dict(counter.counts)
    record = ports.campaigns.get(derive_campaign_id(obj.bucket, obj.key))
    if result is not SplitResult.SPLIT or record is None or record.rows_total != rows or record.counts.terminal:
        raise RuntimeError(f"the split of {rows} rows ended {result}: {record}")
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "peak_rss_mb": rss_peak,
        "peak_rss_before_report_mb": before_report[0] if before_report else rss_peak,
        "rss_before_mb": rss_before,
        "requests": requests,
    }


def measure_finish(ports: SplitPorts, obj: InboxObject, rows: int, counter: RequestCounter) -> dict[str, Any]:
    from avatar_pipeline.campaigns.complete import end_row
    from avatar_pipeline.campaigns.records import CampaignStatus, RowStatus
    from avatar_pipeline.campaigns.split import split_campaign
    from avatar_pipeline.domain.ports import RowEnd

    split_campaign(obj, ports)
    messages = drain_row_messages(ports.settings.submit_queue_url or "")
    if len(messages) != rows:
        raise RuntimeError(f"the split handed out {len(messages)} of {rows} rows")
    counter.counts.clear()
    started = time.perf_counter()
    for message in messages:
        end_row(
            message.campaign_id, message.run_id, message.row_id, RowStatus.SUCCEEDED, RowEnd(cost_usd=Decimal(1)), ports
        )
    seconds = time.perf_counter() - started
    requests = dict(counter.counts)
    record = ports.campaigns.get(messages[0].campaign_id)
    if record is None or record.status is not CampaignStatus.COMPLETED or record.counts.succeeded != rows:
        raise RuntimeError(f"finishing {rows} rows did not complete the campaign: {record}")
    return {"seconds": seconds, "requests": requests}


def deletions(batch: list[MessageTypeDef]) -> list[DeleteMessageBatchRequestEntryTypeDef]:
    """The DeleteMessageBatch entries that take a received batch off its queue."""
    return [{"Id": str(i), "ReceiptHandle": message["ReceiptHandle"]} for i, message in enumerate(batch)]


def drain_row_messages(queue_url: str) -> list[Any]:
    import boto3

    from avatar_pipeline.campaigns.records import RowMessage

    sqs = boto3.client("sqs")
    found: list[RowMessage] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        found += [RowMessage.model_validate_json(message["Body"]) for message in batch]
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=deletions(batch))
    return sorted(found, key=lambda message: message.number)


# --- the parent: moto, the campaigns, one child per measurement ---------------------------------------


@dataclass
class Aws:
    """The moto server's resources the children use."""

    s3: Any
    sqs: Any
    topic_arn: str
    runs: int = 0

    def queue(self, name: str) -> str:
        url: str = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        return url

    def child_environment(self, queue_url: str) -> dict[str, str]:
        """What the Split function's environment holds (template.yaml), naming the moto resources."""
        return {
            **os.environ,
            "INPUT_BUCKET": INPUT,
            "OUTPUT_BUCKET": OUTPUT,
            "JOBS_TABLE": "bench-jobs",  # required by the settings, not read by a campaign's split or ending
            "CAMPAIGNS_TABLE": TABLE,
            "SUBMIT_QUEUE_URL": queue_url,
            "NOTIFICATION_TOPIC_ARN": self.topic_arn,
            "SEGMIND_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:ap-southeast-3:123456789012:secret:unused-AbCdEf",
            "POWERTOOLS_SERVICE_NAME": "avatar-pipeline",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_NAMESPACE": "AvatarPipeline",
        }


@contextmanager
def moto_stack() -> Iterator[Aws]:
    import boto3

    from avatar_local.stack.dynamodb_transactions import dynamodb_transactions_back_up_items
    from avatar_local.stack.local_aws import REGION, LocalAws, bucket_location
    from avatar_local.stack.table_schemas import table_schema

    # Entered before LocalAws.start() enters moto's write lock, so each backup is taken under it.
    with dynamodb_transactions_back_up_items():
        aws = LocalAws().start()
        try:
            s3 = boto3.client("s3")
            for bucket in (INPUT, OUTPUT):
                s3.create_bucket(Bucket=bucket, **bucket_location(REGION))
            boto3.client("dynamodb").create_table(
                TableName=TABLE,
                **table_schema("CampaignsTable"),
            )
            topic = boto3.client("sns").create_topic(Name="bench-campaign-notifications")["TopicArn"]
            yield Aws(s3, boto3.client("sqs"), topic)
        finally:
            aws.stop()


class Consumer:
    """Submit's stand-in during a split: takes the row messages off the queue as they arrive, and counts
    them by job id (each row once)."""

    def __init__(self, queue_url: str) -> None:
        import boto3

        self.queue_url = queue_url
        self.sqs = boto3.client("sqs")
        self.job_ids: Counter[str] = Counter()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="bench-campaign-consumer", daemon=True)

    def __enter__(self) -> Consumer:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join()

    def _run(self) -> None:
        # After the split ends, once more until the queue is empty: what it sent last is taken too.
        while self._take() or not self.stopping.is_set():
            pass

    def _take(self) -> bool:
        batch = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not batch:
            time.sleep(0.05)
            return False
        for message in batch:
            self.job_ids[json.loads(message["Body"])["job_id"]] += 1
        self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=deletions(batch))
        return True

    def check(self, rows: int) -> None:
        repeated = [job for job, count in self.job_ids.items() if count > 1]
        if len(self.job_ids) != rows or repeated:
            raise RuntimeError(f"{len(self.job_ids)} of {rows} rows handed out; {len(repeated)} more than once")


def run_split(aws: Aws, rows: int) -> dict[str, Any]:
    """One split in a child of its own (its peak RSS is the split's), a consumer taking its rows."""
    aws.runs += 1
    name = f"split-{rows}-{aws.runs}"  # a campaign and a queue of its own
    queue_url = aws.queue(name)
    with Consumer(queue_url) as consumer:
        (measured,) = run_child(aws, "split", [(upload_campaign(aws.s3, name, rows), rows)], queue_url)
    consumer.check(rows)
    return measured


def run_finishes(aws: Aws, sizes: list[int]) -> list[dict[str, Any]]:
    """Campaigns of each size split and finished, one after the other in one child (memory is not
    measured here): each takes its rows off the queue itself, as its input."""
    aws.runs += 1
    names = [f"finish-{rows}-{aws.runs}-{i}" for i, rows in enumerate(sizes)]
    campaigns = [(upload_campaign(aws.s3, name, rows), rows) for name, rows in zip(names, sizes, strict=True)]
    measured = run_child(aws, "finish", campaigns, aws.queue(f"finish-{aws.runs}"))
    for name in names:
        left = aws.s3.list_objects_v2(Bucket=INPUT, Prefix=f"inbox/bench/{name}/").get("KeyCount", 0)
        if left:
            raise RuntimeError(f"{left} of {name}'s inputs are still in inbox/ after it completed")
    return measured


def run_child(aws: Aws, mode: str, campaigns: list[tuple[str, int]], queue_url: str) -> list[dict[str, Any]]:
    command = [sys.executable, "-m", "bench.bench_campaign", "--child", mode]
    command += [f"{key}={rows}" for key, rows in campaigns]
    load, server_cpu = os.getloadavg()[0], cpu_seconds()
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        command,
        cwd=ROOT,
        env=aws.child_environment(queue_url),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} of {campaigns} failed:\n{done.stderr[-3000:]}")
    measured: list[dict[str, Any]] = json.loads(done.stdout.splitlines()[-1])
    for figures in measured:
        figures["load_average_before"] = load
        # This process serves moto (and runs the consumer) while the child runs.
        figures["moto_cpu_seconds"] = cpu_seconds() - server_cpu
    return measured


# --- figures ------------------------------------------------------------------------------------------


def per_row(requests: dict[str, int], rows: int, service: str) -> float:
    return sum(count for name, count in requests.items() if name.split(".", 1)[0] == service) / rows


def split_figures(measured: dict[str, Any], rows: int) -> dict[str, float]:
    requests = measured["requests"]
    return {
        "rows": rows,
        "seconds": round(measured["seconds"], 2),
        "rows_per_s": round(rows / measured["seconds"], 1),
        "peak_rss_mb": round(measured["peak_rss_mb"], 1),
        "peak_rss_before_report_mb": round(measured["peak_rss_before_report_mb"], 1),
        "rss_before_split_mb": round(measured["rss_before_mb"], 1),
        "split_cpu_seconds": round(measured["cpu_seconds"], 2),
        "moto_cpu_seconds": round(measured["moto_cpu_seconds"], 2),
        "s3_requests_per_row": round(per_row(requests, rows, "s3"), 4),
        "dynamodb_requests_per_row": round(per_row(requests, rows, "dynamodb"), 3),
        "sqs_requests_per_row": round(per_row(requests, rows, "sqs"), 3),
    }


def finish_figures(measured: dict[str, Any], rows: int) -> dict[str, Any]:
    requests = measured["requests"]
    s3 = {name.split(".", 1)[1]: count for name, count in sorted(requests.items()) if name.startswith("s3.")}
    return {
        "rows": rows,
        "seconds": round(measured["seconds"], 2),
        "s3_requests": sum(s3.values()),
        "s3_requests_per_row": round(sum(s3.values()) / rows, 4),
        "s3_operations": s3,
        "dynamodb_requests_per_row": round(per_row(requests, rows, "dynamodb"), 3),
    }


def ratios(figures: dict[str, Any], sizes: Sizes) -> dict[str, float]:
    split, finish = figures["split"], figures["finish_shared_photo"]
    big, small = split[str(sizes.rows)], split[str(sizes.baseline_rows)]
    finish_big, finish_small = finish[str(sizes.finish_rows)], finish[str(sizes.finish_baseline_rows)]
    return {
        "split_peak_rss": round(big["peak_rss_mb"] / small["peak_rss_mb"], 3),
        "split_peak_rss_before_report": round(big["peak_rss_before_report_mb"] / small["peak_rss_before_report_mb"], 3),
        "split_rows_per_s": round(big["rows_per_s"] / small["rows_per_s"], 3),
        "finish_s3_requests_per_row": round(finish_big["s3_requests_per_row"] / finish_small["s3_requests_per_row"], 3),
    }


@dataclass(frozen=True)
class Sizes:
    rows: int
    baseline_rows: int
    finish_rows: int
    finish_baseline_rows: int


def measure(sizes: Sizes) -> dict[str, Any]:
    """Baselines first; each measurement in a child of its own, against one moto server."""
    figures: dict[str, Any] = {"split": {}, "finish_shared_photo": {}}
    with moto_stack() as aws:
        for rows in (sizes.baseline_rows, sizes.rows):
            figures["split"][str(rows)] = split_figures(run_split(aws, rows), rows)
            line = figures["split"][str(rows)]
            print(f"  split  {rows:>6} rows: {line['rows_per_s']:8.1f} rows/s, peak RSS {line['peak_rss_mb']:.1f} MB")
        finish_sizes = [sizes.finish_baseline_rows, sizes.finish_rows]
        for rows, measured in zip(finish_sizes, run_finishes(aws, finish_sizes), strict=True):
            figures["finish_shared_photo"][str(rows)] = line = finish_figures(measured, rows)
            print(f"  finish {rows:>6} rows: {line['s3_requests']} S3 requests ({line['s3_requests_per_row']} a row)")
    figures["ratios"] = ratios(figures, sizes)
    return figures


def table(figures: dict[str, Any], sizes: Sizes) -> str:
    split, finish = figures["split"], figures["finish_shared_photo"]
    row = "{:<32} {:>14} {:>14} {:>8}"
    big, small = str(sizes.rows), str(sizes.baseline_rows)
    lines = [row.format("split", f"{sizes.rows:,} rows", f"{sizes.baseline_rows:,} rows", "ratio")]
    for name, label in (
        ("rows_per_s", "rows per second"),
        ("peak_rss_mb", "peak RSS during the split MB"),
        ("peak_rss_before_report_mb", "  before its first report MB"),
        ("rss_before_split_mb", "RSS before the split MB"),
        ("seconds", "seconds"),
        ("split_cpu_seconds", "split CPU seconds"),
        ("moto_cpu_seconds", "moto (+ consumer) CPU seconds"),
        ("s3_requests_per_row", "S3 requests per row"),
        ("dynamodb_requests_per_row", "DynamoDB requests per row"),
        ("sqs_requests_per_row", "SQS requests per row"),
    ):
        ratio = split[big][name] / split[small][name] if split[small][name] else 0.0
        lines.append(row.format(label, split[big][name], split[small][name], f"{ratio:.2f}"))
    big, small = str(sizes.finish_rows), str(sizes.finish_baseline_rows)
    lines += ["", row.format("finish (one shared photo)", f"{sizes.finish_rows:,} rows", f"{small} rows", "ratio")]
    for name, label in (("s3_requests", "S3 requests"), ("s3_requests_per_row", "S3 requests per row")):
        ratio = finish[big][name] / finish[small][name] if finish[small][name] else 0.0
        lines.append(row.format(label, finish[big][name], finish[small][name], f"{ratio:.2f}"))
    lines.append(f"S3 operations finishing {big} rows: {finish[big]['s3_operations']}")
    return "\n".join(lines)


def verdicts(figures: dict[str, Any], sizes: Sizes) -> list[str]:
    found = figures["ratios"]
    rss, s3 = found["split_peak_rss"], found["finish_s3_requests_per_row"]
    streaming = found["split_peak_rss_before_report"]
    return [
        f"split peak RSS at {sizes.rows:,} rows / {sizes.baseline_rows:,} rows <= {MAX_RSS_RATIO}: {rss:.3f} "
        f"-> {_ok(rss <= MAX_RSS_RATIO)}",
        f"  the same before its first report (the rows streamed, entered, handed out) <= {MAX_RSS_RATIO}: "
        f"{streaming:.3f} -> {_ok(streaming <= MAX_RSS_RATIO)}",
        f"finish S3 requests per row at {sizes.finish_rows} / {sizes.finish_baseline_rows} rows <= "
        f"{MAX_FINISH_S3_PER_ROW_RATIO}: {s3:.3f} -> {_ok(s3 <= MAX_FINISH_S3_PER_ROW_RATIO)}",
    ]


def _ok(met: bool) -> str:
    return "met" if met else "NOT MET"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_campaign", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=ROWS, help="the split's rows")
    parser.add_argument("--baseline-rows", type=int, default=BASELINE_ROWS, help="the split's baseline rows")
    parser.add_argument("--finish-rows", type=int, default=FINISH_ROWS, help="rows finished, sharing a photo")
    parser.add_argument("--finish-baseline-rows", type=int, default=FINISH_BASELINE_ROWS, help="their baseline")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where the figures go as JSON")
    parser.add_argument("--child", nargs="+", metavar="MODE KEY=ROWS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.rows, args.baseline_rows, args.finish_rows, args.finish_baseline_rows) < 1:
        parser.error("every row count must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    """`python -m bench` calls this without arguments: the full benchmark."""
    args = parse(argv or [])
    if args.child:
        mode, *campaigns = args.child
        pairs = [(key, int(rows)) for key, _, rows in (campaign.rpartition("=") for campaign in campaigns)]
        print(json.dumps(child(mode, pairs)))
        return 0
    sizes = Sizes(args.rows, args.baseline_rows, args.finish_rows, args.finish_baseline_rows)
    figures = measure(sizes)
    print()
    print(table(figures, sizes))
    for line in verdicts(figures, sizes):
        print(line)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
