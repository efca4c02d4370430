"""Planning a campaign (DESIGN.md section 7): cost, ceiling and duration, and `avatar-pipeline campaign plan`."""

from __future__ import annotations

import io
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from avatar_local.cli import main
from avatar_pipeline.campaigns.plan import estimated_minutes, plan_campaign
from avatar_pipeline.campaigns.rows import campaign_rows, csv_source
from avatar_pipeline.campaigns.spec import parse_campaign_file
from avatar_pipeline.domain.pricing import price_table
from avatar_pipeline.errors import ErrorCode

pytestmark = pytest.mark.unit

EXAMPLE_PHOTO = Path(__file__).resolve().parents[2] / "examples" / "alice.png"
TEMPLATE = {"model": "heygen-avatar-iv", "photo": "{{photo}}", "video_title": "Hi {{name}}", "script": "Hello {{name}}"}


def plan_for(csv: str, **changes: Any) -> Any:
    document: dict[str, Any] = {"rows": "people.csv", "template": TEMPLATE, **changes}
    spec = parse_campaign_file(json.dumps(document).encode())
    source = csv_source(io.StringIO(csv, newline=""), "people.csv")
    rows = campaign_rows(spec, "inbox/spring.campaign.json", "bucket", source, None)
    return plan_campaign(rows, price_table(None), spec.max_spend_usd)


def test_the_plan_prices_every_valid_row_and_counts_the_rest() -> None:
    plan = plan_for("name,photo,resolution\nA,a.png,720p\nB,a.png,1080p\nC,a.png,8k\n")
    assert (plan.rows, plan.renders, plan.failed, plan.skipped) == (3, 2, 1, 0)
    assert plan.estimated_cost_usd == Decimal("4.40")  # Avatar IV is flat-priced
    assert [p.code for p in plan.problems] == [ErrorCode.INVALID_JOB]


def test_rows_past_max_spend_are_skipped_with_spend_limit_in_order() -> None:
    """Given five $2.20 rows and max_spend_usd 7
    When the campaign is planned
    Then the first three fit ($6.60) and the last two are SKIPPED with SPEND_LIMIT, never priced in."""
    plan = plan_for("name,photo\n" + "A,a.png\n" * 5, max_spend_usd=7)
    assert (plan.renders, plan.skipped, plan.estimated_cost_usd) == (3, 2, Decimal("6.60"))
    assert [(p.number, p.code) for p in plan.problems] == [(4, ErrorCode.SPEND_LIMIT), (5, ErrorCode.SPEND_LIMIT)]
    assert "max_spend_usd of $7.00" in plan.problems[0].message


def test_the_duration_is_the_requests_at_ninety_percent_of_the_rate_plus_the_last_render() -> None:
    assert estimated_minutes(0, 50) == 0
    assert estimated_minutes(100, 50) == pytest.approx(100 * 4.67 / 45 + 2.5)
    assert estimated_minutes(10_000, 5) == pytest.approx(10_000 * 4.67 / 4.5 + 2.5)


# --- the CLI ------------------------------------------------------------------------------------------------


def write_campaign(folder: Path, document: dict[str, Any], csv: str | None = None) -> Path:
    shutil.copy(EXAMPLE_PHOTO, folder / "alice.png")
    (folder / "notes.png").write_text("not an image")
    if csv is not None:
        (folder / "people.csv").write_bytes(csv.encode("utf-8-sig"))
    path = folder / "spring.campaign.json"
    path.write_text(json.dumps(document))
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    console = io.StringIO()
    code = main(argv, console=console)
    return code, console.getvalue(), capsys.readouterr().err


def test_plan_prints_the_rows_with_problems_the_cost_and_the_duration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a campaign with a good shared photo, a missing photo, a non-image, a repeated id and a bad value
    When `avatar-pipeline campaign plan FILE --rpm 5` runs
    Then it exits 0 (the campaign would run), lists each bad row with its code, the cost of the good rows
    and the duration at 5 requests a minute."""
    csv = (
        "id,name,photo,resolution\r\n"
        "c1,Ann,alice.png,720p\r\nc2,Bob,gone.png,720p\r\nc3,Cy,notes.png,720p\r\n"
        'c1,Dee,alice.png,720p\r\nc5,"Eve, Jr.",alice.png,8k\r\nc6,Fay,alice.png,1080p\r\n'
    )
    path = write_campaign(tmp_path, {"rows": "people.csv", "row_id": "id", "template": TEMPLATE}, csv)
    code, out, err = run(["campaign", "plan", str(path), "--rpm", "5"], capsys)
    assert (code, err) == (0, "")
    assert "6 rows: 2 would be rendered, 4 would fail, 0 skipped" in out
    for row_id, error_code in [("c2", "MISSING_MEDIA"), ("c3", "UNSUPPORTED_MEDIA"), ("c1", "INVALID_JOB")]:
        assert any(row_id in line and error_code in line for line in out.splitlines()), (row_id, out)
    assert "estimated cost: $4.40 for 2 renders" in out
    assert f"about {2 * 4.67 / 4.5 + 2.5:.1f} minutes" in out


def test_plan_of_an_invalid_campaign_exits_1_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_campaign(tmp_path, {"rows": "people.csv", "template": TEMPLATE}, "name\nAnn\n")
    code, out, err = run(["campaign", "plan", str(path)], capsys)
    assert code == 1
    assert out.count("\n") == 1
    assert "invalid (INVALID_JOB)" in out
    assert "photo" in out
    assert "Traceback" not in out + err


def test_plan_of_a_campaign_whose_rows_file_is_missing_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_campaign(tmp_path, {"rows": "people.csv", "template": TEMPLATE})
    code, out, _ = run(["campaign", "plan", str(path)], capsys)
    assert code == 1
    assert "people.csv was not found" in out


@pytest.mark.parametrize("argv", [["campaign", "plan"], ["campaign", "plan", "x.campaign.json", "--rpm", "0"]])
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2


def test_a_file_that_is_missing_or_not_a_campaign_file_is_bad_usage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("missing.campaign.json", "job.json"):
        (tmp_path / "job.json").write_text("{}")
        code, _, err = run(["campaign", "plan", str(tmp_path / name)], capsys)
        assert code == 2
        assert err.startswith("avatar-pipeline campaign plan:")
        assert err.count("\n") == 1


def test_a_dry_run_campaign_with_inline_rows_plans_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    document = {"rows": [{"name": "Ann", "photo": "alice.png"}], "template": TEMPLATE, "dry_run": True}
    code, out, _ = run(["campaign", "plan", str(write_campaign(tmp_path, document))], capsys)
    assert code == 0
    assert "1 would be rendered" in out
    assert "dry_run" in out
