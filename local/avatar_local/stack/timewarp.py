"""Running time faster in the offline stack: a 140-second render can take a second.

Two clocks: `ScaledClock` (virtual time = start + elapsed wall time / scale) for the handlers and
the poll policy, and `WarpedWaits`, which shortens moto's ASL Wait states and Retry sleeps by the
same factor. The handlers never know: they take the clock through avatar_pipeline.runtime.use_clock.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import WaitFunction


class ScaledClock:
    """Virtual time that runs 1/scale times faster than the wall clock (scale 0.01 = 100x)."""

    def __init__(self, scale: float, start: datetime | None = None) -> None:
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = scale
        self._start_virtual = start or datetime.now(UTC)
        self._start_wall = time.monotonic()
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        elapsed = (time.monotonic() - self._start_wall) / self.scale
        with self._lock:
            return self._start_virtual + timedelta(seconds=elapsed) + self._offset

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
        self._original_wait: Any = None
        self._original_sleep: Any = None

    def _sleep(self, seconds: float) -> None:
        if self._skip:
            self._clock.advance(seconds)
        elif seconds > 0:
            time.sleep(seconds * self._clock.scale)

    def __enter__(self) -> WarpedWaits:
        warp = self
        self._original_wait = WaitFunction._wait_interval

        def _wait_interval(self: WaitFunction, env: Any, wait_seconds: int) -> None:
            warp._sleep(float(wait_seconds))

        WaitFunction._wait_interval = _wait_interval  # type: ignore[method-assign]
        # The retrier calls `time.sleep` on its module global; swap that global for a shim.
        self._original_sleep = vars(retrier_decl)["time"]
        vars(retrier_decl)["time"] = _SleepShim(self._sleep)
        return self

    def __exit__(self, *exc: object) -> None:
        WaitFunction._wait_interval = self._original_wait  # type: ignore[method-assign]
        vars(retrier_decl)["time"] = self._original_sleep


class _SleepShim:
    """Stands in for the `time` module inside moto's retrier, which only calls time.sleep."""

    def __init__(self, sleep: Any) -> None:
        self.sleep = sleep

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)
