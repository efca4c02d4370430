"""S3Storage's conditional copy, move and read: what goes on the wire (botocore's Stubber, no AWS).

ETags are kept unquoted (EventBridge's S3 events carry them so); S3's If-Match style headers take
an HTTP entity tag, which is quoted. A 412 means a newer upload holds the key: ObjectReplaced.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from avatar_pipeline.adapters.storage import S3Storage
from avatar_pipeline.domain.ports import ObjectReplaced, plain_etag

pytestmark = pytest.mark.unit

BUCKET = "avatar-input"
SOURCE = "inbox/a/hello.json"
TARGET = "processed/a/hello.json"
ETAG = "0f343b0931126a20f133d67c2b018a3b"


@pytest.fixture
def s3() -> Iterator[tuple[S3Storage, Stubber]]:
    client = boto3.client("s3", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield S3Storage(client), stubber
        stubber.assert_no_pending_responses()


def copy_params(**conditions: str) -> dict[str, Any]:
    return {
        "Bucket": BUCKET,
        "Key": TARGET,
        "CopySource": {"Bucket": BUCKET, "Key": SOURCE},
        "MetadataDirective": "COPY",
        **conditions,
    }


@pytest.mark.parametrize("etag", [ETAG, f'"{ETAG}"'])
def test_a_move_with_an_etag_copies_and_deletes_only_that_object(s3: tuple[S3Storage, Stubber], etag: str) -> None:
    """Given an ETag, quoted (from S3) or not (from an event), then both the copy and the delete
    carry it once quoted, as S3's preconditions."""
    storage, stubber = s3
    stubber.add_response("copy_object", {}, copy_params(CopySourceIfMatch=f'"{ETAG}"'))
    stubber.add_response("delete_object", {}, {"Bucket": BUCKET, "Key": SOURCE, "IfMatch": f'"{ETAG}"'})

    assert storage.move(BUCKET, SOURCE, TARGET, if_match=etag) is True


def test_a_move_without_an_etag_is_unconditional(s3: tuple[S3Storage, Stubber]) -> None:
    """Given no ETag (state from before they were recorded), then the key moves as it always did."""
    storage, stubber = s3
    stubber.add_response("copy_object", {}, copy_params())
    stubber.add_response("delete_object", {}, {"Bucket": BUCKET, "Key": SOURCE})

    assert storage.move(BUCKET, SOURCE, TARGET) is True


def test_a_replaced_source_is_neither_copied_nor_deleted(s3: tuple[S3Storage, Stubber]) -> None:
    """Given the key holds a newer upload (the copy's precondition fails), then nothing is deleted."""
    storage, stubber = s3
    stubber.add_client_error("copy_object", "PreconditionFailed", http_status_code=412)

    with pytest.raises(ObjectReplaced) as raised:
        storage.move(BUCKET, SOURCE, TARGET, if_match=ETAG)
    assert (raised.value.key, raised.value.expected_etag) == (SOURCE, ETAG)


def test_an_upload_landing_between_copy_and_delete_is_not_deleted(s3: tuple[S3Storage, Stubber]) -> None:
    """Given the delete's precondition fails (a newer upload arrived after the copy), then the
    newer object stays and the move reports the key as replaced."""
    storage, stubber = s3
    stubber.add_response("copy_object", {}, copy_params(CopySourceIfMatch=f'"{ETAG}"'))
    stubber.add_client_error("delete_object", "PreconditionFailed", http_status_code=412)

    with pytest.raises(ObjectReplaced):
        storage.move(BUCKET, SOURCE, TARGET, if_match=ETAG)


def test_a_source_already_gone_is_not_an_error(s3: tuple[S3Storage, Stubber]) -> None:
    """Given a move run again after it succeeded, then the missing source just means done."""
    storage, stubber = s3
    stubber.add_client_error("copy_object", "NoSuchKey", http_status_code=404)

    assert storage.move(BUCKET, SOURCE, TARGET, if_match=ETAG) is False


def test_a_read_with_an_etag_reads_only_that_object(s3: tuple[S3Storage, Stubber]) -> None:
    storage, stubber = s3
    stubber.add_response(
        "get_object",
        {"ContentLength": 2, "Body": StreamingBody(io.BytesIO(b"{}"), 2)},
        {"Bucket": BUCKET, "Key": SOURCE, "IfMatch": f'"{ETAG}"'},
    )
    stubber.add_client_error("get_object", "PreconditionFailed", http_status_code=412)

    assert storage.read(BUCKET, SOURCE, 1024, if_match=ETAG) == b"{}"
    with pytest.raises(ObjectReplaced):
        storage.read(BUCKET, SOURCE, 1024, if_match=ETAG)


def test_etags_are_kept_unquoted() -> None:
    assert plain_etag(f'"{ETAG}"') == plain_etag(ETAG) == ETAG


@pytest.fixture
def s3_without_conditional_delete(
    s3: tuple[S3Storage, Stubber], monkeypatch: pytest.MonkeyPatch
) -> tuple[S3Storage, Stubber]:
    """A Lambda runtime whose botocore predates DeleteObject's IfMatch parameter."""
    storage, stubber = s3
    monkeypatch.setattr(storage, "_deletes_conditionally", False)
    return storage, stubber


def test_with_an_older_botocore_the_etag_is_compared_before_an_unconditional_delete(
    s3_without_conditional_delete: tuple[S3Storage, Stubber],
) -> None:
    storage, stubber = s3_without_conditional_delete
    stubber.add_response("copy_object", {}, copy_params(CopySourceIfMatch=f'"{ETAG}"'))
    stubber.add_response("head_object", {"ContentLength": 10, "ETag": f'"{ETAG}"'}, {"Bucket": BUCKET, "Key": SOURCE})
    stubber.add_response("delete_object", {}, {"Bucket": BUCKET, "Key": SOURCE})

    assert storage.move(BUCKET, SOURCE, TARGET, if_match=ETAG) is True


def test_with_an_older_botocore_a_newer_upload_is_not_deleted(
    s3_without_conditional_delete: tuple[S3Storage, Stubber],
) -> None:
    storage, stubber = s3_without_conditional_delete
    stubber.add_response("copy_object", {}, copy_params(CopySourceIfMatch=f'"{ETAG}"'))
    stubber.add_response(
        "head_object", {"ContentLength": 12, "ETag": '"a-newer-upload"'}, {"Bucket": BUCKET, "Key": SOURCE}
    )

    with pytest.raises(ObjectReplaced):
        storage.move(BUCKET, SOURCE, TARGET, if_match=ETAG)


def test_the_installed_botocore_deletes_conditionally(s3: tuple[S3Storage, Stubber]) -> None:
    """The offline stack and the tests run a botocore that knows If-Match on DeleteObject."""
    storage, _ = s3
    assert storage._deletes_conditionally is True
