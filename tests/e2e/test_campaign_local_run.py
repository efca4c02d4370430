"""`avatar-pipeline local run` with a campaign file (DESIGN.md section 7): split by the real Split function,
each valid row rendered once through Submit, the state machine and Finalize, bad rows failed with their
codes, one campaign notification, the report, and every event delivered three times."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import local_run
from tests.support.media import make_png

pytestmark = pytest.mark.e2e

CAMPAIGN_KEY = "inbox/shop/spring.campaign.json"
# Twelve rows as a spreadsheet exports them: a byte-order mark, CRLF line ends, a quoted comma, UTF-8 beyond
# ASCII; rows sharing each photo; a bad value, a missing photo and a repeated row id. Placeholders fill the
# script, the title and the output key.
ROWS = (
    "\ufeffid,name,photo,resolution\r\n"
    "c1,Ann,alice.png,\r\n"
    'c2,"Dee, Jr.",alice.png,\r\n'
    "c3,Zoë,bob.png,\r\n"
    "c4,Eve,alice.png,8k\r\n"
    "c5,Fay,gone.png,\r\n"
    "c1,Gus,alice.png,\r\n" + "".join(f"c{n},Name {n},{'bob' if n % 2 else 'alice'}.png,\r\n" for n in range(7, 13))
)
CAMPAIGN = {
    "rows": "people.csv",
    "row_id": "id",
    "template": {
        "model": "heygen-avatar-iv",
        "photo": "{{photo}}",
        "video_title": "Hi {{name}}",
        "script": "Hello {{name}}, your plan is ready.",
    },
    "output_key": "greetings/{{id}}.mp4",
    "metadata": {"campaign": "spring"},
}


def rows_of(summary: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    return {
        (job["input_key"].split("#", 1)[1], job["row_number"]): job
        for job in summary["jobs"]
        if job["input_key"].startswith(CAMPAIGN_KEY + "#")
    }


def test_a_campaign_renders_each_valid_row_once_and_completes_with_one_notification(
    inbox: Path, tmp_path: Path
) -> None:
    shop = inbox / "shop"
    shop.mkdir()
    (shop / "alice.png").write_bytes(make_png(64, 64))
    (shop / "bob.png").write_bytes(make_png(48, 48))
    (shop / "people.csv").write_bytes(ROWS.encode("utf-8"))
    (shop / "spring.campaign.json").write_text(json.dumps(CAMPAIGN))
    out = tmp_path / "out"

    result = local_run(inbox, out, "--time-scale", "0.01", "--duplicate-events", "3", timeout=600)

    assert result.exit_code == 0, result.stderr[-3000:] + result.stdout[-3000:]
    summary = result.summary
    assert summary["campaigns"] == [
        {
            "campaign_key": CAMPAIGN_KEY,
            "status": "COMPLETED",
            "rows": 12,
            "succeeded": 9,
            "failed": 3,
            "skipped": 0,
            "report_key": "campaigns/shop/spring/report.json",
        }
    ]
    rows = rows_of(summary)
    assert {key: row["status"] for key, row in rows.items()} == {
        ("c1", 1): "SUCCEEDED",
        ("c2", 2): "SUCCEEDED",
        ("c3", 3): "SUCCEEDED",
        ("c4", 4): "FAILED",
        ("c5", 5): "FAILED",
        ("c1", 6): "FAILED",
        **{(f"c{n}", n): "SUCCEEDED" for n in range(7, 13)},
    }
    assert {key: row["error_code"] for key, row in rows.items() if row["status"] == "FAILED"} == {
        ("c4", 4): "INVALID_JOB",
        ("c5", 5): "MISSING_MEDIA",
        ("c1", 6): "INVALID_JOB",
    }
    for (row_id, _), row in rows.items():
        if row["status"] != "SUCCEEDED":
            continue
        assert row["provider_submits"] == 1, row  # every event three times, one accepted submit
        assert f"greetings/{row_id}.mp4" in row["outputs"]  # output_key's placeholder
        assert (out / "outputs" / f"greetings/{row_id}.mp4").stat().st_size > 0
    for row in rows.values():
        if row["status"] == "FAILED":
            assert row["provider_submits"] == 0

    manifest = json.loads((out / "outputs/greetings/c2.json").read_text())
    assert manifest["parameters"]["video_title"] == "Hi Dee, Jr."
    assert manifest["metadata"] == {"campaign": "spring"}
    assert json.loads((out / "outputs/greetings/c3.json").read_text())["parameters"]["video_title"] == ("Hi Zoë")

    notifications = result.notifications()
    assert [n["attributes"].get("kind") for n in notifications] == ["campaign"]
    assert notifications[0]["message"]["totals"]["succeeded"] == 9

    report = json.loads((out / "outputs/campaigns/shop/spring/report.json").read_text())
    assert report["status"] == "COMPLETED"
    assert (report["totals"]["rows"], report["totals"]["succeeded"], report["totals"]["failed"]) == (12, 9, 3)
    assert report["totals"]["cost_usd"] > 0
    assert (out / "outputs/campaigns/shop/spring/report.html").is_file()
    assert (out / "outputs/campaigns/shop/spring/report.csv").read_bytes().count(b"\r\n") == 13

    inputs = {p.relative_to(out / "inputs").as_posix() for p in (out / "inputs").rglob("*") if p.is_file()}
    assert not [key for key in inputs if key.startswith("inbox/")]
    assert {"processed/shop/spring.campaign.json", "processed/shop/people.csv", "processed/shop/alice.png"} <= inputs
    # The page finds each video by its path relative to the page, wherever output_key put it.
    assert 'data-src="../../../greetings/c2.mp4"' in (out / "outputs/campaigns/shop/spring/report.html").read_text()
    assert "campaign inbox/shop/spring.campaign.json: COMPLETED" in result.stdout


def test_a_dry_run_submits_nothing_and_a_ceiling_lets_only_the_rows_that_fit_through(
    inbox: Path, tmp_path: Path
) -> None:
    """Given a dry run and a campaign whose max_spend_usd fits three of its five rows, dropped together,
    then the dry run ends PLANNED with an estimate and no submit, and exactly three rows of the other are
    submitted (once each), the rest SKIPPED with SPEND_LIMIT."""
    rows = "id,name\r\n" + "".join(f"r{n},Name {n}\r\n" for n in range(1, 6))
    template = {"model": "heygen-avatar-iv", "photo": "face.png", "video_title": "Hi {{name}}", "script": "Hi {{name}}"}
    for folder, extra in (("plan", {"dry_run": True}), ("capped", {"max_spend_usd": 6.6})):
        (inbox / folder).mkdir()
        (inbox / folder / "face.png").write_bytes(make_png(64, 64))
        (inbox / folder / "rows.csv").write_text(rows)
        document = {"rows": "rows.csv", "row_id": "id", "template": template, **extra}
        (inbox / folder / "batch.campaign.json").write_text(json.dumps(document))
    out = tmp_path / "out"

    result = local_run(inbox, out, "--time-scale", "0.01", timeout=600)

    assert result.exit_code == 0, result.stderr[-3000:] + result.stdout[-3000:]
    campaigns = {c["campaign_key"]: c for c in result.summary["campaigns"]}
    planned = campaigns["inbox/plan/batch.campaign.json"]
    assert (planned["status"], planned["rows"], planned["succeeded"]) == ("PLANNED", 5, 0)
    plan_report = json.loads((out / "outputs/campaigns/plan/batch/report.json").read_text())
    assert plan_report["totals"]["planned"] == 5
    assert plan_report["totals"]["estimated_cost_usd"] > 0
    capped = campaigns["inbox/capped/batch.campaign.json"]
    assert (capped["status"], capped["succeeded"], capped["skipped"]) == ("COMPLETED", 3, 2)
    jobs = result.summary["jobs"]
    assert sum(j["provider_submits"] for j in jobs) == 3
    skipped = [j for j in jobs if j["status"] == "SKIPPED"]
    assert {j["error_code"] for j in skipped} == {"SPEND_LIMIT"}
    assert {j["input_key"] for j in skipped} == {
        "inbox/capped/batch.campaign.json#r4",
        "inbox/capped/batch.campaign.json#r5",
    }
    assert all(j["status"] == "PLANNED" for j in jobs if j["input_key"].startswith("inbox/plan/"))
