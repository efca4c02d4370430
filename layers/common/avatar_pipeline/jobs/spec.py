"""The job file users drop into inbox/ (DESIGN.md section 3), one model per Segmind model.

The seed's own parameter names are accepted verbatim, so a payload copied from the Segmind docs is a
valid job file; `photo` / `audio` name files beside the JSON instead of URLs. Types are strict
("yes" is not a boolean) and unknown keys are an error, never silently dropped.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictInt,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from avatar_pipeline.errors import InvalidJob
from avatar_pipeline.jobs.catalog import (
    AVATAR_IV_DEFAULT_VOICE_ID,
    AVATAR_IV_VOICES,
    AVATAR_V_AVATARS,
    AVATAR_V_VOICES,
)
from avatar_pipeline.keys import UnsafeKey, validate_output_key

MODEL_AVATAR_IV = "heygen-avatar-iv"
MODEL_AVATAR_V = "heygen-avatar-v"
MAX_SCRIPT_CHARS = 5000
MAX_METADATA_BYTES = 2048

_RAW_ID = re.compile(r"^[A-Za-z0-9_-]{8,128}$")
_HEX_VOICE_ID = re.compile(r"^[0-9a-f]{32}$")
_HEX_COLOUR = re.compile(r"^#(?:[0-9A-Fa-f]{3}|[0-9A-Fa-f]{6})$")


def _https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname or len(value) > 2048:
        raise ValueError("must be an https:// URL")
    return value


HttpsUrl = Annotated[str, AfterValidator(_https_url)]
Text = Annotated[str, Field(min_length=1, max_length=MAX_SCRIPT_CHARS)]
MediaRef = Annotated[str, Field(min_length=1, max_length=1024)]


class _JobBase(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    output_key: str | None = Field(default=None, max_length=900)
    metadata: dict[str, JsonValue] = Field(default_factory=dict)

    @field_validator("output_key")
    @classmethod
    def _safe_output_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_output_key(value)
        except UnsafeKey as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"must serialize to at most {MAX_METADATA_BYTES} bytes")
        return value

    # --- what the pipeline needs to know, independent of the model -------------------------------
    @property
    def video_extension(self) -> str:
        return "mp4"

    @property
    def wants_captions(self) -> bool:
        return False

    def media_references(self) -> dict[str, str]:
        """Files beside the job, by parameter: {"image_url": "alice.png", "audio_url": "hello.wav"}."""
        raise NotImplementedError

    def provider_payload(self, media_urls: dict[str, str]) -> dict[str, Any]:
        """The body of POST /v2/<model>: model parameters only, media references replaced by URLs."""
        pipeline_keys = {"model", "output_key", "metadata", "photo", "audio"}
        payload = self.model_dump(exclude=pipeline_keys, exclude_none=True)
        payload.update(media_urls)
        return payload

    def _check_extension(self) -> None:
        if self.output_key is not None and not self.output_key.endswith(f".{self.video_extension}"):
            raise ValueError(f"output_key must end with .{self.video_extension} for this job")


class AvatarIVJob(_JobBase):
    """heygen-avatar-iv: one photo -> a talking video."""

    model: Literal["heygen-avatar-iv"]
    photo: MediaRef | None = None
    image_url: HttpsUrl | None = None
    audio: MediaRef | None = None
    audio_url: HttpsUrl | None = None
    video_title: str = Field(min_length=1, max_length=200)
    script: Text | None = None
    voice_id: str = AVATAR_IV_DEFAULT_VOICE_ID
    video_orientation: Literal["portrait", "landscape"] = "landscape"
    fit: Literal["cover", "contain"] = "cover"
    custom_motion_prompt: str | None = Field(default=None, min_length=1, max_length=1000)
    enhance_custom_motion_prompt: StrictBool = False
    resolution: Literal["720p", "1080p", "4k"] = "720p"
    width: StrictInt | None = Field(default=None, ge=64, le=4096)
    height: StrictInt | None = Field(default=None, ge=64, le=4096)

    @field_validator("voice_id")
    @classmethod
    def _voice_name_or_id(cls, value: str) -> str:
        if _HEX_VOICE_ID.fullmatch(value):
            return value
        if value in AVATAR_IV_VOICES:
            return AVATAR_IV_VOICES[value]
        known = ", ".join(sorted(AVATAR_IV_VOICES))
        raise ValueError(f"unknown voice {value!r}: give a 32-character voice id or one of: {known}")

    @model_validator(mode="after")
    def _rules(self) -> AvatarIVJob:
        if (self.photo is None) == (self.image_url is None):
            raise ValueError("give exactly one of photo (a file beside the job) or image_url")
        if self.audio is not None and self.audio_url is not None:
            raise ValueError("give at most one of audio or audio_url")
        if self.script is None and self.audio is None and self.audio_url is None:
            raise ValueError("give a script, or audio / audio_url to lip-sync to")
        if (self.width is None) != (self.height is None):
            raise ValueError("width and height go together: set both or neither")
        self._check_extension()
        return self

    def media_references(self) -> dict[str, str]:
        refs = {"image_url": self.photo, "audio_url": self.audio}
        return {param: ref for param, ref in refs.items() if ref is not None}


class AvatarVJob(_JobBase):
    """heygen-avatar-v: a stock or digital-twin avatar speaks text (prompt) or audio."""

    model: Literal["heygen-avatar-v"]
    avatar: str = "Abigail Sofa Front"
    avatar_id: str | None = Field(default=None, pattern=_RAW_ID.pattern)
    prompt: Text | None = None
    audio: MediaRef | None = None
    audio_url: HttpsUrl | None = None
    voice: str = "Aaron"
    voice_id: str | None = Field(default=None, pattern=_RAW_ID.pattern)
    resolution: Literal["720p", "1080p", "4k"] = "1080p"
    aspect_ratio: Literal["16:9", "9:16", "4:5", "5:4", "1:1", "auto"] = "16:9"
    fit: Literal["cover", "contain"] = "cover"
    background: str | None = Field(default=None, max_length=2048)
    caption: StrictBool = False
    output_format: Literal["mp4", "webm"] = "mp4"
    remove_background: StrictBool = False
    video_url: HttpsUrl | None = None

    @field_validator("avatar")
    @classmethod
    def _known_avatar(cls, value: str) -> str:
        if value not in AVATAR_V_AVATARS:
            known = ", ".join(AVATAR_V_AVATARS)
            raise ValueError(f"unknown avatar {value!r}: use avatar_id for other avatars, or one of: {known}")
        return value

    @field_validator("voice")
    @classmethod
    def _known_voice(cls, value: str) -> str:
        if value not in AVATAR_V_VOICES:
            known = ", ".join(AVATAR_V_VOICES)
            raise ValueError(f"unknown voice {value!r}: use voice_id for other voices, or one of: {known}")
        return value

    @field_validator("background")
    @classmethod
    def _colour_or_url(cls, value: str | None) -> str | None:
        if value is None or _HEX_COLOUR.fullmatch(value):
            return value
        try:
            return _https_url(value)
        except ValueError:
            raise ValueError("must be a hex colour like #FFFFFF or an https:// image URL") from None

    @model_validator(mode="after")
    def _rules(self) -> AvatarVJob:
        if self.audio is not None and self.audio_url is not None:
            raise ValueError("give at most one of audio or audio_url")
        has_audio = self.audio is not None or self.audio_url is not None
        if (self.prompt is not None) == has_audio:
            raise ValueError("give exactly one of prompt (text to speak) or audio / audio_url")
        self._check_extension()
        return self

    @property
    def video_extension(self) -> str:
        return self.output_format

    @property
    def wants_captions(self) -> bool:
        return self.caption

    def media_references(self) -> dict[str, str]:
        return {"audio_url": self.audio} if self.audio is not None else {}


JobSpec = Annotated[AvatarIVJob | AvatarVJob, Field(discriminator="model")]
_JOB_ADAPTER: TypeAdapter[AvatarIVJob | AvatarVJob] = TypeAdapter(JobSpec)
SUPPORTED_MODELS = (MODEL_AVATAR_IV, MODEL_AVATAR_V)


def _describe(error: ErrorDetails) -> str:
    location = ".".join(str(part) for part in error["loc"] if part not in SUPPORTED_MODELS)
    if error["type"] == "union_tag_not_found":
        return f"model: required, one of {', '.join(SUPPORTED_MODELS)}"
    if error["type"] == "union_tag_invalid":
        return f"model: {error['ctx']['tag']!r} is not supported; use one of {', '.join(SUPPORTED_MODELS)}"
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown key (not a parameter of this model)"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


def parse_job_file(raw: bytes) -> AvatarIVJob | AvatarVJob:
    """Parse a job file's bytes, raising InvalidJob with every problem listed, readably."""
    # Editors on Windows often save UTF-8 with a byte-order mark; it is not part of the JSON.
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    if not raw.strip():
        raise InvalidJob("the job file is empty")
    return _validate(raw, "the job file")


