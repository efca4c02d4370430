"""Headless Chromium for the browser tier: where it is, and a page's DOM and screenshot.

`make install` installs Debian's `chromium` when it runs as root with apt-get (the Makefile's
system-deps). Where it is missing, a test cannot run: on a machine that could have installed it
that is a broken setup and the test fails saying so; elsewhere (not root, no apt-get) it skips with
the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Lets the page's scripts, IntersectionObservers and media loads settle before the DOM is read.
VIRTUAL_TIME_BUDGET_MS = 5000


def _installable_here() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def chromium_or_skip() -> str:
    """The Chromium binary ($CHROMIUM, else the first of CANDIDATES on PATH)."""
    named = os.environ.get("CHROMIUM")
    found = named if named and shutil.which(named) else next(filter(None, map(shutil.which, CANDIDATES)), None)
    if found:
        return found
    if _installable_here():
        pytest.fail("chromium is not installed: run `make install` (apt-get install chromium) to run this test")
    pytest.skip("chromium is not installed and this machine cannot install it (needs root and apt-get)")


def _run(browser: str, profile: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--mute-audio",
        f"--user-data-dir={profile}", f"--virtual-time-budget={VIRTUAL_TIME_BUDGET_MS}", *extra, url,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)  # noqa: S603 - no shell


def dump_dom(browser: str, profile: Path, page: Path, window: str = "1200,3000") -> str:
    """The page's DOM once its scripts ran (what `--dump-dom` prints)."""
    return _run(browser, profile, page.as_uri(), f"--window-size={window}", "--dump-dom").stdout


def screenshot(browser: str, profile: Path, page: Path, target: Path, window: str = "1200,900") -> Path:
    _run(browser, profile, page.as_uri(), f"--window-size={window}", f"--screenshot={target}")
    assert target.is_file(), f"chromium wrote no screenshot to {target}"
    assert target.stat().st_size > 0, f"chromium wrote an empty screenshot to {target}"
    return target
