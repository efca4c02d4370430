"""`avatar-pipeline campaign status NAME|KEY [--watch]`: how far a deployed stack's campaign has got.

Read-only, from CampaignsTable (the campaign's record and its rows, through the pipeline's own adapter):
totals, a progress bar, the rows that failed or were skipped, and the report's keys once it is written.
A campaign is named by its key (`inbox/<dir>/<name>.campaign.json`, also as `s3://BUCKET/...` or as
its `processed/` or `failed/` key) or by `<dir>/<name>`; its id is derived from the input bucket and
that key exactly as the split derives it, so no scan is needed.

A campaign with a sample gate (approve_after) says how many rows it holds and, once the sample is
ready, how to approve or reject it; `--watch` then waits for the decision (up to `--timeout`).

A campaign refused as a whole (an unreadable file, a template naming a missing column) has no rows:
the split writes `failed/<dir>/<name>.campaign.error.json` to the input bucket instead, and that
report is what `status` then shows (so `--watch` ends on it rather than waiting forever).
"""

from __future__ import annotations

import posixpath
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TextIO

import boto3
from botocore.exceptions import ClientError

from avatar_pipeline.adapters.campaigns_table import CampaignsTable
from avatar_pipeline.campaigns.records import (
    OPEN_GATES,
    CampaignErrorReport,
    CampaignRecord,
    CampaignStatus,
    RowCounts,
    RowRecord,
    RowStatus,
    SampleGate,
    derive_campaign_id,
)
from avatar_pipeline.keys import (
    CAMPAIGN_SUFFIX,
    FAILED_PREFIX,
    INBOX_PREFIX,
    PROCESSED_PREFIX,
    REPORT_FORMATS,
    archived_key,
    campaign_approval_key,
    campaign_rejection_key,
    campaign_report_key,
    is_campaign_file_key,
    relative_to_inbox,
)
from avatar_pipeline.money import usd

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

DEFAULT_INTERVAL_SECONDS = 5.0
BAR_WIDTH = 40
MAX_PROBLEM_ROWS = 10  # the rest are in report.json; a terminal is not the place for 10,000 rows
_MESSAGE_WIDTH = 90
# The campaign is over: nothing more will change until it is uploaded again.
ENDED = frozenset({CampaignStatus.COMPLETED, CampaignStatus.PLANNED, CampaignStatus.FAILED})
_CLEAR_SCREEN = "\x1b[H\x1b[2J"


class Outcome(StrEnum):
    FOUND = "FOUND"  # shown (watched: it has ended)
    UNKNOWN = "UNKNOWN"  # no such campaign
    TIMED_OUT = "TIMED_OUT"  # watched until --timeout, still going
    INTERRUPTED = "INTERRUPTED"  # Ctrl-C


# Exit status: 1 for "not what you asked for" (no such campaign, or not ended in time), 130 as a shell
# reports SIGINT.
EXIT_STATUS = {Outcome.FOUND: 0, Outcome.UNKNOWN: 1, Outcome.TIMED_OUT: 1, Outcome.INTERRUPTED: 130}


class CampaignNameError(ValueError):
    """NAME|KEY names no campaign file: bad usage (exit 2)."""


def campaign_key_of(reference: str) -> tuple[str | None, str]:
    """(the bucket, if the reference names one; the campaign file's key in inbox/)."""
    name, bucket = reference.strip(), None
    if name.startswith("s3://"):
        bucket, _, name = name.removeprefix("s3://").partition("/")
        if not bucket or not name:
            raise CampaignNameError(f"{reference!r} is not s3://BUCKET/inbox/<dir>/<name>{CAMPAIGN_SUFFIX}")
    # The keys a campaign's notification names once its files left inbox/.
    for prefix in (PROCESSED_PREFIX, FAILED_PREFIX):
        if name.startswith(prefix):
            name = INBOX_PREFIX + name.removeprefix(prefix)
    if not name.startswith(INBOX_PREFIX):
        name = INBOX_PREFIX + name
    if name.endswith(".json") and not name.endswith(CAMPAIGN_SUFFIX):
        raise CampaignNameError(f"{reference!r} is a job file, not a campaign (`avatar-pipeline status` shows jobs)")
    if not name.endswith(CAMPAIGN_SUFFIX):
        name += CAMPAIGN_SUFFIX
    segments = name.split("/")
    if not is_campaign_file_key(name) or any(s in ("", ".", "..") for s in segments) or "\\" in name:
        raise CampaignNameError(
            f"{reference!r} names no campaign: give inbox/<dir>/<name>{CAMPAIGN_SUFFIX} or <dir>/<name>"
        )
    return bucket, name


