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
  last token. The submits' reserve holds only while a check or fetch holds a turn (below), and not
  for the last few submits of a burst (BucketShape.ranks_as).
* A denied request books a turn: the bucket also keeps the end of two queues of turns one token
  interval apart, for submits (`submits_until`) and for checks and result fetches (`checks_until`).
  The request comes back at its turn, not at a random moment (denied submits used to come back up
  to two minutes later, leaving tokens idle at the end of a burst; denied checks asked again every
  few seconds, dozens of times each). While any submit has a turn ahead every decision says so
  (`submits_waiting`): the poll policy then spends fewer tokens on checks that would only say
  "still rendering" (domain/poll_policy.py).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from avatar_pipeline.errors import ProviderThrottled

RequestKind = Literal["poll", "submit", "result"]
# The tier a request takes tokens at (BucketShape.ranks_as): a kind's own, or another kind's.
Tier = RequestKind

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# A 429 without a usable x-rate-limit-reset-at-utc: the rate window is a minute.
THROTTLED_FALLBACK_SECONDS = 30.0
# While no more than this many seconds of turns are booked, the few submits left in the queue go
# before status checks and result fetches: otherwise the last of a burst wait for the whole wave of
# checks and fetches of the renders before them to pass, and then render at the very end while tokens
# sit idle. A longer queue (many submits waiting) leaves checks their precedence, so no render waits
# long for its check (its deadline runs; Segmind keeps results an hour).
LAST_SUBMITS_SECONDS = 30.0
# The furthest turn a denied request is given: SQS delays a message by at most 15 minutes. A request
# beyond it books nothing (it would hold a turn it cannot keep) and asks again after that long.
MAX_TURN_AHEAD_SECONDS = 900.0


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
    # Other submits hold turns after now: a token spent now is one a new render waits for.
    submits_waiting: bool = False


@dataclass(frozen=True)
class Denied:
    kind: RequestKind
    # The wait until the turn the bucket booked for it.
    retry_after_seconds: float
    submits_waiting: bool = False

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

    def tokens_needed(self, kind: Tier) -> float:
        """Tokens the bucket must hold for `kind` to take one: results 1, checks and submits more."""
        if kind == "submit":
            return 1.0 + self.submit_reserve
        return 1.0 + (self.poll_reserve if kind == "poll" else 0.0)

    def cutoff(self, kind: Tier, now: float) -> float:
        """The latest full_at at which `kind` may still take a token."""
        return now + (self.burst - self.tokens_needed(kind)) * self.interval_seconds

    def tokens(self, full_at: float | None, now: float) -> float:
        return float(self.burst) if full_at is None else self.burst - max(0.0, full_at - now) / self.interval_seconds

    def take(self, full_at: float | None, kind: Tier, now: float) -> float | None:
        """The new full_at after granting one token, or None when `kind` must wait."""
        cutoff = self.cutoff(kind, now)
        if full_at is None or full_at <= now:
            return now + self.interval_seconds if full_at is None or full_at <= cutoff else None
        return full_at + self.interval_seconds if full_at <= cutoff else None

    def retry_after(self, full_at: float, kind: Tier, now: float) -> float:
        return max(0.0, full_at - self.cutoff(kind, now))

    def turn(self, queue_until: float | None, earliest: float, now: float) -> tuple[float, float | None]:
        """A denied request's turn in its queue: (the moment it may come back, the queue's new end, or
        None when the turn is too far ahead to book). Turns are one token interval apart, after the last
        one booked and not before the bucket could grant it (`earliest`): the queue's length is the backlog."""
        start = max(earliest, queue_until or earliest)
        if start - now > MAX_TURN_AHEAD_SECONDS:
            return now + MAX_TURN_AHEAD_SECONDS, None
        return start, start + self.interval_seconds

    def submits_waiting(self, submits_until: float | None, now: float) -> bool:
        """Some submit holds a turn after now (the queue ends one interval after its last turn)."""
        return submits_until is not None and submits_until - self.interval_seconds > now

    def ranks_as(self, kind: RequestKind, queues: Queues, now: float) -> Tier:
        """The tier `kind` takes tokens at now. A submit leaves its reserve only while a check or a
        result fetch holds a turn (it is theirs: with none waiting it would only leave tokens idle, as
        when submits coming back together find a full bucket and may take three of its five); and the
        last few submits of a queue leave none at all: while its end is within LAST_SUBMITS_SECONDS of
        now (ahead, or just past: the last turns may come back a little late)."""
        if kind != "submit":
            return kind
        checks_waiting = queues.checks_until is not None and queues.checks_until > now
        last_few = queues.submits_until is not None and abs(queues.submits_until - now) <= LAST_SUBMITS_SECONDS
        return "submit" if checks_waiting and not last_few else "result"


@dataclass
class Queues:
    """The ends of the bucket's two queues of turns: denied submits, and denied checks and fetches."""

    submits_until: float | None = None
    checks_until: float | None = None

    def end(self, kind: RequestKind) -> float | None:
        return self.submits_until if kind == "submit" else self.checks_until

    def with_end(self, kind: RequestKind, end: float | None) -> Queues:
        if kind == "submit":
            return Queues(end, self.checks_until)
        return Queues(self.submits_until, end)


def epoch_seconds(moment: datetime) -> float:
    return (moment - _EPOCH).total_seconds()


class InMemoryRequestBudget:
    """The same bucket in one process: for the benchmark's simulations and for tests."""

    def __init__(self, shape: BucketShape) -> None:
        self.shape = shape
        self.full_at: float | None = None
        self.queues = Queues()

    @property
    def submits_until(self) -> float | None:
        return self.queues.submits_until

    def try_acquire(self, kind: RequestKind, now: datetime) -> Grant | Denied:
        moment = epoch_seconds(now)
        rank = self.shape.ranks_as(kind, self.queues, moment)
        taken = self.shape.take(self.full_at, rank, moment)
        if taken is None:
            assert self.full_at is not None
            retry_after = self.shape.retry_after(self.full_at, rank, moment)
            turn, end = self.shape.turn(self.queues.end(kind), moment + retry_after, moment)
            self.queues = self.queues.with_end(kind, end if end is not None else self.queues.end(kind))
            return Denied(kind, turn - moment, self.shape.submits_waiting(self.submits_until, moment))
        self.full_at = taken
        return Grant(kind, self.shape.tokens(taken, moment), self.shape.submits_waiting(self.submits_until, moment))
