"""The job file (DESIGN.md section 3): every seed rule, accepted and rejected, through parse_job_file."""

from __future__ import annotations

import json
from typing import Any

import pytest

from avatar_pipeline.errors import InvalidJob
from avatar_pipeline.jobs.catalog import (
    AVATAR_IV_DEFAULT_VOICE_ID,
    AVATAR_IV_VOICES,
    AVATAR_V_AVATARS,
    AVATAR_V_VOICES,
)
from avatar_pipeline.jobs.spec import (
    MAX_METADATA_BYTES,
    MAX_SCRIPT_CHARS,
    AvatarIVJob,
    AvatarVJob,
    parse_job_file,
)

pytestmark = pytest.mark.unit

PIPELINE_KEYS = {"model", "output_key", "metadata", "photo", "audio"}
PRESIGNED_PHOTO = "https://input-bucket.s3.amazonaws.com/inbox/a/alice.png?X-Amz-Signature=abc"
PRESIGNED_AUDIO = "https://input-bucket.s3.amazonaws.com/inbox/a/hello.wav?X-Amz-Signature=def"
RAW_VOICE_ID = "0123456789abcdef0123456789abcdef"

# The seed pages' example payloads, copied verbatim (plus the pipeline's `model` key).
SEED_IV_PAYLOAD: dict[str, Any] = {
    "image_url": "https://segmind-inference-inputs.s3.amazonaws.com/f858aaa9-26a9-4749-83fc-08ac2240c1e2-148863a50eac17d1990d23b873818afa.png",
    "video_title": "Hello Avatar",
    "script": "Hello, this is an avatar demo.",
    "voice_id": "f80e430f06b34b70b275c9c746436e37",
    "video_orientation": "landscape",
    "fit": "cover",
    "custom_motion_prompt": "Subtle hand movements.",
    "enhance_custom_motion_prompt": False,
    "audio_url": "https://segmind-resources.s3.amazonaws.com/input/c8a1403e-d409-481d-b269-5eee0f01581f-0e55863604e421fff17ffbe89992a1cc.wav",
    "resolution": "720p",
}
SEED_V_PAYLOAD: dict[str, Any] = {
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


def iv_job(**changes: Any) -> dict[str, Any]:
    """A minimal valid Avatar IV job file; a change whose value is DROP removes the key."""
    doc: dict[str, Any] = {"model": "heygen-avatar-iv", "photo": "alice.png", "video_title": "Welcome", "script": "Hi."}
    return _apply(doc, changes)


def v_job(**changes: Any) -> dict[str, Any]:
    """A minimal valid Avatar V job file; a change whose value is DROP removes the key."""
    doc: dict[str, Any] = {"model": "heygen-avatar-v", "prompt": "Hello there."}
    return _apply(doc, changes)


DROP = object()


def _apply(doc: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for key, value in changes.items():
        if value is DROP:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def parse(doc: object) -> AvatarIVJob | AvatarVJob:
    return parse_job_file(json.dumps(doc).encode())


def rejection(raw: object) -> str:
    """Parse a job file that must be rejected; return the readable message."""
    data = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
    with pytest.raises(InvalidJob) as caught:
        parse_job_file(data)
    assert caught.value.message == str(caught.value)
    return caught.value.message


# --- Avatar IV --------------------------------------------------------------------------------------


def test_minimal_avatar_iv_job_gets_the_seed_defaults() -> None:
    """Given an Avatar IV job with only a photo, a title and a script
    When it is parsed and turned into a provider payload
    Then every seed default is filled in and the photo becomes the presigned image_url."""
    job = parse(iv_job())

    assert isinstance(job, AvatarIVJob)
    assert job.media_references() == {"image_url": "alice.png"}
    assert job.video_extension == "mp4"
    assert job.wants_captions is False
    assert job.provider_payload({"image_url": PRESIGNED_PHOTO}) == {
        "image_url": PRESIGNED_PHOTO,
        "video_title": "Welcome",
        "script": "Hi.",
        "voice_id": AVATAR_IV_DEFAULT_VOICE_ID,
        "video_orientation": "landscape",
        "fit": "cover",
        "enhance_custom_motion_prompt": False,
        "resolution": "720p",
    }


def test_video_title_is_required() -> None:
    """Given an Avatar IV job without video_title
    When it is parsed
    Then it is rejected naming video_title."""
    message = rejection(iv_job(video_title=DROP))
    assert "video_title" in message
    assert "required" in message.lower()


def test_empty_video_title_is_rejected() -> None:
    """Given an Avatar IV job whose video_title is an empty string
    When it is parsed
    Then it is rejected naming video_title."""
    assert "video_title" in rejection(iv_job(video_title=""))


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"photo": DROP}, id="neither"),
        pytest.param({"image_url": "https://cdn.example.com/alice.png"}, id="both"),
    ],
)
def test_exactly_one_of_photo_or_image_url(changes: dict[str, Any]) -> None:
    """Given an Avatar IV job with neither or both of photo and image_url
    When it is parsed
    Then it is rejected naming both keys."""
    message = rejection(iv_job(**changes))
    assert "photo" in message
    assert "image_url" in message


