"""RequestBudget: the token bucket of domain/request_budget.py, shared by every function through DynamoDB.

The bucket is one item in the pipeline state table holding `full_at` (GCRA form: see the domain
module). Taking a token is one conditional UpdateItem (two when the bucket goes from idle to busy)
with no read-modify-write race between concurrent writers.

* Clocks: each writer uses its own clock, but tokens are capped at `burst` by construction and
  `full_at` only moves forward. A writer whose clock runs ahead by s can take at most s / interval
  tokens early, and then holds the others back by up to s; one whose clock lags only sees fewer
  tokens. On Lambda s is milliseconds: a thousandth of a token.
* Fail open: if DynamoDB cannot be reached the request is granted with a warning; the provider's
  own 429 is still turned into a wait by Submit, Poll and Finalize.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from avatar_pipeline.adapters.dynamodb import condition_failed, until_written
from avatar_pipeline.domain.request_budget import BucketShape, Denied, Grant, RequestKind, epoch_seconds
from avatar_pipeline.observability import logger

if TYPE_CHECKING:
    from datetime import datetime

    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource

# Conflicting writers only ever move full_at forward, so a few attempts always settle.
MAX_ATTEMPTS = 5
_PRECISION = Decimal("0.000001")


class RequestBudget:
    """The shared bucket, as item pk=`request-budget#<name>` in the pipeline state table."""

    def __init__(
        self,
        table_name: str,
        requests_per_minute: int,
        *,
        burst: int | None = None,
        submit_reserve: float | None = None,
        name: str = "segmind",
        dynamodb: DynamoDBServiceResource | None = None,
    ) -> None:
        self.shape = BucketShape.for_limit(requests_per_minute, burst, submit_reserve)
        self._table = (dynamodb or boto3.resource("dynamodb")).Table(table_name)
        self._key = {"pk": f"request-budget#{name}"}

    def try_acquire(self, kind: RequestKind, now: datetime) -> Grant | Denied:
        try:
            return self._acquire(kind, epoch_seconds(now))
        except (ClientError, BotoCoreError) as error:
            logger.warning("request budget unavailable; granting without it", extra={"error": str(error)})
            return Grant(kind, math.nan)

    def _acquire(self, kind: RequestKind, now: float) -> Grant | Denied:
        shape = self.shape
        # First assume the common case of a quiet key: the bucket is full. A lost write tells what the
        # item held then, and the next attempt decides from that.
        seen = _Seen(full_at=None)

        def take_one() -> Grant | Denied | None:
            if seen.full_at is not None and seen.full_at > shape.cutoff(kind, now):
                return Denied(kind, shape.retry_after(seen.full_at, kind, now))
            taken = self._take(kind, now, idle=seen.full_at is None or seen.full_at <= now)
            if isinstance(taken, float):
                return Grant(kind, shape.tokens(taken, now))
            seen.full_at = taken.full_at
            return None

        # Writers that kept overtaking us mean a busy bucket: waiting one interval is the honest answer.
        return until_written(MAX_ATTEMPTS, take_one) or Denied(kind, shape.interval_seconds)

    def _take(self, kind: RequestKind, now: float, idle: bool) -> float | _Seen:
        """One conditional write taking a token: the new full_at, or what the item held if it lost."""
        shape = self.shape
        if idle:
            # Full (or never used): the bucket restarts from now; unless this kind must also see it
            # stand full a while (a submit's reserve above the burst), any idle bucket qualifies.
            limit = min(now, shape.cutoff(kind, now))
            return self._update(
                "SET full_at = :next",
                "attribute_not_exists(full_at) OR full_at <= :limit",
                {":next": _number(now + shape.interval_seconds), ":limit": _number(limit)},
            )
        return self._update(
            "SET full_at = full_at + :interval",
            "full_at > :now AND full_at <= :cutoff",
            {
                ":interval": _number(shape.interval_seconds),
                ":now": _number(now),
                ":cutoff": _number(shape.cutoff(kind, now)),
            },
        )

    def _update(self, expression: str, condition: str, values: dict[str, Any]) -> float | _Seen:
        try:
            response = self._table.update_item(
                Key=self._key,
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="UPDATED_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not condition_failed(error):
                raise
            return _Seen.from_error(error.response)
        return float(str(response["Attributes"]["full_at"]))


@dataclass
class _Seen:
    """The item as a failed condition found it (DynamoDB returns it in wire format)."""

    full_at: float | None

    @classmethod
    def from_error(cls, response: Any) -> _Seen:
        raw = response.get("Item") or {}
        value = TypeDeserializer().deserialize(raw["full_at"]) if "full_at" in raw else None
        return cls(float(value) if isinstance(value, Decimal) else None)


def _number(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_PRECISION)
