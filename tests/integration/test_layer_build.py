"""layers/common/Makefile on its own: plain `sam build` runs it without `make build`'s PATH fix-up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

LAYER_DIR = Path(__file__).resolve().parents[2] / "layers" / "common"
# What pyenv prints when its shim finds no active version providing the command.
PYENV_SHIM = """#!/bin/sh
echo "pyenv: python3.12: command not found" >&2
exit 127
"""


def _dry_run_build(path: str, pyenv_root: Path, artifacts: Path) -> str:
    make = shutil.which("make")
    assert make, "make is needed to build the layer"
    done = subprocess.run(  # noqa: S603 - our own Makefile, no shell
        [make, "-n", "-C", str(LAYER_DIR), "build-CommonLayer", f"ARTIFACTS_DIR={artifacts}"],
        capture_output=True,
        text=True,
        env={"PATH": path, "PYENV_ROOT": str(pyenv_root), "HOME": str(pyenv_root.parent)},
        check=True,
        timeout=60,
    )
    return done.stdout


def test_the_layer_build_finds_python312_behind_a_bare_pyenv_shim(tmp_path: Path) -> None:
    """Given `python3.12` on PATH is a pyenv shim that exits 127 (no version selected) and pyenv has
    a 3.12 installed, when SAM runs the layer's Makefile without `make build`'s PATH, then it installs
    with pyenv's real 3.12, not the shim."""
    shims = tmp_path / "shims"
    shims.mkdir()
    shim = shims / "python3.12"
    shim.write_text(PYENV_SHIM)
    shim.chmod(0o755)
    pyenv_root = tmp_path / "pyenv"
    real = pyenv_root / "versions" / "3.12.99" / "bin" / "python3.12"
    real.parent.mkdir(parents=True)
    # This interpreter is a 3.12 (the dev venv's); a link stands in for pyenv's install.
    assert sys.version_info[:2] == (3, 12)
    real.symlink_to(os.path.realpath(sys.executable))

    commands = _dry_run_build(f"{shims}:/usr/bin:/bin", pyenv_root, tmp_path / "artifacts")

    pip_installs = [line for line in commands.splitlines() if " -m pip install" in line]
    assert len(pip_installs) == 2
    assert all(line.strip().startswith(f"{real} -m pip install") for line in pip_installs), commands
