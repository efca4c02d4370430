"""`avatar-pipeline campaign status` against CampaignsTable on moto: the records are written by the real
split and row endings (through the real adapter), the CLI reads them back by the campaign's name."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from avatar_local.cli import main
from avatar_local.stack.dynamodb_atomic import dynamodb_item_writes_atomic
from avatar_local.stack.local_aws import bucket_location
from avatar_local.stack.table_schemas import table_schema
from avatar_pipeline.adapters.campaign_outbox import CampaignAnnouncer, SqsRowQueue
from avatar_pipeline.adapters.campaigns_table import CampaignsTable
from avatar_pipeline.adapters.storage import S3Storage
from avatar_pipeline.campaigns.complete import end_row
from avatar_pipeline.campaigns.records import RowMessage, RowRecord, RowStatus
from avatar_pipeline.campaigns.split import split_campaign
from avatar_pipeline.domain.context import InboxObject
from avatar_pipeline.domain.ports import RowEnd, SplitPorts
from tests.support import TEST_REGION
from tests.support.fakes import FakeClock, fake_settings

pytestmark = pytest.mark.integration

INPUT, OUTPUT, TABLE = "avatar-input", "avatar-output", "avatar-campaigns"
CAMPAIGN_KEY = "inbox/shop/spring.campaign.json"
PHOTO = (Path(__file__).resolve().parents[2] / "examples" / "alice.png").read_bytes()
TEMPLATE = {"model": "heygen-avatar-iv", "photo": "{{photo}}", "video_title": "Hi {{name}}", "script": "Hello {{name}}"}
CSV = "id,name,photo\r\nc1,Ann,alice.png\r\nc2,Bob,gone.png\r\nc3,Cy,alice.png\r\nc4,Dee,alice.png\r\n"
NAMES = ["--input-bucket", INPUT, "--output-bucket", OUTPUT, "--campaigns-table", TABLE]


@dataclass
class World:
    ports: SplitPorts
    s3: Any
    sqs: Any
    rows_queue: str

    def split(self, document: dict[str, Any]) -> list[RowMessage]:
        """Upload the campaign (rows and photo first) and split it: the row messages handed to Submit."""
        self.s3.put_object(Bucket=INPUT, Key="inbox/shop/alice.png", Body=PHOTO)
        self.s3.put_object(Bucket=INPUT, Key="inbox/shop/people.csv", Body=CSV.encode())
        put = self.s3.put_object(Bucket=INPUT, Key=CAMPAIGN_KEY, Body=json.dumps(document).encode())
        obj = InboxObject(
            bucket=INPUT,
            key=CAMPAIGN_KEY,
            etag=put["ETag"].strip('"'),
            version_id=None,
            sequencer="0000000000000001",
            event_time=datetime(2027, 1, 4, 12, tzinfo=UTC),
        )
        split_campaign(obj, self.ports)
        found: list[RowMessage] = []
        while batch := self.sqs.receive_message(QueueUrl=self.rows_queue, MaxNumberOfMessages=10).get("Messages"):
            found += [RowMessage.model_validate_json(message["Body"]) for message in batch]
            for message in batch:
                self.sqs.delete_message(QueueUrl=self.rows_queue, ReceiptHandle=message["ReceiptHandle"])
        return found

    def end(self, message: RowMessage, status: RowStatus = RowStatus.SUCCEEDED) -> None:
        detail = RowEnd(cost_usd=Decimal("1.00")) if status is RowStatus.SUCCEEDED else RowEnd("PROVIDER_FAILED", "no")
        end_row(message.campaign_id, message.run_id, message.row_id, status, detail, self.ports)


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws(), dynamodb_item_writes_atomic():
        s3 = boto3.client("s3", region_name=TEST_REGION)
        for bucket in (INPUT, OUTPUT):
            s3.create_bucket(Bucket=bucket, **bucket_location(TEST_REGION))
        table = boto3.resource("dynamodb", region_name=TEST_REGION).create_table(
            TableName=TABLE,
            **table_schema("CampaignsTable"),
        )
        sqs = boto3.client("sqs", region_name=TEST_REGION)
        rows_queue = sqs.create_queue(QueueName="submit")["QueueUrl"]
        topic = boto3.client("sns", region_name=TEST_REGION).create_topic(Name="notifications")["TopicArn"]
        ports = SplitPorts(
            settings=fake_settings(INPUT_BUCKET=INPUT, OUTPUT_BUCKET=OUTPUT, NOTIFICATION_TOPIC_ARN=topic),
            clock=FakeClock(),
            storage=S3Storage(s3),
            campaigns=CampaignsTable(table),
            announcer=CampaignAnnouncer(
                boto3.client("sns", region_name=TEST_REGION),
                topic,
                boto3.client("events", region_name=TEST_REGION),
                "default",
            ),
            rows=SqsRowQueue(sqs, rows_queue),
        )
        yield World(ports, s3, sqs, rows_queue)


def status(*argv: str, sleep: Any = None) -> tuple[int, str]:
    console = io.StringIO()
    code = main(["campaign", "status", *argv, *NAMES], console=console, sleep=sleep or (lambda _: None))
    return code, console.getvalue()


def test_status_of_a_running_campaign_by_its_name_and_by_its_key(world: World) -> None:
    """Given a split campaign of four rows, one of which failed at once (a missing photo), one ended
    When `campaign status shop/spring` runs (and again with the campaign's key)
    Then it exits 0 with the run's totals, the bar at 2 of 4, and the failed row with its code."""
    messages = world.split({"rows": "people.csv", "row_id": "id", "template": TEMPLATE})
    world.end(messages[0])

    code, out = status("shop/spring")

    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith(f"{CAMPAIGN_KEY}: RUNNING")
    assert " 50%  2 of 4 rows ended" in lines[1]
    assert lines[2] == "rows 4   succeeded 1   failed 1   skipped 0   pending 2"
    assert lines[3] == "cost so far $1.00 (estimated $6.60 for the rows submitted)"
    assert any(line.split()[:4] == ["2", "c2", "FAILED", "MISSING_MEDIA"] for line in lines)
    assert "report" not in out.replace("report.json", "")
    assert status(CAMPAIGN_KEY) == (code, out)
    assert status(f"s3://{INPUT}/{CAMPAIGN_KEY}") == (code, out)


def test_watch_follows_the_campaign_until_it_completes_then_lists_the_report(world: World) -> None:
    """Given a running campaign whose rows end one per refresh (the injected sleep ends one)
    When `campaign status --watch --interval 3` runs
    Then it reads until the last row's ending has completed the campaign, never sleeping for real,
    and ends with exit 0, COMPLETED at 100% and the report's files in the output bucket."""
    messages = world.split({"rows": "people.csv", "row_id": "id", "template": TEMPLATE})
    waiting = list(messages)
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        world.end(waiting.pop(0), RowStatus.FAILED if len(waiting) == 1 else RowStatus.SUCCEEDED)

    code, out = status("shop/spring", "--watch", "--interval", "3", sleep=sleep)

    assert code == 0, out
    assert slept == [3.0] * len(messages)
    blocks = out.split("\n\n")
    assert len(blocks) == len(messages) + 1
    last = blocks[-1].splitlines()
    assert last[0].startswith(f"{CAMPAIGN_KEY}: COMPLETED")
    assert "100%  4 of 4 rows ended" in last[1]
    assert last[2] == "rows 4   succeeded 2   failed 2   skipped 0   pending 0"
    folder = f"  s3://{OUTPUT}/campaigns/shop/spring"
    assert last[-4:] == ["report:", f"{folder}/report.json", f"{folder}/report.csv", f"{folder}/report.html"]


def test_a_dry_run_is_shown_planned_once_complete(world: World) -> None:
    world.split({"rows": "people.csv", "row_id": "id", "template": TEMPLATE, "dry_run": True})

    code, out = status("processed/shop/spring.campaign.json", "--watch")

    assert code == 0
    assert out.splitlines()[0].startswith(f"{CAMPAIGN_KEY}: PLANNED dry run")
    assert "dry run: nothing is submitted; estimated cost $6.60" in out


def test_a_campaign_refused_as_a_whole_shows_its_error_report_and_watch_ends(world: World) -> None:
    world.split({"rows": "people.csv", "template": {**TEMPLATE, "script": "Hi {{nickname}}"}})

    code, out = status("shop/spring", "--watch")

    assert code == 0
    assert out.splitlines()[0].startswith(f"{CAMPAIGN_KEY}: FAILED")
    assert "INVALID_JOB" in out
    assert "nickname" in out
    assert "failed/shop/spring.campaign.error.json" in out


def test_an_unknown_campaign_is_exit_1_in_one_line(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = status("shop/autumn", "--watch")

    assert (code, out) == (1, "")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert f"no campaign s3://{INPUT}/inbox/shop/autumn.campaign.json in {TABLE}" in err[0]


def test_bad_usage_is_exit_2_in_one_line(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["campaign", "status", "shop/../x", *NAMES], ["campaign", "status", "shop/spring"]):
        with pytest.raises(SystemExit) as exited:
            main(argv, console=io.StringIO())
        assert exited.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert "Traceback" not in err
    code = main(["campaign", "status", "shop/spring", "--input-bucket", INPUT, "--campaigns-table", "nope"])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "ResourceNotFoundException" in err


def test_a_ready_sample_says_how_to_decide_and_watch_gives_up_at_its_timeout(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given approve_after 1: the first valid row renders as the sample, the other two are held
    When the sample's row has ended and `campaign status --watch --timeout 0.05` runs
    Then it shows the held rows apart from the pending ones and both ways to decide, and (nobody
    deciding) gives up at the timeout with exit 1 and one line saying so."""
    (sample,) = world.split({"rows": "people.csv", "row_id": "id", "template": TEMPLATE, "approve_after": 1})
    world.end(sample)

    code, out = status("shop/spring", "--watch", "--timeout", "0.05")

    assert code == 1
    lines = out.splitlines()
    assert lines[2] == "rows 4   succeeded 1   failed 1   skipped 0   pending 0   held 2"
    assert "sample ready, 2 rows held: look at the report, then decide" in lines
    assert "  approve: avatar-pipeline campaign approve shop/spring (or drop inbox/shop/spring.approve)" in lines
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["avatar-pipeline: the campaign had not ended after --timeout 0.05 s"]


def test_a_campaign_going_well_costs_one_read_a_look(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a split campaign whose rows are all fine so far (the photo is there for every row)
    When its status is shown
    Then the rows are not read (the record's counters say it all); once a row failed, they are."""
    world.s3.put_object(Bucket=INPUT, Key="inbox/shop/gone.png", Body=PHOTO)
    messages = world.split({"rows": "people.csv", "row_id": "id", "template": TEMPLATE})
    queried: list[str] = []
    rows = CampaignsTable.rows

    def counted(table: CampaignsTable, campaign_id: str) -> Iterator[RowRecord]:
        queried.append(campaign_id)
        return rows(table, campaign_id)

    monkeypatch.setattr(CampaignsTable, "rows", counted)

    assert status("shop/spring")[0] == 0
    assert queried == []
    world.end(messages[0], RowStatus.FAILED)
    code, out = status("shop/spring")
    assert (code, len(queried)) == (0, 1)
    assert "PROVIDER_FAILED" in out
