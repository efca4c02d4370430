"""Finalize gives its copies the invocation's time left, less a reserve, as their deadline."""

from __future__ import annotations

import time

import pytest

from avatar_pipeline.domain.finalize import COPY_RESERVE_SECONDS, copy_deadline, finalize_job
from avatar_pipeline.domain.ports import FinalizePorts
from avatar_pipeline.errors import OutputTransferError
from avatar_pipeline.provider.wire import RenderResult
from avatar_pipeline.state import RenderState
from tests.support.events import load_event
from tests.support.fakes import World

pytestmark = pytest.mark.unit

VIDEO_URL = "https://videos.segmind.com/outputs/abc.mp4"
CAPTION_URL = "https://videos.segmind.com/outputs/abc.srt"


class Stop(Exception):
    """Ends finalize_job once the copies were asked for: the rest of Finalize is not under test."""


def finalize_ports(
    copier_fails_at: int, error: Exception, caption_url: str | None = None
) -> tuple[FinalizePorts, World]:
    """Finalize's ports, with a result carrying `caption_url` and a copier failing copy number `copier_fails_at`."""
    world = World()
    world.provider.results = [RenderResult(video_url=VIDEO_URL, caption_url=caption_url)]
    world.copier.fail, world.copier.fail_at = error, copier_fails_at
    return world.finalize(), world


def copies(world: World) -> list[tuple[str, float | None]]:
    return [(url, deadline) for url, _, deadline in world.copier.calls]


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
    ports, world = finalize_ports(2, Stop(), CAPTION_URL)
    before = time.monotonic()

    with pytest.raises(Stop):
        finalize_job(state(), ports, remaining_ms=lambda: 600_000)

    after = time.monotonic()
    assert [url for url, _ in copies(world)] == [VIDEO_URL, CAPTION_URL]
    deadlines = {deadline for _, deadline in copies(world)}
    assert len(deadlines) == 1
    (deadline,) = deadlines
    assert deadline is not None
    assert before + 600 - COPY_RESERVE_SECONDS <= deadline <= after + 600 - COPY_RESERVE_SECONDS


def test_a_copy_out_of_time_fails_finalize_with_the_transient_error_and_writes_nothing_else() -> None:
    """Given a video copy that stops at its deadline (OutputTransferError, its upload aborted)
    When Finalize runs
    Then that error propagates (Finalize tries again later) before any manifest, record or notice."""
    error = OutputTransferError("the copy could not finish before its deadline (after 1 bytes); stopped and aborted")
    ports, world = finalize_ports(1, error)

    with pytest.raises(OutputTransferError) as caught:
        finalize_job(state(), ports, remaining_ms=lambda: 30_000)

    assert caught.value is error
    assert error.retryable
    assert world.storage.keys(world.settings.output_bucket) == []
    assert world.notifier.published == []


def test_without_the_time_left_the_copies_have_no_deadline() -> None:
    ports, world = finalize_ports(1, Stop())
    with pytest.raises(Stop):
        finalize_job(state(), ports)
    assert copies(world) == [(VIDEO_URL, None)]
