"""Headless Chromium for the browser tier, driven over the DevTools protocol on a pipe.

`make install` installs Debian's `chromium` when it runs as root with apt-get (the Makefile's
system-deps). Where it is missing, a test cannot run: on a machine that could have installed it
that is a broken setup and the test fails saying so; elsewhere (not root, no apt-get) it skips with
the reason.

Why not `chromium --dump-dom --virtual-time-budget=...`: virtual time does not wait for media to
decode, so on a busy machine a video that loads fine is still "loading" when the DOM is printed.
Here the test waits in real time, with a deadline, for the page to reach the state it expects.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import signal
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Chromium reads DevTools commands from fd 3 and writes replies and events to fd 4, each a JSON text
# ended by a NUL byte (--remote-debugging-pipe).
COMMAND_FD, EVENT_FD = 3, 4


def _installable_here() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def chromium_or_skip() -> str:
    """The Chromium binary ($CHROMIUM, else the first of CANDIDATES on PATH)."""
    named = os.environ.get("CHROMIUM")
    found = shutil.which(named) if named else next(filter(None, map(shutil.which, CANDIDATES)), None)
    if found:
        return found
    if _installable_here():
        pytest.fail("chromium is not installed: run `make install` (apt-get install chromium) to run this test")
    pytest.skip("chromium is not installed and this machine cannot install it (needs root and apt-get)")


class BrowserError(AssertionError):
    pass


class HeadlessPage:
    """One page of headless Chromium opened at `url`: evaluate, wait, read the DOM, take a screenshot."""

    def __init__(self, browser: str, profile: Path, url: str, width: int = 1200, height: int = 3000) -> None:
        profile.mkdir(parents=True, exist_ok=True)
        self.log = profile / "chromium.log"
        self._argv = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
            "--remote-debugging-pipe", f"--user-data-dir={profile}", f"--window-size={width},{height}", url,
        ]  # fmt: skip
        self._url = url
        self._next_id = 0
        self._buffer = b""
        self._pid = 0
        self._session = ""

    def __enter__(self) -> HeadlessPage:
        command_read, self._command_write = os.pipe()
        self._event_read, event_write = os.pipe()
        # Above the descriptors the child gets, so that putting one at 3 never overwrites the other.
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (command_read, event_write)]
        log = os.open(self.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        actions = [
            (os.POSIX_SPAWN_DUP2, high[0], COMMAND_FD),
            (os.POSIX_SPAWN_DUP2, high[1], EVENT_FD),
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log, 1),
            (os.POSIX_SPAWN_DUP2, log, 2),
        ]
        try:
            self._pid = os.posix_spawn(self._argv[0], self._argv, dict(os.environ), file_actions=actions)
        finally:
            for fd in (command_read, event_write, *high, log):
                os.close(fd)
        self._session = self._attach()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        try:
            self._send("Browser.close", {}, session=False, timeout=10)
        except (BrowserError, OSError):
            os.kill(self._pid, signal.SIGKILL)
        finally:
            os.close(self._command_write)
            os.close(self._event_read)
            os.waitpid(self._pid, 0)

    # --- what tests use ----------------------------------------------------------------------------------

    def evaluate(self, expression: str) -> Any:
        reply = self._send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in reply:
            raise BrowserError(f"{expression!r} threw: {reply['exceptionDetails']}")
        return reply["result"].get("value")

    def wait_until(self, expression: str, timeout: float = 60.0) -> None:
        """Until `expression` is truthy in the page (real time, polled), or fail after `timeout` s."""
        deadline = time.monotonic() + timeout
        while not self.evaluate(expression):
            if time.monotonic() > deadline:
                raise BrowserError(f"after {timeout:.0f} s the page still does not satisfy {expression!r}")
            time.sleep(0.1)

    def dom(self) -> str:
        html: str = self.evaluate("document.documentElement.outerHTML")
        return html

    def screenshot(self, target: Path, width: int = 1200, height: int = 900) -> Path:
        metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}
        self._send("Emulation.setDeviceMetricsOverride", metrics)
        target.write_bytes(base64.b64decode(self._send("Page.captureScreenshot", {"format": "png"})["data"]))
        return target

    # --- the protocol ------------------------------------------------------------------------------------

    def _attach(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            targets = self._send("Target.getTargets", {}, session=False)["targetInfos"]
            pages = [t for t in targets if t["type"] == "page" and t["url"].startswith("file:")]
            if pages:
                attached = self._send(
                    "Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True}, False
                )
                return str(attached["sessionId"])
            time.sleep(0.1)
        raise BrowserError(f"chromium opened no page at {self._url} (its log: {self.log})")

    def _send(self, method: str, params: dict[str, Any], session: bool = True, timeout: float = 60.0) -> Any:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        os.write(self._command_write, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") != self._next_id:
                continue  # an event, or an answer nobody waits for any more
            if "error" in reply:
                raise BrowserError(f"{method}: {reply['error']}")
            return reply["result"]

    def _read(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._event_read], [], [], left)[0]:
                raise BrowserError(f"chromium did not answer in time (its log: {self.log})")
            chunk = os.read(self._event_read, 1 << 20)
            if not chunk:
                raise BrowserError(f"chromium exited (its log: {self.log})")
            self._buffer += chunk
        text, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(text)
        return message
