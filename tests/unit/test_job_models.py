"""The one mapping between a job's shapes (domain/context.py): InboxObject -> JobRef -> JobRecord /
RenderJob -> JobRef, each by a constructor, with nothing lost on the way."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from avatar_pipeline.domain.context import Ending, InboxObject, JobRef
from avatar_pipeline.jobs.spec import parse_job_file
from avatar_pipeline.records import JobStatus

pytestmark = pytest.mark.unit

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
UPLOAD = InboxObject(bucket="in", key="inbox/a/job.json", etag='"e1"', version_id=None, sequencer="01", event_time=T0)
SPEC = parse_job_file(
    json.dumps(
        {"model": "heygen-avatar-iv", "photo": "face.png", "script": "Hello", "video_title": "Hi", "metadata": {"k": 1}}
    ).encode()
)


def accepted_ref() -> JobRef:
    return replace(
        JobRef.from_upload(UPLOAD, "job-1", "e1"),
        media_keys=("inbox/a/face.png",),
        media_etags={"inbox/a/face.png": "p1"},
        model="heygen-avatar-iv",
        video_key="videos/a/job.mp4",
        estimated_cost_usd=Decimal("2.20"),
        spend_day="2025-03-01",
    )


def test_an_upload_becomes_a_ref_that_knows_only_what_the_event_says() -> None:
    ref = JobRef.from_upload(UPLOAD, "job-1", "e1", model="heygen-avatar-v", media_keys=("inbox/a/x.wav",))

    assert (ref.job_id, ref.input_bucket, ref.job_key, ref.received_at) == ("job-1", "in", "inbox/a/job.json", T0)
    assert (ref.job_etag, ref.model, ref.media_keys) == ("e1", "heygen-avatar-v", ("inbox/a/x.wav",))
    assert ref.request_id is None
    assert ref.video_key is None


def test_a_submitted_job_maps_back_to_the_same_ref_with_its_request_id() -> None:
    """Given a ref whose job Segmind accepted as req-1
    When it becomes the state machine's RenderJob and a later step maps that back
    Then every field the ref had survives, and the request id and submit time are added."""
    ref = accepted_ref()

    job = ref.submitted(SPEC, "req-1", {"script": "Hello"}, T0, timedelta(minutes=40))
    back = JobRef.from_render_job(job)

    assert job.deadline_at == T0 + timedelta(minutes=40)
    assert job.metadata == {"k": 1}
    assert job.title == "Hi"
    assert back == replace(ref, request_id="req-1", submitted_at=T0, metadata={"k": 1})


def test_a_submitted_job_needs_its_video_key() -> None:
    with pytest.raises(ValueError, match="video key"):
        JobRef.from_upload(UPLOAD, "job-1", "e1").submitted(SPEC, "req-1", {}, T0, timedelta(minutes=40))


def test_a_claim_record_and_a_redelivery_ref_agree_on_the_job() -> None:
    """Given the SUBMITTING claim written for a ref
    When a redelivered event maps the record back (JobRef.from_record)
    Then it names the same job, file, media and model, with the event's ETag."""
    ref = accepted_ref()

    claim = ref.claim_record(T0, timedelta(seconds=120), "msg-1", ttl_days=30)
    back = JobRef.from_record(claim, job_etag="e2")

    assert claim.status == JobStatus.SUBMITTING
    assert claim.lease_until == T0 + timedelta(seconds=120)
    assert claim.expires_at == int((T0 + timedelta(days=30)).timestamp())
    assert (back.job_id, back.job_key, back.media_keys, back.model) == (
        ref.job_id,
        ref.job_key,
        ref.media_keys,
        ref.model,
    )
    assert back.job_etag == "e2"


def test_a_terminal_record_keeps_what_the_previous_record_knew_and_ends_the_job() -> None:
    ref = accepted_ref()
    previous = ref.claim_record(T0, timedelta(seconds=120), "msg-1", ttl_days=30)
    ending = Ending(JobStatus.SUCCEEDED, Decimal("1.00"), "provider", output_keys=["videos/a/job.mp4"])

    record = ref.terminal_record(ending, T0 + timedelta(minutes=5), ttl_days=30, previous=previous)

    assert record.status == JobStatus.SUCCEEDED
    assert record.completed_at == T0 + timedelta(minutes=5)
    assert record.claimed_by_message == "msg-1"  # kept from the claim
    assert record.lease_until is None
    assert record.notified_status is None
    assert (record.output_keys, record.cost_usd, record.cost_source) == (
        ["videos/a/job.mp4"],
        Decimal("1.00"),
        "provider",
    )
