"""Streaming the provider's result into S3: bounded memory, verified content, nothing half-written.

Memory is bounded whatever the file size: the download fills one part while at most
`upload_workers` earlier parts upload, so the copy holds part_size x (upload_workers + 1) bytes of
video at most (40 MiB with the defaults). sha256 and size are computed on the fly; the first bytes
are checked (a video by its container signature, captions as SRT text); URLs must be https (plain
http only to a loopback host, by explicit setting), on an allowed host, with a bounded number of
redirects. Any failure, in the download or in any part's upload, aborts the multipart upload; it
is completed only when every part from 1 to the last has its ETag.

A copy may be given a deadline (a `time.monotonic()` instant: Finalize's own timeout less a reserve).
When it passes before the last part is uploaded, the copy stops, waits for the parts already sending,
aborts the multipart upload (no object, no parts kept) and raises OutputTransferError, which the
state machine retries; without it a timed-out Lambda would leave its parts to the bucket's lifecycle
rule. The deadline is checked at every downloaded chunk and bounds every wait for an upload worker; a
read that stalls is bounded by the download's read timeout instead.

Why 8 MiB parts and 4 upload workers (bench/bench_copy.py, 512 MiB copies on a 2-core machine,
against a sink shaped like S3 from AWS's guidance: about 85 MB/s per request, plus 20 ms per
request; two runs each, `python -m bench.bench_copy --sizes 512MB --backends sink --sink-mb-per-s 85
--sink-latency-ms 20 --workers N`): one part at a time, downloading and uploading in turn (the previous
design), ran at 46-48 MiB/s; overlapping them with 1 upload worker at 55, 2 workers 104-109,
3 workers 147-149, 4 workers 157-193, 6 workers 157-171; 16 MiB x 3 at 163-172 for 64 MiB of
buffers. Each request's rate is capped, so throughput follows the bytes in flight until the CPU
is the limit, which 4 x 8 MiB reaches for 40 MiB. 8 MiB is also boto3's own part size, and S3's
10,000-part limit then allows 78 GiB objects, far above MAX_OUTPUT_BYTES. A whole copy process
peaks near 120 MiB of RSS at any size (bench/results/copy.json).
"""

from __future__ import annotations

import hashlib
import io
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Literal, cast
from urllib.parse import urljoin, urlsplit

import httpx
from botocore.exceptions import BotoCoreError, ClientError

from avatar_pipeline.domain.ports import CopiedObject, Expected
from avatar_pipeline.errors import OutputInvalid, OutputTransferError, ResultExpired
from avatar_pipeline.media import VIDEO_TYPES, looks_like_srt, sniff_video
from avatar_pipeline.settings import is_loopback_host

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

MIB = 1024 * 1024
# Integrity per part: every UploadPart carries a CRC32 of its bytes, which S3 checks before it
# accepts the part, and the upload is created for CRC32, so S3 requires each part's CRC32 again in
# CompleteMultipartUpload and keeps a checksum of the part checksums on the object (COMPOSITE, S3's
# default type for CRC32). Why CRC32: zlib computes it at ~3 GB/s, so it costs the 0.58-vCPU Lambda
# next to nothing, and botocore (1.36+) sends it by default anyway; Content-MD5 would cost an MD5 of
# every byte (~600 MB/s) for the same per-request guarantee. End to end, the video's sha256, computed
# on the fly, goes in the manifest. Why name it at all: without an algorithm S3 stores a FULL_OBJECT
# CRC64NVME, which an S3 without a CRC combiner (moto: the bench, the tests, the local stack) can only
# compute by concatenating and copying the whole object once more in CompleteMultipartUpload: more
# than half of that call's time (bench/bench_copy.py at 1 GiB: 10.2 s, and 4.4 s with CRC32).
# ChecksumType is left to S3's default: botocore only knows it since 1.36, and the Lambda runtime's
# boto3 may be older.
CHECKSUM_ALGORITHM: Literal["CRC32"] = "CRC32"
DEFAULT_PART_SIZE = 8 * MIB
DEFAULT_UPLOAD_WORKERS = 4
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


class _PartBody:
    """A read-only, seekable file over one part's buffer. botocore hashes it, sends it and rewinds it
    for a retry without copying the part; a bytes body would be copied once more over plain http
    (headers and body joined into one buffer), and a bytearray over https (into a BytesIO)."""

    def __init__(self, data: memoryview) -> None:
        self._data = data
        self._position = 0

    @classmethod
    def over(cls, data: memoryview) -> IO[bytes]:
        # botocore (and http.client) use only read, seek and tell, which is what the stubs' IO[bytes] means.
        return cast("IO[bytes]", cls(data))

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else min(len(self._data), self._position + size)
        chunk = bytes(self._data[self._position : end])
        self._position = max(self._position, end)
        return chunk

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._data)}[whence]
        self._position = max(0, base + offset)
        return self._position

    def tell(self) -> int:
        return self._position

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


@dataclass(frozen=True)
class _Destination:
    """Where a copy goes, and what the object carries."""

    bucket: str
    key: str
    content_type: str
    metadata: dict[str, str]


