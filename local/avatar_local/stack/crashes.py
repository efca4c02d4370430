"""Killing a handler mid-way, on purpose: the offline stack's stand-in for a Lambda process that dies.

A real crash (out of memory, a timeout, the sandbox recycled) ends the invocation wherever it is,
and Lambda reports `Runtime.ExitError` (or `Sandbox.Timedout`). The fault plan's `handlers`
section names where to die; the stack raises `SimulatedCrash` there, which the router reports with
that error type, so the state machine sees what it would see on AWS.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal
from unittest import mock

from pydantic import BaseModel, ConfigDict, Field

from avatar_pipeline.adapters.transfer import StreamingCopier
from avatar_pipeline.domain.ports import CopiedObject


class SimulatedCrash(Exception):
    """Reported by the Lambda router with the error type Lambda uses for a dead runtime."""

    lambda_error_type = "Runtime.ExitError"


class CrashRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    function: Literal["finalize"] = "finalize"
    # after_video_copy: the video is in the output bucket; no captions, manifest, record or notification yet.
    point: Literal["after_video_copy"] = "after_video_copy"
    times: int = Field(default=1, ge=1)


@contextmanager
def crashes_installed(rules: list[CrashRule]) -> Iterator[None]:
    """Patch the crash points for the duration of a local run."""
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