def test_image_url_instead_of_photo_is_sent_as_given() -> None:
    """Given an Avatar IV job with an https image_url and no photo
    When it is parsed
    Then nothing needs presigning and the URL is sent unchanged."""
    job = parse(iv_job(photo=DROP, image_url="https://cdn.example.com/alice.png"))

    assert job.media_references() == {}
    assert job.provider_payload({})["image_url"] == "https://cdn.example.com/alice.png"


@pytest.mark.parametrize(
    "url",
    [
        "http://cdn.example.com/alice.png",
        "ftp://cdn.example.com/alice.png",
        "https://",
        "alice.png",
        "https://cdn.example.com/" + "a" * 2048,
    ],
)
def test_image_url_must_be_https(url: str) -> None:
    """Given an Avatar IV image_url that is not an https URL with a host (or is over-long)
    When it is parsed
    Then it is rejected naming image_url and https."""
    message = rejection(iv_job(photo=DROP, image_url=url))
    assert "image_url" in message
    assert "https" in message


def test_audio_url_must_be_https() -> None:
    """Given an Avatar IV audio_url over plain http
    When it is parsed
    Then it is rejected naming audio_url."""
    message = rejection(iv_job(audio_url="http://cdn.example.com/hello.wav"))
    assert "audio_url" in message
    assert "https" in message


def test_script_or_audio_is_required() -> None:
    """Given an Avatar IV job with no script, audio or audio_url
    When it is parsed
    Then it is rejected saying a script or audio is needed."""
    message = rejection(iv_job(script=DROP))
    assert "script" in message
    assert "audio" in message


def test_audio_file_instead_of_script_is_accepted() -> None:
    """Given an Avatar IV job with an audio file beside it and no script
    When it is parsed and turned into a payload
    Then both media files are referenced and become the presigned URLs."""
    job = parse(iv_job(script=DROP, audio="hello.wav"))

    assert job.media_references() == {"image_url": "alice.png", "audio_url": "hello.wav"}
    payload = job.provider_payload({"image_url": PRESIGNED_PHOTO, "audio_url": PRESIGNED_AUDIO})
    assert payload["audio_url"] == PRESIGNED_AUDIO
    assert "script" not in payload


def test_audio_url_instead_of_script_is_accepted() -> None:
    """Given an Avatar IV job with an https audio_url and no script
    When it is parsed
    Then it is accepted and the audio_url is sent unchanged."""
    job = parse(iv_job(script=DROP, audio_url="https://cdn.example.com/hello.wav"))

    assert job.media_references() == {"image_url": "alice.png"}
    assert job.provider_payload({"image_url": PRESIGNED_PHOTO})["audio_url"] == "https://cdn.example.com/hello.wav"


