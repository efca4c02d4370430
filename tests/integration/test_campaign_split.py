"""Splitting a campaign on moto (DESIGN.md section 7): rows entered and handed to Submit exactly once per
run, invalid rows FAILED at once, the ceiling, a dry run, the completion, a redelivered split and a resume."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from avatar_local.stack.dynamodb_atomic import dynamodb_item_writes_atomic
from avatar_local.stack.local_aws import bucket_location
from avatar_local.stack.table_schemas import table_schema
from avatar_pipeline.adapters.campaign_outbox import CampaignAnnouncer, SqsRowQueue
from avatar_pipeline.adapters.campaigns_table import CampaignsTable
from avatar_pipeline.adapters.sample_deadlines import SchedulerDeadlines
from avatar_pipeline.adapters.storage import S3Storage
from avatar_pipeline.campaigns.approval import decide_sample, expire_sample
from avatar_pipeline.campaigns.complete import end_row
from avatar_pipeline.campaigns.records import RowMessage, RowStatus, SampleExpiry, derive_campaign_id
from avatar_pipeline.campaigns.split import SplitResult, split_campaign
from avatar_pipeline.domain.context import InboxObject
from avatar_pipeline.domain.ports import RowEnd, SplitPorts
from tests.support import TEST_REGION
from tests.support.fakes import FakeClock, fake_settings

pytestmark = pytest.mark.integration

INPUT, OUTPUT = "avatar-input", "avatar-output"
CAMPAIGN_KEY = "inbox/shop/spring.campaign.json"
PHOTO = (Path(__file__).resolve().parents[2] / "examples" / "alice.png").read_bytes()
TEMPLATE = {"model": "heygen-avatar-iv", "photo": "{{photo}}", "video_title": "Hi {{name}}", "script": "Hello {{name}}"}
CSV = (
    "\ufeffid,name,photo\r\n"
    "c1,Ann,alice.png\r\nc2,Bob,gone.png\r\nc1,Cy,alice.png\r\n"
    'c4,"Dee, Jr.",alice.png\r\nc5,Eve,alice.png\r\nc6,Fay,alice.png\r\n'
)


@dataclass
class World:
    ports: SplitPorts
    s3: Any
    sqs: Any
    rows_queue: str
    notifications_queue: str
    table: CampaignsTable
    sequence: int = 0

    def upload(self, document: dict[str, Any], csv: str = CSV) -> InboxObject:
        self.s3.put_object(Bucket=INPUT, Key="inbox/shop/alice.png", Body=PHOTO)
        self.s3.put_object(Bucket=INPUT, Key="inbox/shop/people.csv", Body=csv.encode())
        put = self.s3.put_object(Bucket=INPUT, Key=CAMPAIGN_KEY, Body=json.dumps(document).encode())
        self.sequence += 1
        return InboxObject(
            bucket=INPUT,
            key=CAMPAIGN_KEY,
            etag=put["ETag"].strip('"'),
            version_id=None,
            sequencer=f"{self.sequence:016X}",
            event_time=datetime(2027, 1, 4, 12, tzinfo=UTC),
        )

    def row_messages(self) -> list[RowMessage]:
        found: list[RowMessage] = []
        while batch := self.sqs.receive_message(QueueUrl=self.rows_queue, MaxNumberOfMessages=10).get("Messages"):
            for message in batch:
                found.append(RowMessage.model_validate_json(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.rows_queue, ReceiptHandle=message["ReceiptHandle"])
        return found

    def notifications(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        while batch := self.sqs.receive_message(QueueUrl=self.notifications_queue, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            for message in batch:
                envelope = json.loads(message["Body"])
                attributes = {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()}
                found.append({"body": json.loads(envelope["Message"]), "attributes": attributes})
                self.sqs.delete_message(QueueUrl=self.notifications_queue, ReceiptHandle=message["ReceiptHandle"])
        return found

    def report(self) -> dict[str, Any]:
        body = self.s3.get_object(Bucket=OUTPUT, Key="campaigns/shop/spring/report.json")["Body"].read()
        report: dict[str, Any] = json.loads(body)
        return report


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws(), dynamodb_item_writes_atomic():
        s3 = boto3.client("s3", region_name=TEST_REGION)
        for bucket in (INPUT, OUTPUT):
            s3.create_bucket(Bucket=bucket, **bucket_location(TEST_REGION))
        dynamodb = boto3.resource("dynamodb", region_name=TEST_REGION)
        table = dynamodb.create_table(
            TableName="campaigns",
            **table_schema("CampaignsTable"),
        )
        sqs = boto3.client("sqs", region_name=TEST_REGION)
        rows_queue = sqs.create_queue(QueueName="submit")["QueueUrl"]
        notifications_queue = sqs.create_queue(QueueName="notifications")["QueueUrl"]
        sns = boto3.client("sns", region_name=TEST_REGION)
        topic = sns.create_topic(Name="notifications")["TopicArn"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=notifications_queue, AttributeNames=["QueueArn"])
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn["Attributes"]["QueueArn"])
        campaigns = CampaignsTable(table)
        ports = SplitPorts(
            settings=fake_settings(INPUT_BUCKET=INPUT, OUTPUT_BUCKET=OUTPUT, NOTIFICATION_TOPIC_ARN=topic),
            clock=FakeClock(),
            storage=S3Storage(s3),
            campaigns=campaigns,
            announcer=CampaignAnnouncer(sns, topic, boto3.client("events", region_name=TEST_REGION), "default"),
            rows=SqsRowQueue(sqs, rows_queue),
        )
        yield World(ports, s3, sqs, rows_queue, notifications_queue, campaigns)


def campaign(**changes: Any) -> dict[str, Any]:
    return {"rows": "people.csv", "row_id": "id", "template": TEMPLATE, **changes}


def test_valid_rows_are_handed_to_submit_and_bad_rows_fail_at_once(world: World) -> None:
    """Given a six-row CSV (BOM, CRLF, a quoted comma) with a missing photo and a repeated row id
    When the campaign file's event is split
    Then four row jobs go to the submit queue, the two bad rows are FAILED with their codes, and the
    campaign waits for its rows (no report, no notification yet)."""
    assert split_campaign(world.upload(campaign()), world.ports) is SplitResult.SPLIT
    messages = world.row_messages()
    assert [m.row_id for m in messages] == ["c1", "c4", "c5", "c6"]
    assert messages[1].job["video_title"] == "Hi Dee, Jr."
    assert messages[0].media_keys == {"image_url": "inbox/shop/alice.png"}
    assert messages[0].video_key == "campaigns/shop/spring/c1.mp4"
    record = world.table.get(derive_campaign_id(INPUT, CAMPAIGN_KEY))
    assert record is not None
    assert (record.rows_total, record.counts.failed, record.counts.terminal) == (6, 2, 2)
    assert record.counts.estimated_cost_usd == Decimal("8.80")
    failed = {row.row_id: row.error_code for row in world.table.rows(record.campaign_id) if row.status == "FAILED"}
    assert failed == {"c2": "MISSING_MEDIA", "c1#3": "INVALID_JOB"}
    assert world.notifications() == []


def test_a_redelivered_split_creates_no_second_job_and_counts_nothing_twice(world: World) -> None:
    obj = world.upload(campaign())
    split_campaign(obj, world.ports)
    first = {m.job_id for m in world.row_messages()}
    for _ in range(2):
        split_campaign(obj, world.ports)
    again = world.row_messages()
    # Rows still PENDING are handed out again (a split that died before sending them must not lose them);
    # the same job ids, which Submit's claim makes one job each.
    assert {m.job_id for m in again} <= first
    record = world.table.get(derive_campaign_id(INPUT, CAMPAIGN_KEY))
    assert record is not None
    assert (record.rows_total, record.counts.failed, record.counts.estimated_cost_usd) == (6, 2, Decimal("8.80"))


def test_the_last_row_ending_completes_the_campaign_once(world: World) -> None:
    """Given a split campaign
    When its four row jobs end (one of them twice, as a retried close would)
    Then report.json has every row and the totals, one notification with kind=campaign goes out, and
    the campaign file, rows file and shared photo leave inbox/."""
    obj = world.upload(campaign())
    split_campaign(obj, world.ports)
    messages = world.row_messages()
    campaign_id = messages[0].campaign_id
    for message in messages:
        status = RowStatus.FAILED if message.row_id == "c6" else RowStatus.SUCCEEDED
        detail = RowEnd("PROVIDER_FAILED", "blocked") if status is RowStatus.FAILED else RowEnd(cost_usd=Decimal("2.2"))
        end_row(campaign_id, message.run_id, message.row_id, status, detail, world.ports)
    end_row(campaign_id, messages[0].run_id, "c1", RowStatus.SUCCEEDED, RowEnd(), world.ports)
    report = world.report()
    assert report["status"] == "COMPLETED"
    assert report["totals"] == {
        "rows": 6,
        "succeeded": 3,
        "failed": 3,
        "skipped": 0,
        "planned": 0,
        "estimated_cost_usd": 8.8,
        "cost_usd": 6.6,
    }
    assert [row["row_id"] for row in report["rows"]] == ["c1", "c2", "c1", "c4", "c5", "c6"]
    (notification,) = world.notifications()
    assert notification["attributes"]["kind"] == "campaign"
    assert notification["body"]["report_key"] == "campaigns/shop/spring/report.json"
    left = {o["Key"] for o in world.s3.list_objects_v2(Bucket=INPUT, Prefix="inbox/").get("Contents", [])}
    assert left == set()


def test_a_dry_run_submits_nothing_and_completes_planned(world: World) -> None:
    split_campaign(world.upload(campaign(dry_run=True)), world.ports)
    assert world.row_messages() == []
    report = world.report()
    assert (report["status"], report["dry_run"], report["totals"]["planned"]) == ("PLANNED", True, 4)
    assert report["totals"]["estimated_cost_usd"] > 0
    (notification,) = world.notifications()
    assert notification["body"]["status"] == "PLANNED"


def test_max_spend_lets_only_the_rows_that_fit_through(world: World) -> None:
    split_campaign(world.upload(campaign(max_spend_usd=5)), world.ports)
    assert [m.row_id for m in world.row_messages()] == ["c1", "c4"]
    record = world.table.get(derive_campaign_id(INPUT, CAMPAIGN_KEY))
    assert record is not None
    skipped = [r for r in world.table.rows(record.campaign_id) if r.status == "SKIPPED"]
    assert {(r.row_id, r.error_code) for r in skipped} == {("c5", "SPEND_LIMIT"), ("c6", "SPEND_LIMIT")}


def test_an_invalid_campaign_fails_as_a_whole_with_nothing_submitted(world: World) -> None:
    obj = world.upload({"rows": "people.csv", "template": {**TEMPLATE, "script": "Hi {{nickname}}"}})
    assert split_campaign(obj, world.ports) is SplitResult.REJECTED
    assert world.row_messages() == []
    (notification,) = world.notifications()
    assert (notification["body"]["status"], notification["body"]["error_code"]) == ("FAILED", "INVALID_JOB")
    assert "nickname" in notification["body"]["error_message"]
    error_report = world.s3.get_object(Bucket=INPUT, Key="failed/shop/spring.campaign.error.json")
    assert "nickname" in json.loads(error_report["Body"].read())["error_message"]


def test_a_resume_hands_out_only_the_rows_that_did_not_succeed(world: World) -> None:
    """Given a campaign whose rows c1, c4 and c5 succeeded and c6 failed
    When the same campaign file is uploaded again (with the missing photo now there)
    Then only c2 and c6 are handed to Submit, under the job ids they had; c1, c4 and c5 are reported
    SUCCEEDED from their records, and the repeated id still fails."""
    split_campaign(world.upload(campaign()), world.ports)
    first = world.row_messages()
    for message in first:
        status = RowStatus.FAILED if message.row_id == "c6" else RowStatus.SUCCEEDED
        end_row(message.campaign_id, message.run_id, message.row_id, status, RowEnd(cost_usd=Decimal(2)), world.ports)
    world.notifications()
    world.s3.put_object(Bucket=INPUT, Key="inbox/shop/gone.png", Body=PHOTO)
    split_campaign(world.upload(campaign()), world.ports)
    again = world.row_messages()
    assert [m.row_id for m in again] == ["c2", "c6"]
    assert next(m.job_id for m in again if m.row_id == "c6") == next(m.job_id for m in first if m.row_id == "c6")
    record = world.table.get(first[0].campaign_id)
    assert record is not None
    assert (record.counts.succeeded, record.counts.failed, record.counts.cost_usd) == (3, 1, Decimal(6))


def decide(world: World, approve: bool) -> bool:
    key = "inbox/shop/spring.approve" if approve else "inbox/shop/spring.reject"
    put = world.s3.put_object(Bucket=INPUT, Key=key, Body=b"")
    obj = InboxObject(
        bucket=INPUT,
        key=key,
        etag=put["ETag"].strip('"'),
        version_id=None,
        sequencer="00A",
        event_time=datetime(2027, 1, 4, 13, tzinfo=UTC),
    )
    return decide_sample(obj, world.ports)


def end_all(world: World, messages: list[RowMessage]) -> None:
    for message in messages:
        detail = RowEnd(cost_usd=Decimal("2.2"))
        end_row(message.campaign_id, message.run_id, message.row_id, RowStatus.SUCCEEDED, detail, world.ports)


def test_a_sample_renders_first_then_waits_for_approval_then_the_rest_render(world: World) -> None:
    """Given approve_after 2, then only the first two valid rows are handed out and the other two are
    held (PLANNED in the report); when the sample ends, one "sample ready" notification goes out and
    nothing more runs; when a person drops <name>.approve, the held rows are handed out, and the
    campaign completes once they end."""
    split_campaign(world.upload(campaign(approve_after=2)), world.ports)
    sample = world.row_messages()
    assert [m.row_id for m in sample] == ["c1", "c4"]
    end_all(world, sample)

    (ready,) = world.notifications()
    assert (ready["body"]["status"], ready["attributes"]["kind"]) == ("SAMPLE_READY", "campaign")
    assert ready["body"]["approve_key"] == "inbox/shop/spring.approve"
    report = world.report()
    assert (report["status"], report["totals"]["planned"], report["totals"]["succeeded"]) == ("RUNNING", 2, 2)
    assert world.row_messages() == []

    assert decide(world, approve=True) is True
    assert decide(world, approve=True) is True  # delivered twice: the same rows, the same job ids
    rest = world.row_messages()
    assert sorted({m.row_id for m in rest}) == ["c5", "c6"]
    end_all(world, list({m.row_id: m for m in rest}.values()))
    (completed,) = world.notifications()
    assert completed["body"]["status"] == "COMPLETED"
    assert world.report()["totals"]["succeeded"] == 4


def test_a_rejected_sample_skips_the_held_rows_and_completes(world: World) -> None:
    split_campaign(world.upload(campaign(approve_after=2)), world.ports)
    end_all(world, world.row_messages())
    world.notifications()

    assert decide(world, approve=False) is True
    assert decide(world, approve=True) is False  # decided already, the other way

    assert world.row_messages() == []
    report = world.report()
    assert report["status"] == "COMPLETED"
    skipped = {r["row_id"]: r["error_code"] for r in report["rows"] if r["status"] == "SKIPPED"}
    assert skipped == {"c5": "NOT_APPROVED", "c6": "NOT_APPROVED"}
    (completed,) = world.notifications()
    assert completed["body"]["status"] == "COMPLETED"


def test_a_sample_nobody_decides_expires_at_its_deadline_and_the_held_rows_are_skipped(world: World) -> None:
    """Given a sample whose split set its deadline (a one-time schedule that puts a SampleExpiry on the
    split queue), when the expiry arrives with the gate still open, then the held rows end SKIPPED
    (NOT_APPROVED) and the campaign completes; an expiry after a decision changes nothing."""
    scheduler = boto3.client("scheduler", region_name=TEST_REGION)
    queue_arn = f"arn:aws:sqs:{TEST_REGION}:123456789012:split"
    role_arn = "arn:aws:iam::123456789012:role/sample-expiry"
    ports = replace(world.ports, deadlines=SchedulerDeadlines(scheduler, queue_arn, role_arn))
    obj = world.upload(campaign(approve_after=2))
    split_campaign(obj, ports)
    split_campaign(obj, ports)  # redelivered: the same schedule, not a second one
    (listed,) = scheduler.list_schedules()["Schedules"]
    schedule = scheduler.get_schedule(Name=listed["Name"])
    assert schedule["ScheduleExpression"] == "at(2026-12-08T12:00:00)"  # 7 days after the split (its clock)
    expiry = SampleExpiry.model_validate_json(schedule["Target"]["Input"])
    assert schedule["Target"]["Arn"] == queue_arn
    end_all(world, world.row_messages())
    world.notifications()

    assert expire_sample(expiry, ports) is True
    assert decide(world, approve=True) is False  # too late

    report = world.report()
    assert report["status"] == "COMPLETED"
    assert {r["row_id"]: r["error_code"] for r in report["rows"] if r["status"] == "SKIPPED"} == {
        "c5": "NOT_APPROVED",
        "c6": "NOT_APPROVED",
    }
    assert world.row_messages() == []
