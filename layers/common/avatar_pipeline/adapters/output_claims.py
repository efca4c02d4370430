"""Which job owns an output path: one item per path stem in the pipeline state table.

A job writes its video, its captions (`.srt`) and its manifest (`.json`) under one stem
(`campaign-a/alice` for `campaign-a/alice.mp4`); an `.mp4` and a `.webm` job with the same stem would
share the manifest and captions. So a job claims the stem before it is submitted, and a second job
that wants it is refused (OUTPUT_CONFLICT) instead of silently replacing the first one's video, or
leaving a manifest that describes the other job's video. The claim is kept after success (the video
is there) and given back on failure; the domain decides when an old claim may be taken over.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import ClientError

from avatar_pipeline.adapters.dynamodb import condition_failed

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


def claim_key(bucket: str, stem: str) -> str:
    return f"output#{bucket}/{stem}"


class OutputClaims:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self._table = table_name
        self._dynamodb: DynamoDBClient = client or boto3.client("dynamodb")

    def claim(self, job_id: str, bucket: str, stem: str) -> str | None:
        """Claim the stem for `job_id` (idempotent). None when it is ours; else the job that holds it."""
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item={"pk": {"S": claim_key(bucket, stem)}, "job_id": {"S": job_id}},
                ConditionExpression="attribute_not_exists(pk) OR job_id = :job",
                ExpressionAttributeValues={":job": {"S": job_id}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not condition_failed(error):
                raise
            # The item that failed the condition comes back in wire format (ALL_OLD).
            response: Any = error.response
            holder = (response.get("Item") or {}).get("job_id", {}).get("S")
            return str(holder) if holder else self.holder(bucket, stem)
        return None

    def take_over(self, job_id: str, bucket: str, stem: str, from_job: str) -> bool:
        """Move the claim from `from_job` to `job_id`; False if someone else changed it meanwhile."""
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item={"pk": {"S": claim_key(bucket, stem)}, "job_id": {"S": job_id}},
                ConditionExpression="job_id = :previous",
                ExpressionAttributeValues={":previous": {"S": from_job}},
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def release(self, job_id: str, bucket: str, stem: str) -> None:
        """Give the stem back if `job_id` holds it (a failed job's path is free for the next upload)."""
        try:
            self._dynamodb.delete_item(
                TableName=self._table,
                Key={"pk": {"S": claim_key(bucket, stem)}},
                ConditionExpression="job_id = :job",
                ExpressionAttributeValues={":job": {"S": job_id}},
            )
        except ClientError as error:
            if not condition_failed(error):
                raise

    def holder(self, bucket: str, stem: str) -> str | None:
        response = self._dynamodb.get_item(
            TableName=self._table, Key={"pk": {"S": claim_key(bucket, stem)}}, ConsistentRead=True
        )
        item = response.get("Item")
        return item["job_id"]["S"] if item and "job_id" in item else None
