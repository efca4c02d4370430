"""The seeded soak (bench/bench_soak.py) at a small size: 40 jobs with a fixed seed, every fault, crash
and duplicate the full soak draws, in about two minutes; every invariant must hold.

A failure prints each violation with the job's history (and the run's figures); `python -m bench
soak --jobs 40 --seed 40` reproduces the same jobs and draws.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_soak

pytestmark = pytest.mark.e2e

SEED = 40
JOBS = 40


def test_forty_seeded_jobs_keep_every_invariant(tmp_path: Path) -> None:
    """Given 40 jobs of every kind (bad input, late media, shared photos, captions, WebM, audio) dropped
    at once, random provider faults at 10% in runs, crashes at 2% of handler calls, events delivered
    1-3 times, on a 120-a-minute key
    When the offline stack has settled
    Then no invariant is violated."""
    args = bench_soak.parse_args(
        [
            *("--jobs", str(JOBS), "--seed", str(SEED), "--rpm", "120", "--time-scale", "0.03", "--timeout", "240"),
            *("--output", str(tmp_path / "soak.json"), "--out", str(tmp_path)),
        ]
    )

    summary, violations, histories = bench_soak.run(args)

    assert summary["settled"], bench_soak.report(summary)
    assert summary["jobs"] == JOBS
    assert summary["faults_injected"]["total"] > 0
    assert summary["duplicate_deliveries"]["extra_copies"] > 0
    details = "\n".join(
        f"{item['violation']['invariant']} {item['violation']['name']}: {item['violation']['job_key']}: "
        f"{item['violation']['detail']}\n{json.dumps(item['history'], indent=1, default=str)[:3000]}"
        for item in histories
    )
    assert violations == [], f"{bench_soak.report(summary)}\n{details}"
