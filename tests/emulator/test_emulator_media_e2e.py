"""Real renders: H.264/AAC MP4 and WebM whose length follows the speech, SRT captions, presigned inputs."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulator.conftest import SPEECH_WAV_SECONDS
from tests.emulator.emulator_testkit import (
    EmulatorFactory,
    MediaInfo,
    PresignedFileServer,
    inspect_media,
    poll_until_terminal,
)

pytestmark = pytest.mark.e2e

SCRIPT = "Hello, and welcome to the offline avatar pipeline. This clip was rendered by the emulator."


def _render(client: httpx.Client, model: str, body: dict[str, Any]) -> tuple[httpx.Response, dict[str, Any]]:
    accepted = client.post(f"/v2/{model}", json=body)
    assert accepted.status_code == 200, accepted.text
    final = poll_until_terminal(client, accepted.json()["status_url"], timeout=20)[-1]
    return final, accepted.json()


def _download(url: str, tmp_path: Path) -> Path:
    response = httpx.get(url)
    assert response.status_code == 200
    path = tmp_path / url.rsplit("/", 1)[1]
    path.write_bytes(response.content)
    return path


def _result(client: httpx.Client, accepted: dict[str, Any]) -> Any:
    body = client.get(accepted["response_url"]).json()
    assert body["status"] == "COMPLETED"
    return body["output"]


def _espeak_seconds(text: str, tmp_path: Path) -> float:
    espeak = shutil.which("espeak-ng")
    assert espeak is not None
    wav = tmp_path / "reference.wav"
    subprocess.run([espeak, "-w", str(wav), "--stdin"], input=text, text=True, check=True, timeout=30)  # noqa: S603
    return inspect_media(wav).duration


def test_avatar_iv_script_renders_h264_aac_as_long_as_the_speech(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer, tmp_path: Path
) -> None:
    # Given a photo behind a presigned URL and a script ("auto": espeak-ng when installed, else a tone)
    emulator, client = make_emulator(render_seconds=0)
    body = {"image_url": file_server.url("alice.jpg"), "video_title": "Speech", "script": SCRIPT}

    # When the job is rendered
    final, accepted = _render(client, "heygen-avatar-iv", body)
    video = _download(_result(client, accepted), tmp_path)

    # Then the MP4 holds an H.264 picture and AAC speech, landscape, as long as the speech track
    info = inspect_media(video)
    job = emulator.jobs_snapshot()[0]
    assert final.json()["status"] == "COMPLETED"
    assert (info.video_codec, info.audio_codec, info.size) == ("h264", "aac", (640, 360))
    assert job.media_seconds is not None
    assert info.duration == pytest.approx(job.media_seconds, abs=0.15)
    if shutil.which("espeak-ng"):
        assert job.media_seconds == pytest.approx(_espeak_seconds(SCRIPT, tmp_path), abs=0.6)
    else:
        assert job.media_seconds == pytest.approx(len(SCRIPT.split()) / 2.6, abs=0.01)


def test_tone_fallback_follows_the_script_length(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer, tmp_path: Path
) -> None:
    _, client = make_emulator(render_seconds=0, speech="tone")
    body = {"image_url": file_server.url("alice.jpg"), "video_title": "Tone", "script": SCRIPT}

    _, accepted = _render(client, "heygen-avatar-iv", body)
    info = inspect_media(_download(_result(client, accepted), tmp_path))

    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert info.duration == pytest.approx(len(SCRIPT.split()) / 2.6, abs=0.15)


def test_audio_url_is_the_soundtrack_and_portrait_is_tall(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer, tmp_path: Path
) -> None:
    _, client = make_emulator(render_seconds=0)
    body = {
        "image_url": file_server.url("alice.jpg", redirect=True),
        "video_title": "Narrated",
        "audio_url": file_server.url("narration.wav"),
        "video_orientation": "portrait",
        "fit": "contain",
    }

    _, accepted = _render(client, "heygen-avatar-iv", body)
    info = inspect_media(_download(_result(client, accepted), tmp_path))

    assert info.size == (360, 640)
    assert info.audio_codec == "aac"
    assert info.duration == pytest.approx(SPEECH_WAV_SECONDS, abs=0.15)


def test_avatar_v_webm_with_transparent_background(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    _, client = make_emulator(render_seconds=0)
    body = {
        "avatar": "Anja Office Front",
        "prompt": "A short hello.",
        "output_format": "webm",
        "remove_background": True,
        "aspect_ratio": "9:16",
    }

    _, accepted = _render(client, "heygen-avatar-v", body)
    url = _result(client, accepted)
    video = _download(url, tmp_path)
    info: MediaInfo = inspect_media(video)

    assert url.endswith(".webm")
    assert httpx.head(url).headers["content-type"] == "video/webm"
    assert (info.video_codec, info.audio_codec, info.size) == ("vp8", "opus", (360, 640))
    assert re.search(r"alpha_mode\s*:\s*1", info.raw)


def test_avatar_v_captions_come_as_an_srt_beside_the_video(make_emulator: EmulatorFactory, tmp_path: Path) -> None:
    _, client = make_emulator(render_seconds=0, output_shape="string")
    body = {"avatar": "Artur Office Front", "prompt": SCRIPT, "caption": True, "background": "#204060"}

    _, accepted = _render(client, "heygen-avatar-v", body)
    output = _result(client, accepted)
    video = _download(output["video_url"], tmp_path)
    captions = httpx.get(output["caption_url"])

    info = inspect_media(video)
    assert set(output) == {"video_url", "caption_url"}
    assert (info.video_codec, info.audio_codec) == ("h264", "aac")
    assert captions.headers["content-type"] == "application/x-subrip"
    stamps = re.findall(r"(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})", captions.text)
    assert len(stamps) >= 2
    last_end = stamps[-1][4:]
    end_seconds = int(last_end[0]) * 3600 + int(last_end[1]) * 60 + int(last_end[2]) + int(last_end[3]) / 1000
    assert end_seconds == pytest.approx(info.duration, abs=0.15)
    cue_texts = [block.splitlines()[2] for block in captions.text.strip().split("\n\n")]
    assert " ".join(cue_texts) == SCRIPT


def test_avatar_v_audio_url_with_captions(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer, tmp_path: Path
) -> None:
    _, client = make_emulator(render_seconds=0)
    body = {"audio_url": file_server.url("narration.wav"), "caption": True, "aspect_ratio": "1:1"}

    _, accepted = _render(client, "heygen-avatar-v", body)
    output = _result(client, accepted)
    info = inspect_media(_download(output["video_url"], tmp_path))

    assert info.size == (640, 640)
    assert info.duration == pytest.approx(SPEECH_WAV_SECONDS, abs=0.15)
    assert "--> 00:00:02,500" in httpx.get(output["caption_url"]).text


@pytest.mark.parametrize(
    ("body_overrides", "expected_error"),
    [
        ({"image_url": "forged"}, "could not fetch image_url: HTTP 403"),
        ({"image_url": "missing.jpg"}, "could not fetch image_url: HTTP 404"),
        ({"image_url": "notes.txt"}, "could not fetch image_url: the content is not an image"),
        ({"audio_url": "notes.txt"}, "could not fetch audio_url: the content is not an audio file"),
        ({"audio_url": "fake.wav"}, "could not fetch audio_url: the file is not decodable audio"),
        ({"image_url": "unreachable"}, "could not fetch image_url: ConnectError"),
    ],
)
def test_unusable_inputs_fail_the_job_with_a_clear_message(
    make_emulator: EmulatorFactory,
    file_server: PresignedFileServer,
    body_overrides: dict[str, str],
    expected_error: str,
) -> None:
    emulator, client = make_emulator(render_seconds=0)
    body: dict[str, Any] = {"image_url": file_server.url("alice.jpg"), "video_title": "Broken", "script": "Hi."}
    for field, name in body_overrides.items():
        if name == "forged":
            body[field] = file_server.url("alice.jpg", signed=False)
        elif name == "unreachable":
            body[field] = "http://127.0.0.1:9/alice.jpg"
        else:
            body[field] = file_server.url(name)

    final, accepted = _render(client, "heygen-avatar-iv", body)

    assert final.status_code == 422
    assert final.json()["status"] == "FAILED"
    assert final.json()["error"].startswith(expected_error)
    assert client.get(accepted["response_url"]).status_code == 422
    assert emulator.jobs_snapshot()[0].error == final.json()["error"]


def test_renders_are_fast(make_emulator: EmulatorFactory, file_server: PresignedFileServer) -> None:
    # Given zero render time, a job completes as soon as its media is fetched, spoken and encoded
    emulator, client = make_emulator(render_seconds=0)
    started = time.monotonic()
    for index in range(4):
        body = {"image_url": file_server.url("alice.jpg"), "video_title": f"Fast {index}", "script": "Quick one."}
        assert client.post("/v2/heygen-avatar-iv", json=body).status_code == 200

    assert emulator.wait_idle(timeout=20)
    elapsed = time.monotonic() - started

    # Then four short clips on two render slots take well under a second each
    assert all(job.status == "COMPLETED" for job in emulator.jobs_snapshot())
    assert elapsed / 4 < 1.0, f"{elapsed:.2f} s for 4 clips"
