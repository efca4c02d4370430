"""A Segmind v2 stand-in over real HTTP on loopback whose answers a test scripts, call by call.

The integration tier uses it to pin the state machine's routing deterministically (QUEUED ->
PROCESSING -> COMPLETED, a FAILED 422, a 503 the Retry absorbs, a render that never ends). The
full emulator (avatar_local.emulator) is what the end-to-end tier and the demo use.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, dict[str, Any]] | tuple[int, dict[str, Any], dict[str, str]]


@dataclass
class Script:
    """What the provider answers. `statuses` are consumed one per status call; the last one repeats."""

    statuses: list[Reply | str] = field(default_factory=lambda: ["QUEUED", "PROCESSING", "COMPLETED"])
    submit: Reply | None = None
    # Replies for the first submits, in order (e.g. a 429 then the normal answer).
    submit_sequence: list[Reply] = field(default_factory=list)
    # Seconds to stall before answering a submit (a read timeout on the client's side).
    submit_delay: float = 0.0
    caption: bool = False
    # Replies for the first result fetches, in order (e.g. 500s before the normal answer).
    results: list[Reply] = field(default_factory=list)


class ScriptedProvider:
    def __init__(self, video: bytes, captions: bytes = b"1\n00:00:00,000 --> 00:00:01,000\nHello\n") -> None:
        self.video = video
        self.captions = captions
        self.script = Script()
        self.submits: list[dict[str, Any]] = []
        self.calls: defaultdict[str, int] = defaultdict(int)
        self._cursor: defaultdict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> ScriptedProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # --- answers ---------------------------------------------------------------------------------
    def _submit(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.submits.append(body)
            self.calls["submit"] += 1
            scripted = self.script.submit_sequence.pop(0) if self.script.submit_sequence else None
        if self.script.submit_delay:
            time.sleep(self.script.submit_delay)
        if scripted is not None:
            return scripted
        if self.script.submit is not None:
            return self.script.submit
        request_id = str(uuid.uuid4())
        base = f"{self.base_url}/v2/requests/{request_id}"
        return 200, {"request_id": request_id, "status": "QUEUED", "status_url": f"{base}/status", "response_url": base}

    def _status(self, request_id: str) -> Reply:
        with self._lock:
            self.calls["status"] += 1
            index = min(self._cursor[request_id], len(self.script.statuses) - 1)
            self._cursor[request_id] += 1
        reply = self.script.statuses[index]
        if isinstance(reply, tuple):
            return reply
        return 200, {"status": reply, "request_id": request_id, "metrics": {"inference_time": 12.5}}

    def _result(self, request_id: str) -> Reply:
        with self._lock:
            self.calls["result"] += 1
            scripted = self.script.results.pop(0) if self.script.results else None
        if scripted is not None:
            return scripted
        output: Any = f"{self.base_url}/files/{request_id}.mp4"
        if self.script.caption:
            output = {"video_url": output, "caption_url": f"{self.base_url}/files/{request_id}.srt"}
        return 200, {"status": "COMPLETED", "output": output, "metrics": {"inference_time": 12.5}}

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _reply(self, reply: Reply) -> None:
                code, body = reply[0], reply[1]
                headers: dict[str, str] = {}
                if len(reply) == 3:
                    headers = reply[2]
                data = json.dumps(body).encode()
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                self._reply(provider._submit(body))

            def do_GET(self) -> None:
                parts = self.path.strip("/").split("/")
                if parts[:2] == ["v2", "requests"] and len(parts) == 4 and parts[3] == "status":
                    self._reply(provider._status(parts[2]))
                elif parts[:2] == ["v2", "requests"] and len(parts) == 3:
                    self._reply(provider._result(parts[2]))
                elif parts[0] == "files" and len(parts) == 2:
                    data = provider.captions if parts[1].endswith(".srt") else provider.video
                    self.send_response(200)
                    self.send_header(
                        "Content-Type", "application/x-subrip" if parts[1].endswith(".srt") else "video/mp4"
                    )
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                else:
                    self._reply((404, {"error": f"Request {self.path} not found"}))

        return Handler
