"""A campaign row's job ending (domain/closing.py -> campaigns/complete.py) on in-memory fakes: counted into
its campaign exactly once, its inputs left to the campaign, its own notification only with notify_rows,
the report refreshed at a bounded rate while the campaign runs and written once more at its completion."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from avatar_pipeline.campaigns.complete import REPORT_REFRESH_SECONDS, end_row
from avatar_pipeline.campaigns.records import CampaignRecord, CampaignStatus, RowRecord, RowStatus
from avatar_pipeline.domain.closing import Failed, close_job
from avatar_pipeline.domain.context import JobRef
from avatar_pipeline.domain.ports import RowEnd
from avatar_pipeline.errors import ErrorCode
from avatar_pipeline.keys import derive_row_job_id, row_input_key
from avatar_pipeline.records import CampaignRowRef
from tests.support.fakes import INPUT_BUCKET, OUTPUT_BUCKET, T0, World
from tests.support.media import make_png

pytestmark = pytest.mark.unit

CAMPAIGN_KEY = "inbox/shop/spring.campaign.json"
CAMPAIGN_ID = "campaign-1"
REPORT = "campaigns/shop/spring/report.json"


def campaign_world(rows: int = 3) -> World:
    world = World()
    world.storage.put(INPUT_BUCKET, "inbox/shop/face.png", make_png())
    world.storage.put(INPUT_BUCKET, CAMPAIGN_KEY, b"{}")
    now = world.clock.now()
    etag = world.storage.head(INPUT_BUCKET, CAMPAIGN_KEY)
    assert etag is not None
    world.campaigns.start_run(
        CampaignRecord(
            campaign_id=CAMPAIGN_ID,
            bucket=INPUT_BUCKET,
            campaign_key=CAMPAIGN_KEY,
            run_id="run-1",
            campaign_etag=etag.etag,
            status=CampaignStatus.RUNNING,
            started_at=now,
            updated_at=now,
        )
    )
    for number in range(1, rows + 1):
        row = RowRecord(row_id=f"c{number}", number=number, run_id="run-1", status=RowStatus.PENDING)
        world.campaigns.enter_row(CAMPAIGN_ID, row)
    world.campaigns.add_media(CAMPAIGN_ID, ["inbox/shop/face.png"])
    world.campaigns.finish_split(CAMPAIGN_ID, "run-1", rows, now)
    return world


def row_job(row_id: str, notify: bool = False) -> JobRef:
    return JobRef(
        job_id=derive_row_job_id(INPUT_BUCKET, CAMPAIGN_KEY, row_id),
        input_bucket=INPUT_BUCKET,
        job_key=row_input_key(CAMPAIGN_KEY, row_id),
        received_at=T0,
        media_keys=("inbox/shop/face.png",),
        model="heygen-avatar-iv",
        video_key=f"campaigns/shop/spring/{row_id}.mp4",
        campaign_row=CampaignRowRef(
            campaign_id=CAMPAIGN_ID, campaign_key=CAMPAIGN_KEY, run_id="run-1", row_id=row_id, notify=notify
        ),
    )


def report(world: World) -> dict[str, object]:
    document: dict[str, object] = json.loads(world.storage.body(OUTPUT_BUCKET, REPORT))
    return document


def test_a_failed_row_job_is_counted_once_and_leaves_the_campaigns_inputs_in_place() -> None:
    world = campaign_world()
    failed = Failed(ErrorCode.PROVIDER_FAILED, "blocked by the provider")

    close_job(row_job("c2"), failed, world.closing())
    close_job(row_job("c2"), failed, world.closing())  # a retried close

    record = world.campaigns.get(CAMPAIGN_ID)
    assert record is not None
    assert (record.counts.failed, record.counts.terminal) == (1, 1)
    assert world.notifier.published == []  # notify_rows is off: the campaign's notification says it all
    assert "inbox/shop/face.png" in world.inbox()  # the campaign's photo stays for its other rows
    error = json.loads(world.storage.body(INPUT_BUCKET, "failed/shop/spring/c2.error.json"))
    assert error["error_code"] == "PROVIDER_FAILED"


def test_with_notify_rows_a_row_job_announces_its_own_ending_once() -> None:
    world = campaign_world()
    failed = Failed(ErrorCode.PROVIDER_FAILED, "blocked")
    close_job(row_job("c1", notify=True), failed, world.closing())
    close_job(row_job("c1", notify=True), failed, world.closing())
    assert [n.job_id for n in world.notifier.published] == [row_job("c1").job_id]


def test_the_running_report_is_rewritten_at_most_once_a_refresh_period_then_at_completion() -> None:
    world = campaign_world(rows=3)
    ports = world.campaign()

    end_row(CAMPAIGN_ID, "run-1", "c1", RowStatus.SUCCEEDED, RowEnd(cost_usd=Decimal("2.2")), ports)
    first = report(world)
    world.clock.advance(REPORT_REFRESH_SECONDS / 2)
    end_row(CAMPAIGN_ID, "run-1", "c2", RowStatus.FAILED, RowEnd("PROVIDER_FAILED", "blocked"), ports)

    assert report(world) == first  # within the period: not rewritten
    assert first["status"] == "RUNNING"
    world.clock.advance(REPORT_REFRESH_SECONDS)
    end_row(CAMPAIGN_ID, "run-1", "c3", RowStatus.SUCCEEDED, RowEnd(cost_usd=Decimal("2.2")), ports)

    final = report(world)
    assert final["status"] == "COMPLETED"
    assert final["totals"] == {
        "rows": 3,
        "succeeded": 2,
        "failed": 1,
        "skipped": 0,
        "planned": 0,
        "estimated_cost_usd": 0.0,
        "cost_usd": 4.4,
    }
    assert {f"campaigns/shop/spring/report.{ext}" for ext in ("csv", "html")} <= set(world.storage.keys(OUTPUT_BUCKET))
    (notification,) = world.announcer.published
    assert notification.status == "COMPLETED"
    # The campaign file and its photo leave inbox/ with the campaign.
    assert world.inbox() == []
