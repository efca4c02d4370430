"""The poller's duplicate deliveries: a seeded 1-3 copies per event, each with the event's own time."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from avatar_local.stack.object_events import as_aws_would_send
from avatar_local.stack.poller import EventSourceMapping, QueuePoller, RandomDuplicates
from avatar_local.stack.timewarp import ScaledClock, ScaledQueueDelays

pytestmark = pytest.mark.unit


def test_copies_are_drawn_per_event_from_the_seed() -> None:
    draw = RandomDuplicates(low=1, high=3, seed=12)

    copies = [draw.copies(f"inbox/job-{n}.json", "etag") for n in range(3000)]

    assert copies == [RandomDuplicates(1, 3, 12).copies(f"inbox/job-{n}.json", "etag") for n in range(3000)]
    assert copies != [RandomDuplicates(1, 3, 13).copies(f"inbox/job-{n}.json", "etag") for n in range(3000)]
    shares = Counter(copies)
    assert set(shares) == {1, 2, 3}
    assert all(count / len(copies) == pytest.approx(1 / 3, abs=0.04) for count in shares.values())


def test_a_duplicate_carries_the_time_of_the_event_it_copies() -> None:
    """Given an event moto queued (wall-clock time, raw key)
    When the poller sends a copy of it (through the stack's SendMessage hook, which takes bodies in the
    shape AWS delivers them) and later delivers both
    Then the copy is delivered with the same virtual time and key as the original: the media wait of a
    job counts from its real upload, whichever copy comes first."""
    clock = ScaledClock(0.25, start=datetime(2026, 1, 1, tzinfo=UTC))
    mapping = EventSourceMapping(
        queue_url="q", queue_arn="arn:aws:sqs:us-east-1:1:q", batch_size=5, concurrency=1, visibility_timeout=360,
        function_timeout=60,
    )  # fmt: skip
    poller = QueuePoller(mapping, invoke=lambda e: (None, None), clock=clock, rescheduled=lambda h: False)
    uploaded = clock.to_real(clock.now()) + timedelta(seconds=30)
    queued_by_moto = json.dumps(
        {
            "detail-type": "Object Created",
            "time": uploaded.isoformat(),
            "detail": {"bucket": {"name": "in"}, "object": {"key": "inbox/a b/job.json", "eTag": "abc"}},
        }
    )
    sent: list[str] = []

    class Sqs:
        def send_message(self, QueueUrl: str, MessageBody: str) -> None:
            params = {"MessageBody": MessageBody}
            ScaledQueueDelays(clock)._scale_delay(params)  # the SendMessage hook of the stack
            sent.append(params["MessageBody"])

    poller._duplicates = RandomDuplicates(low=3, high=3)
    poller._send_duplicates(Sqs(), [{"Body": queued_by_moto}])

    original = json.loads(as_aws_would_send(queued_by_moto, clock.to_virtual))
    copies = [json.loads(as_aws_would_send(body, clock.to_virtual)) for body in sent]
    assert len(copies) == 2
    for copy in copies:
        assert copy["time"] == original["time"]
        assert copy["detail"]["object"]["key"] == original["detail"]["object"]["key"] == "inbox/a+b/job.json"
    assert poller.stats.deliveries == {"inbox/a b/job.json": 3}
