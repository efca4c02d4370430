"""bench/bench_campaign.py at a small size: the benchmark's machinery (the moto server, a child process
per measurement, the request counts, the checks, the JSON) keeps working between the full runs, and
the two flatness properties hold already at this size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_campaign

# A moto server and one process per measurement: not a unit test in this repository's sense.
pytestmark = pytest.mark.integration

ROWS, BASELINE, FINISH, FINISH_BASELINE = 100, 10, 20, 4
SPLIT_FIGURES = {
    "rows",
    "seconds",
    "rows_per_s",
    "peak_rss_mb",
    "peak_rss_before_report_mb",
    "rss_before_split_mb",
    "split_cpu_seconds",
    "moto_cpu_seconds",
    "s3_requests_per_row",
    "dynamodb_requests_per_row",
    "sqs_requests_per_row",
}
FINISH_FIGURES = {"rows", "seconds", "s3_requests", "s3_requests_per_row", "s3_operations", "dynamodb_requests_per_row"}


def test_the_campaign_benchmark_runs_and_writes_its_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Given the campaign benchmark at 100 vs 10 rows split and 20 vs 4 rows finished (one shared photo)
    When it runs
    Then it succeeds (every row handed out once, every finished campaign completed with its inputs out
    of inbox/), prints the table and the targets, and writes each size's figures and the ratios; the
    split reads S3 as often for 100 rows as for 10 (the rows streamed, the photo checked once), its
    memory does not grow, and finishing 20 rows takes no more S3 requests per row than 4."""
    output = tmp_path / "campaign.json"
    argv = ["--rows", str(ROWS), "--baseline-rows", str(BASELINE)]
    argv += ["--finish-rows", str(FINISH), "--finish-baseline-rows", str(FINISH_BASELINE), "--output", str(output)]

    assert bench_campaign.main(argv) == 0

    figures = json.loads(output.read_text())
    assert set(figures) == {"split", "finish_shared_photo", "ratios"}
    assert set(figures["split"]) == {str(ROWS), str(BASELINE)}
    assert set(figures["finish_shared_photo"]) == {str(FINISH), str(FINISH_BASELINE)}
    assert all(set(size) == SPLIT_FIGURES for size in figures["split"].values())
    assert all(set(size) == FINISH_FIGURES for size in figures["finish_shared_photo"].values())
    assert set(figures["ratios"]) == {
        "split_peak_rss",
        "split_peak_rss_before_report",
        "split_rows_per_s",
        "finish_s3_requests_per_row",
    }

    split = figures["split"]
    assert split[str(ROWS)]["s3_requests_per_row"] * ROWS == pytest.approx(
        split[str(BASELINE)]["s3_requests_per_row"] * BASELINE
    )
    assert figures["ratios"]["split_peak_rss"] < 1.25  # loose: a small run is mostly start-up's memory
    finish = figures["finish_shared_photo"]
    assert figures["ratios"]["finish_s3_requests_per_row"] <= 1.0
    assert finish[str(FINISH)]["s3_requests"] <= finish[str(FINISH_BASELINE)]["s3_requests"] + 3  # one refresh
    printed = capsys.readouterr().out
    assert "peak RSS during the split MB" in printed
    assert f"split peak RSS at {ROWS} rows / {BASELINE} rows" in printed
    assert f"finish S3 requests per row at {FINISH} / {FINISH_BASELINE} rows" in printed
