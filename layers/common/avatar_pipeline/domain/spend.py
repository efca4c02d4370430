"""Spend: every render is billed, so each job's price is reserved of its UTC day's total before its POST.

* Reserve (Submit, after the job holds its SUBMITTING claim, right before the POST): one conditional
  write adds the job's estimated price to the day's total unless that would pass the daily ceiling
  (DAILY_SPEND_LIMIT_USD); refused, the job fails SPEND_LIMIT and is never submitted. The job record
  then marks what it reserved, so it can be given back exactly once.
* Give back: a job that never reached Segmind (refused with 429/5xx, never sent, or rejected with
  400/401/403/406) takes its mark off its record and the amount off the day.
* Settle: a job Segmind accepted costs what Segmind reports (`metrics.cost`), else its estimate; the
  day's total moves by the difference once. Every crash between two writes leaves the day counting
  more than was spent, never less: a ceiling can stop jobs a little early, never let one through late.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from aws_lambda_powertools.metrics import MetricUnit

from avatar_pipeline.domain.context import JobRef
from avatar_pipeline.domain.ports import ClosingPorts, SubmitPorts
from avatar_pipeline.money import ZERO, usd
from avatar_pipeline.observability import metrics


def utc_day(moment: datetime) -> str:
    return moment.astimezone(UTC).date().isoformat()


@dataclass(frozen=True)
class SpendRefused:
    """The job's price would take its day past the ceiling."""

    day: str
    spent: Decimal
    ceiling: Decimal
    price: Decimal

    def message(self, now: datetime) -> str:
        resets = datetime.combine(datetime.fromisoformat(self.day).date() + timedelta(days=1), datetime.min.time(), UTC)
        hours, rest = divmod(int((resets - now).total_seconds()), 3600)
        return (
            f"{self.day} (UTC) has spent {usd(self.spent)} of its {usd(self.ceiling)} daily ceiling; this job "
            f"({usd(self.price)}) would pass it, so it was not submitted. The day resets at 00:00 UTC, in "
            f"{hours} h {rest // 60} min; to raise the ceiling, update the stack parameter DailySpendLimitUsd "
            "(0 means none)"
        )


def reserve(ref: JobRef, price: Decimal, ports: SubmitPorts) -> JobRef | SpendRefused:
    """Hold `price` of today's total for the job: the job, now carrying its reservation, or a refusal."""
    ledger = ports.ledger
    if ledger is None:
        return replace(ref, estimated_cost_usd=price)
    day = utc_day(ports.clock.now())
    ceiling = ports.settings.daily_ceiling
    total = ledger.reserve(day, price, ceiling)
    if total is None:
        assert ceiling is not None  # only a ceiling refuses
        return SpendRefused(day, ledger.total(day), ceiling, price)
    ports.jobs.mark_reserved(ref.job_id, price, day)
    metrics.add_metric(name="DailySpendUsd", unit=MetricUnit.NoUnit, value=float(total))
    if ceiling:
        metrics.add_metric(name="DailySpendPercent", unit=MetricUnit.Percent, value=float(total / ceiling * 100))
    return replace(ref, estimated_cost_usd=price, spend_day=day)


def give_back(job_id: str, ports: ClosingPorts) -> None:
    """The job never reached Segmind: its reservation leaves the day (once, however often this runs)."""
    if ports.ledger is None:
        return
    taken = ports.jobs.take_back_reservation(job_id)
    if taken is not None:
        amount, day = taken
        ports.ledger.adjust(day, -amount)


def settle(ref: JobRef, actual: Decimal, ports: ClosingPorts) -> None:
    """Correct the day's total from the job's estimate to what it actually cost, once."""
    delta = actual - ref.estimated_cost_usd
    if ports.ledger is None or ref.spend_day is None or delta == ZERO:
        return
    if delta > ZERO:
        record = ports.jobs.get(ref.job_id)
        if record is not None and record.cost_settled:
            return
        ports.ledger.adjust(ref.spend_day, delta)  # before the mark: a crash here counts it twice, not never
        ports.jobs.mark_cost_settled(ref.job_id)
    elif ports.jobs.mark_cost_settled(ref.job_id):
        ports.ledger.adjust(ref.spend_day, delta)  # after the mark: a crash here keeps the estimate, the more
