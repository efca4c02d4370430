"""What the use cases need from the outside world, and nothing of how it is done.

Each port is a Protocol the adapters (avatar_pipeline.adapters) satisfy and the in-memory fakes
(tests/support/fakes.py) subclass; the value types and errors the ports speak in live here too, so the
domain never imports an adapter. Each use case takes one frozen bundle naming the ports it uses:

| bundle         | use cases                                            |
|----------------|------------------------------------------------------|
| ClosingPorts   | ending a job: closing.close_job, failure.fail_job    |
| StartingPorts  | starting an execution: submit.continue_existing      |
| SubmitPorts    | submit.submit_job                                    |
| DeadLetterPorts| dead_letter.end_dead_lettered_job                    |
| PollPorts      | poll.check_status                                    |
| FinalizePorts  | finalize.finalize_job                                |
| SplitPorts     | campaigns.split.split_campaign                       |

runtime.Dependencies, the composition root, builds each bundle from the real adapters.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from pydantic import BaseModel

    from avatar_pipeline.campaigns.records import (
        CampaignNotification,
        CampaignRecord,
        CampaignStatus,
        RowMessage,
        RowRecord,
        RowStatus,
        SampleGate,
    )
    from avatar_pipeline.clock import Clock
    from avatar_pipeline.domain.poll_policy import PollSchedule, RenderStats
    from avatar_pipeline.domain.request_budget import Denied, Grant, RequestKind
    from avatar_pipeline.provider.wire import RenderResult, StatusReport, SubmitAccepted
    from avatar_pipeline.records import JobRecord, Notification
    from avatar_pipeline.settings import Settings
    from avatar_pipeline.state import RenderState


# --- storage -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    content_type: str | None


class ObjectMissing(LookupError):
    pass


class ObjectReplaced(Exception):
    """The key holds another object than the one asked for (its ETag differs): a newer upload."""

    def __init__(self, key: str, expected_etag: str) -> None:
        super().__init__(f"{key} no longer holds the object with ETag {expected_etag}")
        self.key = key
        self.expected_etag = expected_etag


class ObjectTooLarge(ValueError):
    def __init__(self, key: str, size: int, limit: int) -> None:
        super().__init__(f"{key} is {size} bytes, over the {limit}-byte limit")
        self.size = size
        self.limit = limit


def plain_etag(etag: str) -> str:
    """An ETag as this package keeps it: S3's responses quote it, EventBridge's S3 events do not."""
    return etag.strip('"')


class Storage(Protocol):
    """The buckets (adapters/storage.S3Storage)."""

    def head(self, bucket: str, key: str) -> ObjectInfo | None: ...

    def read(self, bucket: str, key: str, max_bytes: int, if_match: str | None = None) -> bytes:
        """The whole object; ObjectMissing, ObjectTooLarge, or ObjectReplaced if `if_match` (an ETag) differs."""
        ...

    def read_prefix(self, bucket: str, key: str, length: int) -> bytes: ...

    def open_stream(self, bucket: str, key: str, if_match: str | None = None) -> IO[bytes]:
        """The object as a stream, read as it is consumed (a rows file of any size at constant memory);
        ObjectMissing, or ObjectReplaced if `if_match` differs. The caller closes it."""
        ...

    def iter_folder(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Objects directly under a folder-like prefix, not in its subfolders."""
        ...

    def presign_get(self, bucket: str, key: str, expires_in: int) -> str: ...

    def put_json(self, bucket: str, key: str, document: BaseModel) -> None: ...

    def put_file(self, bucket: str, key: str, body: IO[bytes], content_type: str) -> None:
        """A document already rendered into a seekable file (a campaign's report), positioned at its
        start (a retry rewinds it there), read as it is sent (not held in memory whole), served as `content_type`."""
        ...

    def copy(self, bucket: str, source_key: str, target_key: str, if_match: str | None = None) -> bool:
        """False if the source is gone; ObjectReplaced (nothing copied) if it holds another ETag."""
        ...

    def move(self, bucket: str, source_key: str, target_key: str, if_match: str | None = None) -> bool:
        """Copy then delete, both ETag-conditional; False if the source is already gone."""
        ...


# --- the job store and what is published -----------------------------------------------------------


