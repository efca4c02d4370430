"""A campaign's report (DESIGN section 7): report.json, report.csv and report.html beside each other.

The models are the report.json schema. ReportWriter writes the three files a row at a time, into
spooled temporary files (in memory while small, on disk beyond SPOOL_BYTES), while it tallies the
totals: a report of 10,000 rows costs no more memory than one of 100, and the rows pass once. The
totals and status, known only at the end, head report.json and report.html; the rows follow, in the order they came.

report.html is one self-contained page (inline CSS and script, nothing fetched from the network) whose
players name each video by its path relative to the page, so the folder plays the same after
`aws s3 sync` of the output bucket and in a local run's `OUT/outputs/`. At 10,000 rows it stays light:
a player exists only while its row is near the screen (an IntersectionObserver makes and releases
them), and every string a user wrote is escaped.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from base64 import b64encode
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from html import escape
from tempfile import SpooledTemporaryFile
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, model_validator

from avatar_pipeline.money import ZERO, Money, usd

# Each file stays in memory up to this size, then continues in a temporary file (Lambda's /tmp).
SPOOL_BYTES = 1024 * 1024


class CampaignStatus(StrEnum):
    PLANNED = "PLANNED"  # a dry run: validated and priced, nothing submitted
    RUNNING = "RUNNING"  # some row is not terminal yet
    COMPLETED = "COMPLETED"  # every row is terminal


class RowStatus(StrEnum):
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    SKIPPED = "SKIPPED"  # never submitted on purpose (SPEND_LIMIT, NOT_APPROVED)
    PLANNED = "PLANNED"  # a dry run's row, or one waiting for approval
    PENDING = "PENDING"  # submitted or about to be, not finished


TERMINAL_ROW_STATUSES = frozenset({RowStatus.SUCCEEDED, RowStatus.FAILED, RowStatus.SKIPPED})
CSV_COLUMNS = ("row_id", "status", "error_code", "error_message", "job_id", "video_key", "cost_usd")


class ReportRow(BaseModel):
    """One row of report.json's `rows`."""

    # A row id is text (a CSV cell); the default one, the 1-based row number, may arrive as an int.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    row_id: str
    status: RowStatus
    error_code: str | None = None
    error_message: str | None = None
    job_id: str | None = None
    video_key: str | None = None
    cost_usd: Money | None = None


class RowResult(ReportRow):
    """What the campaign knows of a row: its report row plus its price estimate, which only the
    totals show (`estimated_cost_usd`)."""

    estimated_cost_usd: Money | None = None

    def report_row(self) -> ReportRow:
        return ReportRow.model_validate(self.model_dump(exclude={"estimated_cost_usd"}))


