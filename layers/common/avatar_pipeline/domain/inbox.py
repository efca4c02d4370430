"""Inbox hygiene: a finished job's files leave inbox/, and nothing we write can trigger a job again.

A photo may be shared by several job files, in its folder or in folders above it (a reference never
climbs with `..`, so only those can name it). It leaves inbox/ with the last job that uses it, so a
job that has not finished (or not even started) still finds it:

* jobs register the media they name when Submit first reads them (adapters/media_users.py), and
  release them as they end; a file still registered by another job stays (a copy goes to the
  ending job's processed/ or failed/ folder);
* when the last registered user lets go, job files that nobody has received yet (their events are
  still on the way) may name the file too: those in its folder and the folders above it are read
  (once per version per execution environment), and the file stays if one names it. This costs one
  look around per file when its last user ends, not one per job sharing it.

Only the objects a job used leave with it. A user may upload a job file (or its photo) again under
the same key while the job is still rendering; that upload is a job of its own, started by its own
event. So each input moves only while it still has the ETag the job saw at submit time (S3 checks
that on the copy and on the delete); a key that holds a newer upload by then is left in inbox/ and
reported as superseded. Jobs submitted before ETags were recorded move their inputs by key.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from avatar_pipeline.domain.ports import ObjectReplaced, Storage
from avatar_pipeline.jobs.loose import loose_json_object
from avatar_pipeline.jobs.spec import SUPPORTED_MODELS
from avatar_pipeline.keys import INBOX_PREFIX, UnsafeKey, archived_key, resolve_media_key
from avatar_pipeline.observability import logger

if TYPE_CHECKING:
    from avatar_pipeline.domain.context import JobRef
    from avatar_pipeline.domain.ports import ClosingPorts

# The media a job file names, by (bucket, key, ETag): a version's content never changes, so an
# execution environment reads each job file once, however often a look around passes it.
_JOB_FILE_CACHE_SIZE = 4096
_MEDIA_NAMED: dict[tuple[str, str, str], frozenset[str]] = {}
_MEDIA_FIELDS = ("photo", "audio")


@dataclass(frozen=True)
class ArchivedInputs:
    moved: dict[str, str] = field(default_factory=dict)  # {inbox key: where the job's object went}
    superseded: list[str] = field(default_factory=list)  # inbox keys holding a newer upload, left there
    # Media other jobs still use: left in inbox/, with a copy where this job's inputs went.
    kept: dict[str, str] = field(default_factory=dict)


def archive_inputs(ref: JobRef, succeeded: bool, ports: ClosingPorts, now: datetime) -> ArchivedInputs:
    """Move the job file and its media to processed/ or failed/, keeping media other jobs need.

    With the ETags the job saw (`ref.job_etag`, `ref.media_etags`), only those objects move; without
    one (state from before ETags were recorded) the key moves, whatever it holds.
    """
    archive = _Archive(ports.storage, ref.input_bucket, succeeded)
    job_file_superseded = not archive.put_away(ref.job_key, ref.job_etag)
    reader = JobFileReader(ports.storage, ref.input_bucket, ports.settings.max_job_file_bytes)
    for key in dict.fromkeys(ref.media_keys):
        others = ports.media_users.release(ref.job_id, ref.input_bucket, key, now) if ports.media_users else 0
        # A newer upload of this job's own file is a job of its own, which may need the same media.
        keep = others > 0 or _named_by_unreceived_job_files(reader, key, ref.job_key, job_file_superseded)
        archive.put_away(key, ref.media_etags.get(key), keep_source=keep)
    return archive.result


@dataclass
class _Archive:
    storage: Storage
    bucket: str
    succeeded: bool
    result: ArchivedInputs = field(default_factory=ArchivedInputs)

    def put_away(self, key: str, etag: str | None, keep_source: bool = False) -> bool:
        """Move (or, for media another job still needs, copy) one input; False if a newer upload holds its key."""
        target = archived_key(key, self.succeeded)
        try:
            if keep_source:
                self.storage.copy(self.bucket, key, target, if_match=etag)
            else:
                self.storage.move(self.bucket, key, target, if_match=etag)
        except ObjectReplaced:
            # Not an error: a newer job file is submitted by its own event; newer media is used by the
            # job that names it, or stays like any file no job names. If S3 refused only the delete
            # (an upload landed between copy and delete), the target holds this job's object.
            logger.info("input replaced by a newer upload; left in inbox", extra={"key": key, "etag": etag})
            self.result.superseded.append(key)
            return False
        (self.result.kept if keep_source else self.result.moved)[key] = target
        return True


@dataclass(frozen=True)
class JobFileReader:
    """Reads what job files in a bucket name, once per version (ETag) per execution environment."""

    storage: Storage
    bucket: str
    max_bytes: int  # job files are at most this big (MAX_JOB_FILE_BYTES); a bigger one names nothing

    def media_named_by(self, job_key: str, etag: str) -> frozenset[str]:
        cache_key = (self.bucket, job_key, etag)
        if etag and cache_key in _MEDIA_NAMED:
            return _MEDIA_NAMED[cache_key]
        try:
            raw = self.storage.read(self.bucket, job_key, self.max_bytes, if_match=etag or None)
        except ObjectReplaced:
            # Uploaded again since the listing: what the newest version names counts (not cached).
            return self.media_named_by(job_key, "")
        except (LookupError, ValueError):
            return frozenset()  # gone, or too big to be a job file
        named = frozenset(media_named_in(job_key, raw))
        if etag:
            if len(_MEDIA_NAMED) >= _JOB_FILE_CACHE_SIZE:
                _MEDIA_NAMED.clear()
            _MEDIA_NAMED[cache_key] = named
        return named


def _named_by_unreceived_job_files(reader: JobFileReader, media_key: str, job_key: str, include_job_key: bool) -> bool:
    """Does a job file still in inbox/ (in the media's folder or one above it) name `media_key`?"""
    folder = posixpath.dirname(media_key)
    while True:
        for listed in reader.storage.iter_folder(reader.bucket, folder + "/"):
            if not listed.key.endswith(".json") or (listed.key == job_key and not include_job_key):
                continue
            if media_key in reader.media_named_by(listed.key, listed.etag):
                return True
        if folder + "/" == INBOX_PREFIX or "/" not in folder:
            return False
        folder = posixpath.dirname(folder)


def model_named_in(raw: bytes) -> str | None:
    """Best effort, for job files too broken to validate: the supported model they name, if any."""
    model = loose_json_object(raw).get("model")
    return model if model in SUPPORTED_MODELS else None


def media_named_in(job_key: str, raw: bytes) -> tuple[str, ...]:
    """Best effort, for job files too broken to validate: the media keys its photo/audio fields name."""
    document = loose_json_object(raw)
    named: list[str] = []
    for media_field in _MEDIA_FIELDS:
        reference = document.get(media_field)
        if isinstance(reference, str):
            try:
                named.append(resolve_media_key(job_key, reference))
            except UnsafeKey:
                continue
    return tuple(named)
