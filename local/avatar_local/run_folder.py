"""The folders a local run reads and writes: it never deletes what it did not write, never uploads
its own output, and never mixes two runs in one `--out`.

A run marks its `--out` folder with MARKER. An `--out` that exists is used only if it is empty or
carries the mark; then only what a run writes there is cleared (other files stay). An `--inbox`
folder's sub-folders carrying the mark (an earlier run's output) are not uploaded, nor is `--out`.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

MARKER = ".avatar-pipeline-run"
# Everything a run writes into --out (results.py and the CLI), and nothing else.
RUN_OUTPUTS = ("summary.json", "notifications.jsonl", "logs.jsonl", "outputs", "inputs")


class RunFolderError(ValueError):
    """An --out or --inbox the run must not use; the message says why, in one line."""


def prepare_out(out: Path) -> None:
    """Make `out` ready for a new run: created and marked, or an earlier run's results cleared."""
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"{out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise RunFolderError(
            f"{out} already holds files this tool did not write; choose an empty or new folder (nothing was changed)"
        )
    out.mkdir(parents=True, exist_ok=True)
    for name in RUN_OUTPUTS:
        target = out / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
    (out / MARKER).write_text("written by avatar-pipeline local run/demo; cleared by the next run\n")


def check_inbox(inbox: Path, out: Path) -> None:
    """`inbox` must be a folder with at least one job file outside any run's output."""
    if not inbox.is_dir():
        raise RunFolderError(f"{inbox} is not a folder")
    if inbox.resolve() == out.resolve() or (inbox / MARKER).is_file():
        raise RunFolderError(f"{inbox} is a run's output folder, not an inbox")
    if not any(path.suffix == ".json" for path in inbox_files(inbox, out)):
        raise RunFolderError(f"{inbox} holds no job (.json) files")


def inbox_files(inbox: Path, out: Path | None = None) -> Iterator[Path]:
    """Files to upload from `inbox`: everything but `out` and earlier runs' output folders."""
    skipped = out.resolve() if out is not None else None
    pending = [inbox]
    while pending:
        folder = pending.pop()
        for path in sorted(folder.iterdir()):
            if path.is_dir():
                if path.resolve() != skipped and not (path / MARKER).is_file():
                    pending.append(path)
            elif path.is_file() and path.name != MARKER:
                yield path
