"""StreamingCopier: the provider's result streamed into S3 (moto), served by an in-process HTTP transport."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError, ConnectionClosedError
from moto import mock_aws

from avatar_pipeline.adapters.transfer import (
    DEFAULT_UPLOAD_WORKERS,
    MIB,
    DownloadPolicy,
    StreamingCopier,
)
from avatar_pipeline.domain.ports import CopiedObject
from avatar_pipeline.errors import OutputInvalid, OutputTransferError, ResultExpired

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

pytestmark = pytest.mark.unit

BUCKET = "avatar-output-123456789012"
KEY = "videos/campaign-a/alice-welcome.mp4"
VIDEO_URL = "https://videos.segmind.com/outputs/abc.mp4"
PART_SIZE = 5 * MIB  # S3's minimum part size
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42"
SRT = b"1\n00:00:00,000 --> 00:00:02,500\nHello, this is an avatar demo.\n\n2\n00:00:02,500 --> 00:00:04,000\nBye.\n"
HTML = b"<!DOCTYPE html><html><body><h1>Access denied</h1><p>" + b"x" * 200 + b"</p></body></html>"

Handler = Callable[[httpx.Request], httpx.Response]


def mp4(size: int) -> bytes:
    """An MP4-signature body of `size` bytes whose content varies, so misplaced parts would show."""
    filler = hashlib.sha256(b"seed").digest() * (size // 32 + 1)
    return (MP4_HEAD + filler)[:size]


class Chunks(httpx.SyncByteStream):
    """A response body sent in pieces, optionally breaking off with a transport error."""

    def __init__(self, body: bytes, piece: int = MIB, fail_after: int | None = None) -> None:
        self._body, self._piece, self._fail_after = body, piece, fail_after

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for start in range(0, len(self._body), self._piece):
            if self._fail_after is not None and sent >= self._fail_after:
                raise httpx.RemoteProtocolError("peer closed connection without sending complete message body")
            piece = self._body[start : start + self._piece]
            sent += len(piece)
            yield piece


class Host:
    """A MockTransport handler serving URL -> response, remembering the URLs asked for."""

    def __init__(self, routes: dict[str, Handler]) -> None:
        self._routes = routes
        self.requested: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        self.requested.append(url)
        if url not in self._routes:
            return httpx.Response(404, text="no such route")
        return self._routes[url](request)


def serve(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(status, content=body, headers=headers)


def serve_stream(stream: httpx.SyncByteStream, headers: dict[str, str] | None = None) -> Handler:
    return lambda request: httpx.Response(200, stream=stream, headers=headers)


def redirect(location: str, status: int = 302) -> Handler:
    return lambda request: httpx.Response(status, headers={"location": location})


@pytest.fixture(scope="module")
def s3_account() -> Iterator[S3Client]:
    """One moto account for the module (starting moto is the slow part); each test gets an empty bucket."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            patch.setenv(name, value)
        patch.delenv("AWS_PROFILE", raising=False)
        with mock_aws():
            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket=BUCKET)
            yield client


@pytest.fixture
def s3(s3_account: S3Client) -> Iterator[S3Client]:
    yield s3_account
    for upload in s3_account.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []):
        s3_account.abort_multipart_upload(Bucket=BUCKET, Key=upload["Key"], UploadId=upload["UploadId"])
    for key in stored_keys(s3_account):
        s3_account.delete_object(Bucket=BUCKET, Key=key)


def copier(
    s3: S3Client,
    host: Host,
    policy: DownloadPolicy | None = None,
    part_size: int = PART_SIZE,
    upload_workers: int = DEFAULT_UPLOAD_WORKERS,
) -> StreamingCopier:
    http = httpx.Client(transport=httpx.MockTransport(host))
    return StreamingCopier(
        s3, http, policy or DownloadPolicy(max_bytes=64 * MIB), part_size=part_size, upload_workers=upload_workers
    )


def stored_keys(s3: S3Client) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def open_uploads(s3: S3Client) -> list[str]:
    return [upload["Key"] for upload in s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]


def assert_nothing_written(s3: S3Client) -> None:
    assert stored_keys(s3) == []
    assert open_uploads(s3) == []


# --- copying ------------------------------------------------------------------------------------------


def test_small_video_is_copied_with_size_hash_and_type(s3: S3Client) -> None:
    """Given a small MP4 at the result URL
    When it is copied into the output bucket
    Then the object equals the source, with the right size, sha256, content type and metadata."""
    body = mp4(4096)
    host = Host({VIDEO_URL: serve(body)})

    copied = copier(s3, host).copy(VIDEO_URL, BUCKET, KEY, expect="video", metadata={"job-id": "job-1"})

    assert copied == CopiedObject(
        key=KEY, size=len(body), sha256=hashlib.sha256(body).hexdigest(), content_type="video/mp4"
    )
    stored = s3.get_object(Bucket=BUCKET, Key=KEY)
    assert stored["Body"].read() == body
    assert stored["ContentType"] == "video/mp4"
    assert stored["Metadata"] == {"job-id": "job-1"}


