"""Submit (domain/submit.py, domain/intake.py) on in-memory fakes: one POST per job, whatever arrives."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest

from avatar_pipeline.domain.context import InboxObject, JobRef
from avatar_pipeline.domain.request_budget import BucketShape, Denied, InMemoryRequestBudget
from avatar_pipeline.domain.submit import Requeue, SubmitResult, submit_job
from avatar_pipeline.errors import (
    MediaNotYetAvailable,
    ProviderBadResponse,
    ProviderConnectionError,
    ProviderRejected,
    ProviderSubmitAmbiguous,
    ProviderThrottled,
    ProviderUnavailable,
)
from avatar_pipeline.keys import derive_job_id
from avatar_pipeline.records import JobStatus
from tests.support.fakes import INPUT_BUCKET, World
from tests.support.media import make_png

pytestmark = pytest.mark.unit

JOB_KEY = "inbox/team/hello.json"
PHOTO_KEY = "inbox/team/face.png"


def job(**overrides: Any) -> dict[str, Any]:
    return {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": "Hi", "script": "Hello."} | overrides


def drop(world: World, document: dict[str, Any] | bytes, key: str = JOB_KEY, photo: bool = True) -> InboxObject:
    """Upload the job file (and its photo) and return the event for it, as the queue adapter decodes it."""
    if photo:
        world.storage.put(INPUT_BUCKET, PHOTO_KEY, make_png())
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    etag = world.storage.put(INPUT_BUCKET, key, body)
    return InboxObject(
        bucket=INPUT_BUCKET,
        key=key,
        etag=etag,
        version_id=None,
        sequencer="0062E99A88DC407460",
        event_time=world.clock.now(),
        message_id="msg-1",
    )


def job_id_of(event: InboxObject) -> str:
    return derive_job_id(event.bucket, event.key, event.etag, event.sequencer)


def report(world: World, key: str = "failed/team/hello.error.json") -> dict[str, Any]:
    data: dict[str, Any] = json.loads(world.storage.body(INPUT_BUCKET, key))
    return data


# --- the one POST ---------------------------------------------------------------------------------------


def test_a_new_job_is_posted_once_recorded_and_its_execution_started() -> None:
    world = World()
    event = drop(world, job())

    assert submit_job(event, world.submit()) is SubmitResult.STARTED

    ((model, payload),) = world.provider.posted
    assert model == "heygen-avatar-iv"
    assert payload["video_title"] == "Hi"
    assert str(payload["image_url"]).startswith(f"https://{INPUT_BUCKET}.s3.")
    record = world.jobs.get(job_id_of(event))
    assert record is not None
    assert (record.status, record.request_id) == (JobStatus.RENDERING, "request-1")
    (state,) = world.executions.started.values()
    assert state.job.video_key == "videos/team/hello.mp4"
    assert state.job.media_etags == {PHOTO_KEY: world.storage.objects[(INPUT_BUCKET, PHOTO_KEY)].etag}
    # What is recorded keeps no presigned URL.
    assert "image_url" not in state.job.parameters


@pytest.mark.parametrize("status", [JobStatus.RENDERING, JobStatus.SUCCEEDED, JobStatus.FAILED])
def test_a_redelivered_event_of_a_known_job_posts_nothing(status: JobStatus) -> None:
    world = World()
    event = drop(world, job())
    submit_job(event, world.submit())
    record = world.jobs.records[job_id_of(event)]
    notified = status.value if status is not JobStatus.RENDERING else None
    world.jobs.records[record.job_id] = record.model_copy(update={"status": status, "notified_status": notified})

    assert submit_job(event, world.submit()) is SubmitResult.DUPLICATE
    assert world.provider.calls["submit"] == 1


def test_a_job_accepted_whose_execution_never_started_is_resumed_without_a_second_post() -> None:
    world = World()
    world.executions.fail = True
    event = drop(world, job())
    with pytest.raises(RuntimeError):
        submit_job(event, world.submit())
    world.executions.fail = False

    assert submit_job(event, world.submit()) is SubmitResult.RESUMED

    assert world.provider.calls["submit"] == 1
    assert len(world.executions.started) == 1


def claimed_by_another(world: World, event: InboxObject, posting: bool) -> None:
    """A SUBMITTING claim held by message msg-other, whose worker began its POST (`posting`) or not."""
    ref = JobRef(job_id=job_id_of(event), input_bucket=INPUT_BUCKET, job_key=JOB_KEY, received_at=event.event_time)
    world.jobs.claim_submission(ref.claim_record(world.clock.now(), timedelta(seconds=120), "msg-other", 30))
    if posting:
        world.jobs.mark_posting(ref.job_id, world.clock.now())


def test_a_second_delivery_while_the_first_submits_is_dropped_and_a_dead_worker_is_not_repeated() -> None:
    """Given a SUBMITTING claim held by another message whose worker began its POST
    When a duplicate arrives, then it is dropped; when the claiming message itself comes back (its
    worker died after the POST may have been accepted), the job fails INTERNAL and is not posted again."""
    world = World()
    event = drop(world, job())
    claimed_by_another(world, event, posting=True)

    assert submit_job(event, world.submit()) is SubmitResult.DUPLICATE

    own = replace(event, message_id="msg-other")
    assert submit_job(own, world.submit()) is SubmitResult.REJECTED
    assert world.provider.calls["submit"] == 0
    assert report(world)["error_code"] == "INTERNAL"
    assert "may have been accepted" in report(world)["error_message"]


def test_a_worker_that_died_before_its_post_is_simply_tried_again() -> None:
    """Given the claiming worker died before it began its POST (no posting mark)
    When its message comes back, then the claim is released and the event requeued, and the next
    delivery posts the job once: no INTERNAL failure for a job Segmind never saw."""
    world = World()
    event = drop(world, job())
    claimed_by_another(world, event, posting=False)
    own = replace(event, message_id="msg-other")

    assert isinstance(submit_job(own, world.submit()), Requeue)
    assert world.jobs.records == {}
    assert submit_job(own, world.submit()) is SubmitResult.STARTED
    assert world.provider.calls["submit"] == 1


# --- bad input and media ---------------------------------------------------------------------------------


def test_a_failure_whose_worker_died_before_its_notification_is_notified_by_the_next_delivery() -> None:
    """Given a bad job whose worker wrote the FAILED record and died before notifying (the record comes
    first, so something is left to find), when the event comes back, then the ending is completed:
    report, inputs archived, and the one notification."""
    world = World()
    event = drop(world, job(fit="stretch"))
    world.notifier.fail = True
    with pytest.raises(RuntimeError):
        submit_job(event, world.submit())
    world.notifier.fail = False

    assert submit_job(replace(event, message_id="msg-2"), world.submit()) is SubmitResult.REJECTED

    assert [n.error_code for n in world.notifier.published] == ["INVALID_JOB"]
    assert world.inbox() == []
    assert submit_job(replace(event, message_id="msg-3"), world.submit()) is SubmitResult.DUPLICATE


def test_bad_input_fails_fast_with_a_report_one_notification_and_no_post() -> None:
    world = World()
    event = drop(world, job(fit="stretch"))

    assert submit_job(event, world.submit()) is SubmitResult.REJECTED

    assert world.provider.calls["submit"] == 0
    assert report(world)["error_code"] == "INVALID_JOB"
    assert world.inbox() == []
    assert [n.error_code for n in world.notifier.published] == ["INVALID_JOB"]


def test_a_job_file_that_is_not_json_fails_and_leaves_the_files_beside_it() -> None:
    """Given a job file cut off mid-way (not JSON: it names nothing anyone can read)
    Then it fails INVALID_JOB and moves to failed/, and the photo beside it stays where it is."""
    world = World()
    event = drop(world, b'{"model": "heygen-avatar-iv", "photo": "face.png", ')

    assert submit_job(event, world.submit()) is SubmitResult.REJECTED

    assert world.inbox() == [PHOTO_KEY]
    (notification,) = world.notifier.published
    assert (notification.model, notification.error_code) == (None, "INVALID_JOB")


def test_a_job_file_that_parses_but_is_invalid_names_its_model_and_takes_its_media_along() -> None:
    world = World()
    event = drop(world, job(voice_id="not a voice"))

    assert submit_job(event, world.submit()) is SubmitResult.REJECTED

    assert world.inbox() == []
    (notification,) = world.notifier.published
    assert (notification.model, notification.error_code) == ("heygen-avatar-iv", "INVALID_JOB")


def test_late_media_is_waited_for_then_ends_missing_media() -> None:
    world = World()
    event = drop(world, job(), photo=False)

    with pytest.raises(MediaNotYetAvailable) as waiting:
        submit_job(event, world.submit())
    assert waiting.value.retry_after_seconds == 15

    world.clock.advance(world.settings.media_wait_seconds + 1)
    assert submit_job(event, world.submit()) is SubmitResult.REJECTED
    assert report(world)["error_code"] == "MISSING_MEDIA"
    assert world.provider.calls["submit"] == 0


# --- waits that are not failures --------------------------------------------------------------------------


def test_a_spent_budget_sends_the_event_back_to_wait_without_posting() -> None:
    budget = InMemoryRequestBudget(BucketShape.for_limit(5))
    while not isinstance(budget.try_acquire("poll", World().clock.now()), Denied):
        pass  # status checks took every token a submit may have
    world = World(budget=budget)
    event = drop(world, job())

    result = submit_job(event, world.submit())

    assert isinstance(result, Requeue)
    assert result.provider_failures == 0
    assert world.provider.calls["submit"] == 0
    assert world.jobs.records == {}


@pytest.mark.parametrize(
    "refusal",
    [
        ProviderUnavailable("Segmind answered 502"),
        ProviderConnectionError("could not connect to Segmind: ConnectError"),
        ProviderThrottled("Segmind answered 429", reset_at=None),
    ],
)
def test_a_refused_submit_is_tried_again_later_carrying_the_streak(refusal: Exception) -> None:
    world = World()
    world.provider.submits = [refusal]
    event = drop(world, job())

    result = submit_job(event, world.submit())

    assert isinstance(result, Requeue)
    assert (result.provider_failures, result.provider_failing_since) == (1, world.clock.now())
    assert 1 <= result.delay_seconds <= 30
    assert world.jobs.records == {}  # the claim was given back


def test_a_429_waits_until_the_reset_segmind_names() -> None:
    world = World()
    world.provider.submits = [ProviderThrottled("429", reset_at=world.clock.now() + timedelta(seconds=42))]

    result = submit_job(drop(world, job()), world.submit())

    assert isinstance(result, Requeue)
    assert result.delay_seconds == 43


def test_refusals_for_longer_than_the_retry_time_end_the_job_unbilled() -> None:
    world = World()
    world.provider.submits = [ProviderUnavailable("Segmind answered 500")]
    event = drop(world, job())
    since = world.clock.now() - timedelta(minutes=world.settings.submit_retry_minutes, seconds=1)
    streak = InboxObject(**{**event.__dict__, "provider_failures": 6, "provider_failing_since": since})

    assert submit_job(streak, world.submit()) is SubmitResult.REJECTED

    assert report(world)["error_code"] == "PROVIDER_UNAVAILABLE"
    assert "7 attempts" in report(world)["error_message"]
    assert "never accepted" in report(world)["error_message"]


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        (
            ProviderSubmitAmbiguous("submit to Segmind got no answer (ReadTimeout); it may have been accepted"),
            "INTERNAL",
        ),
        (ProviderBadResponse("the submit answer has no request_id"), "INTERNAL"),
        (ProviderRejected("voice_id is not a known voice"), "PROVIDER_REJECTED"),
    ],
)
def test_an_answer_that_may_have_been_accepted_or_a_refusal_ends_the_job_without_a_second_post(
    answer: Exception, code: str
) -> None:
    world = World()
    world.provider.submits = [answer]

    assert submit_job(drop(world, job()), world.submit()) is SubmitResult.REJECTED

    assert world.provider.calls["submit"] == 1
    assert report(world)["error_code"] == code


def test_no_post_starts_without_the_time_to_finish_it() -> None:
    world = World()
    event = drop(world, job())

    result = submit_job(event, world.submit(), time_left=lambda: world.settings.submit_worst_case_seconds - 1)

    assert isinstance(result, Requeue)
    assert world.provider.calls["submit"] == 0
    assert world.jobs.records == {}


# --- output paths -------------------------------------------------------------------------------------------


def test_another_job_file_wanting_the_same_output_path_fails_before_it_is_posted() -> None:
    world = World()
    submit_job(drop(world, job(output_key="clips/same.mp4")), world.submit())
    second = drop(world, job(output_key="clips/same.mp4"), key="inbox/team/other.json")

    assert submit_job(second, world.submit()) is SubmitResult.REJECTED

    assert world.provider.calls["submit"] == 1
    assert report(world, "failed/team/other.error.json")["error_code"] == "OUTPUT_CONFLICT"


def test_the_same_job_file_uploaded_again_waits_for_its_earlier_upload_then_replaces_it() -> None:
    world = World()
    first = drop(world, job())
    submit_job(first, world.submit())
    again = drop(world, job(script="Hello again."))
    again = InboxObject(**{**again.__dict__, "sequencer": "0062E99A88DC407461"})

    assert isinstance(submit_job(again, world.submit()), Requeue)

    first_record = world.jobs.records[job_id_of(first)]
    world.jobs.records[first_record.job_id] = first_record.model_copy(update={"status": JobStatus.SUCCEEDED})
    assert submit_job(again, world.submit()) is SubmitResult.STARTED
    assert world.provider.calls["submit"] == 2
