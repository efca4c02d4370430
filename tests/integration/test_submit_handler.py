"""The Submit function on the SQS batches Lambda delivers: exactly one provider submit per job."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from avatar_local.stack.lambda_router import FakeLambdaContext, load_handler
from avatar_pipeline.adapters.queue import InboxEventRecord, to_inbox_object
from tests.integration.conftest import Pipeline
from tests.support.events import Delivery, object_created_sqs_event
from tests.support.media import make_png

pytestmark = pytest.mark.integration


def upload(pipeline: Pipeline, key: str, body: bytes) -> str:
    put = boto3.client("s3").put_object(Bucket=pipeline.aws.input_bucket, Key=key, Body=body)
    return str(put["ETag"]).strip('"')


def job_event(
    pipeline: Pipeline,
    key: str,
    job: dict[str, Any] | bytes,
    sequencer: str = "0062E99A88DC407460",
    message_id: str = "msg-1",
    receipt_handle: str = "receipt-1",
    event_time: datetime | None = None,
) -> dict[str, Any]:
    body = job if isinstance(job, bytes) else json.dumps(job).encode()
    etag = upload(pipeline, key, body)
    delivery = Delivery(pipeline.aws.submit_queue_arn, receipt_handle, message_id)
    bucket = pipeline.aws.input_bucket
    return object_created_sqs_event(bucket, key, etag, len(body), sequencer, event_time, delivery)


def avatar_iv_job(**overrides: Any) -> dict[str, Any]:
    return {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": "Hi", "script": "Hello there."} | overrides


def run_submit(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = load_handler("submit")(event, FakeLambdaContext(function_name="SubmitFunction"))
    return result


def executions(pipeline: Pipeline) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions")
    return [dict(e) for e in sfn.list_executions(stateMachineArn=pipeline.aws.state_machine_arn)["executions"]]


def test_the_same_event_delivered_three_times_submits_once(pipeline: Pipeline) -> None:
    """Given one upload whose event arrives three times (EventBridge/SQS are at-least-once),
    then the provider sees exactly one POST and exactly one execution runs."""
    upload(pipeline, "inbox/face.png", make_png())
    event = job_event(pipeline, "inbox/hello.json", avatar_iv_job())

    results = [run_submit(event) for _ in range(3)]

    assert results == [{"batchItemFailures": []}] * 3
    assert pipeline.provider.calls["submit"] == 1
    assert len(executions(pipeline)) == 1


def test_a_new_upload_of_the_same_key_is_a_new_job(pipeline: Pipeline) -> None:
    """Given a job uploaded, finished, and uploaded again (a new S3 event sequencer), then it is a
    second job, because re-uploading is how a user retries."""
    upload(pipeline, "inbox/face.png", make_png())
    run_submit(job_event(pipeline, "inbox/hello.json", avatar_iv_job(), sequencer="00000000000000000A"))
    first = str(boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).scan()["Items"][0]["job_id"])
    assert pipeline.aws.wait_for_execution(first)["status"] == "SUCCEEDED"  # finished: inputs archived

    upload(pipeline, "inbox/face.png", make_png())
    run_submit(job_event(pipeline, "inbox/hello.json", avatar_iv_job(), sequencer="00000000000000000B"))

    assert pipeline.provider.calls["submit"] == 2
    assert len(boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).scan()["Items"]) == 2


def test_an_invalid_job_fails_fast_without_reaching_the_provider(pipeline: Pipeline) -> None:
    """Given a job file with an enum violated, then the record succeeds (no retry, no DLQ), the
    provider is never called, an error report explains it, and one FAILED notification is sent."""
    upload(pipeline, "inbox/face.png", make_png())
    event = job_event(pipeline, "inbox/bad.json", avatar_iv_job(fit="stretch"))

    assert run_submit(event) == {"batchItemFailures": []}

    assert pipeline.provider.calls["submit"] == 0
    assert executions(pipeline) == []
    keys = pipeline.aws.keys(pipeline.aws.input_bucket)
    assert keys == ["failed/bad.error.json", "failed/bad.json", "failed/face.png"]
    report = json.loads(
        boto3.client("s3").get_object(Bucket=pipeline.aws.input_bucket, Key="failed/bad.error.json")["Body"].read()
    )
    assert report["error_code"] == "INVALID_JOB"
    assert "fit" in report["error_message"]
    notifications = pipeline.aws.notifications()
    assert [n["body"]["error_code"] for n in notifications] == ["INVALID_JOB"]
    assert notifications[0]["attributes"] == {"status": "FAILED", "model": "heygen-avatar-iv"}


def test_a_photo_that_is_not_an_image_is_unsupported_media(pipeline: Pipeline) -> None:
    """Given a photo named .png whose bytes are HTML, then the job fails with UNSUPPORTED_MEDIA."""
    upload(pipeline, "inbox/face.png", b"<html><body>not an image</body></html>")
    run_submit(job_event(pipeline, "inbox/fake.json", avatar_iv_job()))

    assert pipeline.provider.calls["submit"] == 0
    assert [n["body"]["error_code"] for n in pipeline.aws.notifications()] == ["UNSUPPORTED_MEDIA"]


def test_media_arriving_after_the_job_file_is_waited_for(pipeline: Pipeline) -> None:
    """Given a job file whose photo is not there yet, then the record is retried soon (its
    visibility shortened) and, once the photo arrives, the job is submitted normally."""
    sqs = boto3.client("sqs")
    sqs.send_message(QueueUrl=pipeline.aws.submit_queue_url, MessageBody="placeholder")
    message = sqs.receive_message(QueueUrl=pipeline.aws.submit_queue_url)["Messages"][0]
    event = job_event(pipeline, "inbox/late.json", avatar_iv_job(), receipt_handle=message["ReceiptHandle"])

    first = run_submit(event)

    assert first == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}
    assert pipeline.provider.calls["submit"] == 0
    attributes = sqs.get_queue_attributes(QueueUrl=pipeline.aws.submit_queue_url, AttributeNames=["All"])
    assert attributes["Attributes"]["ApproximateNumberOfMessagesNotVisible"] == "1"

    upload(pipeline, "inbox/face.png", make_png())
    assert run_submit(event) == {"batchItemFailures": []}
    assert pipeline.provider.calls["submit"] == 1


def test_media_that_never_arrives_fails_with_missing_media(pipeline: Pipeline) -> None:
    """Given a job file older than MEDIA_WAIT_SECONDS whose photo is absent, then MISSING_MEDIA."""
    event = job_event(pipeline, "inbox/lonely.json", avatar_iv_job(), event_time=datetime.now(UTC) - timedelta(hours=1))

    assert run_submit(event) == {"batchItemFailures": []}
    assert [n["body"]["error_code"] for n in pipeline.aws.notifications()] == ["MISSING_MEDIA"]


def test_a_throttled_submit_is_retried_and_then_submitted_once(pipeline: Pipeline) -> None:
    """Given the provider answers 429 to the first POST, then the event goes back on the queue as a
    delayed copy (no receive spent) and that copy submits; the job is posted once successfully."""
    pipeline.provider.script.submit_sequence = [(429, {"error": "Rate limit exceeded"})]
    upload(pipeline, "inbox/face.png", make_png())
    event = job_event(pipeline, "inbox/busy.json", avatar_iv_job())

    first = run_submit(event)
    delayed = boto3.client("sqs").get_queue_attributes(
        QueueUrl=pipeline.aws.submit_queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]["ApproximateNumberOfMessagesDelayed"]
    second = run_submit(event)  # the delayed copy, when it comes back

    assert first == {"batchItemFailures": []}  # done with: a delayed copy replaces it
    assert delayed == "1"
    assert second == {"batchItemFailures": []}
    assert pipeline.provider.calls["submit"] == 2  # the throttled attempt plus the accepted one
    assert len(executions(pipeline)) == 1


def test_a_submit_that_times_out_is_never_repeated(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a POST whose answer never arrives in time (it may have been accepted and billed),
    then the job fails with a clear report instead of posting again, also on redelivery."""
    monkeypatch.setenv("PROVIDER_READ_TIMEOUT_S", "0.3")
    pipeline.provider.script.submit_delay = 1.0
    upload(pipeline, "inbox/face.png", make_png())
    event = job_event(pipeline, "inbox/slow.json", avatar_iv_job())

    assert run_submit(event) == {"batchItemFailures": []}
    assert run_submit(event) == {"batchItemFailures": []}

    assert pipeline.provider.calls["submit"] == 1
    notifications = pipeline.aws.notifications()
    assert len(notifications) == 1
    assert notifications[0]["body"]["error_code"] == "INTERNAL"
    assert "may have been accepted" in notifications[0]["body"]["error_message"]


