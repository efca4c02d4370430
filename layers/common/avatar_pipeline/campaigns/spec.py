"""The campaign file users drop into inbox/ (DESIGN.md section 7): one file, many videos.

A campaign names its rows (a CSV or JSON Lines file beside it, or an inline list), a template (a job
object, as a job file, whose strings may hold `{{column}}` placeholders) and how the campaign runs.
Each row's job is the template with its placeholders filled and its job-key columns applied, then
validated by the very models of a job file (jobs/spec.py). What can be checked before any row is
read is checked here, so a broken campaign fails as a whole (InvalidCampaign) before anything runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from avatar_pipeline.errors import InvalidCampaign
from avatar_pipeline.jobs.spec import MAX_METADATA_BYTES, SUPPORTED_MODELS, job_keys

# Inline rows make a campaign file bigger than a job file; a bigger batch belongs in a rows file.
MAX_CAMPAIGN_FILE_BYTES = 1024 * 1024
ROWS_FILE_SUFFIXES = (".csv", ".jsonl")
# {{column}}, spaces inside the braces allowed: {{ first name }} names the column "first name".
PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
# Keys a campaign sets for every row itself, never through its template.
CAMPAIGN_OWNED_KEYS = frozenset({"output_key"})

RowsFileName = Annotated[str, Field(min_length=1, max_length=1024)]


class CampaignSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    # A file beside the campaign file (.csv with a header row, or .jsonl), or the rows themselves.
    rows: RowsFileName | list[dict[str, JsonValue]]
    template: dict[str, JsonValue]
    # The column naming each row; None: the row's number (1-based, header excluded).
    row_id: str | None = Field(default=None, min_length=1, max_length=200)
    # A template for each row's video key; None: campaigns/<dir>/<name>/<row id>.mp4 (or .webm).
    output_key: str | None = Field(default=None, min_length=1, max_length=900)
    # JSON numbers are not Decimals: this one field takes a number (or a numeric string) as money.
    max_spend_usd: Decimal | None = Field(default=None, ge=0, strict=False)
    dry_run: StrictBool = False
    notify_rows: StrictBool = False
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    approve_after: StrictInt | None = Field(default=None, ge=1)

    @field_validator("rows")
    @classmethod
    def _rows_file_or_list(cls, value: str | list[dict[str, JsonValue]]) -> str | list[dict[str, JsonValue]]:
        if isinstance(value, str) and not value.lower().endswith(ROWS_FILE_SUFFIXES):
            raise ValueError("a rows file must be a .csv or a .jsonl file beside the campaign file")
        if isinstance(value, list) and not value:
            raise ValueError("the campaign has no rows")
        return value

    @field_validator("metadata")
    @classmethod
    def _small_metadata(cls, value: dict[str, JsonValue]) -> dict[str, JsonValue]:
        # Copied into every row's metadata, which a job limits to MAX_METADATA_BYTES.
        if len(json.dumps(value, ensure_ascii=False).encode()) > MAX_METADATA_BYTES:
            raise ValueError(f"must serialize to at most {MAX_METADATA_BYTES} bytes")
        return value

    @model_validator(mode="after")
    def _rules(self) -> CampaignSpec:
        _check_template(self.template)
        if self.output_key is not None and not placeholders_in(self.output_key):
            raise ValueError(
                "output_key must hold a placeholder, e.g. 'spring/{{customer_id}}.mp4', so every row gets its own video"
            )
        for name in self.placeholders():
            if not name:
                raise ValueError("an empty placeholder {{}} names no column")
        return self

    @property
    def rows_file(self) -> str | None:
        return self.rows if isinstance(self.rows, str) else None

    @property
    def template_model(self) -> str | None:
        """The model the template names outright (None: each row's `model` column names it)."""
        model = self.template.get("model")
        return model if isinstance(model, str) and not placeholders_in(model) else None

    def placeholders(self) -> frozenset[str]:
        """Every column the template and output_key name."""
        found = set(_placeholders_in_value(self.template))
        if self.output_key is not None:
            found |= placeholders_in(self.output_key)
        return frozenset(found)

    def check_columns(self, columns: Sequence[str]) -> None:
        """The rows' columns hold every placeholder and the row id column; else the campaign is invalid."""
        missing = sorted(self.placeholders() - set(columns))
        if missing:
            raise InvalidCampaign(
                f"the template names column(s) the rows lack: {', '.join(missing)}; "
                f"the rows have: {', '.join(columns) or 'no columns'}"
            )
        if self.row_id is not None and self.row_id not in columns:
            raise InvalidCampaign(f"row_id names the column {self.row_id!r}, which the rows lack")


def placeholders_in(text: str) -> frozenset[str]:
    return frozenset(match.strip() for match in PLACEHOLDER.findall(text))


def _placeholders_in_value(value: JsonValue) -> Iterator[str]:
    if isinstance(value, str):
        yield from placeholders_in(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _placeholders_in_value(item)
    elif isinstance(value, list):
        for item in value:
            yield from _placeholders_in_value(item)


def _check_template(template: dict[str, JsonValue]) -> None:
    """What every row would fail on is the campaign's fault, found before any row: an unknown model or key."""
    model = template.get("model")
    if isinstance(model, str) and not placeholders_in(model) and model not in SUPPORTED_MODELS:
        raise ValueError(f"template.model: {model!r} is not supported; use one of {', '.join(SUPPORTED_MODELS)}")
    known = job_keys(model) if isinstance(model, str) and model in SUPPORTED_MODELS else _all_job_keys()
    for key in template:
        if key in CAMPAIGN_OWNED_KEYS:
            raise ValueError(f"template.{key}: give {key} at the campaign's top level, as a template for every row")
        if key not in known:
            raise ValueError(f"template.{key}: unknown key (not a parameter of this model)")


def _all_job_keys() -> frozenset[str]:
    return frozenset().union(*(job_keys(model) for model in SUPPORTED_MODELS))


def parse_campaign_file(raw: bytes) -> CampaignSpec:
    """Parse a campaign file's bytes, raising InvalidCampaign with every problem listed, readably."""
    raw = raw.removeprefix(b"\xef\xbb\xbf")
    if not raw.strip():
        raise InvalidCampaign("the campaign file is empty")
    if len(raw) > MAX_CAMPAIGN_FILE_BYTES:
        raise InvalidCampaign(
            f"the campaign file is {len(raw)} bytes; at most {MAX_CAMPAIGN_FILE_BYTES} (put many rows in a rows file)"
        )
    try:
        return CampaignSpec.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if errors and errors[0]["type"] == "json_invalid":
            raise InvalidCampaign(f"the campaign file is not valid JSON: {errors[0]['msg']}") from None
        if errors and errors[0]["type"] == "model_type" and not errors[0]["loc"]:
            raise InvalidCampaign("the campaign file must be a JSON object") from None
        problems = "; ".join(dict.fromkeys(_describe(e) for e in errors))
        raise InvalidCampaign(f"the campaign file is invalid: {problems}") from None


_UNION_TAGS = ("str", "constrained-str", "list[")


def _describe(error: ErrorDetails) -> str:
    # A union's members add their own type to the location (rows.str, rows.list[...]): not the user's words.
    location = ".".join(str(part) for part in error["loc"] if not str(part).startswith(_UNION_TAGS))
    if error["type"] == "extra_forbidden":
        return f"{location}: unknown key"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{location}: {message}" if location else message
