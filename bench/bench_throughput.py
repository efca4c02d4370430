"""A burst on the offline stack: 200 jobs dropped at once on a 50-requests-a-minute key.

    python -m bench throughput                     # adaptive, then fixed 2 s -> bench/results/throughput.json
    python -m bench.bench_throughput --jobs 40 --time-scale 0.2 --output /tmp/throughput.json

Everything is the real pipeline (bench_poll.py simulates; this runs it): template.yaml deployed into
a moto server, the real handlers and state machine, the Segmind emulator over loopback HTTP with its
own limit of `--rpm` requests per minute (it answers 429 beyond it, as Segmind does) and renders
drawn from the reference distribution (lognormal, median 140 s, sigma 0.35). Time is scaled:
`--time-scale 0.15` runs a virtual minute in 9 s. The pipeline's shared request budget is set to the
same `--rpm` (the SegmindRequestsPerMinute parameter).

Two runs, each on a fresh stack:
- `adaptive`: the pipeline as deployed (the learned poll schedule);
- `fixed-2s`: the same stack with PollFixedIntervalSeconds=2, Segmind's SDK example. It needs about
  ten times the requests per job, so it cannot finish 200 jobs in a sensible time; it is stopped
  when it has run as long (virtual time) as the adaptive run took for all 200, and its figures are
  for what it finished by then.

Figures per run:
- jobs_per_min: jobs completed per virtual minute, from the drop to the last completion (or the cut);
- bound_jobs_per_min: what the budget allows at the run's own cost per job: the bucket's allowance
  over the run (its burst once, then `rpm - burst` a minute; see adapters/request_budget.py) divided
  by the Segmind requests a completed job took (1 submit + its status checks + 1 result fetch, from
  the job records). jobs_per_min / bound is the share of the key's allowance that became finished
  videos: what is lost is the tail (the last renders, with nothing left to submit) and idle tokens;
- http_429: 429s the emulator answered; duplicate_submits: accepted submits beyond one per job file
  (matched by the jobs' unique titles).
The table also shows requests per job, the most requests the emulator saw in any 60 s, and the
process's CPU load: near 1.0 the machine, not the pipeline, sets the pace (virtual time runs on
while the handlers wait for the CPU); raise --time-scale then.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from avatar_local.job_records import wait_until
from avatar_local.stack.runner import LocalPipeline, LocalRunConfig
from avatar_pipeline.domain.request_budget import BucketShape
from avatar_pipeline.records import JobStatus
from bench.bench_poll import max_in_window

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results" / "throughput.json"
PHOTO = HERE.parent / "examples" / "alice.png"
POLICIES = {"adaptive": {}, "fixed-2s": {"PollFixedIntervalSeconds": "2"}}
JOBS = 200
RPM = 50
TIME_SCALE = 0.15
RENDER_MEDIAN_SECONDS = 140.0
RENDER_SIGMA = 0.35
# Without an adaptive run to match, the comparison run stops after this many virtual minutes.
DEFAULT_LIMIT_MINUTES = 60.0
TARGET_SHARE_OF_BOUND = 0.85
PROGRESS_EVERY_WALL_SECONDS = 20.0


@dataclass
class RunFigures:
    policy: str
    jobs: int
    completed: int
    failed: int
    minutes: float
    cut: bool
    jobs_per_min: float
    bound_jobs_per_min: float
    requests_per_job: float
    status_calls_per_job: float
    api_requests: int
    max_requests_in_any_60s: int
    http_429: int
    duplicate_submits: int
    cpu_load: float
    wall_seconds: float
    requests_by_minute: list[int]
    failures: dict[str, int]

    def published(self) -> dict[str, float | int]:
        """The figures bench/results/throughput.json keeps (the issue's schema)."""
        return {
            "jobs": self.jobs,
            "completed": self.completed,
            "jobs_per_min": self.jobs_per_min,
            "bound_jobs_per_min": self.bound_jobs_per_min,
            "http_429": self.http_429,
            "duplicate_submits": self.duplicate_submits,
        }


@dataclass(frozen=True)
class RunWindow:
    """When a run's jobs went in and when it stopped (virtual time; `cut`: at the limit), and what it cost
    the machine (the process's CPU load over its wall seconds)."""

    dropped_at: datetime
    stopped_at: datetime
    cut: bool
    cpu_load: float
    wall_seconds: float


def write_inbox(folder: Path, jobs: int) -> None:
    """A folder per job with its photo and job file; unique titles let duplicates be counted at the
    emulator. (Job files sharing one folder cost each finishing job a read of every sibling, to keep a
    photo they share: a separate concern from the request budget, kept out of this run.)"""
    for number in range(jobs):
        job_folder = folder / f"burst-{number:03d}"
        job_folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(PHOTO, job_folder / "presenter.png")
        job = {
            "model": "heygen-avatar-iv",
            "photo": "presenter.png",
            "video_title": f"Burst {number:03d}",
            "script": f"Hello, this is video number {number}.",
            "voice_id": "Coral",
            "resolution": "720p",
        }
        (job_folder / "job.json").write_text(json.dumps(job), encoding="utf-8")


def allowance_per_minute(rpm: int, minutes: float) -> float:
    """Requests a minute the shared budget (the bucket the functions use) lets through over the run."""
    return BucketShape.for_limit(rpm).allowance_per_minute(minutes)


def run_policy(policy: str, jobs: int, rpm: int, time_scale: float, limit_minutes: float) -> RunFigures:
    config = LocalRunConfig(
        render_seconds=RENDER_MEDIAN_SECONDS,
        render_sigma=RENDER_SIGMA,
        time_scale=time_scale,
        rpm=rpm,
        parameters=dict(POLICIES[policy]),
    )
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as scratch:
        inbox = Path(scratch) / "inbox"
        write_inbox(inbox, jobs)
        with LocalPipeline(config) as pipeline:
            print(f"{policy}: {jobs} jobs dropped, limit {limit_minutes:.1f} virtual minutes", file=pipeline.console)
            wall_start, cpu_start = time.monotonic(), time.process_time()
            dropped_at = pipeline.clock.now()
            job_keys = pipeline.drop(inbox)
            cut = _wait(pipeline, jobs, dropped_at, limit_minutes)
            wall = time.monotonic() - wall_start
            window = RunWindow(
                dropped_at=dropped_at,
                stopped_at=pipeline.clock.now(),
                cut=cut,
                cpu_load=(time.process_time() - cpu_start) / wall,
                wall_seconds=wall,
            )
            return _figures(pipeline, policy, job_keys, window, rpm)


def _wait(pipeline: LocalPipeline, jobs: int, dropped_at: datetime, limit_minutes: float) -> bool:
    """Until every job has notified, or the virtual limit passes (True: cut)."""
    next_report = time.monotonic() + PROGRESS_EVERY_WALL_SECONDS

    def minutes() -> float:
        return (pipeline.clock.now() - dropped_at).total_seconds() / 60

    def all_notified() -> bool:
        nonlocal next_report
        notified = len(pipeline.notifications)
        if notified < jobs and time.monotonic() >= next_report:
            assert pipeline.emulator is not None
            stats = pipeline.emulator.stats()
            print(
                f"  {minutes():5.1f} min: {notified:3d}/{jobs} done, {stats.submits_accepted:3d} submitted, "
                f"{stats.status_calls:4d} status checks, {stats.http_429} x 429",
                file=pipeline.console,
                flush=True,
            )
            next_report += PROGRESS_EVERY_WALL_SECONDS
        return notified >= jobs

    return not wait_until(all_notified, interval=0.2, give_up=lambda: minutes() >= limit_minutes)


def _figures(pipeline: LocalPipeline, policy: str, job_keys: list[str], window: RunWindow, rpm: int) -> RunFigures:
    assert pipeline.emulator is not None
    dropped_at, stopped_at, cut = window.dropped_at, window.stopped_at, window.cut
    dropped = set(job_keys)
    records = [r for r in pipeline.job_records() if r.job_key in dropped]
    done = [r for r in records if r.status == JobStatus.SUCCEEDED and r.completed_at is not None]
    failed = sum(r.status == JobStatus.FAILED for r in records)
    last = max((r.completed_at for r in done if r.completed_at is not None), default=stopped_at)
    end = stopped_at if cut else last
    minutes = (end - dropped_at).total_seconds() / 60
    # A completed job's requests: its submit, the checks recorded on it, and the result fetch.
    per_job = [2 + r.status_calls for r in done]
    requests_per_job = statistics.fmean(per_job) if per_job else float("nan")
    bound = allowance_per_minute(rpm, minutes) / requests_per_job if per_job else float("nan")
    log = [e for e in pipeline.emulator.request_log if e.endpoint in ("submit", "status", "result")]
    virtual_moments = [
        (pipeline.clock.to_virtual(datetime.fromtimestamp(e.at, UTC)) - dropped_at).total_seconds() for e in log
    ]
    titles = Counter(j.video_title for j in pipeline.emulator.jobs_snapshot())
    stats = pipeline.emulator.stats()
    return RunFigures(
        policy=policy,
        jobs=len(job_keys),
        completed=len(done),
        failed=failed,
        minutes=round(minutes, 2),
        cut=cut,
        jobs_per_min=round(len(done) / minutes, 2) if minutes > 0 else 0.0,
        bound_jobs_per_min=round(bound, 2),
        requests_per_job=round(requests_per_job, 2),
        status_calls_per_job=round(requests_per_job - 2, 2),
        api_requests=len(log),
        max_requests_in_any_60s=max_in_window(virtual_moments),
        http_429=stats.http_429,
        duplicate_submits=sum(count - 1 for count in titles.values() if count > 1),
        cpu_load=round(window.cpu_load, 2),
        wall_seconds=round(window.wall_seconds, 1),
        requests_by_minute=[
            sum(1 for moment in virtual_moments if minute * 60 <= moment < (minute + 1) * 60)
            for minute in range(int(minutes) + 1)
        ],
        failures=dict(Counter(str(r.error_code) for r in records if r.status == JobStatus.FAILED)),
    )


def report(runs: list[RunFigures], rpm: int, time_scale: float) -> str:
    header = (
        f"{'policy':<9} {'done':>9} {'minutes':>8} {'jobs/min':>8} {'bound':>6} {'share':>6} {'req/job':>7} "
        f"{'checks/job':>10} {'max/60s':>7} {'429s':>5} {'dup':>4} {'cpu':>5} {'wall':>6}"
    )
    lines = [
        f"{runs[0].jobs} jobs dropped at once; emulator and budget at {rpm} requests/minute; renders lognormal "
        f"median {RENDER_MEDIAN_SECONDS:g} s sigma {RENDER_SIGMA}; time scale {time_scale:g}",
        header,
    ]
    for run in runs:
        share = run.jobs_per_min / run.bound_jobs_per_min if run.bound_jobs_per_min else float("nan")
        lines.append(
            f"{run.policy:<9} {f'{run.completed}/{run.jobs}':>9} {run.minutes:>7.1f}{'*' if run.cut else ' '} "
            f"{run.jobs_per_min:>8.2f} {run.bound_jobs_per_min:>6.2f} {share:>6.0%} {run.requests_per_job:>7.2f} "
            f"{run.status_calls_per_job:>10.2f} {run.max_requests_in_any_60s:>7d} {run.http_429:>5d} "
            f"{run.duplicate_submits:>4d} {run.cpu_load:>5.2f} {run.wall_seconds:>5.0f}s"
        )
    for run in runs:
        lines.append(f"{run.policy} requests per virtual minute: {' '.join(map(str, run.requests_by_minute))}")
        if run.failures:
            lines.append(f"{run.policy} failed jobs by error code: {run.failures}")
    if any(run.cut for run in runs):
        lines.append("* stopped at the limit (virtual minutes); its figures are for what it finished by then")
    return "\n".join(lines)


def check_targets(adaptive: RunFigures) -> list[tuple[str, bool]]:
    share = adaptive.jobs_per_min / adaptive.bound_jobs_per_min
    return [
        (f"adaptive: all {adaptive.jobs} jobs completed ({adaptive.completed})", adaptive.completed == adaptive.jobs),
        (f"adaptive: zero 429s ({adaptive.http_429})", adaptive.http_429 == 0),
        (f"adaptive: zero duplicate submits ({adaptive.duplicate_submits})", adaptive.duplicate_submits == 0),
        (
            f"adaptive: {adaptive.jobs_per_min:g} jobs/min >= {TARGET_SHARE_OF_BOUND:.0%} of the bound "
            f"{adaptive.bound_jobs_per_min:g} ({share:.0%})",
            share >= TARGET_SHARE_OF_BOUND,
        ),
    ]


def main(argv: list[str] | None = None) -> int:
    """`python -m bench` calls this without arguments: the full benchmark."""
    parser = argparse.ArgumentParser(prog="python -m bench.bench_throughput", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=JOBS)
    parser.add_argument("--rpm", type=int, default=RPM)
    parser.add_argument("--time-scale", type=float, default=TIME_SCALE)
    parser.add_argument("--policies", nargs="+", choices=list(POLICIES), default=list(POLICIES))
    parser.add_argument("--limit-minutes", type=float, default=DEFAULT_LIMIT_MINUTES, help="virtual minutes per run")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv or [])
    runs: list[RunFigures] = []
    for policy in args.policies:
        # The comparison gets the time the adaptive run needed for everything, no more.
        limit = runs[0].minutes if runs and runs[0].policy == "adaptive" else args.limit_minutes
        runs.append(run_policy(policy, args.jobs, args.rpm, args.time_scale, limit))
    print("\n" + report(runs, args.rpm, args.time_scale) + "\n")
    adaptive = next((run for run in runs if run.policy == "adaptive"), None)
    checks = check_targets(adaptive) if adaptive is not None else []
    for description, met in checks:
        print(f"  [{'met' if met else 'MISSED'}] {description}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({run.policy: run.published() for run in runs}, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    return 0 if all(met for _, met in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