def test_audio_and_audio_url_together_are_rejected() -> None:
    """Given an Avatar IV job with both an audio file and an audio_url
    When it is parsed
    Then it is rejected naming both keys."""
    message = rejection(iv_job(audio="hello.wav", audio_url="https://cdn.example.com/hello.wav"))
    assert "audio" in message
    assert "audio_url" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("video_orientation", "portrait"),
        ("video_orientation", "landscape"),
        ("fit", "cover"),
        ("fit", "contain"),
        ("resolution", "720p"),
        ("resolution", "1080p"),
        ("resolution", "4k"),
    ],
)
def test_avatar_iv_enum_values_are_accepted(field: str, value: str) -> None:
    """Given an Avatar IV enum parameter set to an allowed value
    When it is parsed
    Then the value is sent as given."""
    assert parse(iv_job(**{field: value})).provider_payload({})[field] == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("video_orientation", "square"),
        ("fit", "stretch"),
        ("resolution", "8k"),
        ("resolution", "720P"),
        ("fit", 1),
    ],
)
def test_avatar_iv_enum_violations_are_rejected(field: str, value: object) -> None:
    """Given an Avatar IV enum parameter set outside its allowed values
    When it is parsed
    Then it is rejected naming the parameter."""
    assert field in rejection(iv_job(**{field: value}))


@pytest.mark.parametrize(
    "changes",
    [pytest.param({"width": 1280}, id="width-only"), pytest.param({"height": 720}, id="height-only")],
)
def test_width_and_height_go_together(changes: dict[str, Any]) -> None:
    """Given an Avatar IV job with width but no height, or height but no width
    When it is parsed
    Then it is rejected naming width and height."""
    message = rejection(iv_job(**changes))
    assert "width" in message
    assert "height" in message


@pytest.mark.parametrize(("width", "height"), [(64, 64), (1280, 720), (4096, 4096)])
def test_width_and_height_within_bounds_are_sent(width: int, height: int) -> None:
    """Given an Avatar IV job with both width and height within 64..4096
    When it is parsed
    Then both are sent."""
    payload = parse(iv_job(width=width, height=height)).provider_payload({})
    assert (payload["width"], payload["height"]) == (width, height)


@pytest.mark.parametrize("field", ["width", "height"])
@pytest.mark.parametrize("value", [63, 4097, 0, -720])
def test_width_and_height_out_of_bounds_are_rejected(field: str, value: int) -> None:
    """Given an Avatar IV width or height outside 64..4096
    When it is parsed
    Then it is rejected naming that dimension."""
    doc = iv_job(width=1280, height=720)
    doc[field] = value
    assert field in rejection(doc)


@pytest.mark.parametrize("field", ["width", "height"])
@pytest.mark.parametrize("value", ["720", 720.0, 720.5, True, None])
def test_width_and_height_must_be_integers(field: str, value: object) -> None:
    """Given an Avatar IV width or height that is a string, a float, a boolean or null (with the other set)
    When it is parsed
    Then it is rejected naming that dimension (no coercion)."""
    doc = iv_job(width=1280, height=720)
    doc[field] = value
    assert field in rejection(doc)


@pytest.mark.parametrize("value", ["true", "false", 1, 0, "yes"])
def test_enhance_custom_motion_prompt_is_a_strict_boolean(value: object) -> None:
    """Given enhance_custom_motion_prompt as a string or a number
    When it is parsed
    Then it is rejected naming the parameter."""
    assert "enhance_custom_motion_prompt" in rejection(iv_job(enhance_custom_motion_prompt=value))


def test_enhance_custom_motion_prompt_true_and_motion_prompt_are_sent() -> None:
    """Given a custom motion prompt with enhancement switched on as a JSON boolean
    When it is parsed
    Then both are sent."""
    payload = parse(
        iv_job(custom_motion_prompt="Energetic gestures.", enhance_custom_motion_prompt=True)
    ).provider_payload({})
    assert payload["custom_motion_prompt"] == "Energetic gestures."
    assert payload["enhance_custom_motion_prompt"] is True


@pytest.mark.parametrize(("name", "voice_id"), sorted(AVATAR_IV_VOICES.items()))
def test_known_voice_name_is_mapped_to_its_id(name: str, voice_id: str) -> None:
    """Given an Avatar IV voice_id that is a voice name from the seed list
    When it is parsed
    Then the payload carries that voice's id."""
    assert parse(iv_job(voice_id=name)).provider_payload({})["voice_id"] == voice_id


