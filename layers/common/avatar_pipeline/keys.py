"""Object keys: the one place that decodes event keys, derives job ids and names every output.

Layout (DESIGN.md section 4):
  inbox/a/b.json            the trigger, with media beside it
  videos/a/b.mp4|.webm      the video (or the job's output_key), captions .srt and manifest .json beside it
  processed/a/...           inputs of a finished job;  failed/a/... inputs of a failed one,
  failed/a/b.error.json     plus a readable error report

Campaigns (DESIGN.md section 7):
  inbox/a/b.campaign.json   the trigger (never a job file), rows and media beside it
  inbox/a/b.approve         a person's approval of the campaign's sample, beside it (.reject: its rejection)
  campaigns/a/b/            its outputs: report.json/.csv/.html and, by default, <row id>.mp4|.webm
"""

from __future__ import annotations

import hashlib
import posixpath
import unicodedata
from urllib.parse import unquote_plus

INBOX_PREFIX = "inbox/"
VIDEOS_PREFIX = "videos/"
PROCESSED_PREFIX = "processed/"
FAILED_PREFIX = "failed/"
CAMPAIGNS_PREFIX = "campaigns/"
CAMPAIGN_SUFFIX = ".campaign.json"
APPROVAL_SUFFIX = ".approve"
REJECTION_SUFFIX = ".reject"
REPORT_FORMATS = ("json", "csv", "html")
MAX_KEY_BYTES = 1024
# A row id names a file in the campaign's output folder, so it is one path segment of modest length.
MAX_ROW_ID_CHARS = 200


class UnsafeKey(ValueError):
    """A key or relative reference that could escape its folder or is not a valid S3 key."""


def decode_event_key(raw_key: str) -> str:
    """S3 event notifications URL-encode keys (space -> '+', '+' -> '%2B'); this undoes it, once."""
    return unquote_plus(raw_key)


def derive_job_id(bucket: str, key: str, version_or_etag: str, sequencer: str | None) -> str:
    """Same upload (and so every duplicate delivery of its event) -> same id; a new upload -> a new id.

    The sequencer differs for every PUT of a key, so uploading the same file again after a failure
    (its inputs were moved out of inbox/) is a fresh job, while redelivered events are not.
    The id doubles as the Step Functions execution name (<= 80 chars, [A-Za-z0-9-_]).
    """
    digest = hashlib.sha256("\n".join([bucket, key, version_or_etag, sequencer or ""]).encode()).hexdigest()
    return f"job-{digest[:40]}"


def is_job_file_key(key: str) -> bool:
    """A .json under inbox/ that is not a campaign file (a campaign is many jobs, split elsewhere)."""
    return (
        key.startswith(INBOX_PREFIX)
        and key.endswith(".json")
        and len(key) > len(INBOX_PREFIX) + 5
        and not key.endswith(CAMPAIGN_SUFFIX)
    )


def is_campaign_file_key(key: str) -> bool:
    """inbox/**/<name>.campaign.json, with a non-empty name."""
    name = posixpath.basename(key)
    return key.startswith(INBOX_PREFIX) and name.endswith(CAMPAIGN_SUFFIX) and len(name) > len(CAMPAIGN_SUFFIX)


def relative_to_inbox(key: str) -> str:
    if not key.startswith(INBOX_PREFIX):
        raise UnsafeKey(f"{key!r} is not under {INBOX_PREFIX}")
    return key[len(INBOX_PREFIX) :]


def _check_key(key: str) -> str:
    if not key or len(key.encode()) > MAX_KEY_BYTES:
        raise UnsafeKey("key is empty or longer than 1024 bytes")
    if any(unicodedata.category(ch) == "Cc" for ch in key):
        raise UnsafeKey("key contains control characters")
    if "\\" in key:
        raise UnsafeKey("key contains a backslash")
    return key


def resolve_media_key(job_key: str, reference: str) -> str:
    """Resolve a job file's `photo`/`audio` reference (relative to the job's folder) to a key in inbox/."""
    _check_key(reference)
    if reference.startswith("/"):
        raise UnsafeKey(f"{reference!r} must be relative to the job file's folder")
    if ".." in reference.split("/"):
        raise UnsafeKey(f"{reference!r} must not contain '..'")
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(job_key), reference))
    if not resolved.startswith(INBOX_PREFIX) or resolved == job_key:
        raise UnsafeKey(f"{reference!r} does not name a file beside the job in {INBOX_PREFIX}")
    return resolved


def validate_output_key(output_key: str) -> str:
    """A user-chosen output key: relative, no '..', no empty segments."""
    _check_key(output_key)
    segments = output_key.split("/")
    if output_key.startswith("/") or ".." in segments or "." in segments or "" in segments:
        raise UnsafeKey(f"output_key {output_key!r} must be a relative path without '.', '..' or '//'")
    return output_key


def default_video_key(job_key: str, extension: str) -> str:
    stem = relative_to_inbox(job_key)[: -len(".json")]
    return f"{VIDEOS_PREFIX}{stem}.{extension}"


