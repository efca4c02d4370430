"""Running time faster in the offline stack: a 140-second render can take a second.

Two clocks: `ScaledClock` (virtual time = start + elapsed wall time / scale) for the handlers and
the poll policy, and `WarpedWaits`, which shortens moto's ASL Wait states and Retry sleeps by the
same factor. The handlers never know: they take the clock through avatar_pipeline.runtime.use_clock.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock

import boto3
import botocore.handlers
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction

from avatar_local.stack.object_events import as_queued_by_moto


class ScaledClock:
    """Virtual time that runs 1/scale times faster than the wall clock (scale 0.01 = 100x)."""

    def __init__(self, scale: float, start: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = scale
        self._start_real = datetime.now(UTC)
        self._start_virtual = start or self._start_real
        self._start_wall = time.monotonic()
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._start_wall) / self.scale
        with self._lock:
            return self._start_virtual + timedelta(seconds=elapsed) + self._offset

    def to_real(self, virtual: datetime) -> datetime:
        """The inverse of to_virtual."""
        with self._lock:
            return self._start_real + (virtual - self._start_virtual - self._offset) * self.scale

    def to_virtual(self, real: datetime) -> datetime:
        """Where a wall-clock moment (e.g. an S3 event's time) falls on the virtual timeline."""
        with self._lock:
            return self._start_virtual + (real - self._start_real) / self.scale + self._offset

    def advance(self, seconds: float) -> None:
        """Jump virtual time forward without waiting (used when waits are skipped entirely)."""
        with self._lock:
            self._offset += timedelta(seconds=seconds)


class WarpedWaits:
    """Patches moto's Wait state and Retry sleep: real sleep = requested * scale, or a jump of the clock.

    With `skip=True` nothing sleeps and the clock jumps by the requested seconds (deterministic
    tests); otherwise waits sleep scaled, and the scaled clock moves on by itself.
    """

    def __init__(self, clock: ScaledClock, skip: bool = False) -> None:
        self._clock = clock
        self._skip = skip
        self._patches = ExitStack()

    def _sleep(self, seconds: float) -> None:
        if self._skip:
            self._clock.advance(seconds)
        elif seconds > 0:
            time.sleep(seconds * self._clock.scale)

    def __enter__(self) -> WarpedWaits:
        warp = self

        def _wait_interval(self: WaitFunction, env: Any, wait_seconds: int) -> None:
            warp._sleep(float(wait_seconds))

        self._patches.enter_context(mock.patch.object(WaitFunction, "_wait_interval", _wait_interval))
        # The retrier calls `time.sleep` on its module global; swap that global for a shim.
        self._patches.enter_context(mock.patch.object(retrier_decl, "time", _SleepShim(self._sleep)))
        return self

    def __exit__(self, *exc: object) -> None:
        self._patches.close()


class ScaledQueueDelays:
    """Scales the delays handlers ask of SQS (ChangeMessageVisibility, SendMessage's DelaySeconds),
    as the poller scales the rest, and keeps every message in the local queue in one shape.

    Messages reach the local queue from moto's EventBridge with the raw key and a wall-clock time;
    the poller turns them into what AWS delivers (URL-encoded key, virtual time). An event the Submit
    function re-sends is already in the delivered shape, so it is turned back on the way in, or the
    poller would encode and convert it twice.
    """

    def __init__(self, clock: ScaledClock) -> None:
        self._clock = clock
        self._scale = clock.scale
        self._lock = threading.Lock()
        self._rescheduled: set[str] = set()

    def _scale_delay(self, params: dict[str, Any], **_: Any) -> None:
        if params.get("DelaySeconds"):
            params["DelaySeconds"] = scaled_seconds(float(params["DelaySeconds"]), self._scale)
        body = params.get("MessageBody")
        if isinstance(body, str):
            params["MessageBody"] = as_queued_by_moto(body, self._clock.to_real)

    def _scale_params(self, params: dict[str, Any], **_: Any) -> None:
        if "VisibilityTimeout" in params:
            params["VisibilityTimeout"] = scaled_seconds(float(params["VisibilityTimeout"]), self._scale)
            with self._lock:
                self._rescheduled.add(str(params.get("ReceiptHandle")))

    def take_rescheduled(self, receipt_handle: str) -> bool:
        """True (once) if a handler already set when this received message comes back."""
        with self._lock:
            if receipt_handle in self._rescheduled:
                self._rescheduled.discard(receipt_handle)
                return True
            return False

    def __enter__(self) -> ScaledQueueDelays:
        botocore.handlers.BUILTIN_HANDLERS.append(
            ("before-parameter-build.sqs.ChangeMessageVisibility", self._scale_params)
        )
        botocore.handlers.BUILTIN_HANDLERS.append(("before-parameter-build.sqs.SendMessage", self._scale_delay))
        boto3.DEFAULT_SESSION = None
        return self

    def __exit__(self, *exc: object) -> None:
        for entry in (
            ("before-parameter-build.sqs.ChangeMessageVisibility", self._scale_params),
            ("before-parameter-build.sqs.SendMessage", self._scale_delay),
        ):
            if entry in botocore.handlers.BUILTIN_HANDLERS:
                botocore.handlers.BUILTIN_HANDLERS.remove(entry)
        boto3.DEFAULT_SESSION = None


def scaled_seconds(seconds: float, scale: float) -> int:
    """SQS takes whole seconds: at least 1, so a scaled-down retry never becomes a hot loop."""
    return max(1, round(seconds * scale)) if seconds > 0 else 0


class _SleepShim:
    """Stands in for the `time` module inside moto's retrier, which only calls time.sleep."""

    def __init__(self, sleep: Any) -> None:
        self.sleep = sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)
