"""The Split function on the SQS batches Lambda delivers (DESIGN.md section 7): a campaign file's event
becomes one row message per valid row on the submit queue; a split near its time limit goes on from a
cursor on its own queue, handing every row out once; Submit ignores the campaign file's own event."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import boto3
import pytest

from avatar_local.stack.lambda_router import FakeLambdaContext, load_handler
from avatar_pipeline.campaigns.records import RowMessage, SplitCursor
from tests.integration.conftest import Pipeline
from tests.support.events import Delivery, object_created_sqs_event
from tests.support.media import make_png

pytestmark = pytest.mark.integration

CAMPAIGN_KEY = "inbox/shop/spring.campaign.json"
CAMPAIGN = {
    "rows": "people.csv",
    "row_id": "id",
    "template": {
        "model": "heygen-avatar-iv",
        "photo": "face.png",
        "video_title": "Hi {{name}}",
        "script": "Hello {{name}}",
    },
}
ROWS = "id,name\r\n" + "".join(f"c{n},Name {n}\r\n" for n in range(1, 13))


@dataclass
class ShrinkingContext(FakeLambdaContext):
    """An invocation whose time runs out after `rows_of_time` looks at the clock: the split must stop."""

    rows_of_time: int = 1_000_000

    def get_remaining_time_in_millis(self) -> int:
        self.rows_of_time -= 1
        return 600_000 if self.rows_of_time > 0 else 10_000


def campaign_event(pipeline: Pipeline, document: dict[str, Any] = CAMPAIGN, rows: str = ROWS) -> dict[str, Any]:
    s3 = boto3.client("s3")
    bucket = pipeline.aws.input_bucket
    s3.put_object(Bucket=bucket, Key="inbox/shop/face.png", Body=make_png())
    s3.put_object(Bucket=bucket, Key="inbox/shop/people.csv", Body=rows.encode())
    body = json.dumps(document).encode()
    etag = s3.put_object(Bucket=bucket, Key=CAMPAIGN_KEY, Body=body)["ETag"].strip('"')
    return object_created_sqs_event(
        bucket, CAMPAIGN_KEY, etag, len(body), delivery=Delivery(pipeline.aws.split_queue_arn)
    )


def run_split(event: dict[str, Any], context: FakeLambdaContext | None = None) -> dict[str, Any]:
    result: dict[str, Any] = load_handler("split")(event, context or FakeLambdaContext(function_name="SplitFunction"))
    return result


def drain(queue_url: str) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    found: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in batch:
            found.append(dict(message))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return found


def as_record(message: dict[str, Any], queue_arn: str) -> dict[str, Any]:
    return {
        "Records": [
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1700000000000",
                    "SenderId": "split",
                    "ApproximateFirstReceiveTimestamp": "1700000000000",
                },
                "messageAttributes": {},
                "md5OfBody": message["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": queue_arn.split(":")[3],
            }
        ]
    }


def test_a_campaign_event_hands_each_row_to_the_submit_queue(pipeline: Pipeline) -> None:
    assert run_split(campaign_event(pipeline)) == {"batchItemFailures": []}

    rows = [RowMessage.model_validate_json(m["Body"]) for m in drain(pipeline.aws.submit_queue_url)]
    assert sorted(r.row_id for r in rows) == sorted(f"c{n}" for n in range(1, 13))
    assert len({r.job_id for r in rows}) == 12
    assert drain(pipeline.aws.split_queue_url) == []
    table = boto3.resource("dynamodb").Table(pipeline.aws.campaigns_table)
    (record,) = [i for i in table.scan()["Items"] if i["sk"] == "campaign"]
    assert (int(str(record["rows_total"])), record["status"]) == (12, "RUNNING")


def test_a_split_near_its_time_limit_goes_on_from_a_cursor_and_hands_each_row_out_once(pipeline: Pipeline) -> None:
    """Given an invocation that runs short of time after a few rows, then the split puts a cursor on its
    own queue; each following invocation goes on from there (one redelivered too), until every row is
    handed out exactly once and the campaign knows its row count."""
    event = campaign_event(pipeline)
    assert run_split(event, ShrinkingContext(function_name="SplitFunction", rows_of_time=5)) == {
        "batchItemFailures": []
    }
    cursors: list[int] = []
    while messages := drain(pipeline.aws.split_queue_url):
        (message,) = messages
        cursor = SplitCursor.model_validate_json(message["Body"])
        cursors.append(cursor.after_row)
        record = as_record(message, pipeline.aws.split_queue_arn)
        if len(cursors) == 1:
            run_split(record, ShrinkingContext(function_name="SplitFunction", rows_of_time=5))  # a duplicate
            drain(pipeline.aws.split_queue_url)
        run_split(record, ShrinkingContext(function_name="SplitFunction", rows_of_time=5))

    assert len(cursors) >= 2
    assert cursors == sorted(cursors)
    rows = [RowMessage.model_validate_json(m["Body"]) for m in drain(pipeline.aws.submit_queue_url)]
    assert sorted({r.row_id for r in rows}) == sorted(f"c{n}" for n in range(1, 13))
    table = boto3.resource("dynamodb").Table(pipeline.aws.campaigns_table)
    (record,) = [i for i in table.scan()["Items"] if i["sk"] == "campaign"]
    assert int(str(record["rows_total"])) == 12
    # The rows handed out twice (by the duplicated cursor) are the same jobs: Submit's claim makes them one.
    assert len({r.job_id for r in rows}) == 12


def test_a_redelivered_event_after_the_split_finished_hands_out_nothing(pipeline: Pipeline) -> None:
    event = campaign_event(pipeline)
    run_split(event)
    drain(pipeline.aws.submit_queue_url)
    assert run_split(event) == {"batchItemFailures": []}
    assert drain(pipeline.aws.submit_queue_url) == []


def test_submit_ignores_the_campaign_files_own_event(pipeline: Pipeline) -> None:
    """The job rule matches inbox/**.json, campaign files included (EventBridge cannot exclude a suffix
    from a wildcard on the same field): Submit takes no job from it."""
    event = campaign_event(pipeline)
    for record in event["Records"]:
        record["eventSourceARN"] = pipeline.aws.submit_queue_arn
    handler = load_handler("submit")
    assert handler(event, FakeLambdaContext(function_name="SubmitFunction")) == {"batchItemFailures": []}
    assert boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).scan()["Items"] == []
    assert pipeline.provider.calls["submit"] == 0


def run_submit(message: dict[str, Any], pipeline: Pipeline) -> dict[str, Any]:
    handler = load_handler("submit")
    event = as_record(message, pipeline.aws.submit_queue_arn)
    result: dict[str, Any] = handler(event, FakeLambdaContext(function_name="SubmitFunction"))
    return result


def wait_for_campaign(pipeline: Pipeline, timeout: float = 60.0) -> dict[str, Any]:
    table = boto3.resource("dynamodb").Table(pipeline.aws.campaigns_table)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        (record,) = [i for i in table.scan()["Items"] if i["sk"] == "campaign"]
        if record.get("completed_run"):
            return dict(record)
        time.sleep(0.05)
    raise TimeoutError("the campaign did not complete")


def test_rows_render_through_submit_and_the_last_ending_completes_the_campaign_once(pipeline: Pipeline) -> None:
    """Given a campaign of three rows (one naming a missing photo), split and each row delivered twice
    to Submit, when the renders finish through the real state machine, then each valid row is submitted
    once, the campaign completes once: report.json/.csv/.html with the totals, one SNS message with
    kind=campaign and no per-row one, one "Avatar Campaign Completed" event, and its inputs leave inbox/."""
    rows = "id,name,photo\r\nc1,Ann,face.png\r\nc2,Bob,gone.png\r\nc3,Cy,face.png\r\n"
    document = {**CAMPAIGN, "template": {**CAMPAIGN["template"], "photo": "{{photo}}"}}  # type: ignore[dict-item]
    run_split(campaign_event(pipeline, document, rows))
    messages = drain(pipeline.aws.submit_queue_url)
    for message in messages + messages:
        assert run_submit(message, pipeline) == {"batchItemFailures": []}

    record = wait_for_campaign(pipeline)

    assert pipeline.provider.calls["submit"] == 2
    assert (int(str(record["succeeded"])), int(str(record["failed"]))) == (2, 1)
    s3 = boto3.client("s3")
    report = json.loads(
        s3.get_object(Bucket=pipeline.aws.output_bucket, Key="campaigns/shop/spring/report.json")["Body"].read()
    )
    assert report["status"] == "COMPLETED"
    assert (report["totals"]["rows"], report["totals"]["succeeded"], report["totals"]["failed"]) == (3, 2, 1)
    assert {r["row_id"]: r["status"] for r in report["rows"]} == {"c1": "SUCCEEDED", "c2": "FAILED", "c3": "SUCCEEDED"}
    outputs = pipeline.aws.keys(pipeline.aws.output_bucket)
    assert {"campaigns/shop/spring/report.csv", "campaigns/shop/spring/report.html"} <= set(outputs)
    assert {"campaigns/shop/spring/c1.mp4", "campaigns/shop/spring/c3.mp4"} <= set(outputs)
    notifications = pipeline.aws.notifications()
    assert [n["attributes"].get("kind") for n in notifications] == ["campaign"]
    events = [e for e in pipeline.aws.completion_events() if e["detail-type"] == "Avatar Campaign Completed"]
    assert len(events) == 1
    assert [k for k in pipeline.aws.keys(pipeline.aws.input_bucket) if k.startswith("inbox/")] == []


def test_an_approve_file_dropped_beside_the_campaign_hands_out_the_held_rows(pipeline: Pipeline) -> None:
    run_split(campaign_event(pipeline, {**CAMPAIGN, "approve_after": 2}))
    assert len(drain(pipeline.aws.submit_queue_url)) == 2

    bucket = pipeline.aws.input_bucket
    etag = boto3.client("s3").put_object(Bucket=bucket, Key="inbox/shop/spring.approve", Body=b"")["ETag"]
    delivery = Delivery(pipeline.aws.split_queue_arn)
    event = object_created_sqs_event(bucket, "inbox/shop/spring.approve", etag.strip('"'), 0, delivery=delivery)
    assert run_split(event) == {"batchItemFailures": []}

    rows = [RowMessage.model_validate_json(m["Body"]) for m in drain(pipeline.aws.submit_queue_url)]
    assert sorted(r.row_id for r in rows) == sorted(f"c{n}" for n in range(3, 13))
    assert "processed/shop/spring.approve" in pipeline.aws.keys(bucket)