class ReportTotals(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rows: int = 0
    succeeded: int = 0
    failed: int = 0
    skipped: int = 0
    planned: int = 0
    estimated_cost_usd: Money = ZERO
    cost_usd: Money = ZERO


class CampaignReport(BaseModel):
    """report.json."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    campaign_key: str
    status: CampaignStatus
    dry_run: bool
    totals: ReportTotals
    rows: list[ReportRow]

    @model_validator(mode="after")
    def _totals_agree_with_rows(self) -> Self:
        tallied = _tally(self.rows)
        stated = self.totals.model_dump(include=set(tallied))
        if stated != tallied:
            raise ValueError(f"totals {stated} do not match the rows {tallied}")
        return self


def _tally(rows: list[ReportRow]) -> dict[str, Any]:
    """The totals the rows themselves determine (all but the estimate)."""
    statuses = Counter(row.status for row in rows)
    return {
        "rows": len(rows),
        "succeeded": statuses[RowStatus.SUCCEEDED],
        "failed": statuses[RowStatus.FAILED],
        "skipped": statuses[RowStatus.SKIPPED],
        "planned": statuses[RowStatus.PLANNED],
        "cost_usd": sum((row.cost_usd for row in rows if row.cost_usd is not None), ZERO),
    }


@dataclass(frozen=True)
class ReportSummary:
    """What heads the report: the campaign's status and totals."""

    status: CampaignStatus
    totals: ReportTotals


@dataclass(frozen=True)
class ReportFile:
    key: str
    body: IO[bytes]  # read from the start; open until the writer moves on to the next file
    content_type: str


class ReportWriter:
    """report.json, report.csv and report.html of one campaign, fed its rows' results in row order.

    Status: PLANNED for a dry run, COMPLETED once every row is terminal, else RUNNING. Use it as a
    context manager: `add` every row, then upload each of `files()`; the temporary files go on exit.
    """

    def __init__(self, campaign_key: str, folder_key: str, dry_run: bool = False) -> None:
        self.campaign_key = campaign_key
        self.dry_run = dry_run
        folder = folder_key.strip("/")
        self._prefix = f"{folder}/" if folder else ""
        self.page_key = f"{self._prefix}report.html"
        self._counts: Counter[RowStatus] = Counter()
        self._estimated = ZERO
        self._cost = ZERO
        self._json_rows = _spool()
        self._csv = _spool()
        self._html_rows = _spool()
        self._csv_line = io.StringIO()
        self._csv_writer = csv.writer(self._csv_line, lineterminator="\r\n")
        self._write_csv_row(CSV_COLUMNS)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        for spool in (self._json_rows, self._csv, self._html_rows):
            spool.close()

    def add(self, result: RowResult) -> None:
        row = result.report_row()
        self._counts[row.status] += 1
        self._estimated += result.estimated_cost_usd or ZERO
        self._cost += row.cost_usd or ZERO
        separator = b",\n    " if self._json_rows.tell() else b"\n    "
        self._json_rows.write(separator + row.model_dump_json().encode())
        cost = "" if row.cost_usd is None else str(row.cost_usd)
        cells = (row.row_id, row.status.value, row.error_code, row.error_message, row.job_id, row.video_key)
        self._write_csv_row([*(_inert_cell(cell) for cell in cells), cost])
        self._html_rows.write((_row_html(row, self.page_key) + "\n").encode())

    @property
    def summary(self) -> ReportSummary:
        counts = self._counts
        totals = ReportTotals(
            rows=counts.total(),
            succeeded=counts[RowStatus.SUCCEEDED],
            failed=counts[RowStatus.FAILED],
            skipped=counts[RowStatus.SKIPPED],
            planned=counts[RowStatus.PLANNED],
            estimated_cost_usd=self._estimated,
            cost_usd=self._cost,
        )
        finished = sum(counts[status] for status in TERMINAL_ROW_STATUSES)
        if self.dry_run:
            status = CampaignStatus.PLANNED
        else:
            status = CampaignStatus.COMPLETED if finished == totals.rows else CampaignStatus.RUNNING
        return ReportSummary(status, totals)

    def files(self) -> Iterator[ReportFile]:
        """report.json, report.csv and report.html for the campaign's folder of the output bucket, as
        UTF-8 with the content type each is served with; each is read before asking for the next."""
        summary = self.summary
        head = (
            f'{{\n  "campaign_key": {json.dumps(self.campaign_key)},\n  "status": "{summary.status.value}",\n'
            f'  "dry_run": {json.dumps(self.dry_run)},\n  "totals": {summary.totals.model_dump_json()},\n'
            '  "rows": ['
        )
        tail = "\n  ]\n}\n" if self._json_rows.tell() else "]\n}\n"
        with _joined(head, self._json_rows, tail) as body:
            yield ReportFile(f"{self._prefix}report.json", body, "application/json")
        with _joined("", self._csv, "") as body:
            yield ReportFile(f"{self._prefix}report.csv", body, "text/csv; charset=utf-8")
        with _joined(_page_head(self.campaign_key, summary, self.dry_run), self._html_rows, _PAGE_TAIL) as body:
            yield ReportFile(self.page_key, body, "text/html; charset=utf-8")

    def _write_csv_row(self, cells: Any) -> None:
        """RFC 4180 quoting and CRLF line ends (the csv module's), UTF-8 without a BOM."""
        self._csv_writer.writerow(cells)
        self._csv.write(self._csv_line.getvalue().encode())
        self._csv_line.seek(0)
        self._csv_line.truncate()


def _spool() -> SpooledTemporaryFile[bytes]:
    return SpooledTemporaryFile(max_size=SPOOL_BYTES, mode="w+b")


@contextmanager
def _joined(head: str, body: IO[bytes], tail: str) -> Iterator[IO[bytes]]:
    """A spooled file holding `head`, then everything `body` holds, then `tail`, read from the start."""
    with _spool() as joined:
        joined.write(head.encode())
        body.seek(0)
        shutil.copyfileobj(body, joined)
        joined.write(tail.encode())
        joined.seek(0)
        yield joined


# --- report.csv ----------------------------------------------------------------------------------------
# A cell that a spreadsheet would run as a formula (starting with = + - @, a tab or a CR) is prefixed
# with an apostrophe, as OWASP advises against CSV injection; costs are plain numbers.


def _inert_cell(value: str | None) -> str:
    if value is None:
        return ""
    return "'" + value if value.startswith(("=", "+", "-", "@", "\t", "\r")) else value


# --- report.html -------------------------------------------------------------------------------------


def relative_href(target_key: str, page_key: str) -> str:
    """The URL of the object `target_key`, relative to the page stored at `page_key` in the same
    bucket, each key segment percent-encoded (spaces, unicode, '#', '?', ':' all stay part of a name).

    Keys are compared segment by segment, never normalised: an S3 key is a name, not a path.
    """
    folder = page_key.split("/")[:-1]
    target = target_key.split("/")
    common = 0
    while common < min(len(folder), len(target) - 1) and folder[common] == target[common]:
        common += 1
    segments = [".."] * (len(folder) - common) + [quote(part, safe="") for part in target[common:]]
    href = "/".join(segments)
    # A key with an empty first segment ("/a.mp4") must not become a root-relative URL.
    return "./" + href if href.startswith("/") else href


_STYLE = """
:root{color-scheme:light dark;font:14px/1.4 system-ui,sans-serif}
body{margin:1.5rem}
h1{font-size:1.25rem;margin:0 0 .25rem}
.key{color:#666;font-family:ui-monospace,monospace;word-break:break-all}
.totals{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;margin:1rem 0}
.totals div{min-width:7rem}.totals b{display:block;font-size:1.3rem}
.filter{margin:.5rem 0 1rem}.filter button{margin-right:.25rem}
.filter button[aria-pressed=true]{font-weight:bold}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid #8884;padding:.35rem .5rem;text-align:left;vertical-align:top}
td.error{max-width:32rem;word-break:break-word}td.cost{text-align:right;white-space:nowrap}
.status{font-weight:600}.SUCCEEDED .status{color:#1a7f37}.FAILED .status{color:#cf222e}
.SKIPPED .status,.PLANNED .status,.PENDING .status{color:#9a6700}
.player,video{display:block;width:240px;height:135px;background:#000}
td.video a{font-size:.85em;word-break:break-all}
td.video[data-state=missing]::after{content:"video file not found";display:block;color:#cf222e}
table[data-filter=SUCCEEDED] tbody tr:not(.SUCCEEDED),table[data-filter=FAILED] tbody tr:not(.FAILED),
table[data-filter=SKIPPED] tbody tr:not(.SKIPPED),table[data-filter=OTHER] tbody tr:not(.PLANNED,.PENDING)
{display:none}
"""

# Ten thousand <video> elements cost a browser minutes of work even with preload="none", so the page
# holds none up front: a video cell carries its video's relative path (data-src, and a plain link
# that works without the script), and a player is made when the row comes near the screen, and let
# go (unless it is playing) when the row is far away again. Each video cell says how its player
# fared, for people and for browser tests: data-state is "idle" (no player yet), "loading", "ready"
# (the first frame is there) or "missing" (the file could not be loaded).
_SCRIPT = """
(function(){
function make(cell){
 var v=document.createElement("video");
 v.controls=true;v.preload="metadata";v.playsInline=true;
 v.addEventListener("loadeddata",function(){if(v.isConnected)cell.dataset.state="ready";});
 v.addEventListener("error",function(){if(v.isConnected)cell.dataset.state="missing";});
 cell.dataset.state="loading";
 v.src=cell.dataset.src;
 cell.querySelector(".player").appendChild(v);
}
function release(cell){
 var v=cell.querySelector("video");
 if(!v||!v.paused)return;
 v.remove();v.removeAttribute("src");v.load();
 if(cell.dataset.state==="loading")cell.dataset.state="idle";
}
var table=document.querySelector("table.rows");
document.querySelectorAll(".filter button").forEach(function(b){b.addEventListener("click",function(){
 table.dataset.filter=b.dataset.filter;
 document.querySelectorAll(".filter button").forEach(function(o){o.setAttribute("aria-pressed",o===b);});
});});
if(!("IntersectionObserver" in window))return;
var near=new IntersectionObserver(function(entries){entries.forEach(function(e){
 var has=e.target.querySelector("video");
 if(e.isIntersecting&&!has)make(e.target);else if(!e.isIntersecting&&has)release(e.target);
});},{rootMargin:"800px 0px"});
document.querySelectorAll("td.video").forEach(function(c){near.observe(c);});
})();
"""
_SCRIPT_HASH = b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()
# Nothing leaves the page: no fetch, no font, no image, no other script than the one above (even if
# escaping were ever wrong, an injected script would not run); videos only from the page's own site.
_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; "
    f"script-src 'sha256-{_SCRIPT_HASH}'; media-src 'self'; base-uri 'none'; form-action 'none'"
)
_FILTERS = (("", "all"), ("SUCCEEDED", "succeeded"), ("FAILED", "failed"), ("SKIPPED", "skipped"), ("OTHER", "other"))


