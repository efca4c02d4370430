"""RenderStatsTable: what the poll policy has learned about render times, one item per render class.

Items live in the pipeline state table (key `pk` = `render-stats#<model>#<resolution>`), beside the
request budget. Each completion folds one observation in (`RenderStats.observe`) with optimistic
concurrency: the write is conditional on the version that was read, and a writer that lost the race
reads again and re-applies its observation, so concurrent completions never lose an update.

Learning is an optimisation, never a reason to fail a job: if DynamoDB cannot be read the policy
falls back to the prior, and an update that cannot be written is logged and dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from avatar_pipeline.adapters.dynamodb import condition_failed, until_written
from avatar_pipeline.clock import isoformat
from avatar_pipeline.domain.poll_policy import RenderStats
from avatar_pipeline.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import DynamoDBServiceResource

# Each retry re-reads the item, so a handful settles even when many renders finish together.
MAX_ATTEMPTS = 8
_PRECISION = Decimal("0.000000001")


@dataclass(frozen=True)
class VersionedStats:
    stats: RenderStats
    version: int  # 0: no item yet


class RenderStatsTable:
    def __init__(self, table_name: str, dynamodb: DynamoDBServiceResource | None = None) -> None:
        self._table = (dynamodb or boto3.resource("dynamodb")).Table(table_name)

    def get(self, render_class: str) -> RenderStats:
        """What is known for this render class; the prior when nothing is (or DynamoDB is unreachable)."""
        try:
            return self.load(render_class).stats
        except (ClientError, BotoCoreError) as error:
            logger.warning("render stats unavailable; using the prior", extra={"error": str(error)})
            return RenderStats.prior()

    def record(self, render_class: str, render_seconds: float, now: datetime) -> RenderStats | None:
        """Fold one completed render in; the stats written, or None when the update was dropped."""

        def fold_in() -> RenderStats | None:
            current = self.load(render_class)
            updated = current.stats.observe(render_seconds)
            return updated if self._store(render_class, updated, current.version, now) else None

        try:
            written = until_written(MAX_ATTEMPTS, fold_in)
        except (ClientError, BotoCoreError) as error:
            logger.warning("render time not recorded", extra={"error": str(error), "render_class": render_class})
            return None
        if written is None:
            logger.warning(
                "render time not recorded: too many concurrent updates", extra={"render_class": render_class}
            )
        return written

    def load(self, render_class: str) -> VersionedStats:
        # Strongly consistent: the version read is the one the conditional write will be checked against.
        item = self._table.get_item(Key=_key(render_class), ConsistentRead=True).get("Item")
        if not item:
            return VersionedStats(RenderStats.prior(), 0)
        stats = RenderStats(
            log_mean=float(_decimal(item["log_mean"])),
            log_var=float(_decimal(item["log_var"])),
            observations=int(_decimal(item["observations"])),
        )
        return VersionedStats(stats, int(_decimal(item["version"])))

    def _store(self, render_class: str, stats: RenderStats, read_version: int, now: datetime) -> bool:
        item: dict[str, Any] = {
            **_key(render_class),
            "render_class": render_class,
            "log_mean": _number(stats.log_mean),
            "log_var": _number(stats.log_var),
            "observations": stats.observations,
            "version": read_version + 1,
            # For people reading the table: what the policy currently expects.
            "median_seconds": _number(stats.median_seconds),
            "updated_at": isoformat(now),
        }
        condition: dict[str, Any] = (
            {"ConditionExpression": "attribute_not_exists(pk)"}
            if read_version == 0
            else {
                "ConditionExpression": "#version = :read",
                "ExpressionAttributeNames": {"#version": "version"},
                "ExpressionAttributeValues": {":read": read_version},
            }
        )
        try:
            self._table.put_item(Item=item, **condition)
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True


def _key(render_class: str) -> dict[str, str]:
    return {"pk": f"render-stats#{render_class}"}


def _decimal(value: object) -> Decimal:
    if isinstance(value, Decimal):
        return value
    raise TypeError(f"expected a DynamoDB number, got {type(value).__name__}")


def _number(value: float) -> Decimal:
    return Decimal(repr(value)).quantize(_PRECISION)