class _PartWriter:
    """Fills one part buffer while at most `workers` earlier parts upload; starts a multipart upload only
    once a full part exists.

    The download (caller's thread) waits for an upload only when all `workers` are busy, so it never
    reads further ahead than that: the writer owns at most `workers + 1` part buffers, allocated once
    and reused (the one being filled and the ones uploading), so memory does not depend on the size
    of the video or on the allocator. A failed part is noticed at the next part boundary (or at
    `finish`), which raises it in the caller's thread; the caller then `abort`s.
    """

    def __init__(
        self,
        s3: S3Client,
        destination: _Destination,
        part_size: int,
        workers: int,
        deadline: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._s3, self._bucket, self._key = s3, destination.bucket, destination.key
        self._part_size, self._workers = part_size, workers
        self._content_type, self._metadata = destination.content_type, destination.metadata
        self._deadline, self._monotonic = deadline, monotonic
        # Filled in place, never resized: a part costs its size once.
        self._fill = bytearray(part_size)
        self._filled = 0
        self._spare: list[bytearray] = []
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: set[Future[tuple[int, CompletedPartTypeDef, bytearray]]] = set()
        self._parts: dict[int, CompletedPartTypeDef] = {}
        self._submitted = 0

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            take = view[: self._part_size - self._filled]
            self._fill[self._filled : self._filled + len(take)] = take
            self._filled += len(take)
            view = view[len(take) :]
            if self._filled == self._part_size:
                self._submit(self._fill, self._filled)
                # Buffers: `workers` at most in flight, this one to fill; a new one only below that.
                self._fill = self._spare.pop() if self._spare else bytearray(self._part_size)
                self._filled = 0

    def _submit(self, buffer: bytearray, length: int) -> None:
        if self._upload_id is None:
            created = self._s3.create_multipart_upload(
                Bucket=self._bucket,
                Key=self._key,
                ContentType=self._content_type,
                Metadata=self._metadata,
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            )
            self._upload_id = created["UploadId"]
            self._pool = ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="s3-part")
        assert self._pool is not None
        self._collect(block=False)
        while len(self._in_flight) >= self._workers:
            self._collect(block=True)
        self._submitted += 1
        self._in_flight.add(self._pool.submit(self._upload_part, self._upload_id, self._submitted, buffer, length))

    def _upload_part(
        self, upload_id: str, number: int, buffer: bytearray, length: int
    ) -> tuple[int, CompletedPartTypeDef, bytearray]:
        body = _PartBody.over(memoryview(buffer)[:length])
        part = self._s3.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=upload_id,
            PartNumber=number,
            Body=body,
            ChecksumAlgorithm=CHECKSUM_ALGORITHM,
        )
        completed: CompletedPartTypeDef = {"PartNumber": number, "ETag": part["ETag"]}
        if "ChecksumCRC32" in part:
            completed["ChecksumCRC32"] = part["ChecksumCRC32"]
        return number, completed, buffer

    def _collect(self, block: bool) -> None:
        """Record finished parts and take their buffers back; re-raise a failed part here, in the caller's
        thread. A blocking wait ends at the deadline: every worker still busy then means the copy
        cannot finish in time."""
        if not self._in_flight:
            return
        timeout: float | None = 0
        if block:
            timeout = None if self._deadline is None else max(0.0, self._deadline - self._monotonic())
        done, self._in_flight = wait(self._in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
        if block and not done:
            raise _deadline_passed(f"while {len(self._in_flight)} parts were still uploading")
        for future in done:
            number, part, buffer = future.result()
            self._parts[number] = part
            self._spare.append(buffer)

    def finish(self) -> None:
        if self._upload_id is None:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=self._key,
                Body=_PartBody.over(memoryview(self._fill)[: self._filled]),
                ContentType=self._content_type,
                Metadata=self._metadata,
                ChecksumAlgorithm=CHECKSUM_ALGORITHM,
            )
            return
        if self._filled:
            self._submit(self._fill, self._filled)
            self._filled = 0
        while self._in_flight:
            self._collect(block=True)
        numbers = sorted(self._parts)
        if numbers != list(range(1, self._submitted + 1)):
            # Unreachable while every part either succeeds or raises; completing would publish a video
            # with a hole in it, so refuse rather than trust that.
            raise OutputTransferError(f"parts {numbers} do not cover 1..{self._submitted}")
        self._s3.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": [self._parts[n] for n in numbers]},
        )
        self._upload_id = None
        self._shutdown()

    def abort(self) -> None:
        # Uploads still running must end before the abort: a part that lands after it would keep
        # storage (and an open upload) alive. Parts not yet started are cancelled.
        self._shutdown()
        if self._upload_id is not None:
            self._s3.abort_multipart_upload(Bucket=self._bucket, Key=self._key, UploadId=self._upload_id)
            self._upload_id = None

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._in_flight = set()


