"""In-memory fakes of the ports (avatar_pipeline.domain.ports), for unit tests of the use cases and
for simulations (bench/bench_poll.py).

Each fake subclasses its Protocol, so mypy holds it to the real signature, and keeps the semantics
the real adapter has (conditional writes, ETag checks); tests/unit/test_fakes_contract.py runs the same
assertions against a fake and the moto-backed adapter. `World` holds one of each and hands out the
bundles the use cases take.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import IO, Any, TypeVar

from pydantic import BaseModel

from avatar_pipeline.campaigns.records import (
    CampaignNotification,
    CampaignRecord,
    CampaignStatus,
    RowRecord,
    RowStatus,
    SampleGate,
)
from avatar_pipeline.clock import Clock
from avatar_pipeline.domain.poll_policy import PollPolicy, PollSchedule, RenderStats
from avatar_pipeline.domain.ports import (
    CampaignNotifier,
    CampaignPorts,
    CampaignStore,
    ClosingPorts,
    CompletionEvents,
    CopiedObject,
    Copier,
    DeadLetterPorts,
    EventPublishFailed,
    Executions,
    Expected,
    FinalizePorts,
    JobStore,
    MediaUsers,
    NotificationClaim,
    Notifier,
    ObjectInfo,
    ObjectMissing,
    ObjectReplaced,
    ObjectTooLarge,
    OutputClaims,
    PollPorts,
    Provider,
    RenderStatsStore,
    RequestBudget,
    RowEnd,
    SpendLedger,
    Storage,
    SubmitPorts,
    plain_etag,
)
from avatar_pipeline.provider.wire import RenderResult, StatusReport, SubmitAccepted
from avatar_pipeline.records import NOTIFICATION_PENDING, JobRecord, JobStatus, Notification
from avatar_pipeline.settings import Settings
from avatar_pipeline.state import RenderState

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
INPUT_BUCKET = "avatar-input"
OUTPUT_BUCKET = "avatar-output"


def fake_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "INPUT_BUCKET": INPUT_BUCKET,
        "OUTPUT_BUCKET": OUTPUT_BUCKET,
        "JOBS_TABLE": "jobs",
        "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:notifications",
        "SEGMIND_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:key-AbCdEf",
    }
    return Settings.model_validate({**values, **overrides})


class FakeClock(Clock):
    def __init__(self, start: datetime = T0) -> None:
        self.moment = start

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


# --- storage ----------------------------------------------------------------------------------------------


@dataclass
class StoredObject:
    body: bytes
    etag: str
    content_type: str | None = None


class FakeStorage(Storage):
    """Buckets as dicts. An ETag is the MD5 of the bytes, as S3's is for a single-part upload."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], StoredObject] = {}
        self.reads: list[str] = []

    def put(self, bucket: str, key: str, body: bytes, content_type: str | None = None) -> str:
        etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
        self.objects[(bucket, key)] = StoredObject(body, etag, content_type)
        return etag

    def body(self, bucket: str, key: str) -> bytes:
        return self.objects[(bucket, key)].body

    def keys(self, bucket: str) -> list[str]:
        return sorted(key for stored_bucket, key in self.objects if stored_bucket == bucket)

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        stored = self.objects.get((bucket, key))
        if stored is None:
            return None
        return ObjectInfo(key=key, size=len(stored.body), etag=stored.etag, content_type=stored.content_type)

    def read(self, bucket: str, key: str, max_bytes: int, if_match: str | None = None) -> bytes:
        stored = self._existing(bucket, key)
        if if_match and plain_etag(if_match) != stored.etag:
            raise ObjectReplaced(key, if_match)
        if len(stored.body) > max_bytes:
            raise ObjectTooLarge(key, len(stored.body), max_bytes)
        self.reads.append(key)
        return stored.body

    def read_prefix(self, bucket: str, key: str, length: int) -> bytes:
        return self._existing(bucket, key).body[:length]

    def open_stream(self, bucket: str, key: str, if_match: str | None = None) -> IO[bytes]:
        stored = self._existing(bucket, key)
        if if_match and plain_etag(if_match) != stored.etag:
            raise ObjectReplaced(key, if_match)
        self.reads.append(key)
        return io.BytesIO(stored.body)

    def iter_folder(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        for key in self.keys(bucket):
            if key.startswith(prefix) and "/" not in key[len(prefix) :]:
                info = self.head(bucket, key)
                assert info is not None
                yield info

    def presign_get(self, bucket: str, key: str, expires_in: int) -> str:
        return f"https://{bucket}.s3.eu-west-1.amazonaws.com/{key}?X-Amz-Expires={expires_in}&X-Amz-Signature=fake"

    def put_json(self, bucket: str, key: str, document: BaseModel) -> None:
        self.put(bucket, key, document.model_dump_json(indent=2).encode(), "application/json; charset=utf-8")

    def put_file(self, bucket: str, key: str, body: IO[bytes], content_type: str) -> None:
        self.put(bucket, key, body.read(), content_type)

    def copy(self, bucket: str, source_key: str, target_key: str, if_match: str | None = None) -> bool:
        stored = self.objects.get((bucket, source_key))
        if stored is None:
            return False
        if if_match and plain_etag(if_match) != stored.etag:
            raise ObjectReplaced(source_key, if_match)
        self.objects[(bucket, target_key)] = StoredObject(stored.body, stored.etag, stored.content_type)
        return True

    def move(self, bucket: str, source_key: str, target_key: str, if_match: str | None = None) -> bool:
        if not self.copy(bucket, source_key, target_key, if_match):
            return False
        del self.objects[(bucket, source_key)]
        return True

    def _existing(self, bucket: str, key: str) -> StoredObject:
        stored = self.objects.get((bucket, key))
        if stored is None:
            raise ObjectMissing(key)
        return stored


# --- the job store and what is published ------------------------------------------------------------------


class FakeJobStore(JobStore):
    """The jobs table's conditional writes, on a dict of records."""

    def __init__(self) -> None:
        self.records: dict[str, JobRecord] = {}

    def get(self, job_id: str) -> JobRecord | None:
        return self.records.get(job_id)

    def claim_submission(self, record: JobRecord) -> bool:
        existing = self.records.get(record.job_id)
        earlier_runs_failure = (
            existing is not None
            and record.campaign_row is not None
            and existing.status == JobStatus.FAILED
            and existing.campaign_row is not None
            and existing.campaign_row.run_id != record.campaign_row.run_id
        )
        if existing is not None and not earlier_runs_failure:
            return False
        self.records[record.job_id] = record
        return True

    def release_submission(self, job_id: str) -> None:
        record = self.records.get(job_id)
        if record is not None and record.status == JobStatus.SUBMITTING and record.request_id is None:
            del self.records[job_id]

    def mark_posting(self, job_id: str, now: datetime) -> None:
        self._update(job_id, {JobStatus.SUBMITTING}, posting_at=now)

    def mark_submitted(self, job_id: str, request_id: str, submitted_at: datetime, render_job_json: str) -> None:
        self._update(job_id, {JobStatus.SUBMITTING}, status=JobStatus.SUBMITTED, request_id=request_id,
                     submitted_at=submitted_at, render_job_json=render_job_json, updated_at=submitted_at)  # fmt: skip

    def mark_rendering(self, job_id: str, execution_arn: str, now: datetime) -> None:
        self._update(job_id, {JobStatus.SUBMITTED, JobStatus.RENDERING}, status=JobStatus.RENDERING,
                     execution_arn=execution_arn, updated_at=now)  # fmt: skip

    def record_poll(self, job_id: str, provider_status: str, status_calls: int, now: datetime) -> None:
        record = self.records.get(job_id)
        if record is not None and record.status == JobStatus.RENDERING:
            self._update(job_id, {JobStatus.RENDERING}, provider_status=provider_status,
                         status_calls=status_calls, updated_at=now)  # fmt: skip

    def save_terminal(self, record: JobRecord) -> None:
        existing = self.records.get(record.job_id)
        if existing is not None and (existing.status == JobStatus.SUCCEEDED or existing.notified_status is not None):
            return
        self.records[record.job_id] = record

    def claim_notification(self, job_id: str, now: datetime, lease_until: datetime) -> NotificationClaim:
        record = self.records.get(job_id)
        if record is None:
            return "sent"
        if record.notified_status is not None:
            lease_running = record.notify_lease_until is not None and record.notify_lease_until >= now
            if record.notified_status != NOTIFICATION_PENDING or lease_running:
                return "busy" if record.notified_status == NOTIFICATION_PENDING else "sent"
        self.records[job_id] = record.model_copy(
            update={"notified_status": NOTIFICATION_PENDING, "notify_lease_until": lease_until}
        )
        return "claimed"

    def confirm_notification(self, job_id: str, status: str) -> None:
        record = self.records[job_id]
        self.records[job_id] = record.model_copy(update={"notified_status": status, "notify_lease_until": None})

    def release_notification(self, job_id: str) -> None:
        record = self.records[job_id]
        self.records[job_id] = record.model_copy(update={"notified_status": None, "notify_lease_until": None})

    def mark_reserved(self, job_id: str, amount: Decimal, day: str) -> None:
        self._update(job_id, {JobStatus.SUBMITTING}, reserved_usd=amount, spend_day=day)

    def take_back_reservation(self, job_id: str) -> tuple[Decimal, str] | None:
        record = self.records.get(job_id)
        if record is None or record.reserved_usd is None:
            return None
        self.records[job_id] = record.model_copy(update={"reserved_usd": None})
        return record.reserved_usd, str(record.spend_day)

    def mark_cost_settled(self, job_id: str) -> bool:
        record = self.records.get(job_id)
        if record is None or record.cost_settled:
            return False
        self.records[job_id] = record.model_copy(update={"cost_settled": True})
        return True

    def _update(self, job_id: str, allowed: set[JobStatus], **fields: Any) -> None:
        record = self.records.get(job_id)
        if record is None or record.status not in allowed:
            raise ConditionFailed(f"{job_id} is not in {sorted(allowed)}")
        self.records[job_id] = record.model_copy(update=fields)


class FakeCampaignStore(CampaignStore):
    """CampaignsTable's conditional writes on dicts: a row counted once per run, a completion granted once."""

    def __init__(self) -> None:
        self.records: dict[str, CampaignRecord] = {}
        self.row_records: dict[tuple[str, str], RowRecord] = {}
        self.media_keys: dict[str, list[str]] = {}
        self.leases: dict[str, datetime] = {}
        self.report_written: dict[str, tuple[str, datetime]] = {}

    def get(self, campaign_id: str) -> CampaignRecord | None:
        return self.records.get(campaign_id)

    def start_run(self, record: CampaignRecord) -> CampaignRecord:
        current = self.records.get(record.campaign_id)
        if current is None or current.run_id != record.run_id:
            self.records[record.campaign_id] = record
        return self.records[record.campaign_id]

    def enter_row(self, campaign_id: str, row: RowRecord) -> RowRecord:
        current = self.row_records.get((campaign_id, row.row_id))
        if current is None or (current.run_id != row.run_id and current.status is not RowStatus.SUCCEEDED):
            self._count(campaign_id, row.run_id, row.status, row.estimated_cost_usd, row.cost_usd)
            if row.held_message is not None:
                record = self.records[campaign_id]
                self.records[campaign_id] = record.model_copy(update={"held": record.held + 1})
            self.row_records[campaign_id, row.row_id] = row
            return row
        if current.run_id == row.run_id:
            return current
        self._count(campaign_id, row.run_id, RowStatus.SUCCEEDED, Decimal(0), current.cost_usd)
        moved = current.model_copy(update={"run_id": row.run_id, "number": row.number})
        self.row_records[campaign_id, row.row_id] = moved
        return moved

    def add_media(self, campaign_id: str, keys: list[str]) -> None:
        known = self.media_keys.setdefault(campaign_id, [])
        known.extend(key for key in keys if key not in known)

    def media(self, campaign_id: str) -> Iterator[str]:
        yield from self.media_keys.get(campaign_id, [])

    def finish_split(self, campaign_id: str, run_id: str, rows_total: int, now: datetime) -> CampaignRecord:
        record = self.records[campaign_id]
        if record.run_id != run_id:
            raise ConditionFailed(f"{campaign_id} is in another run")
        self.records[campaign_id] = record.model_copy(update={"rows_total": rows_total, "updated_at": now})
        return self.records[campaign_id]

    def end_row(
        self, campaign_id: str, run_id: str, row_id: str, status: RowStatus, detail: RowEnd
    ) -> CampaignRecord | None:
        row = self.row_records.get((campaign_id, row_id))
        record = self.records.get(campaign_id)
        if row is None or record is None or row.run_id != run_id or record.run_id != run_id:
            return None
        if row.status is not RowStatus.PENDING:
            return None
        self._count(campaign_id, run_id, status, Decimal(0), detail.cost_usd)
        self.row_records[campaign_id, row_id] = row.model_copy(
            update={"status": status, "cost_usd": detail.cost_usd, "error_code": detail.error_code,
                    "error_message": detail.error_message}
        )  # fmt: skip
        return self.records[campaign_id]

    def move_gate(self, campaign_id: str, run_id: str, from_states: frozenset[SampleGate], to: SampleGate) -> bool:
        record = self.records.get(campaign_id)
        if record is None or record.run_id != run_id or record.gate not in from_states:
            return False
        self.records[campaign_id] = record.model_copy(update={"gate": to})
        return True

    def claim_report_refresh(self, campaign_id: str, run_id: str, now: datetime, last_before: datetime) -> bool:
        record = self.records.get(campaign_id)
        last = self.report_written.get(campaign_id)
        if (
            record is None
            or record.run_id != run_id
            or (last is not None and last[0] == run_id and last[1] >= last_before)
        ):
            return False
        self.report_written[campaign_id] = (run_id, now)
        return True

    def claim_completion(self, campaign_id: str, run_id: str, now: datetime, lease_until: datetime) -> bool:
        record = self.records.get(campaign_id)
        if record is None or record.run_id != run_id or not record.all_rows_ended or record.completed_run == run_id:
            return False
        if campaign_id in self.leases and self.leases[campaign_id] >= now:
            return False
        self.leases[campaign_id] = lease_until
        return True

    def confirm_completion(self, campaign_id: str, run_id: str, status: CampaignStatus, now: datetime) -> None:
        record = self.records[campaign_id]
        self.records[campaign_id] = record.model_copy(
            update={"completed_run": run_id, "status": status, "completed_at": now, "updated_at": now}
        )
        self.leases.pop(campaign_id, None)

    def rows(self, campaign_id: str) -> Iterator[RowRecord]:
        rows = (row for (cid, _), row in self.row_records.items() if cid == campaign_id)
        yield from sorted(rows, key=lambda row: row.number)

    def _count(self, campaign_id: str, run_id: str, status: RowStatus, estimated: Decimal, cost: Decimal) -> None:
        record = self.records[campaign_id]
        if record.run_id != run_id:
            raise ConditionFailed(f"{campaign_id} is in another run")
        counts = record.counts.add(status, estimated, cost)
        self.records[campaign_id] = record.model_copy(update={"counts": counts})


class FakeCampaignNotifier(CampaignNotifier):
    def __init__(self) -> None:
        self.published: list[CampaignNotification] = []

    def publish(self, notification: CampaignNotification) -> None:
        self.published.append(notification)


class ConditionFailed(Exception):
    """What a DynamoDB ConditionalCheckFailedException is to the fake."""


class FakeNotifier(Notifier):
    def __init__(self, fail: bool = False) -> None:
        self.published: list[Notification] = []
        self.fail = fail

    def publish(self, notification: Notification) -> str:
        if self.fail:
            raise RuntimeError("SNS is unavailable")
        self.published.append(notification)
        return f"message-{len(self.published)}"


class FakeEvents(CompletionEvents):
    def __init__(self, fail: bool = False) -> None:
        self.published: list[Notification] = []
        self.fail = fail

    def publish(self, notification: Notification) -> None:
        if self.fail:
            raise EventPublishFailed("EventBridge refused the event")
        self.published.append(notification)


class FakeExecutions(Executions):
    """Executions named after the job id; starting one that exists answers its ARN (as the adapter does)."""

    def __init__(self, fail: bool = False) -> None:
        self.started: dict[str, RenderState] = {}
        self.fail = fail

    def start(self, job_id: str, state: RenderState) -> str:
        if self.fail:
            raise RuntimeError("Step Functions is unavailable")
        self.started.setdefault(job_id, state)
        return f"arn:aws:states:eu-west-1:123456789012:execution:RenderJob:{job_id}"


# --- the provider and the copy -----------------------------------------------------------------------------

T = TypeVar("T")


class FakeProvider(Provider):
    """Segmind, scripted: each list is consumed one answer per call (an exception is raised); when it runs
    out, submits are accepted, statuses say COMPLETED and results carry a video URL."""

    def __init__(self) -> None:
        # Each answer is a value to return or an exception to raise.
        self.submits: list[SubmitAccepted | BaseException] = []
        self.statuses: list[StatusReport | BaseException] = []
        self.results: list[RenderResult | StatusReport | BaseException] = []
        self.posted: list[tuple[str, dict[str, object]]] = []
        self.calls: dict[str, int] = {"submit": 0, "status": 0, "result": 0}
        self._ids = itertools.count(1)

    def submit(self, model: str, payload: dict[str, object]) -> SubmitAccepted:
        self.calls["submit"] += 1
        self.posted.append((model, payload))
        answer = self._next(self.submits)
        if answer is None:
            request_id = f"request-{next(self._ids)}"
            base = f"https://api.segmind.com/v2/requests/{request_id}"
            return SubmitAccepted(
                request_id=request_id, status="QUEUED", status_url=f"{base}/status", response_url=base
            )
        return _answered(answer)

    def status(self, request_id: str) -> StatusReport:
        self.calls["status"] += 1
        answer = self._next(self.statuses)
        if answer is None:
            return StatusReport(status="COMPLETED", request_id=request_id)
        return _answered(answer)

    def result(self, request_id: str) -> RenderResult | StatusReport:
        self.calls["result"] += 1
        if not self.results:
            return RenderResult(video_url=f"https://videos.segmind.com/{request_id}.mp4")
        answer = self.results.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    @staticmethod
    def _next(answers: list[T | BaseException]) -> T | BaseException | None:
        return answers.pop(0) if answers else None


def _answered(answer: T | BaseException) -> T:
    if isinstance(answer, BaseException):
        raise answer
    return answer


class FakeCopier(Copier):
    """Writes a small object for each copy into the storage fake; `fail` is raised by the copy numbered `fail_at`."""

    def __init__(self, storage: FakeStorage) -> None:
        self.storage = storage
        self.calls: list[tuple[str, str, float | None]] = []
        self.fail: BaseException | None = None
        self.fail_at = 1

    def copy(
        self,
        url: str,
        bucket: str,
        key: str,
        expect: Expected,
        metadata: dict[str, str] | None = None,
        deadline: float | None = None,
    ) -> CopiedObject:
        self.calls.append((url, key, deadline))
        if self.fail is not None and len(self.calls) == self.fail_at:
            raise self.fail
        body = f"{expect} from {url}".encode()
        self.storage.put(bucket, key, body, "video/mp4" if expect == "video" else "application/x-subrip")
        return CopiedObject(
            key=key,
            size=len(body),
            sha256=hashlib.sha256(body).hexdigest(),
            content_type="video/mp4" if expect == "video" else "application/x-subrip",
        )


# --- shared state --------------------------------------------------------------------------------------------


class FakeMediaUsers(MediaUsers):
    def __init__(self) -> None:
        self.users: dict[tuple[str, str], set[str]] = {}

    def register(self, job_id: str, bucket: str, media_keys: list[str], now: datetime) -> None:
        for key in media_keys:
            self.users.setdefault((bucket, key), set()).add(job_id)

    def release(self, job_id: str, bucket: str, key: str, now: datetime) -> int:
        users = self.users.setdefault((bucket, key), set())
        users.discard(job_id)
        return len(users)


class FakeOutputClaims(OutputClaims):
    def __init__(self) -> None:
        self.holders: dict[tuple[str, str], str] = {}

    def claim(self, job_id: str, bucket: str, stem: str) -> str | None:
        holder = self.holders.setdefault((bucket, stem), job_id)
        return None if holder == job_id else holder

    def take_over(self, job_id: str, bucket: str, stem: str, from_job: str) -> bool:
        if self.holders.get((bucket, stem)) != from_job:
            return False
        self.holders[(bucket, stem)] = job_id
        return True

    def release(self, job_id: str, bucket: str, stem: str) -> None:
        if self.holders.get((bucket, stem)) == job_id:
            del self.holders[(bucket, stem)]


class FakeSpendLedger(SpendLedger):
    """Days' totals in a dict; a reservation that would pass the ceiling is refused."""

    def __init__(self) -> None:
        self.totals: dict[str, Decimal] = {}

    def reserve(self, day: str, amount: Decimal, ceiling: Decimal | None) -> Decimal | None:
        total = self.totals.get(day, Decimal("0")) + amount
        if ceiling is not None and total > ceiling:
            return None
        self.totals[day] = total
        return total

    def total(self, day: str) -> Decimal:
        return self.totals.get(day, Decimal("0"))

    def adjust(self, day: str, delta: Decimal) -> None:
        self.totals[day] = self.totals.get(day, Decimal("0")) + delta


class FakeRenderStats(RenderStatsStore):
    def __init__(self) -> None:
        self.stats: dict[str, RenderStats] = {}
        self.recorded: list[tuple[str, float]] = []

    def get(self, render_class: str) -> RenderStats:
        return self.stats.get(render_class, RenderStats.prior())

    def record(self, render_class: str, render_seconds: float, now: datetime) -> RenderStats | None:
        self.recorded.append((render_class, render_seconds))
        self.stats[render_class] = self.get(render_class).observe(render_seconds)
        return self.stats[render_class]


# --- one of each -------------------------------------------------------------------------------------------------


@dataclass
class World:
    """Every port faked, and the bundle each use case takes."""

    settings: Settings = field(default_factory=fake_settings)
    clock: FakeClock = field(default_factory=FakeClock)
    storage: FakeStorage = field(default_factory=FakeStorage)
    jobs: FakeJobStore = field(default_factory=FakeJobStore)
    notifier: FakeNotifier = field(default_factory=FakeNotifier)
    events: FakeEvents = field(default_factory=FakeEvents)
    executions: FakeExecutions = field(default_factory=FakeExecutions)
    provider: FakeProvider = field(default_factory=FakeProvider)
    media_users: FakeMediaUsers = field(default_factory=FakeMediaUsers)
    output_claims: FakeOutputClaims = field(default_factory=FakeOutputClaims)
    render_stats: FakeRenderStats = field(default_factory=FakeRenderStats)
    ledger: FakeSpendLedger = field(default_factory=FakeSpendLedger)
    schedule: PollSchedule = field(default_factory=PollPolicy)
    budget: RequestBudget | None = None
    campaigns: FakeCampaignStore = field(default_factory=FakeCampaignStore)
    announcer: FakeCampaignNotifier = field(default_factory=FakeCampaignNotifier)
    copier: FakeCopier = field(init=False)

    def __post_init__(self) -> None:
        self.copier = FakeCopier(self.storage)

    def closing(self) -> ClosingPorts:
        return ClosingPorts(**self._closing())

    def submit(self) -> SubmitPorts:
        return SubmitPorts(
            **self._closing(),
            executions=self.executions,
            schedule=self.schedule,
            render_stats=self.render_stats,
            provider=self.provider,
            budget=self.budget,
        )

    def dead_letter(self) -> DeadLetterPorts:
        return DeadLetterPorts(
            **self._closing(), executions=self.executions, schedule=self.schedule, render_stats=self.render_stats
        )

    def poll(self) -> PollPorts:
        return PollPorts(
            clock=self.clock,
            provider=self.provider,
            jobs=self.jobs,
            schedule=self.schedule,
            budget=self.budget,
            render_stats=self.render_stats,
        )

    def finalize(self) -> FinalizePorts:
        return FinalizePorts(**self._closing(), provider=self.provider, copier=self.copier, budget=self.budget)

    def campaign(self) -> CampaignPorts:
        return CampaignPorts(
            settings=self.settings,
            clock=self.clock,
            storage=self.storage,
            campaigns=self.campaigns,
            announcer=self.announcer,
        )

    def _closing(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign(),
            "settings": self.settings,
            "clock": self.clock,
            "storage": self.storage,
            "jobs": self.jobs,
            "notifier": self.notifier,
            "events": self.events,
            "media_users": self.media_users,
            "output_claims": self.output_claims,
            "ledger": self.ledger,
        }

    # --- conveniences for tests ------------------------------------------------------------------------------
    def inbox(self) -> list[str]:
        return [key for key in self.storage.keys(self.settings.input_bucket) if key.startswith("inbox/")]
