"""Segmind v2 response bodies, parsed defensively (notes/segmind-v2.md marks several shapes UNCONFIRMED)."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from avatar_pipeline.errors import ProviderBadResponse

RenderStatus = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED"]
_VIDEO_KEYS = ("video_url", "url", "video", "output_url", "generation_url")
_CAPTION_KEYS = ("caption_url", "subtitle_url", "captions_url", "srt_url", "caption", "subtitles")


class SubmitAccepted(BaseModel):
    """POST /v2/<model> 200. A 2xx without these fields is an error, not a job."""

    model_config = ConfigDict(extra="allow")

    request_id: str = Field(min_length=1)
    status: str = "QUEUED"
    status_url: str = Field(min_length=1)
    response_url: str = Field(min_length=1)


class StatusReport(BaseModel):
    """GET /v2/requests/<id>/status (and a FAILED 422 body)."""

    model_config = ConfigDict(extra="allow")

    status: RenderStatus
    request_id: str | None = None
    error: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)

    @field_validator("status", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("error", mode="before")
    @classmethod
    def _error_text(cls, value: object) -> object:
        # The notes say a string; an object or list still describes the failure, so keep it as text.
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value)[:1000]

    @field_validator("metrics", mode="before")
    @classmethod
    def _metrics_or_empty(cls, value: object) -> object:
        return value if isinstance(value, dict) else {}


class RenderResult(BaseModel):
    """What the pipeline needs of GET /v2/requests/<id> once COMPLETED."""

    video_url: str
    caption_url: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)


def parse_model(model: type[BaseModel], body: object, what: str) -> Any:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ProviderBadResponse(f"unexpected {what} body from Segmind: {exc.errors()[0]['msg']}") from None


def _first_url(value: object, keys: tuple[str, ...]) -> str | None:
    if isinstance(value, str) and value.startswith(("http://", "https://")):
        return value
    if isinstance(value, list):
        for item in value:
            found = _first_url(item, keys)
            if found:
                return found
    if isinstance(value, dict):
        for key in keys:
            found = _first_url(value.get(key), keys)
            if found:
                return found
    return None


def extract_render_result(body: dict[str, Any]) -> RenderResult:
    """Find the video and caption URLs wherever this version of the API put them.

    `output` may be a URL string, a list of URLs, or an object (video_url/url + caption_url);
    some responses also carry video_url / caption_url at the top level.
    """
    output = body.get("output")
    caption_url = _first_url(output, _CAPTION_KEYS) if isinstance(output, dict) else None
    caption_url = caption_url or _first_url({k: body.get(k) for k in _CAPTION_KEYS}, _CAPTION_KEYS)
    video_url = _first_url(output, _VIDEO_KEYS) if isinstance(output, dict | list) else _first_url(output, ())
    if isinstance(output, list) and caption_url is None:
        # A list may hold the video and its captions side by side; keep the non-.srt one as video.
        urls = [u for u in output if isinstance(u, str) and u.startswith(("http://", "https://"))]
        videos = [u for u in urls if not u.split("?")[0].lower().endswith(".srt")]
        captions = [u for u in urls if u.split("?")[0].lower().endswith(".srt")]
        video_url = videos[0] if videos else video_url
        caption_url = captions[0] if captions else None
    video_url = video_url or _first_url({k: body.get(k) for k in _VIDEO_KEYS}, _VIDEO_KEYS)
    if not video_url:
        raise ProviderBadResponse("COMPLETED result carries no video URL")
    metrics = body.get("metrics")
    return RenderResult(
        video_url=video_url, caption_url=caption_url, metrics=metrics if isinstance(metrics, dict) else {}
    )
