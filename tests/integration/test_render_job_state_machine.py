"""statemachine/render_job.asl.json executed by moto, with Lambda invokes routed to the real handlers.

Each test drops a real job into the input bucket, runs the real Submit handler on the SQS event
Lambda would receive, and lets the state machine poll a provider over real loopback HTTP.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import boto3
import pytest

from avatar_local.stack.lambda_router import FakeLambdaContext, load_handler
from tests.integration.conftest import Pipeline
from tests.support.events import Delivery, object_created_sqs_event
from tests.support.media import make_png

pytestmark = pytest.mark.integration

JOB_KEY = "inbox/campaign-a/alice welcome.json"
PHOTO_KEY = "inbox/campaign-a/alice.png"
JOB = {
    "model": "heygen-avatar-iv",
    "photo": "alice.png",
    "video_title": "Welcome",
    "script": "Hello, this is an avatar demo.",
    "voice_id": "Onyx",
    "metadata": {"customer": "42"},
}


def drop_job(pipeline: Pipeline, job: dict[str, Any] = JOB, key: str = JOB_KEY) -> dict[str, Any]:
    """Upload the photo and job file, and return the SQS event Lambda would get for the job file."""
    s3 = boto3.client("s3")
    bucket = pipeline.aws.input_bucket
    s3.put_object(Bucket=bucket, Key=PHOTO_KEY, Body=make_png())
    put = s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(job).encode())
    size = len(json.dumps(job).encode())
    delivery = Delivery(queue_arn=pipeline.aws.submit_queue_arn)
    return object_created_sqs_event(bucket, key, put["ETag"].strip('"'), size, delivery=delivery)


def submit(event: dict[str, Any]) -> dict[str, Any]:
    handler = load_handler("submit")
    result: dict[str, Any] = handler(event, FakeLambdaContext(function_name="SubmitFunction"))
    return result


def only_job_id(pipeline: Pipeline) -> str:
    table = boto3.resource("dynamodb").Table(pipeline.aws.jobs_table)
    items = table.scan()["Items"]
    assert len(items) == 1
    return str(items[0]["job_id"])


def job_record(pipeline: Pipeline, job_id: str) -> dict[str, Any]:
    table = boto3.resource("dynamodb").Table(pipeline.aws.jobs_table)
    return dict(table.get_item(Key={"job_id": job_id})["Item"])


def test_completed_job_copies_video_writes_manifest_and_notifies_once(pipeline: Pipeline) -> None:
    """Given a valid Avatar IV job and a provider that goes QUEUED -> PROCESSING -> COMPLETED,
    when the job file arrives, then the video lands in the output bucket with a manifest written
    last, the inputs move to processed/, and exactly one SUCCEEDED notification is published."""
    response = submit(drop_job(pipeline))
    assert response == {"batchItemFailures": []}
    job_id = only_job_id(pipeline)

    execution = pipeline.aws.wait_for_execution(job_id)

    assert execution["status"] == "SUCCEEDED"
    s3 = boto3.client("s3")
    video = s3.get_object(Bucket=pipeline.aws.output_bucket, Key="videos/campaign-a/alice welcome.mp4")
    video_bytes = video["Body"].read()
    assert video_bytes == pipeline.provider.video
    assert video["ContentType"] == "video/mp4"
    manifest = json.loads(
        s3.get_object(Bucket=pipeline.aws.output_bucket, Key="videos/campaign-a/alice welcome.json")["Body"].read()
    )
    assert manifest["job_id"] == job_id
    assert manifest["video"]["sha256"] == hashlib.sha256(video_bytes).hexdigest()
    assert manifest["video"]["size"] == len(video_bytes)
    assert manifest["parameters"]["voice_id"] == "26b2064088674c80b1e5fc5ab1a068ea"
    assert "image_url" not in manifest["parameters"], "presigned URLs must not be stored"
    assert manifest["metadata"] == {"customer": "42"}
    assert pipeline.aws.keys(pipeline.aws.input_bucket) == [
        "processed/campaign-a/alice welcome.json",
        "processed/campaign-a/alice.png",
    ]
    notifications = pipeline.aws.notifications()
    assert len(notifications) == 1
    message = notifications[0]
    assert message["attributes"] == {"status": "SUCCEEDED", "model": "heygen-avatar-iv"}
    assert message["body"]["job_id"] == job_id
    assert message["body"]["output"]["video_key"] == "videos/campaign-a/alice welcome.mp4"
    assert message["body"]["metadata"] == {"customer": "42"}
    assert job_record(pipeline, job_id)["status"] == "SUCCEEDED"
    # The provider saw one submit, with the photo as a presigned URL and the voice name resolved.
    assert len(pipeline.provider.submits) == 1
    sent = pipeline.provider.submits[0]
    assert sent["image_url"].startswith("https://")
    assert "Signature" in sent["image_url"]
    assert sent["voice_id"] == "26b2064088674c80b1e5fc5ab1a068ea"
    assert pipeline.provider.calls["status"] == 3


def test_failed_render_reports_the_provider_error(pipeline: Pipeline) -> None:
    """Given a provider that answers FAILED as HTTP 422 with a body, then the job fails with
    PROVIDER_FAILED, an error report lands in failed/, and one FAILED notification is sent."""
    pipeline.provider.script.statuses = [
        "PROCESSING",
        (422, {"status": "FAILED", "error": "Content blocked by safety filter", "metrics": {}}),
    ]
    submit(drop_job(pipeline))
    job_id = only_job_id(pipeline)

    execution = pipeline.aws.wait_for_execution(job_id)

    assert execution["status"] == "FAILED"
    report = json.loads(
        boto3.client("s3")
        .get_object(Bucket=pipeline.aws.input_bucket, Key="failed/campaign-a/alice welcome.error.json")["Body"]
        .read()
    )
    assert report["error_code"] == "PROVIDER_FAILED"
    assert report["error_message"] == "Content blocked by safety filter"
    assert report["what_to_do"]
    assert "failed/campaign-a/alice welcome.json" in pipeline.aws.keys(pipeline.aws.input_bucket)
    assert pipeline.aws.keys(pipeline.aws.output_bucket) == []
    notifications = pipeline.aws.notifications()
    assert [n["attributes"]["status"] for n in notifications] == ["FAILED"]
    assert notifications[0]["body"]["error_code"] == "PROVIDER_FAILED"
    record = job_record(pipeline, job_id)
    assert (record["status"], record["error_code"]) == ("FAILED", "PROVIDER_FAILED")


def test_render_past_the_deadline_fails_with_render_timeout(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a render that stays PROCESSING forever, then the loop ends at the deadline with
    RENDER_TIMEOUT instead of polling forever, with a bounded number of status calls."""
    monkeypatch.setenv("RENDER_DEADLINE_MINUTES", "5")
    pipeline.provider.script.statuses = ["PROCESSING"]
    submit(drop_job(pipeline))
    job_id = only_job_id(pipeline)

    execution = pipeline.aws.wait_for_execution(job_id)

    assert execution["status"] == "FAILED"
    notifications = pipeline.aws.notifications()
    assert len(notifications) == 1
    assert notifications[0]["body"]["error_code"] == "RENDER_TIMEOUT"
    # 5 minutes of virtual time: the first check at ~105 s, dense 8 s checks, then backoff.
    assert 5 <= pipeline.provider.calls["status"] <= 40
    entered = [
        e["stateEnteredEventDetails"]["name"] for e in pipeline.aws.history(job_id) if "stateEnteredEventDetails" in e
    ]
    assert "RenderDeadlinePassed" in entered
    assert "FinalizeVideo" not in entered


