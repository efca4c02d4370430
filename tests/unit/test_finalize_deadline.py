"""Finalize gives its copies the invocation's time left, less a reserve, as their deadline."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest

from avatar_pipeline.adapters.transfer import CopiedObject
from avatar_pipeline.domain.finalize import COPY_RESERVE_SECONDS, copy_deadline, finalize_job
from avatar_pipeline.errors import OutputTransferError
from avatar_pipeline.provider.wire import RenderResult
from avatar_pipeline.state import RenderState
from tests.support.events import load_event

if TYPE_CHECKING:
    from avatar_pipeline.runtime import Dependencies

pytestmark = pytest.mark.unit

VIDEO_URL = "https://videos.segmind.com/outputs/abc.mp4"
CAPTION_URL = "https://videos.segmind.com/outputs/abc.srt"


class Stop(Exception):
    """Ends finalize_job once the copies were asked for: the rest of Finalize is not under test."""


class Provider:
    def __init__(self, caption_url: str | None) -> None:
        self._caption_url = caption_url

    def result(self, request_id: str) -> RenderResult:
        return RenderResult(video_url=VIDEO_URL, caption_url=self._caption_url)


class Copier:
    """Records each copy's URL and deadline; fails the copy numbered `fail_at` with `error`."""

    def __init__(self, fail_at: int, error: Exception) -> None:
        self.calls: list[tuple[str, float | None]] = []
        self._fail_at, self._error = fail_at, error

    def copy(
        self,
        url: str,
        bucket: str,
        key: str,
        expect: str,
        metadata: dict[str, str] | None = None,
        deadline: float | None = None,
    ) -> CopiedObject:
        self.calls.append((url, deadline))
        if len(self.calls) == self._fail_at:
            raise self._error
        return CopiedObject(key=key, size=1, sha256="0" * 64, content_type="video/mp4")


def dependencies(copier: Copier, caption_url: str | None = None) -> Dependencies:
    # Only what Finalize uses up to the copies: touching anything else (storage, jobs) would raise.
    deps: Any = SimpleNamespace(
        settings=SimpleNamespace(output_bucket="avatar-output-123456789012"),
        request_budget=None,
        provider=Provider(caption_url),
        copier=copier,
    )
    return cast("Dependencies", deps)


def state() -> RenderState:
    return RenderState.model_validate(load_event("finalize_state.json"))


def test_the_deadline_keeps_the_reserve_back_but_never_more_than_a_tenth() -> None:
    """Given Lambda's 900 s, or the 9 s of the time-scaled local stack
    Then the copies must end 15 s before the timeout, or 0.9 s before it."""
    assert copy_deadline(900_000, now=100.0) == pytest.approx(100.0 + 900 - COPY_RESERVE_SECONDS)
    assert copy_deadline(9_000, now=0.0) == pytest.approx(8.1)


def test_the_video_and_captions_copies_share_the_deadline_from_the_time_left() -> None:
    """Given an invocation with 600 s left and a result with captions
    When Finalize runs
    Then both copies get the same deadline: 600 s from now less the reserve."""
    copier = Copier(fail_at=2, error=Stop())
    before = time.monotonic()

    with pytest.raises(Stop):
        finalize_job(state(), dependencies(copier, CAPTION_URL), remaining_ms=lambda: 600_000)

    after = time.monotonic()
    assert [url for url, _ in copier.calls] == [VIDEO_URL, CAPTION_URL]
    deadlines = {deadline for _, deadline in copier.calls}
    assert len(deadlines) == 1
    (deadline,) = deadlines
    assert deadline is not None
    assert before + 600 - COPY_RESERVE_SECONDS <= deadline <= after + 600 - COPY_RESERVE_SECONDS


def test_a_copy_out_of_time_fails_finalize_with_the_transient_error_and_writes_nothing_else() -> None:
    """Given a video copy that stops at its deadline (OutputTransferError, its upload aborted)
    When Finalize runs
    Then that error propagates, for the state machine's Retry, before any manifest, record or notice."""
    error = OutputTransferError("the copy could not finish before its deadline (after 1 bytes); stopped and aborted")
    copier = Copier(fail_at=1, error=error)

    with pytest.raises(OutputTransferError) as caught:
        finalize_job(state(), dependencies(copier), remaining_ms=lambda: 30_000)

    assert caught.value is error
    assert error.retryable


def test_without_the_time_left_the_copies_have_no_deadline() -> None:
    copier = Copier(fail_at=1, error=Stop())
    with pytest.raises(Stop):
        finalize_job(state(), dependencies(copier))
    assert copier.calls == [(VIDEO_URL, None)]
