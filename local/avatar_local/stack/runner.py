"""The offline stack, assembled: local AWS + template.yaml + Segmind emulator + the real handlers.

with LocalPipeline(LocalRunConfig(time_scale=0.01)) as pipeline:
    expected = pipeline.drop(Path("examples"))
    pipeline.wait_until_terminal(expected, timeout=120)
    pipeline.write_results(Path("out"))
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TextIO
from unittest import mock

import boto3
import moto.s3.models
from aws_lambda_powertools.utilities import parameters

from avatar_local.emulator import EmulatorConfig, FaultPlan, SegmindEmulator
from avatar_local.emulator.config import DEFAULT_COSTS
from avatar_local.job_records import after, latest_per_job_file, scan_records, wait_until
from avatar_local.run_folder import inbox_files
from avatar_local.stack.crashes import CrashInjector, CrashRule, RandomCrashes, crashes_installed
from avatar_local.stack.lambda_router import LambdaRouter, load_handler
from avatar_local.stack.local_aws import FUNCTIONS, DeployedStack, LocalAws, deploy
from avatar_local.stack.poller import EventSourceMapping, QueuePoller, RandomDuplicates
from avatar_local.stack.submit_tags import submits_tagged_with_job_ids
from avatar_local.stack.timewarp import ScaledClock, ScaledQueueDelays, WarpedWaits
from avatar_pipeline import runtime
from avatar_pipeline.adapters.transfer import StreamingCopier
from avatar_pipeline.clock import SystemClock
from avatar_pipeline.keys import is_campaign_file_key
from avatar_pipeline.records import TERMINAL_STATUSES, JobRecord

LOCAL_API_KEY = "local-dev-key"
# The DLQ's visibility timeout (SQS's default: the template sets none).
DEAD_LETTER_VISIBILITY_SECONDS = 30
# Functions whose time limits guard wall-clock work (HTTP timeouts; a split's DynamoDB writes): not scaled.
WALL_TIME_FUNCTIONS = frozenset({"SubmitFunction", "SplitFunction"})
MEDIA_FIRST = 0
JOB_FILES_LAST = 1


@dataclass
class LocalRunConfig:
    render_seconds: float = 140.0
    render_sigma: float = 0.0
    time_scale: float = 0.01
    rpm: int | None = None
    credits: int | None = None
    # The emulator's `metrics.cost` per model (None: its made-up defaults).
    provider_costs: dict[str, float] | None = None
    # Seeds the emulator's render times and request ids (None: random).
    emulator_seed: int | None = None
    faults: FaultPlan | None = None
    # Each S3 event delivered N times, or a seeded random number of times per event.
    duplicate_events: int | RandomDuplicates = 1
    api_key: str = LOCAL_API_KEY
    output_shape: Literal["string", "list", "object"] = "string"
    parameters: dict[str, str] = field(default_factory=dict)
    log_path: Path | None = None
    crashes: list[CrashRule] = field(default_factory=list)
    # Seeded random handler crashes (before/after AWS and provider calls, between copy parts).
    random_crashes: RandomCrashes | None = None
    # Streamed copies in parts of this size (and moto accepting parts that small), so that the
    # emulator's small videos go through multipart uploads too. None: the pipeline's 8 MiB.
    copy_part_bytes: int | None = None


@dataclass
class JobProgress:
    job_key: str
    job_id: str
    status: str
    provider_status: str | None
    error_code: str | None


@contextmanager
def small_copy_parts(part_bytes: int) -> Iterator[None]:
    """Streamed copies in `part_bytes` parts, and moto's S3 accepting parts that small (S3's own
    minimum is 5 MiB): a video of a few hundred KiB then goes through a multipart upload of several
    parts, so what happens between parts (a crash, an abort) happens offline too."""
    original_init = StreamingCopier.__init__

    def init(self: StreamingCopier, *args: Any, **kwargs: Any) -> None:
        if len(args) < 4:
            kwargs.setdefault("part_size", part_bytes)
        original_init(self, *args, **kwargs)

    with (
        mock.patch.object(StreamingCopier, "__init__", init),
        mock.patch.object(moto.s3.models, "S3_UPLOAD_PART_MIN_SIZE", min(part_bytes, 5 * 1024 * 1024)),
    ):
        yield


class LocalPipeline:
    def __init__(self, config: LocalRunConfig) -> None:
        self.config = config
        self.clock = ScaledClock(config.time_scale)
        self.router = LambdaRouter()
        self.notifications: list[dict[str, Any]] = []
        # Files that look like job files but are not picked up (Upper.JSON): uploaded, and said so.
        self.ignored_job_files: list[str] = []
        self._notification_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._saved_env: dict[str, str | None] = {}
        self._log_stream: TextIO | None = None
        self._saved_stdout: TextIO | None = None
        self._saved_log_streams: list[tuple[logging.StreamHandler[Any], Any]] = []
        self._warning_filters: warnings.catch_warnings[None] | None = None
        self.aws = LocalAws()
        self.emulator: SegmindEmulator | None = None
        self.stack: DeployedStack | None = None
        self.poller: QueuePoller | None = None
        self.dead_letter_poller: QueuePoller | None = None
        self.split_poller: QueuePoller | None = None
        # Campaign files dropped (inbox/**.campaign.json): each ends with one campaign notification.
        self.campaign_keys: list[str] = []
        self._waits = WarpedWaits(self.clock, skip=False)
        self._crashes = crashes_installed(config.crashes)
        self.crash_injector = CrashInjector(config.random_crashes) if config.random_crashes else None
        self._patches = ExitStack()
        self._queue_delays = ScaledQueueDelays(self.clock)

    # --- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> LocalPipeline:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        cfg = self.config
        self.aws.start()
        self.emulator = SegmindEmulator(
            EmulatorConfig(
                api_keys={cfg.api_key},
                render_seconds=cfg.render_seconds,
                render_sigma=cfg.render_sigma,
                time_scale=cfg.time_scale,
                rpm=cfg.rpm,
                credits=cfg.credits,
                costs=cfg.provider_costs if cfg.provider_costs is not None else dict(DEFAULT_COSTS),
                output_shape=cfg.output_shape,
                seed=cfg.emulator_seed,
            )
        )
        base_url = self.emulator.start()
        if cfg.faults is not None:
            self.emulator.set_faults(cfg.faults)
        stack_parameters = {"SegmindBaseUrl": base_url}
        if cfg.rpm is not None:
            # The pipeline's shared request budget matches the emulator's limit.
            stack_parameters["SegmindRequestsPerMinute"] = str(max(2, cfg.rpm))
        self.stack = deploy({**stack_parameters, **cfg.parameters}, api_key=cfg.api_key)
        self._set_function_environment(self.stack)
        # Powertools keeps its Secrets Manager client (bound to an earlier moto server's port) and
        # the secret it read: forget both, as a new Lambda environment would.
        forget_secrets: Callable[[], None] = parameters.clear_caches
        forget_secrets()
        self._capture_logs()
        runtime.use_clock(self.clock)
        for logical_id, directory in FUNCTIONS.items():
            # The context's remaining time (Finalize's copy deadline, Poll's) is scaled like every other
            # delay. Submit's is not: it guards a live POST, whose HTTP timeouts are wall time (like the
            # submit lease).
            timeout = self.stack.function_timeouts[logical_id]
            if logical_id not in WALL_TIME_FUNCTIONS:
                timeout *= cfg.time_scale
            loader = functools.partial(load_handler, directory)
            self.router.register(self.stack.physical(logical_id), loader, timeout_seconds=timeout)
        # Only what was entered is undone on the way out (a start that failed half way included).
        self._patches.enter_context(self._crashes)
        self._patches.enter_context(submits_tagged_with_job_ids())
        if cfg.copy_part_bytes is not None:
            self._patches.enter_context(small_copy_parts(cfg.copy_part_bytes))
        if self.crash_injector is not None:
            self._patches.enter_context(self.crash_injector)
        self.router.install()
        self._queue_delays.__enter__()
        self._waits.__enter__()
        self._capture_notifications(self.stack)
        submit_queue_url = self.stack.outputs["SubmitQueueUrl"]
        submit_name = self.stack.physical("SubmitFunction")
        submit_mapping = EventSourceMapping(
            queue_url=submit_queue_url,
            queue_arn=self.stack.outputs["SubmitQueueArn"],
            batch_size=self.stack.submit_batch_size,
            concurrency=self.stack.submit_max_concurrency,
            visibility_timeout=self.stack.submit_visibility_timeout,
            function_timeout=math.ceil(self.stack.function_timeouts["SubmitFunction"]),
        )
        self.poller = QueuePoller(
            submit_mapping,
            invoke=lambda event: self.router.invoke(submit_name, event),
            clock=self.clock,
            rescheduled=self._queue_delays.take_rescheduled,
            duplicate_events=self.config.duplicate_events,
        ).start()
        # Lambda's event source mapping on the DLQ, for the DeadLetter function (no redrive of its own).
        dead_letter_name = self.stack.physical("DeadLetterFunction")
        dead_letter_mapping = EventSourceMapping(
            queue_url=self.stack.outputs["SubmitDeadLetterQueueUrl"],
            queue_arn=self.stack.outputs["SubmitDeadLetterQueueArn"],
            batch_size=self.stack.dead_letter_batch_size,
            concurrency=1,
            visibility_timeout=DEAD_LETTER_VISIBILITY_SECONDS,
            function_timeout=math.ceil(self.stack.function_timeouts["DeadLetterFunction"]),
        )
        self.dead_letter_poller = QueuePoller(
            dead_letter_mapping,
            invoke=lambda event: self.router.invoke(dead_letter_name, event),
            clock=self.clock,
            rescheduled=self._queue_delays.take_rescheduled,
        ).start()
        # Lambda's event source mapping on the split queue (campaign files and split cursors).
        split_name = self.stack.physical("SplitFunction")
        split_mapping = EventSourceMapping(
            queue_url=self.stack.outputs["SplitQueueUrl"],
            queue_arn=self.stack.outputs["SplitQueueArn"],
            batch_size=self.stack.split_batch_size,
            concurrency=self.stack.split_max_concurrency,
            visibility_timeout=self.stack.split_visibility_timeout,
            function_timeout=math.ceil(self.stack.function_timeouts["SplitFunction"]),
        )
        self.split_poller = QueuePoller(
            split_mapping,
            invoke=lambda event: self.router.invoke(split_name, event),
            clock=self.clock,
            rescheduled=self._queue_delays.take_rescheduled,
            duplicate_events=self.config.duplicate_events,
        ).start()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.poller is not None:
            self.poller.stop()
        if self.dead_letter_poller is not None:
            self.dead_letter_poller.stop()
        if self.split_poller is not None:
            self.split_poller.stop()
        # Executions still running (a run cut short) fail as the stack goes away under them: moto's
        # interpreter logs each as an error, which is noise now.
        interpreter_log = logging.getLogger("moto.stepfunctions")
        saved_level = interpreter_log.level
        interpreter_log.setLevel(logging.CRITICAL)
        self._stop_executions()
        for thread in self._threads:
            thread.join(timeout=5)
        self._waits.__exit__()
        self._queue_delays.__exit__()
        self._patches.close()
        self.router.uninstall()
        runtime.use_clock(SystemClock())
        if self.emulator is not None:
            self.emulator.stop()
        self.aws.stop()
        self._restore_logs()
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        runtime.reset()
        interpreter_log.setLevel(saved_level)

    # --- wiring ------------------------------------------------------------------------------------
    def _set_function_environment(self, stack: DeployedStack) -> None:
        """One process plays every function: the union of their deployed environments."""
        merged: dict[str, str] = {}
        for variables in stack.function_environment.values():
            merged.update(variables)
        merged.update(
            {
                "ALLOW_LOOPBACK_HTTP": "true",
                # Loopback answers in milliseconds; short read timeouts keep fault runs quick.
                "PROVIDER_READ_TIMEOUT_S": "5",
                "DOWNLOAD_READ_TIMEOUT_S": "5",
                # The submit claim guards a live worker, whose HTTP calls take wall-clock time:
                # keep it 120 s of wall time on the virtual clock.
                "SUBMIT_LEASE_SECONDS": str(math.ceil(120 / self.config.time_scale)),
                "POWERTOOLS_TRACE_DISABLED": "true",
                "POWERTOOLS_LOG_LEVEL": os.environ.get("AVATAR_LOCAL_LOG_LEVEL", "INFO"),
            }
        )
        for name, value in merged.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value
        runtime.reset()

    def _capture_logs(self) -> None:
        """Handler logs and EMF metrics go to a file (or nowhere), keeping the console for progress."""
        path = self.config.log_path
        self._log_stream = path.open("a", encoding="utf-8") if path else io.StringIO()
        self._saved_stdout = sys.stdout
        sys.stdout = self._log_stream
        for handler in logging.getLogger(os.environ.get("POWERTOOLS_SERVICE_NAME", "avatar-pipeline")).handlers:
            if isinstance(handler, logging.StreamHandler):
                self._saved_log_streams.append((handler, handler.stream))
                handler.setStream(self._log_stream)
        # Powertools warns on stderr when an invocation added no metric (a Poll that only waited): on
        # Lambda that lands in the function's log; here it would interrupt the run's progress.
        self._warning_filters = warnings.catch_warnings()
        self._warning_filters.__enter__()
        warnings.filterwarnings("ignore", message="No application metrics to publish", category=UserWarning)

    def _restore_logs(self) -> None:
        if self._saved_stdout is not None:
            sys.stdout = self._saved_stdout
        if self._warning_filters is not None:
            self._warning_filters.__exit__(None, None, None)
            self._warning_filters = None
        # The handlers go back to their streams before the log file closes: a later stack in this
        # process would otherwise flush a closed file when it points them at its own.
        for handler, stream in self._saved_log_streams:
            handler.setStream(stream)
        self._saved_log_streams.clear()
        if self._log_stream is not None and not isinstance(self._log_stream, io.StringIO):
            self._log_stream.close()

    @property
    def console(self) -> TextIO:
        return self._saved_stdout or sys.stdout

    def _capture_notifications(self, stack: DeployedStack) -> None:
        sqs = boto3.client("sqs")
        sns = boto3.client("sns")
        queue_url = sqs.create_queue(QueueName="local-notification-capture")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=stack.outputs["NotificationTopicArn"], Protocol="sqs", Endpoint=queue_arn)

        def drain() -> None:
            while not self._stop.is_set():
                messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
                    "Messages", []
                )
                for message in messages:
                    envelope = json.loads(message["Body"])
                    record = {
                        "message": json.loads(envelope["Message"]),
                        "attributes": {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()},
                        "subject": envelope.get("Subject"),
                    }
                    with self._notification_lock:
                        self.notifications.append(record)
                    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

        thread = threading.Thread(target=drain, name="notification-capture", daemon=True)
        thread.start()
        self._threads.append(thread)

    def _stop_executions(self) -> None:
        if self.stack is None:
            return
        try:
            sfn = boto3.client("stepfunctions")
            arn = self.stack.outputs["StateMachineArn"]
            for execution in sfn.list_executions(stateMachineArn=arn, statusFilter="RUNNING")["executions"]:
                sfn.stop_execution(executionArn=execution["executionArn"])
        except Exception:
            logging.getLogger("avatar_local").exception("could not stop running executions")

    # --- driving -----------------------------------------------------------------------------------
    def drop(self, inbox: Path, out: Path | None = None) -> list[str]:
        """Upload every file under `inbox` to inbox/ (relative paths kept, media before job files),
        except `out` and earlier runs' output folders (avatar_local.run_folder)."""
        assert self.stack is not None
        bucket = self.stack.outputs["InputBucketName"]
        s3 = boto3.client("s3")
        files = sorted(
            inbox_files(inbox, out),
            key=lambda p: (JOB_FILES_LAST if p.suffix == ".json" else MEDIA_FIRST, str(p)),
        )
        job_keys: list[str] = []
        for path in files:
            key = "inbox/" + path.relative_to(inbox).as_posix()
            s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
            if path.suffix == ".json":
                # A campaign file is many jobs (its rows), split by the Split function; waited for apart.
                (self.campaign_keys if is_campaign_file_key(key) else job_keys).append(key)
            elif path.suffix.lower() == ".json":
                # The bucket's rule matches inbox/*.json, case and all: on AWS too, this one starts no job.
                self.ignored_job_files.append(key)
        return job_keys

    def put(self, key: str, body: bytes) -> None:
        assert self.stack is not None
        boto3.client("s3").put_object(Bucket=self.stack.outputs["InputBucketName"], Key=key, Body=body)

    def job_records(self) -> list[JobRecord]:
        """Every item in the jobs table (one scan)."""
        assert self.stack is not None
        return scan_records(self.stack.outputs["JobsTableName"])

    def progress(self) -> dict[str, JobProgress]:
        """The latest job record per job file key."""
        return {
            key: JobProgress(
                job_key=record.job_key,
                job_id=record.job_id,
                status=record.status.value,
                provider_status=record.provider_status,
                error_code=record.error_code,
            )
            for key, record in latest_per_job_file(self.job_records()).items()
        }

    def campaign_notification(self, campaign_key: str) -> dict[str, Any] | None:
        """The campaign's one notification (attribute kind=campaign), once it went out."""
        with self._notification_lock:
            found = [
                n
                for n in self.notifications
                if n["attributes"].get("kind") == "campaign" and n["message"].get("campaign_key") == campaign_key
            ]
        return found[-1] if found else None

    def notifications_for(self, job_id: str) -> list[dict[str, Any]]:
        with self._notification_lock:
            return [n for n in self.notifications if n["message"].get("job_id") == job_id]

    def wait_until_terminal(
        self,
        job_keys: list[str],
        timeout: float,
        on_change: Callable[[JobProgress, float], None] | None = None,
    ) -> bool:
        """True once every job is terminal and notified, and every campaign dropped has its campaign
        notification; False if the timeout passed first. `on_change` sees campaign rows' jobs too."""
        started = time.monotonic()
        seen: dict[str, tuple[str, str | None]] = {}

        def all_ended() -> bool:
            if on_change is None and not all(self.campaign_notification(key) for key in self.campaign_keys):
                return False
            if on_change is None and len(self.notifications) < len(job_keys):
                # Every job ends with a notification: until there are enough, nothing can be done, and
                # a scan of the jobs table (what progress() costs) every 0.1 s slows a large run down.
                return False
            progress = self.progress()
            rows = [key for key in progress if key.split("#", 1)[0] in self.campaign_keys]
            for key in [*job_keys, *rows]:
                job = progress.get(key)
                if job is None:
                    continue
                state = (job.status, job.provider_status)
                if on_change is not None and seen.get(key) != state:
                    on_change(job, time.monotonic() - started)
                seen[key] = state
            return all(self.campaign_notification(key) for key in self.campaign_keys) and all(
                key in progress
                and progress[key].status in TERMINAL_STATUSES
                and self.notifications_for(progress[key].job_id)
                for key in job_keys
            )

        return bool(wait_until(all_ended, interval=0.1, give_up=after(timeout)))

    # --- results -----------------------------------------------------------------------------------
    def write_results(self, out: Path, job_keys: list[str], duration_s: float, completed: bool) -> dict[str, Any]:
        from avatar_local.stack.results import write_results

        assert self.stack is not None and self.emulator is not None and self.poller is not None
        return write_results(self, out, job_keys, duration_s, completed)
