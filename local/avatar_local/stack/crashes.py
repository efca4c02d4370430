"""Killing a handler mid-way, on purpose: the offline stack's stand-in for a Lambda process that dies.

A real crash (out of memory, a timeout, the sandbox recycled) ends the invocation wherever it is,
and Lambda reports `Runtime.ExitError` (or `Sandbox.Timedout`). Two ways to ask for one:

- rules (`CrashRule`, the fault file's `handlers` section): `after_video_copy` kills the first
  Finalize(s) that copied a video, before the manifest. It raises `SimulatedCrash`, which the
  router reports as `Runtime.ExitError`.
- a seeded random draw (`RandomCrashes`, `CrashInjector`): before and after every AWS call a
  handler makes (botocore's `before-call` / `after-call` events), before and after every provider
  call (SegmindClient submit/status/result), and between the parts of a streamed copy. Only code
  running for a handler invocation can die (the router marks it, see `CURRENT_INVOCATION`; a copy's
  upload threads inherit the mark): never the harness's own calls, moto's interpreter or the
  emulator. The crash is a `LambdaDeath`, a BaseException, so no `except Exception` in the handler
  (Powertools' batch processor, the copy's abort) can turn it into an ordinary
  error; and the invocation stays dead: every AWS or provider call it tries afterwards (a `finally`
  that aborts an upload or releases a claim) dies too, as nothing would run after a real crash.
  For Submit, the whole batch fails (the poller handles the function error as Lambda's event source
  mapping does).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from contextvars import copy_context
from dataclasses import dataclass
from typing import Any, Literal
from unittest import mock
from urllib.parse import unquote_plus

import boto3
import botocore.handlers
from pydantic import BaseModel, ConfigDict, Field

from avatar_local.stack.lambda_router import CURRENT_INVOCATION, InvocationScope
from avatar_pipeline.adapters import transfer
from avatar_pipeline.adapters.transfer import StreamingCopier
from avatar_pipeline.domain.ports import CopiedObject
from avatar_pipeline.provider.client import SegmindClient

FunctionLabel = Literal["submit", "poll", "finalize", "report_failure"]
CrashPointKind = Literal["aws_call", "provider_call", "between_parts"]
ALL_FUNCTIONS: tuple[FunctionLabel, ...] = ("submit", "poll", "finalize", "report_failure")
ALL_POINT_KINDS: tuple[CrashPointKind, ...] = ("aws_call", "provider_call", "between_parts")
PROVIDER_CALLS = ("submit", "status", "result")


class SimulatedCrash(Exception):
    """Reported by the Lambda router with the error type Lambda uses for a dead runtime."""

    lambda_error_type = "Runtime.ExitError"


class LambdaDeath(BaseException):
    """The runtime died here: no handler code catches it; the router reports `Runtime.ExitError`."""

    lambda_error_type = "Runtime.ExitError"


class CrashRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: Literal["finalize"] = "finalize"
    # after_video_copy: the video is in the output bucket; no captions, manifest, record or notification yet.
    point: Literal["after_video_copy"] = "after_video_copy"
    times: int = Field(default=1, ge=1)


class RandomCrashes(BaseModel):
    """Crash a handler at random: each AWS call, provider call and part boundary of a copy made by
    one of `functions` dies with probability `rate` (half of it before the call, half after)."""

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(default=0.02, ge=0, le=1)
    seed: int = 0
    functions: list[FunctionLabel] = Field(default_factory=lambda: list(ALL_FUNCTIONS))
    points: list[CrashPointKind] = Field(default_factory=lambda: list(ALL_POINT_KINDS))


@dataclass(frozen=True)
class CrashRecord:
    """One injected crash: which function, where (e.g. `after:s3.PutObject`, `before:segmind.submit`,
    `between_parts`), the invocation's number and what it was working on."""

    function: str
    point: str
    invocation: int
    job_keys: tuple[str, ...]
    job_ids: tuple[str, ...]
    at: float  # Unix time

    @property
    def point_kind(self) -> str:
        return _point_kind(self.point)


@contextmanager
def crashes_installed(rules: list[CrashRule]) -> Iterator[None]:
    """Patch the crash points the rules name for the duration of a local run."""
    remaining = sum(rule.times for rule in rules if rule.point == "after_video_copy")
    if not remaining:
        yield
        return
    lock = threading.Lock()
    original: Callable[..., CopiedObject] = StreamingCopier.copy
    budget = [remaining]

    def copy_then_die(self: StreamingCopier, *args: Any, **kwargs: Any) -> CopiedObject:
        copied = original(self, *args, **kwargs)
        expect = kwargs.get("expect", args[3] if len(args) > 3 else None)
        with lock:
            die = expect == "video" and budget[0] > 0
            if die:
                budget[0] -= 1
        if die:
            raise SimulatedCrash("simulated crash: Finalize died after copying the video, before the manifest")
        return copied

    with mock.patch.object(StreamingCopier, "copy", copy_then_die):
        yield