_PAGE_TAIL = f"</tbody></table><script>{_SCRIPT}</script></body></html>\n"


def _page_head(campaign_key: str, summary: ReportSummary, dry_run: bool) -> str:
    """report.html up to its first row (the players' paths are relative to the page's own key)."""
    title = escape(f"Campaign report: {campaign_key}")
    return "\n".join(
        [
            '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{escape(_POLICY)}">',
            '<meta name="viewport" content="width=device-width,initial-scale=1">',
            f"<title>{title}</title><style>{_STYLE}</style></head><body>",
            f'<h1>Campaign report</h1><div class="key">{escape(campaign_key)}</div>',
            _totals_html(summary, dry_run),
            _filter_html(),
            '<table class="rows" data-filter=""><thead><tr><th>row</th><th>status</th><th>error</th>'
            "<th>cost</th><th>video</th></tr></thead><tbody>\n",
        ]
    )


def _totals_html(summary: ReportSummary, dry_run: bool) -> str:
    totals = summary.totals
    figures = (
        ("status", summary.status.value + (" (dry run)" if dry_run else "")),
        ("rows", str(totals.rows)),
        ("succeeded", str(totals.succeeded)),
        ("failed", str(totals.failed)),
        ("skipped", str(totals.skipped)),
        ("planned", str(totals.planned)),
        ("estimated cost", usd(totals.estimated_cost_usd)),
        ("cost", usd(totals.cost_usd)),
    )
    cells = "".join(
        f'<div data-total="{escape(name)}">{escape(name)}<b>{escape(value)}</b></div>' for name, value in figures
    )
    return f'<section class="totals">{cells}</section>'


