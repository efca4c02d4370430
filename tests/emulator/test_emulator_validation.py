"""The seed pages' parameter rules, as the emulator enforces them (400 + which field and why)."""

from __future__ import annotations

from typing import Any

import pytest

from avatar_local.emulator.validation import (
    AVATAR_IV,
    AVATAR_V,
    SubmissionInvalid,
    title_of,
    validate_submission,
)

pytestmark = pytest.mark.unit

IV_SEED_EXAMPLE: dict[str, Any] = {
    "image_url": "https://segmind-inference-inputs.s3.amazonaws.com/f858aaa9.png",
    "video_title": "Hello Avatar",
    "script": "Hello, this is an avatar demo.",
    "voice_id": "f80e430f06b34b70b275c9c746436e37",
    "video_orientation": "landscape",
    "fit": "cover",
    "custom_motion_prompt": "Subtle hand movements.",
    "enhance_custom_motion_prompt": False,
    "audio_url": "https://segmind-resources.s3.amazonaws.com/input/c8a1403e.wav",
    "resolution": "720p",
}
V_SEED_EXAMPLE: dict[str, Any] = {
    "avatar": "Abigail Sofa Front",
    "prompt": "Hello! This is an Avatar V demo on Segmind.",
    "voice": "Aaron",
    "resolution": "1080p",
    "aspect_ratio": "16:9",
    "fit": "cover",
    "caption": False,
    "output_format": "mp4",
    "remove_background": False,
}


def test_seed_examples_are_accepted_verbatim() -> None:
    # Given the example payloads printed on the two model pages
    # When they are validated
    iv = validate_submission(AVATAR_IV, IV_SEED_EXAMPLE)
    v = validate_submission(AVATAR_V, V_SEED_EXAMPLE)
    # Then nothing is rejected or dropped
    assert iv == IV_SEED_EXAMPLE
    assert v == V_SEED_EXAMPLE


def test_defaults_are_filled_in() -> None:
    iv = validate_submission(AVATAR_IV, {"image_url": "https://x.test/a.png", "video_title": "t", "script": "hi"})
    v = validate_submission(AVATAR_V, {"prompt": "hi"})

    assert iv["voice_id"] == "f80e430f06b34b70b275c9c746436e37"
    assert (iv["video_orientation"], iv["fit"], iv["resolution"]) == ("landscape", "cover", "720p")
    assert iv["enhance_custom_motion_prompt"] is False
    assert "width" not in iv
    assert "height" not in iv
    assert v["avatar"] == "Abigail Sofa Front"
    assert (v["voice"], v["resolution"], v["aspect_ratio"]) == ("Aaron", "1080p", "16:9")
    assert (v["caption"], v["output_format"], v["remove_background"]) == (False, "mp4", False)


def test_null_means_not_given_for_optional_fields() -> None:
    params = validate_submission(
        AVATAR_IV, {"image_url": "https://x.test/a.png", "video_title": "t", "script": "hi", "width": None}
    )
    assert "width" not in params


