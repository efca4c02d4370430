"""Streaming the provider's result into S3: bounded memory, verified content, nothing half-written.

Memory is bounded by the part size whatever the file size; sha256 and size are computed on the
fly; the first bytes are checked (a video by its container signature, captions as SRT text);
URLs must be https (plain http only to a loopback host, by explicit setting), on an allowed host,
with a bounded number of redirects. Any failure aborts the multipart upload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import urljoin, urlsplit

import httpx

from avatar_pipeline.errors import OutputInvalid, OutputTransferError
from avatar_pipeline.media import VIDEO_TYPES, looks_like_srt, sniff_video
from avatar_pipeline.settings import is_loopback_host

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIB = 1024 * 1024
Expected = Literal["video", "captions"]
_REDIRECTS = {301, 302, 303, 307, 308}


@dataclass(frozen=True)
class DownloadPolicy:
    max_bytes: int
    allow_loopback_http: bool = False
    host_allowlist: tuple[str, ...] = ()
    max_redirects: int = 3
    max_caption_bytes: int = 5 * MIB

    def check_url(self, url: str) -> None:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if not host:
            raise OutputInvalid("the result URL has no host")
        if parts.scheme == "http" and not (self.allow_loopback_http and is_loopback_host(host)):
            raise OutputInvalid(f"refusing plain http result URL on host {host}")
        if parts.scheme not in ("https", "http"):
            raise OutputInvalid(f"refusing result URL with scheme {parts.scheme!r}")
        if self.host_allowlist and not any(host == h or host.endswith("." + h) for h in self.host_allowlist):
            raise OutputInvalid(f"result host {host} is not in OUTPUT_HOST_ALLOWLIST")


@dataclass(frozen=True)
class CopiedObject:
    key: str
    size: int
    sha256: str
    content_type: str


class _PartWriter:
    """Buffers one part at a time; starts a multipart upload only once a full part exists."""

    def __init__(
        self, s3: S3Client, bucket: str, key: str, part_size: int, content_type: str, metadata: dict[str, str]
    ) -> None:
        self._s3, self._bucket, self._key, self._part_size = s3, bucket, key, part_size
        self._content_type, self._metadata = content_type, metadata
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[CompletedPartTypeDef] = []

    def write(self, chunk: bytes) -> None:
        self._buffer.extend(chunk)
        while len(self._buffer) >= self._part_size:
            self._upload_part(bytes(self._buffer[: self._part_size]))
            del self._buffer[: self._part_size]

    def _upload_part(self, data: bytes) -> None:
        if self._upload_id is None:
            created = self._s3.create_multipart_upload(
                Bucket=self._bucket, Key=self._key, ContentType=self._content_type, Metadata=self._metadata
            )
            self._upload_id = created["UploadId"]
        number = len(self._parts) + 1
        part = self._s3.upload_part(
            Bucket=self._bucket, Key=self._key, UploadId=self._upload_id, PartNumber=number, Body=data
        )
        self._parts.append({"PartNumber": number, "ETag": part["ETag"]})

    def finish(self) -> None:
        if self._upload_id is None:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=self._key,
                Body=bytes(self._buffer),
                ContentType=self._content_type,
                Metadata=self._metadata,
            )
            return
        if self._buffer:
            self._upload_part(bytes(self._buffer))
            self._buffer.clear()
        self._s3.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def abort(self) -> None:
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
            self._upload_id = None


class StreamingCopier:
    def __init__(
        self,
        s3: S3Client,
        http: httpx.Client,
        policy: DownloadPolicy,
        part_size: int = 8 * MIB,
        chunk_size: int = 1 * MIB,
    ) -> None:
        self._s3, self._http, self._policy = s3, http, policy
        self._part_size, self._chunk_size = part_size, chunk_size

    def copy(
        self, url: str, bucket: str, key: str, expect: Expected, metadata: dict[str, str] | None = None
    ) -> CopiedObject:
        limit = self._policy.max_bytes if expect == "video" else self._policy.max_caption_bytes
        with self._open(url) as response:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit and not _is_compressed(response):
                raise OutputInvalid(f"the result is {declared} bytes, over the {limit}-byte limit")
            return self._stream(response, bucket, key, expect, limit, metadata or {})

    @contextmanager
    def _open(self, url: str) -> Iterator[httpx.Response]:
        for _ in range(self._policy.max_redirects + 1):
            self._policy.check_url(url)
            try:
                with self._http.stream("GET", url, follow_redirects=False) as response:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        url = urljoin(url, response.headers["location"])
                        continue
                    _check_status(response)
                    yield response
                    return
            except httpx.TransportError as exc:
                raise OutputTransferError(f"downloading the result failed: {type(exc).__name__}") from None
        raise OutputInvalid(f"the result URL redirected more than {self._policy.max_redirects} times")

    def _stream(
        self,
        response: httpx.Response,
        bucket: str,
        key: str,
        expect: Expected,
        limit: int,
        metadata: dict[str, str],
    ) -> CopiedObject:
        digest = hashlib.sha256()
        size = 0
        head = bytearray()
        content_type: str | None = None
        writer: _PartWriter | None = None
        try:
            for chunk in response.iter_bytes(self._chunk_size):
                size += len(chunk)
                if size > limit:
                    raise OutputInvalid(f"the result is over the {limit}-byte limit")
                digest.update(chunk)
                if writer is None:
                    head.extend(chunk)
                    if len(head) < 64:
                        continue
                    content_type = _verify(bytes(head), expect)
                    writer = self._writer(bucket, key, content_type, metadata)
                    writer.write(bytes(head))
                    head.clear()
                else:
                    writer.write(chunk)
            if writer is None:
                content_type = _verify(bytes(head), expect)
                writer = self._writer(bucket, key, content_type, metadata)
                writer.write(bytes(head))
            _check_length(response, size)
            writer.finish()
        except httpx.TransportError as exc:
            _abort(writer)
            raise OutputTransferError(f"the result download broke off: {type(exc).__name__}") from None
        except BaseException:
            _abort(writer)
            raise
        assert content_type is not None
        return CopiedObject(key=key, size=size, sha256=digest.hexdigest(), content_type=content_type)

    def _writer(self, bucket: str, key: str, content_type: str, metadata: dict[str, str]) -> _PartWriter:
        return _PartWriter(self._s3, bucket, key, self._part_size, content_type, metadata)


def _abort(writer: _PartWriter | None) -> None:
    if writer is not None:
        writer.abort()


def _check_status(response: httpx.Response) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    if code >= 500 or code == httpx.codes.TOO_MANY_REQUESTS:
        raise OutputTransferError(f"the result host answered HTTP {code}")
    raise OutputInvalid(f"the result URL answered HTTP {code}")


def _is_compressed(response: httpx.Response) -> bool:
    return response.headers.get("content-encoding", "identity").lower() not in ("", "identity")


def _check_length(response: httpx.Response, size: int) -> None:
    """Content-Length counts wire bytes; for a compressed body h11 itself enforces it while reading."""
    if _is_compressed(response):
        return
    declared = response.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) != size:
        raise OutputTransferError(f"the result download was truncated ({size} of {declared} bytes)")


def _verify(head: bytes, expect: Expected) -> str:
    if expect == "captions":
        if not looks_like_srt(head):
            raise OutputInvalid("the caption file is not SRT text")
        return "application/x-subrip"
    container = sniff_video(head)
    if container is None:
        raise OutputInvalid("the result is not a video (no MP4 or WebM signature)")
    return VIDEO_TYPES[container]