def test_tiny_video_under_the_sniff_window_is_copied(s3: S3Client) -> None:
    """Given an MP4-signature body shorter than the 64-byte sniff window
    When it is copied
    Then it is still verified and written whole."""
    body = MP4_HEAD + b"\x00" * 8
    copied = copier(s3, Host({VIDEO_URL: serve(body)})).copy(VIDEO_URL, BUCKET, KEY, expect="video")

    assert copied.size == len(body)
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body


def test_webm_video_is_stored_as_webm(s3: S3Client) -> None:
    """Given a WebM at the result URL
    When it is copied
    Then it is stored with the WebM content type."""
    body = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01" + b"\x00" * 500
    copied = copier(s3, Host({VIDEO_URL: serve(body)})).copy(VIDEO_URL, BUCKET, "videos/a.webm", expect="video")

    assert copied.content_type == "video/webm"
    assert s3.get_object(Bucket=BUCKET, Key="videos/a.webm")["ContentType"] == "video/webm"


def test_video_without_content_length_is_copied(s3: S3Client) -> None:
    """Given a result served chunked, without Content-Length
    When it is copied
    Then the object equals the source."""
    body = mp4(300_000)
    host = Host({VIDEO_URL: serve_stream(Chunks(body, piece=65_536))})

    copied = copier(s3, host).copy(VIDEO_URL, BUCKET, KEY, expect="video")

    assert copied.size == len(body)
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body


def test_large_video_goes_through_multipart_and_arrives_intact(s3: S3Client) -> None:
    """Given a result larger than two parts
    When it is copied with 5 MiB parts
    Then it is uploaded in three parts, the object equals the source, and no upload is left open."""
    body = mp4(11 * MIB + 12_345)
    host = Host({VIDEO_URL: serve(body)})

    copied = copier(s3, host).copy(VIDEO_URL, BUCKET, KEY, expect="video")

    assert copied.size == len(body)
    assert copied.sha256 == hashlib.sha256(body).hexdigest()
    stored = s3.get_object(Bucket=BUCKET, Key=KEY)
    assert stored["Body"].read() == body
    assert stored["ETag"].strip('"').endswith("-3")
    assert stored["ContentType"] == "video/mp4"
    assert open_uploads(s3) == []


# --- download and upload overlap, within a fixed number of parts -----------------------------------------

WAIT_S = 10.0  # only ever reached when the copier is broken; the tests never sleep


class PartLost(Exception):
    """An upload_part failure injected by the tests."""


class Pipeline:
    """What the copier has pulled from the result host and handed to S3, shared by `Source` and `Recorder`.

    `pulled - uploaded` is every byte the copier holds: downloaded but not yet accepted by S3."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.changed = threading.Condition()
        self.pulled = 0
        self.uploaded = 0
        self.uploading = 0
        self.max_uploading = 0
        self.max_held = 0

    def wait_for(self, predicate: Callable[[], bool], what: str) -> None:
        with self.changed:
            if not self.changed.wait_for(predicate, WAIT_S):
                raise AssertionError(f"never happened: {what}")

    def update(self, pulled: int = 0, uploaded: int = 0, uploading: int = 0) -> None:
        with self.changed:
            self.pulled += pulled
            self.uploaded += uploaded
            self.uploading += uploading
            self.max_uploading = max(self.max_uploading, self.uploading)
            self.max_held = max(self.max_held, self.pulled - self.uploaded)
            self.changed.notify_all()


class Source(httpx.SyncByteStream):
    """A response body in 1 MiB pieces, counting each piece as the copier pulls it."""

    def __init__(self, body: bytes, pipeline: Pipeline) -> None:
        self._body, self._pipeline = body, pipeline

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self._body), MIB):
            piece = self._body[start : start + MIB]
            self._pipeline.update(pulled=len(piece))
            yield piece


class Recorder:
    """The moto S3 client with upload_part observed, and held back or failed by `before_part(number)`."""

    def __init__(self, s3: S3Client, pipeline: Pipeline, before_part: Callable[[int], None] | None = None) -> None:
        self._s3, self._pipeline, self._before_part = s3, pipeline, before_part
        self.completed: list[int] = []
        self.completions = 0

    def upload_part(self, **kwargs: Any) -> Any:
        number: int = kwargs["PartNumber"]
        size = body_size(kwargs["Body"])
        self._pipeline.update(uploading=1)
        try:
            if self._before_part is not None:
                self._before_part(number)
            answer = self._s3.upload_part(**kwargs)
        finally:
            self._pipeline.update(uploading=-1)
        self.completed.append(number)
        self._pipeline.update(uploaded=size)
        return answer

    def complete_multipart_upload(self, **kwargs: Any) -> Any:
        self.completions += 1
        return self._s3.complete_multipart_upload(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._s3, name)


def body_size(body: Any) -> int:
    """The size of an upload's body, bytes or a file object (before it is sent), without consuming it."""
    if isinstance(body, bytes | bytearray):
        return len(body)
    start: int = body.tell()
    end: int = body.seek(0, io.SEEK_END)
    body.seek(start)
    return end - start


