"""Helpers for the emulator tests: inspect media with `ffmpeg -i`, serve inputs like presigned S3 URLs."""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import imageio_ffmpeg

from avatar_local.emulator import SegmindEmulator

API_KEY = "local-dev-key"
VALID_SIGNATURE = "valid-signature"


EmulatorFactory = Callable[..., tuple[SegmindEmulator, httpx.Client]]


@dataclass(frozen=True)
class MediaInfo:
    duration: float
    video_codec: str | None
    audio_codec: str | None
    size: tuple[int, int] | None
    raw: str


def inspect_media(path: Path) -> MediaInfo:
    """What `ffmpeg -i` says about a file (there is no ffprobe in imageio-ffmpeg)."""
    completed = subprocess.run(  # noqa: S603 - fixed argument list, our own ffmpeg
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    text = completed.stderr
    duration = re.search(r"Duration: (\d+):(\d+):(\d+\.\d+)", text)
    assert duration is not None, text
    hours, minutes, seconds = duration.groups()
    video = re.search(r"Stream #\S+.*?: Video: (\w+).*?, (\d{2,5})x(\d{2,5})", text)
    audio = re.search(r"Stream #\S+.*?: Audio: (\w+)", text)
    return MediaInfo(
        duration=int(hours) * 3600 + int(minutes) * 60 + float(seconds),
        video_codec=video.group(1) if video else None,
        audio_codec=audio.group(1) if audio else None,
        size=(int(video.group(2)), int(video.group(3))) if video else None,
        raw=text,
    )


class PresignedFileServer:
    """Serves a folder like S3 presigned URLs: a wrong or missing X-Amz-Signature is a 403.

    `/redirect/<name>?...` answers 307 to the signed object URL, so following redirects is exercised.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[str] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, name: str, *, signed: bool = True, redirect: bool = False) -> str:
        signature = VALID_SIGNATURE if signed else "forged"
        prefix = "/redirect" if redirect else "/bucket"
        return f"{self.base_url}{prefix}/{name}?X-Amz-Expires=900&X-Amz-Signature={signature}"

    def start(self) -> PresignedFileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        files = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                files.requests.append(self.path)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                if parts.path.startswith("/redirect/"):
                    self.send_response(307)
                    self.send_header("Location", parts.path.replace("/redirect/", "/bucket/", 1) + "?" + parts.query)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                target = files.root / parts.path.removeprefix("/bucket/")
                if query.get("X-Amz-Signature") != [VALID_SIGNATURE]:
                    self._reply(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>", "application/xml")
                elif not target.is_file():
                    self._reply(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
                else:
                    self._reply(200, target.read_bytes(), "application/octet-stream")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def poll_until_terminal(client: httpx.Client, status_url: str, timeout: float = 15.0) -> list[httpx.Response]:
    """Every status answer until COMPLETED/FAILED (a 404 also ends it); fails the test on timeout."""
    seen: list[httpx.Response] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(status_url)
        seen.append(response)
        if response.status_code != 200 or response.json()["status"] in ("COMPLETED", "FAILED"):
            return seen
        time.sleep(0.02)
    raise AssertionError(f"{status_url} did not finish within {timeout} s; last: {seen[-1].text}")
