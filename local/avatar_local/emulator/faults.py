"""Fault plans: which requests get which failure, loaded from JSON and consumed at run time."""

from __future__ import annotations

import re
import threading
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


class FaultPlan(BaseModel):
    """`{"rules": [...]}`; a bare JSON list of rules is accepted too."""

    model_config = ConfigDict(extra="forbid")

    rules: list[FaultRule] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _bare_list(cls, value: object) -> object:
        return {"rules": value} if isinstance(value, list) else value


class FaultBook:
    """The plan being consumed: rules are tried in order, each until its `times` are used up."""

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._remaining: list[int] = []
        self.injected = 0
        self.injected_by_kind: dict[str, int] = {}
        self.replace(plan or FaultPlan())

    def replace(self, plan: FaultPlan) -> None:
        with self._lock:
            self._rules = list(plan.rules)
            self._remaining = [rule.times for rule in plan.rules]

    def take(self, endpoint: str, title: str | None, has_job: bool) -> FaultRule | None:
        with self._lock:
            for index, rule in enumerate(self._rules):
                if self._remaining[index] > 0 and rule.matches(endpoint, title, has_job):
                    self._remaining[index] -= 1
                    self.injected += 1
                    self.injected_by_kind[rule.fault] = self.injected_by_kind.get(rule.fault, 0) + 1
                    return rule
        return None

    def remaining(self) -> list[int]:
        with self._lock:
            return list(self._remaining)