def parse_job_object(document: dict[str, JsonValue], subject: str = "the job") -> AvatarIVJob | AvatarVJob:
    """A job given as a JSON object (a campaign row's, filled from its template and columns), validated
    exactly as a job file: through its JSON text, so strictness and every rule are the same."""
    return _validate(json.dumps(document, ensure_ascii=False).encode(), subject)


def _validate(raw: bytes, subject: str) -> AvatarIVJob | AvatarVJob:
    try:
        return _JOB_ADAPTER.validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise InvalidJob(f"{subject} is not valid JSON: {errors[0]['msg']}") from None
        if errors and errors[0]["type"] in {"dict_type", "model_attributes_type"} and not errors[0]["loc"]:
            raise InvalidJob(f"{subject} must be a JSON object") from None
        problems = "; ".join(_describe(e) for e in errors)
        raise InvalidJob(f"{subject} is invalid: {problems}") from None


def job_keys(model: str) -> frozenset[str]:
    """Every key a job file for `model` may hold (pipeline keys and model parameters)."""
    return frozenset(_MODELS[model].model_fields)


KeyKind = Literal["bool", "int", "object", "text"]


def job_key_kind(model: str, key: str) -> KeyKind:
    """The JSON type a job key takes, so text (a CSV cell) can be turned into it: "true" -> true."""
    field = _MODELS[model].model_fields.get(key)
    return _kind(field.annotation) if field is not None else "text"


def _kind(annotation: object) -> KeyKind:
    # bool before int: a bool is an int to Python, never to a job file.
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is dict or get_origin(annotation) is dict:
        return "object"
    for inner in get_args(annotation):
        kind = _kind(inner)
        if kind != "text":
            return kind
    return "text"


_MODELS: dict[str, type[AvatarIVJob | AvatarVJob]] = {MODEL_AVATAR_IV: AvatarIVJob, MODEL_AVATAR_V: AvatarVJob}
