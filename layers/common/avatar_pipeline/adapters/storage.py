"""S3 objects: read with a cap, sniff, presign, write JSON documents, move inputs between folders."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import IO, TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError
from pydantic import BaseModel

from avatar_pipeline.domain.ports import ObjectInfo, ObjectMissing, ObjectReplaced, ObjectTooLarge, plain_etag

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import (
        CopyObjectRequestTypeDef,
        GetObjectOutputTypeDef,
        GetObjectRequestTypeDef,
        ListObjectsV2RequestTypeDef,
    )

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}
_PRECONDITION_FAILED = {"412", "PreconditionFailed"}


def _is_not_found(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _NOT_FOUND


def _is_precondition_failed(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _PRECONDITION_FAILED


def _quoted(etag: str) -> str:
    """An ETag as an If-Match style header wants it (an HTTP entity tag is a quoted string)."""
    return f'"{plain_etag(etag)}"'


class S3Storage:
    def __init__(self, client: S3Client) -> None:
        self._s3 = client
        # The Lambda runtime's botocore (the layer does not ship one) may be older than the
        # DeleteObject If-Match parameter; sending it then fails validation before any request.
        delete_input = client.meta.service_model.operation_model("DeleteObject").input_shape
        self._deletes_conditionally = delete_input is not None and "IfMatch" in delete_input.members

    def head(self, bucket: str, key: str) -> ObjectInfo | None:
        try:
            head = self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if _is_not_found(error):
                return None
            raise
        return ObjectInfo(
            key=key,
            size=int(head["ContentLength"]),
            etag=plain_etag(str(head.get("ETag", ""))),
            content_type=head.get("ContentType"),
        )

    def _get(
        self, bucket: str, key: str, if_match: str | None = None, byte_range: str | None = None
    ) -> GetObjectOutputTypeDef:
        """GetObject, its errors in the ports' terms: ObjectMissing, and with `if_match` (an ETag)
        ObjectReplaced if the key holds another object by now."""
        request: GetObjectRequestTypeDef = {"Bucket": bucket, "Key": key}
        if if_match:
            request["IfMatch"] = _quoted(if_match)
        if byte_range:
            request["Range"] = byte_range
        try:
            return self._s3.get_object(**request)
        except ClientError as error:
            if _is_not_found(error):
                raise ObjectMissing(key) from None
            if if_match and _is_precondition_failed(error):
                raise ObjectReplaced(key, if_match) from None
            raise

    def read(self, bucket: str, key: str, max_bytes: int, if_match: str | None = None) -> bytes:
        """The whole object, up to `max_bytes`. With `if_match` (an ETag), only that object:
        ObjectReplaced if the key holds another one by now."""
        response = self._get(bucket, key, if_match)
        size = int(response["ContentLength"])
        if size > max_bytes:
            response["Body"].close()
            raise ObjectTooLarge(key, size, max_bytes)
        return response["Body"].read()

    def read_prefix(self, bucket: str, key: str, length: int) -> bytes:
        """The first bytes of an object, for sniffing its format by content."""
        return self._get(bucket, key, byte_range=f"bytes=0-{length - 1}")["Body"].read(length)

    def open_stream(self, bucket: str, key: str, if_match: str | None = None) -> IO[bytes]:
        """The object's body as a stream (botocore's StreamingBody is an io.IOBase), read as consumed."""
        return cast("IO[bytes]", self._get(bucket, key, if_match)["Body"])

    def iter_folder(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        """Objects directly under a folder-like prefix (not in its subfolders), a page at a time."""
        request: ListObjectsV2RequestTypeDef = {"Bucket": bucket, "Prefix": prefix, "Delimiter": "/"}
        while True:
            response = self._s3.list_objects_v2(**request)
            for obj in response.get("Contents", []):
                yield ObjectInfo(str(obj["Key"]), int(obj.get("Size", 0)), plain_etag(str(obj.get("ETag", ""))), None)
            token = response.get("NextContinuationToken")
            if not response.get("IsTruncated") or not token:
                return
            request["ContinuationToken"] = token

    def presign_get(self, bucket: str, key: str, expires_in: int) -> str:
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
        )

    def put_json(self, bucket: str, key: str, document: BaseModel | dict[str, Any]) -> None:
        body = document.model_dump_json(indent=2) if isinstance(document, BaseModel) else json.dumps(document, indent=2)
        self._s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json; charset=utf-8")

    def put_file(self, bucket: str, key: str, body: IO[bytes], content_type: str) -> None:
        # One PUT (a report is megabytes, not gigabytes): botocore reads a file body in chunks to sign
        # and send it; the managed transfer would buffer up to ten 8 MB parts.
        self._s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)

    def copy(self, bucket: str, source_key: str, target_key: str, if_match: str | None = None) -> bool:
        """Server-side copy; False if the source is gone. With `if_match` (an ETag), only that object
        is copied: ObjectReplaced, and nothing copied, if the key holds another one by now."""
        request: CopyObjectRequestTypeDef = {
            "Bucket": bucket,
            "Key": target_key,
            "CopySource": {"Bucket": bucket, "Key": source_key},
            "MetadataDirective": "COPY",
        }
        if if_match:
            request["CopySourceIfMatch"] = _quoted(if_match)
        try:
            self._s3.copy_object(**request)
        except ClientError as error:
            if _is_not_found(error):
                return False
            if if_match and _is_precondition_failed(error):
                raise ObjectReplaced(source_key, if_match) from None
            raise
        return True

    def move(self, bucket: str, source_key: str, target_key: str, if_match: str | None = None) -> bool:
        """Copy then delete. Safe to repeat: a source already gone is not an error. True if moved now.

        With `if_match` (an ETag) only that object moves; if the key holds another one (a newer
        upload), that one is left where it is and ObjectReplaced is raised. Both steps are
        conditional on S3's side, so an upload landing between the copy and the delete survives too
        (the copy then holds the expected object, and the newer upload stays).
        """
        if not self.copy(bucket, source_key, target_key, if_match):
            return False
        if not if_match:
            self._s3.delete_object(Bucket=bucket, Key=source_key)
            return True
        if not self._deletes_conditionally:
            # The runtime's botocore predates If-Match on DeleteObject: compare, then delete. An upload
            # landing in the milliseconds between the two would be lost; S3's own check has no window.
            current = self.head(bucket, source_key)
            if current is None:
                return True
            if current.etag != plain_etag(if_match):
                raise ObjectReplaced(source_key, if_match)
            self._s3.delete_object(Bucket=bucket, Key=source_key)
            return True
        # A conditional delete (If-Match on DeleteObject, S3 general purpose buckets since 2025; with an
        # ETag it needs s3:GetObject as well as s3:DeleteObject): no window between check and delete.
        try:
            self._s3.delete_object(Bucket=bucket, Key=source_key, IfMatch=_quoted(if_match))
        except ClientError as error:
            if _is_not_found(error):
                return True  # removed meanwhile (another run of the same archive step): copied is moved
            if _is_precondition_failed(error):
                raise ObjectReplaced(source_key, if_match) from None
            raise
        return True