def sibling_key(video_key: str, extension: str) -> str:
    """The captions (.srt) or manifest (.json) beside a video."""
    stem, _ = posixpath.splitext(video_key)
    return f"{stem}.{extension}"


def output_stem(video_key: str) -> str:
    """The path a job's video, captions and manifest share (its output claim): the key without extension."""
    stem, _ = posixpath.splitext(video_key)
    return stem


def archived_key(input_key: str, succeeded: bool) -> str:
    prefix = PROCESSED_PREFIX if succeeded else FAILED_PREFIX
    return prefix + relative_to_inbox(input_key)


def error_report_key(job_key: str) -> str:
    stem = relative_to_inbox(job_key)[: -len(".json")]
    return f"{FAILED_PREFIX}{stem}.error.json"


# --- campaigns ---------------------------------------------------------------------------------------


def _campaign_stem(campaign_key: str) -> str:
    """inbox/a/b.campaign.json -> a/b"""
    if not is_campaign_file_key(campaign_key):
        raise UnsafeKey(f"{campaign_key!r} is not a campaign file (inbox/**/<name>{CAMPAIGN_SUFFIX})")
    return relative_to_inbox(campaign_key)[: -len(CAMPAIGN_SUFFIX)]


def campaign_name(campaign_key: str) -> str:
    return posixpath.basename(_campaign_stem(campaign_key))


def campaign_output_folder(campaign_key: str) -> str:
    """campaigns/<dir>/<name>/: the campaign's report and (by default) its videos, side by side, so the
    report's players find the videos by relative path after an `aws s3 sync` of the folder."""
    return f"{CAMPAIGNS_PREFIX}{_campaign_stem(campaign_key)}/"


def campaign_report_key(campaign_key: str, fmt: str) -> str:
    if fmt not in REPORT_FORMATS:
        raise ValueError(f"report format {fmt!r} is not one of {', '.join(REPORT_FORMATS)}")
    return f"{campaign_output_folder(campaign_key)}report.{fmt}"


def campaign_approval_key(campaign_key: str) -> str:
    """inbox/a/b.campaign.json -> inbox/a/b.approve: the file a person drops to approve the sample."""
    return f"{INBOX_PREFIX}{_campaign_stem(campaign_key)}{APPROVAL_SUFFIX}"


def campaign_rejection_key(campaign_key: str) -> str:
    """inbox/a/b.campaign.json -> inbox/a/b.reject: the file that rejects the sample (the held rows are skipped)."""
    return f"{INBOX_PREFIX}{_campaign_stem(campaign_key)}{REJECTION_SUFFIX}"


def sample_decision_of(key: str) -> tuple[str, bool] | None:
    """inbox/a/b.approve -> ("inbox/a/b.campaign.json", True); .reject -> False; anything else None."""
    for suffix, approved in ((APPROVAL_SUFFIX, True), (REJECTION_SUFFIX, False)):
        if key.startswith(INBOX_PREFIX) and key.endswith(suffix) and len(posixpath.basename(key)) > len(suffix):
            return key[: -len(suffix)] + CAMPAIGN_SUFFIX, approved
    return None


def validate_row_id(row_id: str) -> str:
    """A row id becomes a file name in the campaign's folder: one safe path segment."""
    _check_key(row_id)
    if len(row_id) > MAX_ROW_ID_CHARS or "/" in row_id or row_id in (".", "..") or row_id != row_id.strip():
        raise UnsafeKey(
            f"row id {row_id!r} must be at most {MAX_ROW_ID_CHARS} characters, without '/', "
            "surrounding spaces, or the names '.' and '..'"
        )
    return row_id


def default_row_video_key(campaign_key: str, row_id: str, extension: str) -> str:
    return f"{campaign_output_folder(campaign_key)}{validate_row_id(row_id)}.{extension}"


def row_input_key(campaign_key: str, row_id: str) -> str:
    """How a row is named where a job names its job file (records, reports, summaries): <key>#<row id>."""
    return f"{campaign_key}#{row_id}"


def row_error_report_key(campaign_key: str, row_id: str) -> str:
    """A failed row's error report in the input bucket: failed/<dir>/<name>/<row id>.error.json (the
    campaign file itself moves to failed/ or processed/ when the campaign completes)."""
    return f"{FAILED_PREFIX}{_campaign_stem(campaign_key)}/{validate_row_id(row_id)}.error.json"


def derive_row_job_id(bucket: str, campaign_key: str, row_id: str) -> str:
    """The same row of the same campaign file is always the same job, whatever upload of the file
    carried it: a redelivered or retried split finds the job it created, and uploading the campaign
    again (a resume) re-runs only the rows whose job did not succeed. A valid execution name too."""
    digest = hashlib.sha256("\n".join(["campaign-row", bucket, campaign_key, row_id]).encode()).hexdigest()
    return f"row-{digest[:40]}"


def without_query(url: str) -> str:
    """A URL without its query string: a presigned URL's signature never goes into a record."""
    return url.split("?", 1)[0]
