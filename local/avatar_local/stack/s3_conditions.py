"""A gap in moto 5.2.5's S3, closed for the offline stack and the tests: CopyObject's CopySourceIfMatch.

moto honours If-Match on GetObject and DeleteObject, but copies whatever the source key holds
whatever x-amz-copy-source-if-match says. S3 answers 412 PreconditionFailed and copies nothing when
the source's ETag differs (quoted or not); this makes moto do the same while the context is active.
The archive step relies on it (domain/inbox.py: only the object a job read leaves inbox/).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock
from urllib.parse import unquote, urlparse

from moto.s3.exceptions import PreconditionFailed
from moto.s3.responses import S3Response


@contextmanager
def copy_source_if_match_enforced() -> Iterator[None]:
    original = S3Response.copy_object

    def copy_object(self: Any) -> Any:
        expected = self.headers.get("x-amz-copy-source-if-match")
        if expected is not None:
            source = self.headers.get("x-amz-copy-source")
            if isinstance(source, bytes):
                source = source.decode("utf-8")
            bucket, key = unquote(urlparse(source).path).lstrip("/").split("/", 1)
            current = self.backend.get_object(bucket, key)
            # A missing source is left to moto's own 404 (S3 answers NoSuchKey, not 412).
            if current is not None and current.etag.strip('"') != expected.strip('"'):
                raise PreconditionFailed("x-amz-copy-source-If-Match")
        return original(self)

    with mock.patch.object(S3Response, "copy_object", copy_object):
        yield
