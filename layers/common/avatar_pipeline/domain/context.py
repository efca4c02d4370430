"""A job as the use cases carry it, and the one mapping between its three shapes.

* `InboxObject`: the S3 event that started it.
* `JobRef`: what every step that may end a job knows, before or after it reached the provider.
* `RenderJob` (state.py): a submitted job, as the state machine carries it.
* `JobRecord` (records.py): its item in the jobs table.

Each shape is built from another here, by a constructor or a method of JobRef, and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from pydantic import JsonValue

from avatar_pipeline.money import ZERO
from avatar_pipeline.records import CampaignRowRef, CostSource, JobRecord, JobStatus
from avatar_pipeline.state import RenderJob

if TYPE_CHECKING:
    from avatar_pipeline.jobs.spec import AvatarIVJob, AvatarVJob


@dataclass(frozen=True)
class InboxObject:
    """A decoded S3 "Object Created" event for a job file."""

    bucket: str
    key: str
    etag: str
    version_id: str | None
    sequencer: str | None
    event_time: datetime
    receive_count: int = 1  # SQS ApproximateReceiveCount of the record that carried the event
    message_id: str | None = None  # the SQS message that carried it (duplicates are other messages)
    # Carried by a requeued event (adapters/queue.py): how many submits Segmind has refused in a row
    # (429/5xx, or unreachable), and since when, so the retrying has a bound.
    provider_failures: int = 0
    provider_failing_since: datetime | None = None


@dataclass(frozen=True)
class JobRef:
    job_id: str
    input_bucket: str
    job_key: str
    received_at: datetime
    media_keys: tuple[str, ...] = ()
    model: str | None = None
    request_id: str | None = None
    submitted_at: datetime | None = None
    metadata: dict[str, JsonValue] = field(default_factory=dict)
    # What archive_inputs moves: only these objects (RenderJob.job_etag / media_etags); None or a
    # missing key means by key.
    job_etag: str | None = None
    media_etags: dict[str, str] = field(default_factory=dict)
    # Once known (after validation): the video key, whose stem the job claims (adapters/output_claims.py).
    video_key: str | None = None
    # Spend (domain/spend.py): the price table's estimate, and the UTC day it was reserved of (None: not).
    estimated_cost_usd: Decimal = ZERO
    spend_day: str | None = None
    # A campaign row's job (None: a job file's): its ending is counted into the campaign's run.
    campaign_row: CampaignRowRef | None = None

    @classmethod
    def from_upload(
        cls,
        obj: InboxObject,
        job_id: str,
        job_etag: str | None,
        model: str | None = None,
        media_keys: tuple[str, ...] = (),
    ) -> JobRef:
        """A job known only by its upload: `job_etag`, the object read (ETag, unquoted); `model` and
        `media_keys` when only a best-effort reading of a broken job file names them."""
        return cls(
            job_id=job_id,
            input_bucket=obj.bucket,
            job_key=obj.key,
            received_at=obj.event_time,
            job_etag=job_etag,
            model=model,
            media_keys=media_keys,
        )

    @classmethod
    def from_render_job(cls, job: RenderJob) -> JobRef:
        return cls(
            job_id=job.job_id,
            input_bucket=job.input_bucket,
            job_key=job.job_key,
            received_at=job.received_at,
            media_keys=tuple(job.media_keys),
            model=job.model,
            request_id=job.request_id,
            submitted_at=job.submitted_at,
            metadata=dict(job.metadata),
            job_etag=job.job_etag,
            media_etags=dict(job.media_etags),
            video_key=job.video_key,
            estimated_cost_usd=job.estimated_cost_usd,
            spend_day=job.spend_day,
            campaign_row=job.campaign_row,
        )

    @classmethod
    def from_record(cls, record: JobRecord, job_etag: str | None) -> JobRef:
        """A job known only by its record (a redelivered event): `job_etag`, the upload the event names."""
        return cls(
            job_id=record.job_id,
            input_bucket=record.input_bucket,
            job_key=record.job_key,
            received_at=record.received_at,
            media_keys=tuple(record.media_keys),
            model=record.model,
            job_etag=job_etag,
            estimated_cost_usd=record.reserved_usd or ZERO,
            spend_day=record.spend_day,
            campaign_row=record.campaign_row,
        )

    def claim_record(self, now: datetime, lease: timedelta, message_id: str | None, ttl_days: int) -> JobRecord:
        """The SUBMITTING record whose creation grants the right to POST."""
        return JobRecord(
            job_id=self.job_id,
            status=JobStatus.SUBMITTING,
            model=self.model,
            input_bucket=self.input_bucket,
            job_key=self.job_key,
            media_keys=list(self.media_keys),
            received_at=self.received_at,
            updated_at=now,
            lease_until=now + lease,
            claimed_by_message=message_id,
            campaign_row=self.campaign_row,
            expires_at=int((now + timedelta(days=ttl_days)).timestamp()),
        )

    def submitted(
        self,
        spec: AvatarIVJob | AvatarVJob,
        request_id: str,
        parameters: dict[str, JsonValue],
        submitted_at: datetime,
        deadline: timedelta,
    ) -> RenderJob:
        """The job as the state machine carries it, once Segmind accepted it as `request_id`."""
        if self.video_key is None:
            raise ValueError("a job is submitted only once its video key is known")
        return RenderJob(
            job_id=self.job_id,
            model=spec.model,
            request_id=request_id,
            input_bucket=self.input_bucket,
            job_key=self.job_key,
            media_keys=list(self.media_keys),
            job_etag=self.job_etag,
            media_etags=dict(self.media_etags),
            video_key=self.video_key,
            video_extension="webm" if spec.video_extension == "webm" else "mp4",
            wants_captions=spec.wants_captions,
            title=getattr(spec, "video_title", None),
            parameters=parameters,
            metadata=dict(spec.metadata),
            received_at=self.received_at,
            submitted_at=submitted_at,
            deadline_at=submitted_at + deadline,
            estimated_cost_usd=self.estimated_cost_usd,
            spend_day=self.spend_day,
            campaign_row=self.campaign_row,
        )

    def terminal_record(self, ending: Ending, now: datetime, ttl_days: int, previous: JobRecord | None) -> JobRecord:
        base = previous.model_dump() if previous else {}
        base.update(
            job_id=self.job_id,
            status=ending.status,
            model=self.model,
            input_bucket=self.input_bucket,
            job_key=self.job_key,
            media_keys=list(self.media_keys),
            request_id=self.request_id,
            submitted_at=self.submitted_at,
            received_at=self.received_at,
            updated_at=now,
            completed_at=now,
            error_code=ending.error_code,
            error_message=ending.error_message,
            output_keys=ending.output_keys,
            lease_until=None,
            cost_usd=ending.cost_usd,
            cost_source=ending.cost_source,
            campaign_row=self.campaign_row or (previous.campaign_row if previous else None),
            expires_at=int((now + timedelta(days=ttl_days)).timestamp()),
        )
        base.pop("notified_status", None)
        return JobRecord.model_validate(base)


@dataclass(frozen=True)
class Ending:
    """How a job ended, as its terminal record keeps it."""

    status: JobStatus
    cost_usd: Decimal
    cost_source: CostSource
    output_keys: list[str] = field(default_factory=list)
    error_code: str | None = None
    error_message: str | None = None
