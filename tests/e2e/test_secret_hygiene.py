"""Secret hygiene: the API key and the presigned media URLs are written nowhere.

One offline run with a distinctive API key (the emulator accepts only that key, so every accepted
request proves it was sent) through the paths that write reports, notifications and logs: a success,
a render the provider reports FAILED, a job file that is not valid (INVALID_JOB), and a job that meets
a transient fault at every provider endpoint (submit 500, status 500, result 502, download reset)
and still succeeds. Everything the run leaves behind is then scanned: the output directory (summary,
notifications, output bucket, input bucket with the error reports, the functions' structured logs),
every other log record and stderr line, the job and pipeline-state tables, the state machine's execution
histories and the emulator's request log.

The functions' logger runs at DEBUG for the run (the most the LogLevel parameter allows), so a key
or URL that only a debug line would print is caught too; other loggers are captured from INFO, as the
Lambda runtime would record them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from avatar_local.emulator import FaultPlan
from avatar_local.emulator.faults import FaultRule
from avatar_local.stack.runner import LocalPipeline, LocalRunConfig
from avatar_pipeline.adapters.storage import S3Storage
from avatar_pipeline.observability import logger as function_logger
from tests.e2e.conftest import write_job

pytestmark = pytest.mark.e2e

CANARY_CORE = uuid.uuid4().hex.upper()
API_KEY = f"sk-LEAK-CANARY-{CANARY_CORE}"
# What a presigned S3 URL carries: SigV4 query parameters, and SigV2's (botocore's default for S3
# presigning in the older regions). None of it may be written anywhere but the provider's request.
PRESIGN_MARKERS = ("X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "AWSAccessKeyId=", "Signature=")

JOBS = {
    "inbox/ok.json": ("SUCCEEDED", None),
    "inbox/doomed.json": ("FAILED", "PROVIDER_FAILED"),
    "inbox/bad.json": ("FAILED", "INVALID_JOB"),
    "inbox/transient.json": ("SUCCEEDED", None),
}
FAULTS = FaultPlan(
    rules=[
        FaultRule(endpoint="status", fault="failed", title_pattern="^Doomed$", message="Blocked by the safety filter"),
        FaultRule(endpoint="submit", fault="http_500", title_pattern="^Transient$"),
        FaultRule(endpoint="status", fault="http_500", title_pattern="^Transient$"),
        FaultRule(endpoint="result", fault="http_502", title_pattern="^Transient$"),
        FaultRule(endpoint="download", fault="connection_reset", title_pattern="^Transient$"),
    ]
)


@dataclass
class HygieneRun:
    summary: dict[str, Any]
    accepted_submits: int
    faults_injected: int
    presigned_urls: list[str]
    # where -> what was written there
    written: dict[str, bytes] = field(default_factory=dict)

    def places_containing(self, needle: str) -> list[str]:
        encoded = needle.encode()
        return sorted(where for where, content in self.written.items() if encoded in content)


def _write_jobs(inbox: Path) -> None:
    iv = {"model": "heygen-avatar-iv", "script": "Nothing secret is said here."}
    write_job(inbox, "ok.json", {**iv, "photo": "ok.png", "video_title": "Fine"}, photo="ok.png")
    write_job(inbox, "doomed.json", {**iv, "photo": "doomed.png", "video_title": "Doomed"}, photo="doomed.png")
    write_job(inbox, "transient.json", {**iv, "photo": "tr.png", "video_title": "Transient"}, photo="tr.png")
    # Not a valid job (an unknown key): fails fast, before anything is presigned or posted.
    write_job(inbox, "bad.json", {**iv, "photo": "bad.png", "video_title": "Bad", "colour": "red"}, photo="bad.png")


def _table_items(table_name: str) -> bytes:
    table = boto3.resource("dynamodb").Table(table_name)
    items: list[dict[str, Any]] = []
    scan: dict[str, Any] = {}
    while True:
        page = table.scan(**scan)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return json.dumps(items, default=str).encode()
        scan = {"ExclusiveStartKey": page["LastEvaluatedKey"]}


def _execution_histories(state_machine_arn: str) -> bytes:
    sfn = boto3.client("stepfunctions")
    histories = [
        sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
        for execution in sfn.list_executions(stateMachineArn=state_machine_arn)["executions"]
    ]
    assert histories, "no executions to scan"
    return json.dumps(histories, default=str).encode()


def _not_the_provider(record: logging.LogRecord) -> bool:
    """The emulator plays Segmind: its own log lines (its HTTP client fetching the presigned photo,
    in its render threads) are the provider's logs, not the pipeline's."""
    return not (record.threadName or "").startswith("segmind-emulator") and not record.name.startswith(
        "avatar_local.emulator"
    )


@contextlib.contextmanager
def _everything_logged(level: int) -> Iterator[io.StringIO]:
    """Every stdlib log record of the process at `level` and above (besides the Powertools logger,
    which the offline stack writes to logs.jsonl, and the emulator's), formatted with its arguments."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logging.Formatter("%(threadName)s %(name)s %(levelname)s %(message)s"))
    handler.addFilter(_not_the_provider)
    handler.setLevel(level)
    root = logging.getLogger()
    saved_level = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(saved_level)


@pytest.fixture(scope="module")
def hygiene_run(tmp_path_factory: pytest.TempPathFactory) -> HygieneRun:
    base = tmp_path_factory.mktemp("hygiene")
    inbox, out = base / "inbox", base / "out"
    inbox.mkdir()
    _write_jobs(inbox)
    presigned: list[str] = []
    original_presign = S3Storage.presign_get

    def recording_presign(self: S3Storage, bucket: str, key: str, expires_in: int) -> str:
        url = original_presign(self, bucket, key, expires_in)
        presigned.append(url)
        return url

    config = LocalRunConfig(api_key=API_KEY, time_scale=0.01, log_path=out / "logs.jsonl", faults=FAULTS)
    out.mkdir()
    stderr = io.StringIO()
    with (
        pytest.MonkeyPatch.context() as patch,
        contextlib.ExitStack() as restore,
        _everything_logged(logging.INFO) as logged,
        contextlib.redirect_stderr(stderr),
    ):
        patch.setattr(S3Storage, "presign_get", recording_presign)
        # Powertools keeps its Secrets Manager client (bound to an earlier stack's endpoint) across
        # stacks in one process; start from none, and leave none behind.
        clear_secret_cache: Callable[[], None] = parameters.clear_caches
        clear_secret_cache()
        restore.callback(clear_secret_cache)
        patch.setenv("AVATAR_LOCAL_LOG_LEVEL", "DEBUG")
        # The logger exists since import, at the level the environment had then.
        restore.callback(function_logger.setLevel, function_logger.log_level)
        function_logger.setLevel(logging.DEBUG)
        with LocalPipeline(config) as pipeline:
            started = time.monotonic()
            keys = pipeline.drop(inbox)
            completed = pipeline.wait_until_terminal(keys, timeout=180)
            summary = pipeline.write_results(out, keys, time.monotonic() - started, completed)
            assert pipeline.stack is not None
            assert pipeline.emulator is not None
            outputs = pipeline.stack.outputs
            written = {
                "JobsTable items": _table_items(outputs["JobsTableName"]),
                "PipelineStateTable items": _table_items(outputs["PipelineStateTableName"]),
                "execution histories": _execution_histories(outputs["StateMachineArn"]),
                "emulator request log": json.dumps(
                    [entry.model_dump(mode="json") for entry in pipeline.emulator.request_log]
                ).encode(),
            }
            stats = pipeline.emulator.stats()
    written["log records"] = logged.getvalue().encode()
    written["stderr"] = stderr.getvalue().encode()
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        written[str(path.relative_to(out))] = path.read_bytes()
    return HygieneRun(summary, stats.submits_accepted, stats.faults_injected, presigned, written)


def test_the_run_took_every_path_the_scan_covers(hygiene_run: HygieneRun) -> None:
    """Given the four jobs, then each ended as planned, the transient faults were all injected and
    retried away, and the provider accepted the canary key (it accepts no other)."""
    outcomes = {job["input_key"]: (job["status"], job["error_code"]) for job in hygiene_run.summary["jobs"]}
    assert outcomes == JOBS, hygiene_run.summary
    assert hygiene_run.summary["completed"] is True
    assert hygiene_run.faults_injected == len(FAULTS.rules)
    assert hygiene_run.accepted_submits == 3  # ok, doomed, transient; bad.json never reached the provider
    written = set(hygiene_run.written)
    assert {"summary.json", "notifications.jsonl", "logs.jsonl"} <= written
    assert {"inputs/failed/doomed.error.json", "inputs/failed/bad.error.json"} <= written
    assert {"outputs/videos/ok.json", "outputs/videos/transient.json"} <= written
    # The functions' structured logs really were captured.
    assert b"submitted to Segmind" in hygiene_run.written["logs.jsonl"]


def test_the_api_key_is_written_nowhere(hygiene_run: HygieneRun) -> None:
    """Then neither the key nor its random part appears in any output, report, notification,
    manifest, log line, table item, execution history or provider request log entry."""
    assert hygiene_run.places_containing(API_KEY) == []
    assert hygiene_run.places_containing(CANARY_CORE) == []
    assert hygiene_run.places_containing(CANARY_CORE.lower()) == []


def test_presigned_media_urls_are_written_nowhere(hygiene_run: HygieneRun) -> None:
    """Given the photo URLs presigned for the provider (ok, doomed, and transient twice: its first
    submit met a 500), then no URL, no signature and no presigning parameter appears anywhere,
    error reports and notifications included."""
    urls = hygiene_run.presigned_urls
    assert len(urls) == 4
    signatures: list[str] = []
    for url in urls:
        query = parse_qs(urlsplit(url).query)
        signature = (query.get("X-Amz-Signature") or query.get("Signature") or [""])[0]
        assert len(signature) >= 20, f"not a presigned URL: {url}"
        signatures.append(signature)
    for needle in [*urls, *signatures, *PRESIGN_MARKERS]:
        assert hygiene_run.places_containing(needle) == [], needle
    reports = [where for where in hygiene_run.written if where.endswith(".error.json")]
    assert len(reports) == 2  # the scan above covered both error reports


def test_presigned_media_urls_are_sigv4(hygiene_run: HygieneRun) -> None:
    """Then every URL handed to the provider is SigV4 (the only signature S3 accepts for objects
    encrypted with the stack's KMS key), with an expiry of at most the configured hour."""
    for url in hygiene_run.presigned_urls:
        query = parse_qs(urlsplit(url).query)
        assert query.get("X-Amz-Algorithm") == ["AWS4-HMAC-SHA256"], url
        assert 0 < int(query["X-Amz-Expires"][0]) <= 3600
