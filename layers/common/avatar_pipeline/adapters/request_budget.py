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
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from avatar_pipeline.adapters.dynamodb import condition_failed, until_written
from avatar_pipeline.domain.request_budget import (
    LAST_SUBMITS_SECONDS,
    BucketShape,
    Denied,
    Grant,
    Queues,
    RequestKind,
    Tier,
    epoch_seconds,
)
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
        seen = _Seen(full_at=None, known=False)

        def take_one() -> Grant | Denied | None:
            if seen.known and shape.take(seen.full_at, shape.ranks_as(kind, seen.queues, now), now) is None:
                return self._denied(kind, now, seen)
            taken = self._take(kind, now, idle=seen.full_at is None or seen.full_at <= now)
            if not taken.written:
                seen.full_at, seen.queues, seen.known = taken.full_at, taken.queues, True
                return None
            assert taken.full_at is not None
            waiting = shape.submits_waiting(taken.queues.submits_until, now)
            return Grant(kind, shape.tokens(taken.full_at, now), waiting)

        # Writers that kept overtaking us mean a busy bucket: waiting one interval is the honest answer.
        return until_written(MAX_ATTEMPTS, take_one) or Denied(kind, shape.interval_seconds)

    def _denied(self, kind: RequestKind, now: float, seen: _Seen) -> Denied:
        """The bucket cannot grant `kind` now: it books its turn in its queue."""
        shape = self.shape
        assert seen.full_at is not None
        retry_after = shape.retry_after(seen.full_at, shape.ranks_as(kind, seen.queues, now), now)
        turn, queue_end = self._book_turn(kind, now, now + retry_after, seen.queues.end(kind))
        queues = seen.queues.with_end(kind, queue_end)
        return Denied(kind, turn - now, shape.submits_waiting(queues.submits_until, now))

    def _book_turn(
        self, kind: RequestKind, now: float, earliest: float, queue_until: float | None
    ) -> tuple[float, float | None]:
        """The next free turn after the last one booked in `kind`'s queue (one conditional write, another
        if a concurrent request booked first): the moment it may come back, and the queue's end."""
        shape, name = self.shape, _queue_attribute(kind)
        for _ in range(MAX_ATTEMPTS):
            turn, end = shape.turn(queue_until, earliest, now)
            if end is None:
                return turn, queue_until  # too far ahead to hold: ask again then
            condition = f"attribute_not_exists({name})" if queue_until is None else f"{name} = :seen"
            values = {":end": _number(end)} | ({} if queue_until is None else {":seen": _number(queue_until)})
            written = self._update(f"SET {name} = :end", condition, values)
            if written.written:
                return turn, end
            queue_until = written.queues.end(kind)
        return earliest, queue_until  # a crowd booking at once: come back when a token could be free

    def _take(self, kind: RequestKind, now: float, idle: bool) -> _Seen:
        """One conditional write taking a token: the item after it, or what it held if the write lost.

        The tier a request takes tokens at depends on the queues (BucketShape.ranks_as), so the
        condition reads them too: it passes at the stricter tier's cutoff always, and at the looser
        one's when the queues allow it."""
        tiers = _tiers(kind)
        values: dict[str, Any] = {}
        for placeholder, tier in (":strict", tiers.strict), (":free", tiers.free):
            cutoff = self.shape.cutoff(tier, now)
            values[placeholder] = _number(min(now, cutoff) if idle else cutoff)
        if tiers.held_back:
            values |= {
                ":at": _number(now),
                ":from": _number(now - LAST_SUBMITS_SECONDS),
                ":to": _number(now + LAST_SUBMITS_SECONDS),
            }
            rank = f"(full_at <= :strict OR (full_at <= :free AND NOT ({tiers.held_back})))"
        else:
            del values[":free"]
            rank = "full_at <= :strict"
        if idle:
            # Full (or never used): the bucket restarts from now; unless this kind must also see it
            # stand full a while (a reserve above the burst), any idle bucket qualifies.
            values[":next"] = _number(now + self.shape.interval_seconds)
            return self._update("SET full_at = :next", f"attribute_not_exists(full_at) OR {rank}", values)
        values |= {":interval": _number(self.shape.interval_seconds), ":now": _number(now)}
        return self._update("SET full_at = full_at + :interval", f"full_at > :now AND {rank}", values)

    def _update(self, expression: str, condition: str, values: dict[str, Any]) -> _Seen:
        """The item after the write (written), or as the failed condition found it."""
        try:
            response = self._table.update_item(
                Key=self._key,
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if not condition_failed(error):
                raise
            return _Seen.from_item(error.response.get("Item") or {}, written=False)
        return _Seen.from_item(response["Attributes"], written=True, plain=True)


def _queue_attribute(kind: RequestKind) -> str:
    """The item's attribute holding the end of `kind`'s queue of turns."""
    return "submits_until" if kind == "submit" else "checks_until"


@dataclass(frozen=True)
class _Tiers:
    """A kind's tiers (BucketShape.ranks_as) as a condition: `free` unless `held_back` holds."""

    strict: Tier
    free: Tier
    held_back: str = ""


def _tiers(kind: RequestKind) -> _Tiers:
    if kind != "submit":
        return _Tiers(kind, kind)
    # Its reserve only while a check or fetch holds a turn, and not for the last few queued submits.
    checks_waiting = "attribute_exists(checks_until) AND checks_until > :at"
    last_few = "attribute_exists(submits_until) AND submits_until >= :from AND submits_until <= :to"
    return _Tiers("submit", "result", f"{checks_waiting} AND NOT ({last_few})")


@dataclass
class _Seen:
    """The bucket's item: after our write (written), or as a failed condition found it."""

    full_at: float | None
    queues: Queues = field(default_factory=Queues)
    known: bool = True
    written: bool = False

    @classmethod
    def from_item(cls, item: Any, written: bool, plain: bool = False) -> _Seen:
        # A failed condition returns the item in DynamoDB's wire format; the resource's answer is plain.
        values = item if plain else {name: TypeDeserializer().deserialize(raw) for name, raw in item.items()}
        queues = Queues(_float(values.get("submits_until")), _float(values.get("checks_until")))
        return cls(_float(values.get("full_at")), queues, known=True, written=written)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, Decimal | int | float) and not isinstance(value, bool) else None


def _number(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_PRECISION)
