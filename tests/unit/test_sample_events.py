"""Every sample event under events/ parses with the model its handler parses it with."""

from __future__ import annotations

from pathlib import Path

import pytest

from avatar_pipeline.adapters.queue import (
    InboxEventRecord,
    SplitEventRecord,
    SubmitEventRecord,
    to_inbox_object,
    to_split_request,
    to_submit_request,
)
from avatar_pipeline.campaigns.records import RowMessage
from avatar_pipeline.state import RenderState
from tests.support.events import EVENTS_DIR, load_event

pytestmark = pytest.mark.unit

STATE_EVENTS = ["poll_state.json", "finalize_state.json", "report_failure_state.json"]


def test_every_event_file_is_covered() -> None:
    names = {p.name for p in Path(EVENTS_DIR).glob("*.json")}
    assert names == {
        "submit_sqs_object_created.json",
        "submit_sqs_campaign_row.json",
        "split_sqs_campaign_created.json",
        *STATE_EVENTS,
    }


def test_the_split_event_is_a_campaign_files_object_created_event() -> None:
    record = SplitEventRecord.model_validate(load_event("split_sqs_campaign_created.json")["Records"][0])
    request = to_split_request(record)
    assert not isinstance(request, RowMessage)
    assert getattr(request, "key", None) == "inbox/shop/spring.campaign.json"


def test_the_campaign_row_event_is_a_row_message_with_its_delivery() -> None:
    record = SubmitEventRecord.model_validate(load_event("submit_sqs_campaign_row.json")["Records"][0])
    request = to_submit_request(record)
    assert isinstance(request, tuple)
    row, delivery = request
    assert (row.row_id, delivery.key) == ("c1", "inbox/shop/spring.campaign.json#c1")


def test_the_submit_event_is_an_eventbridge_object_created_event_in_an_sqs_record() -> None:
    record = InboxEventRecord.model_validate(load_event("submit_sqs_object_created.json")["Records"][0])
    inbox_object = to_inbox_object(record)
    assert record.body.detail_type == "Object Created"
    assert inbox_object.key == "inbox/campaign-a/alice welcome.json"
    assert inbox_object.receive_count == 1


@pytest.mark.parametrize("name", STATE_EVENTS)
def test_state_events_parse_as_the_render_state(name: str) -> None:
    state = RenderState.model_validate(load_event(name))
    assert state.job.job_id.startswith("job-")
    assert state.poll.wait_seconds >= 1


def test_the_failure_event_carries_a_catch_error() -> None:
    state = RenderState.model_validate(load_event("report_failure_state.json"))
    assert state.error is not None
    assert state.error.error == "ResultExpired"