@pytest.mark.parametrize(
    ("model", "body", "expected"),
    [
        (AVATAR_IV, {"video_title": "t", "script": "hi"}, "image_url: required"),
        (AVATAR_IV, {"image_url": "https://x.test/a.png", "script": "hi"}, "video_title: required"),
        (AVATAR_IV, {"image_url": "https://x.test/a.png", "video_title": "t"}, "script or audio_url"),
        (
            AVATAR_IV,
            {"image_url": "ftp://x.test/a.png", "video_title": "t", "script": "hi"},
            "image_url: must be an http",
        ),
        (
            AVATAR_IV,
            {"image_url": "https://x.test/a.png", "video_title": "t", "script": "  "},
            "script: must not be empty",
        ),
        (
            AVATAR_IV,
            {"image_url": "https://x.test/a.png", "video_title": 7, "script": "hi"},
            "video_title: must be a string",
        ),
        (
            AVATAR_IV,
            {"image_url": "https://x.test/a", "video_title": "t", "script": "x", "fit": "fill"},
            "fit: must be one of",
        ),
        (
            AVATAR_IV,
            {"image_url": "https://x.test/a", "video_title": "t", "script": "x", "width": 640},
            "width and height",
        ),
        (
            AVATAR_IV,
            {"image_url": "https://x.test/a", "video_title": "t", "script": "x", "height": 640},
            "width and height",
        ),
        (
            AVATAR_IV,
            {"image_url": "https://x.test/a", "video_title": "t", "script": "x", "width": "640", "height": 360},
            "width: must be an integer",
        ),
        (
            AVATAR_IV,
            {"image_url": "https://x.test/a", "video_title": "t", "script": "x", "width": True, "height": 360},
            "width: must be an integer",
        ),
        (
            AVATAR_IV,
            {"image_url": "https://x.test/a", "video_title": "t", "script": "x", "width": 640, "height": -1},
            "height: must be a positive",
        ),
        (
            AVATAR_IV,
            {
                "image_url": "https://x.test/a",
                "video_title": "t",
                "script": "x",
                "enhance_custom_motion_prompt": "true",
            },
            "enhance_custom_motion_prompt: must be a boolean",
        ),
        (
            AVATAR_IV,
            {"image_url": "https://x.test/a", "video_title": "t", "script": "x", "voice_id": "Rex - Broadcaster"},
            "voice_id: unknown voice name 'Rex - Broadcaster'",
        ),
        (AVATAR_IV, {"image_url": "https://x.test/a", "video_title": "t", "script": "x", "photo": "a.png"}, "photo"),
        (AVATAR_V, {"prompt": "hi", "audio_url": "https://x.test/a.wav"}, "mutually exclusive"),
        (AVATAR_V, {"voice": "Aaron"}, "prompt or audio_url: one of them is required"),
        (AVATAR_V, {"prompt": "hi", "aspect_ratio": "21:9"}, "aspect_ratio: must be one of"),
        (AVATAR_V, {"prompt": "hi", "caption": "yes"}, "caption: must be a boolean"),
        (AVATAR_V, {"prompt": "hi", "output_format": "mov"}, "output_format: must be one of"),
        (AVATAR_V, {"prompt": "hi", "avatar": "Nobody On A Sofa"}, "avatar: unknown avatar name"),
        (AVATAR_V, {"prompt": "hi", "background": "blue"}, "background: must be a hex colour"),
        (AVATAR_V, {"prompt": "hi", "video_title": "t"}, "unknown parameter(s) for heygen-avatar-v: video_title"),
        ("heygen-avatar-vi", {"prompt": "hi"}, "not served"),
    ],
)
def test_invalid_parameters_name_the_field_and_the_reason(model: str, body: dict[str, Any], expected: str) -> None:
    with pytest.raises(SubmissionInvalid) as caught:
        validate_submission(model, body)
    assert expected in str(caught.value)


@pytest.mark.parametrize("voice_id", ["26b2064088674c80b1e5fc5ab1a068ea", "Onyx", "Lea in car", "custom_clone_01"])
def test_avatar_iv_accepts_raw_voice_ids_and_listed_names(voice_id: str) -> None:
    body = {"image_url": "https://x.test/a.png", "video_title": "t", "script": "hi", "voice_id": voice_id}
    assert validate_submission(AVATAR_IV, body)["voice_id"] == voice_id


def test_avatar_v_accepts_ids_colours_and_dimensions_free_options() -> None:
    body = {
        "avatar_id": "a1b2c3d4e5",
        "audio_url": "https://x.test/a.wav",
        "voice_id": "anything",
        "background": "#0af",
        "caption": True,
        "output_format": "webm",
        "remove_background": True,
        "video_url": "https://x.test/twin.mp4",
    }
    params = validate_submission(AVATAR_V, body)
    assert params["background"] == "#0af"
    assert params["avatar_id"] == "a1b2c3d4e5"


def test_both_width_and_height_override_together() -> None:
    body = {"image_url": "https://x.test/a.png", "video_title": "t", "script": "hi", "width": 1080, "height": 1920}
    params = validate_submission(AVATAR_IV, body)
    assert (params["width"], params["height"]) == (1080, 1920)


def test_fault_matching_title_is_the_video_title_or_the_prompt() -> None:
    assert title_of({"video_title": "Welcome", "script": "x"}) == "Welcome"
    assert title_of({"prompt": "Hello there"}) == "Hello there"
    assert title_of({"audio_url": "https://x.test/a.wav"}) is None
