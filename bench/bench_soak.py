"""The seeded soak: N jobs at once into the offline stack, with faults, crashes and duplicates drawn
from one seed, then every invariant checked over the whole history (bench/soak_check.py).

    python -m bench soak                                   # 300 jobs, the default seed -> bench/results/soak.json
    python -m bench soak --jobs 40 --seed 7 --fault-rate 0.1 --output /tmp/soak.json

What one seed fixes (bench/soak_jobs.py): the jobs (both models, captions, WebM, audio-driven jobs,
photos shared in a folder and across folders, output keys, a few of them on purpose the same, ~10%
bad input, ~5% late media); the emulator's random faults on every endpoint (submit, status, result,
download; every kind it knows, runs of several in a row for one job), drawn per job and request, so
the n-th status check of a job gets the same draw in every run; how many times each S3 event is
delivered (1-3); and the handler crashes (before/after each AWS and provider call a handler makes,
between the parts of a copy). Thread timing still varies from run to run, so the counts move a
little; a violation's history says what happened to that job.

The request budget is the one in force: the emulator answers 429 beyond `--rpm` a minute and the
stack's SegmindRequestsPerMinute is the same number. Exit status 1 when any invariant is violated
(or the run did not settle before --timeout); each violation is printed with the job's history.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import tempfile
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from avatar_local.emulator import FaultPlan
from avatar_local.emulator.faults import RandomFaults
from avatar_local.job_records import after, wait_until
from avatar_local.stack.crashes import RandomCrashes
from avatar_local.stack.poller import RandomDuplicates
from avatar_local.stack.runner import LocalPipeline, LocalRunConfig
from avatar_pipeline.records import TERMINAL_STATUSES, JobStatus
from bench.bench_poll import max_in_window
from bench.soak_check import (
    History,
    ProviderJob,
    StoredObject,
    Violation,
    check,
    documented_error_codes,
    failure_causes,
    job_histories,
    summarise,
)
from bench.soak_jobs import SoakPlan, build_plan

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "soak.json"
DEFAULT_SEED = 12
JOBS = 300
FAULT_RATE = 0.1
CRASH_RATE = 0.02
# Sized for a 2-core machine (see docs/performance.md): a virtual minute takes 15 s of wall time, and
# the 60-a-minute key keeps the stack's CPU load well under one core, so the handlers' real-time
# socket timeouts measure the faults, not the machine.
RPM = 60
TIME_SCALE = 0.25
RENDER_MEDIAN_SECONDS = 90.0
RENDER_SIGMA = 0.35
# The stack's read timeout to the provider is 5 s: an injected stall just past it.
READ_TIMEOUT_FAULT_SECONDS = 6.0
COPY_PART_BYTES = 64 * 1024
TIMEOUT_SECONDS = 19 * 60.0
# Well above any job's price (at most $4.55: Avatar V 4k with a digital twin).
SPEND_CEILING_PER_JOB_USD = 10
# The run has settled when nothing is queued or running and no notification came for this long
# (virtual seconds; at least 3 s of wall time).
SETTLE_VIRTUAL_SECONDS = 60.0
PROGRESS_EVERY_SECONDS = 30.0


def soak_config(args: argparse.Namespace, log_path: Path | None) -> LocalRunConfig:
    faults = FaultPlan(
        random=RandomFaults(rate=args.fault_rate, seed=args.seed, read_timeout_seconds=READ_TIMEOUT_FAULT_SECONDS)
    )
    return LocalRunConfig(
        render_seconds=args.render_seconds,
        render_sigma=RENDER_SIGMA,
        time_scale=args.time_scale,
        rpm=args.rpm,
        emulator_seed=args.seed,
        faults=faults,
        duplicate_events=RandomDuplicates(low=1, high=3, seed=args.seed),
        random_crashes=RandomCrashes(rate=args.crash_rate, seed=args.seed) if args.crash_rate > 0 else None,
        copy_part_bytes=COPY_PART_BYTES,
        log_path=log_path,
        # The ceiling stays on (its reservations, give-backs and corrections run under every fault and
        # crash) but far above what the run spends: a job refused SPEND_LIMIT would be unexplained.
        parameters={"DailySpendLimitUsd": str(SPEND_CEILING_PER_JOB_USD * args.jobs)},
    )


# --- driving ---------------------------------------------------------------------------------------


class LateUploads:
    """Puts each late file `delay_seconds` of virtual time after its own job file went up (the drop of
    hundreds of job files itself takes a while: the wait counts from the job's upload, as the
    pipeline's MediaWaitSeconds does from the job's event)."""

    def __init__(self, pipeline: LocalPipeline, plan: SoakPlan) -> None:
        self._pipeline = pipeline
        self._pending = {upload.key: upload for upload in plan.late}
        self._put_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = False
        self.uploaded_at: dict[str, datetime] = {}  # job files and late media: key -> virtual time
        self._thread = threading.Thread(target=self._run, name="soak-late-media", daemon=True)

    def start(self) -> LateUploads:
        self._thread.start()
        return self

    def job_file_put(self, key: str) -> None:
        # Recorded beside the late media's: a job file that went up after a sibling ended cannot
        # have kept their shared photo in inbox/ (the checker needs to tell that apart).
        self.uploaded_at[key] = self._pipeline.clock.now()
        with self._wake:
            self._put_at[key] = time.monotonic()
            self._wake.notify_all()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        self._thread.join(timeout=5)

    def _next(self) -> tuple[float, str] | None:
        """The earliest due upload whose job file is up: (when, key)."""
        scale = self._pipeline.config.time_scale
        due = [
            (self._put_at[u.follows] + u.delay_seconds * scale, u.key)
            for u in self._pending.values()
            if u.follows in self._put_at
        ]
        return min(due) if due else None

    def _run(self) -> None:
        while True:
            with self._wake:
                if self._stop or not self._pending:
                    return
                upcoming = self._next()
                wait = None if upcoming is None else upcoming[0] - time.monotonic()
                if wait is None or wait > 0:
                    self._wake.wait(timeout=wait)
                    continue
                assert upcoming is not None
                upload = self._pending.pop(upcoming[1])
            self._pipeline.put(upload.key, upload.body)
            self.uploaded_at[upload.key] = self._pipeline.clock.now()


def drop(pipeline: LocalPipeline, plan: SoakPlan, late: LateUploads) -> datetime:
    """Media first, then every job file at once (in the plan's shuffled order); the late media follow
    their job files. Returns when the job files started going up (virtual time)."""
    for upload in plan.media:
        pipeline.put(upload.key, upload.body)
    dropped_at = pipeline.clock.now()
    late.start()
    for job in plan.jobs:
        pipeline.put(job.key, job.body)
        late.job_file_put(job.key)
    return dropped_at


def _busy(pipeline: LocalPipeline) -> bool:
    """Anything still queued for Submit or running in the state machine."""
    assert pipeline.stack is not None
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=pipeline.stack.outputs["SubmitQueueUrl"],
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    if any(int(value) for value in attributes.values()):
        return True
    running = boto3.client("stepfunctions").list_executions(
        stateMachineArn=pipeline.stack.outputs["StateMachineArn"], statusFilter="RUNNING", maxResults=1
    )
    return bool(running["executions"])


def _notified_job_keys(pipeline: LocalPipeline) -> set[str]:
    return {str((n["message"].get("input") or {}).get("job_key")) for n in list(pipeline.notifications)}


def wait(pipeline: LocalPipeline, plan: SoakPlan, late: LateUploads, timeout: float) -> bool:
    """Until every job has notified, or the stack has settled (nothing queued or running, nothing
    changing): True. False if `timeout` wall seconds pass first."""
    started = time.monotonic()
    expected = {job.key for job in plan.jobs}
    last_change, last_seen = time.monotonic(), -1
    next_report = started + PROGRESS_EVERY_SECONDS

    def settled() -> bool:
        nonlocal last_change, last_seen, next_report
        sent = len(pipeline.notifications)
        if sent != last_seen:
            last_change, last_seen = time.monotonic(), sent
        # Jobs, not messages: a crash between a publish and its record publishes again (at least once).
        notified = len(expected & _notified_job_keys(pipeline))
        if notified == len(expected) and late.done:
            return True
        quiet = max(3.0, SETTLE_VIRTUAL_SECONDS * pipeline.config.time_scale)
        if late.done and time.monotonic() - last_change >= quiet and not _busy(pipeline):
            return True
        if time.monotonic() >= next_report:
            _progress(pipeline, notified, len(expected), started)
            next_report += PROGRESS_EVERY_SECONDS
        return False

    return bool(wait_until(settled, interval=1.0, give_up=after(timeout)))


def _progress(pipeline: LocalPipeline, notified: int, expected: int, started: float) -> None:
    assert pipeline.emulator is not None
    stats = pipeline.emulator.stats()
    crashes = len(pipeline.crash_injector.crashes) if pipeline.crash_injector else 0
    print(
        f"  {time.monotonic() - started:5.0f} s: {notified:3d}/{expected} notified, {stats.submits_accepted:3d} "
        f"submitted, {stats.requests:5d} provider requests, {stats.faults_injected:4d} faults, {crashes:3d} crashes",
        file=pipeline.console,
        flush=True,
    )


# --- collecting the history ------------------------------------------------------------------------


def _objects(bucket: str, keep_json: bool) -> dict[str, StoredObject]:
    s3 = boto3.client("s3")
    found: dict[str, StoredObject] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            key = str(obj["Key"])
            etag = str(obj.get("ETag", "")).strip('"')
            wants_body = key.endswith(".json") and (keep_json or key.endswith(".error.json"))
            wants_digest = keep_json  # the output bucket: every object's sha256
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read() if wants_body or wants_digest else None
            found[key] = StoredObject(
                key=key,
                size=int(obj.get("Size", 0)),
                etag=etag,
                sha256=hashlib.sha256(body).hexdigest() if body is not None and wants_digest else None,
                body=body if wants_body else None,
            )
    return found


def _open_uploads(buckets: list[str]) -> list[dict[str, str]]:
    s3 = boto3.client("s3")
    uploads: list[dict[str, str]] = []
    for bucket in buckets:
        for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
            for upload in page.get("Uploads", []):
                uploads.append({"bucket": bucket, "key": str(upload["Key"]), "upload_id": str(upload["UploadId"])})
    return uploads


def _dead_letters(queue_url: str) -> list[str]:
    """The job keys of the events in the DLQ (each message read once, left where it is)."""
    sqs = boto3.client("sqs")
    keys: list[str] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600).get(
            "Messages", []
        )
        if not messages:
            return keys
        for message in messages:
            try:
                keys.append(str(json.loads(message["Body"])["detail"]["object"]["key"]))
            except (ValueError, KeyError, TypeError):
                keys.append("?")


def _provider_jobs(pipeline: LocalPipeline) -> list[ProviderJob]:
    assert pipeline.emulator is not None
    jobs: list[ProviderJob] = []
    for job in pipeline.emulator.jobs_snapshot():
        outputs: dict[str, tuple[int, str]] = {}
        for extension, path in job.output_files.items():
            data = Path(path).read_bytes()
            outputs[extension] = (len(data), hashlib.sha256(data).hexdigest())
        jobs.append(
            ProviderJob(
                request_id=job.request_id,
                model=job.model,
                identity=job.identity,
                media_keys=dict(job.media_keys),
                status=job.status,
                error=job.error,
                outputs=outputs,
            )
        )
    return jobs


def collect(pipeline: LocalPipeline, plan: SoakPlan, late: LateUploads) -> History:
    assert pipeline.stack is not None and pipeline.emulator is not None and pipeline.poller is not None
    outputs = pipeline.stack.outputs
    notifications = [dict(n["message"]) for n in list(pipeline.notifications)]
    return History(
        seed=plan.seed,
        records=pipeline.job_records(),
        notifications=notifications,
        input_objects=_objects(outputs["InputBucketName"], keep_json=False),
        output_objects=_objects(outputs["OutputBucketName"], keep_json=True),
        open_uploads=_open_uploads([outputs["InputBucketName"], outputs["OutputBucketName"]]),
        provider_jobs=_provider_jobs(pipeline),
        requests=pipeline.emulator.request_log,
        crashes=list(pipeline.crash_injector.crashes) if pipeline.crash_injector else [],
        deliveries=dict(pipeline.poller.stats.deliveries),
        dead_letters=_dead_letters(outputs["SubmitDeadLetterQueueUrl"]),
        uploaded_at=dict(late.uploaded_at),
        error_codes=documented_error_codes(),
        unfinished_executions=_unfinished_executions(pipeline),
    )


def _unfinished_executions(pipeline: LocalPipeline) -> dict[str, dict[str, Any]]:
    """For each job not SUCCEEDED or FAILED that has an execution: how it ended (or where it waits),
    and its last states, for a person reading the job's history."""
    sfn = boto3.client("stepfunctions")
    found: dict[str, dict[str, Any]] = {}
    for record in pipeline.job_records():
        if record.status in TERMINAL_STATUSES or not record.execution_arn:
            continue
        described = sfn.describe_execution(executionArn=record.execution_arn)
        events = sfn.get_execution_history(executionArn=record.execution_arn, reverseOrder=True, maxResults=12)
        found[record.job_id] = {
            "status": described["status"],
            "last_events": [
                {"type": e["type"], **{k: str(v)[:300] for k, v in e.items() if k.endswith("EventDetails")}}
                for e in events["events"]
            ],
        }
    return found


# --- figures ---------------------------------------------------------------------------------------


def figures(
    args: argparse.Namespace,
    pipeline: LocalPipeline,
    plan: SoakPlan,
    history: History,
    violations: list[Violation],
    dropped_at: datetime,
    wall: float,
    settled: bool,
) -> dict[str, Any]:
    assert pipeline.emulator is not None and pipeline.poller is not None
    stats = pipeline.emulator.stats()
    keys = {job.key for job in plan.jobs}
    latest = {r.job_key: r for r in sorted(history.records, key=lambda r: r.received_at) if r.job_key in keys}
    outcomes: Counter[str] = Counter()
    for job in plan.jobs:
        record = latest.get(job.key)
        if record is None:
            outcomes["no record"] += 1
        elif record.status == JobStatus.FAILED:
            outcomes[f"FAILED {record.error_code}"] += 1
        else:
            outcomes[record.status.value] += 1
    ended = [r.completed_at or r.updated_at for r in latest.values() if r.status in TERMINAL_STATUSES]
    last = max(ended, default=dropped_at)
    api = [e for e in history.requests if e.endpoint in ("submit", "status", "result")]
    moments = [(pipeline.clock.to_virtual(datetime.fromtimestamp(e.at, UTC)) - dropped_at).total_seconds() for e in api]
    crashes = pipeline.crash_injector.by_function_and_point() if pipeline.crash_injector else {}
    copies = Counter(history.deliveries.values())
    runs = pipeline.emulator.faults.runs_started
    return {
        "seed": args.seed,
        "jobs": len(plan.jobs),
        "fault_rate": args.fault_rate,
        "crash_rate": args.crash_rate,
        "rpm": args.rpm,
        "time_scale": args.time_scale,
        "render_median_seconds": args.render_seconds,
        "plan": plan.counts(),
        "late_media_jobs": sum("late" in job.tags for job in plan.jobs),
        "bad_input_jobs": sum(job.bad for job in plan.jobs),
        "faults_injected": {
            "total": stats.faults_injected,
            "by_kind": dict(sorted(stats.faults_by_kind.items())),
            "by_endpoint": {k: dict(sorted(v.items())) for k, v in sorted(stats.faults_by_endpoint.items())},
            "runs_of_3_or_more": sum(n for (_, _, length), n in runs.items() if length >= 3),
            "runs_of_5_or_more": {
                f"{endpoint} {kind} x{length}": n for (endpoint, kind, length), n in sorted(runs.items()) if length >= 5
            },
        },
        "crashes": {
            "total": sum(sum(points.values()) for points in crashes.values()),
            "by_function": {f: sum(points.values()) for f, points in sorted(crashes.items())},
            "by_function_and_point": {f: dict(sorted(points.items())) for f, points in sorted(crashes.items())},
        },
        "duplicate_deliveries": {
            "events": sum(copies.values()),
            "extra_copies": pipeline.poller.stats.duplicates_sent,
            "events_by_copies": {str(k): v for k, v in sorted(copies.items())},
        },
        "outcomes": dict(sorted(outcomes.items())),
        "failure_causes": failure_causes(plan, history),
        "dead_letters": len(history.dead_letters),
        "dead_letter_keys": sorted(history.dead_letters),
        "violations": summarise(violations),
        "violation_count": len(violations),
        "settled": settled,
        "wall_seconds": round(wall, 1),
        "virtual_minutes": round((last - dropped_at).total_seconds() / 60, 1),
        "requests_per_minute_max": max_in_window(moments),
        "provider": {
            "requests": stats.requests,
            "submits_accepted": stats.submits_accepted,
            "status_calls": stats.status_calls,
            "result_calls": stats.result_calls,
            "downloads": stats.downloads,
            "http_429": stats.http_429,
            "rate_limited": stats.rate_limited,
        },
    }


def report(summary: dict[str, Any]) -> str:
    faults = summary["faults_injected"]
    lines = [
        f"soak: {summary['jobs']} jobs, seed {summary['seed']}, fault rate {summary['fault_rate']}, crash rate "
        f"{summary['crash_rate']}, {summary['rpm']} requests/minute (emulator limit and SegmindRequestsPerMinute), "
        f"time scale {summary['time_scale']}",
        f"  plan: {summary['plan']}",
        f"  faults injected: {faults['total']} {faults['by_kind']}",
        f"    by endpoint: {faults['by_endpoint']}",
        f"    runs of 5+: {faults['runs_of_5_or_more']}",
        f"  crashes: {summary['crashes']['total']} {summary['crashes']['by_function']}",
        f"  deliveries: {summary['duplicate_deliveries']}",
        f"  outcomes: {summary['outcomes']}; in the DLQ: {summary['dead_letters']}",
        f"  failures by cause: {summary['failure_causes']}",
        f"  wall {summary['wall_seconds']} s, {summary['virtual_minutes']} virtual minutes, at most "
        f"{summary['requests_per_minute_max']} requests in any 60 s; provider {summary['provider']}",
        "  invariants:",
    ]
    for name, hits in summary["violations"].items():
        mark = "ok" if hits["count"] == 0 else f"{hits['count']} VIOLATION(S)"
        lines.append(f"    {name:<58} {mark}")
    return "\n".join(lines)


# --- main ------------------------------------------------------------------------------------------


@contextmanager
def _quiet() -> Iterator[None]:
    """Failed jobs are expected here: moto logs every Fail state as an error, and Powertools warns
    about invocations that published no metric (a crashed one)."""
    interpreter = logging.getLogger("moto.stepfunctions")
    level = interpreter.level
    interpreter.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="No application metrics to publish")
            yield
    finally:
        interpreter.setLevel(level)


