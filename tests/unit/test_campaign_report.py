"""The campaign report (campaigns/report.py): report.json exactly as DESIGN section 7 states it, totals
computed from the rows, report.csv quoting, report.html escaping, relative video paths, a 10,000-row
page that stays light, and the same files whether the writer's spools stay in memory or go to disk."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from html.parser import HTMLParser
from typing import Any

import pytest
from pydantic import ValidationError

from avatar_pipeline.campaigns import report as report_module
from avatar_pipeline.campaigns.report import (
    CSV_COLUMNS,
    CampaignReport,
    CampaignStatus,
    ReportSummary,
    ReportWriter,
    RowResult,
    RowStatus,
    relative_href,
)

pytestmark = pytest.mark.unit

CAMPAIGN_KEY = "inbox/spring/promo.campaign.json"
FOLDER = "campaigns/spring/promo"
PAGE_KEY = f"{FOLDER}/report.html"
HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>&amp;"\' </td></tr>'


def row(row_id: str, status: str, **fields: Any) -> RowResult:
    return RowResult.model_validate({"row_id": row_id, "status": status, **fields})


def mixed_rows() -> list[RowResult]:
    return [
        row("1", "SUCCEEDED", job_id="j1", video_key="campaigns/spring/promo/1.mp4", cost_usd="2.20",
            estimated_cost_usd="2.20"),
        row("2", "FAILED", error_code="INVALID_JOB", error_message="voice_id: unknown", estimated_cost_usd="2.20"),
        row("3", "FAILED", job_id="j3", error_code="PROVIDER_FAILED", error_message="render failed",
            cost_usd="1.10", estimated_cost_usd="2.20"),
        row("4", "SKIPPED", error_code="SPEND_LIMIT", error_message="over max_spend_usd", estimated_cost_usd="2.20"),
        row("5", "PENDING", job_id="j5", estimated_cost_usd="2.20"),
    ]  # fmt: skip


@dataclass(frozen=True)
class Rendered:
    summary: ReportSummary
    json: str
    csv: str
    html: str
    keys: list[tuple[str, str]]  # (key, content type) of each file, in the order written


def render(
    results: Iterable[RowResult], campaign_key: str = CAMPAIGN_KEY, dry_run: bool = False, folder: str = FOLDER
) -> Rendered:
    """The three files a ReportWriter writes for these rows, as text."""
    with ReportWriter(campaign_key, folder, dry_run=dry_run) as writer:
        for result in results:
            writer.add(result)
        files = [(file.key, file.content_type, file.body.read().decode()) for file in writer.files()]
        summary = writer.summary
    (_, _, json_text), (_, _, csv_text), (_, _, html_text) = files
    return Rendered(summary, json_text, csv_text, html_text, [(key, content_type) for key, content_type, _ in files])


def report_of(results: Iterable[RowResult], dry_run: bool = False) -> CampaignReport:
    """report.json as written, read back through its schema (which checks the totals against the rows)."""
    return CampaignReport.model_validate_json(render(results, dry_run=dry_run).json)


# --- report.json ------------------------------------------------------------------------------------------


def test_report_json_has_exactly_the_designed_fields_and_plain_numbers_for_money() -> None:
    """Given a finished campaign's rows, when the report is rendered as JSON, then its keys are the
    ones DESIGN section 7 names, statuses are the named strings and amounts are JSON numbers."""
    results = [r for r in mixed_rows() if r.status is not RowStatus.PENDING]

    document = json.loads(render(results).json)

    assert set(document) == {"campaign_key", "status", "dry_run", "totals", "rows"}
    assert set(document["totals"]) == {
        "rows", "succeeded", "failed", "skipped", "planned", "estimated_cost_usd", "cost_usd"
    }  # fmt: skip
    for reported in document["rows"]:
        assert set(reported) == {
            "row_id", "status", "error_code", "error_message", "job_id", "video_key", "cost_usd"
        }  # fmt: skip
    assert document["campaign_key"] == CAMPAIGN_KEY
    assert document["status"] == "COMPLETED"
    assert document["dry_run"] is False
    assert document["rows"][0] == {
        "row_id": "1", "status": "SUCCEEDED", "error_code": None, "error_message": None, "job_id": "j1",
        "video_key": "campaigns/spring/promo/1.mp4", "cost_usd": 2.2,
    }  # fmt: skip
    assert document["totals"]["cost_usd"] == pytest.approx(3.3)


def test_the_status_names_are_the_designed_ones() -> None:
    assert [s.value for s in CampaignStatus] == ["PLANNED", "RUNNING", "COMPLETED"]
    assert [s.value for s in RowStatus] == ["SUCCEEDED", "FAILED", "SKIPPED", "PLANNED", "PENDING"]


def test_report_json_reads_back_into_the_rows_and_totals_written() -> None:
    rendered = render(mixed_rows())

    report = CampaignReport.model_validate_json(rendered.json)
    assert report.rows == [result.report_row() for result in mixed_rows()]
    assert (report.status, report.totals) == (rendered.summary.status, rendered.summary.totals)
    assert report.campaign_key == CAMPAIGN_KEY


def test_a_default_row_number_is_reported_as_text() -> None:
    reported = report_of([RowResult.model_validate({"row_id": 7, "status": "PLANNED"})], dry_run=True)

    assert reported.rows[0].row_id == "7"


def test_unknown_fields_and_statuses_are_refused() -> None:
    with pytest.raises(ValidationError):
        row("1", "DONE")
    with pytest.raises(ValidationError):
        CampaignReport.model_validate(
            {"campaign_key": CAMPAIGN_KEY, "status": "COMPLETED", "dry_run": False, "rows": [], "extra": 1,
             "totals": {"rows": 0, "succeeded": 0, "failed": 0, "skipped": 0, "planned": 0,
                        "estimated_cost_usd": 0, "cost_usd": 0}}
        )  # fmt: skip


# --- totals and status -------------------------------------------------------------------------------------


def test_totals_are_counted_and_summed_from_the_rows() -> None:
    """Given rows of every status, the totals count each status, the estimate sums every row's price
    and the cost sums what was billed (a failed row may have been)."""
    totals = report_of(mixed_rows()).totals
    assert (totals.rows, totals.succeeded, totals.failed, totals.skipped, totals.planned) == (5, 1, 2, 1, 0)
    assert totals.estimated_cost_usd == Decimal("11.00")
    assert totals.cost_usd == Decimal("3.30")
    assert isinstance(totals.cost_usd, Decimal)


def test_a_campaign_is_running_until_every_row_is_terminal_and_a_dry_run_is_planned() -> None:
    assert report_of(mixed_rows()).status is CampaignStatus.RUNNING
    finished = [r for r in mixed_rows() if r.status is not RowStatus.PENDING]
    assert report_of(finished).status is CampaignStatus.COMPLETED
    awaiting_approval = [*finished, row("6", "PLANNED")]
    assert report_of(awaiting_approval).status is CampaignStatus.RUNNING
    planned = [row(str(n), "PLANNED", estimated_cost_usd="2.20") for n in range(3)]
    dry = report_of(planned, dry_run=True)
    assert (dry.status, dry.dry_run, dry.totals.planned) == (CampaignStatus.PLANNED, True, 3)
    assert (dry.totals.estimated_cost_usd, dry.totals.cost_usd) == (Decimal("6.60"), Decimal("0"))


def test_an_empty_campaign_is_completed_with_zero_totals() -> None:
    report = report_of([])

    assert report.rows == []
    assert report.status is CampaignStatus.COMPLETED
    assert report.totals.rows == 0
    assert report.totals.cost_usd == 0


def test_a_report_whose_totals_contradict_its_rows_is_refused() -> None:
    document = json.loads(render(mixed_rows()).json)
    document["totals"]["succeeded"] = 2

    with pytest.raises(ValidationError, match="do not match the rows"):
        CampaignReport.model_validate(document)


# --- report.csv ---------------------------------------------------------------------------------------------


def test_csv_quotes_commas_quotes_newlines_and_keeps_utf8() -> None:
    """Given cells with commas, double quotes, line breaks and non-ASCII text, when the CSV is read
    back by a standard reader, then every cell is what was written."""
    tricky = [
        row("Müller, Anna", "FAILED", error_code="INVALID_JOB", error_message='script: "quoted", and\nsplit'),
        row("日本語 🎬", "SUCCEEDED", job_id="j", video_key="campaigns/spring/promo/日本語 🎬.mp4", cost_usd="2.2"),
    ]
    text = render(tricky).csv

    assert text.encode("utf-8").decode("utf-8") == text
    assert text.startswith("row_id,status,")
    assert '"Müller, Anna"' in text
    assert '"script: ""quoted"", and\nsplit"' in text
    lines = list(csv.reader(io.StringIO(text, newline="")))
    assert lines[0] == list(CSV_COLUMNS)
    assert lines[1] == ["Müller, Anna", "FAILED", "INVALID_JOB", 'script: "quoted", and\nsplit', "", "", ""]
    assert lines[2] == ["日本語 🎬", "SUCCEEDED", "", "", "j", "campaigns/spring/promo/日本語 🎬.mp4", "2.2"]
    assert text.count("\r\n") == 3


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_made_inert() -> None:
    hostile = [row('=HYPERLINK("http://x")', "FAILED", error_code="INVALID_JOB", error_message="@SUM(A1)")]

    lines = list(csv.reader(io.StringIO(render(hostile).csv, newline="")))

    assert lines[1][0] == '\'=HYPERLINK("http://x")'
    assert lines[1][3] == "'@SUM(A1)"


# --- report.html ----------------------------------------------------------------------------------------------


class PageParser(HTMLParser):
    """The elements and attributes of a page, as a browser's tokenizer would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]