def test_a_transient_status_fault_becomes_a_longer_wait(pipeline: Pipeline) -> None:
    """Given a status call that gets HTTP 503 once, then Poll answers with the same status and a
    backed-off wait (no task fails, no Retry attempt is spent: the render goes on meanwhile), and the
    next check sees it COMPLETED."""
    pipeline.provider.script.statuses = [
        "PROCESSING",
        (503, {"error": "Service temporarily unavailable"}),
        "COMPLETED",
    ]
    submit(drop_job(pipeline))
    job_id = only_job_id(pipeline)

    execution = pipeline.aws.wait_for_execution(job_id)

    assert execution["status"] == "SUCCEEDED"
    history = pipeline.aws.history(job_id)
    assert [e for e in history if e["type"] == "TaskFailed"] == []
    payloads = [
        json.loads(e["taskSucceededEventDetails"]["output"])["Payload"] for e in history if e["type"] == "TaskSucceeded"
    ]
    polls = [payload["poll"] for payload in payloads if "poll" in payload]
    assert [(p["status"], p["failed_checks"]) for p in polls] == [
        ("PROCESSING", 0),
        ("PROCESSING", 1),
        ("COMPLETED", 0),
    ]
    assert len(pipeline.aws.notifications()) == 1
    assert pipeline.provider.calls["submit"] == 1