def test_raw_voice_id_is_sent_unchanged() -> None:
    """Given an Avatar IV voice_id that is a raw 32-hex id not in the seed list
    When it is parsed
    Then it is sent unchanged."""
    assert parse(iv_job(voice_id=RAW_VOICE_ID)).provider_payload({})["voice_id"] == RAW_VOICE_ID


def test_unknown_voice_name_is_rejected_listing_the_known_names() -> None:
    """Given an Avatar IV voice_id that is neither a known name nor a 32-hex id
    When it is parsed
    Then the message names voice_id, the bad value and every known voice name."""
    message = rejection(iv_job(voice_id="Rex - Broadcaster"))
    assert "voice_id" in message
    assert "Rex - Broadcaster" in message
    for name in AVATAR_IV_VOICES:
        assert name in message


@pytest.mark.parametrize(
    "voice_id",
    [
        RAW_VOICE_ID[:-1],
        RAW_VOICE_ID + "0",
        RAW_VOICE_ID[:-1] + "g",
        "onyx",
        RAW_VOICE_ID + "\n",
    ],
    ids=["31-chars", "33-chars", "non-hex", "wrong-case-name", "trailing-newline"],
)
def test_malformed_voice_ids_are_rejected(voice_id: str) -> None:
    """Given an Avatar IV voice_id that is almost, but not exactly, a 32-hex id or a known name
    When it is parsed
    Then it is rejected naming voice_id (a trailing newline must not slip through to Segmind)."""
    assert "voice_id" in rejection(iv_job(voice_id=voice_id))


def test_seed_example_payload_is_a_valid_job_and_is_sent_verbatim() -> None:
    """Given the Avatar IV example payload from the seed page, with only `model` added
    When it is parsed and turned into a payload
    Then it is accepted and the payload sent is exactly the seed's."""
    job = parse({"model": "heygen-avatar-iv", **SEED_IV_PAYLOAD})

    assert job.media_references() == {}
    assert job.provider_payload({}) == SEED_IV_PAYLOAD


def test_avatar_v_seed_example_payload_is_a_valid_job_and_is_sent_verbatim() -> None:
    """Given the Avatar V example payload from the seed page, with only `model` added
    When it is parsed and turned into a payload
    Then it is accepted and the payload sent is exactly the seed's."""
    job = parse({"model": "heygen-avatar-v", **SEED_V_PAYLOAD})

    assert job.media_references() == {}
    assert job.provider_payload({}) == SEED_V_PAYLOAD


def test_script_length_limit() -> None:
    """Given scripts of exactly the limit and one character over it
    When they are parsed
    Then the first is accepted and the second rejected naming script."""
    assert parse(iv_job(script="a" * MAX_SCRIPT_CHARS)).provider_payload({})["script"] == "a" * MAX_SCRIPT_CHARS
    assert "script" in rejection(iv_job(script="a" * (MAX_SCRIPT_CHARS + 1)))


def test_empty_script_is_rejected() -> None:
    """Given an empty script string
    When it is parsed
    Then it is rejected naming script."""
    assert "script" in rejection(iv_job(script=""))


# --- Avatar V ---------------------------------------------------------------------------------------


def test_minimal_avatar_v_job_gets_the_seed_defaults() -> None:
    """Given an Avatar V job with only a prompt
    When it is parsed and turned into a payload
    Then every seed default is filled in and no media needs presigning."""
    job = parse(v_job())

    assert isinstance(job, AvatarVJob)
    assert job.media_references() == {}
    assert job.provider_payload({}) == {
        "avatar": "Abigail Sofa Front",
        "prompt": "Hello there.",
        "voice": "Aaron",
        "resolution": "1080p",
        "aspect_ratio": "16:9",
        "fit": "cover",
        "caption": False,
        "output_format": "mp4",
        "remove_background": False,
    }


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"audio": "hello.wav"}, id="prompt-and-audio"),
        pytest.param({"audio_url": "https://cdn.example.com/hello.wav"}, id="prompt-and-audio_url"),
        pytest.param({"prompt": DROP}, id="neither"),
    ],
)
def test_prompt_xor_audio(changes: dict[str, Any]) -> None:
    """Given an Avatar V job with both a prompt and audio, or neither
    When it is parsed
    Then it is rejected naming prompt and audio."""
    message = rejection(v_job(**changes))
    assert "prompt" in message
    assert "audio" in message


