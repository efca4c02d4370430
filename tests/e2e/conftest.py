"""The end-to-end tier: the whole offline stack through the `avatar-pipeline` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.media import make_png

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "avatar_local.cli"]


@dataclass
class RunResult:
    exit_code: int
    stdout: str
    stderr: str
    out: Path

    @property
    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.out / "summary.json").read_text())
        return data

    def job(self, input_key: str) -> dict[str, Any]:
        matches: list[dict[str, Any]] = [j for j in self.summary["jobs"] if j["input_key"] == input_key]
        assert len(matches) == 1, f"{input_key} not in the summary"
        return matches[0]

    def notifications(self) -> list[dict[str, Any]]:
        lines = (self.out / "notifications.jsonl").read_text().splitlines()
        return [json.loads(line) for line in lines]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "POWERTOOLS_", "MOTO_"))}
    return subprocess.run(  # noqa: S603 - our own CLI, no shell
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT, env=env, check=False
    )


def local_run(inbox: Path, out: Path, *extra: str, timeout: float = 300) -> RunResult:
    done = run_cli("local", "run", "--inbox", str(inbox), "--out", str(out), *extra, timeout=timeout)
    return RunResult(done.returncode, done.stdout, done.stderr, out)


def write_job(inbox: Path, relative: str, job: dict[str, Any], photo: str | None = None) -> None:
    path = inbox / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(job))
    if photo is not None:
        (path.parent / photo).write_bytes(make_png(64, 64))


@pytest.fixture
def inbox(tmp_path: Path) -> Path:
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder
