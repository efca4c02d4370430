"""A campaign's rows, read as a stream and turned into jobs one at a time (DESIGN.md section 7).

The rows come from a CSV file (UTF-8 with a header row; RFC 4180 quoting, a BOM and CRLF line ends
accepted), a JSON Lines file (one object per line; the first object's keys are the columns) or the
campaign file's inline list. Nothing holds more than one row at a time, except the row ids already
seen (16 bytes each), which is what finds a repeated id: 10,000 rows take about a megabyte at most.

For every row, `campaign_rows` yields either a RowJob (the job, validated by the models of a job file,
with its media resolved and checked) or a RowFailure (that row alone fails, with its code). Problems
of the campaign as a whole (a column the template names is missing, a rows file that is not UTF-8 or
not CSV) raise InvalidCampaign: from the call when the header shows them, during iteration otherwise.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import JsonValue

from avatar_pipeline.campaigns.spec import PLACEHOLDER, CampaignSpec
from avatar_pipeline.errors import ErrorCode, InvalidCampaign, InvalidJob, PipelineError, TransientError
from avatar_pipeline.jobs.spec import SUPPORTED_MODELS, job_key_kind, job_keys, parse_job_object
from avatar_pipeline.keys import UnsafeKey, default_row_video_key, derive_row_job_id, resolve_media_key, validate_row_id

if TYPE_CHECKING:
    from avatar_pipeline.jobs.spec import AvatarIVJob, AvatarVJob

# Raises MissingMedia, UnsupportedMedia or MediaTooLarge for a media key (True: a photo) that cannot be
# used; the caller's check may remember each key's verdict, so rows sharing a photo cost one look.
MediaCheck = Callable[[str, bool], None]

_INTEGER = re.compile(r"[+-]?\d+")


@dataclass(frozen=True)
class RowJob:
    number: int  # 1-based, the header not counted
    row_id: str
    job_id: str
    spec: AvatarIVJob | AvatarVJob
    media_keys: dict[str, str]  # provider parameter (image_url, audio_url) -> key in the input bucket
    video_key: str


@dataclass(frozen=True)
class RowFailure:
    number: int
    row_id: str
    code: ErrorCode
    message: str
    job_id: str | None = None  # None when the row id itself is unusable


@dataclass(frozen=True)
class RawRow:
    number: int
    values: dict[str, JsonValue]
    is_text: bool  # a CSV row: every value is text, turned into the type of the key it sets
    problem: str | None = None  # why the line is not a row at all (wrong field count, not an object)


@dataclass(frozen=True)
class RowSource:
    columns: list[str]
    rows: Iterator[RawRow]


# --- reading ------------------------------------------------------------------------------------------


def csv_source(lines: Iterable[str], name: str) -> RowSource:
    """`lines`: the file as text, opened with newline="" (the csv module handles CRLF and quoted newlines)."""
    reader = csv.reader(_without_bom(lines), strict=True)
    try:
        header = next(reader, None)
    except (csv.Error, UnicodeDecodeError) as error:
        raise InvalidCampaign(f"{name}: the header row cannot be read: {error} (the file must be UTF-8 CSV)") from None
    if not header or not any(cell.strip() for cell in header):
        raise InvalidCampaign(f"{name} is empty: it needs a header row naming its columns")
    columns = [cell.strip() for cell in header]
    if "" in columns or len(set(columns)) != len(columns):
        raise InvalidCampaign(f"{name}: every column needs a name of its own; the header is {header}")
    return RowSource(columns, _csv_rows(reader, columns, name))


def _csv_rows(reader: Iterator[list[str]], columns: list[str], name: str) -> Iterator[RawRow]:
    number = 0
    try:
        for cells in reader:
            if not cells or cells == [""]:
                continue  # a blank line, often the last one
            number += 1
            values: dict[str, JsonValue] = dict(zip(columns, cells, strict=False))
            problem = None
            if len(cells) != len(columns):
                problem = f"has {len(cells)} fields; the header has {len(columns)} (quote a field holding a comma)"
            yield RawRow(number, values, is_text=True, problem=problem)
    except (csv.Error, UnicodeDecodeError) as error:
        raise InvalidCampaign(f"{name}: after row {number}: {error} (the file must be UTF-8 CSV)") from None


def jsonl_source(lines: Iterable[str], name: str) -> RowSource:
    """One JSON object per line; blank lines are skipped; the first object's keys are the columns."""
    numbered = _jsonl_rows(_without_bom(lines), name)
    first = next(numbered, None)
    if first is None:
        raise InvalidCampaign(f"{name} has no rows")
    if first.problem is not None:
        raise InvalidCampaign(f"{name}: the first line must be a JSON object (its keys are the columns)")
    return RowSource(list(first.values), _chain(first, numbered))


