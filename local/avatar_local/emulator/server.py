"""The HTTP side: Segmind's v2 endpoints plus a CDN-like /outputs/, on a ThreadingHTTPServer.

Order of checks for /v2/ requests: API key (401), rate limit (429, counted per key over every /v2/
request), the fault plan, then the endpoint itself. Submit faults that mean "the provider never took
the job" (HTTP errors, a reset) are decided before a job exists; a read timeout or a malformed 200
happen after it was accepted, which is the ambiguous case a client has to survive.
"""

from __future__ import annotations

import logging
import re
import socket
import struct
import sys
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from avatar_local.emulator.endpoints import (
    RATE_LIMIT_RESET_HEADER,
    Reply,
    accept,
    apply_job_fault,
    error,
    file_reply,
    iso,
    json_object,
    rate_limited,
    result_reply,
    status_reply,
)
from avatar_local.emulator.faults import DEFAULT_READ_TIMEOUT_SECONDS, HTTP_FAULT_STATUS, FaultRule
from avatar_local.emulator.state import Endpoint, Job, RequestLogEntry, job_identity
from avatar_local.emulator.validation import MODELS, title_of

if TYPE_CHECKING:
    from avatar_local.emulator.service import SegmindEmulator

logger = logging.getLogger("avatar_local.emulator")

# Not Segmind's: a client may name the job a submit is for, and the emulator records it with the job
# it creates (JobStats.client_job_id). The offline stack does, so a job's accepted submits are counted
# by job, never guessed from titles or payloads that many jobs share.
CLIENT_JOB_HEADER = "x-local-job-id"
MAX_BODY_BYTES = 1024 * 1024
SLOW_CHUNK_BYTES = 16 * 1024
SLOW_PAUSE_SECONDS = 0.5  # per chunk, before time_scale, when the rule gives no delay_seconds
_OUTPUT_NAME = re.compile(r"^([0-9A-Za-z-]{1,64})\.(mp4|webm|srt)$")
_ERROR_TEXT = {429: "Rate limit exceeded", 500: "Internal server error", 502: "Bad gateway", 504: "Gateway timeout"}
_PRE_JOB_FAULTS = frozenset({*HTTP_FAULT_STATUS, "connection_reset"})


@dataclass(frozen=True)
class Route:
    endpoint: Endpoint
    api: bool  # under /v2/: needs a key and counts against the rate limit
    model: str | None = None
    request_id: str | None = None
    extension: str | None = None


def parse_route(method: str, raw_path: str) -> Route:
    path = urlsplit(raw_path).path
    if path.startswith("/v2/"):
        parts = path[len("/v2/") :].split("/")
        if method == "POST" and len(parts) == 1 and parts[0] in MODELS:
            return Route("submit", api=True, model=parts[0])
        if method == "GET" and len(parts) == 3 and parts[0] == "requests" and parts[2] == "status" and parts[1]:
            return Route("status", api=True, request_id=parts[1])
        if method == "GET" and len(parts) == 2 and parts[0] == "requests" and parts[1]:
            return Route("result", api=True, request_id=parts[1])
        return Route("other", api=True)
    match = _OUTPUT_NAME.match(path[len("/outputs/") :]) if path.startswith("/outputs/") else None
    if method in ("GET", "HEAD") and match:
        return Route("download", api=False, request_id=match.group(1), extension=match.group(2))
    return Route("other", api=False)


