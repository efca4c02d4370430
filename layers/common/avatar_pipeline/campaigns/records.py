"""What a campaign keeps and sends: its record and its rows' records (CampaignsTable), the message that
hands one row to Submit, and the campaign's report and notification documents.

A campaign is known by its id, derived from bucket and key (not the upload): uploading the same
campaign file again is a new *run* of the same campaign (a resume), and each run has its own id
(the upload's ETag and sequencer). Counters belong to the current run; a row record says which run
it last entered, so entering a row, or ending it, counts once per run whatever is delivered twice.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, Field, JsonValue

# A row's status is the report's: PENDING, SUCCEEDED, FAILED, SKIPPED (never submitted: the campaign's
# ceiling or a rejected sample) or PLANNED (a dry run's row).
from avatar_pipeline.campaigns.report import ReportTotals
from avatar_pipeline.campaigns.report import RowStatus as RowStatus
from avatar_pipeline.money import ZERO, Money
from avatar_pipeline.records import CampaignRowRef


class CampaignStatus(StrEnum):
    """The campaign record's status: the report's (PLANNED, RUNNING, COMPLETED), and FAILED."""

    RUNNING = "RUNNING"
    PLANNED = "PLANNED"  # a dry run, complete: nothing was submitted
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"  # the campaign itself was invalid: no row ran


class SampleGate(StrEnum):
    """A campaign with approve_after K: its first K valid rows render as a sample, the rest are held."""

    SAMPLING = "SAMPLING"  # the sample renders; the other rows are held
    READY = "READY"  # the sample ended: "sample ready" went out; waiting for a person, at no cost
    APPROVED = "APPROVED"  # the held rows were handed out
    REJECTED = "REJECTED"  # the held rows ended SKIPPED (NOT_APPROVED)
    EXPIRED = "EXPIRED"  # no decision in time: the held rows ended SKIPPED (NOT_APPROVED)


OPEN_GATES = frozenset({SampleGate.SAMPLING, SampleGate.READY})


def derive_campaign_id(bucket: str, campaign_key: str) -> str:
    digest = hashlib.sha256("\n".join(["campaign", bucket, campaign_key]).encode()).hexdigest()
    return f"campaign-{digest[:40]}"


def derive_run_id(etag: str, sequencer: str | None) -> str:
    """One upload of the campaign file: a redelivered event is the same run, a new upload a new one."""
    return hashlib.sha256(f"{etag}\n{sequencer or ''}".encode()).hexdigest()[:24]


class RowCounts(BaseModel):
    """How many of the run's rows ended each way, and what they cost."""

    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    planned: int = 0
    estimated_cost_usd: Money = ZERO  # of the rows submitted (or, in a dry run, planned)
    cost_usd: Money = ZERO  # what the rows that ended cost

    @property
    def terminal(self) -> int:
        return self.succeeded + self.failed + self.skipped + self.planned

    def add(self, status: RowStatus, estimated: Money = ZERO, cost: Money = ZERO) -> RowCounts:
        counts = self.model_copy()
        if status is not RowStatus.PENDING:
            name = status.value.lower()
            setattr(counts, name, getattr(counts, name) + 1)
        counts.estimated_cost_usd += estimated
        counts.cost_usd += cost
        return counts


class CampaignRecord(BaseModel):
    campaign_id: str
    bucket: str
    campaign_key: str
    run_id: str
    campaign_etag: str
    status: CampaignStatus
    dry_run: bool = False
    notify_rows: bool = False
    rows_key: str | None = None  # the rows file, which leaves inbox/ with the campaign
    rows_total: int | None = None  # known once the split has read every row
    counts: RowCounts = Field(default_factory=RowCounts)
    error_code: str | None = None
    error_message: str | None = None
    started_at: datetime
    updated_at: datetime
    completed_at: datetime | None = None
    completed_run: str | None = None  # the run whose completion went out (report, notification, event)
    # The sample gate (approve_after): its state in this run, and how many rows it holds back.
    gate: SampleGate | None = None
    held: int = 0

    @property
    def split_done(self) -> bool:
        return self.rows_total is not None

    @property
    def all_rows_ended(self) -> bool:
        return self.rows_total is not None and self.counts.terminal >= self.rows_total

    @property
    def sample_ended(self) -> bool:
        """Every row but the held ones is terminal (the sample, and the rows that failed or were skipped)."""
        return self.rows_total is not None and self.held > 0 and self.counts.terminal + self.held >= self.rows_total


class RowRecord(BaseModel):
    row_id: str
    number: int
    run_id: str
    status: RowStatus
    job_id: str | None = None
    video_key: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    estimated_cost_usd: Money = ZERO
    cost_usd: Money = ZERO
    # A row held back by the sample gate: its message (JSON), handed out if the sample is approved.
    held_message: str | None = None


class RowMessage(CampaignRowRef):
    """One row handed to Submit (on the submit queue): the campaign row it is (what its job's record
    keeps, `ref`) and everything its job needs, validated already."""

    kind: Literal["campaign-row"] = "campaign-row"
    bucket: str
    number: int
    job_id: str
    job: dict[str, JsonValue]  # the row's job object, exactly as a job file would hold it
    media_keys: dict[str, str]
    video_key: str

    def ref(self) -> CampaignRowRef:
        return CampaignRowRef.model_validate(self.model_dump(include=set(CampaignRowRef.model_fields)))


class SplitCursor(BaseModel):
    """A split that neared its time limit hands the rest of its run to the next invocation: this goes
    on the split queue, and the split goes on after `after_row` (rows up to it are entered and handed
    out). Delivered twice, it enters nothing twice (rows are entered under a condition, jobs have ids)."""

    kind: Literal["campaign-split"] = "campaign-split"
    bucket: str
    key: str
    etag: str
    sequencer: str | None = None
    event_time: datetime
    after_row: int = Field(ge=1)
    # What max_spend_usd had admitted up to that row (the ceiling goes on from there).
    committed_usd: Money = ZERO
    # How many rows the sample gate had let through (approve_after counts on from there).
    sample_taken: int = 0


class SampleExpiry(BaseModel):
    """Put on the split queue by a one-time EventBridge Scheduler schedule when a sample's time to be
    decided is up: an open gate of that run then closes as if rejected."""

    kind: Literal["sample-expiry"] = "sample-expiry"
    campaign_id: str
    run_id: str


class CampaignErrorReport(BaseModel):
    """failed/<dir>/<name>.campaign.error.json: why the campaign as a whole was refused."""

    schema_version: Literal[1] = 1
    campaign_key: str
    status: Literal["FAILED"] = "FAILED"
    error_code: str
    error_message: str
    what_to_do: str


class CampaignNotification(BaseModel):
    """The one SNS message (attribute kind=campaign) and EventBridge event of a finished campaign."""

    schema_version: Literal[1] = 1
    kind: Literal["campaign"] = "campaign"
    campaign_key: str
    bucket: str
    # SAMPLE_READY: the sample (approve_after) rendered; the other rows wait for approval (report_key).
    status: Literal["PLANNED", "COMPLETED", "FAILED", "SAMPLE_READY"]
    dry_run: bool
    totals: ReportTotals
    report_key: str | None = None
    error_code: str | None = None
    error_message: str | None = None
    archived_keys: dict[str, str] = Field(default_factory=dict)
    # SAMPLE_READY: the file to drop beside the campaign file to approve the rest (or `.reject` to skip it).
    approve_key: str | None = None
