"""Reading a media file's duration and codecs with the ffmpeg imageio-ffmpeg ships (it has no ffprobe)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import imageio_ffmpeg

_DURATION = re.compile(r"Duration:\s*(\d+):(\d+):(\d+(?:\.\d+)?)")
_STREAM = re.compile(r"Stream #\d+:\d+.*?: (Video|Audio): (\w+)")


@dataclass(frozen=True)
class MediaInfo:
    duration_seconds: float
    video_codec: str | None
    audio_codec: str | None
    container: str


def probe(path: Path) -> MediaInfo:
    result = subprocess.run(  # noqa: S603 - fixed executable, no shell
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    text = result.stderr
    match = _DURATION.search(text)
    if match is None:
        raise ValueError(f"{path} is not a media file ffmpeg can read")
    hours, minutes, seconds = match.groups()
    duration = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    codecs = {kind: codec for kind, codec in _STREAM.findall(text)}
    container = "webm" if "matroska,webm" in text else "mp4" if "mp4" in text else "unknown"
    return MediaInfo(duration, codecs.get("Video"), codecs.get("Audio"), container)