class _Exchange:
    """What the request log needs to know about one request, filled in as it is handled."""

    def __init__(self, method: str, path: str) -> None:
        self.method = method
        self.path = path
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self.endpoint: Endpoint = "other"
        self.request_id: str | None = None
        self.video_title: str | None = None
        self.status: int | None = None
        self.fault: str | None = None
        self.identity: str | None = None
        self.recorded = False

    def entry(self) -> RequestLogEntry:
        return RequestLogEntry(
            at=self.started_wall,
            method=self.method,
            path=self.path,
            endpoint=self.endpoint,
            request_id=self.request_id,
            video_title=self.video_title,
            status=self.status,
            fault=self.fault,
            duration_seconds=round(time.monotonic() - self.started_mono, 4),
            identity=self.identity,
        )


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], emulator: SegmindEmulator) -> None:
        self.emulator = emulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (a read timeout it gave up on, a reset it was sent) is no server error."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.debug("client %s went away", client_address)
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "SegmindEmulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s - %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    @property
    def emu(self) -> SegmindEmulator:
        return cast(HttpServer, self.server).emulator

    # --- plumbing --------------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        self.exchange = _Exchange(method, self.path)
        try:
            route = parse_route(method, self.path)
            self.exchange.endpoint = route.endpoint
            body = self._read_body()
            if isinstance(body, Reply):
                # The unread body would be parsed as the next request on this connection.
                self.close_connection = True
                self._send(body)
            else:
                self._dispatch(route, body)
        finally:
            self._record()

    def _record(self) -> None:
        """Log the request once; called before a response's headers go out, so a client that has seen
        a response always finds it in the stats and the log."""
        if not self.exchange.recorded:
            self.exchange.recorded = True
            self.emu.book.record(self.exchange.entry())

    def _read_body(self) -> bytes | Reply:
        """The request body, or the error reply when it cannot be read safely."""
        declared = self.headers.get("Content-Length") or "0"
        if not declared.isdigit():
            return error(400, f"invalid Content-Length {declared!r}")
        length = int(declared)
        if length > MAX_BODY_BYTES:
            return error(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, reply: Reply, *, truncate: bool = False) -> None:
        """Send a reply; `truncate` sends half the body under the full Content-Length, then hangs up."""
        self.exchange.status = reply.status
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if truncate:
            self.send_header("Connection", "close")
            self.close_connection = True
        self._record()
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply.body[: len(reply.body) // 2] if truncate else reply.body)

    def _send_api(self, reply: Reply, rule: FaultRule | None) -> None:
        if rule is not None and rule.fault == "malformed_body":
            # Whatever the real answer was, the client gets a 200 it cannot parse.
            self._send(Reply(200, reply.body, reply.headers), truncate=True)
        else:
            self._send(reply)

    def _base_url(self) -> str:
        host = self.headers.get("Host")
        return f"http://{host}" if host else self.emu.base_url

    # --- routing ---------------------------------------------------------------------------------

    def _dispatch(self, route: Route, body: bytes) -> None:
        if route.api:
            api_key = self.headers.get("x-api-key")
            if not api_key or api_key not in self.emu.config.api_keys:
                self._send(error(401, "Unauthorized: missing or invalid x-api-key"))
                return
            reset_at = self.emu.book.consume_rate(api_key)
            if reset_at is not None:
                self._send(rate_limited(reset_at))
                return
        if route.endpoint == "submit":
            self._submit(route, body)
        elif route.endpoint in ("status", "result"):
            self._poll(route)
        elif route.endpoint == "download":
            self._download(route)
        else:
            self._send(error(404, f"Not found: {self.command} {urlsplit(self.path).path}"))

    # --- faults ----------------------------------------------------------------------------------

    def _take_fault(self, endpoint: str, title: str | None, has_job: bool) -> FaultRule | None:
        rule = self.emu.faults.take(endpoint, title, has_job, self.exchange.identity)
        if rule is not None:
            self.exchange.fault = rule.fault
            logger.info("injecting %s into %s %s", rule.fault, self.command, self.path)
        return rule

    def _inject_transport_fault(self, rule: FaultRule) -> bool:
        """HTTP errors, stalls and resets; False when the rule is not one of those."""
        if rule.fault in HTTP_FAULT_STATUS:
            status = HTTP_FAULT_STATUS[rule.fault]
            headers = {}
            if status == 429:
                headers[RATE_LIMIT_RESET_HEADER] = iso(self.emu.book.window_reset(self.headers.get("x-api-key")))
            self._send(error(status, _ERROR_TEXT[status], headers))
        elif rule.fault == "read_timeout":
            delay = rule.delay_seconds if rule.delay_seconds is not None else DEFAULT_READ_TIMEOUT_SECONDS
            self.emu.stopping.wait(delay)
            self.close_connection = True
        elif rule.fault == "connection_reset":
            self._reset_connection()
        else:
            return False
        return True

    def _reset_connection(self) -> None:
        # Linger 0 turns the close into a TCP RST: the client sees "connection reset", not a clean EOF.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    # --- submit ----------------------------------------------------------------------------------

    def _submit(self, route: Route, body: bytes) -> None:
        payload = json_object(body)
        title = title_of(payload) if payload is not None else None
        if payload is not None and isinstance(payload.get("video_title"), str):
            self.exchange.video_title = payload["video_title"]
        self.exchange.identity = job_identity(title, payload) if payload is not None else None
        rule = self._take_fault("submit", title, has_job=True)
        if rule is not None and rule.fault in _PRE_JOB_FAULTS:
            self._inject_transport_fault(rule)
            return
        reply, job = self._accept(str(route.model), payload, title)
        if job is not None:
            self.exchange.request_id = job.request_id
            apply_job_fault(self.emu.book, rule, job.request_id)
            self.emu.start_render(job)
        if rule is not None and rule.fault == "read_timeout":
            # The provider took the job, but the client never hears about it.
            self._inject_transport_fault(rule)
            return
        self._send_api(reply, rule)

    def _accept(self, model: str, payload: dict[str, Any] | None, title: str | None) -> tuple[Reply, Job | None]:
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        return accept(
            self.emu.book, model, payload, title, content_type, self._base_url(), self.headers.get(CLIENT_JOB_HEADER)
        )

    # --- status and result -----------------------------------------------------------------------

    def _poll(self, route: Route) -> None:
        request_id = str(route.request_id)
        book = self.emu.book
        job = book.get(request_id)
        self.exchange.request_id = request_id
        self.exchange.video_title = job.video_title if job else None
        self.exchange.identity = job.identity if job else None
        book.count_call(job, route.endpoint)
        rule = self._take_fault(route.endpoint, job.match_title if job else None, book.is_alive(job))
        if rule is not None and self._inject_transport_fault(rule):
            return
        apply_job_fault(book, rule, request_id)
        view = book.view(request_id)
        base = self._base_url()
        reply = (
            status_reply(view, request_id, base)
            if route.endpoint == "status"
            else result_reply(view, request_id, base, self.emu.config)
        )
        self._send_api(reply, rule)

    # --- downloads -------------------------------------------------------------------------------

    def _download(self, route: Route) -> None:
        request_id, extension = str(route.request_id), str(route.extension)
        book = self.emu.book
        job = book.get(request_id)
        self.exchange.request_id = request_id
        self.exchange.video_title = job.video_title if job else None
        self.exchange.identity = job.identity if job else None
        book.count_call(job, "download")
        path = book.output_file(request_id, extension)
        rule = self._take_fault("download", job.match_title if job else None, path is not None)
        if rule is not None and self._inject_transport_fault(rule):
            return
        if rule is not None and rule.fault == "early_expiry":
            book.expire(request_id, files_too=True)
            path = None
        if path is None or not path.is_file():
            self._send(error(404, "Not found"))
            return
        self._send_file(path, extension, rule)

    def _send_file(self, path: Path, extension: str, rule: FaultRule | None) -> None:
        reply = file_reply(path, extension, self.headers.get("Range"))
        if reply.status != 416 and rule is not None and rule.fault == "slow_download":
            self._send_slowly(reply, rule)
            return
        truncate = reply.status != 416 and rule is not None and rule.fault == "malformed_body"
        self._send(reply, truncate=truncate)

    def _send_slowly(self, reply: Reply, rule: FaultRule) -> None:
        pause = rule.delay_seconds if rule.delay_seconds is not None else self.emu.config.scaled(SLOW_PAUSE_SECONDS)
        self.exchange.status = reply.status
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(reply.body)))
        self._record()
        self.end_headers()
        if self.command == "HEAD":
            return
        for offset in range(0, len(reply.body), SLOW_CHUNK_BYTES):
            if self.emu.stopping.wait(pause):
                self.close_connection = True
                return
            self.wfile.write(reply.body[offset : offset + SLOW_CHUNK_BYTES])
            self.wfile.flush()


__all__ = ["RATE_LIMIT_RESET_HEADER", "HttpServer", "parse_route"]
