"""CampaignsTable: a campaign's record, its rows and its media, under one partition key (the campaign id).

  pk = campaign id, sk = "campaign"        the record: its run, status and the run's counters
  pk = campaign id, sk = "row#<row id>"    one per row: its run, status, job, error and cost
  pk = campaign id, sk = "media#<key>"     one per media file the rows use (leaves inbox/ with it)

A row is counted into its campaign's counters in the same transaction that moves the row, under a
condition on the row: entering a row into a run, and ending it, count once however often they run.

A report is rebuilt from the rows at any time by one Query, a page at a time, of the local secondary
index ROWS_IN_ORDER (pk, number): only row items carry `number` (their place in the rows file), so
the index holds the rows alone, in row order, and no reader ever sorts them in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from avatar_pipeline.adapters.dynamodb import condition_failed
from avatar_pipeline.campaigns.records import (
    CampaignRecord,
    CampaignStatus,
    RowCounts,
    RowRecord,
    RowStatus,
    SampleGate,
)
from avatar_pipeline.clock import isoformat
from avatar_pipeline.domain.ports import RowEnd

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.service_resource import Table
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef

RECORD = "campaign"
ROW = "row#"
MEDIA = "media#"
ROWS_IN_ORDER = "rows_in_order"
# Rows per page of a report's Query: a page's items are all a reader holds at once.
ROWS_PAGE = 500
_COUNTERS = ("succeeded", "failed", "skipped", "planned", "terminal", "estimated_cost_usd", "cost_usd", "held")
# Counters that are not RowCounts (kept on the record itself).
_RECORD_COUNTERS = ("held",)


def _plain(document: dict[str, Any]) -> dict[str, Any]:
    """As DynamoDB takes it: amounts as exact numbers (no floats), nothing empty."""
    return {k: Decimal(str(v)) if isinstance(v, float) else v for k, v in document.items() if v is not None}


def _cancelled(error: ClientError) -> bool:
    """A transaction refused only because a condition did not hold (not throttled, not malformed)."""
    if condition_failed(error):
        return True
    if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
        return False
    reasons = error.response.get("CancellationReasons", [])
    return bool(reasons) and all(r.get("Code") in ("None", "ConditionalCheckFailed") for r in reasons)


class CampaignsTable:
    def __init__(self, table: Table) -> None:
        self._table = table
        # The resource's client: it takes and gives plain Python values, as the table does.
        self._dynamodb: DynamoDBClient = table.meta.client

    # --- the record --------------------------------------------------------------------------------------
    def get(self, campaign_id: str) -> CampaignRecord | None:
        item = self._table.get_item(Key={"pk": campaign_id, "sk": RECORD}, ConsistentRead=True).get("Item")
        return _record(item) if item else None

    def start_run(self, record: CampaignRecord) -> CampaignRecord:
        document = record.model_dump(mode="json", exclude={"counts"})
        item = _plain({**document, "pk": record.campaign_id, "sk": RECORD, **dict.fromkeys(_COUNTERS, 0)})
        try:
            self._table.put_item(
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR run_id <> :run",
                ExpressionAttributeValues={":run": record.run_id},
            )
        except ClientError as error:
            if not condition_failed(error):
                raise
        current = self.get(record.campaign_id)
        assert current is not None
        return current

    def finish_split(self, campaign_id: str, run_id: str, rows_total: int, now: datetime) -> CampaignRecord:
        response = self._table.update_item(
            Key={"pk": campaign_id, "sk": RECORD},
            UpdateExpression="SET rows_total = :total, updated_at = :now",
            ConditionExpression="run_id = :run",
            ExpressionAttributeValues={":total": rows_total, ":now": isoformat(now), ":run": run_id},
            ReturnValues="ALL_NEW",
        )
        return _record(response["Attributes"])

    def claim_report_refresh(self, campaign_id: str, run_id: str, now: datetime, last_before: datetime) -> bool:
        """One writer of the running report per refresh period, whatever closes rows at once."""
        try:
            self._table.update_item(
                Key={"pk": campaign_id, "sk": RECORD},
                UpdateExpression="SET report_run = :run, report_at = :now",
                ConditionExpression=(
                    "run_id = :run AND (attribute_not_exists(report_run) OR report_run <> :run OR report_at < :before)"
                ),
                ExpressionAttributeValues={":run": run_id, ":now": isoformat(now), ":before": isoformat(last_before)},
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def claim_completion(self, campaign_id: str, run_id: str, now: datetime, lease_until: datetime) -> bool:
        try:
            self._table.update_item(
                Key={"pk": campaign_id, "sk": RECORD},
                UpdateExpression="SET completing_until = :until",
                ConditionExpression=(
                    "run_id = :run AND terminal >= rows_total AND "
                    "(attribute_not_exists(completed_run) OR completed_run <> :run) AND "
                    "(attribute_not_exists(completing_until) OR completing_until < :now)"
                ),
                ExpressionAttributeValues={":run": run_id, ":until": isoformat(lease_until), ":now": isoformat(now)},
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def confirm_completion(self, campaign_id: str, run_id: str, status: CampaignStatus, now: datetime) -> None:
        self._table.update_item(
            Key={"pk": campaign_id, "sk": RECORD},
            UpdateExpression=(
                "SET completed_run = :run, #status = :status, completed_at = :now, updated_at = :now "
                "REMOVE completing_until"
            ),
            ConditionExpression="run_id = :run",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":run": run_id, ":status": status.value, ":now": isoformat(now)},
        )

    def move_gate(self, campaign_id: str, run_id: str, from_states: frozenset[SampleGate], to: SampleGate) -> bool:
        """Move this run's sample gate to `to` if it is in one of `from_states`: one mover wins."""
        values: dict[str, Any] = {f":g{i}": state.value for i, state in enumerate(sorted(from_states))}
        try:
            self._table.update_item(
                Key={"pk": campaign_id, "sk": RECORD},
                UpdateExpression="SET gate = :to",
                ConditionExpression=f"run_id = :run AND gate IN ({', '.join(values)})",
                ExpressionAttributeValues={**values, ":to": to.value, ":run": run_id},
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    # --- rows --------------------------------------------------------------------------------------------
    def enter_row(self, campaign_id: str, row: RowRecord) -> RowRecord:
        item = _plain({**row.model_dump(mode="json"), "pk": campaign_id, "sk": ROW + row.row_id})
        try:
            self._transact(
                {
                    "Put": {
                        "TableName": self._table.name,
                        "Item": _typed(item),
                        "ConditionExpression": "attribute_not_exists(pk) OR (run_id <> :run AND #status <> :succeeded)",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": _typed({":run": row.run_id, ":succeeded": "SUCCEEDED"}),
                    }
                },
                self._count(
                    campaign_id,
                    row.run_id,
                    row.status,
                    row.estimated_cost_usd,
                    row.cost_usd,
                    row.held_message is not None,
                ),
            )
            return row
        except ClientError as error:
            if not _cancelled(error):
                raise
        return self._entered_already(campaign_id, row)

    def _entered_already(self, campaign_id: str, row: RowRecord) -> RowRecord:
        """The row is in this run already (a redelivered split), or SUCCEEDED in an earlier one: then it
        joins this run as SUCCEEDED, counted with its cost, and is not rendered again."""
        current = self._row(campaign_id, row.row_id)
        if current is None or current.run_id == row.run_id or current.status is not RowStatus.SUCCEEDED:
            return current or row
        try:
            self._transact(
                {
                    "Update": {
                        "TableName": self._table.name,
                        "Key": _typed({"pk": campaign_id, "sk": ROW + row.row_id}),
                        "UpdateExpression": "SET run_id = :run, #number = :number",
                        "ConditionExpression": "run_id <> :run AND #status = :succeeded",
                        "ExpressionAttributeNames": {"#status": "status", "#number": "number"},
                        "ExpressionAttributeValues": _typed(
                            {":run": row.run_id, ":succeeded": "SUCCEEDED", ":number": row.number}
                        ),
                    }
                },
                self._count(campaign_id, row.run_id, RowStatus.SUCCEEDED, Decimal(0), current.cost_usd),
            )
        except ClientError as error:
            if not _cancelled(error):
                raise
        return current.model_copy(update={"run_id": row.run_id, "number": row.number})

    def end_row(
        self, campaign_id: str, run_id: str, row_id: str, status: RowStatus, detail: RowEnd
    ) -> CampaignRecord | None:
        values = {
            ":run": run_id,
            ":pending": RowStatus.PENDING.value,
            ":status": status.value,
            ":cost": detail.cost_usd,
            ":code": detail.error_code,
            ":message": detail.error_message,
        }
        try:
            self._transact(
                {
                    "Update": {
                        "TableName": self._table.name,
                        "Key": _typed({"pk": campaign_id, "sk": ROW + row_id}),
                        "UpdateExpression": (
                            "SET #status = :status, cost_usd = :cost, error_code = :code, error_message = :message"
                        ),
                        "ConditionExpression": "run_id = :run AND #status = :pending",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": _typed(values),
                    }
                },
                self._count(campaign_id, run_id, status, Decimal(0), detail.cost_usd),
            )
        except ClientError as error:
            if _cancelled(error):
                return None
            raise
        return self.get(campaign_id)

    def rows(self, campaign_id: str) -> Iterator[RowRecord]:
        request: dict[str, Any] = {
            "IndexName": ROWS_IN_ORDER,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": campaign_id},
            "ConsistentRead": True,
            "Limit": ROWS_PAGE,
        }
        for item in self._pages(request):
            yield RowRecord.model_validate(item)

    def _row(self, campaign_id: str, row_id: str) -> RowRecord | None:
        item = self._table.get_item(Key={"pk": campaign_id, "sk": ROW + row_id}, ConsistentRead=True).get("Item")
        return RowRecord.model_validate(item) if item else None

    # --- media -------------------------------------------------------------------------------------------
    def add_media(self, campaign_id: str, keys: list[str]) -> None:
        with self._table.batch_writer(overwrite_by_pkeys=["pk", "sk"]) as batch:
            for key in keys:
                batch.put_item(Item={"pk": campaign_id, "sk": MEDIA + key, "key": key})

    def media(self, campaign_id: str) -> Iterator[str]:
        for item in self._query(campaign_id, MEDIA):
            yield str(item["key"])

    # --- plumbing ----------------------------------------------------------------------------------------
    def _count(
        self, campaign_id: str, run_id: str, status: RowStatus, estimated: Decimal, cost: Decimal, held: bool = False
    ) -> TransactWriteItemTypeDef:
        """The campaign's side of a row's transaction: its counters, for this run only."""
        additions: dict[str, Any] = {"estimated_cost_usd": estimated, "cost_usd": cost}
        if held:
            additions["held"] = 1
        if status is not RowStatus.PENDING:
            additions.update({status.value.lower(): 1, "terminal": 1})
        names = {f"#c{i}": name for i, name in enumerate(additions)}
        values: dict[str, Any] = {f":c{i}": value for i, value in enumerate(additions.values())}
        return {
            "Update": {
                "TableName": self._table.name,
                "Key": _typed({"pk": campaign_id, "sk": RECORD}),
                "UpdateExpression": "ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(additions))),
                "ConditionExpression": "run_id = :run",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": _typed({**values, ":run": run_id}),
            }
        }

    def _transact(self, *items: TransactWriteItemTypeDef) -> None:
        self._dynamodb.transact_write_items(TransactItems=list(items))

    def _query(self, campaign_id: str, prefix: str) -> Iterator[dict[str, Any]]:
        request: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {":pk": campaign_id, ":prefix": prefix},
            "ConsistentRead": True,
        }
        return self._pages(request)

    def _pages(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        while True:
            response = self._table.query(**request)
            yield from response.get("Items", [])
            last = response.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last


def _typed(document: dict[str, Any]) -> dict[str, Any]:
    """Attribute values for TransactWriteItems on the table resource's client, which (like the resource)
    serialises Python values itself: exact numbers, no floats."""
    return _plain_values(document)


def _plain_values(document: dict[str, Any]) -> dict[str, Any]:
    return {k: Decimal(str(v)) if isinstance(v, float) else v for k, v in document.items()}


def _record(item: dict[str, Any]) -> CampaignRecord:
    counts = RowCounts(**{name: item.get(name, 0) for name in _COUNTERS if name not in ("terminal", *_RECORD_COUNTERS)})
    return CampaignRecord.model_validate({**item, "counts": counts, "held": item.get("held", 0)})
