"""Who still uses a media file in inbox/: the set of job ids per object, in the pipeline state table.

A photo may be named by many job files, in its own folder or in folders above it
(`inbox/p/intro.json` naming `shared/alice.png`, `inbox/p/shared/outro.json` naming `alice.png`).
Each job registers the media it names when Submit first reads it, and releases them when it ends;
the file leaves inbox/ when the last user releases it. Registering and releasing cost one write
each whatever the number of jobs sharing the file, where reading the job files around it would cost
more with every sibling.

One item per object, `media#<bucket>/<key>`, holding a string set of the job ids using it: adding
or removing a job id is one atomic UpdateItem that is naturally idempotent (a duplicate delivery
adds the id again, a retried ending removes it again, and neither changes the set), and the update
answers with the set as it now is. An item holds up to 400 KB: about 8,000 job ids at once, far more
job files than share one photo (a campaign's rows register as one user).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import boto3

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# Items outlive any job by far (a job ends within hours); the TTL only sweeps what a lost job left.
ITEM_LIFETIME = timedelta(days=30)


def users_key(bucket: str, key: str) -> str:
    return f"media#{bucket}/{key}"


class MediaUsers:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self._table = table_name
        self._dynamodb: DynamoDBClient = client or boto3.client("dynamodb")

    def register(self, job_id: str, bucket: str, media_keys: list[str], now: datetime) -> None:
        """The job uses these files (idempotent)."""
        expires = str(int((now + ITEM_LIFETIME).timestamp()))
        for key in dict.fromkeys(media_keys):
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"pk": {"S": users_key(bucket, key)}},
                UpdateExpression="ADD #jobs :job SET expires_at = :expires",
                ExpressionAttributeNames={"#jobs": "jobs"},
                ExpressionAttributeValues={":job": {"SS": [job_id]}, ":expires": {"N": expires}},
            )

    def release(self, job_id: str, bucket: str, key: str, now: datetime) -> int:
        """The job no longer uses the file (idempotent). Returns how many jobs still do."""
        response = self._dynamodb.update_item(
            TableName=self._table,
            Key={"pk": {"S": users_key(bucket, key)}},
            UpdateExpression="DELETE #jobs :job SET expires_at = :expires",
            ExpressionAttributeNames={"#jobs": "jobs"},
            ExpressionAttributeValues={
                ":job": {"SS": [job_id]},
                ":expires": {"N": str(int((now + ITEM_LIFETIME).timestamp()))},
            },
            ReturnValues="ALL_NEW",
        )
        # DynamoDB drops a set's attribute when its last member goes.
        return len(response.get("Attributes", {}).get("jobs", {}).get("SS", []))
