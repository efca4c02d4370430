"""`avatar-pipeline campaign status NAME|KEY [--watch]` against a campaigns table (moto)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from avatar_local.campaign_status import show_status
from avatar_local.cli import main
from avatar_local.stack.dynamodb_atomic import dynamodb_item_writes_atomic
from avatar_pipeline.adapters.campaigns_table import CampaignsTable
from avatar_pipeline.campaigns.records import (
    CampaignRecord,
    CampaignStatus,
    RowRecord,
    RowStatus,
    derive_campaign_id,
)
from avatar_pipeline.domain.ports import RowEnd
from tests.support import TEST_REGION
from tests.support.fakes import T0

pytestmark = pytest.mark.unit

BUCKET, KEY = "input", "inbox/shop/spring.campaign.json"
CAMPAIGN_ID = derive_campaign_id(BUCKET, KEY)


@pytest.fixture
def table(monkeypatch: pytest.MonkeyPatch) -> Iterator[CampaignsTable]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
    with mock_aws(), dynamodb_item_writes_atomic():
        created = boto3.resource("dynamodb").create_table(
            TableName="campaigns",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        campaigns = CampaignsTable(created)
        campaigns.start_run(
            CampaignRecord(
                campaign_id=CAMPAIGN_ID, bucket=BUCKET, campaign_key=KEY, run_id="run-1", campaign_etag="e",
                status=CampaignStatus.RUNNING, started_at=T0, updated_at=T0,
            )
        )  # fmt: skip
        for number in range(1, 5):
            row = RowRecord(row_id=f"c{number}", number=number, run_id="run-1", status=RowStatus.PENDING)
            campaigns.enter_row(CAMPAIGN_ID, row)
        campaigns.finish_split(CAMPAIGN_ID, "run-1", 4, T0)
        yield campaigns


def end(campaigns: CampaignsTable, *row_ids: str) -> None:
    for row_id in row_ids:
        campaigns.end_row(CAMPAIGN_ID, "run-1", row_id, RowStatus.SUCCEEDED, RowEnd(cost_usd=Decimal("2.2")))


def test_status_shows_the_rows_ended_as_a_bar_with_the_totals(table: CampaignsTable) -> None:
    end(table, "c1", "c2")
    console = io.StringIO()

    code = main(
        ["campaign", "status", "shop/spring", "--input-bucket", BUCKET, "--campaigns-table", "campaigns"], console
    )

    assert code == 0
    line = console.getvalue()
    assert f"{KEY}: RUNNING [" in line
    assert "#" * 15 + "." * 15 in line
    assert "2/4 rows ended: 2 succeeded, 0 failed" in line
    assert "$4.40 spent" in line


def test_watch_follows_the_campaign_until_it_ends(table: CampaignsTable) -> None:
    console = io.StringIO()

    def a_while_later(_: float) -> None:
        end(table, "c1", "c2", "c3", "c4")
        table.claim_completion(CAMPAIGN_ID, "run-1", T0, T0 + timedelta(minutes=2))
        table.confirm_completion(CAMPAIGN_ID, "run-1", CampaignStatus.COMPLETED, T0)

    assert show_status(BUCKET, "campaigns", KEY, console, watch=True, sleep=a_while_later) == 0
    lines = console.getvalue().splitlines()
    assert "RUNNING" in lines[0]
    assert "COMPLETED" in lines[1]
    assert "report: campaigns/shop/spring/report.html" in console.getvalue()


def test_an_unknown_campaign_says_so(table: CampaignsTable) -> None:
    console = io.StringIO()
    assert show_status(BUCKET, "campaigns", "shop/autumn", console) == 1
    assert "no campaign inbox/shop/autumn.campaign.json" in console.getvalue()
