"""bench/bench_throughput.py at a small size: the burst run on the offline stack (both policies, the
cut of the comparison run, the figures and their JSON) keeps working between full runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_throughput
from bench.bench_throughput import RunFigures, allowance_per_minute, check_targets

pytestmark = pytest.mark.e2e


def test_the_throughput_benchmark_runs_both_policies_and_writes_its_figures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given 6 jobs dropped at once on the offline stack, a 50-a-minute key, 20x time
    When the benchmark runs the adaptive schedule and then the fixed 2 s one
    Then the adaptive run finishes all 6 with no 429 and no duplicate submit; the fixed run is cut at
    the adaptive run's duration; and throughput.json holds exactly the issue's figures per policy."""
    output = tmp_path / "throughput.json"

    bench_throughput.main(["--jobs", "6", "--time-scale", "0.05", "--output", str(output)])

    figures = json.loads(output.read_text())
    assert set(figures) == {"adaptive", "fixed-2s"}
    keys = {"jobs", "completed", "jobs_per_min", "bound_jobs_per_min", "http_429", "duplicate_submits"}
    assert all(set(run) == keys for run in figures.values())
    adaptive, fixed = figures["adaptive"], figures["fixed-2s"]
    assert (adaptive["jobs"], adaptive["completed"], adaptive["http_429"], adaptive["duplicate_submits"]) == (
        6,
        6,
        0,
        0,
    )
    assert 0 < adaptive["jobs_per_min"] <= adaptive["bound_jobs_per_min"]
    assert (fixed["http_429"], fixed["duplicate_submits"]) == (0, 0)
    printed = capsys.readouterr().out
    assert "adaptive requests per virtual minute:" in printed
    assert "[met] adaptive: all 6 jobs completed (6)" in printed


def test_the_bound_is_what_the_bucket_lets_through_over_the_run() -> None:
    """50 a minute is a burst of 5 once and 45 a minute after: 10 minutes allow 455 requests."""
    assert allowance_per_minute(50, 10) == pytest.approx(45.5)


def figures(completed: int, jobs_per_min: float, bound: float, http_429: int = 0) -> RunFigures:
    return RunFigures(
        policy="adaptive", jobs=200, completed=completed, failed=0, minutes=30.0, cut=False,
        jobs_per_min=jobs_per_min, bound_jobs_per_min=bound, requests_per_job=5.0, status_calls_per_job=3.0,
        api_requests=1000, max_requests_in_any_60s=50, http_429=http_429, duplicate_submits=0, cpu_load=0.5,
        wall_seconds=100.0, requests_by_minute=[], failures={},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("run", "missed"),
    [
        (figures(200, 8.5, 10.0), []),
        (figures(199, 8.5, 10.0), ["all 200 jobs completed"]),
        (figures(200, 8.4, 10.0), [">= 85% of the bound"]),
        (figures(200, 9.0, 10.0, http_429=1), ["zero 429s"]),
    ],
)
def test_the_targets_are_the_issues(run: RunFigures, missed: list[str]) -> None:
    failed = [description for description, met in check_targets(run) if not met]
    assert len(failed) == len(missed)
    assert all(any(fragment in description for description in failed) for fragment in missed)