def _jsonl_rows(lines: Iterable[str], name: str) -> Iterator[RawRow]:
    number = 0
    try:
        for line in lines:
            if not line.strip():
                continue
            number += 1
            try:
                document = json.loads(line)
            except ValueError:
                document = None
            if isinstance(document, dict):
                yield RawRow(number, document, is_text=False)
            else:
                yield RawRow(number, {}, is_text=False, problem="is not a JSON object on one line")
    except UnicodeDecodeError as error:
        raise InvalidCampaign(f"{name}: after row {number}: {error} (the file must be UTF-8)") from None


def inline_source(rows: list[dict[str, JsonValue]]) -> RowSource:
    columns = list(rows[0]) if rows else []
    return RowSource(columns, (RawRow(n, values, is_text=False) for n, values in enumerate(rows, start=1)))


def _chain(first: RawRow, rest: Iterator[RawRow]) -> Iterator[RawRow]:
    yield first
    yield from rest


def _without_bom(lines: Iterable[str]) -> Iterator[str]:
    """A BOM that decoding left in place (utf-8, not utf-8-sig) is not part of the first column's name."""
    iterator = iter(lines)
    first = next(iterator, None)
    if first is None:
        return
    yield first.removeprefix("\ufeff")
    yield from iterator


# --- rows into jobs -------------------------------------------------------------------------------------


def campaign_rows(
    spec: CampaignSpec,
    campaign_key: str,
    bucket: str,
    source: RowSource,
    check_media: MediaCheck | None,
    after_row: int = 0,
) -> Iterator[RowJob | RowFailure]:
    """Raises InvalidCampaign now if the columns lack a placeholder's column or the row id column.

    `after_row`: rows up to that number are only read for their ids (a split resumed from its cursor
    yields the rest; a repeated id is still found against every earlier row)."""
    spec.check_columns(source.columns)
    return _rows(spec, campaign_key, bucket, source, check_media, after_row)


def _rows(
    spec: CampaignSpec,
    campaign_key: str,
    bucket: str,
    source: RowSource,
    check_media: MediaCheck | None,
    after_row: int,
) -> Iterator[RowJob | RowFailure]:
    seen: dict[bytes, int] = {}
    for raw in source.rows:
        row_id = _row_id(spec, raw)
        try:
            if not row_id:
                raise UnsafeKey(f"its row id (column {spec.row_id!r}) is empty")
            validate_row_id(row_id)
        except UnsafeKey as error:
            if raw.number > after_row:
                yield RowFailure(raw.number, row_id, ErrorCode.INVALID_JOB, f"row {raw.number}: {error}")
            continue
        digest = hashlib.blake2b(row_id.encode(), digest_size=16).digest()
        if digest in seen:
            message = f"row {raw.number}: row id {row_id!r} repeats row {seen[digest]}'s; each row needs its own id"
            # No job id: the id belongs to the earlier row, whose job this row must never touch.
            if raw.number > after_row:
                yield RowFailure(raw.number, row_id, ErrorCode.INVALID_JOB, message)
            continue
        seen[digest] = raw.number
        if raw.number > after_row:
            job_id = derive_row_job_id(bucket, campaign_key, row_id)
            yield _row(spec, campaign_key, raw, row_id, job_id, check_media)


def _row_id(spec: CampaignSpec, raw: RawRow) -> str:
    if spec.row_id is None:
        return str(raw.number)
    value = raw.values.get(spec.row_id)
    return value if isinstance(value, str) else "" if value is None else json.dumps(value)


def _row(
    spec: CampaignSpec, campaign_key: str, raw: RawRow, row_id: str, job_id: str, check_media: MediaCheck | None
) -> RowJob | RowFailure:
    subject = f"row {raw.number} (id {row_id})"
    try:
        if raw.problem is not None:
            raise InvalidJob(f"{subject} {raw.problem}")
        job = parse_job_object(row_document(spec, raw), subject=f"{subject}: the job")
        media_keys = _media(campaign_key, job, check_media)
        video_key = job.output_key or default_row_video_key(campaign_key, row_id, job.video_extension)
    except TransientError:
        raise
    except PipelineError as error:
        message = error.message if error.message.startswith(subject) else f"{subject}: {error.message}"
        return RowFailure(raw.number, row_id, error.code, message, job_id)
    return RowJob(raw.number, row_id, job_id, job, media_keys, video_key)


