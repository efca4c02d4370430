"""The Segmind key's request budget as arithmetic: one token bucket, decisions, and the waits they mean.

Segmind limits a key per minute (free 5, pro 50) and its status calls may count, so every request
(submit, status check, result fetch) takes a token first, and the pipeline stays under the limit
instead of discovering it through 429s. The bucket is kept in GCRA form: a single number, `full_at`,
the moment the bucket would be full again. Tokens at `now` = burst - max(0, full_at - now) / interval,
so refill by elapsed time needs no writes. adapters/request_budget.py keeps `full_at` in DynamoDB for
every function to share; InMemoryRequestBudget keeps it in one process (simulations, tests).

* Never over the limit: the bucket holds at most `burst` tokens and refills `rpm - burst` a minute,
  so any 60 s window (Segmind's fixed windows included) sees at most `rpm` requests.
* Polls first: results expire an hour after submission, so a submit needs `1 + submit_reserve`
  tokens while status checks need `1 + poll_reserve` and result fetches only 1. A reserve above the
  burst means the bucket must also have stood full for a while: no status check wanted a token lately.
  Result fetches come first of all: a render is finished and paid for. Status checks leave them the
  last token.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from avatar_pipeline.errors import ProviderThrottled

RequestKind = Literal["poll", "submit", "result"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A 429 without a usable x-rate-limit-reset-at-utc: the rate window is a minute.
THROTTLED_FALLBACK_SECONDS = 30.0


def throttled_wait(error: ProviderThrottled, now: datetime) -> float:
    """Seconds until a rate-limited request may go again: to the reset time Segmind (or the budget)
    named, else half of the minute window. The one place a rate limit becomes a wait."""
    if error.reset_at is None:
        return THROTTLED_FALLBACK_SECONDS
    return max(0.0, (error.reset_at - now).total_seconds())


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
