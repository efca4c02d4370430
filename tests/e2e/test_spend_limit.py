"""`avatar-pipeline local run --daily-spend-limit`: the ceiling cuts a batch part-way, offline."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.conftest import local_run, write_job

pytestmark = pytest.mark.e2e


def test_a_daily_ceiling_cuts_a_batch_part_way(inbox: Path, tmp_path: Path) -> None:
    """Given six Avatar IV jobs, a $5 daily ceiling and a provider that bills $2.20 a render (the price
    table's estimate, so no correction frees room part-way)
    When they are dropped together
    Then exactly two are rendered and four fail SPEND_LIMIT without reaching Segmind; every job ends
    and is notified once, and what was spent stays under the ceiling."""
    for n in range(6):
        write_job(
            inbox,
            f"batch/clip-{n}.json",
            {"model": "heygen-avatar-iv", "photo": f"face-{n}.png", "video_title": f"Clip {n}", "script": f"Clip {n}."},
            photo=f"face-{n}.png",
        )
    out = tmp_path / "out"

    result = local_run(
        inbox, out, "--time-scale", "0.01", "--daily-spend-limit", "5", "--provider-cost", "heygen-avatar-iv=2.2"
    )

    assert result.exit_code == 0, result.stderr[-3000:]
    jobs = result.summary["jobs"]
    succeeded = [j for j in jobs if j["status"] == "SUCCEEDED"]
    refused = [j for j in jobs if j["error_code"] == "SPEND_LIMIT"]
    assert (len(succeeded), len(refused)) == (2, 4), jobs
    assert {j["cost_usd"] for j in succeeded} == {2.2}
    assert {j["cost_source"] for j in succeeded} == {"provider"}
    assert {j["provider_submits"] for j in refused} == {0}
    assert {j["cost_usd"] or 0.0 for j in refused} == {0.0}
    assert "DailySpendLimitUsd" in refused[0]["error_message"]
    assert {j["notifications"] for j in jobs} == {1}
    assert result.summary["provider"]["submits_accepted"] == 2
    assert result.summary["cost_usd"] == pytest.approx(4.4)
    assert "4 failed" in result.stdout


def test_a_negative_or_malformed_ceiling_is_bad_usage(inbox: Path, tmp_path: Path) -> None:
    for bad in ("-1", "nan", "ten"):
        result = local_run(inbox, tmp_path / "out", "--daily-spend-limit", bad)
        assert result.exit_code == 2
        assert "--daily-spend-limit" in result.stderr
        assert "Traceback" not in result.stderr