def requeued(pipeline: Pipeline) -> list[dict[str, Any]]:
    """The events Submit put back on its queue as delayed messages, as SQS holds them (body, delay,
    attributes), read past their delay."""
    sqs = boto3.client("sqs")
    attributes = sqs.get_queue_attributes(
        QueueUrl=pipeline.aws.submit_queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    waiting = int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesDelayed"])
    messages: list[dict[str, Any]] = []
    while len(messages) < waiting:
        batch = sqs.receive_message(
            QueueUrl=pipeline.aws.submit_queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=20,
        ).get("Messages", [])
        messages.extend(dict(message) for message in batch)
    return messages


def test_a_refused_connection_is_tried_again_later_because_nothing_was_sent(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the provider's port refuses connections, then the event goes back on the queue as a
    delayed message carrying the streak of refusals (no receive spent), and no job is failed or
    recorded as submitted (the POST provably never happened)."""
    monkeypatch.setenv("SEGMIND_BASE_URL", "http://127.0.0.1:9")
    upload(pipeline, "inbox/face.png", make_png())
    event = job_event(pipeline, "inbox/offline.json", avatar_iv_job())

    assert run_submit(event)["batchItemFailures"] == []

    (message,) = requeued(pipeline)
    attributes = {name: value["StringValue"] for name, value in message["MessageAttributes"].items()}
    assert attributes["provider-failures"] == "1"
    assert datetime.fromisoformat(attributes["provider-failing-since"]) <= pipeline.clock.now()
    assert json.loads(message["Body"])["detail"]["object"]["key"] == "inbox/offline.json"
    assert pipeline.aws.notifications() == []
    assert boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).scan()["Items"] == []


def test_a_submit_refused_for_longer_than_the_retry_time_ends_the_job_unbilled(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given an event whose submits Segmind has refused for 31 minutes (SubmitRetryMinutes is 30)
    When it is delivered again and Segmind answers 500 once more
    Then the job fails PROVIDER_UNAVAILABLE with a report saying it was never accepted (so never
    billed), one notification goes out, and nothing more is queued."""
    pipeline.provider.script.submit_sequence = [(500, {"error": "Internal Server Error"})]
    upload(pipeline, "inbox/face.png", make_png())
    event = job_event(pipeline, "inbox/outage.json", avatar_iv_job())
    since = (pipeline.clock.now() - timedelta(minutes=31)).isoformat()
    event["Records"][0]["messageAttributes"] = {
        "provider-failures": {"stringValue": "9", "dataType": "Number"},
        "provider-failing-since": {"stringValue": since, "dataType": "String"},
    }

    assert run_submit(event)["batchItemFailures"] == []

    assert requeued(pipeline) == []
    report = json.loads(
        boto3.client("s3").get_object(Bucket=pipeline.aws.input_bucket, Key="failed/outage.error.json")["Body"].read()
    )
    assert report["error_code"] == "PROVIDER_UNAVAILABLE"
    assert "10 attempts" in report["error_message"]
    assert "never accepted" in report["error_message"]
    assert "nothing was billed" in report["what_to_do"]
    (notification,) = pipeline.aws.notifications()
    assert notification["body"]["error_code"] == "PROVIDER_UNAVAILABLE"


def test_no_submit_starts_without_the_time_to_finish_it(pipeline: Pipeline) -> None:
    """Given a batch of three jobs and an invocation with 35 s left (a submit's worst case is 40 s:
    connect 5 + send 5 + answer 20 + bookkeeping 10)
    When Submit handles it
    Then no POST starts: every event goes back on the queue untouched, no job is left SUBMITTING,
    and none fails."""
    upload(pipeline, "inbox/face.png", make_png())
    events = [job_event(pipeline, f"inbox/late-{n}.json", avatar_iv_job(), message_id=f"msg-{n}") for n in range(3)]
    batch = {"Records": [e["Records"][0] for e in events]}
    context = FakeLambdaContext(function_name="SubmitFunction", timeout_ms=35_000)

    result = load_handler("submit")(batch, context)

    assert result == {"batchItemFailures": []}
    assert pipeline.provider.calls["submit"] == 0
    assert len(requeued(pipeline)) == 3
    assert boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).scan()["Items"] == []
    assert pipeline.aws.notifications() == []


def test_a_slow_provider_never_leaves_a_record_mid_post_when_time_runs_out(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given Segmind taking 3 s to answer each submit, a 5 s read timeout (a submit's worst case is then
    5 + 5 + 5 + 10 = 25 s) and a batch of five jobs in an invocation with 30 s left
    When Submit handles the batch
    Then the first two are posted (30 s, then 27 s left), the other three go back on the queue untouched
    (24 s left is not enough): no job is left SUBMITTING, none fails as possibly billed."""
    monkeypatch.setenv("PROVIDER_READ_TIMEOUT_S", "5")
    pipeline.provider.script.submit_delay = 3.0
    upload(pipeline, "inbox/face.png", make_png())
    events = [job_event(pipeline, f"inbox/slow-{n}.json", avatar_iv_job(), message_id=f"msg-{n}") for n in range(5)]
    batch = {"Records": [e["Records"][0] for e in events]}
    context = FakeLambdaContext(function_name="SubmitFunction", timeout_ms=30_000)

    assert load_handler("submit")(batch, context) == {"batchItemFailures": []}

    assert pipeline.provider.calls["submit"] == 2
    statuses = sorted(
        str(item["status"]) for item in boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).scan()["Items"]
    )
    assert len(statuses) == 2
    assert "SUBMITTING" not in statuses
    assert len(requeued(pipeline)) == 3
    assert [n for n in pipeline.aws.notifications() if n["body"]["status"] == "FAILED"] == []


@pytest.mark.parametrize(
    "key",
    ["inbox/Team Ö/hello world+1.json", "inbox/100% done/a b.json", "inbox/ünïcödé/naïve.json"],
)
def test_keys_with_spaces_plus_unicode_and_percent_are_decoded_once(pipeline: Pipeline, key: str) -> None:
    """Given keys that S3 URL-encodes in its events, then the job file and its photo are found."""
    folder = key.rsplit("/", 1)[0]
    upload(pipeline, f"{folder}/face.png", make_png())
    run_submit(job_event(pipeline, key, avatar_iv_job()))

    assert pipeline.provider.calls["submit"] == 1
    record = boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).scan()["Items"][0]
    assert record["job_key"] == key


def test_the_sample_event_parses_with_the_handler_model() -> None:
    """Given events/submit_sqs_object_created.json, then the Submit model parses it and the key is
    decoded ('+' is a space in S3 event keys)."""
    from tests.support.events import load_event

    record = InboxEventRecord.model_validate(load_event("submit_sqs_object_created.json")["Records"][0])
    obj = to_inbox_object(record)
    assert obj.key == "inbox/campaign-a/alice welcome.json"
    assert obj.bucket == "avatar-pipeline-input-123456789012"


def test_a_crash_between_the_providers_answer_and_the_bookkeeping_never_posts_twice(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a worker that dies after Segmind accepted the job but before the request id was
    recorded, then nothing POSTs again: a duplicate delivery is dropped while the claim runs, and
    the claimer's own message coming back fails the job with a report saying the submit may have
    been accepted."""
    from avatar_pipeline.adapters.jobs_table import JobsTable

    upload(pipeline, "inbox/face.png", make_png())
    event = job_event(pipeline, "inbox/crash.json", avatar_iv_job())

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the worker died before recording the request id")

    with monkeypatch.context() as patched:
        patched.setattr(JobsTable, "mark_submitted", crash)
        assert run_submit(event)["batchItemFailures"] == [{"itemIdentifier": "msg-1"}]
    assert pipeline.provider.calls["submit"] == 1

    # A duplicate (another message) while the claim runs is dropped: the claimer's message remains.
    duplicate = json.loads(json.dumps(event))
    duplicate["Records"][0]["messageId"] = "msg-duplicate"
    assert run_submit(duplicate) == {"batchItemFailures": []}
    assert pipeline.aws.notifications() == []
    # The claimer's own message coming back means its worker died mid-submit.
    assert run_submit(event) == {"batchItemFailures": []}

    assert pipeline.provider.calls["submit"] == 1
    notifications = pipeline.aws.notifications()
    assert len(notifications) == 1
    assert notifications[0]["body"]["error_code"] == "INTERNAL"
    assert "may have been accepted" in notifications[0]["body"]["error_message"]


def test_a_failed_start_execution_is_retried_without_posting_again(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given StartExecution fails after the provider accepted the job, then the redelivered event
    starts the execution (named after the job id) without a second POST, and the job completes."""
    from avatar_pipeline.adapters.executions import ExecutionStarter

    upload(pipeline, "inbox/face.png", make_png())
    event = job_event(pipeline, "inbox/sfn.json", avatar_iv_job())

    def unavailable(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("Step Functions is unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(ExecutionStarter, "start", unavailable)
        assert run_submit(event)["batchItemFailures"] == [{"itemIdentifier": "msg-1"}]

    assert run_submit(event) == {"batchItemFailures": []}

    assert pipeline.provider.calls["submit"] == 1
    job_id = str(boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).scan()["Items"][0]["job_id"])
    assert pipeline.aws.wait_for_execution(job_id)["status"] == "SUCCEEDED"
    assert [n["attributes"]["status"] for n in pipeline.aws.notifications()] == ["SUCCEEDED"]


@pytest.mark.parametrize("key", ["elsewhere/job.json", "processed/job.json", "failed/job.error.json", "inbox.json"])
def test_a_json_outside_inbox_never_becomes_a_job(pipeline: Pipeline, key: str) -> None:
    """Given an event for a JSON file outside inbox/ (the rule filters these out; this is the
    handler's own guard, e.g. for a misconfigured rule), then nothing is recorded, posted, moved or
    notified: what the pipeline writes can never trigger it again."""
    event = job_event(pipeline, key, avatar_iv_job())

    assert run_submit(event) == {"batchItemFailures": []}

    assert pipeline.provider.calls["submit"] == 0
    assert boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).scan()["Items"] == []
    assert pipeline.aws.notifications() == []
    assert pipeline.aws.keys(pipeline.aws.input_bucket) == [key]
