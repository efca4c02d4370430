"""What a render costs: one price table, so every job's price is known before its submit.

Source and date of the built-in table (2026-12-01):
* heygen-avatar-iv: flat-priced ("Avatar IV is flat-priced, so [resolution] affects pixels only, not
  cost": Segmind's model page), about $2.20 a render (the price the project was briefed with).
* heygen-avatar-v: priced by resolution ("720p (cheap drafts), 1080p (default - best quality/cost),
  4k (premium production)": Segmind's model page, which gives no figures). The figures below are
  ESTIMATES: 1080p at Avatar IV's price, 720p a quarter less, 4k half as much again. A digital twin
  trained from `video_url` adds a one-time $1.25 (Segmind's model page).
Segmind changes its prices: override the whole table with the stack parameter PriceTableJson (the
same shape as DEFAULT_PRICE_TABLE_JSON below), and the provider's own `metrics.cost`, when a status
or result carries one, beats any estimate for the job's recorded cost.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, RootModel

from avatar_pipeline.money import CENT

if TYPE_CHECKING:
    from avatar_pipeline.jobs.spec import AvatarIVJob, AvatarVJob

DIGITAL_TWIN_TRAINING = "digital_twin_training"
DEFAULT_PRICE_TABLE_JSON = json.dumps(
    {
        "heygen-avatar-iv": {"default": "2.20"},
        "heygen-avatar-v": {"default": "2.20", "720p": "1.65", "4k": "3.30", DIGITAL_TWIN_TRAINING: "1.25"},
    }
)


class ModelPrices(BaseModel):
    """USD per render: `default`, or the price for the job's resolution; plus any extras it uses."""

    model_config = ConfigDict(extra="allow", frozen=True)

    default: Decimal = Field(ge=0)

    def for_resolution(self, resolution: str | None) -> Decimal:
        extra = self.model_extra or {}
        return Decimal(str(extra[resolution])) if resolution in extra else self.default

    def surcharge(self, name: str) -> Decimal:
        return Decimal(str((self.model_extra or {}).get(name, 0)))


class PriceTable(RootModel[dict[str, ModelPrices]]):
    """{model: prices}. A model the table does not know has no price (an error for the operator)."""

    def price(self, model: str, resolution: str | None, trains_digital_twin: bool = False) -> Decimal:
        prices = self.root.get(model)
        if prices is None:
            raise KeyError(f"the price table has no price for {model}")
        total = prices.for_resolution(resolution)
        if trains_digital_twin:
            total += prices.surcharge(DIGITAL_TWIN_TRAINING)
        return total.quantize(CENT)


def job_price(table: PriceTable, spec: AvatarIVJob | AvatarVJob) -> Decimal:
    """What one job's render costs by the table (KeyError when the table does not price its model)."""
    trains_twin = getattr(spec, "video_url", None) is not None  # Avatar V trains a digital twin from it
    return table.price(spec.model, spec.resolution, trains_digital_twin=trains_twin)


@lru_cache(maxsize=4)
def price_table(table_json: str | None) -> PriceTable:
    """The table from PRICE_TABLE_JSON (the stack parameter PriceTableJson), or the built-in one."""
    return PriceTable.model_validate_json(table_json or DEFAULT_PRICE_TABLE_JSON)


def provider_cost(metrics: dict[str, object]) -> Decimal | None:
    """The cost Segmind reports for a request (`metrics.cost`, USD), if it reports a usable one."""
    value = metrics.get("cost")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        cost = Decimal(str(value))
    except ArithmeticError:
        return None
    return cost.quantize(CENT) if cost.is_finite() and cost >= 0 else None
