"""S3 objects: read with a cap, sniff, presign, write JSON documents, move inputs between folders."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError
from pydantic import BaseModel

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


class ObjectMissing(LookupError):
    pass


class ObjectTooLarge(ValueError):
    def __init__(self, key: str, size: int, limit: int) -> None:
        super().__init__(f"{key} is {size} bytes, over the {limit}-byte limit")
        self.size = size
        self.limit = limit


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str
    content_type: str | None


def _is_not_found(error: ClientError) -> bool:
    return str(error.response.get("Error", {}).get("Code")) in _NOT_FOUND


class S3Storage:
    def __init__(self, client: S3Client) -> None:
        self._s3 = client

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
            etag=str(head.get("ETag", "")).strip('"'),
            content_type=head.get("ContentType"),
        )

    def read(self, bucket: str, key: str, max_bytes: int) -> bytes:
        try:
            response = self._s3.get_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if _is_not_found(error):
                raise ObjectMissing(key) from None
            raise
        size = int(response["ContentLength"])
        if size > max_bytes:
            response["Body"].close()
            raise ObjectTooLarge(key, size, max_bytes)
        return response["Body"].read()

    def read_prefix(self, bucket: str, key: str, length: int) -> bytes:
        """The first bytes of an object, for sniffing its format by content."""
        try:
            response = self._s3.get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{length - 1}")
        except ClientError as error:
            if _is_not_found(error):
                raise ObjectMissing(key) from None
            raise
        return response["Body"].read(length)

    def list_keys(self, bucket: str, prefix: str, limit: int) -> list[str]:
        """Keys directly under a folder-like prefix (not in its subfolders), at most `limit`."""
        response = self._s3.list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/", MaxKeys=limit)
        return [str(obj["Key"]) for obj in response.get("Contents", [])]

    def presign_get(self, bucket: str, key: str, expires_in: int) -> str:
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_in
        )

    def put_json(self, bucket: str, key: str, document: BaseModel | dict[str, Any]) -> None:
        body = document.model_dump_json(indent=2) if isinstance(document, BaseModel) else json.dumps(document, indent=2)
        self._s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ContentType="application/json; charset=utf-8")

    def copy(self, bucket: str, source_key: str, target_key: str) -> bool:
        """Server-side copy; False if the source is gone."""
        try:
            self._s3.copy_object(
                Bucket=bucket,
                Key=target_key,
                CopySource={"Bucket": bucket, "Key": source_key},
                MetadataDirective="COPY",
            )
        except ClientError as error:
            if _is_not_found(error):
                return False
            raise
        return True

    def move(self, bucket: str, source_key: str, target_key: str) -> bool:
        """Copy then delete. Safe to repeat: a source already gone is not an error. True if moved now."""
        if not self.copy(bucket, source_key, target_key):
            return False
        self._s3.delete_object(Bucket=bucket, Key=source_key)
        return True