def parts_of(size: int) -> int:
    return -(-size // PART_SIZE)


@pytest.mark.parametrize("workers", [1, 3])
def test_the_copier_never_holds_more_than_workers_plus_one_parts(s3: S3Client, workers: int) -> None:
    """Given uploads that are slower than the download: part k is held back until the copier has pulled
    part k + workers, and the first one until all workers are busy
    When a result of several parts is copied with `workers` upload workers
    Then all workers upload at once, yet the copier never holds more than workers + 1 parts of data
    (pulled from the host and not yet accepted by S3), and the object equals the source."""
    body = mp4((workers + 4) * PART_SIZE + 12_345)
    pipeline = Pipeline(len(body))
    n_parts = parts_of(len(body))

    def held_back(number: int) -> None:
        pipeline.wait_for(
            lambda: pipeline.pulled >= min((number + workers) * PART_SIZE, pipeline.total),
            f"the copier pulls part {number + workers} while part {number} uploads",
        )
        if number == 1:
            pipeline.wait_for(lambda: pipeline.uploading == workers, f"{workers} parts upload at once")

    recorder = Recorder(s3, pipeline, held_back)
    host = Host({VIDEO_URL: serve_stream(Source(body, pipeline))})

    copier(cast("S3Client", recorder), host, upload_workers=workers).copy(VIDEO_URL, BUCKET, KEY, expect="video")

    assert pipeline.max_uploading == workers
    assert pipeline.max_held <= (workers + 1) * PART_SIZE
    assert sorted(recorder.completed) == list(range(1, n_parts + 1))
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body


def test_parts_that_finish_out_of_order_are_assembled_in_order(s3: S3Client) -> None:
    """Given two upload workers, and part 1 finishing only after part 2
    When a result of four parts is copied
    Then the object equals the source: parts are completed by number with their own ETags."""
    body = mp4(3 * PART_SIZE + 12_345)
    pipeline = Pipeline(len(body))
    recorder: Recorder

    def part_one_last(number: int) -> None:
        if number == 1:
            pipeline.wait_for(lambda: 2 in recorder.completed, "part 2 finishes before part 1")

    recorder = Recorder(s3, pipeline, part_one_last)
    host = Host({VIDEO_URL: serve_stream(Source(body, pipeline))})

    copier(cast("S3Client", recorder), host, upload_workers=2).copy(VIDEO_URL, BUCKET, KEY, expect="video")

    assert recorder.completed.index(2) < recorder.completed.index(1)
    stored = s3.get_object(Bucket=BUCKET, Key=KEY)
    assert stored["Body"].read() == body
    assert stored["ETag"].strip('"').endswith("-4")


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize("failing", [1, 3, 7], ids=["first-part", "middle-part", "last-part"])
def test_a_part_that_fails_aborts_the_copy(s3: S3Client, workers: int, failing: int) -> None:
    """Given an S3 upload_part that fails on part `failing` (the last part, shorter, is uploaded after
    the download ends), while later parts wait until it has failed
    When a result of seven parts is copied
    Then that very error propagates, the multipart upload is aborted (no object, no open upload),
    it is never completed, and the download stopped within `workers` parts of the failure."""
    body = mp4(6 * PART_SIZE + 12_345)
    pipeline = Pipeline(len(body))
    failed = threading.Event()
    error = PartLost(f"connection reset while uploading part {failing}")

    def lose_one(number: int) -> None:
        if number == failing:
            failed.set()
            raise error
        if number > failing and not failed.wait(WAIT_S):
            raise AssertionError(f"part {failing} never failed")

    recorder = Recorder(s3, pipeline, lose_one)
    host = Host({VIDEO_URL: serve_stream(Source(body, pipeline))})

    with pytest.raises(PartLost) as caught:
        copier(cast("S3Client", recorder), host, upload_workers=workers).copy(VIDEO_URL, BUCKET, KEY, expect="video")

    assert caught.value is error
    assert recorder.completions == 0
    assert_nothing_written(s3)
    assert pipeline.pulled <= min((failing + workers) * PART_SIZE, len(body))


def test_every_part_carries_its_crc32_and_the_completion_lists_them(s3: S3Client) -> None:
    """Given a result of three parts
    When it is copied
    Then the multipart upload is created for CRC32, CompleteMultipartUpload lists each part with the
    CRC32 of that part's bytes, and the stored object has a CRC32 checksum."""
    body = mp4(2 * PART_SIZE + 12_345)
    calls: dict[str, dict[str, Any]] = {}

    def capture(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls[model.name] = params

    for operation in ("CreateMultipartUpload", "CompleteMultipartUpload"):
        s3.meta.events.register(f"provide-client-params.s3.{operation}", capture, unique_id=f"capture-{operation}")
    try:
        copier(s3, Host({VIDEO_URL: serve(body)})).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    finally:
        for operation in ("CreateMultipartUpload", "CompleteMultipartUpload"):
            s3.meta.events.unregister(f"provide-client-params.s3.{operation}", unique_id=f"capture-{operation}")

    def crc32(data: bytes) -> str:
        return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()

    assert calls["CreateMultipartUpload"]["ChecksumAlgorithm"] == "CRC32"
    parts = calls["CompleteMultipartUpload"]["MultipartUpload"]["Parts"]
    assert [(part["PartNumber"], part["ChecksumCRC32"]) for part in parts] == [
        (n + 1, crc32(body[n * PART_SIZE : (n + 1) * PART_SIZE])) for n in range(3)
    ]
    assert s3.head_object(Bucket=BUCKET, Key=KEY, ChecksumMode="ENABLED").get("ChecksumCRC32")


def test_a_part_resent_after_a_dropped_connection_is_sent_from_its_start(s3: S3Client) -> None:
    """Given a connection that drops after 1 MiB of part 2's body went out, which botocore retries
    When a result of three parts is copied
    Then the part is rewound and sent whole: the object equals the source."""
    body = mp4(2 * PART_SIZE + 12_345)
    sent_before_drop: list[int] = []

    def drop_once(request: Any, **_: Any) -> None:
        if "partNumber=2" in request.url and not sent_before_drop:
            sent_before_drop.append(len(request.body.read(MIB)))
            raise ConnectionClosedError(endpoint_url=request.url)

    s3.meta.events.register_first("before-send.s3.UploadPart", drop_once, unique_id="drop-once")
    try:
        copier(s3, Host({VIDEO_URL: serve(body)})).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    finally:
        s3.meta.events.unregister("before-send.s3.UploadPart", unique_id="drop-once")

    assert len(sent_before_drop) == 1
    assert sent_before_drop[0] > 0
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body


def test_upload_workers_must_be_positive(s3: S3Client) -> None:
    """Given zero upload workers
    When a copier is built
    Then it is refused at once rather than hanging on the first part."""
    with pytest.raises(ValueError, match="upload_workers"):
        copier(s3, Host({}), upload_workers=0)


# --- the deadline: a copy that cannot finish in time aborts its upload -------------------------------------


class ShiftedClock:
    """time.monotonic() plus a shift the test sets: jumps to (or past) a deadline without sleeping to it."""

    def __init__(self) -> None:
        self.shift = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.shift


def test_a_copy_that_reaches_its_deadline_mid_download_aborts_and_raises_a_transient_error(s3: S3Client) -> None:
    """Given a download that advances the clock one second per MiB, and a deadline at 12 s
    When a 30 MiB result is copied (5 MiB parts: two were already uploaded at 12 MiB)
    Then it stops there: OutputTransferError (which the state machine retries) is raised, the
    multipart upload is aborted (no object, no upload or parts left) and never completed."""
    body = mp4(30 * MIB)
    pipeline = Pipeline(len(body))
    recorder = Recorder(s3, pipeline)
    host = Host({VIDEO_URL: serve_stream(Source(body, pipeline))})
    http = httpx.Client(transport=httpx.MockTransport(host))
    clock = lambda: pipeline.pulled / MIB  # noqa: E731 - a clock made of download progress
    copier_ = StreamingCopier(
        cast("S3Client", recorder), http, DownloadPolicy(max_bytes=64 * MIB), part_size=PART_SIZE, monotonic=clock
    )

    with pytest.raises(OutputTransferError, match="deadline"):
        copier_.copy(VIDEO_URL, BUCKET, KEY, expect="video", deadline=12.0)

    assert sorted(recorder.completed)[:2] == [1, 2]  # parts existed, so there was something to abort
    assert recorder.completions == 0
    assert pipeline.pulled == 12 * MIB
    assert_nothing_written(s3)
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_deadline_that_passes_while_parts_upload_aborts_after_the_late_part_lands(s3: S3Client) -> None:
    """Given two upload workers, and the last part's upload still running when the deadline passes (it
    lands a second later), while the download itself finished in time
    When the result is copied
    Then the copier stops waiting at the deadline, lets the late part land, and only then aborts: no
    object and no parts are left, the upload is never completed, and OutputTransferError is raised."""
    body = mp4(3 * PART_SIZE + 12_345)
    n_parts = parts_of(len(body))
    pipeline = Pipeline(len(body))
    clock = ShiftedClock()
    deadline = clock() + 3600.0
    shifted = threading.Event()

    def overrun(number: int) -> None:
        if number == n_parts:
            clock.shift = deadline - time.monotonic() + 1.0  # the deadline is now a second ago
            shifted.set()
            time.sleep(1.0)  # still uploading when the copier next looks at the clock
        elif number == n_parts - 1 and not shifted.wait(WAIT_S):
            raise AssertionError("the last part never started")

    recorder = Recorder(s3, pipeline, overrun)
    host = Host({VIDEO_URL: serve_stream(Source(body, pipeline))})
    http = httpx.Client(transport=httpx.MockTransport(host))
    copier_ = StreamingCopier(
        cast("S3Client", recorder),
        http,
        DownloadPolicy(max_bytes=64 * MIB),
        part_size=PART_SIZE,
        upload_workers=2,
        monotonic=clock,
    )

    with pytest.raises(OutputTransferError, match="deadline"):
        copier_.copy(VIDEO_URL, BUCKET, KEY, expect="video", deadline=deadline)

    assert sorted(recorder.completed) == list(range(1, n_parts + 1))  # the late part did land...
    assert recorder.completions == 0
    assert_nothing_written(s3)  # ...and the abort after it left nothing
    assert s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def test_a_deadline_already_passed_fetches_nothing(s3: S3Client) -> None:
    """Given a deadline that has already passed
    When a copy is asked for
    Then OutputTransferError is raised before the result is even requested, and nothing is written."""
    host = Host({VIDEO_URL: serve(mp4(4096))})

    with pytest.raises(OutputTransferError, match="deadline"):
        copier(s3, host).copy(VIDEO_URL, BUCKET, KEY, expect="video", deadline=time.monotonic() - 1)

    assert host.requested == []
    assert_nothing_written(s3)


@pytest.mark.parametrize("size", [4096, 3 * PART_SIZE + 12_345], ids=["one-put", "multipart"])
def test_a_copy_inside_its_deadline_is_unaffected(s3: S3Client, size: int) -> None:
    """Given a deadline an hour away
    When a small result and a multipart one are copied
    Then each object equals the source, with its size and sha256, and no upload is left open."""
    body = mp4(size)
    host = Host({VIDEO_URL: serve_stream(Chunks(body))})

    copied = copier(s3, host).copy(VIDEO_URL, BUCKET, KEY, expect="video", deadline=time.monotonic() + 3600)

    assert (copied.size, copied.sha256) == (len(body), hashlib.sha256(body).hexdigest())
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body
    assert open_uploads(s3) == []


# --- refusing what is not a usable video ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [HTML, b'{"error": "Request abc not found"}' * 4, b"", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100]
)
def test_non_video_body_is_refused_and_nothing_written(s3: S3Client, body: bytes) -> None:
    """Given a result URL serving an HTML page, JSON, nothing, or an image
    When it is copied as a video
    Then OutputInvalid is raised and no object is written."""
    with pytest.raises(OutputInvalid):
        copier(s3, Host({VIDEO_URL: serve(body)})).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert_nothing_written(s3)


def test_declared_size_over_the_limit_is_refused_before_streaming(s3: S3Client) -> None:
    """Given a result whose Content-Length is over max_bytes
    When it is copied
    Then OutputInvalid is raised and nothing is written."""
    host = Host({VIDEO_URL: serve(mp4(2 * MIB))})
    policy = DownloadPolicy(max_bytes=1 * MIB)

    with pytest.raises(OutputInvalid, match="limit"):
        copier(s3, host, policy).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert_nothing_written(s3)


def test_streamed_size_over_the_limit_aborts_the_multipart_upload(s3: S3Client) -> None:
    """Given a result without Content-Length that turns out larger than max_bytes (after a part was uploaded)
    When it is copied
    Then OutputInvalid is raised, no object is written and no multipart upload is left open."""
    host = Host({VIDEO_URL: serve_stream(Chunks(mp4(8 * MIB)))})
    policy = DownloadPolicy(max_bytes=6 * MIB)

    with pytest.raises(OutputInvalid, match="limit"):
        copier(s3, host, policy).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert_nothing_written(s3)


def test_streamed_size_over_a_small_limit_writes_nothing(s3: S3Client) -> None:
    """Given a result without Content-Length larger than a limit below one part
    When it is copied
    Then OutputInvalid is raised and nothing is written."""
    host = Host({VIDEO_URL: serve_stream(Chunks(mp4(300_000), piece=50_000))})

    with pytest.raises(OutputInvalid):
        copier(s3, host, DownloadPolicy(max_bytes=100_000)).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert_nothing_written(s3)


def test_video_of_exactly_the_limit_is_copied(s3: S3Client) -> None:
    """Given a result of exactly max_bytes
    When it is copied
    Then it is accepted."""
    body = mp4(100_000)
    copied = copier(s3, Host({VIDEO_URL: serve(body)}), DownloadPolicy(max_bytes=100_000)).copy(
        VIDEO_URL, BUCKET, KEY, expect="video"
    )
    assert copied.size == 100_000


# --- broken transfers -----------------------------------------------------------------------------------


def test_truncated_small_body_is_a_transfer_error(s3: S3Client) -> None:
    """Given a result that declares more bytes than it sends
    When it is copied
    Then OutputTransferError (retryable) is raised and nothing is written."""
    body = mp4(5000)
    host = Host({VIDEO_URL: serve_stream(Chunks(body), headers={"content-length": "9000"})})

    with pytest.raises(OutputTransferError, match="truncated") as caught:
        copier(s3, host).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert caught.value.retryable is True
    assert_nothing_written(s3)


def test_truncated_large_body_aborts_the_multipart_upload(s3: S3Client) -> None:
    """Given a large result that declares 12 MiB but sends 11 MiB (two parts already uploaded)
    When it is copied
    Then OutputTransferError is raised, no object is written and no multipart upload is left open."""
    host = Host({VIDEO_URL: serve_stream(Chunks(mp4(11 * MIB)), headers={"content-length": str(12 * MIB)})})

    with pytest.raises(OutputTransferError):
        copier(s3, host).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert_nothing_written(s3)


@pytest.mark.parametrize("fail_after", [MIB, 6 * MIB], ids=["before-first-part", "after-first-part"])
def test_connection_dropped_mid_stream_aborts_everything(s3: S3Client, fail_after: int) -> None:
    """Given a result whose connection breaks off mid-body
    When it is copied
    Then OutputTransferError is raised, no object is written and no multipart upload is left open."""
    body = mp4(11 * MIB)
    host = Host(
        {VIDEO_URL: serve_stream(Chunks(body, fail_after=fail_after), headers={"content-length": str(len(body))})}
    )

    with pytest.raises(OutputTransferError, match="RemoteProtocolError"):
        copier(s3, host).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert_nothing_written(s3)


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ReadTimeout])
def test_transport_failure_before_the_body_is_a_transfer_error(
    s3: S3Client, exc_type: type[httpx.TransportError]
) -> None:
    """Given the result host cannot be reached or does not answer
    When the result is copied
    Then OutputTransferError is raised and nothing is written."""

    def fail(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    with pytest.raises(OutputTransferError):
        copier(s3, Host({VIDEO_URL: fail})).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert_nothing_written(s3)


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_server_errors_are_transfer_errors(s3: S3Client, status: int) -> None:
    """Given the result host answers 5xx or 429
    When the result is copied
    Then OutputTransferError (retryable) is raised and nothing is written."""
    with pytest.raises(OutputTransferError):
        copier(s3, Host({VIDEO_URL: serve(b"oops", status=status)})).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert_nothing_written(s3)


@pytest.mark.parametrize("status", [404, 410])
def test_a_result_file_that_is_gone_is_expired(s3: S3Client, status: int) -> None:
    """Given the result host answers 404 or 410 (the provider deleted the file)
    When the result is copied
    Then ResultExpired is raised and nothing is written."""
    with pytest.raises(ResultExpired):
        copier(s3, Host({VIDEO_URL: serve(b"gone", status=status)})).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert_nothing_written(s3)


@pytest.mark.parametrize("status", [403, 400])
def test_client_errors_mean_the_output_is_invalid(s3: S3Client, status: int) -> None:
    """Given the result host answers 403 or 400
    When the result is copied
    Then OutputInvalid is raised and nothing is written."""
    with pytest.raises(OutputInvalid):
        copier(s3, Host({VIDEO_URL: serve(b"gone", status=status)})).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert_nothing_written(s3)


# --- redirects --------------------------------------------------------------------------------------------


def test_redirect_chain_within_the_limit_is_followed(s3: S3Client) -> None:
    """Given a result URL that redirects three times (absolute and relative locations, various codes)
    When it is copied with max_redirects=3
    Then the chain is followed and the final body stored."""
    body = mp4(2048)
    host = Host(
        {
            VIDEO_URL: redirect("https://cdn.segmind.com/a/abc.mp4", 301),
            "https://cdn.segmind.com/a/abc.mp4": redirect("/b/abc.mp4", 307),
            "https://cdn.segmind.com/b/abc.mp4": redirect("https://files.segmind.com/abc.mp4?sig=1", 308),
            "https://files.segmind.com/abc.mp4?sig=1": serve(body),
        }
    )

    copier(s3, host, DownloadPolicy(max_bytes=MIB, max_redirects=3)).copy(VIDEO_URL, BUCKET, KEY, expect="video")

    assert host.requested[-1] == "https://files.segmind.com/abc.mp4?sig=1"
    assert len(host.requested) == 4
    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body


def test_too_many_redirects_are_refused(s3: S3Client) -> None:
    """Given a redirect chain one longer than max_redirects
    When the result is copied
    Then OutputInvalid is raised and nothing is written."""
    host = Host(
        {
            VIDEO_URL: redirect("https://videos.segmind.com/1"),
            "https://videos.segmind.com/1": redirect("https://videos.segmind.com/2"),
            "https://videos.segmind.com/2": serve(mp4(1024)),
        }
    )
    with pytest.raises(OutputInvalid, match="redirect"):
        copier(s3, host, DownloadPolicy(max_bytes=MIB, max_redirects=1)).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert_nothing_written(s3)


def test_redirect_loop_is_refused(s3: S3Client) -> None:
    """Given a result URL that redirects in a loop
    When it is copied
    Then OutputInvalid is raised after a bounded number of requests and nothing is written."""
    other = "https://videos.segmind.com/outputs/other.mp4"
    host = Host({VIDEO_URL: redirect(other), other: redirect(VIDEO_URL)})

    with pytest.raises(OutputInvalid, match="redirect"):
        copier(s3, host).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert len(host.requested) == 4
    assert_nothing_written(s3)


@pytest.mark.parametrize(
    "location",
    ["http://videos.segmind.com/outputs/abc.mp4", "http://127.0.0.1:9000/abc.mp4", "https://evil.example.com/abc.mp4"],
    ids=["downgrade-to-http", "to-loopback-http", "to-other-host"],
)
def test_redirect_targets_are_checked_like_the_first_url(s3: S3Client, location: str) -> None:
    """Given an allowlisted https result URL that redirects to plain http, or to a host outside the allowlist
    When it is copied
    Then OutputInvalid is raised and the target is never requested."""
    host = Host({VIDEO_URL: redirect(location), location: serve(mp4(1024))})
    policy = DownloadPolicy(max_bytes=MIB, host_allowlist=("segmind.com",))

    with pytest.raises(OutputInvalid):
        copier(s3, host, policy).copy(VIDEO_URL, BUCKET, KEY, expect="video")
    assert host.requested == [VIDEO_URL]
    assert_nothing_written(s3)


# --- which URLs may be fetched ------------------------------------------------------------------------------


def test_plain_http_is_refused_by_default(s3: S3Client) -> None:
    """Given a plain-http result URL, even on loopback, and the default policy
    When it is copied
    Then OutputInvalid is raised without a request."""
    url = "http://127.0.0.1:9000/abc.mp4"
    host = Host({url: serve(mp4(1024))})

    with pytest.raises(OutputInvalid, match="http"):
        copier(s3, host).copy(url, BUCKET, KEY, expect="video")
    assert host.requested == []
    assert_nothing_written(s3)


@pytest.mark.parametrize("url", ["http://127.0.0.1:9000/abc.mp4", "http://localhost:9000/abc.mp4"])
def test_plain_http_to_loopback_is_allowed_for_the_emulator(s3: S3Client, url: str) -> None:
    """Given a plain-http loopback result URL and allow_loopback_http
    When it is copied
    Then it is copied."""
    body = mp4(1024)
    policy = DownloadPolicy(max_bytes=MIB, allow_loopback_http=True)

    copier(s3, Host({url: serve(body)}), policy).copy(url, BUCKET, KEY, expect="video")

    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body


@pytest.mark.parametrize(
    "url", ["http://example.com/abc.mp4", "http://10.0.0.5/abc.mp4", "http://127.0.0.1.nip.io/abc.mp4"]
)
def test_plain_http_elsewhere_is_refused_even_with_loopback_allowed(s3: S3Client, url: str) -> None:
    """Given allow_loopback_http and a plain-http URL on a host that is not loopback
    When it is copied
    Then OutputInvalid is raised without a request."""
    host = Host({url: serve(mp4(1024))})
    with pytest.raises(OutputInvalid):
        copier(s3, host, DownloadPolicy(max_bytes=MIB, allow_loopback_http=True)).copy(url, BUCKET, KEY, expect="video")
    assert host.requested == []


@pytest.mark.parametrize(
    "url", ["ftp://videos.segmind.com/abc.mp4", "file:///etc/passwd", "https:///abc.mp4", "abc.mp4"]
)
def test_other_schemes_and_hostless_urls_are_refused(s3: S3Client, url: str) -> None:
    """Given a result URL with another scheme or no host
    When it is copied
    Then OutputInvalid is raised without a request."""
    host = Host({})
    with pytest.raises(OutputInvalid):
        copier(s3, host).copy(url, BUCKET, KEY, expect="video")
    assert host.requested == []


@pytest.mark.parametrize(
    "url", ["https://segmind.com/abc.mp4", "https://videos.segmind.com/abc.mp4", "https://A.Segmind.COM/abc.mp4"]
)
def test_allowlisted_hosts_and_their_subdomains_are_fetched(s3: S3Client, url: str) -> None:
    """Given a host allowlist of segmind.com
    When a result on segmind.com or a subdomain (any case) is copied
    Then it is copied."""
    body = mp4(1024)
    policy = DownloadPolicy(max_bytes=MIB, host_allowlist=("segmind.com",))
    host = Host({url.replace("A.Segmind.COM", "a.segmind.com"): serve(body)})

    copier(s3, host, policy).copy(url, BUCKET, KEY, expect="video")

    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body


@pytest.mark.parametrize(
    "url",
    ["https://evil.example.com/abc.mp4", "https://evilsegmind.com/abc.mp4", "https://segmind.com.evil.io/abc.mp4"],
)
def test_hosts_outside_the_allowlist_are_refused(s3: S3Client, url: str) -> None:
    """Given a host allowlist of segmind.com
    When a result on another host (including lookalikes) is copied
    Then OutputInvalid is raised without a request and nothing is written."""
    host = Host({url: serve(mp4(1024))})
    policy = DownloadPolicy(max_bytes=MIB, host_allowlist=("segmind.com",))

    with pytest.raises(OutputInvalid, match="ALLOWLIST"):
        copier(s3, host, policy).copy(url, BUCKET, KEY, expect="video")
    assert host.requested == []
    assert_nothing_written(s3)


# --- captions -----------------------------------------------------------------------------------------------

CAPTIONS_URL = "https://videos.segmind.com/outputs/abc.srt"
CAPTIONS_KEY = "videos/campaign-a/alice-welcome.srt"


def test_srt_captions_are_copied(s3: S3Client) -> None:
    """Given SRT captions at the caption URL
    When they are copied as captions
    Then they are stored as SubRip text."""
    copied = copier(s3, Host({CAPTIONS_URL: serve(SRT)})).copy(CAPTIONS_URL, BUCKET, CAPTIONS_KEY, expect="captions")

    assert copied.content_type == "application/x-subrip"
    assert copied.sha256 == hashlib.sha256(SRT).hexdigest()
    stored = s3.get_object(Bucket=BUCKET, Key=CAPTIONS_KEY)
    assert stored["Body"].read() == SRT
    assert stored["ContentType"] == "application/x-subrip"


@pytest.mark.parametrize(
    "body", [HTML, mp4(2048), b"Request abc not found", b""], ids=["html", "video", "text", "empty"]
)
def test_non_srt_captions_are_refused(s3: S3Client, body: bytes) -> None:
    """Given something other than SRT at the caption URL
    When it is copied as captions
    Then OutputInvalid is raised and nothing is written."""
    with pytest.raises(OutputInvalid):
        copier(s3, Host({CAPTIONS_URL: serve(body)})).copy(CAPTIONS_URL, BUCKET, CAPTIONS_KEY, expect="captions")
    assert_nothing_written(s3)


def test_captions_have_their_own_size_limit(s3: S3Client) -> None:
    """Given captions larger than max_caption_bytes (though far under max_bytes)
    When they are copied as captions
    Then OutputInvalid is raised and nothing is written."""
    policy = DownloadPolicy(max_bytes=64 * MIB, max_caption_bytes=len(SRT) - 1)
    with pytest.raises(OutputInvalid):
        copier(s3, Host({CAPTIONS_URL: serve(SRT)}), policy).copy(CAPTIONS_URL, BUCKET, CAPTIONS_KEY, expect="captions")
    assert_nothing_written(s3)


def test_gzip_encoded_captions_are_copied_decoded(s3: S3Client) -> None:
    """Given captions stored gzip-encoded on the result host (Content-Encoding: gzip, Content-Length of the
    compressed bytes), which httpx asks for by default with Accept-Encoding: gzip
    When they are copied as captions
    Then the decoded SRT is stored: the download is complete, not "truncated"."""
    srt = SRT * 50
    host = Host({CAPTIONS_URL: serve(gzip.compress(srt), headers={"content-encoding": "gzip"})})

    copied = copier(s3, host).copy(CAPTIONS_URL, BUCKET, CAPTIONS_KEY, expect="captions")

    assert copied.size == len(srt)
    assert s3.get_object(Bucket=BUCKET, Key=CAPTIONS_KEY)["Body"].read() == srt


def test_an_s3_error_while_writing_is_a_transient_transfer_error_and_aborts(s3: S3Client) -> None:
    """Given S3 refusing a part with a throttling error (a ClientError, untyped for the state machine)
    When a result of seven parts is copied
    Then the copy raises OutputTransferError (Finalize tries again later) and leaves no object and no
    open upload."""
    body = mp4(6 * PART_SIZE + 12_345)
    pipeline = Pipeline(len(body))

    def throttled(number: int) -> None:
        if number == 2:
            raise ClientError(
                {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "UploadPart"
            )

    recorder = Recorder(s3, pipeline, throttled)
    host = Host({VIDEO_URL: serve_stream(Source(body, pipeline))})

    with pytest.raises(OutputTransferError, match="SlowDown"):
        copier(cast("S3Client", recorder), host, upload_workers=1).copy(VIDEO_URL, BUCKET, KEY, expect="video")

    assert_nothing_written(s3)


def test_an_upload_left_open_by_a_killed_copy_is_aborted_by_the_next_one(s3: S3Client) -> None:
    """Given a multipart upload of the key left open (the Lambda running the copy was killed), and
    another key's open upload
    When the key is copied again
    Then the copy completes and only the other key's upload stays open."""
    s3.create_multipart_upload(Bucket=BUCKET, Key=KEY)
    s3.create_multipart_upload(Bucket=BUCKET, Key=KEY + ".other")
    body = mp4(3 * PART_SIZE)
    host = Host({VIDEO_URL: serve(body)})

    copier(s3, host).copy(VIDEO_URL, BUCKET, KEY, expect="video")

    assert s3.get_object(Bucket=BUCKET, Key=KEY)["Body"].read() == body
    assert open_uploads(s3) == [KEY + ".other"]
