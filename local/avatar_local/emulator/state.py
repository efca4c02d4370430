"""The emulator's memory: jobs and their timelines, rate-limit windows, credits, counters and the request log.

All of it sits behind one lock; the HTTP threads and the render workers only go through JobBook.
Deadlines use the monotonic clock; times handed out (stats, log, headers) are Unix wall-clock times.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import math
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel

from avatar_local.emulator.config import EmulatorConfig

JobStatus = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED"]
Endpoint = Literal["submit", "status", "result", "download", "other"]
RATE_WINDOW_SECONDS = 60.0


def payload_fingerprint(model: str, params: dict[str, Any]) -> str:
    """A digest of what was submitted, with URL query strings dropped: presigning the same object twice
    gives different signatures, yet a duplicate submit of one job is still the same request."""
    canonical = {key: _without_query(value) for key, value in params.items()}
    text = json.dumps({"model": model, "params": canonical}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _without_query(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        parts = urlsplit(value)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return value


MEDIA_PARAMETERS = ("image_url", "audio_url")


def object_key_of(url: str) -> str:
    """The object a (presigned) media URL names: its path, without the bucket when the URL is
    path-style (an IP address or localhost host, as a local S3 presigns)."""
    parts = urlsplit(url)
    path = unquote(parts.path).lstrip("/")
    host = parts.hostname or ""
    try:
        path_style = host == "localhost" or bool(ipaddress.ip_address(host))
    except ValueError:
        path_style = False
    return path.split("/", 1)[1] if path_style and "/" in path else path


def media_keys_of(params: dict[str, Any]) -> dict[str, str]:
    """{"image_url": "inbox/a/alice.png", ...}: the objects a submit's media URLs name."""
    return {name: object_key_of(value) for name in MEDIA_PARAMETERS if isinstance(value := params.get(name), str)}


def job_identity(title: str | None, params: dict[str, Any]) -> str | None:
    """What names a submitted job across runs, for the random fault draws: its title (video_title, or
    Avatar V's prompt), else the keys of the media it was given. No URL signatures, no ports."""
    if title:
        return title
    keys = media_keys_of(params)
    return "media:" + ",".join(sorted(keys.values())) if keys else None


class JobStats(BaseModel):
    request_id: str
    model: str
    video_title: str | None
    status: JobStatus
    expired: bool
    error: str | None
    submits: int = 1
    status_calls: int
    result_calls: int
    downloads: int
    submitted_at: float
    completed_at: float | None
    render_seconds: float  # the drawn render time, in real (scaled) seconds
    media_seconds: float | None  # length of the rendered video (its speech), once rendered
    payload_fingerprint: str  # equal for two submits of the same parameters (see payload_fingerprint())
    identity: str | None = None  # job_identity(): title, else the media keys
    media_keys: dict[str, str] = {}  # the objects its media URLs named, by parameter (media_keys_of())
    output_files: dict[str, str] = {}  # extension -> the file served for it (the emulator keeps it)
    # The job the client said this submit was for (CLIENT_JOB_HEADER); the offline stack sends it.
    client_job_id: str | None = None


class EmulatorStats(BaseModel):
    requests: int
    submits_accepted: int
    submits_rejected_by_code: dict[int, int]
    http_429: int
    rate_limited: int
    status_calls: int
    result_calls: int
    downloads: int
    faults_injected: int
    faults_by_kind: dict[str, int]
    faults_by_endpoint: dict[str, dict[str, int]] = {}


class RequestLogEntry(BaseModel):
    at: float  # Unix time the request arrived
    method: str
    path: str
    endpoint: Endpoint
    request_id: str | None
    video_title: str | None
    status: int | None  # None: no response was sent (read_timeout, connection_reset)
    fault: str | None
    duration_seconds: float
    identity: str | None = None  # the job the request is about (job_identity()), when known


@dataclass
class Job:
    request_id: str
    model: str
    params: dict[str, Any]
    video_title: str | None
    match_title: str | None
    submitted_wall: float
    submitted_mono: float
    queued_until: float
    due: float
    expires: float
    render_seconds: float
    payload_fingerprint: str = ""
    identity: str | None = None
    client_job_id: str | None = None
    status_calls: int = 0
    result_calls: int = 0
    downloads: int = 0
    ready_mono: float | None = None
    media_seconds: float | None = None
    outputs: dict[str, Path] = field(default_factory=dict)
    error: str | None = None
    ended_mono: float | None = None
    expired_early: bool = False
    files_gone: bool = False

    def status_at(self, now: float) -> JobStatus:
        if self.error is not None:
            return "FAILED"
        if now < self.queued_until:
            return "QUEUED"
        if now < self.due or self.ready_mono is None:
            return "PROCESSING"
        return "COMPLETED"

    def completed_mono(self) -> float | None:
        if self.error is not None or self.ready_mono is None:
            return None
        return max(self.due, self.ready_mono)

    def alive(self, now: float) -> bool:
        return not self.expired_early and now < self.expires

    def to_wall(self, mono: float) -> float:
        return self.submitted_wall + (mono - self.submitted_mono)