def _filter_html() -> str:
    buttons = "".join(
        f'<button type="button" data-filter="{value}" aria-pressed="{str(not value).lower()}">{label}</button>'
        for value, label in _FILTERS
    )
    return f'<nav class="filter">show {buttons}</nav>'


def _row_html(row: ReportRow, page_key: str) -> str:
    error = " ".join(part for part in (row.error_code, row.error_message) if part)
    cost = "" if row.cost_usd is None else usd(Decimal(row.cost_usd))
    return (
        f'<tr class="{row.status.value}" data-row-id="{escape(row.row_id)}">'
        f"<td>{escape(row.row_id)}</td>"
        f'<td class="status">{row.status.value}</td>'
        f'<td class="error">{escape(error)}</td>'
        f'<td class="cost">{cost}</td>'
        f"{_video_cell(row, page_key)}</tr>"
    )


def _video_cell(row: ReportRow, page_key: str) -> str:
    if row.status is not RowStatus.SUCCEEDED or not row.video_key:
        return '<td class="no-video"></td>'
    href = escape(relative_href(row.video_key, page_key))
    name = escape(row.video_key.rsplit("/", 1)[-1])
    return (
        f'<td class="video" data-state="idle" data-src="{href}"><div class="player"></div>'
        f'<a href="{href}" title="{escape(row.video_key)}">{name}</a></td>'
    )
