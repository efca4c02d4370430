"""Spend (domain/pricing.py, domain/spend.py) on in-memory fakes: the price known before the submit, the
daily ceiling, reservations given back and settled to the actual cost."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from avatar_pipeline.domain.context import InboxObject, JobRef
from avatar_pipeline.domain.finalize import finalize_job
from avatar_pipeline.domain.pricing import price_table, provider_cost
from avatar_pipeline.domain.spend import settle
from avatar_pipeline.domain.submit import Requeue, SubmitResult, submit_job
from avatar_pipeline.errors import InsufficientCredits, ProviderRejected, ProviderUnavailable
from avatar_pipeline.keys import derive_job_id
from avatar_pipeline.provider.wire import RenderResult
from avatar_pipeline.state import PollState, RenderState
from tests.support.fakes import INPUT_BUCKET, OUTPUT_BUCKET, FakeClock, World, fake_settings
from tests.support.media import make_png

pytestmark = pytest.mark.unit

DAY = "2026-12-01"


def world(ceiling: str = "10.00", at: datetime = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)) -> World:
    return World(settings=fake_settings(DAILY_SPEND_LIMIT_USD=ceiling), clock=FakeClock(at))


def drop(w: World, name: str, **job: Any) -> InboxObject:
    w.storage.put(INPUT_BUCKET, "inbox/face.png", make_png())
    document = {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": name, "script": "Hi."} | job
    key = f"inbox/{name}.json"
    etag = w.storage.put(INPUT_BUCKET, key, json.dumps(document).encode())
    return InboxObject(INPUT_BUCKET, key, etag, None, "seq", w.clock.now(), message_id=f"msg-{name}")


def record(w: World, event: InboxObject) -> Any:
    return w.jobs.get(derive_job_id(event.bucket, event.key, event.etag, event.sequencer))


# --- prices -----------------------------------------------------------------------------------------------------


def test_prices_come_from_the_table_by_model_resolution_and_extras() -> None:
    table = price_table(None)
    assert table.price("heygen-avatar-iv", "4k") == Decimal("2.20")  # flat-priced
    assert table.price("heygen-avatar-v", "720p") == Decimal("1.65")
    assert table.price("heygen-avatar-v", "1080p") == Decimal("2.20")
    assert table.price("heygen-avatar-v", "4k", trains_digital_twin=True) == Decimal("4.55")


def test_a_table_given_at_deploy_time_replaces_the_built_in_one_and_a_bad_one_is_refused_at_start() -> None:
    settings = fake_settings(PRICE_TABLE_JSON='{"heygen-avatar-iv": {"default": "3.00"}}')
    assert settings.prices.price("heygen-avatar-iv", "720p") == Decimal("3.00")
    with pytest.raises(ValidationError, match="PRICE_TABLE_JSON"):
        fake_settings(PRICE_TABLE_JSON='{"heygen-avatar-iv": {"default": "lots"}}')


@pytest.mark.parametrize(
    ("metrics", "cost"),
    [({"cost": 1.8}, Decimal("1.80")), ({"cost": "2.5"}, Decimal("2.50")), ({"cost": -1}, None),
     ({"cost": "n/a"}, None), ({"cost": True}, None), ({}, None)],
)  # fmt: skip
def test_only_a_usable_cost_from_segmind_counts(metrics: dict[str, object], cost: Decimal | None) -> None:
    assert provider_cost(metrics) == cost


# --- the ceiling -------------------------------------------------------------------------------------------------


def test_a_job_that_would_pass_the_ceiling_fails_unsubmitted_saying_what_was_spent_and_when_it_resets() -> None:
    w = world(ceiling="4.00")
    assert submit_job(drop(w, "first"), w.submit()) is SubmitResult.STARTED

    assert submit_job(drop(w, "second"), w.submit()) is SubmitResult.REJECTED

    assert w.provider.calls["submit"] == 1
    assert w.ledger.total(DAY) == Decimal("2.20")
    report = json.loads(w.storage.body(INPUT_BUCKET, "failed/second.error.json"))
    assert report["error_code"] == "SPEND_LIMIT"
    assert "has spent $2.20 of its $4.00 daily ceiling" in report["error_message"]
    assert "resets at 00:00 UTC, in 12 h 0 min" in report["error_message"]
    assert "DailySpendLimitUsd" in report["error_message"]
    assert (report["cost_usd"], report["cost_source"]) == (0.0, "none")
    (notification,) = w.notifier.published
    assert notification.error_code == "SPEND_LIMIT"


def test_the_day_rolls_over_at_midnight_utc() -> None:
    w = world(ceiling="2.20", at=datetime(2026, 12, 1, 23, 59, 59, tzinfo=UTC))
    assert submit_job(drop(w, "late"), w.submit()) is SubmitResult.STARTED
    assert submit_job(drop(w, "too-late"), w.submit()) is SubmitResult.REJECTED

    w.clock.moment = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)
    assert submit_job(drop(w, "tomorrow"), w.submit()) is SubmitResult.STARTED

    assert (w.ledger.total("2026-12-01"), w.ledger.total("2026-12-02")) == (Decimal("2.20"), Decimal("2.20"))


def test_no_ceiling_still_counts_the_day() -> None:
    w = world(ceiling="0")
    for n in range(5):
        assert submit_job(drop(w, f"job-{n}"), w.submit()) is SubmitResult.STARTED
    assert w.ledger.total(DAY) == Decimal("11.00")


@pytest.mark.parametrize("refusal", [ProviderRejected("bad voice"), InsufficientCredits("no credits")])
def test_a_job_segmind_refuses_gives_its_reservation_back(refusal: Exception) -> None:
    w = world()
    w.provider.submits = [refusal]
    event = drop(w, "refused")

    assert submit_job(event, w.submit()) is SubmitResult.REJECTED

    assert w.ledger.total(DAY) == Decimal("0.00")
    assert (record(w, event).cost_usd, record(w, event).cost_source) == (Decimal("0"), "none")


def test_a_submit_refused_with_a_5xx_gives_its_reservation_back_before_it_waits() -> None:
    w = world()
    w.provider.submits = [ProviderUnavailable("502")]

    assert isinstance(submit_job(drop(w, "later"), w.submit()), Requeue)

    assert w.ledger.total(DAY) == Decimal("0.00")


# --- settling -----------------------------------------------------------------------------------------------------


def finished(w: World, event: InboxObject, result_metrics: dict[str, object]) -> RenderState:
    submit_job(event, w.submit())
    (state,) = w.executions.started.values()
    w.provider.results = [RenderResult(video_url="https://videos.segmind.com/x.mp4", metrics=result_metrics)]
    w.clock.advance(160)
    poll = PollState(status="COMPLETED", wait_seconds=5, polls=4)
    return state.model_copy(update={"poll": poll})


def test_the_cost_segmind_reports_beats_the_estimate_and_corrects_the_day() -> None:
    w = world()
    event = drop(w, "reported")

    finalize_job(finished(w, event, {"cost": 1.8}), w.finalize())

    manifest = json.loads(w.storage.body(OUTPUT_BUCKET, "videos/reported.json"))
    assert (manifest["cost_usd"], manifest["cost_source"]) == (1.8, "provider")
    (notification,) = w.notifier.published
    assert (notification.cost_usd, notification.cost_source) == (Decimal("1.80"), "provider")
    assert w.ledger.total(DAY) == Decimal("1.80")
    assert (record(w, event).cost_usd, record(w, event).cost_source) == (Decimal("1.80"), "provider")


def test_without_a_reported_cost_the_estimate_stands() -> None:
    w = world()
    finalize_job(finished(w, drop(w, "estimated"), {}), w.finalize())

    manifest = json.loads(w.storage.body(OUTPUT_BUCKET, "videos/estimated.json"))
    assert (manifest["cost_usd"], manifest["cost_source"]) == (2.2, "estimate")
    assert w.ledger.total(DAY) == Decimal("2.20")


def test_a_cost_settles_once_however_often_the_ending_runs() -> None:
    """A higher actual cost is added once; a second settling of the same job changes nothing."""
    w = world()
    event = drop(w, "twice")
    state = finished(w, event, {"cost": 2.75})
    finalize_job(state, w.finalize())

    settle(JobRef.from_render_job(state.job), Decimal("2.75"), w.closing())

    assert w.ledger.total(DAY) == Decimal("2.75")


def test_a_job_is_settled_against_the_day_it_reserved_of_even_when_it_ends_the_next() -> None:
    """The day a job reserved of is the day it is settled against, even when it ends the next day."""
    w = world(at=datetime(2026, 12, 1, 23, 58, tzinfo=UTC))
    event = drop(w, "overnight")
    state = finished(w, event, {"cost": 2.0})
    w.clock.moment += timedelta(minutes=5)

    finalize_job(state, w.finalize())

    assert (w.ledger.total("2026-12-01"), w.ledger.total("2026-12-02")) == (Decimal("2.00"), Decimal("0"))
