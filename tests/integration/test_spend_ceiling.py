"""The daily ceiling under concurrency: the real reservation (one conditional write on DynamoDB, here
moto) and the real job records, with Submit's use case running in many threads at once.

A ceiling of $15.40 admits exactly seven $2.20 Avatar IV jobs. Twenty jobs race for it."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from decimal import Decimal

import boto3
import pytest
from moto import mock_aws

from avatar_local.stack.dynamodb_atomic import dynamodb_item_writes_atomic
from avatar_pipeline.adapters.jobs_table import JobsTable
from avatar_pipeline.adapters.spend_ledger import SpendLedger
from avatar_pipeline.domain.context import InboxObject
from avatar_pipeline.domain.ports import SubmitPorts
from avatar_pipeline.domain.spend import utc_day
from avatar_pipeline.domain.submit import SubmitResult, submit_job
from avatar_pipeline.keys import derive_job_id
from avatar_pipeline.provider.wire import SubmitAccepted
from avatar_pipeline.records import JobStatus
from tests.support import TEST_REGION
from tests.support.fakes import INPUT_BUCKET, FakeProvider, World, fake_settings
from tests.support.media import make_png

pytestmark = pytest.mark.integration

JOBS = 20
PRICE = Decimal("2.20")
CEILING = 7 * PRICE


class Crash(BaseException):
    """The worker dies (a Lambda killed mid-invocation): nothing below it runs, nothing catches it."""


class RecordingLedger(SpendLedger):
    """The DynamoDB ledger, remembering every total a reservation left: none may exceed the ceiling."""

    def __init__(self, table: str) -> None:
        super().__init__(table, boto3.client("dynamodb"))
        self.totals: list[Decimal] = []
        self._lock = threading.Lock()

    def reserve(self, day: str, amount: Decimal, ceiling: Decimal | None) -> Decimal | None:
        total = super().reserve(day, amount, ceiling)
        if total is not None:
            with self._lock:
                self.totals.append(total)
        return total


class CrashingProvider(FakeProvider):
    """Accepts every POST, but the worker posting the job titled `crash_title` dies before its POST, once."""

    def __init__(self, crash_title: str | None = None) -> None:
        super().__init__()
        self.crash_title = crash_title
        self._lock = threading.Lock()

    def submit(self, model: str, payload: dict[str, object]) -> SubmitAccepted:
        with self._lock:
            if self.crash_title is not None and payload.get("video_title") == self.crash_title:
                self.crash_title = None
                raise Crash
        return super().submit(model, payload)


@pytest.fixture
def tables() -> Iterator[None]:
    # moto applies a conditional write in steps, unlocked; DynamoDB one write at a time (the local stack
    # closes the same gap).
    with mock_aws(), dynamodb_item_writes_atomic():
        dynamodb = boto3.client("dynamodb", region_name=TEST_REGION)
        for table, key in (("jobs", "job_id"), ("state", "pk")):
            dynamodb.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
        yield


def race(
    world: World, provider: FakeProvider, deliveries: int, first: int | None = None
) -> tuple[SubmitPorts, RecordingLedger, list[InboxObject]]:
    """All jobs' events delivered `deliveries` times each, at once (job `first` alone before the others)."""
    ledger = RecordingLedger("state")
    ports = replace(
        world.submit(),
        settings=fake_settings(DAILY_SPEND_LIMIT_USD=str(CEILING)),
        jobs=JobsTable(boto3.resource("dynamodb").Table("jobs")),
        ledger=ledger,
        provider=provider,
    )
    world.storage.put(INPUT_BUCKET, "inbox/race/face.png", make_png())
    events = []
    for n in range(JOBS):
        key = f"inbox/race/job-{n:02d}.json"
        job = {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": f"job-{n:02d}", "script": "Hi."}
        etag = world.storage.put(INPUT_BUCKET, key, json.dumps(job).encode())
        events.append(InboxObject(INPUT_BUCKET, key, etag, None, f"seq-{n}", world.clock.now(), message_id=f"msg-{n}"))

    def deliver(event: InboxObject) -> None:
        with contextlib.suppress(Crash):  # the worker died; its message comes back (the test redelivers it)
            submit_job(event, ports)

    if first is not None:
        deliver(events[first])
    # Each delivery is a message of its own (SQS gives a duplicate its own message id).
    racing = [
        replace(event, message_id=f"{event.message_id}-copy-{copy}")
        for n, event in enumerate(events)
        if n != first
        for copy in range(deliveries)
    ]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(deliver, racing))
    return ports, ledger, events


def outcomes(ports: SubmitPorts, events: list[InboxObject]) -> list[tuple[JobStatus, str | None]]:
    """Each job's status and error code, in the events' order."""
    found = []
    for event in events:
        record = ports.jobs.get(derive_job_id(event.bucket, event.key, event.etag, event.sequencer))
        assert record is not None, event.key
        found.append((record.status, record.error_code))
    return found


def test_twenty_racing_submits_against_a_ceiling_for_seven_post_exactly_seven(tables: None) -> None:
    world = World()
    provider = FakeProvider()

    ports, ledger, events = race(world, provider, deliveries=1)

    assert len(provider.posted) == 7
    assert outcomes(ports, events).count((JobStatus.FAILED, "SPEND_LIMIT")) == 13
    assert max(ledger.totals) <= CEILING
    assert ledger.total(utc_day(world.clock.now())) == CEILING
    assert [n.error_code for n in world.notifier.published] == ["SPEND_LIMIT"] * 13


def test_duplicate_deliveries_and_a_crash_between_reservation_and_post_never_pass_the_ceiling(tables: None) -> None:
    """Given the worker submitting job-03 dying after its reservation and before its POST, then every
    other event delivered twice at once, then job-03's own message coming back
    Then seven reservations in all: six POSTs, job-03 ends INTERNAL (a POST may have happened, so its
    reservation stays), thirteen SPEND_LIMIT; each failure notified once; no total ever above the ceiling."""
    world = World()
    provider = CrashingProvider(crash_title="job-03")

    ports, ledger, events = race(world, provider, deliveries=2, first=3)
    assert submit_job(events[3], ports) is SubmitResult.REJECTED  # its own message, redelivered

    results = outcomes(ports, events)
    assert len(provider.posted) == 6
    assert results[3] == (JobStatus.FAILED, "INTERNAL")
    assert results.count((JobStatus.FAILED, "SPEND_LIMIT")) == 13
    assert results.count((JobStatus.RENDERING, None)) == 6
    assert max(ledger.totals) <= CEILING
    assert ledger.total(utc_day(world.clock.now())) == CEILING
    failures = [n.job_id for n in world.notifier.published]
    assert len(failures) == len(set(failures)) == 14