def _media(campaign_key: str, job: AvatarIVJob | AvatarVJob, check_media: MediaCheck | None) -> dict[str, str]:
    resolved: dict[str, str] = {}
    for parameter, reference in job.media_references().items():
        is_photo = parameter == "image_url"
        try:
            resolved[parameter] = resolve_media_key(campaign_key, reference)
        except UnsafeKey as error:
            raise InvalidJob(f"{'photo' if is_photo else 'audio'}: {error}") from None
        if check_media is not None:
            check_media(resolved[parameter], is_photo)
    return resolved


# --- the job document of one row ----------------------------------------------------------------------------


def row_document(spec: CampaignSpec, raw: RawRow) -> dict[str, JsonValue]:
    """The template with the row's placeholders filled, then its job-key columns applied (a column
    wins over the template; an empty CSV cell leaves the template's value), then the campaign's
    output_key and metadata. InvalidJob when a value does not fit its key."""
    document: dict[str, JsonValue] = {}
    model = _row_model(spec, raw)
    for key, value in spec.template.items():
        filled = _fill(value, raw, _kind(model, key))
        if filled is not _UNSET:
            document[key] = filled
    for column in _job_key_columns(model, raw.values):
        value = raw.values[column]
        if raw.is_text and value == "":
            continue
        document[column] = _converted(value, _kind(model, column), column) if raw.is_text else value
    if spec.output_key is not None and "output_key" not in document:
        document["output_key"] = _fill(spec.output_key, raw, "text")
    if spec.metadata:
        own = document.get("metadata")
        document["metadata"] = {**(own if isinstance(own, dict) else {}), **spec.metadata}
    return document


_UNSET: JsonValue = "\x00unset"  # a marker no JSON document holds (control characters are refused in text)


def _row_model(spec: CampaignSpec, raw: RawRow) -> str | None:
    column = raw.values.get("model")
    if isinstance(column, str) and column in SUPPORTED_MODELS:
        return column
    return spec.template_model


def _kind(model: str | None, key: str) -> str:
    return job_key_kind(model, key) if model is not None else "text"


def _job_key_columns(model: str | None, values: dict[str, JsonValue]) -> list[str]:
    keys = job_keys(model) if model is not None else frozenset().union(*(job_keys(m) for m in SUPPORTED_MODELS))
    return [column for column in values if column in keys]


def _fill(value: JsonValue, raw: RawRow, kind: str) -> JsonValue:
    """A string that is one placeholder takes the column's value (typed); any other string gets the
    values as text; objects and lists are filled throughout."""
    if isinstance(value, dict):
        return {key: _fill(item, raw, "text") for key, item in value.items()}
    if isinstance(value, list):
        return [_fill(item, raw, "text") for item in value]
    if not isinstance(value, str):
        return value
    whole = PLACEHOLDER.fullmatch(value)
    if whole is not None:
        column = whole.group(1).strip()
        cell = _cell(raw, column)
        if raw.is_text and kind != "text":
            return _UNSET if cell == "" else _converted(cell, kind, column)
        return cell
    return PLACEHOLDER.sub(lambda match: _as_text(_cell(raw, match.group(1).strip())), value)


def _cell(raw: RawRow, column: str) -> JsonValue:
    if column not in raw.values:
        raise InvalidJob(f"the row has no column {column!r}, which the template names")
    return raw.values[column]


def _as_text(value: JsonValue) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def _converted(text: JsonValue, kind: str, column: str) -> JsonValue:
    """CSV text into the type of the key it sets: "true"/"false" for booleans, digits for integers."""
    if not isinstance(text, str) or kind == "text":
        return text
    cleaned = text.strip()
    if kind == "bool":
        if cleaned.lower() not in ("true", "false"):
            raise InvalidJob(f"{column}: {text!r} is not true or false")
        return cleaned.lower() == "true"
    if kind == "int":
        if not _INTEGER.fullmatch(cleaned):
            raise InvalidJob(f"{column}: {text!r} is not a whole number")
        return int(cleaned)
    try:
        document = json.loads(cleaned)
    except ValueError:
        document = None
    if not isinstance(document, dict):
        raise InvalidJob(f"{column}: {text!r} is not a JSON object")
    return document