def test_audio_and_audio_url_together_are_rejected_for_avatar_v() -> None:
    """Given an Avatar V job with both an audio file and an audio_url (and no prompt)
    When it is parsed
    Then it is rejected naming both keys."""
    message = rejection(v_job(prompt=DROP, audio="hello.wav", audio_url="https://cdn.example.com/hello.wav"))
    assert "audio_url" in message


def test_avatar_v_audio_file_becomes_the_presigned_audio_url() -> None:
    """Given an Avatar V job with an audio file beside it and no prompt
    When it is parsed and turned into a payload
    Then the audio file is referenced and sent as the presigned audio_url, with no prompt."""
    job = parse(v_job(prompt=DROP, audio="hello.wav"))

    assert job.media_references() == {"audio_url": "hello.wav"}
    payload = job.provider_payload({"audio_url": PRESIGNED_AUDIO})
    assert payload["audio_url"] == PRESIGNED_AUDIO
    assert "prompt" not in payload


def test_avatar_v_audio_url_alone_is_accepted() -> None:
    """Given an Avatar V job with an https audio_url and no prompt
    When it is parsed
    Then it is sent unchanged."""
    job = parse(v_job(prompt=DROP, audio_url="https://cdn.example.com/hello.wav"))
    assert job.provider_payload({})["audio_url"] == "https://cdn.example.com/hello.wav"


@pytest.mark.parametrize("avatar", AVATAR_V_AVATARS)
def test_known_avatar_names_are_accepted(avatar: str) -> None:
    """Given an Avatar V avatar name from the seed list
    When it is parsed
    Then it is sent as given."""
    assert parse(v_job(avatar=avatar)).provider_payload({})["avatar"] == avatar


def test_unknown_avatar_is_rejected_listing_the_known_names() -> None:
    """Given an Avatar V avatar name not in the seed list
    When it is parsed
    Then the message names avatar, points at avatar_id and lists the known names."""
    message = rejection(v_job(avatar="Bob In Garage"))
    assert "avatar" in message
    assert "avatar_id" in message
    assert "Bob In Garage" in message
    for name in AVATAR_V_AVATARS:
        assert name in message


def test_raw_avatar_id_is_sent() -> None:
    """Given an Avatar V job with a raw avatar_id
    When it is parsed
    Then the avatar_id is sent (it overrides avatar on Segmind's side)."""
    payload = parse(v_job(avatar_id="Tw1n_avatar-0042")).provider_payload({})
    assert payload["avatar_id"] == "Tw1n_avatar-0042"


@pytest.mark.parametrize("raw_id", ["short", "has space 123", "slash/1234567", "a" * 129])
def test_malformed_avatar_id_is_rejected(raw_id: str) -> None:
    """Given an Avatar V avatar_id that is too short, too long or has characters outside [A-Za-z0-9_-]
    When it is parsed
    Then it is rejected naming avatar_id."""
    assert "avatar_id" in rejection(v_job(avatar_id=raw_id))


@pytest.mark.parametrize("voice", AVATAR_V_VOICES)
def test_known_avatar_v_voices_are_accepted(voice: str) -> None:
    """Given an Avatar V voice name from the seed list
    When it is parsed
    Then it is sent as given."""
    assert parse(v_job(voice=voice)).provider_payload({})["voice"] == voice


def test_unknown_avatar_v_voice_is_rejected_listing_the_known_names() -> None:
    """Given an Avatar V voice name not in the seed list
    When it is parsed
    Then the message names voice, points at voice_id and lists the known names."""
    message = rejection(v_job(voice="Morgan"))
    assert "voice" in message
    assert "voice_id" in message
    assert "Morgan" in message
    for name in AVATAR_V_VOICES:
        assert name in message