class StreamingCopier:
    def __init__(
        self,
        s3: S3Client,
        http: httpx.Client,
        policy: DownloadPolicy,
        part_size: int = DEFAULT_PART_SIZE,
        chunk_size: int = 1 * MIB,
        upload_workers: int = DEFAULT_UPLOAD_WORKERS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if upload_workers < 1:
            raise ValueError("upload_workers must be at least 1")
        self._s3, self._http, self._policy = s3, http, policy
        self._part_size, self._chunk_size, self._upload_workers = part_size, chunk_size, upload_workers
        self._monotonic = monotonic

    def copy(
        self,
        url: str,
        bucket: str,
        key: str,
        expect: Expected,
        metadata: dict[str, str] | None = None,
        deadline: float | None = None,
    ) -> CopiedObject:
        """Copy `url` to s3://bucket/key whole, or write nothing. `deadline` (a `monotonic()` instant):
        stop and abort if the copy is not done by then, raising OutputTransferError."""
        limit = self._policy.max_bytes if expect == "video" else self._policy.max_caption_bytes
        self._abort_stale_uploads(bucket, key)
        with self._open(url, deadline) as response:
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > limit and not _is_compressed(response):
                raise OutputInvalid(f"the result is {declared} bytes, over the {limit}-byte limit")
            return self._stream(response, bucket, key, expect, limit, metadata or {}, deadline)

    def _abort_stale_uploads(self, bucket: str, key: str) -> None:
        """A copy of this key that died mid-way (a killed invocation cannot abort) left its upload open:
        abort it now, rather than leave its parts stored until the bucket's lifecycle rule. Runs of one
        job's Finalize follow each other; in the rare overlap (Lambda reported an invoke as failed that
        still runs) the aborted copy fails, is retried, and writes the same bytes."""
        try:
            listing = self._s3.list_multipart_uploads(Bucket=bucket, Prefix=key)
            for upload in listing.get("Uploads", []):
                if upload.get("Key") == key and "UploadId" in upload:
                    self._s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
        except (ClientError, BotoCoreError) as exc:
            raise OutputTransferError(f"could not clear an earlier copy's upload: {type(exc).__name__}") from None

    def _check_deadline(self, deadline: float | None, copied: int) -> None:
        if deadline is not None and self._monotonic() >= deadline:
            raise _deadline_passed(f"after {copied} bytes")

    @contextmanager
    def _open(self, url: str, deadline: float | None) -> Iterator[httpx.Response]:
        for _ in range(self._policy.max_redirects + 1):
            self._check_deadline(deadline, 0)
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
        deadline: float | None,
    ) -> CopiedObject:
        digest = hashlib.sha256()
        size = 0
        head = bytearray()
        content_type: str | None = None
        writer: _PartWriter | None = None
        try:
            for chunk in response.iter_bytes(self._chunk_size):
                self._check_deadline(deadline, size)
                size += len(chunk)
                if size > limit:
                    raise OutputInvalid(f"the result is over the {limit}-byte limit")
                digest.update(chunk)
                if writer is None:
                    head.extend(chunk)
                    if len(head) < 64:
                        continue
                    content_type = _verify(bytes(head), expect)
                    writer = self._writer(bucket, key, content_type, metadata, deadline)
                    writer.write(bytes(head))
                    head.clear()
                else:
                    writer.write(chunk)
            if writer is None:
                content_type = _verify(bytes(head), expect)
                writer = self._writer(bucket, key, content_type, metadata, deadline)
                writer.write(bytes(head))
            _check_length(response, size)
            writer.finish()
        except httpx.TransportError as exc:
            _abort(writer)
            raise OutputTransferError(f"the result download broke off: {type(exc).__name__}") from None
        except (ClientError, BotoCoreError) as exc:
            # Writing to S3 failed (throttled, a 5xx, a dropped connection): worth another attempt.
            _abort(writer)
            raise OutputTransferError(f"writing the video to S3 failed: {type(exc).__name__}: {exc}") from None
        except BaseException:
            _abort(writer)
            raise
        assert content_type is not None
        return CopiedObject(key=key, size=size, sha256=digest.hexdigest(), content_type=content_type)

    def _writer(
        self, bucket: str, key: str, content_type: str, metadata: dict[str, str], deadline: float | None
    ) -> _PartWriter:
        destination = _Destination(bucket, key, content_type, metadata)
        return _PartWriter(self._s3, destination, self._part_size, self._upload_workers, deadline, self._monotonic)


def _deadline_passed(when: str) -> OutputTransferError:
    # Transient: a retry starts with a whole new time budget (Finalize tries again later, see domain/finalize.py).
    return OutputTransferError(f"the copy could not finish before its deadline ({when}); stopped and aborted")


def _abort(writer: _PartWriter | None) -> None:
    if writer is not None:
        writer.abort()


def _check_status(response: httpx.Response) -> None:
    code = response.status_code
    if 200 <= code < 300:
        return
    if code >= 500 or code == httpx.codes.TOO_MANY_REQUESTS:
        raise OutputTransferError(f"the result host answered HTTP {code}")
    if code in (httpx.codes.NOT_FOUND, httpx.codes.GONE):
        # The provider deletes results after a while: the file is gone, not invalid.
        raise ResultExpired(f"the result file is gone (HTTP {code})")
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
