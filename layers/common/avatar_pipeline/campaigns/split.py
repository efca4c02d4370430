"""Splitting a campaign: its file arrived in inbox/ -> one job per valid row, handed to Submit.

Idempotent and at constant memory:
* The campaign (id from bucket and key) starts a run per upload (run id from ETag and sequencer); a
  redelivered or retried split finds its run and enters each row again, which counts nothing twice.
* Every row's job id derives from bucket, campaign key and row id, so a row handed to Submit twice
  is one job: Submit's claim refuses a second submit for the same id.
* The rows file is read twice, as a stream: once to find what makes the whole campaign invalid (a
  rows file that is not UTF-8 CSV, say) before anything is entered, then to enter and hand out rows.
* A split that nears its time limit (10,000 rows take a few minutes of DynamoDB transactions) stops
  between rows and puts a cursor on its own queue; the next invocation skips the rows up to it.
* Invalid rows are entered FAILED at once with their code, rows past max_spend_usd SKIPPED
  (SPEND_LIMIT), a dry run's rows PLANNED; rows that SUCCEEDED in an earlier run stay so (a resume).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TypedDict

from avatar_pipeline.campaigns.complete import fail_campaign, settle, try_complete
from avatar_pipeline.campaigns.plan import SpendCeiling, price_of
from avatar_pipeline.campaigns.records import (
    OPEN_GATES,
    CampaignRecord,
    CampaignStatus,
    RowMessage,
    RowRecord,
    RowStatus,
    SampleGate,
    SplitCursor,
    derive_campaign_id,
    derive_run_id,
)
from avatar_pipeline.campaigns.rows import (
    RowFailure,
    RowJob,
    RowSource,
    campaign_rows,
    csv_source,
    inline_source,
    jsonl_source,
)
from avatar_pipeline.campaigns.spec import MAX_CAMPAIGN_FILE_BYTES, CampaignSpec, parse_campaign_file
from avatar_pipeline.domain.context import InboxObject
from avatar_pipeline.domain.ports import ObjectMissing, ObjectReplaced, ObjectTooLarge, SplitPorts, plain_etag
from avatar_pipeline.errors import InvalidCampaign, MediaTooLarge, MissingMedia, PipelineError, UnsupportedMedia
from avatar_pipeline.keys import UnsafeKey, is_campaign_file_key, resolve_media_key
from avatar_pipeline.media import SNIFF_BYTES, sniff_audio, sniff_image
from avatar_pipeline.money import ZERO
from avatar_pipeline.observability import logger

QUEUE_BATCH = 10  # SQS SendMessageBatch takes ten
# With this much of its invocation left a split stops between rows and goes on in the next one
# (SplitCursor): a row's transaction and its share of a batch send take milliseconds, and the reserve
# also covers a slow S3 read of the next chunk of the rows file.
SPLIT_TIME_RESERVE_SECONDS = 60


class SplitResult(StrEnum):
    SPLIT = "SPLIT"  # rows entered and handed out (the campaign may have completed already)
    REJECTED = "REJECTED"  # the campaign was invalid as a whole: nothing submitted
    DUPLICATE = "DUPLICATE"  # this run completed already
    IGNORED = "IGNORED"  # not a campaign file, or an upload since replaced or removed


class _RunNames(TypedDict):
    """Which run of which campaign: what its record and each of its row messages are named by."""

    campaign_id: str
    bucket: str
    campaign_key: str
    run_id: str


@dataclass(frozen=True)
class Campaign:
    """One run of a campaign, as the split works on it."""

    obj: InboxObject
    campaign_id: str
    run_id: str
    etag: str

    @property
    def names(self) -> _RunNames:
        return _RunNames(
            campaign_id=self.campaign_id, bucket=self.obj.bucket, campaign_key=self.obj.key, run_id=self.run_id
        )


def split_campaign(
    obj: InboxObject,
    ports: SplitPorts,
    time_left: Callable[[], float] | None = None,
    cursor: SplitCursor | None = None,
) -> SplitResult | SplitCursor:
    """`time_left`: seconds left in the invocation (None: no limit). With less than
    SPLIT_TIME_RESERVE_SECONDS left the split stops between rows and returns where to go on (the
    caller puts that on the split queue); `cursor` is such a place to go on from."""
    if obj.bucket != ports.settings.input_bucket or not is_campaign_file_key(obj.key):
        return SplitResult.IGNORED
    opened = _open(obj, ports)
    if opened is None:
        return SplitResult.IGNORED
    campaign, raw = opened
    spec: CampaignSpec | None = None
    try:
        spec = parse_campaign_file(raw)
        record = _start(campaign, spec, ports)
        if record.completed_run == campaign.run_id:
            return SplitResult.DUPLICATE
        if record.run_id == campaign.run_id and record.split_done:
            # Redelivered after every row was handed out: only the completion may be owed.
            try_complete(campaign.campaign_id, campaign.run_id, ports)
            return SplitResult.DUPLICATE
        if cursor is None:
            _check_rows(campaign, spec, ports)
        entered = _enter_rows(campaign, spec, ports, _Deadline(time_left), cursor)
    except InvalidCampaign as error:
        fail_campaign(campaign.obj.bucket, campaign.obj.key, campaign.etag, spec, error, ports)
        return SplitResult.REJECTED
    if isinstance(entered, SplitCursor):
        logger.info("the split goes on in its next invocation", extra={"after_row": entered.after_row})
        return entered
    _bound_the_sample(campaign, ports)
    ports.campaigns.finish_split(campaign.campaign_id, campaign.run_id, entered, ports.clock.now())
    settle(campaign.campaign_id, campaign.run_id, ports)  # else the first report: every row PENDING
    return SplitResult.SPLIT


def _bound_the_sample(campaign: Campaign, ports: SplitPorts) -> None:
    """A sample that holds rows back waits for a person's decision for SAMPLE_WAIT_DAYS at most, counted
    from the split (campaigns/approval.py expire_sample); set before the split is marked done, so a
    redelivery sets it if a run died in between."""
    record = ports.campaigns.get(campaign.campaign_id)
    if ports.deadlines is None or record is None or record.gate not in OPEN_GATES or record.held == 0:
        return
    deadline = record.started_at + timedelta(days=ports.settings.sample_wait_days)
    ports.deadlines.set(campaign.campaign_id, campaign.run_id, deadline)


def _open(obj: InboxObject, ports: SplitPorts) -> tuple[Campaign, bytes] | None:
    """The campaign file the event names, as uploaded then (None: replaced or removed since)."""
    head = ports.storage.head(obj.bucket, obj.key)
    if head is None or (obj.etag and head.etag != plain_etag(obj.etag)):
        logger.info("campaign file replaced or removed since the event; its own event covers it")
        return None
    campaign = Campaign(
        obj, derive_campaign_id(obj.bucket, obj.key), derive_run_id(head.etag, obj.sequencer), head.etag
    )
    logger.set_correlation_id(campaign.campaign_id)
    try:
        raw = ports.storage.read(obj.bucket, obj.key, MAX_CAMPAIGN_FILE_BYTES + 3, if_match=head.etag)
    except (ObjectMissing, ObjectReplaced):
        return None
    except ObjectTooLarge as error:
        raw = b"x" * error.size  # parse_campaign_file names the limit
    return campaign, raw


@dataclass(frozen=True)
class _Deadline:
    time_left: Callable[[], float] | None

    def near(self) -> bool:
        return self.time_left is not None and self.time_left() < SPLIT_TIME_RESERVE_SECONDS


def _start(campaign: Campaign, spec: CampaignSpec, ports: SplitPorts) -> CampaignRecord:
    now = ports.clock.now()
    rows_key = _rows_key(campaign.obj.key, spec)
    return ports.campaigns.start_run(
        CampaignRecord(
            **campaign.names,
            campaign_etag=campaign.etag,
            status=CampaignStatus.RUNNING,
            dry_run=spec.dry_run,
            notify_rows=spec.notify_rows,
            rows_key=rows_key,
            gate=SampleGate.SAMPLING if spec.approve_after and not spec.dry_run else None,
            started_at=now,
            updated_at=now,
        )
    )


def _rows_key(campaign_key: str, spec: CampaignSpec) -> str | None:
    if spec.rows_file is None:
        return None
    try:
        return resolve_media_key(campaign_key, spec.rows_file)
    except UnsafeKey as error:
        raise InvalidCampaign(f"rows: {error}") from None


@contextmanager
def _source(campaign: Campaign, spec: CampaignSpec, ports: SplitPorts) -> Iterator[RowSource]:
    rows_key = _rows_key(campaign.obj.key, spec)
    if rows_key is None:
        assert not isinstance(spec.rows, str)
        yield inline_source(spec.rows)
        return
    try:
        stream = ports.storage.open_stream(campaign.obj.bucket, rows_key)
    except ObjectMissing:
        raise InvalidCampaign(f"the rows file {spec.rows_file} was not found beside the campaign file") from None
    # utf-8-sig drops a BOM; newline="" leaves CRLF and quoted line breaks to the csv module.
    with io.TextIOWrapper(stream, encoding="utf-8-sig", newline="") as text:
        name = spec.rows_file or rows_key
        yield csv_source(text, name) if rows_key.lower().endswith(".csv") else jsonl_source(text, name)


def _check_rows(campaign: Campaign, spec: CampaignSpec, ports: SplitPorts) -> None:
    """The first pass: what fails the campaign as a whole is found before any row is entered."""
    with _source(campaign, spec, ports) as source:
        for _ in campaign_rows(spec, campaign.obj.key, campaign.obj.bucket, source, None):
            pass


@dataclass
class _Outbox:
    """Row messages and media keys, sent in batches as the rows stream by."""

    ports: SplitPorts
    campaign_id: str
    messages: list[RowMessage] = field(default_factory=list)
    media: set[str] = field(default_factory=set)
    new_media: list[str] = field(default_factory=list)

    def add(self, message: RowMessage) -> None:
        self.messages.append(message)
        fresh = [key for key in message.media_keys.values() if key not in self.media]
        self.media.update(fresh)
        self.new_media.extend(fresh)
        if len(self.messages) >= QUEUE_BATCH:
            self.flush()

    def flush(self) -> None:
        # Media first: a row's media must be the campaign's before its job can end and the campaign complete.
        if self.new_media:
            self.ports.campaigns.add_media(self.campaign_id, self.new_media)
            self.new_media = []
        if self.messages:
            self.ports.rows.send(self.messages)
            self.messages = []


def _enter_rows(
    campaign: Campaign, spec: CampaignSpec, ports: SplitPorts, deadline: _Deadline, cursor: SplitCursor | None
) -> int | SplitCursor:
    """Enter and hand out the rows after the cursor: how many rows the campaign has, or a cursor when
    time ran short (every row up to it entered and its message sent)."""
    ceiling = SpendCeiling(spec.max_spend_usd, cursor.committed_usd if cursor else ZERO)
    sample = _Sample(None if spec.dry_run else spec.approve_after, cursor.sample_taken if cursor else 0)
    outbox = _Outbox(ports, campaign.campaign_id)
    check = S3MediaCheck(ports, campaign.obj.bucket)
    start = last = cursor.after_row if cursor else 0
    with _source(campaign, spec, ports) as source:
        for row in campaign_rows(spec, campaign.obj.key, campaign.obj.bucket, source, check, after_row=start):
            # At least one row per invocation, so a split always gets on.
            if last > start and deadline.near():
                outbox.flush()
                return _cursor(campaign, last, ceiling, sample)
            last = row.number
            _enter_row(campaign, spec, row, ceiling, sample, outbox)
    outbox.flush()
    return last


@dataclass
class _Sample:
    """approve_after: the first `limit` rows that would render are the sample; the rest are held."""

    limit: int | None
    taken: int = 0

    def holds(self) -> bool:
        return self.limit is not None and self.taken >= self.limit


def _enter_row(
    campaign: Campaign,
    spec: CampaignSpec,
    row: RowJob | RowFailure,
    ceiling: SpendCeiling,
    sample: _Sample,
    outbox: _Outbox,
) -> None:
    ports = outbox.ports
    record = _row_record(campaign, spec, row, ceiling, ports)
    if isinstance(row, RowJob) and record.status is RowStatus.PENDING and sample.holds():
        # Held back with its message, handed out as it is if the sample is approved.
        record = record.model_copy(update={"held_message": _message(campaign, spec, row).model_dump_json()})
    entered = ports.campaigns.enter_row(campaign.campaign_id, record)
    if entered.status is RowStatus.PENDING and entered.held_message is None and isinstance(row, RowJob):
        sample.taken += 1
        outbox.add(_message(campaign, spec, row))


def _cursor(campaign: Campaign, after_row: int, ceiling: SpendCeiling, sample: _Sample) -> SplitCursor:
    obj = campaign.obj
    return SplitCursor(
        bucket=obj.bucket,
        key=obj.key,
        etag=campaign.etag,
        sequencer=obj.sequencer,
        event_time=obj.event_time,
        after_row=after_row,
        committed_usd=ceiling.committed,
        sample_taken=sample.taken,
    )


def _row_record(
    campaign: Campaign, spec: CampaignSpec, row: RowJob | RowFailure, ceiling: SpendCeiling, ports: SplitPorts
) -> RowRecord:
    if isinstance(row, RowFailure):
        # A repeated row id must not touch the earlier row's record: it is kept under its number.
        row_id = row.row_id if row.job_id is not None else f"{row.row_id}#{row.number}"
        return RowRecord(
            row_id=row_id,
            number=row.number,
            run_id=campaign.run_id,
            status=RowStatus.FAILED,
            job_id=row.job_id,
            error_code=row.code.value,
            error_message=row.message,
        )
    price = price_of(row, ports.settings.prices)
    status = RowStatus.PLANNED if spec.dry_run else RowStatus.PENDING
    refusal = None if ceiling.admits(price) else ceiling.refusal(row, price)
    if refusal is not None:
        status = RowStatus.SKIPPED
    return RowRecord(
        row_id=row.row_id,
        number=row.number,
        run_id=campaign.run_id,
        status=status,
        job_id=row.job_id,
        video_key=row.video_key,
        error_code=refusal.code.value if refusal else None,
        error_message=refusal.message if refusal else None,
        estimated_cost_usd=price if refusal is None else Decimal(0),
    )


def _message(campaign: Campaign, spec: CampaignSpec, row: RowJob) -> RowMessage:
    return RowMessage(
        **campaign.names,
        row_id=row.row_id,
        number=row.number,
        job_id=row.job_id,
        job=row.spec.model_dump(mode="json", exclude_none=True),
        media_keys=row.media_keys,
        video_key=row.video_key,
        notify=spec.notify_rows,
    )


@dataclass
class S3MediaCheck:
    """A row's media in the input bucket, looked at once per file however many rows share it. A campaign
    file is uploaded after its rows and media: what is missing then is MISSING_MEDIA for its rows."""

    ports: SplitPorts
    bucket: str
    verdicts: dict[tuple[str, bool], PipelineError | None] = field(default_factory=dict)

    def __call__(self, key: str, is_photo: bool) -> None:
        if (key, is_photo) not in self.verdicts:
            self.verdicts[key, is_photo] = self._verdict(key, is_photo)
        problem = self.verdicts[key, is_photo]
        if problem is not None:
            raise problem

    def _verdict(self, key: str, is_photo: bool) -> PipelineError | None:
        settings = self.ports.settings
        info = self.ports.storage.head(self.bucket, key)
        if info is None:
            return MissingMedia(f"{key} was not found beside the campaign file (upload media before the campaign)")
        limit = settings.max_photo_bytes if is_photo else settings.max_audio_bytes
        if info.size == 0:
            return UnsupportedMedia(f"{key} is empty")
        if info.size > limit:
            return MediaTooLarge(f"{key} is {info.size} bytes; the limit is {limit} bytes")
        head = self.ports.storage.read_prefix(self.bucket, key, SNIFF_BYTES)
        if (sniff_image(head) if is_photo else sniff_audio(head)) is None:
            expected = "a PNG, JPEG or WebP image" if is_photo else "WAV, MP3, M4A, OGG or FLAC audio"
            return UnsupportedMedia(f"{key} is not {expected} (checked by its content)")
        return None


def resume_split(
    cursor: SplitCursor, ports: SplitPorts, time_left: Callable[[], float] | None = None
) -> SplitResult | SplitCursor:
    """Go on with a split from the cursor its previous invocation left on the split queue."""
    obj = InboxObject(
        bucket=cursor.bucket,
        key=cursor.key,
        etag=cursor.etag,
        version_id=None,
        sequencer=cursor.sequencer,
        event_time=cursor.event_time,
    )
    return split_campaign(obj, ports, time_left, cursor)