@dataclass(frozen=True)
class JobView:
    """A consistent reading of one job, taken under the lock, for building a response."""

    request_id: str
    model: str
    status: JobStatus
    error: str | None
    metrics: dict[str, float | int]
    outputs: dict[str, Path]
    caption: bool


class JobBook:
    def __init__(self, config: EmulatorConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        # Reproducible render times and ids for a seeded run; nothing here is a secret.
        self._rng = random.Random(config.seed)  # noqa: S311 - render-time jitter, not security
        self._jobs: dict[str, Job] = {}
        self._accepted = 0
        self._windows: dict[str, tuple[float, int]] = {}
        self._log: list[RequestLogEntry] = []
        self._rejected: dict[int, int] = {}
        self._counts: dict[str, int] = {"http_429": 0, "rate_limited": 0, "status": 0, "result": 0, "download": 0}

    # --- admission -------------------------------------------------------------------------------

    def consume_rate(self, api_key: str) -> datetime | None:
        """Count one /v2/ request in the key's fixed window; the window's reset time when over `rpm`."""
        if self._config.rpm is None:
            return None
        window = self._config.scaled(RATE_WINDOW_SECONDS)
        now = time.monotonic()
        with self._lock:
            start, count = self._windows.get(api_key, (now, 0))
            if now >= start + window:
                start, count = now, 0
            self._windows[api_key] = (start, count + 1)
            if count + 1 <= self._config.rpm:
                return None
            self._counts["rate_limited"] += 1
            return datetime.fromtimestamp(time.time() + (start + window - now), UTC)

    def window_reset(self, api_key: str | None) -> datetime:
        window = self._config.scaled(RATE_WINDOW_SECONDS)
        now = time.monotonic()
        with self._lock:
            start, _ = self._windows.get(api_key or "", (now, 0))
        end = start + window if now < start + window else now + window
        return datetime.fromtimestamp(time.time() + (end - now), UTC)

    def create_job(
        self,
        model: str,
        params: dict[str, Any],
        video_title: str | None,
        match_title: str | None,
        client_job_id: str | None = None,
    ) -> Job | None:
        """A new job with its timeline drawn now; None when the credits are used up (a 406)."""
        config = self._config
        with self._lock:
            if config.credits is not None and self._accepted >= config.credits:
                return None
            self._accepted += 1
            spread = math.exp(self._rng.gauss(0.0, config.render_sigma)) if config.render_sigma > 0 else 1.0
            render = config.scaled(config.render_seconds) * spread
            seeded_id = uuid.UUID(int=self._rng.getrandbits(128), version=4)
            request_id = str(uuid.uuid4() if config.seed is None else seeded_id)
            now = time.monotonic()
            job = Job(
                request_id=request_id,
                model=model,
                params=params,
                video_title=video_title,
                match_title=match_title,
                submitted_wall=time.time(),
                submitted_mono=now,
                queued_until=now + render * config.queued_fraction,
                due=now + render,
                expires=now + config.scaled(config.retention_seconds),
                render_seconds=render,
                payload_fingerprint=payload_fingerprint(model, params),
                identity=job_identity(match_title, params),
                client_job_id=client_job_id,
            )
            self._jobs[request_id] = job
            return job

    # --- job lifecycle ---------------------------------------------------------------------------

    def get(self, request_id: str | None) -> Job | None:
        with self._lock:
            return self._jobs.get(request_id or "")

    def is_alive(self, job: Job | None) -> bool:
        with self._lock:
            return job is not None and job.alive(time.monotonic())

    def mark_rendered(self, request_id: str, outputs: dict[str, Path], media_seconds: float) -> None:
        with self._lock:
            job = self._jobs[request_id]
            job.outputs = dict(outputs)
            job.media_seconds = media_seconds
            job.ready_mono = time.monotonic()

    def fail(self, request_id: str, message: str) -> None:
        """The first failure wins: a fault-plan failure is not overwritten by a later render error."""
        with self._lock:
            job = self._jobs[request_id]
            if job.error is None:
                job.error = message
                job.ended_mono = time.monotonic()

    def expire(self, request_id: str, files_too: bool = False) -> None:
        with self._lock:
            job = self._jobs[request_id]
            job.expired_early = True
            job.files_gone = job.files_gone or files_too

    def count_call(self, job: Job | None, endpoint: Endpoint) -> None:
        with self._lock:
            if job is None:
                return
            if endpoint == "status":
                job.status_calls += 1
            elif endpoint == "result":
                job.result_calls += 1
            elif endpoint == "download":
                job.downloads += 1

    def view(self, request_id: str) -> JobView | None:
        """None when the id is unknown or no longer retained (a 404)."""
        now = time.monotonic()
        with self._lock:
            job = self._jobs.get(request_id)
            if job is None or not job.alive(now):
                return None
            status = job.status_at(now)
            return JobView(
                request_id=job.request_id,
                model=job.model,
                status=status,
                error=job.error,
                metrics=self._metrics(job, status, now),
                outputs=dict(job.outputs),
                caption=bool(job.params.get("caption")),
            )

    def output_file(self, request_id: str, extension: str) -> Path | None:
        """The file behind an output URL; like the real CDN, nothing is there before the job completes."""
        now = time.monotonic()
        with self._lock:
            job = self._jobs.get(request_id)
            completed = job.completed_mono() if job is not None else None
            if job is None or job.files_gone or completed is None or now < completed:
                return None
            return job.outputs.get(extension)

    def _metrics(self, job: Job, status: JobStatus, now: float) -> dict[str, float | int]:
        scale = self._config.time_scale
        end = job.completed_mono() if status == "COMPLETED" else None
        end = end or job.ended_mono or now
        queue = (min(end, job.queued_until) - job.submitted_mono) / scale
        inference = max(0.0, end - job.queued_until) / scale
        metrics: dict[str, float | int] = {
            "inference_time": round(inference, 3),
            "queue_time": round(queue, 3),
            "total_time": round(queue + inference, 3),
            "cost": self._config.costs.get(job.model, 1.0) if status == "COMPLETED" else 0.0,
        }
        if self._config.credits is not None:
            metrics["remaining_credits"] = self._config.credits - self._accepted
        return metrics

    # --- accounting ------------------------------------------------------------------------------

    def record(self, entry: RequestLogEntry) -> None:
        with self._lock:
            self._log.append(entry)
            if entry.status == 429:
                self._counts["http_429"] += 1
            if entry.endpoint in ("status", "result", "download"):
                self._counts[entry.endpoint] += 1
            if entry.endpoint == "submit" and entry.status is not None and entry.status >= 400:
                self._rejected[entry.status] = self._rejected.get(entry.status, 0) + 1

    def request_log(self) -> list[RequestLogEntry]:
        with self._lock:
            return list(self._log)

    def stats(
        self,
        faults_injected: int,
        faults_by_kind: dict[str, int],
        faults_by_endpoint: dict[str, dict[str, int]] | None = None,
    ) -> EmulatorStats:
        with self._lock:
            return EmulatorStats(
                requests=len(self._log),
                submits_accepted=self._accepted,
                submits_rejected_by_code=dict(self._rejected),
                http_429=self._counts["http_429"],
                rate_limited=self._counts["rate_limited"],
                status_calls=self._counts["status"],
                result_calls=self._counts["result"],
                downloads=self._counts["download"],
                faults_injected=faults_injected,
                faults_by_kind=dict(faults_by_kind),
                faults_by_endpoint={k: dict(v) for k, v in (faults_by_endpoint or {}).items()},
            )

    def snapshot(self) -> list[JobStats]:
        now = time.monotonic()
        with self._lock:
            return [self._job_stats(job, now) for job in self._jobs.values()]

    @staticmethod
    def _job_stats(job: Job, now: float) -> JobStats:
        status = job.status_at(now)
        completed = job.completed_mono() if status == "COMPLETED" else None
        return JobStats(
            request_id=job.request_id,
            model=job.model,
            video_title=job.video_title,
            status=status,
            expired=not job.alive(now),
            error=job.error,
            status_calls=job.status_calls,
            result_calls=job.result_calls,
            downloads=job.downloads,
            submitted_at=job.submitted_wall,
            completed_at=job.to_wall(completed) if completed is not None else None,
            render_seconds=job.render_seconds,
            media_seconds=job.media_seconds,
            payload_fingerprint=job.payload_fingerprint,
            identity=job.identity,
            media_keys=media_keys_of(job.params),
            output_files={ext: str(path) for ext, path in job.outputs.items()},
            client_job_id=job.client_job_id,
        )
