"""The DeadLetter function: an event that failed every delivery to Submit still ends its job.

Whatever exhausts the submit queue's receives (a crash on every delivery, AWS failing for minutes)
lands in the DLQ. The job must not stay SUBMITTING forever with its files in inbox/: it ends FAILED
with a report and one notification, unless it already ended or its render is under way.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from avatar_local.stack.lambda_router import FakeLambdaContext, load_handler
from tests.integration.conftest import Pipeline
from tests.integration.test_submit_handler import avatar_iv_job, job_event, run_submit, upload
from tests.support.media import make_png

pytestmark = pytest.mark.integration


def run_dead_letter(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = load_handler("dead_letter")(event, FakeLambdaContext(function_name="DeadLetterFunction"))
    return result


def as_dead_letter(event: dict[str, Any], receives: int = 5) -> dict[str, Any]:
    """The same record as the DLQ hands it over: same message id, its receive count spent."""
    record = event["Records"][0]
    record["attributes"]["ApproximateReceiveCount"] = str(receives)
    return event


def records(pipeline: Pipeline) -> list[dict[str, Any]]:
    return [dict(item) for item in boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).scan()["Items"]]


def test_a_job_that_never_got_a_record_ends_failed_with_a_report_and_one_notification(pipeline: Pipeline) -> None:
    """Given a job file whose event failed five deliveries before Submit recorded anything
    When its event reaches the DLQ
    Then the job ends FAILED (INTERNAL) with a report saying it was never submitted, its files move to
    failed/, one notification goes out, and nothing is posted."""
    upload(pipeline, "inbox/face.png", make_png())
    event = as_dead_letter(job_event(pipeline, "inbox/stuck.json", avatar_iv_job()))

    assert run_dead_letter(event) == {"batchItemFailures": []}

    assert pipeline.provider.calls["submit"] == 0
    assert pipeline.aws.keys(pipeline.aws.input_bucket) == [
        "failed/face.png",
        "failed/stuck.error.json",
        "failed/stuck.json",
    ]
    report = json.loads(
        boto3.client("s3").get_object(Bucket=pipeline.aws.input_bucket, Key="failed/stuck.error.json")["Body"].read()
    )
    assert report["error_code"] == "INTERNAL"
    assert "never submitted" in report["error_message"]
    assert "5 attempts" in report["error_message"]
    (notification,) = pipeline.aws.notifications()
    assert (notification["body"]["status"], notification["body"]["model"]) == ("FAILED", "heygen-avatar-iv")
    (record,) = records(pipeline)
    assert record["status"] == "FAILED"


def test_a_job_segmind_accepted_is_resumed_not_failed(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a job Segmind accepted whose execution could not be started on any delivery
    When its event reaches the DLQ and Step Functions works again
    Then the execution starts (no second POST) and the job succeeds."""
    from avatar_pipeline.adapters.executions import ExecutionStarter

    upload(pipeline, "inbox/face.png", make_png())
    event = job_event(pipeline, "inbox/accepted.json", avatar_iv_job())

    def unavailable(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("Step Functions is unavailable")

    with monkeypatch.context() as patched:
        patched.setattr(ExecutionStarter, "start", unavailable)
        assert run_submit(event)["batchItemFailures"] == [{"itemIdentifier": "msg-1"}]

    assert run_dead_letter(as_dead_letter(event)) == {"batchItemFailures": []}

    assert pipeline.provider.calls["submit"] == 1
    (record,) = records(pipeline)
    assert pipeline.aws.wait_for_execution(str(record["job_id"]))["status"] == "SUCCEEDED"
    assert [n["body"]["status"] for n in pipeline.aws.notifications()] == ["SUCCEEDED"]


def test_a_job_that_already_ended_is_left_alone(pipeline: Pipeline) -> None:
    """Given a bad job that already failed with its notification, when a stray copy of its event
    reaches the DLQ, then nothing more happens: no second report, no second notification."""
    upload(pipeline, "inbox/face.png", make_png())
    event = job_event(pipeline, "inbox/bad.json", avatar_iv_job(fit="stretch"))
    assert run_submit(event) == {"batchItemFailures": []}

    assert run_dead_letter(as_dead_letter(event)) == {"batchItemFailures": []}

    assert len(pipeline.aws.notifications()) == 1


def test_a_message_that_is_no_job_event_stays_in_the_queue_for_a_person(pipeline: Pipeline) -> None:
    """Given a DLQ message whose body is not an S3 event, then it is reported as a failed record (it
    stays in the DLQ, for the alarm and a person), and no job is touched."""
    event = job_event(pipeline, "inbox/ok.json", avatar_iv_job())
    event["Records"][0]["body"] = "this is not an S3 event"

    assert run_dead_letter(event) == {"batchItemFailures": [{"itemIdentifier": "msg-1"}]}

    assert pipeline.aws.notifications() == []
    assert records(pipeline) == []
