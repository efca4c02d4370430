"""A job's inputs leave inbox/ when it ends, and only the objects that job used (domain/inbox.py).

A user may upload a job file (or its photo) again under the same key while the first job is still
rendering: that upload is a job of its own, started by its own event. The first job's Finalize or
ReportFailure moves only what carries the ETags Submit saw, so the newer upload stays in inbox/
and is processed normally. State from executions started before ETags were recorded moves by key.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from avatar_local.stack.lambda_router import FakeLambdaContext, load_handler
from avatar_local.stack.s3_conditions import copy_source_if_match_enforced
from tests.integration.conftest import Pipeline
from tests.integration.test_submit_handler import avatar_iv_job, job_event, run_submit, upload
from tests.support.events import load_event
from tests.support.media import make_png

pytestmark = pytest.mark.integration

JOB_KEY = "inbox/hello.json"
PHOTO_KEY = "inbox/face.png"
FIRST = avatar_iv_job(script="The first version.")
SECOND = avatar_iv_job(script="The second version, uploaded while the first one renders.")


@pytest.fixture(autouse=True)
def s3_copy_conditions() -> Iterator[None]:
    """moto ignores CopySourceIfMatch; S3 does not (avatar_local/stack/s3_conditions.py)."""
    with copy_source_if_match_enforced():
        yield


def body(pipeline: Pipeline, key: str) -> bytes:
    data: bytes = boto3.client("s3").get_object(Bucket=pipeline.aws.input_bucket, Key=key)["Body"].read()
    return data


def job_ids(pipeline: Pipeline) -> set[str]:
    items = boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).scan()["Items"]
    return {str(item["job_id"]) for item in items}


def execution_input(pipeline: Pipeline, job_id: str) -> dict[str, Any]:
    arn = pipeline.aws.state_machine_arn.replace(":stateMachine:", ":execution:") + f":{job_id}"
    described: dict[str, Any] = json.loads(boto3.client("stepfunctions").describe_execution(executionArn=arn)["input"])
    return described


def hold_status_checks(pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Status checks wait until the returned event is set: the job stays in flight until then."""
    released = threading.Event()
    answer = pipeline.provider._status

    def held(request_id: str) -> Any:
        released.wait(10)
        return answer(request_id)

    monkeypatch.setattr(pipeline.provider, "_status", held)
    return released


def start_first_job(pipeline: Pipeline) -> str:
    upload(pipeline, PHOTO_KEY, make_png())
    assert run_submit(job_event(pipeline, JOB_KEY, FIRST, sequencer="00000000000000000A")) == {"batchItemFailures": []}
    (job_id,) = job_ids(pipeline)
    return job_id


def test_a_finished_job_archives_its_files_and_its_state_names_their_etags(pipeline: Pipeline) -> None:
    """Given a job whose photo and job file are untouched while it renders, then both move to
    processed/, nothing is superseded, and the execution carried the ETags Submit read."""
    photo_etag = upload(pipeline, PHOTO_KEY, make_png())
    event = job_event(pipeline, JOB_KEY, FIRST)
    job_etag = json.loads(event["Records"][0]["body"])["detail"]["object"]["etag"]
    run_submit(event)
    (job_id,) = job_ids(pipeline)

    assert pipeline.aws.wait_for_execution(job_id)["status"] == "SUCCEEDED"

    job = execution_input(pipeline, job_id)["job"]
    assert (job["job_etag"], job["media_etags"]) == (job_etag, {PHOTO_KEY: photo_etag})
    assert '"' not in job_etag
    assert pipeline.aws.keys(pipeline.aws.input_bucket) == ["processed/face.png", "processed/hello.json"]
    (notification,) = pipeline.aws.notifications()
    assert notification["body"]["input"]["archived_keys"] == {
        JOB_KEY: "processed/hello.json",
        PHOTO_KEY: "processed/face.png",
    }
    assert notification["body"]["input"]["superseded_keys"] == []


