"""The seed pages' parameter rules, checked the way the provider answers them: 400 + which field and why.

Deliberately independent of `avatar_pipeline`: the emulator is the other side of the wire, so a
shared rule table would hide the very mismatches the end-to-end tests exist to find.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

AVATAR_IV = "heygen-avatar-iv"
AVATAR_V = "heygen-avatar-v"

ParamKind = Literal["string", "uri", "bool", "int", "enum", "voice_or_id", "avatar_or_id", "background"]

# The seeds list only the first names of longer lists; anything id-shaped is accepted as a raw id.
AVATAR_IV_VOICES: dict[str, str] = {
    "Onyx": "26b2064088674c80b1e5fc5ab1a068ea",
    "Coral": "6d5ef2eb0cb94193b90dd3cb397ae898",
    "Nova": "71b0aa6499f6458e8b040818a017db1f",
    "Shimmer": "8273e0a033074b5bb98d7ce3ab727bd9",
    "Lukas in car": "8f0944e10aad4e989bce8f76807b6f36",
    "Lea in car": "8f389c2237194f80b50fe7632dcc17b8",
    "Lea inside": "9af7667dcc3145b790a5fb1ac226dfe3",
    "DARAN INSIDE 2 with mic": "5a3cff20eddd491ca1196ffd1a868fdb",
    "Daran outside sitting": "9ff7fd2dd9114c3bae005e62aa485e52",
    "Gail inside standing": "acebd7b6419a44a388b9d1620614b29f",
}
AVATAR_IV_DEFAULT_VOICE = "f80e430f06b34b70b275c9c746436e37"
AVATAR_V_AVATARS: tuple[str, ...] = (
    "Abigail Sofa Front",
    "Amelia Business Training Front",
    "Anja Office Front",
    "Ann Doctor Sitting",
    "Annie Bar Sitting Front",
    "Artur Office Front",
    "Aubrey Night Scene Front",
    "Blanka Lounge Front",
    "Bojan Business Training Front",
    "Brandon Business Sitting Front",
)
AVATAR_V_VOICES: tuple[str, ...] = (
    "Aaron",
    "Allison",
    "AstroMesh",
    "Blanka - Lifelike",
    "Camden",
    "Chill Brian",
    "Daniel",
    "Elio",
    "Ida - Lifelike",
    "Jessica Anne Bogart",
)
RESOLUTIONS = ("720p", "1080p", "4k")
FITS = ("cover", "contain")
MAX_DIMENSION = 8192

_RAW_ID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
_HEX_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


class SubmissionInvalid(ValueError):
    """A 400: the message names the field and the reason."""


@dataclass(frozen=True)
class Param:
    kind: ParamKind
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    params: Mapping[str, Param]
    cross_checks: Callable[[dict[str, Any]], None]
    known_names: tuple[str, ...] = field(default=())


def _check_iv(params: dict[str, Any]) -> None:
    if "script" not in params and "audio_url" not in params:
        raise SubmissionInvalid("script or audio_url: one of them is required")
    _check_dimensions(params)


def _check_v(params: dict[str, Any]) -> None:
    has_prompt = "prompt" in params
    has_audio = "audio_url" in params
    if has_prompt and has_audio:
        raise SubmissionInvalid("prompt and audio_url are mutually exclusive: send only one")
    if not has_prompt and not has_audio:
        raise SubmissionInvalid("prompt or audio_url: one of them is required")


def _check_dimensions(params: dict[str, Any]) -> None:
    if ("width" in params) != ("height" in params):
        raise SubmissionInvalid("width and height: set both or neither")


MODELS: dict[str, ModelSpec] = {
    AVATAR_IV: ModelSpec(
        params={
            "image_url": Param("uri", required=True),
            "video_title": Param("string", required=True),
            "script": Param("string"),
            "audio_url": Param("uri"),
            "voice_id": Param("voice_or_id", default=AVATAR_IV_DEFAULT_VOICE),
            "video_orientation": Param("enum", default="landscape", choices=("portrait", "landscape")),
            "fit": Param("enum", default="cover", choices=FITS),
            "custom_motion_prompt": Param("string"),
            "enhance_custom_motion_prompt": Param("bool", default=False),
            "resolution": Param("enum", default="720p", choices=RESOLUTIONS),
            "width": Param("int"),
            "height": Param("int"),
        },
        cross_checks=_check_iv,
        known_names=(*AVATAR_IV_VOICES, *AVATAR_IV_VOICES.values(), AVATAR_IV_DEFAULT_VOICE),
    ),
    AVATAR_V: ModelSpec(
        params={
            "avatar": Param("avatar_or_id", default="Abigail Sofa Front"),
            "avatar_id": Param("string"),
            "prompt": Param("string"),
            "audio_url": Param("uri"),
            "voice": Param("voice_or_id", default="Aaron"),
            "voice_id": Param("string"),
            "resolution": Param("enum", default="1080p", choices=RESOLUTIONS),
            "aspect_ratio": Param("enum", default="16:9", choices=("16:9", "9:16", "4:5", "5:4", "1:1", "auto")),
            "fit": Param("enum", default="cover", choices=FITS),
            "background": Param("background"),
            "caption": Param("bool", default=False),
            "output_format": Param("enum", default="mp4", choices=("mp4", "webm")),
            "remove_background": Param("bool", default=False),
            "video_url": Param("uri"),
        },
        cross_checks=_check_v,
        known_names=(*AVATAR_V_VOICES, *AVATAR_V_AVATARS),
    ),
}


def validate_submission(model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """Checked parameters with the seed's defaults filled in; raises SubmissionInvalid (a 400)."""
    spec = MODELS.get(model)
    if spec is None:
        raise SubmissionInvalid(f"model {model!r} is not served here")
    unknown = sorted(set(body) - set(spec.params))
    if unknown:
        raise SubmissionInvalid(f"unknown parameter(s) for {model}: {', '.join(unknown)}")
    params: dict[str, Any] = {}
    for name, param in spec.params.items():
        value = body.get(name)
        if value is None:
            if param.required:
                raise SubmissionInvalid(f"{name}: required")
            if param.default is not None:
                params[name] = param.default
            continue
        params[name] = _check_value(name, param, value, spec.known_names)
    spec.cross_checks(params)
    return params


