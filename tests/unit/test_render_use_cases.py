"""The state machine's use cases on in-memory fakes: Poll (domain/poll.py), Finalize (domain/finalize.py),
the failure branch (domain/failure.py) and the DLQ's last stop (domain/dead_letter.py)."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from avatar_pipeline.domain.context import InboxObject
from avatar_pipeline.domain.dead_letter import end_dead_lettered_job
from avatar_pipeline.domain.failure import report_failure
from avatar_pipeline.domain.finalize import finalize_job, finalize_or_retry_later
from avatar_pipeline.domain.poll import check_status
from avatar_pipeline.domain.submit import SubmitResult
from avatar_pipeline.errors import (
    ProviderBadResponse,
    ProviderConnectionError,
    ProviderJobFailed,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
    ResultExpired,
    ResultUnavailable,
)
from avatar_pipeline.provider.wire import RenderResult, StatusReport
from avatar_pipeline.records import JobStatus
from avatar_pipeline.state import JobOutcome, RenderState, StepError
from tests.support.events import load_event
from tests.support.fakes import INPUT_BUCKET, OUTPUT_BUCKET, World
from tests.support.media import make_png

pytestmark = pytest.mark.unit


def render_state(world: World, **poll: Any) -> RenderState:
    """A job submitted 150 s ago (events/poll_state.json), its photo and job file in the fake inbox."""
    event = load_event("poll_state.json")
    event["job"] |= {
        "input_bucket": INPUT_BUCKET,
        "job_key": "inbox/a/hello.json",
        "media_keys": ["inbox/a/face.png"],
        "video_key": "videos/a/hello.mp4",
    }
    event["poll"] |= {"status": "PROCESSING", "wait_seconds": 10, "polls": 3, **poll}
    state = RenderState.model_validate(event)
    world.clock.moment = state.job.submitted_at + timedelta(seconds=150)
    world.storage.put(INPUT_BUCKET, "inbox/a/face.png", make_png())
    world.storage.put(INPUT_BUCKET, "inbox/a/hello.json", b"{}")
    return state


# --- Poll -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        ProviderUnavailable("503"),
        ProviderTimeout("read timeout"),
        ProviderConnectionError("refused"),
        ProviderBadResponse("?"),
    ],
)
def test_a_failed_check_is_no_news_and_the_next_one_backs_off(fault: Exception) -> None:
    """Given status checks failing transiently three times running
    Then each answers the same status with a wait of 5, 10, 20 s: the render goes on, no Retry is spent."""
    world = World()
    state = render_state(world)
    world.provider.statuses = [fault, fault, fault]

    waits = []
    for _ in range(3):
        state = check_status(state, world.poll())
        waits.append((state.poll.status, state.poll.wait_seconds, state.poll.failed_checks, state.poll.polls))

    assert waits == [("PROCESSING", 5, 1, 3), ("PROCESSING", 10, 2, 3), ("PROCESSING", 20, 3, 3)]
    after = check_status(state, world.poll())
    assert (after.poll.status, after.poll.failed_checks, after.poll.polls) == ("COMPLETED", 0, 4)


def test_a_failed_check_never_waits_past_the_deadline() -> None:
    world = World()
    state = render_state(world)
    world.clock.moment = state.job.deadline_at - timedelta(seconds=3)
    world.provider.statuses = [ProviderUnavailable("500")] * 1

    after = check_status(
        state.model_copy(update={"poll": state.poll.model_copy(update={"failed_checks": 5})}), world.poll()
    )

    assert after.poll.wait_seconds == 3
    assert after.poll.deadline_passed is False


def test_a_429_waits_until_the_named_reset_without_counting_as_a_failed_check() -> None:
    world = World()
    state = render_state(world)
    world.provider.statuses = [ProviderThrottled("429", reset_at=world.clock.now() + timedelta(seconds=20))]

    after = check_status(state, world.poll())

    assert 20 <= after.poll.wait_seconds <= 20 + 11
    assert (after.poll.failed_checks, after.poll.polls) == (0, 3)


def test_a_request_segmind_forgot_ends_the_job() -> None:
    world = World()
    world.provider.statuses = [ResultExpired("Request x not found")]
    with pytest.raises(ResultExpired):
        check_status(render_state(world), world.poll())


def test_a_failed_render_carries_segmind_s_words_to_the_failure_branch() -> None:
    world = World()
    world.provider.statuses = [StatusReport(status="FAILED", error="Content blocked")]

    after = check_status(render_state(world), world.poll())

    assert (after.poll.status, after.poll.error_message) == ("FAILED", "Content blocked")


# --- Finalize ---------------------------------------------------------------------------------------------


def completed(world: World, captions: bool = False) -> RenderState:
    state = render_state(world, status="COMPLETED", first_seen_processing_at=None)
    if captions:
        job = state.job.model_copy(update={"wants_captions": True})
        state = state.model_copy(update={"job": job})
        world.provider.results = [RenderResult(video_url="https://v/x.mp4", caption_url="https://v/x.srt")]
    return state


def test_finalize_copies_the_video_and_captions_then_writes_the_manifest_last_and_notifies_once() -> None:
    world = World()
    state = completed(world, captions=True)

    outcome = finalize_job(state, world.finalize())

    assert outcome.output_keys == ["videos/a/hello.mp4", "videos/a/hello.srt", "videos/a/hello.json"]
    assert list(world.storage.keys(OUTPUT_BUCKET)) == sorted(outcome.output_keys)
    written = [key for (bucket, key) in world.storage.objects if bucket == OUTPUT_BUCKET]
    assert written[-1] == "videos/a/hello.json"  # after the video and captions it describes
    manifest = json.loads(world.storage.body(OUTPUT_BUCKET, "videos/a/hello.json"))
    assert manifest["video"]["sha256"] == world.notifier.published[0].output.sha256  # type: ignore[union-attr]
    assert world.inbox() == []
    assert world.storage.keys(INPUT_BUCKET) == ["processed/a/face.png", "processed/a/hello.json"]
    record = world.jobs.get(state.job.job_id)
    assert record is None or record.status is JobStatus.SUCCEEDED
    assert [n.status for n in world.notifier.published] == ["SUCCEEDED"]
    assert len(world.events.published) == 1


@pytest.mark.parametrize(
    "fault", [ProviderUnavailable("500"), ProviderThrottled("429"), ProviderBadResponse("the result is not ready")]
)
def test_a_transient_fault_after_completion_comes_back_as_a_wait_not_a_failure(fault: Exception) -> None:
    world = World()
    state = completed(world)
    world.provider.results = [fault, fault]

    def run(current: RenderState) -> JobOutcome | RenderState:
        return finalize_or_retry_later(current, world.clock, lambda s: finalize_job(s, world.finalize()))

    first = run(state)
    assert isinstance(first, RenderState)
    assert first.fetch_retry is not None
    assert (first.fetch_retry.attempts, 3 <= first.fetch_retry.wait_seconds <= 5) == (1, True)
    second = run(first)
    assert isinstance(second, RenderState)
    assert second.fetch_retry is not None
    assert second.fetch_retry.attempts == 2
    assert isinstance(run(second), JobOutcome)
    assert world.notifier.published[0].status == "SUCCEEDED"


def test_a_finished_render_that_cannot_be_fetched_before_its_retention_ends_is_result_unavailable() -> None:
    world = World()
    state = completed(world)
    world.clock.moment = state.job.submitted_at + timedelta(minutes=58)
    world.provider.results = [ProviderUnavailable("500")]

    with pytest.raises(ResultUnavailable, match="finished \\(and was billed\\)"):
        finalize_or_retry_later(state, world.clock, lambda s: finalize_job(s, world.finalize()))


class Died(BaseException):
    """A runtime that dies mid-call (not an exception the code could catch)."""


def test_a_run_that_died_after_the_manifest_is_finished_from_it_without_fetching_again() -> None:
    """Given a Finalize that copied the video and wrote the manifest, then died before the job's record
    When the next run comes after Segmind dropped the result
    Then it ends the job SUCCEEDED from the manifest: no result fetch, the same video, one notification."""
    world = World()
    state = completed(world, captions=True)
    ports = world.finalize()
    save_terminal = world.jobs.save_terminal

    def die(record: Any) -> None:
        raise Died

    world.jobs.save_terminal = die  # type: ignore[method-assign]
    with pytest.raises(Died):
        finalize_job(state, ports)
    manifest = world.storage.body(OUTPUT_BUCKET, "videos/a/hello.json")
    world.jobs.save_terminal = save_terminal  # type: ignore[method-assign]
    world.provider.results = [ResultExpired("gone")]

    outcome = finalize_job(state, ports)

    assert outcome.status == "SUCCEEDED"
    assert outcome.output_keys == ["videos/a/hello.mp4", "videos/a/hello.srt", "videos/a/hello.json"]
    assert world.provider.calls["result"] == 1
    assert json.loads(world.storage.body(OUTPUT_BUCKET, "videos/a/hello.json")) == json.loads(manifest)
    record = world.jobs.get(state.job.job_id)
    assert record is not None
    assert record.status is JobStatus.SUCCEEDED
    assert [n.status for n in world.notifier.published] == ["SUCCEEDED"]


def test_a_manifest_of_another_request_at_the_key_is_not_this_job_s_delivery() -> None:
    world = World()
    state = completed(world)
    stale = {"job_id": "job-other", "request_id": "another"}
    world.storage.put(OUTPUT_BUCKET, "videos/a/hello.json", json.dumps(stale).encode())

    outcome = finalize_job(state, world.finalize())

    assert outcome.status == "SUCCEEDED"
    assert world.provider.calls["result"] == 1
    assert json.loads(world.storage.body(OUTPUT_BUCKET, "videos/a/hello.json"))["job_id"] == state.job.job_id


def test_a_result_that_says_failed_is_a_provider_failure() -> None:
    world = World()
    world.provider.results = [StatusReport(status="FAILED", error="Content blocked")]
    with pytest.raises(ProviderJobFailed, match="Content blocked"):
        finalize_job(completed(world), world.finalize())


# --- the failure branch -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "code"),
    [
        ("ProviderJobFailed", "PROVIDER_FAILED"),
        ("RenderTimeout", "RENDER_TIMEOUT"),
        ("ResultUnavailable", "RESULT_UNAVAILABLE"),
        ("States.Timeout", "RENDER_TIMEOUT"),
        ("KeyError", "INTERNAL"),
    ],
)
def test_the_failure_branch_ends_the_job_with_the_code_of_what_failed(error: str, code: str) -> None:
    world = World()
    state = render_state(world)
    cause = json.dumps({"errorMessage": "what went wrong", "errorType": error})
    failed = state.model_copy(update={"error": StepError.model_validate({"Error": error, "Cause": cause})})

    outcome = report_failure(failed, world.closing())

    assert (outcome.status, outcome.error_code, outcome.error_message) == ("FAILED", code, "what went wrong")
    report = json.loads(world.storage.body(INPUT_BUCKET, "failed/a/hello.error.json"))
    assert (report["error_code"], report["request_id"]) == (code, state.job.request_id)
    assert world.storage.keys(INPUT_BUCKET) == ["failed/a/face.png", "failed/a/hello.error.json", "failed/a/hello.json"]
    assert [n.error_code for n in world.notifier.published] == [code]


def test_the_failure_branch_run_twice_notifies_once() -> None:
    world = World()
    state = render_state(world).model_copy(update={"error": StepError.model_validate({"Error": "RenderTimeout"})})

    report_failure(state, world.closing())
    second = report_failure(state, world.closing())

    assert second.notified is False
    assert len(world.notifier.published) == 1


def test_a_completion_event_that_fails_does_not_undo_the_notification() -> None:
    world = World()
    world.events.fail = True
    state = render_state(world).model_copy(update={"error": StepError.model_validate({"Error": "RenderTimeout"})})

    assert report_failure(state, world.closing()).notified is True
    assert len(world.notifier.published) == 1


# --- the DLQ's last stop ------------------------------------------------------------------------------------


def test_a_dead_lettered_job_without_a_record_ends_failed_never_submitted() -> None:
    world = World()
    world.storage.put(INPUT_BUCKET, "inbox/a/face.png", make_png())
    etag = world.storage.put(
        INPUT_BUCKET, "inbox/a/stuck.json", json.dumps({"model": "heygen-avatar-v", "photo": "face.png"}).encode()
    )
    event = InboxObject(INPUT_BUCKET, "inbox/a/stuck.json", etag, None, "seq", world.clock.now(), receive_count=5)

    assert end_dead_lettered_job(event, world.dead_letter()) is SubmitResult.REJECTED

    (notification,) = world.notifier.published
    assert (notification.error_code, notification.model) == ("INTERNAL", "heygen-avatar-v")
    assert "never submitted" in (notification.error_message or "")
    assert world.inbox() == []