def job_hints(scope: InvocationScope) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(job keys, job ids) an invocation works on: the state machine's job, or the S3 events of a
    Submit batch (keys as moto queued them, before the poller's URL encoding is undone)."""
    event = scope.event
    if isinstance(event, dict) and isinstance(event.get("job"), dict):
        job = event["job"]
        return (str(job.get("job_key", "")),), (str(job.get("job_id", "")),)
    keys: list[str] = []
    if isinstance(event, dict):
        for record in event.get("Records", []) or []:
            key = _event_key(record.get("body") if isinstance(record, dict) else None)
            if key:
                keys.append(key)
    return tuple(keys), ()


def _event_key(body: object) -> str | None:
    if not isinstance(body, str):
        return None
    try:
        event = json.loads(body)
        return unquote_plus(str(event["detail"]["object"]["key"]))
    except (ValueError, KeyError, TypeError):
        return None


class CrashInjector:
    """Seeded random crashes inside handler invocations (see the module docstring).

    Draws are keyed by (seed, function, the invocation's jobs, the point, the call's number among
    that function's calls at that point for those jobs), so a seed reproduces them job by job
    whatever else runs at the same time.
    """

    def __init__(self, plan: RandomCrashes, on_crash: Callable[[CrashRecord], None] | None = None) -> None:
        self.plan = plan
        self._on_crash = on_crash
        self._lock = threading.Lock()
        self._counters: Counter[str] = Counter()
        self.crashes: list[CrashRecord] = []
        self.calls_seen: Counter[str] = Counter()  # by function: points at which a draw was made
        self._patches = ExitStack()
        self._hooks = [("before-call", self._before_call), ("after-call", self._after_call)]

    # --- lifecycle -------------------------------------------------------------------------------
    def __enter__(self) -> CrashInjector:
        for hook in self._hooks:
            botocore.handlers.BUILTIN_HANDLERS.append(hook)
        boto3.DEFAULT_SESSION = None  # sessions copy the handler list when created
        for name in PROVIDER_CALLS:
            self._patches.enter_context(mock.patch.object(SegmindClient, name, self._provider_call(name)))
        self._patches.enter_context(mock.patch.object(transfer._PartWriter, "_submit", self._between_parts()))
        self._patches.enter_context(mock.patch.object(ThreadPoolExecutor, "submit", _submit_in_callers_context()))
        return self

    def __exit__(self, *exc: object) -> None:
        self._patches.close()
        for hook in self._hooks:
            if hook in botocore.handlers.BUILTIN_HANDLERS:
                botocore.handlers.BUILTIN_HANDLERS.remove(hook)
        boto3.DEFAULT_SESSION = None

    # --- the draw ----------------------------------------------------------------------------------
    def maybe_crash(self, point: str, share: float = 0.5) -> None:
        """Called at a crash point: die if the invocation is dead already, or if the draw says so.
        `share`: the part of the plan's rate this point gets (before and after a call: half each)."""
        scope = CURRENT_INVOCATION.get()
        if scope is None:
            return
        if scope.dead:
            raise LambdaDeath(f"{scope.function} invocation {scope.number} is dead (crashed earlier)")
        if scope.function not in self.plan.functions or _point_kind(point) not in self.plan.points:
            return
        keys, ids = job_hints(scope)
        identity = f"{self.plan.seed}|{scope.function}|{','.join(sorted(keys))}|{point}"
        with self._lock:
            self._counters[identity] += 1
            number = self._counters[identity]
            self.calls_seen[scope.function] += 1
        if _uniform(f"{identity}|{number}") >= self.plan.rate * share:
            return
        scope.dead = True
        record = CrashRecord(scope.function, point, scope.number, keys, ids, time.time())
        with self._lock:
            self.crashes.append(record)
        if self._on_crash is not None:
            self._on_crash(record)
        raise LambdaDeath(f"simulated crash: {scope.function} died at {point}")

    def by_function_and_point(self) -> dict[str, dict[str, int]]:
        with self._lock:
            table: dict[str, dict[str, int]] = {}
            for crash in self.crashes:
                row = table.setdefault(crash.function, {})
                row[crash.point] = row.get(crash.point, 0) + 1
            return table

    # --- the hooks ---------------------------------------------------------------------------------
    def _before_call(self, **kwargs: Any) -> None:
        self.maybe_crash("before:" + _operation(kwargs))
        # None: botocore goes on with the call (a value here would replace its response).

    def _after_call(self, **kwargs: Any) -> None:
        self.maybe_crash("after:" + _operation(kwargs))

    def _provider_call(self, name: str) -> Callable[..., Any]:
        original: Callable[..., Any] = getattr(SegmindClient, name)
        injector = self

        def call(self: SegmindClient, *args: Any, **kwargs: Any) -> Any:
            injector.maybe_crash(f"before:segmind.{name}")
            result = original(self, *args, **kwargs)
            injector.maybe_crash(f"after:segmind.{name}")
            return result

        return call

    def _between_parts(self) -> Callable[..., None]:
        original: Callable[..., None] = transfer._PartWriter._submit
        injector = self

        def submit(self: transfer._PartWriter, buffer: bytearray, length: int) -> None:
            injector.maybe_crash("between_parts", share=1.0)
            original(self, buffer, length)

        return submit


def _point_kind(point: str) -> str:
    if point == "between_parts":
        return "between_parts"
    return "provider_call" if point.split(":", 1)[-1].startswith("segmind.") else "aws_call"


def _operation(kwargs: dict[str, Any]) -> str:
    """`s3.PutObject` from botocore's event name `before-call.s3.PutObject`."""
    event_name = str(kwargs.get("event_name", ""))
    parts = event_name.split(".", 1)
    return parts[1] if len(parts) == 2 else event_name


def _uniform(text: str) -> float:
    """A number in [0, 1) that depends only on `text`."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:7], "big") / float(1 << 56)


def _submit_in_callers_context() -> Callable[..., Future[Any]]:
    """ThreadPoolExecutor.submit that runs the task in a copy of the caller's context when the caller
    works for a handler invocation: a copy's part uploads belong to the Finalize that started them
    (and die with it). Outside an invocation, unchanged."""
    original = ThreadPoolExecutor.submit

    def submit(self: ThreadPoolExecutor, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if CURRENT_INVOCATION.get() is None:
            return original(self, fn, *args, **kwargs)
        context = copy_context()
        return original(self, context.run, fn, *args, **kwargs)

    return submit