def _check_value(name: str, param: Param, value: Any, known_names: tuple[str, ...]) -> Any:
    if param.kind == "bool":
        if not isinstance(value, bool):
            raise SubmissionInvalid(f"{name}: must be a boolean (true or false), got {_json_type(value)}")
        return value
    if param.kind == "int":
        return _check_int(name, value)
    if not isinstance(value, str):
        raise SubmissionInvalid(f"{name}: must be a string, got {_json_type(value)}")
    return _check_text(name, param, value, known_names)


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SubmissionInvalid(f"{name}: must be an integer, got {_json_type(value)}")
    if not 0 < value <= MAX_DIMENSION:
        raise SubmissionInvalid(f"{name}: must be a positive number of pixels up to {MAX_DIMENSION}, got {value}")
    return value


def _check_text(name: str, param: Param, value: str, known_names: tuple[str, ...]) -> str:
    if not value.strip():
        raise SubmissionInvalid(f"{name}: must not be empty")
    if param.kind == "uri" and not _is_http_url(value):
        raise SubmissionInvalid(f"{name}: must be an http(s) URL")
    if param.kind == "enum" and value not in param.choices:
        allowed = ", ".join(repr(choice) for choice in param.choices)
        raise SubmissionInvalid(f"{name}: must be one of {allowed}, got {value!r}")
    if param.kind in ("voice_or_id", "avatar_or_id") and value not in known_names and not _RAW_ID.match(value):
        what = "voice" if param.kind == "voice_or_id" else "avatar"
        raise SubmissionInvalid(f"{name}: unknown {what} name {value!r} (use a listed name or a raw {what} id)")
    if param.kind == "background" and not (_HEX_COLOUR.match(value) or _is_http_url(value)):
        raise SubmissionInvalid(f"{name}: must be a hex colour like #FFFFFF or an http(s) image URL, got {value!r}")
    return value


def _is_http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string" if isinstance(value, str) else "null"


def title_of(body: Mapping[str, Any]) -> str | None:
    """What fault rules' title_pattern is matched against: video_title, or (Avatar V has none) the prompt."""
    for key in ("video_title", "prompt"):
        value = body.get(key)
        if isinstance(value, str):
            return value
    return None
