"""Inbox hygiene: a finished job's files leave inbox/, and nothing we write can trigger a job again.

A photo may be shared by several job files in one folder; it leaves inbox/ with the last of them,
so a sibling job that has not been submitted yet still finds it.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable

from avatar_pipeline.adapters.storage import S3Storage
from avatar_pipeline.jobs.spec import SUPPORTED_MODELS
from avatar_pipeline.keys import UnsafeKey, archived_key, resolve_media_key

_SIBLING_SCAN_LIMIT = 500
_MEDIA_FIELDS = ("photo", "audio")


def archive_inputs(
    storage: S3Storage, bucket: str, job_key: str, media_keys: Iterable[str], succeeded: bool
) -> dict[str, str]:
    """Move the job file and its media to processed/ or failed/; returns {old key: new key}."""
    moved: dict[str, str] = {}
    target = archived_key(job_key, succeeded)
    storage.move(bucket, job_key, target)
    moved[job_key] = target
    media = list(dict.fromkeys(media_keys))
    still_needed = _referenced_by_siblings(storage, bucket, job_key, media) if media else set()
    for key in media:
        target = archived_key(key, succeeded)
        if key in still_needed:
            storage.copy(bucket, key, target)
        else:
            storage.move(bucket, key, target)
        moved[key] = target
    return moved


def _referenced_by_siblings(storage: S3Storage, bucket: str, job_key: str, media: list[str]) -> set[str]:
    folder = posixpath.dirname(job_key) + "/"
    wanted = set(media)
    found: set[str] = set()
    for key in storage.list_keys(bucket, folder, _SIBLING_SCAN_LIMIT):
        if key == job_key or not key.endswith(".json"):
            continue
        found |= wanted & _media_named_by(storage, bucket, key)
        if found == wanted:
            break
    return found


def _media_named_by(storage: S3Storage, bucket: str, job_key: str) -> set[str]:
    try:
        raw = storage.read(bucket, job_key, 64 * 1024)
    except (LookupError, ValueError):
        return set()
    return set(media_named_in(job_key, raw))


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