@dataclass(frozen=True)
class RefusedCampaign:
    """The split's error report for a campaign refused as a whole, and when it was written."""

    report_key: str
    report: CampaignErrorReport
    written_at: datetime


@dataclass(frozen=True)
class CampaignProgress:
    """What `status` shows: the current run's totals, from the record's counters (as report.json counts)."""

    campaign_key: str
    status: CampaignStatus
    dry_run: bool
    started_at: datetime | None
    rows: int  # every row once the split has read them all; the rows entered so far before that
    split_done: bool
    counts: RowCounts
    problems: list[RowRecord] = field(default_factory=list)  # the first few FAILED or SKIPPED rows
    problem_count: int = 0
    report_keys: list[str] = field(default_factory=list)  # written, once the campaign has completed
    refused: RefusedCampaign | None = None
    gate: SampleGate | None = None  # approve_after: the sample gate's state in this run
    held: int = 0  # rows the open gate holds back (not counted as pending)

    @property
    def pending(self) -> int:
        return max(self.rows - self.counts.terminal - self.held, 0)

    @property
    def ended(self) -> bool:
        return self.status in ENDED


@dataclass
class CampaignReader:
    """Reads one campaign of a deployed stack: its record and rows, its report or its error report."""

    table: CampaignsTable
    s3: S3Client
    input_bucket: str
    output_bucket: str | None
    campaign_key: str

    def read(self) -> CampaignProgress | None:
        """The campaign as it stands (None: no such campaign, neither split nor refused)."""
        record = self.table.get(derive_campaign_id(self.input_bucket, self.campaign_key))
        refused = None if record is not None and record.split_done else self._refusal(record)
        if record is None:
            return refused_progress(self.campaign_key, refused) if refused else None
        # The rows only for what the record's counters cannot say: how many rows the split has entered
        # so far, and which rows failed or were skipped (a Query of the index rows_in_order, 500 rows a
        # page; a campaign going well costs one GetItem a look).
        wanted = not record.split_done or record.counts.failed + record.counts.skipped > 0
        rows = self.table.rows(record.campaign_id) if wanted else iter(())
        progress = progress_of(record, rows, refused)
        if progress.status in (CampaignStatus.COMPLETED, CampaignStatus.PLANNED):
            progress = replace(progress, report_keys=self._written_reports())
        return progress

    def _refusal(self, record: CampaignRecord | None) -> RefusedCampaign | None:
        """The error report of a refusal of this run (or of any upload, while no run is recorded)."""
        key = archived_key(self.campaign_key, succeeded=False).removesuffix(".json") + ".error.json"
        try:
            found = self.s3.get_object(Bucket=self.input_bucket, Key=key)
        except ClientError:
            return None  # none (NoSuchKey), or not ours to read: the table's view stands
        report = CampaignErrorReport.model_validate_json(found["Body"].read())
        refused = RefusedCampaign(key, report, found["LastModified"])
        if record is not None and refused.written_at < record.started_at:
            return None  # an earlier upload's refusal; this run is still splitting
        return refused

    def _written_reports(self) -> list[str]:
        keys = [campaign_report_key(self.campaign_key, fmt) for fmt in REPORT_FORMATS]
        if self.output_bucket is None:
            return keys  # unchecked: the names DESIGN.md section 7 fixes
        return [f"s3://{self.output_bucket}/{key}" for key in keys if self._exists(self.output_bucket, key)]

    def _exists(self, bucket: str, key: str) -> bool:
        try:
            self.s3.head_object(Bucket=bucket, Key=key)
        except ClientError:
            return False
        return True


