"""Fault plans: which requests get which failure, loaded from JSON and consumed at run time.

Two parts, both optional: `rules` (explicit: this fault, this many times, on requests that match)
and `random` (a seeded draw on every request: a share of them fail, some in runs of several in a
row for the same job). Rules are tried first; a request no rule takes goes to the random draw.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

FaultEndpoint = Literal["submit", "status", "result", "download"]
FaultKind = Literal[
    "http_429",
    "http_500",
    "http_502",
    "http_504",
    "read_timeout",
    "connection_reset",
    "malformed_body",
    "failed",
    "early_expiry",
    "slow_download",
]

HTTP_FAULT_STATUS: dict[str, int] = {"http_429": 429, "http_500": 500, "http_502": 502, "http_504": 504}
# These act on an existing job (or, for downloads, an existing file); on a request for an unknown id
# they wait for one that exists rather than being used up on a plain 404.
JOB_FAULTS = frozenset({"failed", "early_expiry"})
FILE_FAULTS = frozenset({"early_expiry", "malformed_body", "slow_download"})
DEFAULT_READ_TIMEOUT_SECONDS = 35.0
DEFAULT_FAILED_MESSAGE = "Render failed (injected by the emulator's fault plan)"
ALL_ENDPOINTS: tuple[FaultEndpoint, ...] = ("submit", "status", "result", "download")
# Faults that end a job (or only slow it down): drawn alone, never in a run.
SINGLE_SHOT_FAULTS = frozenset({"failed", "early_expiry", "slow_download"})
# Relative weights of the kinds a random plan draws: the transient faults often, the rest rarely.
DEFAULT_KIND_WEIGHTS: dict[FaultKind, float] = {
    "http_429": 3.0,
    "http_500": 3.0,
    "http_502": 2.0,
    "http_504": 2.0,
    "read_timeout": 1.0,
    "connection_reset": 2.0,
    "malformed_body": 2.0,
    "failed": 0.5,
    "early_expiry": 0.5,
    "slow_download": 1.0,
}
# Run lengths of a random plan's transient faults (weights): mostly one, sometimes a sustained run.
DEFAULT_RUN_LENGTHS: dict[int, float] = {1: 0.55, 2: 0.15, 3: 0.1, 4: 0.05, 5: 0.05, 6: 0.1}


class FaultRule(BaseModel):
    """One failure to inject into the next `times` requests that match endpoint and title_pattern."""

    model_config = ConfigDict(extra="forbid")

    endpoint: FaultEndpoint
    fault: FaultKind
    times: int = Field(default=1, ge=1)
    title_pattern: str | None = None
    message: str | None = None
    delay_seconds: float | None = Field(default=None, ge=0)

    @field_validator("title_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"title_pattern is not a valid regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _fits_endpoint(self) -> FaultRule:
        if self.fault == "slow_download" and self.endpoint != "download":
            raise ValueError("slow_download only applies to the download endpoint")
        if self.fault == "failed" and self.endpoint == "download":
            raise ValueError("failed applies to submit/status/result (a download has no render to fail)")
        return self

    def matches(self, endpoint: str, title: str | None, has_job: bool) -> bool:
        """`has_job`: the request's job is alive (status/result) or its output file exists (download)."""
        if endpoint != self.endpoint:
            return False
        needs_target = self.fault in (FILE_FAULTS if endpoint == "download" else JOB_FAULTS)
        if needs_target and not has_job:
            return False
        if self.title_pattern is None:
            return True
        return title is not None and re.search(self.title_pattern, title) is not None


def applies_to(fault: str, endpoint: str) -> bool:
    """What FaultRule allows: slow_download only on downloads, failed never on them."""
    if fault == "slow_download":
        return endpoint == "download"
    return not (fault == "failed" and endpoint == "download")


class RandomFaults(BaseModel):
    """A seeded random fault on any request, at `rate`, of every kind in `kinds` (relative weights).

    Each job (its title, else the keys of the media it names) has its own stream of draws per
    endpoint: the n-th status check of a job gets the same draw whatever other jobs do, so the seed
    reproduces the faults. A transient fault starts a run of `run_lengths` (weights by length): the
    same fault on that many consecutive requests of that job at that endpoint. `rate` is the share
    of requests that get a fault over a long stream, runs included.
    """

    model_config = ConfigDict(extra="forbid")

    rate: float = Field(ge=0, le=1)
    seed: int = 0
    endpoints: list[FaultEndpoint] = Field(default_factory=lambda: list(ALL_ENDPOINTS))
    kinds: dict[FaultKind, float] = Field(default_factory=lambda: dict(DEFAULT_KIND_WEIGHTS))
    run_lengths: dict[int, float] = Field(default_factory=lambda: dict(DEFAULT_RUN_LENGTHS))
    # Real seconds a read_timeout stalls: just past the client's read timeout is enough.
    read_timeout_seconds: float = Field(default=DEFAULT_READ_TIMEOUT_SECONDS, ge=0)
    # Real seconds between the 16 KiB chunks of a slow download (None: the emulator's scaled default).
    slow_download_pause_seconds: float | None = Field(default=None, ge=0)
    failed_message: str | None = None

    @field_validator("kinds", "run_lengths")
    @classmethod
    def _weights(cls, value: dict[object, float]) -> dict[object, float]:
        if any(weight < 0 for weight in value.values()) or not any(weight > 0 for weight in value.values()):
            raise ValueError("weights must be >= 0, and at least one > 0")
        return value

    @field_validator("run_lengths")
    @classmethod
    def _lengths(cls, value: dict[int, float]) -> dict[int, float]:
        if any(length < 1 for length in value):
            raise ValueError("run lengths must be at least 1")
        return value

    def kinds_for(self, endpoint: str) -> dict[str, float]:
        return {kind: w for kind, w in self.kinds.items() if w > 0 and applies_to(kind, endpoint)}

    def mean_run_length(self, endpoint: str) -> float:
        """Requests a drawn fault occupies on average at this endpoint (single-shot kinds count 1)."""
        kinds = self.kinds_for(endpoint)
        total = sum(kinds.values())
        if not total:
            return 1.0
        lengths = sum(length * w for length, w in self.run_lengths.items()) / sum(self.run_lengths.values())
        return sum(w * (1.0 if kind in SINGLE_SHOT_FAULTS else lengths) for kind, w in kinds.items()) / total

    def start_probability(self, endpoint: str) -> float:
        """The chance a request outside a run starts one, so that `rate` of all requests fail:
        rate = p*E / (p*E + 1 - p) for runs of mean length E."""
        mean = self.mean_run_length(endpoint)
        return self.rate / (mean * (1 - self.rate) + self.rate) if self.rate < 1 else 1.0


