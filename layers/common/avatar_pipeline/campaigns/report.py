"""A campaign's report (DESIGN section 7): report.json, report.csv and report.html beside each other.

The models are the report.json schema. `build_report` computes the totals from the rows' results in
one pass; the renderers only format. report.html is one self-contained page (inline CSS and script,
nothing fetched from the network) whose players name each video by its path relative to the page, so
the folder plays the same after `aws s3 sync` of the output bucket and in a local run's
`OUT/outputs/`. At 10,000 rows it stays light: a player exists only while its row is near the screen
(an IntersectionObserver makes and releases them), and every string a user wrote is escaped.
"""

from __future__ import annotations

import csv
import hashlib
import io
from base64 import b64encode
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from html import escape
from typing import Any, Self
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, model_validator

from avatar_pipeline.money import ZERO, Money, usd


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


def build_report(campaign_key: str, results: Iterable[RowResult], dry_run: bool = False) -> CampaignReport:
    """The report of a campaign from its rows' results, in row order.

    Status: PLANNED for a dry run, COMPLETED once every row is terminal, else RUNNING.
    """
    rows: list[ReportRow] = []
    estimated = ZERO
    for result in results:
        rows.append(result.report_row())
        estimated += result.estimated_cost_usd or ZERO
    totals = ReportTotals.model_validate({**_tally(rows), "estimated_cost_usd": estimated})
    if dry_run:
        status = CampaignStatus.PLANNED
    elif all(row.status in TERMINAL_ROW_STATUSES for row in rows):
        status = CampaignStatus.COMPLETED
    else:
        status = CampaignStatus.RUNNING
    return CampaignReport(campaign_key=campaign_key, status=status, dry_run=dry_run, totals=totals, rows=rows)


@dataclass(frozen=True)
class ReportFile:
    key: str
    body: bytes
    content_type: str


def report_files(report: CampaignReport, folder_key: str) -> list[ReportFile]:
    """report.json, report.csv and report.html for the folder `folder_key` of the output bucket
    (`campaigns/<dir>/<name>`), as UTF-8 bytes with the content type each is served with."""
    prefix = folder_key.strip("/") + "/" if folder_key.strip("/") else ""
    page_key = f"{prefix}report.html"
    return [
        ReportFile(f"{prefix}report.json", render_json(report).encode(), "application/json"),
        ReportFile(f"{prefix}report.csv", render_csv(report).encode(), "text/csv; charset=utf-8"),
        ReportFile(page_key, render_html(report, page_key).encode(), "text/html; charset=utf-8"),
    ]


# --- report.json and report.csv ----------------------------------------------------------------------


def render_json(report: CampaignReport) -> str:
    return report.model_dump_json(indent=2) + "\n"


def render_csv(report: CampaignReport) -> str:
    """UTF-8 text (no BOM), RFC 4180 quoting and CRLF line ends, one line per row in row order.

    A cell that a spreadsheet would run as a formula (starting with = + - @, a tab or a CR) is
    prefixed with an apostrophe, as OWASP advises against CSV injection; costs are plain numbers.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in report.rows:
        cost = "" if row.cost_usd is None else str(row.cost_usd)
        cells = (row.row_id, row.status.value, row.error_code, row.error_message, row.job_id, row.video_key)
        writer.writerow([*(_inert_cell(cell) for cell in cells), cost])
    return buffer.getvalue()


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


def render_html(report: CampaignReport, page_key: str) -> str:
    """report.html, to be stored at `page_key` of the output bucket (the players' paths are relative
    to it)."""
    title = escape(f"Campaign report: {report.campaign_key}")
    parts = [
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{escape(_POLICY)}">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        f"<title>{title}</title><style>{_STYLE}</style></head><body>",
        f'<h1>Campaign report</h1><div class="key">{escape(report.campaign_key)}</div>',
        _totals_html(report),
        _filter_html(),
        '<table class="rows" data-filter=""><thead><tr><th>row</th><th>status</th><th>error</th>'
        "<th>cost</th><th>video</th></tr></thead><tbody>",
    ]
    parts.extend(_row_html(row, page_key) for row in report.rows)
    parts.append(f"</tbody></table><script>{_SCRIPT}</script></body></html>\n")
    return "\n".join(parts)


def _totals_html(report: CampaignReport) -> str:
    totals = report.totals
    figures = (
        ("status", report.status.value + (" (dry run)" if report.dry_run else "")),
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
