"""Pure media logic: frame drawing, caption timing, output sizes, content sniffing, ffmpeg arguments, routes."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import pytest

from avatar_local.emulator.frames import GLYPHS, avatar_frame, fit_label, parse_hex_colour
from avatar_local.emulator.media import (
    Soundtrack,
    ffmpeg_command,
    looks_like_audio,
    looks_like_image,
    output_size,
    srt_document,
    tone_duration,
)
from avatar_local.emulator.server import parse_route

pytestmark = pytest.mark.unit


def _decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height, depth, colour_type = struct.unpack(">IIBB", data[16:26])
    assert (depth, colour_type) == (8, 6)
    idat_length = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    raw = zlib.decompress(data[41 : 41 + idat_length])
    stride = 1 + width * 4
    rows = [raw[i * stride + 1 : (i + 1) * stride] for i in range(height)]
    return width, height, rows


def test_avatar_frame_is_a_png_with_the_name_band_in_white() -> None:
    width, height, rows = _decode_png(avatar_frame(320, 180, "Anja Office Front", None, transparent=False))

    assert (width, height) == (320, 180)
    white = b"\xff\xff\xff\xff"
    band = b"".join(rows[150:])
    assert white in band, "the avatar's name is drawn in white on the bottom band"
    assert rows[90][0:4] != rows[90][160 * 4 : 161 * 4], "the silhouette stands out from the background"


def test_avatar_frame_is_transparent_when_the_background_is_removed() -> None:
    _, _, rows = _decode_png(avatar_frame(200, 200, "Ann Doctor Sitting", None, transparent=True))
    assert rows[2][3] == 0


def test_avatar_frame_uses_the_requested_background_colour() -> None:
    _, _, rows = _decode_png(avatar_frame(200, 120, "Ann Doctor Sitting", (0x11, 0x22, 0x33, 255), transparent=False))
    assert rows[1][0:4] == b"\x11\x22\x33\xff"


def test_every_glyph_is_five_by_seven() -> None:
    assert all(len(glyph) == 7 and all(len(row) == 5 for row in glyph) for glyph in GLYPHS.values())


def test_long_names_are_shrunk_then_shortened() -> None:
    assert fit_label("Short", 400) == ("Short", 4)
    label, scale = fit_label("A" * 200, 300)
    assert scale == 1
    assert label.endswith("...")
    assert len(label) * 6 - 1 <= 300


def test_hex_colours_parse_in_short_and_long_form() -> None:
    assert parse_hex_colour("#0af") == (0x00, 0xAA, 0xFF, 255)
    assert parse_hex_colour("#102030") == (0x10, 0x20, 0x30, 255)
    assert parse_hex_colour("https://x.test/bg.png") is None


def _cue_times(document: str) -> list[tuple[float, float]]:
    def seconds(stamp: str) -> float:
        hours, minutes, rest = stamp.split(":")
        secs, millis = rest.split(",")
        return int(hours) * 3600 + int(minutes) * 60 + int(secs) + int(millis) / 1000

    return [(seconds(a), seconds(b)) for a, b in re.findall(r"(\S+) --> (\S+)", document)]


def test_captions_split_the_text_over_the_whole_speech() -> None:
    text = "Hello there. This is a longer sentence that should be split into more than one cue! Bye."
    document = srt_document(text, 9.0)
    times = _cue_times(document)

    assert [line for line in document.splitlines() if line.isdigit()] == [str(i) for i in range(1, len(times) + 1)]
    assert len(times) == 4  # the 14-word sentence becomes two cues of seven
    assert times[0][0] == 0.0
    assert times[-1][1] == 9.0
    assert all(start < end for start, end in times)
    assert all(times[i][1] == times[i + 1][0] for i in range(len(times) - 1))
    cue_texts = [block.splitlines()[2] for block in document.strip().split("\n\n")]
    assert cue_texts[0] == "Hello there."
    assert cue_texts[1:3] == ["This is a longer sentence that should", "be split into more than one cue!"]
    assert cue_texts[-1] == "Bye."


def test_captions_without_text_still_cover_the_audio() -> None:
    assert _cue_times(srt_document(None, 3.0)) == [(0.0, 3.0)]


@pytest.mark.parametrize(
    ("model", "params", "expected"),
    [
        ("heygen-avatar-iv", {"video_orientation": "landscape"}, (640, 360)),
        ("heygen-avatar-iv", {"video_orientation": "portrait"}, (360, 640)),
        ("heygen-avatar-iv", {"video_orientation": "landscape", "width": 1080, "height": 1920}, (360, 640)),
        ("heygen-avatar-iv", {"width": 1000, "height": 1000}, (640, 640)),
        ("heygen-avatar-v", {"aspect_ratio": "16:9"}, (640, 360)),
        ("heygen-avatar-v", {"aspect_ratio": "9:16"}, (360, 640)),
        ("heygen-avatar-v", {"aspect_ratio": "4:5"}, (512, 640)),
        ("heygen-avatar-v", {"aspect_ratio": "auto"}, (640, 360)),
    ],
)
def test_output_sizes_stay_small_and_keep_the_shape(
    model: str, params: dict[str, object], expected: tuple[int, int]
) -> None:
    assert output_size(model, params) == expected


def test_tone_fallback_length_follows_the_script() -> None:
    assert tone_duration(None) == 1.0
    assert tone_duration("one two") == 1.0
    assert tone_duration(" ".join(["word"] * 26)) == 10.0


def test_content_sniffing_tells_media_from_other_files() -> None:
    assert looks_like_image(b"\x89PNG\r\n\x1a\n\x00\x00")
    assert looks_like_image(b"\xff\xd8\xff\xe0\x00\x10JFIF")
    assert looks_like_image(b"RIFF\x00\x00\x00\x00WEBPVP8 ")
    assert not looks_like_image(b"<Error><Code>")
    assert looks_like_audio(b"RIFF\x24\x00\x00\x00WAVEfmt ")
    assert looks_like_audio(b"ID3\x04\x00")
    assert looks_like_audio(b"\xff\xfb\x90\x00")
    assert looks_like_audio(b"OggS\x00\x02")
    assert not looks_like_audio(b"this is not a photo")


def test_ffmpeg_command_for_mp4_and_alpha_webm(tmp_path: Path) -> None:
    speech = Soundtrack(wav=tmp_path / "speech.wav", duration=2.25, text="hi")
    mp4 = ffmpeg_command(
        "ffmpeg",
        tmp_path / "p.png",
        speech,
        (640, 360),
        fit="cover",
        container="mp4",
        alpha=False,
        output=tmp_path / "o",
    )
    tone = Soundtrack(wav=None, duration=1.5, text=None)
    webm = ffmpeg_command(
        "ffmpeg",
        tmp_path / "p.png",
        tone,
        (360, 640),
        fit="contain",
        container="webm",
        alpha=True,
        output=tmp_path / "o",
    )

    assert mp4[mp4.index("-c:v") + 1] == "libx264"
    assert mp4[mp4.index("-c:a") + 1] == "aac"
    assert "+faststart" in mp4
    assert mp4[mp4.index("-t") + 1] == "2.250"
    assert "crop=640:360" in mp4[mp4.index("-filter_complex") + 1]
    assert webm[webm.index("-c:v") + 1] == "libvpx"
    assert webm[webm.index("-c:a") + 1] == "libopus"
    assert "format=yuva420p" in webm[webm.index("-filter_complex") + 1]
    assert any(arg.startswith("aevalsrc=") and "d=1.500" in arg for arg in webm)


@pytest.mark.parametrize(
    ("method", "path", "endpoint", "request_id"),
    [
        ("POST", "/v2/heygen-avatar-iv", "submit", None),
        ("POST", "/v2/heygen-avatar-v?x=1", "submit", None),
        ("POST", "/v2/flux-schnell", "other", None),
        ("GET", "/v2/requests/abc-123/status", "status", "abc-123"),
        ("GET", "/v2/requests/abc-123", "result", "abc-123"),
        ("GET", "/v2/requests//status", "other", None),
        ("GET", "/outputs/abc-123.mp4", "download", "abc-123"),
        ("HEAD", "/outputs/abc-123.srt", "download", "abc-123"),
        ("GET", "/outputs/../secret.mp4", "other", None),
        ("GET", "/", "other", None),
    ],
)
def test_routes(method: str, path: str, endpoint: str, request_id: str | None) -> None:
    route = parse_route(method, path)
    assert (route.endpoint, route.request_id) == (endpoint, request_id)
    assert route.api == path.startswith("/v2/")