def parse(page: str) -> PageParser:
    parser = PageParser()
    parser.feed(page)
    parser.close()
    return parser


def test_the_page_has_the_totals_a_row_per_campaign_row_and_a_player_per_succeeded_row() -> None:
    page = render(mixed_rows()).html

    parsed = parse(page)
    rows = [attrs for attrs in parsed.all("tr") if attrs.get("data-row-id") is not None]
    assert [r["data-row-id"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert [r["class"] for r in rows] == ["SUCCEEDED", "FAILED", "FAILED", "SKIPPED", "PENDING"]
    cells = [attrs for attrs in parsed.all("td") if attrs.get("class") == "video"]
    assert cells == [{"class": "video", "data-state": "idle", "data-src": "1.mp4"}]
    assert [a["href"] for a in parsed.all("a")] == ["1.mp4"]
    assert parsed.all("video") == []  # made by the page's script when the row nears the screen
    totals = {attrs["data-total"] for attrs in parsed.all("div") if "data-total" in attrs}
    assert totals >= {"rows", "succeeded", "failed", "skipped", "planned", "estimated cost", "cost"}
    assert "$11.00" in page
    assert "$3.30" in page
    assert "PROVIDER_FAILED" in page


def test_the_page_is_self_contained() -> None:
    """No stylesheet, script, font or image comes from anywhere; the only script is inline and the
    page's policy allows no other."""
    parsed = parse(render(mixed_rows()).html)

    assert parsed.all("link") == []
    assert parsed.all("img") == []
    scripts = parsed.all("script")
    assert scripts == [{}]
    policy = next(a["content"] for a in parsed.all("meta") if a.get("http-equiv") == "Content-Security-Policy")
    assert policy is not None
    assert "default-src 'none'" in policy
    assert "script-src 'sha256-" in policy
    page = render(mixed_rows()).html
    assert "http:" not in page
    assert "https:" not in page


def test_every_user_string_is_escaped() -> None:
    """Given a hostile string in every field a user or the provider can write, then the page has no
    element, attribute or script the pipeline did not put there, and the text reads as written."""
    hostile = [
        row(HOSTILE, "FAILED", error_code=HOSTILE, error_message=HOSTILE),
        row("ok", "SUCCEEDED", video_key=f"campaigns/spring/promo/{HOSTILE}.mp4", cost_usd="1"),
    ]
    page = render(hostile, campaign_key=HOSTILE).html

    parsed = parse(page)
    assert parsed.all("img") == []
    assert len(parsed.all("script")) == 1
    assert not any(name.startswith("on") for _, attrs in parsed.tags for name in attrs)
    assert parsed.all("tr")[1]["data-row-id"] == HOSTILE
    assert HOSTILE in "".join(parsed.text)
    link = parsed.all("a")[0]
    assert link["title"] == f"campaigns/spring/promo/{HOSTILE}.mp4"
    cell = next(attrs for attrs in parsed.all("td") if attrs.get("class") == "video")
    assert cell["data-src"] == link["href"]
    assert link["href"] is not None
    assert set(link["href"]) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789%-._~/")


def test_a_failed_row_with_a_video_key_gets_no_player() -> None:
    """A row that did not succeed shows no player even if a key was planned for it."""
    failed = [row("1", "FAILED", error_code="INTERNAL", video_key="campaigns/spring/promo/1.mp4")]

    parsed = parse(render(failed).html)
    assert [attrs for attrs in parsed.all("td") if "data-src" in attrs] == []
    assert parsed.all("a") == []


# --- relative paths -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("video_key", "href"),
    [
        ("campaigns/spring/promo/1.mp4", "1.mp4"),
        ("campaigns/spring/promo/clips/en/1.mp4", "clips/en/1.mp4"),
        ("campaigns/spring/other/1.mp4", "../other/1.mp4"),
        ("campaigns/summer/promo/1.mp4", "../../summer/promo/1.mp4"),
        ("videos/1.mp4", "../../../videos/1.mp4"),
        ("1.mp4", "../../../1.mp4"),
        ("campaigns/spring/promo/my clip.mp4", "my%20clip.mp4"),
        ("campaigns/spring/promo/Grüße 日本.webm", "Gr%C3%BC%C3%9Fe%20%E6%97%A5%E6%9C%AC.webm"),
        ("out/a b/c#1?x=2.mp4", "../../../out/a%20b/c%231%3Fx%3D2.mp4"),
        ("campaigns/spring/promo/javascript:alert(1).mp4", "javascript%3Aalert%281%29.mp4"),
        ("campaigns/spring/promo.mp4", "../promo.mp4"),
    ],
)
def test_a_video_is_named_relative_to_the_report(video_key: str, href: str) -> None:
    assert relative_href(video_key, PAGE_KEY) == href


def test_a_key_with_an_empty_first_segment_never_becomes_root_relative() -> None:
    assert relative_href("/1.mp4", "report.html") == ".//1.mp4"
    assert relative_href("/1.mp4", PAGE_KEY) == "../../..//1.mp4"


def test_a_page_at_the_top_of_the_bucket_names_videos_by_their_keys() -> None:
    assert relative_href("campaigns/x/1 2.mp4", "report.html") == "campaigns/x/1%202.mp4"


# --- scale ----------------------------------------------------------------------------------------------------


def test_ten_thousand_rows_make_a_page_that_holds_no_player_up_front() -> None:
    """Given 10,000 succeeded rows, the page weighs a few hundred bytes a row and holds no player up
    front (the script makes one when its row nears the screen; 10,000 <video> elements, even
    preload="none", cost a browser minutes). The writer's memory is measured in bench/bench_campaign.py."""
    many = [
        row(f"row-{n:05d}", "SUCCEEDED", job_id=f"job-{n}", video_key=f"campaigns/spring/promo/row-{n:05d}.mp4",
            cost_usd="2.20", estimated_cost_usd="2.20")
        for n in range(10_000)
    ]  # fmt: skip

    rendered = render(many)

    assert len(rendered.html.encode()) < 10_000 * 600
    assert "<video" not in rendered.html
    assert rendered.html.count('data-state="idle" data-src="row-') == 10_000
    assert "autoplay" not in rendered.html
    assert rendered.summary.totals.cost_usd == Decimal("22000.00")
    assert len(rendered.csv.splitlines()) == 10_001
    assert [r.row_id for r in CampaignReport.model_validate_json(rendered.json).rows] == [r.row_id for r in many]


def test_rows_beyond_the_spool_size_go_to_disk_and_make_the_same_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given spools of 512 bytes (the rows of a large campaign go to temporary files, not memory), the
    three files are byte for byte the ones written in memory."""
    rows = [*mixed_rows(), *(row(f"r{n}", "FAILED", error_code="INTERNAL", error_message="x" * 50) for n in range(200))]
    in_memory = render(rows)

    monkeypatch.setattr(report_module, "SPOOL_BYTES", 512)
    on_disk = render(rows)

    assert len(in_memory.html) > 512 * 20
    assert (on_disk.json, on_disk.csv, on_disk.html) == (in_memory.json, in_memory.csv, in_memory.html)


def test_the_three_files_sit_in_the_campaign_folder_with_their_content_types() -> None:
    assert render(mixed_rows(), folder="campaigns/spring/promo/").keys == [
        ("campaigns/spring/promo/report.json", "application/json"),
        ("campaigns/spring/promo/report.csv", "text/csv; charset=utf-8"),
        ("campaigns/spring/promo/report.html", "text/html; charset=utf-8"),
    ]
    assert [key for key, _ in render(mixed_rows(), folder="").keys] == ["report.json", "report.csv", "report.html"]


def test_a_page_at_the_top_of_the_bucket_links_videos_by_their_keys() -> None:
    succeeded = [row("1", "SUCCEEDED", video_key="campaigns/x/1 2.mp4", cost_usd="1")]

    assert 'href="campaigns/x/1%202.mp4"' in render(succeeded, folder="").html