def test_raw_avatar_v_voice_id_is_sent() -> None:
    """Given an Avatar V job with a raw voice_id
    When it is parsed
    Then the voice_id is sent."""
    assert parse(v_job(voice_id="cloned_voice_99")).provider_payload({})["voice_id"] == "cloned_voice_99"


def test_malformed_avatar_v_voice_id_is_rejected() -> None:
    """Given an Avatar V voice_id with characters outside [A-Za-z0-9_-]
    When it is parsed
    Then it is rejected naming voice_id."""
    assert "voice_id" in rejection(v_job(voice_id="voice id with spaces"))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        *[("aspect_ratio", ratio) for ratio in ("16:9", "9:16", "4:5", "5:4", "1:1", "auto")],
        *[("resolution", res) for res in ("720p", "1080p", "4k")],
        ("fit", "cover"),
        ("fit", "contain"),
        ("output_format", "mp4"),
    ],
)
def test_avatar_v_enum_values_are_accepted(field: str, value: str) -> None:
    """Given an Avatar V enum parameter set to an allowed value
    When it is parsed
    Then it is sent as given."""
    assert parse(v_job(**{field: value})).provider_payload({})[field] == value


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("aspect_ratio", "2:1"),
        ("aspect_ratio", "16x9"),
        ("resolution", "480p"),
        ("fit", "fill"),
        ("output_format", "mov"),
        ("output_format", "MP4"),
    ],
)
def test_avatar_v_enum_violations_are_rejected(field: str, value: str) -> None:
    """Given an Avatar V enum parameter outside its allowed values
    When it is parsed
    Then it is rejected naming the parameter."""
    assert field in rejection(v_job(**{field: value}))


@pytest.mark.parametrize("background", ["#FFFFFF", "#00ff7f", "#fff", "https://cdn.example.com/office.jpg"])
def test_background_hex_colour_or_https_url_is_accepted(background: str) -> None:
    """Given an Avatar V background that is a hex colour or an https image URL
    When it is parsed
    Then it is sent as given."""
    assert parse(v_job(background=background)).provider_payload({})["background"] == background


@pytest.mark.parametrize(
    "background",
    ["white", "FFFFFF", "#FFFF", "#GGGGGG", "http://cdn.example.com/office.jpg", "", "#FFFFFF\n"],
    ids=["name", "no-hash", "4-digits", "not-hex", "plain-http", "empty", "trailing-newline"],
)
def test_background_junk_is_rejected(background: str) -> None:
    """Given an Avatar V background that is neither a hex colour nor an https URL
    When it is parsed
    Then it is rejected naming background and the accepted forms."""
    message = rejection(v_job(background=background))
    assert "background" in message
    assert "hex colour" in message


@pytest.mark.parametrize("field", ["caption", "remove_background"])
@pytest.mark.parametrize("value", ["true", 1, "false", None])
def test_avatar_v_booleans_are_strict(field: str, value: object) -> None:
    """Given caption or remove_background as a string, a number or null
    When it is parsed
    Then it is rejected naming the parameter."""
    assert field in rejection(v_job(**{field: value}))


def test_caption_true_asks_for_captions() -> None:
    """Given an Avatar V job with caption: true
    When it is parsed
    Then the pipeline knows to fetch captions and the flag is sent."""
    job = parse(v_job(caption=True, remove_background=True))

    assert job.wants_captions is True
    payload = job.provider_payload({})
    assert payload["caption"] is True
    assert payload["remove_background"] is True


