"""Documents the pipeline stores or publishes: the job record, manifest, error report, notification."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from avatar_pipeline.money import Money

# Where a job's cost comes from: Segmind's metrics.cost, the price table's estimate, or nothing was
# billed (the job never reached Segmind, or Segmind refused it).
CostSource = Literal["provider", "estimate", "none"]


class JobStatus(StrEnum):
    SUBMITTING = "SUBMITTING"  # lease held while the provider POST is in flight
    SUBMITTED = "SUBMITTED"  # the provider accepted it; execution not yet confirmed
    RENDERING = "RENDERING"  # the state machine owns it
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED})
# A job record's notified_status while a publisher holds the notification's lease.
NOTIFICATION_PENDING = "PENDING"


class CampaignRowRef(BaseModel):
    """The campaign row a job renders (campaigns/): its ending is counted into that run of the campaign."""

    model_config = ConfigDict(frozen=True)

    campaign_id: str
    campaign_key: str
    run_id: str
    row_id: str
    # The campaign's notify_rows: the row's own notification goes out too (always its record's ending).
    notify: bool = False


class JobRecord(BaseModel):
    """One item in JobsTable: answers "what happened to my file"."""

    job_id: str
    status: JobStatus
    model: str | None = None
    input_bucket: str
    job_key: str
    media_keys: list[str] = Field(default_factory=list)
    request_id: str | None = None
    execution_arn: str | None = None
    output_keys: list[str] = Field(default_factory=list)
    error_code: str | None = None
    error_message: str | None = None
    received_at: datetime
    updated_at: datetime
    submitted_at: datetime | None = None
    completed_at: datetime | None = None
    lease_until: datetime | None = None
    claimed_by_message: str | None = None  # the SQS message whose worker holds the submit lease
    # Set just before the POST: a claim whose worker died without it provably never posted.
    posting_at: datetime | None = None
    status_calls: int = 0
    provider_status: str | None = None
    # PENDING while a publisher holds the notification's lease (until notify_lease_until), then the
    # status it announced (domain/notify.py).
    notified_status: str | None = None
    notify_lease_until: datetime | None = None
    # The RenderJob document as JSON text, so a redelivered submit can (re)start the execution.
    render_job_json: str | None = None
    # Spend (domain/spend.py): what the job reserved of which UTC day's total before its POST (removed
    # when it gives it back), whether its cost was settled against it, and what it cost in the end.
    reserved_usd: Money | None = None
    spend_day: str | None = None
    cost_settled: bool | None = None
    cost_usd: Money | None = None
    cost_source: CostSource | None = None
    # A campaign row's job (None: a job file's). Its job_key is "<campaign key>#<row id>".
    campaign_row: CampaignRowRef | None = None
    expires_at: int  # epoch seconds, DynamoDB TTL


class Timings(BaseModel):
    received_at: datetime
    submitted_at: datetime | None = None
    completed_at: datetime
    queued_seconds: float | None = None
    rendering_seconds: float | None = None
    total_seconds: float


class ManifestInput(BaseModel):
    bucket: str
    job_key: str
    media_keys: list[str]
    archived: dict[str, str]  # {inbox key: where the job's object went}
    superseded: list[str]  # inbox keys holding a newer upload, left there for their own job
    kept: dict[str, str] = Field(default_factory=dict)  # media other jobs still use: {inbox key: copy}


class ManifestOutputs(BaseModel):
    bucket: str
    video_key: str
    captions_key: str | None = None


class VideoFile(BaseModel):
    size: int
    sha256: str
    content_type: str


class Manifest(BaseModel):
    """Written beside the video, last: its presence means the video (and captions) are complete."""

    schema_version: Literal[1] = 1
    job_id: str
    model: str
    request_id: str
    parameters: dict[str, JsonValue]
    input: ManifestInput
    outputs: ManifestOutputs
    video: VideoFile
    timings: Timings
    provider_metrics: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    cost_usd: Money
    cost_source: CostSource


class ErrorReport(BaseModel):
    """failed/<path>.error.json: what went wrong, in words a person can act on."""

    schema_version: Literal[1] = 1
    job_id: str
    status: Literal["FAILED"] = "FAILED"
    error_code: str
    error_message: str
    what_to_do: str
    job_key: str
    moved_inputs: dict[str, str]
    # Inputs whose key holds a newer upload than the one this job used: left in inbox/ for it.
    superseded_inputs: list[str] = Field(default_factory=list)
    # Media other jobs still use: left in inbox/ for them, with a copy beside this report's inputs.
    kept_inputs: dict[str, str] = Field(default_factory=dict)
    request_id: str | None = None
    failed_at: datetime
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    cost_usd: Money
    cost_source: CostSource


class NotificationInput(BaseModel):
    bucket: str
    job_key: str
    archived_keys: dict[str, str]
    superseded_keys: list[str]
    kept_keys: dict[str, str] = Field(default_factory=dict)


class FailedJobInput(NotificationInput):
    error_report_key: str


class NotificationOutput(BaseModel):
    bucket: str
    video_key: str
    captions_key: str | None = None
    manifest_key: str
    size: int
    sha256: str


class FailureTimings(BaseModel):
    received_at: datetime
    failed_at: datetime


class Notification(BaseModel):
    """The SNS message body (JSON); status and model are also message attributes for filter policies."""

    schema_version: Literal[1] = 1
    job_id: str
    status: Literal["SUCCEEDED", "FAILED"]
    model: str | None
    input: FailedJobInput | NotificationInput
    output: NotificationOutput | None = None
    error_code: str | None = None
    error_message: str | None = None
    timings: Timings | FailureTimings | None = None
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    cost_usd: Money
    cost_source: CostSource