class JobStore(Protocol):
    """JobsTable (adapters/jobs_table.JobsTable): one record per job, moved on by conditional writes."""

    def get(self, job_id: str) -> JobRecord | None: ...

    def claim_submission(self, record: JobRecord) -> bool:
        """Create the SUBMITTING record; False if the job already has one, unless it is a campaign row's
        FAILED record from an earlier run of its campaign (replaced: a resume renders the row again)."""
        ...

    def release_submission(self, job_id: str) -> None: ...

    def mark_posting(self, job_id: str, now: datetime) -> None:
        """The claim's worker is about to POST (after this, its death leaves the job possibly billed)."""
        ...

    def mark_submitted(self, job_id: str, request_id: str, submitted_at: datetime, render_job_json: str) -> None: ...

    def mark_rendering(self, job_id: str, execution_arn: str, now: datetime) -> None: ...

    def record_poll(self, job_id: str, provider_status: str, status_calls: int, now: datetime) -> None: ...

    def save_terminal(self, record: JobRecord) -> None: ...

    def claim_notification(self, job_id: str, now: datetime, lease_until: datetime) -> NotificationClaim:
        """Take the right to publish the job's notification until `lease_until` (a publisher that dies
        leaves it to expire)."""
        ...

    def confirm_notification(self, job_id: str, status: str) -> None:
        """The notification went out: the claim is final."""
        ...

    def release_notification(self, job_id: str) -> None: ...

    def mark_reserved(self, job_id: str, amount: Decimal, day: str) -> None:
        """The SUBMITTING job holds `amount` of `day`'s spend (so it can give it back exactly once)."""
        ...

    def take_back_reservation(self, job_id: str) -> tuple[Decimal, str] | None:
        """Remove the job's reservation mark: (amount, day) if it held one, None if none (or gone already)."""
        ...

    def mark_cost_settled(self, job_id: str) -> bool:
        """True the first time: the job's cost was settled against its reservation."""
        ...


NotificationClaim = Literal["claimed", "sent", "busy"]  # ours now / published already / another publisher's


class Notifier(Protocol):
    """The SNS topic (adapters/notifier.SnsNotifier)."""

    def publish(self, notification: Notification) -> object: ...


class EventPublishFailed(RuntimeError):
    """The completion event could not be put on the bus."""


class CompletionEvents(Protocol):
    """The EventBridge bus (adapters/events.CompletionEvents); raises EventPublishFailed."""

    def publish(self, notification: Notification) -> None: ...


class Executions(Protocol):
    """RenderJob executions (adapters/executions.ExecutionStarter), named after the job id."""

    def start(self, job_id: str, state: RenderState) -> str:
        """The execution's ARN, also when it already exists."""
        ...


# --- the provider and the copy ---------------------------------------------------------------------


class Provider(Protocol):
    """Segmind's v2 API (provider/client.SegmindClient); raises the typed errors of errors.py."""

    def submit(self, model: str, payload: dict[str, object]) -> SubmitAccepted: ...

    def status(self, request_id: str) -> StatusReport: ...

    def result(self, request_id: str) -> RenderResult | StatusReport: ...


Expected = Literal["video", "captions"]


@dataclass(frozen=True)
class CopiedObject:
    key: str
    size: int
    sha256: str
    content_type: str


class Copier(Protocol):
    """Streams a result URL into the output bucket (adapters/transfer.StreamingCopier)."""

    def copy(
        self,
        url: str,
        bucket: str,
        key: str,
        expect: Expected,
        metadata: dict[str, str] | None = None,
        deadline: float | None = None,
    ) -> CopiedObject: ...


# --- shared state ------------------------------------------------------------------------------------


class RequestBudget(Protocol):
    """The key's request budget (adapters/request_budget.RequestBudget, or domain's in-memory twin)."""

    def try_acquire(self, kind: RequestKind, now: datetime) -> Grant | Denied: ...


class RenderStatsStore(Protocol):
    """Learned render times (adapters/render_stats.RenderStatsTable)."""

    def get(self, render_class: str) -> RenderStats: ...

    def record(self, render_class: str, render_seconds: float, now: datetime) -> RenderStats | None: ...


class SpendLedger(Protocol):
    """What each UTC day has spent (adapters/spend_ledger.SpendLedger): one atomic total per day."""

    def reserve(self, day: str, amount: Decimal, ceiling: Decimal | None) -> Decimal | None:
        """Add `amount` to the day unless that takes it past `ceiling`: the new total, or None (refused)."""
        ...

    def total(self, day: str) -> Decimal: ...

    def adjust(self, day: str, delta: Decimal) -> None: ...


class MediaUsers(Protocol):
    """How many jobs use a media file (adapters/media_users.MediaUsers)."""

    def register(self, job_id: str, bucket: str, media_keys: list[str], now: datetime) -> None: ...

    def release(self, job_id: str, bucket: str, key: str, now: datetime) -> int:
        """How many jobs still use the file."""
        ...


class OutputClaims(Protocol):
    """Which job owns an output path (adapters/output_claims.OutputClaims)."""

    def claim(self, job_id: str, bucket: str, stem: str) -> str | None:
        """None when the path is (now) the job's; else the job holding it."""
        ...

    def take_over(self, job_id: str, bucket: str, stem: str, from_job: str) -> bool: ...

    def release(self, job_id: str, bucket: str, stem: str) -> None: ...


# --- campaigns ----------------------------------------------------------------------------------------