def test_webm_output_format_makes_a_webm_video() -> None:
    """Given an Avatar V job with output_format webm and a .webm output_key
    When it is parsed
    Then the video extension is webm and the output key is kept."""
    job = parse(v_job(output_format="webm", remove_background=True, output_key="clips/alpha.webm"))

    assert job.video_extension == "webm"
    assert job.output_key == "clips/alpha.webm"


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param({"output_format": "webm", "output_key": "clips/alpha.mp4"}, id="webm-with-mp4-key"),
        pytest.param({"output_key": "clips/alpha.webm"}, id="mp4-with-webm-key"),
        pytest.param({"output_format": "webm", "output_key": "clips/alpha"}, id="no-extension"),
    ],
)
def test_output_key_extension_must_match_the_output_format(changes: dict[str, Any]) -> None:
    """Given an Avatar V output_key whose extension does not match output_format
    When it is parsed
    Then it is rejected naming output_key and the expected extension."""
    message = rejection(v_job(**changes))
    assert "output_key" in message
    assert f".{changes.get('output_format', 'mp4')}" in message


def test_avatar_iv_output_key_must_end_in_mp4() -> None:
    """Given an Avatar IV output_key ending in .webm
    When it is parsed
    Then it is rejected naming output_key and .mp4."""
    message = rejection(iv_job(output_key="clips/alice.webm"))
    assert "output_key" in message
    assert ".mp4" in message


def test_video_url_must_be_https() -> None:
    """Given an Avatar V reference video_url over https, then over http
    When each is parsed
    Then the first is sent and the second rejected naming video_url."""
    payload = parse(v_job(video_url="https://cdn.example.com/me.mp4")).provider_payload({})
    assert payload["video_url"] == "https://cdn.example.com/me.mp4"
    assert "video_url" in rejection(v_job(video_url="http://cdn.example.com/me.mp4"))


def test_prompt_length_limit() -> None:
    """Given an Avatar V prompt one character over the limit
    When it is parsed
    Then it is rejected naming prompt."""
    assert "prompt" in rejection(v_job(prompt="a" * (MAX_SCRIPT_CHARS + 1)))


# --- common -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        (iv_job(voice="Aaron"), "voice"),
        (iv_job(image="alice.png"), "image"),
        (v_job(script="Hi."), "script"),
        (v_job(webhook_url="https://example.com/hook"), "webhook_url"),
    ],
)
def test_unknown_keys_are_rejected_by_name(doc: dict[str, Any], key: str) -> None:
    """Given a job file with a key that is not a parameter of its model (nor a pipeline key)
    When it is parsed
    Then it is rejected naming that key as unknown, never silently dropped."""
    message = rejection(doc)
    assert f"{key}: unknown key" in message


def test_every_problem_is_listed() -> None:
    """Given a job file with two independent problems
    When it is parsed
    Then the message names both."""
    message = rejection(v_job(fit="fill", colour="#fff"))
    assert "fit" in message
    assert "colour" in message


def test_missing_model_is_rejected() -> None:
    """Given a job file without a model
    When it is parsed
    Then the message says model is required and lists the supported models."""
    message = rejection(iv_job(model=DROP))
    assert "model" in message
    assert "heygen-avatar-iv" in message
    assert "heygen-avatar-v" in message


@pytest.mark.parametrize("model", ["heygen-avatar-vi", "HEYGEN-AVATAR-IV", "", 4])
def test_unsupported_model_is_rejected(model: object) -> None:
    """Given a job file naming a model the pipeline does not support
    When it is parsed
    Then the message names the model and lists the supported ones."""
    message = rejection(iv_job(model=model))
    assert "model" in message
    assert "not supported" in message
    assert "heygen-avatar-iv, heygen-avatar-v" in message


@pytest.mark.parametrize("raw", [b"", b"   ", b"\n\t \r\n"], ids=["empty", "spaces", "whitespace"])
def test_empty_file_is_rejected(raw: bytes) -> None:
    """Given an empty or whitespace-only job file
    When it is parsed
    Then the message says it is empty."""
    assert "empty" in rejection(raw)


@pytest.mark.parametrize("raw", [b"{", b'{"model": "heygen-avatar-v",}', b"model: heygen-avatar-v", b"\xff\xfe{}"])
def test_malformed_json_is_rejected(raw: bytes) -> None:
    """Given a job file that is not valid JSON
    When it is parsed
    Then the message says so."""
    assert "not valid JSON" in rejection(raw)


