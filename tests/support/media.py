"""Real media for tests, made with the ffmpeg that imageio-ffmpeg ships."""

from __future__ import annotations

import subprocess
import zlib
from pathlib import Path

import imageio_ffmpeg


def make_mp4(path: Path, seconds: float = 1.0) -> bytes:
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run(  # noqa: S603 - fixed arguments, no shell
        [
            ffmpeg, "-y", "-loglevel", "error",
            "-f", "lavfi", "-i", f"color=c=navy:s=160x120:d={seconds}",
            "-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds}",
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(path),
        ],
        check=True,
        timeout=60,
    )  # fmt: skip
    return path.read_bytes()


def make_png(width: int = 32, height: int = 32) -> bytes:
    """A valid RGB PNG, built by hand so tests need no imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    rows = b"".join(
        b"\x00" + b"".join(bytes([(x * 7) % 256, (y * 5) % 256, 160]) for x in range(width)) for y in range(height)
    )
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