def test_a_finished_render_is_fetched_again_after_transient_result_faults(pipeline: Pipeline) -> None:
    """Given a COMPLETED render whose result fetch fails six times running (500s), which used to
    exhaust the Retry and throw the billed render away
    Then Finalize answers each time with a backed-off fetch_retry, the state machine waits and runs
    it again, and the seventh fetch delivers the video: one notification, SUCCEEDED."""
    pipeline.provider.script.results = [(500, {"error": "Internal Server Error"})] * 6
    submit(drop_job(pipeline))
    job_id = only_job_id(pipeline)

    execution = pipeline.aws.wait_for_execution(job_id)

    assert execution["status"] == "SUCCEEDED"
    waits = [e for e in pipeline.aws.history(job_id) if e["type"] == "WaitStateEntered"]
    fetch_waits = [e for e in waits if e["stateEnteredEventDetails"]["name"] == "WaitBeforeFetchingAgain"]
    assert len(fetch_waits) == 6
    assert pipeline.provider.calls["result"] == 7
    (notification,) = pipeline.aws.notifications()
    assert notification["body"]["status"] == "SUCCEEDED"


def test_a_finalize_that_dies_after_the_manifest_is_finished_by_its_retry_without_fetching_again(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a Finalize that copied the video and wrote the manifest, then died before the job's record
    (Lambda reports Runtime.ExitError)
    Then the state machine's retry runs at once (no lock of the dead run to wait out), finds the manifest
    and ends the job from it: SUCCEEDED, the result fetched once, one notification."""
    from avatar_local.stack.crashes import LambdaDeath
    from avatar_pipeline.adapters.jobs_table import JobsTable

    original = JobsTable.save_terminal
    deaths = [LambdaDeath("after the manifest")]

    def dies_once(self: JobsTable, record: Any) -> None:
        if deaths and record.status == "SUCCEEDED":
            raise deaths.pop()
        original(self, record)

    monkeypatch.setattr(JobsTable, "save_terminal", dies_once)
    submit(drop_job(pipeline))
    job_id = only_job_id(pipeline)

    assert pipeline.aws.wait_for_execution(job_id)["status"] == "SUCCEEDED"
    history = pipeline.aws.history(job_id)
    assert [e["taskFailedEventDetails"]["error"] for e in history if e["type"] == "TaskFailed"] == ["Runtime.ExitError"]
    assert not [e for e in history if e.get("stateEnteredEventDetails", {}).get("name") == "WaitBeforeFetchingAgain"]
    assert pipeline.provider.calls["result"] == 1
    assert job_record(pipeline, job_id)["status"] == "SUCCEEDED"
    assert [n["body"]["status"] for n in pipeline.aws.notifications()] == ["SUCCEEDED"]


def test_finalize_run_again_after_success_ends_the_same_way_without_fetching_or_notifying(pipeline: Pipeline) -> None:
    """Given a job that already finished, when Finalize is invoked again with the same state (as a
    Step Functions retry after a late-reported success would), then it finishes from the manifest:
    the same outputs, no result fetched or video copied again, no second notification."""
    submit(drop_job(pipeline))
    job_id = only_job_id(pipeline)
    assert pipeline.aws.wait_for_execution(job_id)["status"] == "SUCCEEDED"
    entered = [
        e["stateEnteredEventDetails"]
        for e in pipeline.aws.history(job_id)
        if e.get("stateEnteredEventDetails", {}).get("name") == "FinalizeVideo"
    ]
    finalize_input = json.loads(entered[0]["input"])
    first_outcome = json.loads(
        next(e for e in pipeline.aws.history(job_id) if e["type"] == "ExecutionSucceeded")[
            "executionSucceededEventDetails"
        ]["output"]
    )
    result_calls = pipeline.provider.calls["result"]

    again = load_handler("finalize")(finalize_input, FakeLambdaContext(function_name="FinalizeFunction"))

    assert again == {**first_outcome, "notified": False}
    assert pipeline.provider.calls["result"] == result_calls
    assert len(pipeline.aws.notifications()) == 1


def test_a_finalize_that_dies_after_copying_is_retried_and_completes(pipeline: Pipeline) -> None:
    """Given the Finalize process dies after the video is copied but before the manifest (Lambda
    reports Runtime.ExitError), then the state machine retries it and the job completes with a
    manifest and exactly one notification."""
    from avatar_local.stack.crashes import CrashRule, crashes_installed

    with crashes_installed([CrashRule()]):
        submit(drop_job(pipeline))
        job_id = only_job_id(pipeline)
        execution = pipeline.aws.wait_for_execution(job_id)

    failures = [e["taskFailedEventDetails"]["error"] for e in pipeline.aws.history(job_id) if e["type"] == "TaskFailed"]
    assert failures[0] == "Runtime.ExitError"
    assert execution["status"] == "SUCCEEDED"
    assert "videos/campaign-a/alice welcome.json" in pipeline.aws.keys(pipeline.aws.output_bucket)
    assert [n["attributes"]["status"] for n in pipeline.aws.notifications()] == ["SUCCEEDED"]