def progress_of(record: CampaignRecord, rows: Iterable[RowRecord], refused: RefusedCampaign | None) -> CampaignProgress:
    """The record's counters, the rows entered into its run so far, and the first rows with problems."""
    entered, problems, problem_count = 0, [], 0
    for row in rows:
        if row.run_id != record.run_id:
            continue  # an earlier run's row the current split has not reached yet
        entered += 1
        if row.status in (RowStatus.FAILED, RowStatus.SKIPPED):
            problem_count += 1
            problems.append(row)
    status = CampaignStatus.FAILED if refused is not None else record.status
    return CampaignProgress(
        campaign_key=record.campaign_key,
        status=status,
        dry_run=record.dry_run,
        started_at=record.started_at,
        rows=record.rows_total if record.rows_total is not None else entered,
        split_done=record.split_done,
        counts=record.counts,
        problems=sorted(problems, key=lambda row: row.number)[:MAX_PROBLEM_ROWS],
        problem_count=problem_count,
        refused=refused,
        gate=record.gate,
        held=record.held if record.gate in OPEN_GATES else 0,
    )


def refused_progress(campaign_key: str, refused: RefusedCampaign) -> CampaignProgress:
    return CampaignProgress(
        campaign_key=campaign_key,
        status=CampaignStatus.FAILED,
        dry_run=False,
        started_at=None,
        rows=0,
        split_done=False,
        counts=RowCounts(),
        refused=refused,
    )


# --- rendering ------------------------------------------------------------------------------------------


def progress_bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """[#######.......]  50%: whole characters only, and 100% only when every row has ended."""
    fraction = 1.0 if total == 0 else min(done / total, 1.0)
    filled = int(fraction * width)
    percent = int(fraction * 100)  # rounded down: 9,999 of 10,000 rows is 99%, not 100%
    return f"[{'#' * filled}{'.' * (width - filled)}] {percent:3d}%"


def render(progress: CampaignProgress) -> list[str]:
    lines = [_headline(progress)]
    if progress.refused is not None:
        return lines + _refusal_lines(progress.refused)
    ended = progress.counts.terminal
    of = f"{progress.rows:,}" if progress.split_done else f"{progress.rows:,} so far (still splitting)"
    lines.append(f"{progress_bar(ended, progress.rows)}  {ended:,} of {of} rows ended")
    c = progress.counts
    lines.append(
        f"rows {progress.rows:,}   succeeded {c.succeeded:,}   failed {c.failed:,}   skipped {c.skipped:,}   "
        + (f"planned {c.planned:,}" if progress.dry_run else f"pending {progress.pending:,}")
        + (f"   held {progress.held:,}" if progress.held else "")
    )
    if progress.dry_run:
        lines.append(f"dry run: nothing is submitted; estimated cost {usd(c.estimated_cost_usd)}")
    else:
        spent = "cost" if progress.ended else "cost so far"
        lines.append(f"{spent} {usd(c.cost_usd)} (estimated {usd(c.estimated_cost_usd)} for the rows submitted)")
    lines += _sample_lines(progress) + _problem_lines(progress)
    if progress.report_keys:
        lines += ["report:", *(f"  {key}" for key in progress.report_keys)]
    elif progress.counts.terminal >= progress.rows and progress.split_done and not progress.ended:
        lines.append("every row has ended: the report is being written")
    return lines


def _headline(progress: CampaignProgress) -> str:
    started = f" (started {progress.started_at:%Y-%m-%d %H:%M:%S %Z})" if progress.started_at else ""
    dry = " dry run" if progress.dry_run else ""
    return f"{progress.campaign_key}: {progress.status.value}{dry}{started}"


def _sample_lines(progress: CampaignProgress) -> list[str]:
    if progress.gate is SampleGate.SAMPLING:
        return [f"sample: its rows render first; {progress.held:,} rows are held until a person approves"]
    if progress.gate is not SampleGate.READY:
        return []
    name = relative_to_inbox(progress.campaign_key).removesuffix(CAMPAIGN_SUFFIX)
    return [
        f"sample ready, {progress.held:,} rows held: look at the report, then decide",
        f"  approve: avatar-pipeline campaign approve {name} (or drop {campaign_approval_key(progress.campaign_key)})",
        f"  reject:  avatar-pipeline campaign reject {name} (or drop {campaign_rejection_key(progress.campaign_key)})",
    ]


