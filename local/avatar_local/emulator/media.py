"""Real media for emulated jobs: fetch the inputs, make speech, and encode a small video with ffmpeg.

Everything is sized for speed (at most 640 px, 15 fps, ultrafast presets): the point is a watchable
clip whose length follows the speech, produced in well under a second, not a faithful avatar.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import shutil
import subprocess
import threading
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import imageio_ffmpeg

from avatar_local.emulator.config import EmulatorConfig
from avatar_local.emulator.frames import avatar_frame, parse_hex_colour
from avatar_local.emulator.validation import AVATAR_IV

logger = logging.getLogger("avatar_local.emulator")

FPS = 15
LONGEST_SIDE = 640
PAN_MARGIN = 1.1  # the picture is drawn 10% larger than the frame and a window drifts across it
WORDS_PER_SECOND = 2.6
SPEECH_SAMPLE_RATE = 24000
_ESPEAK_VOICES = ("en-us+m3", "en-us+f3", "en-us+m1", "en-us+f2", "en-gb+m4", "en-gb+f4")
_ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "16:9": (16, 9),
    "9:16": (9, 16),
    "4:5": (4, 5),
    "5:4": (5, 4),
    "1:1": (1, 1),
    "auto": (16, 9),
}


class MediaError(Exception):
    """The job fails with this message (the FAILED body's `error`)."""


@dataclass(frozen=True)
class Soundtrack:
    wav: Path | None  # None: a generated tone of `duration` seconds
    duration: float
    text: str | None


@dataclass(frozen=True)
class RenderOutput:
    video: Path
    captions: Path | None
    duration: float


def even(value: float) -> int:
    return max(16, round(value / 2) * 2)


def fit_box(width: int, height: int, longest: int = LONGEST_SIDE) -> tuple[int, int]:
    """The requested shape scaled down so its longest side is `longest` px (H.264 wants even sizes)."""
    scale = longest / max(width, height)
    return even(width * scale), even(height * scale)


def output_size(model: str, params: dict[str, Any]) -> tuple[int, int]:
    if model == AVATAR_IV:
        if "width" in params and "height" in params:
            return fit_box(int(params["width"]), int(params["height"]))
        return (360, 640) if params.get("video_orientation") == "portrait" else (640, 360)
    ratio_w, ratio_h = _ASPECT_RATIOS[str(params.get("aspect_ratio", "16:9"))]
    return fit_box(ratio_w, ratio_h)


def tone_duration(text: str | None) -> float:
    words = len(text.split()) if text else 0
    return max(1.0, round(words / WORDS_PER_SECOND, 3))


def wav_duration(path: Path) -> float:
    with wave.open(str(path), "rb") as reader:
        return reader.getnframes() / float(reader.getframerate())


def looks_like_image(head: bytes) -> bool:
    return head.startswith((b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a")) or (
        head[:4] == b"RIFF" and head[8:12] == b"WEBP"
    )


def looks_like_audio(head: bytes) -> bool:
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return True
    if head.startswith((b"ID3", b"OggS", b"fLaC", b"FORM", b"\x1a\x45\xdf\xa3")) or head[4:8] == b"ftyp":
        return True
    return len(head) > 1 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0  # an MPEG audio frame header


def srt_document(text: str | None, duration: float, max_words: int = 7) -> str:
    """Cues split at sentence ends, long sentences into even parts, timed in proportion to their length."""
    cues = [
        " ".join(chunk) for sentence in _sentences(text or "(narration)") for chunk in _even_parts(sentence, max_words)
    ]
    total = sum(len(cue) for cue in cues)
    lines: list[str] = []
    start = 0.0
    for index, cue in enumerate(cues, start=1):
        end = duration if index == len(cues) else start + duration * len(cue) / total
        lines += [str(index), f"{_srt_time(start)} --> {_srt_time(end)}", cue, ""]
        start = end
    return "\n".join(lines)


def _sentences(text: str) -> list[list[str]]:
    sentences: list[list[str]] = [[]]
    for word in text.split():
        sentences[-1].append(word)
        if word.endswith((".", "!", "?")):
            sentences.append([])
    return [sentence for sentence in sentences if sentence]


def _even_parts(words: list[str], max_words: int) -> list[list[str]]:
    parts = math.ceil(len(words) / max_words)
    size = math.ceil(len(words) / parts)
    return [words[i : i + size] for i in range(0, len(words), size)]


def _srt_time(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def ffmpeg_command(
    ffmpeg: str,
    picture: Path,
    soundtrack: Soundtrack,
    size: tuple[int, int],
    *,
    fit: str,
    container: str,
    alpha: bool,
    output: Path,
) -> list[str]:
    """One ffmpeg run: the still picture, decoded once, looped with a slow pan, over the soundtrack."""
    width, height = size
    big_w, big_h = even(width * PAN_MARGIN), even(height * PAN_MARGIN)
    if fit == "contain":
        framing = f"scale={big_w}:{big_h}:force_original_aspect_ratio=decrease,pad={big_w}:{big_h}:-1:-1:color=black"
    else:
        framing = f"scale={big_w}:{big_h}:force_original_aspect_ratio=increase,crop={big_w}:{big_h}"
    pixels = "yuva420p" if alpha else "yuv420p"
    video_chain = (
        f"[0:v]{framing},setsar=1,loop=loop=-1:size=1:start=0,setpts=N/{FPS}/TB,"
        f"crop={width}:{height}:x='(iw-ow)/2*(1+sin(t*0.6))':y='(ih-oh)/2*(1+cos(t*0.45))',format={pixels}[v]"
    )
    duration = f"{soundtrack.duration:.3f}"
    if soundtrack.wav is not None:
        audio_input = ["-i", str(soundtrack.wav)]
    else:
        tone = f"aevalsrc=0.25*sin(2*PI*190*t)*(0.55+0.45*sin(2*PI*3.5*t)):s={SPEECH_SAMPLE_RATE}:d={duration}"
        audio_input = ["-f", "lavfi", "-i", tone]
    if container == "webm":
        codecs = ["-c:v", "libvpx", "-deadline", "realtime", "-cpu-used", "8", "-b:v", "400k"]
        codecs += ["-auto-alt-ref", "0"] if alpha else []
        codecs += ["-c:a", "libopus", "-b:a", "48k", "-f", "webm"]
    else:
        codecs = ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "stillimage", "-pix_fmt", "yuv420p"]
        codecs += ["-c:a", "aac", "-b:a", "64k", "-movflags", "+faststart", "-f", "mp4"]
    return [
        ffmpeg,
        *("-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(picture)),
        *audio_input,
        *("-filter_complex", video_chain, "-map", "[v]", "-map", "1:a", "-t", duration, "-r", str(FPS)),
        *codecs,
        str(output),
    ]


class Renderer:
    """Fetches, synthesises and encodes; at most `max_concurrent_renders` child processes at a time."""

    def __init__(self, config: EmulatorConfig, output_dir: Path, scratch_dir: Path) -> None:
        self._config = config
        self._output_dir = output_dir
        self._scratch_dir = scratch_dir
        self._ffmpeg: str = imageio_ffmpeg.get_ffmpeg_exe()
        self._slots = threading.BoundedSemaphore(config.max_concurrent_renders)
        self._http = httpx.Client(follow_redirects=True, timeout=config.media_timeout_seconds)

    def close(self) -> None:
        self._http.close()

    def render(self, request_id: str, model: str, params: dict[str, Any]) -> RenderOutput:
        scratch = self._scratch_dir / request_id
        scratch.mkdir(parents=True, exist_ok=True)
        try:
            return self._render(request_id, model, params, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _render(self, request_id: str, model: str, params: dict[str, Any], scratch: Path) -> RenderOutput:
        size = output_size(model, params)
        if model == AVATAR_IV:
            picture = self._fetch(str(params["image_url"]), "image_url", scratch / "picture", looks_like_image)
            text, voice, container, alpha = params.get("script"), str(params["voice_id"]), "mp4", False
        else:
            picture = self._draw_avatar(params, size, scratch / "frame.png")
            text, voice = params.get("prompt"), str(params.get("voice_id") or params["voice"])
            container = str(params["output_format"])
            alpha = container == "webm" and bool(params["remove_background"])
        soundtrack = self._soundtrack(params.get("audio_url"), text, voice, scratch)
        captions = None
        if params.get("caption"):
            captions = self._output_dir / f"{request_id}.srt"
            captions.write_text(srt_document(soundtrack.text, soundtrack.duration), encoding="utf-8")
        video = self._output_dir / f"{request_id}.{container}"
        partial = self._output_dir / f".{request_id}.{container}.part"
        command = ffmpeg_command(
            self._ffmpeg,
            picture,
            soundtrack,
            size,
            fit=str(params.get("fit", "cover")),
            container=container,
            alpha=alpha,
            output=partial,
        )
        self._run(command, "ffmpeg", self._config.ffmpeg_timeout_seconds)
        # The rename is what makes the job COMPLETED: a half-written file is never served.
        os.replace(partial, video)
        return RenderOutput(video=video, captions=captions, duration=soundtrack.duration)

    def _draw_avatar(self, params: dict[str, Any], size: tuple[int, int], path: Path) -> Path:
        name = str(params.get("avatar_id") or params["avatar"])
        background = parse_hex_colour(str(params.get("background") or ""))
        transparent = bool(params.get("remove_background"))
        width, height = size
        path.write_bytes(
            avatar_frame(even(width * PAN_MARGIN), even(height * PAN_MARGIN), name, background, transparent)
        )
        return path

    def _soundtrack(self, audio_url: object, text: object, voice: str, scratch: Path) -> Soundtrack:
        if isinstance(audio_url, str):
            source = self._fetch(audio_url, "audio_url", scratch / "audio", looks_like_audio)
            wav = scratch / "audio.wav"
            command = [self._ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(source)]
            command += ["-vn", "-ac", "1", "-ar", str(SPEECH_SAMPLE_RATE), "-f", "wav", str(wav)]
            try:
                self._run(command, "audio decode", self._config.ffmpeg_timeout_seconds)
            except MediaError:
                raise MediaError("could not fetch audio_url: the file is not decodable audio") from None
            return Soundtrack(wav=wav, duration=wav_duration(wav), text=None)
        spoken = text if isinstance(text, str) else None
        return self._speech(spoken, voice, scratch)

    def _speech(self, text: str | None, voice: str, scratch: Path) -> Soundtrack:
        espeak = shutil.which("espeak-ng") if self._config.speech != "tone" else None
        if espeak is None or not text:
            if self._config.speech == "espeak":
                raise MediaError("speech synthesis unavailable: espeak-ng is not installed")
            return Soundtrack(wav=None, duration=tone_duration(text), text=text)
        wav = scratch / "speech.wav"
        variant = _ESPEAK_VOICES[hashlib.sha256(voice.encode()).digest()[0] % len(_ESPEAK_VOICES)]
        self._run([espeak, "-v", variant, "-w", str(wav), "--stdin"], "espeak-ng", 60.0, stdin=text)
        return Soundtrack(wav=wav, duration=wav_duration(wav), text=text)

    def _fetch(self, url: str, field: str, destination: Path, accepts: Any) -> Path:
        """GET a (presigned) input URL to a file; any problem is the job's failure, named by field."""
        limit = self._config.max_media_bytes
        size = 0
        try:
            with self._http.stream("GET", url) as response:
                if not response.is_success:
                    raise MediaError(f"could not fetch {field}: HTTP {response.status_code}")
                with destination.open("wb") as sink:
                    for chunk in response.iter_bytes():
                        size += len(chunk)
                        if size > limit:
                            raise MediaError(f"could not fetch {field}: larger than {limit} bytes")
                        sink.write(chunk)
        except httpx.HTTPError as exc:
            raise MediaError(f"could not fetch {field}: {type(exc).__name__}: {exc}") from None
        with destination.open("rb") as source:
            head = source.read(16)
        if not accepts(head):
            kind = "an image (PNG, JPEG, WebP or GIF)" if field == "image_url" else "an audio file"
            raise MediaError(f"could not fetch {field}: the content is not {kind}")
        return destination

    def _run(self, command: Sequence[str], what: str, timeout: float, stdin: str | None = None) -> None:
        with self._slots:
            try:
                # Fixed argument lists (no shell); user text reaches espeak-ng on stdin, never as an option.
                completed = subprocess.run(  # noqa: S603 - ffmpeg/espeak-ng argument lists, no shell
                    list(command), input=stdin, capture_output=True, text=True, timeout=timeout, check=False
                )
            except subprocess.TimeoutExpired:
                raise MediaError(f"render failed: {what} took longer than {timeout:.0f} s") from None
        if completed.returncode != 0:
            detail = completed.stderr.strip().splitlines()[-1:] or ["no output"]
            # Usually bad input (the job fails with the reason), so not a warning about the emulator itself.
            logger.info("%s exited with %s: %s", what, completed.returncode, completed.stderr.strip()[-2000:])
            raise MediaError(f"render failed: {what} exited with {completed.returncode}: {detail[0][:200]}")
