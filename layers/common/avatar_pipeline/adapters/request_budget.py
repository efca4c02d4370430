"""RequestBudget: one token bucket, shared by every function, for the Segmind key's requests per minute.

Segmind limits a key per minute (free 5, pro 50) and its status calls may count, so every request
(submit, status check, result fetch) takes a token first, and the pipeline stays under the limit
instead of discovering it through 429s.

The bucket is one item in the pipeline state table, kept in GCRA form: a single number, `full_at`,
the moment the bucket would be full again. Tokens at `now` = burst - max(0, full_at - now) / interval,
so refill by elapsed time needs no writes, and taking a token is one conditional UpdateItem (two
when the bucket goes from idle to busy) with no read-modify-write race between concurrent writers.

* Never over the limit: the bucket holds at most `burst` tokens and refills `rpm - burst` a minute,
  so any 60 s window (Segmind's fixed windows included) sees at most `rpm` requests.
* Clocks: each writer uses its own clock, but tokens are capped at `burst` by construction and
  `full_at` only moves forward. A writer whose clock runs ahead by s can take at most s / interval
  tokens early, and then holds the others back by up to s; one whose clock lags only sees fewer
  tokens. On Lambda s is milliseconds: a thousandth of a token.
* Polls first: results expire an hour after submission, so a submit needs `1 + submit_reserve`
  tokens while status checks need `1 + poll_reserve` and result fetches only 1. A reserve above the
  burst means the bucket must also have stood full for a while: no status check wanted a token lately.
  Result fetches come first of all: a render is finished and paid for, and Finalize's only way to
  wait is the state machine's Retry, whose attempts run out (denied six times running under a busy
  key, the job would fail with its video made). Status checks leave them the last token.
* Fail open: if DynamoDB cannot be reached the request is granted with a warning; the provider's
  own 429 is still handled by the state machine's Retry and by SQS redelivery.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

import boto3
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError

from avatar_pipeline.errors import ProviderThrottled
from avatar_pipeline.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource

RequestKind = Literal["poll", "submit", "result"]

# Conflicting writers only ever move full_at forward, so a few attempts always settle.
MAX_ATTEMPTS = 5
_PRECISION = Decimal("0.000001")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Grant:
    kind: RequestKind
    tokens_left: float


@dataclass(frozen=True)
class Denied:
    kind: RequestKind
    retry_after_seconds: float

    def as_error(self, now: datetime, spread_key: str = "", spread_seconds: int = 0) -> ProviderThrottled:
        """The transient error a caller raises to be retried later (SQS redelivery, ASL Retry):
        ProviderThrottled, so the existing retry paths (and `retry_delay_for`) apply unchanged.

        Callers denied together would all come back together and all but one be denied again, so
        the retry time is spread by up to `spread_seconds`, deterministically per `spread_key`.
        """
        spread = zlib.crc32(spread_key.encode()) % (spread_seconds + 1) if spread_seconds > 0 else 0
        reset_at = now + timedelta(seconds=math.ceil(self.retry_after_seconds) + spread)
        return ProviderThrottled(
            f"the Segmind request budget is spent for now ({self.kind}); next token in "
            f"{self.retry_after_seconds:.1f} s",
            reset_at=reset_at,
        )


@dataclass(frozen=True)
class BucketShape:
    """The bucket's arithmetic, shared by the DynamoDB adapter and the in-memory one."""

    burst: int
    refill_per_minute: float
    submit_reserve: float = 0.0
    poll_reserve: float = 0.0

    @classmethod
    def for_limit(
        cls, requests_per_minute: int, burst: int | None = None, submit_reserve: float | None = None
    ) -> BucketShape:
        """A bucket that never lets more than `requests_per_minute` through in any 60 s window."""
        if requests_per_minute < 2:
            raise ValueError("requests_per_minute must be at least 2 (one burst token plus a refill)")
        # A tenth of the limit as burst: enough for a few checks falling due together, while the
        # refill (the rest of the limit) still carries the steady load.
        burst = burst if burst is not None else max(1, requests_per_minute // 10)
        if not 1 <= burst < requests_per_minute:
            raise ValueError("burst must be at least 1 and below requests_per_minute")
        # Polls first, but not polls only: a reserve of half the burst holds submits back while checks
        # are using the tokens, yet lets them through as soon as checks leave any slack (bench/bench_poll.py
        # runs a 200-job burst: a reserve of the whole burst or more starves submits and triples the time
        # the batch takes, no reserve lets submits crowd the checks out).
        default_reserve = max(1, burst // 2)
        reserve = float(submit_reserve if submit_reserve is not None else default_reserve)
        if reserve < 0:
            raise ValueError("submit_reserve must not be negative")
        # Result fetches outrank checks by one token where the bucket has room for three tiers (a pro key:
        # submit 3, check 2, result 1 of 5); on a small bucket checks and fetches share the last token.
        poll_reserve = max(0.0, min(1.0, reserve - 1.0))
        return cls(
            burst=burst,
            refill_per_minute=float(requests_per_minute - burst),
            submit_reserve=reserve,
            poll_reserve=poll_reserve,
        )

    @property
    def interval_seconds(self) -> float:
        """Seconds per refilled token: burst + 60 s of refill = the limit, for any 60 s window."""
        return 60.0 / self.refill_per_minute

    def allowance_per_minute(self, minutes: float) -> float:
        """Requests a minute the bucket lets through over `minutes` from full: the burst once, then the
        refill (the benchmarks' bound on throughput)."""
        return (self.burst + self.refill_per_minute * minutes) / minutes

    def tokens_needed(self, kind: RequestKind) -> float:
        """Tokens the bucket must hold for `kind` to take one: results 1, checks and submits more."""
        if kind == "submit":
            return 1.0 + self.submit_reserve
        return 1.0 + (self.poll_reserve if kind == "poll" else 0.0)

    def cutoff(self, kind: RequestKind, now: float) -> float:
        """The latest full_at at which `kind` may still take a token."""
        return now + (self.burst - self.tokens_needed(kind)) * self.interval_seconds

    def tokens(self, full_at: float | None, now: float) -> float:
        return float(self.burst) if full_at is None else self.burst - max(0.0, full_at - now) / self.interval_seconds

    def take(self, full_at: float | None, kind: RequestKind, now: float) -> float | None:
        """The new full_at after granting one token, or None when `kind` must wait."""
        cutoff = self.cutoff(kind, now)
        if full_at is None or full_at <= now:
            return now + self.interval_seconds if full_at is None or full_at <= cutoff else None
        return full_at + self.interval_seconds if full_at <= cutoff else None

    def retry_after(self, full_at: float, kind: RequestKind, now: float) -> float:
        return max(0.0, full_at - self.cutoff(kind, now))


def epoch_seconds(moment: datetime) -> float:
    return (moment - _EPOCH).total_seconds()


class InMemoryRequestBudget:
    """The same bucket in one process: for the benchmark's simulations and for tests."""

    def __init__(self, shape: BucketShape) -> None:
        self.shape = shape
        self.full_at: float | None = None

    def try_acquire(self, kind: RequestKind, now: datetime) -> Grant | Denied:
        moment = epoch_seconds(now)
        taken = self.shape.take(self.full_at, kind, moment)
        if taken is None:
            assert self.full_at is not None
            return Denied(kind, self.shape.retry_after(self.full_at, kind, moment))
        self.full_at = taken
        return Grant(kind, self.shape.tokens(taken, moment))


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
        full_at: float | None = None
        idle = True  # first assume the common case of a quiet key: the bucket is full
        for _ in range(MAX_ATTEMPTS):
            if idle:
                # Full (or never used): the bucket restarts from now; unless this kind must also see it
                # stand full a while (a submit's reserve above the burst), any idle bucket qualifies.
                limit = min(now, shape.cutoff(kind, now))
                taken = self._update(
                    "SET full_at = :next",
                    "attribute_not_exists(full_at) OR full_at <= :limit",
                    {":next": _number(now + shape.interval_seconds), ":limit": _number(limit)},
                )
            else:
                cutoff = shape.cutoff(kind, now)
                if full_at is not None and full_at > cutoff:
                    return Denied(kind, shape.retry_after(full_at, kind, now))
                taken = self._update(
                    "SET full_at = full_at + :interval",
                    "full_at > :now AND full_at <= :cutoff",
                    {
                        ":interval": _number(shape.interval_seconds),
                        ":now": _number(now),
                        ":cutoff": _number(cutoff),
                    },
                )
            if isinstance(taken, float):
                return Grant(kind, shape.tokens(taken, now))
            # The condition failed: `taken` is what the item held then; decide again from it.
            full_at = taken.full_at
            if full_at is not None and full_at > shape.cutoff(kind, now):
                return Denied(kind, shape.retry_after(full_at, kind, now))
            idle = full_at is None or full_at <= now
        # Writers kept overtaking us: the bucket is busy, so waiting one interval is the honest answer.
        return Denied(kind, shape.interval_seconds)

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
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return _Seen.from_error(error.response)
        return float(str(response["Attributes"]["full_at"]))


@dataclass(frozen=True)
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