class FaultPlan(BaseModel):
    """`{"rules": [...], "random": {...}}`; a bare JSON list of rules is accepted too."""

    model_config = ConfigDict(extra="forbid")

    rules: list[FaultRule] = Field(default_factory=list)
    random: RandomFaults | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, value: object) -> object:
        return {"rules": value} if isinstance(value, list) else value


class _DrawStream:
    """One job's draws at one endpoint: seeded by (plan seed, endpoint, job), so reproducible."""

    def __init__(self, plan: RandomFaults, endpoint: str, identity: str) -> None:
        self._rng = random.Random(f"{plan.seed}|{endpoint}|{identity}")  # noqa: S311 - fault draws, not security
        kinds = plan.kinds_for(endpoint)
        self._kinds, self._kind_weights = list(kinds), list(kinds.values())
        self._lengths, self._length_weights = list(plan.run_lengths), list(plan.run_lengths.values())
        self._start = plan.start_probability(endpoint) if kinds else 0.0
        self._run_kind: str | None = None
        self._run_left = 0
        self.draws = 0

    def next(self) -> tuple[str | None, int]:
        """The fault for the next request (None: none), and the length of the run it starts (0: none)."""
        self.draws += 1
        if self._run_left > 0:
            self._run_left -= 1
            return self._run_kind, 0
        if self._rng.random() >= self._start:
            return None, 0
        kind = self._rng.choices(self._kinds, self._kind_weights)[0]
        length = 1 if kind in SINGLE_SHOT_FAULTS else self._rng.choices(self._lengths, self._length_weights)[0]
        self._run_kind, self._run_left = kind, length - 1
        return kind, length


class FaultBook:
    """The plan being consumed: rules are tried in order, each until its `times` are used up; then
    the random part, if any, draws for the request's job."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._remaining: list[int] = []
        self._random: RandomFaults | None = None
        self._streams: dict[tuple[str, str], _DrawStream] = {}
        self.injected = 0
        self.injected_by_kind: dict[str, int] = {}
        self.injected_by_endpoint: dict[str, dict[str, int]] = {}
        # Random runs started, by (endpoint, fault, length): what a seed's plan actually drew.
        self.runs_started: Counter[tuple[str, str, int]] = Counter()
        self.replace(plan or FaultPlan())

    def replace(self, plan: FaultPlan) -> None:
        with self._lock:
            self._rules = list(plan.rules)
            self._remaining = [rule.times for rule in plan.rules]
            self._random = plan.random
            self._streams = {}

    def take(self, endpoint: str, title: str | None, has_job: bool, identity: str | None = None) -> FaultRule | None:
        """The fault for this request, if any. `identity` names the request's job for the random draw
        (default: its title)."""
        with self._lock:
            for index, rule in enumerate(self._rules):
                if self._remaining[index] > 0 and rule.matches(endpoint, title, has_job):
                    self._remaining[index] -= 1
                    self._count(endpoint, rule.fault)
                    return rule
            return self._draw(endpoint, identity if identity is not None else title, has_job)

    def _draw(self, endpoint: str, identity: str | None, has_job: bool) -> FaultRule | None:
        plan = self._random
        if plan is None or endpoint not in plan.endpoints:
            return None
        key = (endpoint, identity or "")
        stream = self._streams.get(key)
        if stream is None:
            stream = self._streams[key] = _DrawStream(plan, endpoint, identity or "")
        kind, run_length = stream.next()
        if run_length:
            self.runs_started[(endpoint, str(kind), run_length)] += 1
        if kind is None:
            return None
        rule = FaultRule(
            endpoint=endpoint,
            fault=kind,
            message=plan.failed_message,
            delay_seconds=(
                plan.read_timeout_seconds
                if kind == "read_timeout"
                else plan.slow_download_pause_seconds
                if kind == "slow_download"
                else None
            ),
        )
        if not rule.matches(endpoint, None, has_job):
            return None  # a job fault on an unknown job, a file fault on a missing file: nothing to do
        self._count(endpoint, kind)
        return rule

    def _count(self, endpoint: str, kind: str) -> None:
        self.injected += 1
        self.injected_by_kind[kind] = self.injected_by_kind.get(kind, 0) + 1
        by_kind = self.injected_by_endpoint.setdefault(endpoint, {})
        by_kind[kind] = by_kind.get(kind, 0) + 1

    def remaining(self) -> list[int]:
        with self._lock:
            return list(self._remaining)
