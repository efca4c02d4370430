"""The state machine's data (statemachine/render_job.asl.json), as the handlers see it.

Execution input = RenderState(job=..., poll=...). The Poll function returns the next RenderState;
the Choice reads poll.status / poll.deadline_passed; Catch blocks add `error` (Error + Cause).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from avatar_pipeline.money import ZERO, Money
from avatar_pipeline.records import CampaignRowRef

PollStatus = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED"]


class RenderJob(BaseModel):
    """What every step needs to know about a submitted job (kept small: state payloads are capped)."""

    model_config = ConfigDict(frozen=True)

    job_id: str
    model: str
    request_id: str
    input_bucket: str
    job_key: str
    media_keys: list[str] = Field(default_factory=list)
    # The ETags (unquoted) of the job file and media as Submit read them: only those objects leave
    # inbox/ with the job, not a newer upload under the same key. None/absent: an execution started
    # before they were recorded, whose inputs move by key.
    job_etag: str | None = None
    media_etags: dict[str, str] = Field(default_factory=dict)
    video_key: str
    video_extension: Literal["mp4", "webm"] = "mp4"
    wants_captions: bool = False
    title: str | None = None
    parameters: dict[str, JsonValue] = Field(default_factory=dict)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    received_at: datetime
    submitted_at: datetime
    deadline_at: datetime
    # The price table's estimate, reserved of `spend_day`'s total before the POST (domain/spend.py).
    estimated_cost_usd: Money = ZERO
    spend_day: str | None = None
    # A campaign row's job: its ending is counted into its campaign (campaigns/complete.py end_row).
    campaign_row: CampaignRowRef | None = None


class PollState(BaseModel):
    status: PollStatus = "QUEUED"
    wait_seconds: int = Field(ge=1)
    polls: int = 0
    deadline_passed: bool = False
    error_message: str | None = None
    provider_metrics: dict[str, Any] = Field(default_factory=dict)
    first_seen_processing_at: datetime | None = None
    completed_seen_at: datetime | None = None
    # The last check that reached Segmind (deferred checks do not count): what a completion is
    # learned from. None until the first check, and in states written before the field existed.
    last_checked_at: datetime | None = None
    # Checks in a row that failed transiently (5xx, timeouts, unreachable, unreadable answers): the
    # next one backs off. The render goes on meanwhile, so only the deadline ends the loop.
    failed_checks: int = 0


class FetchRetry(BaseModel):
    """Finalize could not fetch or copy a finished render this time (a transient fault): the state
    machine waits `wait_seconds` and runs Finalize again, while Segmind still keeps the result."""

    attempts: int = Field(ge=1)
    wait_seconds: int = Field(ge=1)
    last_error: str


class StepError(BaseModel):
    """What a Catch (or the ASL's Pass states for FAILED / deadline) puts at $.error."""

    model_config = ConfigDict(populate_by_name=True)

    error: str = Field(alias="Error")
    cause: str | None = Field(default=None, alias="Cause")


class RenderState(BaseModel):
    job: RenderJob
    poll: PollState
    error: StepError | None = None
    # Set by Finalize when it must try again later; the ASL's Choice after FinalizeVideo reads it.
    fetch_retry: FetchRetry | None = None


class JobOutcome(BaseModel):
    """What Finalize / ReportFailure return (the execution's output)."""

    job_id: str
    status: Literal["SUCCEEDED", "FAILED"]
    error_code: str | None = None
    error_message: str | None = None
    output_keys: list[str] = Field(default_factory=list)
    notified: bool