class CampaignStore(Protocol):
    """CampaignsTable (adapters/campaigns_table.CampaignsTable): a campaign's record, its rows and media."""

    def get(self, campaign_id: str) -> CampaignRecord | None: ...

    def start_run(self, record: CampaignRecord) -> CampaignRecord:
        """Make `record`'s run the campaign's current one, counters at zero, unless it already is (a
        redelivered split): the campaign as it now stands."""
        ...

    def enter_row(self, campaign_id: str, row: RowRecord) -> RowRecord:
        """Enter a row into the run, counted once: the row as it now stands. A row that SUCCEEDED in an
        earlier run stays SUCCEEDED (a resume renders it no more); one already in this run is left as is."""
        ...

    def add_media(self, campaign_id: str, keys: list[str]) -> None:
        """Media the campaign's rows use: they leave inbox/ with the campaign."""
        ...

    def media(self, campaign_id: str) -> Iterator[str]: ...

    def finish_split(self, campaign_id: str, run_id: str, rows_total: int, now: datetime) -> CampaignRecord: ...

    def end_row(
        self, campaign_id: str, run_id: str, row_id: str, status: RowStatus, detail: RowEnd
    ) -> CampaignRecord | None:
        """A PENDING row of the run ended: counted once (None: it was already, or it is not this run's)."""
        ...

    def move_gate(self, campaign_id: str, run_id: str, from_states: frozenset[SampleGate], to: SampleGate) -> bool:
        """Move this run's sample gate to `to` if it is in one of `from_states` (one mover wins)."""
        ...

    def claim_report_refresh(self, campaign_id: str, run_id: str, now: datetime, last_before: datetime) -> bool:
        """The right to rewrite the running campaign's report now: True (and `now` recorded) unless the
        report of this run was last written at or after `last_before`."""
        ...

    def claim_completion(self, campaign_id: str, run_id: str, now: datetime, lease_until: datetime) -> bool:
        """The right to complete the run (report, notification, event, archive) until `lease_until`;
        False once it completed, or while another completer's lease runs."""
        ...

    def confirm_completion(self, campaign_id: str, run_id: str, status: CampaignStatus, now: datetime) -> None: ...

    def rows(self, campaign_id: str) -> Iterator[RowRecord]:
        """Every row record in row order (the rows file's), a page at a time."""
        ...


@dataclass(frozen=True)
class RowEnd:
    error_code: str | None = None
    error_message: str | None = None
    cost_usd: Decimal = Decimal(0)


class RowQueue(Protocol):
    """Hands rows to Submit (adapters/row_queue.SqsRowQueue, the submit queue)."""

    def send(self, messages: list[RowMessage]) -> None: ...


class SampleDeadlines(Protocol):
    """When a campaign's sample must be decided by (adapters/sample_deadlines.SchedulerDeadlines: a one-time
    EventBridge Scheduler schedule that puts a SampleExpiry on the split queue then). Idempotent."""

    def set(self, campaign_id: str, run_id: str, at: datetime) -> None: ...


class CampaignNotifier(Protocol):
    """The campaign's one SNS message (attribute kind=campaign) and EventBridge event."""

    def publish(self, notification: CampaignNotification) -> None: ...


# --- what each use case takes ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ClosingPorts:
    """Ending a job: its inputs leave inbox/, a terminal record, one notification and one event."""

    settings: Settings
    clock: Clock
    storage: Storage
    jobs: JobStore
    notifier: Notifier
    events: CompletionEvents
    media_users: MediaUsers | None = None
    output_claims: OutputClaims | None = None
    ledger: SpendLedger | None = None
    # A campaign row's job ends into its campaign (campaigns/complete.py end_row); None: no campaigns.
    campaign: CampaignPorts | None = None


@dataclass(frozen=True, kw_only=True)
class StartingPorts(ClosingPorts):
    """Starting (or resuming) a submitted job's execution, with its first wait."""

    executions: Executions
    schedule: PollSchedule
    render_stats: RenderStatsStore | None = None


@dataclass(frozen=True, kw_only=True)
class SubmitPorts(StartingPorts):
    provider: Provider
    budget: RequestBudget | None = None


@dataclass(frozen=True, kw_only=True)
class DeadLetterPorts(StartingPorts):
    pass


@dataclass(frozen=True, kw_only=True)
class PollPorts:
    clock: Clock
    provider: Provider
    jobs: JobStore
    schedule: PollSchedule
    budget: RequestBudget | None = None
    render_stats: RenderStatsStore | None = None


@dataclass(frozen=True, kw_only=True)
class CampaignPorts:
    """Completing a campaign: its record, report, notification and archive."""

    settings: Settings
    clock: Clock
    storage: Storage
    campaigns: CampaignStore
    announcer: CampaignNotifier


@dataclass(frozen=True, kw_only=True)
class SplitPorts(CampaignPorts):
    rows: RowQueue
    deadlines: SampleDeadlines | None = None


@dataclass(frozen=True, kw_only=True)
class FinalizePorts(ClosingPorts):
    provider: Provider
    copier: Copier
    budget: RequestBudget | None = None
