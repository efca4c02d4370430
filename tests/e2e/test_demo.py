"""`make demo` (= `avatar-pipeline local demo`): a playable video whose length follows the speech."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from avatar_local.media_probe import probe
from tests.e2e.conftest import REPO_ROOT, run_cli

pytestmark = pytest.mark.e2e


def spoken_seconds(text: str, tmp_path: Path) -> float:
    """How long the script takes to say: espeak-ng's own rendering, or the emulator's word rate."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return max(1.0, len(text.split()) / 2.6)
    wav = tmp_path / "speech.wav"
    subprocess.run([espeak, "-w", str(wav), text], check=True, timeout=60)  # noqa: S603 - espeak-ng, no shell
    return probe(wav).duration_seconds


def test_demo_leaves_a_playable_video_matching_the_script(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    done = run_cli("local", "demo", "--out", str(out))

    assert done.returncode == 0, done.stderr[-3000:]
    video = out / "outputs" / "videos" / "welcome.mp4"
    assert str(video.resolve()) in done.stdout
    info = probe(video)
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    script = json.loads((REPO_ROOT / "examples" / "welcome.json").read_text())["script"]
    expected = spoken_seconds(script, tmp_path)
    assert abs(info.duration_seconds - expected) <= 0.2 * expected, (info.duration_seconds, expected)
    assert '"status": "SUCCEEDED"' in done.stdout
