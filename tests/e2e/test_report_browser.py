"""report.html in a real browser: Debian's headless Chromium opens the page from a folder laid out
like the output bucket (as after `aws s3 sync`, or a local run's OUT/outputs/) and plays its videos.

The screenshot is kept as a test artifact: test-artifacts/campaign-report.png at the repository's
top (git ignores it), or in $TEST_ARTIFACTS_DIR.
"""

from __future__ import annotations

import os
import shutil
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from avatar_pipeline.campaigns.report import ReportWriter, RowResult
from tests.support.browser import HeadlessPage, chromium_or_skip
from tests.support.media import make_mp4

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
FOLDER = "campaigns/spring/promo"
SAME_FOLDER_VIDEO = f"{FOLDER}/anna.mp4"
ELSEWHERE_VIDEO = "videos/other team/Jürgen #2.mp4"  # another folder; a space, unicode and '#'
MISSING_VIDEO = f"{FOLDER}/never-copied.mp4"
# A video cell whose player has finished trying: the first frame arrived, or the file could not load.
SETTLED = "td.video[data-state=ready], td.video[data-state=missing]"


def artifacts_dir() -> Path:
    folder = Path(os.environ.get("TEST_ARTIFACTS_DIR") or REPO_ROOT / "test-artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class RenderedPage(HTMLParser):
    """The campaign rows and video cells of a DOM dump."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, str | None]] = []
        self.cells: list[dict[str, str | None]] = []
        self.videos: list[dict[str, str | None]] = []
        self.video_row: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "tr" and "data-row-id" in found:
            self.rows.append(found)
        elif tag == "td" and found.get("class") == "video":
            self.cells.append(found)
        elif tag == "video":
            self.videos.append(found)
            self.video_row.append(self.rows[-1]["data-row-id"] if self.rows else None)


@pytest.fixture
def browser() -> str:
    return chromium_or_skip()


@pytest.fixture
def bucket(tmp_path: Path) -> Path:
    """An output bucket on disk: two real videos, a report naming a third that was never copied."""
    root = tmp_path / "bucket"
    for key in (SAME_FOLDER_VIDEO, ELSEWHERE_VIDEO):
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        make_mp4(root / key, seconds=1.0)
    results = [
        RowResult(row_id="anna", status="SUCCEEDED", job_id="j-anna", video_key=SAME_FOLDER_VIDEO,
                  cost_usd=Decimal("2.20"), estimated_cost_usd=Decimal("2.20")),
        RowResult(row_id="bad <row>", status="FAILED", error_code="INVALID_JOB",
                  error_message="voice_id: 'Nobody' is not a voice", estimated_cost_usd=Decimal("2.20")),
        RowResult(row_id="carl", status="SKIPPED", error_code="SPEND_LIMIT",
                  error_message="the campaign's max_spend_usd would be passed", estimated_cost_usd=Decimal("2.20")),
        RowResult(row_id="jürgen", status="SUCCEEDED", job_id="j-jurgen", video_key=ELSEWHERE_VIDEO,
                  cost_usd=Decimal("2.20"), estimated_cost_usd=Decimal("2.20")),
        RowResult(row_id="gone", status="SUCCEEDED", job_id="j-gone", video_key=MISSING_VIDEO,
                  cost_usd=Decimal("2.20"), estimated_cost_usd=Decimal("2.20")),
    ]  # fmt: skip
    with ReportWriter("inbox/spring/promo.campaign.json", FOLDER) as writer:
        for result in results:
            writer.add(result)
        for item in writer.files():
            (root / item.key).parent.mkdir(parents=True, exist_ok=True)
            (root / item.key).write_bytes(item.body.read())
    return root


def test_the_report_page_shows_every_row_and_plays_each_video_that_exists(
    browser: str, bucket: Path, tmp_path: Path
) -> None:
    """Given a report of a succeeded row (video beside the report), a failed row, a skipped row, a
    succeeded row whose video is in another folder of the bucket, and a succeeded row whose video was
    never copied, when Chromium opens report.html from disk, then the DOM has a row per campaign
    row, a player per succeeded row whose relative source is the video's file, the two that exist
    loaded (data-state="ready") and the third marked missing."""
    page = bucket / FOLDER / "report.html"
    kept = artifacts_dir() / "campaign-report.png"

    with HeadlessPage(browser, tmp_path / "profile", page.as_uri()) as tab:
        tab.wait_until(f"document.querySelectorAll('{SETTLED}').length === 3", timeout=60)
        dom = tab.dom()
        shot = tab.screenshot(tmp_path / "campaign-report.png")
    shutil.copyfile(shot, kept)

    rendered = RenderedPage()
    rendered.feed(dom)
    assert [row["data-row-id"] for row in rendered.rows] == ["anna", "bad <row>", "carl", "jürgen", "gone"]
    assert [row["class"] for row in rendered.rows] == ["SUCCEEDED", "FAILED", "SKIPPED", "SUCCEEDED", "SUCCEEDED"]
    assert rendered.video_row == ["anna", "jürgen", "gone"]
    sources = [video["src"] for video in rendered.videos]
    assert all(src is not None and not src.startswith(("/", "file:", "http")) for src in sources), sources
    resolved = [(page.parent / Path(unquote(src))).resolve() for src in sources if src is not None]
    assert resolved == [(bucket / key).resolve() for key in (SAME_FOLDER_VIDEO, ELSEWHERE_VIDEO, MISSING_VIDEO)]
    assert [path.is_file() for path in resolved] == [True, True, False]
    assert [cell["data-state"] for cell in rendered.cells] == ["ready", "ready", "missing"], dom[-3000:]
    totals = {name: dom.split(f'data-total="{name}">{name}<b>', 1)[1].split("<", 1)[0] for name in ("cost", "rows")}
    assert totals == {"cost": "$6.60", "rows": "5"}
    assert kept.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