def _refusal_lines(refused: RefusedCampaign) -> list[str]:
    report = refused.report
    return [
        f"refused as a whole at {refused.written_at:%Y-%m-%d %H:%M:%S %Z}; nothing was submitted",
        f"{report.error_code}: {report.error_message}",
        f"what to do: {report.what_to_do}",
        f"error report: {refused.report_key} (input bucket)",
    ]


def _problem_lines(progress: CampaignProgress) -> list[str]:
    if not progress.problems:
        return []
    shown = len(progress.problems)
    more = f", the first {shown}; report.json has them all" if shown < progress.problem_count else ""
    table = [("ROW", "ROW ID", "STATUS", "CODE", "MESSAGE")]
    for row in progress.problems:
        message = (row.error_message or "").replace("\n", " ")
        if len(message) > _MESSAGE_WIDTH:
            message = message[: _MESSAGE_WIDTH - 3] + "..."
        table.append((str(row.number), row.row_id.split("#", 1)[0], row.status.value, row.error_code or "-", message))
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    formatted = ["  ".join(cell.ljust(width) for cell, width in zip(line[:4], widths, strict=True)) for line in table]
    body = [f"  {text}  {line[4]}".rstrip() for text, line in zip(formatted, table, strict=True)]
    return [f"rows that failed or were skipped ({progress.problem_count:,}{more}):", *body]


# --- the command ----------------------------------------------------------------------------------------


@dataclass
class Screen:
    """Where the blocks go: redrawn in place on a terminal; appended, only when they change, elsewhere
    (a log or a pipe gets one block per change, not one per refresh)."""

    console: TextIO
    last: list[str] = field(default_factory=list)

    def show(self, lines: list[str], redraw: bool) -> None:
        if lines == self.last:
            return
        if redraw and _is_terminal(self.console):
            self.console.write(_CLEAR_SCREEN)
        elif self.last:
            self.console.write("\n")
        self.console.write("\n".join(lines) + "\n")
        self.console.flush()
        self.last = lines


def _is_terminal(console: TextIO) -> bool:
    isatty: Callable[[], bool] | None = getattr(console, "isatty", None)
    return bool(isatty and isatty())


@dataclass(frozen=True)
class Watch:
    """--watch: read again every `interval` seconds until the campaign has ended or `timeout` passed."""

    interval: float
    timeout: float
    sleep: Callable[[float], Any] = time.sleep
    clock: Callable[[], float] = time.monotonic


def follow(read: Callable[[], CampaignProgress | None], console: TextIO, watch: Watch | None = None) -> Outcome:
    """Show the campaign once, or follow it (`watch`) until it has ended, the timeout passed or Ctrl-C
    (quietly: the campaign goes on without us)."""
    screen = Screen(console)
    deadline = watch.clock() + watch.timeout if watch else 0.0
    try:
        while True:
            progress = read()
            if progress is None:
                return Outcome.UNKNOWN
            screen.show(render(progress), redraw=watch is not None)
            if watch is None or progress.ended:
                return Outcome.FOUND
            if watch.clock() >= deadline:
                return Outcome.TIMED_OUT
            watch.sleep(watch.interval)
    except KeyboardInterrupt:
        console.write("\n")
        return Outcome.INTERRUPTED


def reader_for(reference: str, input_bucket: str, output_bucket: str | None, campaigns_table: str) -> CampaignReader:
    bucket, key = campaign_key_of(reference)
    table = CampaignsTable(boto3.resource("dynamodb").Table(campaigns_table))
    return CampaignReader(table, boto3.client("s3"), bucket or input_bucket, output_bucket, key)


def unknown_line(reader: CampaignReader, campaigns_table: str) -> str:
    where = posixpath.join(f"s3://{reader.input_bucket}", reader.campaign_key)
    return f"no campaign {where} in {campaigns_table} (not uploaded, not split yet, or another stack's)"
