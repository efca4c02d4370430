"""What a campaign would do, before anything is submitted: which rows render, fail or are skipped by
its spend ceiling, what they cost by the price table, and how long they take at the key's request rate.

The same arithmetic serves `avatar-pipeline campaign plan` (offline) and a campaign's dry run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from avatar_pipeline.campaigns.rows import RowFailure, RowJob
from avatar_pipeline.domain.pricing import PriceTable, job_price
from avatar_pipeline.errors import ErrorCode, InvalidCampaign
from avatar_pipeline.money import ZERO, usd

# Measured (bench/results, the throughput benchmark): Segmind requests per finished job, the submit
# and its status checks with the adaptive poll schedule. The pipeline spends its request budget at
# REFILL_SHARE of the key's rate, to stay clear of 429s; the last renders then take a render's time.
REQUESTS_PER_JOB = 4.67
REFILL_SHARE = 0.9
RENDER_TAIL_MINUTES = 2.5


def estimated_minutes(renders: int, requests_per_minute: int) -> float:
    """How long `renders` jobs take at the key's rate: the requests they need, then the last render."""
    if renders <= 0:
        return 0.0
    return renders * REQUESTS_PER_JOB / (REFILL_SHARE * requests_per_minute) + RENDER_TAIL_MINUTES


@dataclass
class SpendCeiling:
    """A campaign's max_spend_usd: rows are admitted in order while their prices fit under it."""

    limit: Decimal | None
    committed: Decimal = ZERO

    def admits(self, price: Decimal) -> bool:
        """True (and the price counted) when the row fits; False when it would pass the ceiling."""
        if self.limit is not None and self.committed + price > self.limit:
            return False
        self.committed += price
        return True

    def refusal(self, row: RowJob, price: Decimal) -> RowFailure:
        assert self.limit is not None
        message = (
            f"row {row.number} (id {row.row_id}): its estimated price {usd(price)} would take the campaign past "
            f"its max_spend_usd of {usd(self.limit)} ({usd(self.committed)} already planned); not submitted"
        )
        return RowFailure(row.number, row.row_id, ErrorCode.SPEND_LIMIT, message, row.job_id)


@dataclass
class CampaignPlan:
    rows: int = 0
    renders: int = 0  # valid rows under the ceiling: what would be submitted
    failed: int = 0
    skipped: int = 0
    estimated_cost_usd: Decimal = ZERO
    # Rows that would not render (FAILED with their code, or SKIPPED with SPEND_LIMIT), in row order.
    problems: list[RowFailure] = field(default_factory=list)

    def minutes(self, requests_per_minute: int) -> float:
        return estimated_minutes(self.renders, requests_per_minute)


def plan_campaign(
    rows: Iterable[RowJob | RowFailure], prices: PriceTable, max_spend_usd: Decimal | None
) -> CampaignPlan:
    plan = CampaignPlan()
    ceiling = SpendCeiling(max_spend_usd)
    for row in rows:
        plan.rows += 1
        if isinstance(row, RowFailure):
            plan.failed += 1
            plan.problems.append(row)
            continue
        price = price_of(row, prices)
        if not ceiling.admits(price):
            plan.skipped += 1
            plan.problems.append(ceiling.refusal(row, price))
            continue
        plan.renders += 1
        plan.estimated_cost_usd += price
    return plan


def price_of(row: RowJob, prices: PriceTable) -> Decimal:
    try:
        return job_price(prices, row.spec)
    except KeyError:
        raise InvalidCampaign(f"the price table has no price for {row.spec.model}; add one") from None
