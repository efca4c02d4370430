"""Inbox hygiene: a finished job's files leave inbox/, and nothing we write can trigger a job again.

A photo may be shared by several job files in one folder; it leaves inbox/ with the last of them,
so a sibling job that has not been submitted yet still finds it.

Only the objects a job used leave with it. A user may upload a job file (or its photo) again under
the same key while the job is still rendering; that upload is a job of its own, started by its own
event. So each input moves only while it still has the ETag the job saw at submit time (S3 checks
that on the copy and on the delete); a key that holds a newer upload by then is left in inbox/ and
reported as superseded. Jobs submitted before ETags were recorded move their inputs by key.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from avatar_pipeline.adapters.storage import ObjectReplaced, S3Storage
from avatar_pipeline.jobs.spec import SUPPORTED_MODELS
from avatar_pipeline.keys import UnsafeKey, archived_key, resolve_media_key
from avatar_pipeline.observability import logger

_SIBLING_SCAN_LIMIT = 500
# The media a sibling job file names, by (bucket, key, ETag): a version's content never changes, so an
# execution environment reads each sibling once, not once per job finishing beside it (200 job files
# dropped in one folder would otherwise cost 200 x 200 reads, and slow every Finalize as they pile up).
_SIBLING_CACHE_SIZE = 4096
_SIBLING_REFERENCES: dict[tuple[str, str, str], frozenset[str]] = {}
_MEDIA_FIELDS = ("photo", "audio")


@dataclass(frozen=True)
class ArchivedInputs:
    moved: dict[str, str]  # {inbox key: where the job's object went}
    superseded: list[str]  # inbox keys that hold a newer upload by now, left where they are


def archive_inputs(
    storage: S3Storage,
    bucket: str,
    job_key: str,
    media_keys: Iterable[str],
    succeeded: bool,
    job_etag: str | None = None,
    media_etags: Mapping[str, str] | None = None,
) -> ArchivedInputs:
    """Move the job file and its media to processed/ or failed/.

    With the ETags the job saw (`job_etag`, `media_etags` by key), only those objects move; without
    one (state from before ETags were recorded) the key moves, whatever it holds.
    """
    result = ArchivedInputs(moved={}, superseded=[])
    job_file_superseded = not _archive(storage, bucket, job_key, job_etag, succeeded, result)
    media = list(dict.fromkeys(media_keys))
    # A newer upload of the job file is a job of its own, which needs the same media.
    still_needed = (
        _referenced_by_siblings(storage, bucket, job_key, media, include_job_key=job_file_superseded)
        if media
        else set()
    )
    etags = media_etags or {}
    for key in media:
        _archive(storage, bucket, key, etags.get(key), succeeded, result, keep_source=key in still_needed)
    return result


def _archive(
    storage: S3Storage,
    bucket: str,
    key: str,
    etag: str | None,
    succeeded: bool,
    result: ArchivedInputs,
    keep_source: bool = False,
) -> bool:
    """Move (or, for media a sibling still needs, copy) one input; False if a newer upload holds its key."""
    target = archived_key(key, succeeded)
    try:
        if keep_source:
            storage.copy(bucket, key, target, if_match=etag)
        else:
            storage.move(bucket, key, target, if_match=etag)
    except ObjectReplaced:
        # Not an error: a newer job file is submitted by its own event; newer media is used by the
        # job that names it, or stays like any file no job names. If S3 refused only the delete
        # (an upload landed between copy and delete), the target holds this job's object.
        logger.info("input replaced by a newer upload; left in inbox", extra={"key": key, "etag": etag})
        result.superseded.append(key)
        return False
    result.moved[key] = target
    return True


def _referenced_by_siblings(
    storage: S3Storage, bucket: str, job_key: str, media: list[str], include_job_key: bool
) -> set[str]:
    folder = posixpath.dirname(job_key) + "/"
    wanted = set(media)
    found: set[str] = set()
    for sibling in storage.list_folder(bucket, folder, _SIBLING_SCAN_LIMIT):
        if (sibling.key == job_key and not include_job_key) or not sibling.key.endswith(".json"):
            continue
        found |= wanted & _media_named_by(storage, bucket, sibling.key, sibling.etag)
        if found == wanted:
            break
    return found


def _media_named_by(storage: S3Storage, bucket: str, job_key: str, etag: str) -> frozenset[str]:
    cache_key = (bucket, job_key, etag)
    if etag and cache_key in _SIBLING_REFERENCES:
        return _SIBLING_REFERENCES[cache_key]
    try:
        raw = storage.read(bucket, job_key, 64 * 1024, if_match=etag or None)
    except ObjectReplaced:
        # Uploaded again since the listing: what the newest version names counts (not cached).
        return _media_named_by(storage, bucket, job_key, "")
    except (LookupError, ValueError):
        return frozenset()  # gone, or too big to be a job file
    named = frozenset(media_named_in(job_key, raw))
    if etag:
        if len(_SIBLING_REFERENCES) >= _SIBLING_CACHE_SIZE:
            _SIBLING_REFERENCES.clear()
        _SIBLING_REFERENCES[cache_key] = named
    return named


def model_named_in(raw: bytes) -> str | None:
    """Best effort, for job files too broken to validate: the supported model they name, if any."""
    document = _loose_document(raw)
    model = document.get("model")
    return model if model in SUPPORTED_MODELS else None


def _loose_document(raw: bytes) -> dict[str, object]:
    try:
        document = json.loads(raw)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def media_named_in(job_key: str, raw: bytes) -> tuple[str, ...]:
    """Best effort, for job files too broken to validate: the media keys its photo/audio fields name."""
    document = _loose_document(raw)
    named: list[str] = []
    for field in _MEDIA_FIELDS:
        reference = document.get(field)
        if isinstance(reference, str):
            try:
                named.append(resolve_media_key(job_key, reference))
            except UnsafeKey:
                continue
    return tuple(named)