def test_a_failed_job_archives_its_files_to_failed(pipeline: Pipeline) -> None:
    """Given a render that fails, then the job's own files move to failed/ beside the report."""
    pipeline.provider.script.statuses = [(422, {"status": "FAILED", "error": "Content blocked", "metrics": {}})]
    job_id = start_first_job(pipeline)

    assert pipeline.aws.wait_for_execution(job_id)["status"] == "FAILED"

    assert pipeline.aws.keys(pipeline.aws.input_bucket) == [
        "failed/face.png",
        "failed/hello.error.json",
        "failed/hello.json",
    ]


def test_a_job_file_uploaded_again_while_the_job_renders_is_left_for_its_own_job(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a job in flight, when the same key is uploaded again with other content and the first
    job finishes before the new upload's event is handled, then the first job's Finalize leaves the
    new job file (and the photo it names) in inbox/, and the new upload becomes a job of its own
    that renders the new content and then archives it."""
    released = hold_status_checks(pipeline, monkeypatch)
    first = start_first_job(pipeline)
    second_event = job_event(pipeline, JOB_KEY, SECOND, sequencer="00000000000000000B")
    released.set()

    assert pipeline.aws.wait_for_execution(first)["status"] == "SUCCEEDED"

    assert json.loads(body(pipeline, JOB_KEY)) == SECOND
    assert pipeline.aws.keys(pipeline.aws.input_bucket) == [PHOTO_KEY, JOB_KEY, "processed/face.png"]
    (notification,) = pipeline.aws.notifications()
    # The photo stays for the new upload, which names it too: a copy goes with the first job.
    assert notification["body"]["input"]["archived_keys"] == {}
    assert notification["body"]["input"]["kept_keys"] == {PHOTO_KEY: "processed/face.png"}
    assert notification["body"]["input"]["superseded_keys"] == [JOB_KEY]
    manifest = json.loads(
        boto3.client("s3").get_object(Bucket=pipeline.aws.output_bucket, Key="videos/hello.json")["Body"].read()
    )
    assert manifest["input"]["superseded"] == [JOB_KEY]

    assert run_submit(second_event) == {"batchItemFailures": []}
    (second,) = job_ids(pipeline) - {first}
    assert pipeline.aws.wait_for_execution(second)["status"] == "SUCCEEDED"

    assert [sent["script"] for sent in pipeline.provider.submits] == [FIRST["script"], SECOND["script"]]
    assert pipeline.aws.keys(pipeline.aws.input_bucket) == ["processed/face.png", "processed/hello.json"]
    assert json.loads(body(pipeline, "processed/hello.json")) == SECOND


def test_a_job_file_uploaded_again_while_the_job_renders_survives_its_failure(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a job in flight whose render then fails, when the same key was uploaded again with
    other content meanwhile, then ReportFailure writes the report but leaves the new job file in
    inbox/ (listed as superseded), and the new upload is then processed normally."""
    pipeline.provider.script.statuses = [(422, {"status": "FAILED", "error": "Content blocked", "metrics": {}})]
    released = hold_status_checks(pipeline, monkeypatch)
    first = start_first_job(pipeline)
    second_event = job_event(pipeline, JOB_KEY, SECOND, sequencer="00000000000000000B")
    released.set()

    assert pipeline.aws.wait_for_execution(first)["status"] == "FAILED"

    assert json.loads(body(pipeline, JOB_KEY)) == SECOND
    assert pipeline.aws.keys(pipeline.aws.input_bucket) == [
        "failed/face.png",
        "failed/hello.error.json",
        PHOTO_KEY,
        JOB_KEY,
    ]
    report = json.loads(body(pipeline, "failed/hello.error.json"))
    assert (report["moved_inputs"], report["superseded_inputs"]) == ({}, [JOB_KEY])
    assert report["kept_inputs"] == {PHOTO_KEY: "failed/face.png"}
    (notification,) = pipeline.aws.notifications()
    assert notification["body"]["input"]["superseded_keys"] == [JOB_KEY]

    pipeline.provider.script.statuses = ["COMPLETED"]
    assert run_submit(second_event) == {"batchItemFailures": []}
    (second,) = job_ids(pipeline) - {first}
    assert pipeline.aws.wait_for_execution(second)["status"] == "SUCCEEDED"
    assert json.loads(body(pipeline, "processed/hello.json")) == SECOND
    assert "inbox/hello.json" not in pipeline.aws.keys(pipeline.aws.input_bucket)


def test_a_photo_uploaded_again_while_the_job_renders_stays_in_inbox(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a job in flight, when its photo is replaced by another one, then the job file moves
    to processed/ and the new photo, which this job never used, stays in inbox/."""
    released = hold_status_checks(pipeline, monkeypatch)
    first = start_first_job(pipeline)
    new_photo = make_png(48, 48)
    upload(pipeline, PHOTO_KEY, new_photo)
    released.set()

    assert pipeline.aws.wait_for_execution(first)["status"] == "SUCCEEDED"

    assert pipeline.aws.keys(pipeline.aws.input_bucket) == [PHOTO_KEY, "processed/hello.json"]
    assert body(pipeline, PHOTO_KEY) == new_photo
    (notification,) = pipeline.aws.notifications()
    assert notification["body"]["input"]["superseded_keys"] == [PHOTO_KEY]


@pytest.mark.parametrize(
    ("function", "sample", "folder"),
    [("finalize", "finalize_state.json", "processed"), ("report_failure", "report_failure_state.json", "failed")],
)
def test_state_without_etags_archives_by_key_as_before(
    pipeline: Pipeline, function: str, sample: str, folder: str
) -> None:
    """Given the state of an execution started before ETags were recorded (no job_etag, no
    media_etags), then its inputs move by key, whatever the key holds by then (the old behaviour)."""
    upload(pipeline, PHOTO_KEY, make_png())
    upload(pipeline, JOB_KEY, json.dumps(FIRST).encode())
    upload(pipeline, JOB_KEY, json.dumps(SECOND).encode())
    state = load_event(sample)
    state["job"] |= {"input_bucket": pipeline.aws.input_bucket, "job_key": JOB_KEY, "media_keys": [PHOTO_KEY]}
    state["job"]["video_key"] = "videos/hello.mp4"
    assert "job_etag" not in state["job"]
    assert "media_etags" not in state["job"]

    load_handler(function)(state, FakeLambdaContext(function_name=function))

    assert [k for k in pipeline.aws.keys(pipeline.aws.input_bucket) if not k.endswith(".error.json")] == [
        f"{folder}/face.png",
        f"{folder}/hello.json",
    ]
    assert json.loads(body(pipeline, f"{folder}/hello.json")) == SECOND
    (notification,) = pipeline.aws.notifications()
    assert notification["body"]["input"]["superseded_keys"] == []


def test_a_failure_branch_run_twice_notifies_once(pipeline: Pipeline) -> None:
    """Given ReportFailure run twice for one job (the state machine retries it after a crash that came
    after the notification; or two deliveries of one bad job file fail it together)
    When the second run writes the terminal record again
    Then the notification claim survives it: one notification in all."""
    upload(pipeline, PHOTO_KEY, make_png())
    upload(pipeline, JOB_KEY, json.dumps(FIRST).encode())
    state = load_event("report_failure_state.json")
    state["job"] |= {"input_bucket": pipeline.aws.input_bucket, "job_key": JOB_KEY, "media_keys": [PHOTO_KEY]}

    for _ in range(2):
        load_handler("report_failure")(state, FakeLambdaContext(function_name="report_failure"))

    assert len(pipeline.aws.notifications()) == 1
    record = boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).get_item(Key={"job_id": state["job"]["job_id"]})
    assert record["Item"]["status"] == "FAILED"
    assert record["Item"]["notified_status"] == "FAILED"
