"""Segmind's v2 endpoints as the emulator answers them, beside its state (state.py): what a submit,
a status check, a result fetch and a download reply, as `Reply` values. server.py only translates
HTTP to these calls and their replies (and the fault plan's transport faults) back to HTTP."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from avatar_local.emulator.config import EmulatorConfig
from avatar_local.emulator.faults import DEFAULT_FAILED_MESSAGE, FaultRule
from avatar_local.emulator.state import Job, JobBook, JobView
from avatar_local.emulator.validation import SubmissionInvalid, validate_submission

RATE_LIMIT_RESET_HEADER = "x-rate-limit-reset-at-utc"
CONTENT_TYPES = {"mp4": "video/mp4", "webm": "video/webm", "srt": "application/x-subrip"}


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @classmethod
    def json(cls, status: int, payload: object, headers: dict[str, str] | None = None) -> Reply:
        body = json.dumps(payload).encode()
        return cls(status, body, {"Content-Type": "application/json", **(headers or {})})


def error(status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
    return Reply.json(status, {"error": message}, headers)


def rate_limited(reset_at: datetime) -> Reply:
    return error(429, "Rate limit exceeded", {RATE_LIMIT_RESET_HEADER: iso(reset_at)})


def accept(
    book: JobBook,
    model: str,
    payload: dict[str, Any] | None,
    title: str | None,
    content_type: str,
    base: str,
    client_job_id: str | None = None,
) -> tuple[Reply, Job | None]:
    """A submit: the accepted job and its 200, or the refusal (406 wrong type or no credits, 400 invalid).

    `client_job_id` is the offline stack's own name for the job (not Segmind's), recorded with it."""
    if content_type != "application/json":
        return error(406, "Content-Type must be application/json"), None
    if payload is None:
        return error(400, "request body must be a JSON object"), None
    try:
        params = validate_submission(model, payload)
    except SubmissionInvalid as exc:
        return error(400, str(exc)), None
    job = book.create_job(model, params, params.get("video_title"), title, client_job_id)
    if job is None:
        return error(406, "Insufficient credits"), None
    status_url = f"{base}/v2/requests/{job.request_id}/status"
    accepted = {
        "request_id": job.request_id,
        "status": "QUEUED",
        "poll_url": status_url,
        "status_url": status_url,
        "response_url": f"{base}/v2/requests/{job.request_id}",
    }
    return Reply.json(200, accepted), job


def apply_job_fault(book: JobBook, rule: FaultRule | None, request_id: str) -> None:
    """A fault that changes the job itself rather than the reply: it fails, or expires early."""
    if rule is None:
        return
    if rule.fault == "failed":
        book.fail(request_id, rule.message or DEFAULT_FAILED_MESSAGE)
    elif rule.fault == "early_expiry":
        book.expire(request_id)


def status_reply(view: JobView | None, request_id: str, base: str) -> Reply:
    if view is None:
        return error(404, f"Request {request_id} not found")
    if view.status == "FAILED":
        return Reply.json(422, {"status": "FAILED", "error": view.error, "metrics": view.metrics})
    return Reply.json(
        200,
        {
            "status": view.status,
            "request_id": view.request_id,
            "status_url": f"{base}/v2/requests/{view.request_id}/status",
            "response_url": f"{base}/v2/requests/{view.request_id}",
            "metrics": view.metrics,
        },
    )


def result_reply(view: JobView | None, request_id: str, base: str, config: EmulatorConfig) -> Reply:
    if view is None or view.status != "COMPLETED":
        return status_reply(view, request_id, base)
    return Reply.json(200, {"status": "COMPLETED", "metrics": view.metrics, "output": _output(view, base, config)})


def _output(view: JobView, base: str, config: EmulatorConfig) -> object:
    video = next(ext for ext in view.outputs if ext != "srt")
    video_url = f"{base}/outputs/{view.request_id}.{video}"
    if view.caption:
        return {"video_url": video_url, "caption_url": f"{base}/outputs/{view.request_id}.srt"}
    if config.output_shape == "list":
        return [video_url]
    return {"video_url": video_url} if config.output_shape == "object" else video_url


def file_reply(path: Path, extension: str, range_header: str | None) -> Reply:
    """An output file as the CDN serves it: whole (200), a byte range (206), or a 416."""
    data = path.read_bytes()
    headers = {"Content-Type": CONTENT_TYPES[extension], "Accept-Ranges": "bytes", "Cache-Control": "max-age=604800"}
    byte_range = _parse_range(range_header, len(data))
    if byte_range == "invalid":
        return Reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
    if isinstance(byte_range, tuple):
        start, end = byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return Reply(206, data[start : end + 1], headers)
    return Reply(200, data, headers)


def json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return payload if isinstance(payload, dict) else None


def iso(moment: datetime) -> str:
    return str(moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"))


def _parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """A single `bytes=a-b` range as (first, last) inclusive; None for no range, "invalid" for a 416."""
    if not header:
        return None
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return "invalid"
    first, last = match.group(1), match.group(2)
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(size - 1, int(last)) if last else size - 1
    return (start, end) if start <= end < size else "invalid"