@pytest.mark.parametrize(
    "raw", [b"[]", b'[{"model": "heygen-avatar-v"}]', b'"heygen-avatar-v"', b"42", b"null", b"true"]
)
def test_json_that_is_not_an_object_is_rejected(raw: bytes) -> None:
    """Given a job file that is valid JSON but not an object
    When it is parsed
    Then the message says it must be a JSON object."""
    assert "must be a JSON object" in rejection(raw)


@pytest.mark.parametrize(
    "output_key",
    ["../x.mp4", "/abs.mp4", "a//b.mp4", "a/./b.mp4", "a/../../b.mp4", "./b.mp4", "a\\b.mp4", "a\x00b.mp4", ""],
)
def test_unsafe_output_keys_are_rejected(output_key: str) -> None:
    """Given an output_key that could escape its folder or is not a clean S3 key
    When it is parsed
    Then it is rejected naming output_key."""
    assert "output_key" in rejection(iv_job(output_key=output_key))


def test_nested_output_key_is_accepted() -> None:
    """Given a nested, relative output_key
    When it is parsed
    Then it is kept and never sent to Segmind."""
    job = parse(iv_job(output_key="campaign-a/2026/alice welcome.mp4"))

    assert job.output_key == "campaign-a/2026/alice welcome.mp4"
    assert "output_key" not in job.provider_payload({})


def test_metadata_size_limit() -> None:
    """Given metadata just under and just over the serialized size limit
    When each is parsed
    Then the first is kept untouched and the second rejected naming metadata."""
    overhead = len(json.dumps({"note": ""}).encode())
    fits = {"note": "x" * (MAX_METADATA_BYTES - overhead)}
    too_big = {"note": "x" * (MAX_METADATA_BYTES - overhead + 1)}

    assert parse(iv_job(metadata=fits)).metadata == fits
    message = rejection(iv_job(metadata=too_big))
    assert "metadata" in message
    assert str(MAX_METADATA_BYTES) in message


def test_metadata_must_be_an_object() -> None:
    """Given metadata that is a list
    When it is parsed
    Then it is rejected naming metadata."""
    assert "metadata" in rejection(iv_job(metadata=["customer", 42]))


def test_nested_metadata_passes_through_untouched() -> None:
    """Given nested JSON metadata
    When it is parsed
    Then it is kept exactly as given."""
    metadata = {"customer": "42", "tags": ["a", "b"], "cost": {"centre": 7, "approved": True, "note": None}}
    assert parse(v_job(metadata=metadata)).metadata == metadata


@pytest.mark.parametrize(
    "doc",
    [
        iv_job(audio="hello.wav", output_key="out/a.mp4", metadata={"customer": "42"}),
        v_job(prompt=DROP, audio="hello.wav", output_key="out/a.mp4", metadata={"customer": "42"}),
    ],
    ids=["avatar-iv", "avatar-v"],
)
def test_provider_payload_never_carries_pipeline_keys(doc: dict[str, Any]) -> None:
    """Given a job using every pipeline key (photo/audio files, output_key, metadata)
    When its provider payload is built from presigned URLs
    Then no pipeline key is sent and the presigned URLs are under image_url / audio_url."""
    job = parse(doc)
    presigned = {"image_url": PRESIGNED_PHOTO, "audio_url": PRESIGNED_AUDIO}
    media_urls = {param: presigned[param] for param in job.media_references()}

    payload = job.provider_payload(media_urls)

    assert PIPELINE_KEYS.isdisjoint(payload)
    for param, url in media_urls.items():
        assert payload[param] == url
    assert not {"alice.png", "hello.wav"} & {value for value in payload.values() if isinstance(value, str)}


def test_a_utf8_byte_order_mark_is_not_part_of_the_json() -> None:
    """Given a job file saved by an editor that writes a UTF-8 BOM, then it parses like any other."""
    raw = b"\xef\xbb\xbf" + json.dumps({"model": "heygen-avatar-v", "prompt": "Saved on Windows."}).encode()
    assert parse_job_file(raw).model == "heygen-avatar-v"
