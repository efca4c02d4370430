"""SpendLedger: what each UTC day has spent on renders, one item per day in the pipeline state table.

`spend#<YYYY-MM-DD>` holds the day's `total` (USD, a DynamoDB number: exact). A reservation is one
conditional UpdateItem, `ADD total :amount` only if the total stays within the ceiling: however many
workers submit at once, DynamoDB applies them one at a time and refuses the one that would pass it.
No read precedes the write, so there is nothing to race.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

import boto3
from botocore.exceptions import ClientError

from avatar_pipeline.adapters.dynamodb import condition_failed
from avatar_pipeline.money import ZERO

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, UpdateItemInputTypeDef

# Days stay readable for two months (the dashboard, `avatar-pipeline status`), then expire.
DAY_LIFETIME = timedelta(days=60)


def day_key(day: str) -> str:
    return f"spend#{day}"


class SpendLedger:
    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self._table = table_name
        self._dynamodb: DynamoDBClient = client or boto3.client("dynamodb")

    def reserve(self, day: str, amount: Decimal, ceiling: Decimal | None) -> Decimal | None:
        """Add `amount` to the day unless that takes it past `ceiling`: the new total, or None (refused)."""
        if ceiling is not None and amount > ceiling:
            return None
        values: dict[str, AttributeValueTypeDef] = {":amount": {"N": str(amount)}, ":expires": {"N": _expiry(day)}}
        request: UpdateItemInputTypeDef = {
            "TableName": self._table,
            "Key": {"pk": {"S": day_key(day)}},
            "UpdateExpression": "ADD #total :amount SET expires_at = :expires",
            "ExpressionAttributeNames": {"#total": "total"},
            "ExpressionAttributeValues": values,
            "ReturnValues": "UPDATED_NEW",
        }
        if ceiling is not None:
            request["ConditionExpression"] = "attribute_not_exists(#total) OR #total <= :room"
            values[":room"] = {"N": str(ceiling - amount)}
        try:
            response = self._dynamodb.update_item(**request)
        except ClientError as error:
            if condition_failed(error):
                return None
            raise
        return Decimal(response["Attributes"]["total"]["N"])

    def total(self, day: str) -> Decimal:
        item = self._dynamodb.get_item(TableName=self._table, Key={"pk": {"S": day_key(day)}}, ConsistentRead=True)
        total = item.get("Item", {}).get("total")
        return Decimal(total["N"]) if total else ZERO

    def adjust(self, day: str, delta: Decimal) -> None:
        """Move the day's total by `delta` (a reservation given back, or corrected to the actual cost)."""
        self._dynamodb.update_item(
            TableName=self._table,
            Key={"pk": {"S": day_key(day)}},
            UpdateExpression="ADD #total :delta SET expires_at = :expires",
            ExpressionAttributeNames={"#total": "total"},
            ExpressionAttributeValues={":delta": {"N": str(delta)}, ":expires": {"N": _expiry(day)}},
        )


def _expiry(day: str) -> str:
    end_of_day = date.fromisoformat(day) + timedelta(days=1)
    return str(int(datetime.combine(end_of_day + DAY_LIFETIME, time(), UTC).timestamp()))
