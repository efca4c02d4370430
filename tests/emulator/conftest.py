"""Fixtures for the emulator tests: sample media, a presigned-URL file server, and emulators to start."""

from __future__ import annotations

import math
import struct
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg
import pytest

from avatar_local.emulator import EmulatorConfig, FaultPlan, SegmindEmulator
from tests.emulator.emulator_testkit import API_KEY, EmulatorFactory, PresignedFileServer

SPEECH_WAV_SECONDS = 2.5


def _write_tone_wav(path: Path, seconds: float, rate: int = 16000) -> None:
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 300 * n / rate))) for n in range(int(seconds * rate))
    )
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(frames)


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JPEG photo, a WAV narration of known length, and files that only pretend to be media."""
    root = tmp_path_factory.mktemp("media")
    subprocess.run(  # noqa: S603 - fixed argument list, our own ffmpeg
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            *("-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i", "testsrc=size=800x600"),
            *("-frames:v", "1", str(root / "alice.jpg")),
        ],
        check=True,
        timeout=30,
    )
    _write_tone_wav(root / "narration.wav", SPEECH_WAV_SECONDS)
    (root / "notes.txt").write_text("this is not a photo\n")
    (root / "fake.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEgarbage-that-is-not-audio" * 4)
    return root


@pytest.fixture(scope="session")
def file_server(media_dir: Path) -> Iterator[PresignedFileServer]:
    server = PresignedFileServer(media_dir).start()
    yield server
    server.stop()


@pytest.fixture
def make_emulator() -> Iterator[EmulatorFactory]:
    """Start an emulator with config overrides; returns it and an httpx client holding the API key."""
    started: list[tuple[SegmindEmulator, httpx.Client]] = []

    def factory(faults: FaultPlan | None = None, **overrides: Any) -> tuple[SegmindEmulator, httpx.Client]:
        settings: dict[str, Any] = {"time_scale": 0.002, "queued_fraction": 0.3, **overrides}
        emulator = SegmindEmulator(EmulatorConfig(**settings), faults)
        base_url = emulator.start()
        client = httpx.Client(base_url=base_url, headers={"x-api-key": API_KEY}, timeout=10.0)
        started.append((emulator, client))
        return emulator, client

    yield factory
    for emulator, client in started:
        client.close()
        emulator.stop()
