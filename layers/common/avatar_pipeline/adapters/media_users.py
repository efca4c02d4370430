"""Who still uses a media file in inbox/: a count of jobs per object, in the pipeline state table.

A photo may be named by many job files, in its own folder or in folders above it
(`inbox/p/intro.json` naming `shared/alice.png`, `inbox/p/shared/outro.json` naming `alice.png`).
Each job registers the media it names when Submit first reads it, and releases them when it ends;
the file leaves inbox/ when the last user releases it. Registering and releasing cost the same
whatever the number of jobs sharing the file (one transaction each), where reading the job files
around it would cost more with every sibling.

Two items per (object, job) pair, written together in one transaction so the count stays exact
whatever is delivered or retried twice: a marker `media#user#<job id>#<bucket>/<key>` (the job uses
the file) and the count `media#count#<bucket>/<key>`. A duplicate register finds its marker and
changes nothing; a duplicate release finds none and changes nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

# Conflicting transactions on one count (jobs sharing a photo ending together) are retried this often;
# DynamoDB cancels a transaction rather than making it wait, so a few attempts always settle.
MAX_ATTEMPTS = 8
# Items outlive any job by far (a job ends within hours); the TTL only sweeps what a lost job left.
ITEM_LIFETIME = timedelta(days=30)


def count_key(bucket: str, key: str) -> str:
    return f"media#count#{bucket}/{key}"


def user_key(job_id: str, bucket: str, key: str) -> str:
    return f"media#user#{job_id}#{bucket}/{key}"


class MediaUsers:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self._table = table_name
        self._dynamodb: DynamoDBClient = client or boto3.client("dynamodb")

    def register(self, job_id: str, bucket: str, media_keys: list[str], now: datetime) -> None:
        """The job uses these files (idempotent)."""
        expires = str(int((now + ITEM_LIFETIME).timestamp()))
        for key in dict.fromkeys(media_keys):
            marker = user_key(job_id, bucket, key)
            self._transact(
                [
                    {
                        "Put": {
                            "TableName": self._table,
                            "Item": {"pk": {"S": marker}, "expires_at": {"N": expires}},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    self._count_change(bucket, key, +1, expires),
                ],
                marker=marker,
                marker_wanted=True,
            )

    def release(self, job_id: str, bucket: str, key: str, now: datetime) -> int:
        """The job no longer uses the file (idempotent). Returns how many jobs still do."""
        expires = str(int((now + ITEM_LIFETIME).timestamp()))
        marker = user_key(job_id, bucket, key)
        self._transact(
            [
                {
                    "Delete": {
                        "TableName": self._table,
                        "Key": {"pk": {"S": marker}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                },
                self._count_change(bucket, key, -1, expires),
            ],
            marker=marker,
            marker_wanted=False,
        )
        return self.users(bucket, key)

    def users(self, bucket: str, key: str) -> int:
        item = self._get(count_key(bucket, key))
        return max(0, int(item["users"]["N"])) if item and "users" in item else 0

    # --- plumbing ----------------------------------------------------------------------------------
    def _count_change(self, bucket: str, key: str, delta: int, expires: str) -> TransactWriteItemTypeDef:
        return {
            "Update": {
                "TableName": self._table,
                "Key": {"pk": {"S": count_key(bucket, key)}},
                "UpdateExpression": "ADD #users :delta SET expires_at = :expires",
                "ExpressionAttributeNames": {"#users": "users"},
                "ExpressionAttributeValues": {":delta": {"N": str(delta)}, ":expires": {"N": expires}},
            }
        }

    def _transact(self, items: list[TransactWriteItemTypeDef], marker: str, marker_wanted: bool) -> None:
        """Write both items, or find the marker already as wanted (the duplicate case); a cancellation
        for any other reason (a concurrent transaction on the same count) is retried."""
        for _ in range(MAX_ATTEMPTS):
            try:
                self._dynamodb.transact_write_items(TransactItems=items)
                return
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
            if self._exists(marker) == marker_wanted:
                return
        raise RuntimeError("the media users count stayed contended; the caller's retry will try again")

    def _exists(self, pk: str) -> bool:
        return self._get(pk) is not None

    def _get(self, pk: str) -> dict[str, Any] | None:
        response = self._dynamodb.get_item(TableName=self._table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        item: dict[str, Any] | None = response.get("Item")
        return item