def run(args: argparse.Namespace) -> tuple[dict[str, Any], list[Violation], list[dict[str, Any]]]:
    plan = build_plan(args.seed, args.jobs)
    out = args.out or Path(tempfile.mkdtemp(prefix=f"soak-{args.seed}-"))
    out.mkdir(parents=True, exist_ok=True)
    config = soak_config(args, out / "logs.jsonl")
    with _quiet(), LocalPipeline(config) as pipeline:
        print(
            f"soak: seed {args.seed}, {len(plan.jobs)} jobs, {args.rpm} requests/minute, time scale "
            f"{args.time_scale}; logs in {out}",
            file=pipeline.console,
            flush=True,
        )
        started = time.monotonic()
        late = LateUploads(pipeline, plan)
        dropped_at = drop(pipeline, plan, late)
        settled = wait(pipeline, plan, late, args.timeout)
        late.stop()
        wall = time.monotonic() - started
        history = collect(pipeline, plan, late)
        violations = check(plan, history)
        if not settled:
            violations.append(Violation(1, None, None, f"the run had not settled after {args.timeout:.0f} s"))
        everything = job_histories(plan, history)
        by_key = {item["job"]["key"]: item for item in everything}
        histories = [
            {"violation": v.__dict__ | {"name": v.name}, "history": by_key[v.job_key]}
            for v in violations
            if v.job_key in by_key
        ]
        summary = figures(args, pipeline, plan, history, violations, dropped_at, wall, settled)
    (out / "violations.json").write_text(json.dumps(histories, indent=2, default=str) + "\n")
    (out / "histories.json").write_text(json.dumps(everything, indent=1, default=str) + "\n")
    return summary, violations, histories


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--fault-rate", type=float, default=FAULT_RATE, help="share of provider requests faulted")
    parser.add_argument("--crash-rate", type=float, default=CRASH_RATE, help="crash chance per handler call")
    parser.add_argument("--rpm", type=int, default=RPM, help="the Segmind key's requests per minute")
    parser.add_argument("--time-scale", type=float, default=TIME_SCALE, help="wall seconds per virtual second")
    parser.add_argument("--render-seconds", type=float, default=RENDER_MEDIAN_SECONDS, help="median render time")
    parser.add_argument("--timeout", type=float, default=TIMEOUT_SECONDS, help="wall-clock seconds")
    parser.add_argument("--output", type=Path, default=RESULTS, help="the figures (JSON)")
    parser.add_argument("--out", type=Path, help="logs.jsonl and violations.json (default: a new temp folder)")
    return parser.parse_args(argv or [])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    summary, violations, histories = run(args)
    for item in histories:
        violation = item["violation"]
        print(
            f"\nVIOLATION {violation['invariant']} ({violation['name']}): {violation['job_key']} "
            f"[seed {args.seed}]: {violation['detail']}"
        )
        print(json.dumps(item["history"], indent=2, default=str))
    for violation in violations:
        if violation.job_key is None:
            print(f"\nVIOLATION {violation.invariant} ({violation.name}) [seed {args.seed}]: {violation.detail}")
    print("\n" + report(summary))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
