"""Submit taking a campaign's rows (campaigns/row_jobs.py) on in-memory fakes: one POST per row per run,
a resume renders again only what failed, and what succeeded before is reported from its record."""

from __future__ import annotations

from decimal import Decimal

import pytest

from avatar_pipeline.campaigns.records import (
    CampaignRecord,
    CampaignStatus,
    RowMessage,
    RowRecord,
    RowStatus,
)
from avatar_pipeline.campaigns.row_jobs import submit_row
from avatar_pipeline.domain.context import Ending, InboxObject, JobRef
from avatar_pipeline.domain.submit import Requeue, SubmitResult
from avatar_pipeline.keys import derive_row_job_id, row_input_key
from avatar_pipeline.records import JobStatus
from tests.support.fakes import INPUT_BUCKET, World
from tests.support.media import make_png

pytestmark = pytest.mark.unit

CAMPAIGN_KEY = "inbox/shop/spring.campaign.json"
CAMPAIGN_ID = "campaign-1"
PHOTO_KEY = "inbox/shop/face.png"


def row(run_id: str = "run-1", row_id: str = "c1") -> RowMessage:
    return RowMessage(
        campaign_id=CAMPAIGN_ID,
        bucket=INPUT_BUCKET,
        campaign_key=CAMPAIGN_KEY,
        run_id=run_id,
        row_id=row_id,
        number=1,
        job_id=derive_row_job_id(INPUT_BUCKET, CAMPAIGN_KEY, row_id),
        job={"model": "heygen-avatar-iv", "photo": "face.png", "video_title": "Hi Ann", "script": "Hello Ann."},
        media_keys={"image_url": PHOTO_KEY},
        video_key=f"campaigns/shop/spring/{row_id}.mp4",
    )


def delivery(world: World, message: RowMessage, message_id: str = "msg-1") -> InboxObject:
    return InboxObject(
        bucket=message.bucket,
        key=row_input_key(message.campaign_key, message.row_id),
        etag="",
        version_id=None,
        sequencer=None,
        event_time=world.clock.now(),
        message_id=message_id,
    )


def world_with_campaign(run_id: str = "run-1") -> World:
    world = World()
    world.storage.put(INPUT_BUCKET, PHOTO_KEY, make_png())
    now = world.clock.now()
    world.campaigns.start_run(
        CampaignRecord(
            campaign_id=CAMPAIGN_ID,
            bucket=INPUT_BUCKET,
            campaign_key=CAMPAIGN_KEY,
            run_id=run_id,
            campaign_etag="etag",
            status=CampaignStatus.RUNNING,
            started_at=now,
            updated_at=now,
        )
    )
    world.campaigns.enter_row(CAMPAIGN_ID, RowRecord(row_id="c1", number=1, run_id=run_id, status=RowStatus.PENDING))
    world.campaigns.finish_split(CAMPAIGN_ID, run_id, 1, now)
    return world


def end_job(world: World, message: RowMessage, status: JobStatus, cost: str = "0") -> None:
    """The row's job ended in the run that carried `message` (its terminal record)."""
    ref = JobRef(
        job_id=message.job_id,
        input_bucket=INPUT_BUCKET,
        job_key=row_input_key(CAMPAIGN_KEY, message.row_id),
        received_at=world.clock.now(),
        model="heygen-avatar-iv",
        campaign_row=message.ref(),
    )
    code = None if status == JobStatus.SUCCEEDED else "PROVIDER_FAILED"
    end = Ending(status, Decimal(cost), "provider", [], code, None)
    world.jobs.save_terminal(ref.terminal_record(end, world.clock.now(), 30, world.jobs.get(message.job_id)))
    world.jobs.confirm_notification(message.job_id, status.value)  # its ending went all the way


def test_a_row_is_posted_once_under_its_own_job_id_with_nothing_read_or_registered() -> None:
    world = world_with_campaign()
    message = row()

    assert submit_row(message, delivery(world, message), world.submit()) is SubmitResult.STARTED

    ((model, payload),) = world.provider.posted
    assert (model, payload["video_title"]) == ("heygen-avatar-iv", "Hi Ann")
    record = world.jobs.get(message.job_id)
    assert record is not None
    assert record.status == JobStatus.RENDERING
    assert record.job_key == f"{CAMPAIGN_KEY}#c1"
    assert record.campaign_row == message.ref()
    # The photo is the campaign's: checked by the split, archived with the campaign, not counted per row.
    assert world.media_users.users == {}


def test_a_duplicate_delivery_in_the_same_run_never_posts_twice() -> None:
    world = world_with_campaign()
    message = row()
    submit_row(message, delivery(world, message), world.submit())

    again = submit_row(message, delivery(world, message, "msg-2"), world.submit())

    assert again is SubmitResult.DUPLICATE
    assert len(world.provider.posted) == 1


def test_a_row_that_failed_in_an_earlier_run_is_posted_again_under_the_same_job_id() -> None:
    world = world_with_campaign(run_id="run-2")
    first = row(run_id="run-1")
    end_job(world, first, JobStatus.FAILED)

    resumed = row(run_id="run-2")
    assert submit_row(resumed, delivery(world, resumed), world.submit()) is SubmitResult.STARTED
    assert submit_row(resumed, delivery(world, resumed, "msg-2"), world.submit()) is SubmitResult.DUPLICATE

    assert len(world.provider.posted) == 1
    record = world.jobs.get(resumed.job_id)
    assert record is not None
    assert record.job_id == first.job_id
    assert record.campaign_row is not None
    assert record.campaign_row.run_id == "run-2"


def test_a_row_that_failed_in_this_run_is_not_posted_again() -> None:
    world = world_with_campaign()
    message = row()
    end_job(world, message, JobStatus.FAILED)

    assert submit_row(message, delivery(world, message), world.submit()) is SubmitResult.DUPLICATE
    assert world.provider.posted == []


def test_a_row_that_succeeded_in_an_earlier_run_is_reported_from_its_record_without_a_post() -> None:
    world = world_with_campaign(run_id="run-2")
    end_job(world, row(run_id="run-1"), JobStatus.SUCCEEDED, cost="2.20")

    resumed = row(run_id="run-2")
    assert submit_row(resumed, delivery(world, resumed), world.submit()) is SubmitResult.DUPLICATE

    assert world.provider.posted == []
    record = world.campaigns.get(CAMPAIGN_ID)
    assert record is not None
    assert (record.counts.succeeded, record.counts.cost_usd) == (1, Decimal("2.20"))
    (completed,) = world.announcer.published
    assert completed.totals.succeeded == 1


def test_a_row_whose_earlier_job_still_renders_waits_for_it_in_the_queue() -> None:
    world = world_with_campaign(run_id="run-2")
    first = row(run_id="run-1")
    submit_row(first, delivery(world, first), world.submit())

    resumed = row(run_id="run-2")
    waited = submit_row(resumed, delivery(world, resumed), world.submit())

    assert isinstance(waited, Requeue)
    assert waited.delay_seconds >= 30
    assert len(world.provider.posted) == 1
