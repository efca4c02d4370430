"""JobsTable: one item per job, moved through its states with conditional writes.

The conditions are what make submission exactly-once: only the worker that created the
SUBMITTING item may POST, and only one worker may claim the notification for a job.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from avatar_pipeline.adapters.dynamodb import condition_failed
from avatar_pipeline.clock import isoformat
from avatar_pipeline.domain.ports import NotificationClaim
from avatar_pipeline.records import NOTIFICATION_PENDING, JobRecord, JobStatus

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.service_resource import Table


def _item(record: JobRecord) -> dict[str, Any]:
    """The record as the table holds it: times as ISO text, amounts as exact numbers (DynamoDB takes no
    floats), nothing empty."""
    dumped = record.model_dump(mode="json")
    return {k: Decimal(str(v)) if isinstance(v, float) else v for k, v in dumped.items() if v is not None and v != []}


class JobsTable:
    def __init__(self, table: Table) -> None:
        self._table = table

    def get(self, job_id: str) -> JobRecord | None:
        response = self._table.get_item(Key={"job_id": job_id}, ConsistentRead=True)
        item = response.get("Item")
        return JobRecord.model_validate(item) if item else None

    def claim_submission(self, record: JobRecord) -> bool:
        """Create the SUBMITTING item; False if any item for the job already exists, except the FAILED
        item of a campaign row's job from an earlier run of its campaign (a resume renders it again)."""
        condition = "attribute_not_exists(job_id)"
        extra: dict[str, Any] = {}
        if record.campaign_row is not None:
            condition += " OR (#status = :failed AND #row.#run <> :run)"
            extra = {
                "ExpressionAttributeNames": {"#status": "status", "#row": "campaign_row", "#run": "run_id"},
                "ExpressionAttributeValues": {":failed": JobStatus.FAILED.value, ":run": record.campaign_row.run_id},
            }
        try:
            self._table.put_item(Item=_item(record), ConditionExpression=condition, **extra)
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    def release_submission(self, job_id: str) -> None:
        """Drop our lease after a POST that provably never reached the provider, so a retry may claim."""
        self._conditional_delete(
            job_id,
            "#status = :submitting AND attribute_not_exists(request_id)",
            {":submitting": JobStatus.SUBMITTING.value},
        )

    def mark_posting(self, job_id: str, now: datetime) -> None:
        self._update(
            job_id,
            {"posting_at": isoformat(now)},
            condition="#status = :submitting",
            condition_values={":submitting": JobStatus.SUBMITTING.value},
        )

    def mark_submitted(self, job_id: str, request_id: str, submitted_at: datetime, render_job_json: str) -> None:
        self._update(
            job_id,
            {
                "status": JobStatus.SUBMITTED.value,
                "request_id": request_id,
                "submitted_at": isoformat(submitted_at),
                "render_job_json": render_job_json,
                "updated_at": isoformat(submitted_at),
            },
            condition="#status = :expected",
            condition_values={":expected": JobStatus.SUBMITTING.value},
        )

    def mark_rendering(self, job_id: str, execution_arn: str, now: datetime) -> None:
        self._update(
            job_id,
            {
                "status": JobStatus.RENDERING.value,
                "execution_arn": execution_arn,
                "updated_at": isoformat(now),
            },
            condition="#status IN (:submitted, :rendering)",
            condition_values={
                ":submitted": JobStatus.SUBMITTED.value,
                ":rendering": JobStatus.RENDERING.value,
            },
        )

    def record_poll(self, job_id: str, provider_status: str, status_calls: int, now: datetime) -> None:
        self._update(
            job_id,
            {"provider_status": provider_status, "status_calls": status_calls, "updated_at": isoformat(now)},
            condition="#status = :rendering",
            condition_values={":rendering": JobStatus.RENDERING.value},
            ignore_condition=True,
        )

    def save_terminal(self, record: JobRecord) -> None:
        """Write the terminal state, unless the job already ended for good: a job that SUCCEEDED is
        never turned into FAILED, and an ending already notified is not written again (a second run
        of the same ending, say two deliveries of one bad job file failing it together, would
        otherwise drop the notification claim and notify twice)."""
        try:
            self._table.put_item(
                Item=_item(record),
                ConditionExpression=(
                    "attribute_not_exists(job_id) OR (#status <> :succeeded AND attribute_not_exists(notified_status))"
                ),
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues={":succeeded": JobStatus.SUCCEEDED.value},
            )
        except ClientError as error:
            if not condition_failed(error):
                raise

    def claim_notification(self, job_id: str, now: datetime, lease_until: datetime) -> NotificationClaim:
        try:
            self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET notified_status = :pending, notify_lease_until = :until",
                ConditionExpression=(
                    "attribute_exists(job_id) AND (attribute_not_exists(notified_status) OR "
                    "(notified_status = :pending AND notify_lease_until < :now))"
                ),
                ExpressionAttributeValues={
                    ":pending": NOTIFICATION_PENDING,
                    ":until": isoformat(lease_until),
                    ":now": isoformat(now),
                },
            )
        except ClientError as error:
            if not condition_failed(error):
                raise
            record = self.get(job_id)
            return "busy" if record is not None and record.notified_status == NOTIFICATION_PENDING else "sent"
        return "claimed"

    def confirm_notification(self, job_id: str, status: str) -> None:
        self._table.update_item(
            Key={"job_id": job_id},
            UpdateExpression="SET notified_status = :status REMOVE notify_lease_until",
            ExpressionAttributeValues={":status": status},
        )

    def release_notification(self, job_id: str) -> None:
        self._table.update_item(Key={"job_id": job_id}, UpdateExpression="REMOVE notified_status, notify_lease_until")

    # --- spend (domain/spend.py) ------------------------------------------------------------------
    def mark_reserved(self, job_id: str, amount: Decimal, day: str) -> None:
        self._update(
            job_id,
            {"reserved_usd": amount, "spend_day": day},
            condition="#status = :submitting",
            condition_values={":submitting": JobStatus.SUBMITTING.value},
        )

    def take_back_reservation(self, job_id: str) -> tuple[Decimal, str] | None:
        """Remove the reservation mark (exactly once): what it held, or None."""
        try:
            response = self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="REMOVE reserved_usd",
                ConditionExpression="attribute_exists(reserved_usd)",
                ReturnValues="ALL_OLD",
            )
        except ClientError as error:
            if condition_failed(error):
                return None
            raise
        old = response["Attributes"]
        return Decimal(str(old["reserved_usd"])), str(old["spend_day"])

    def mark_cost_settled(self, job_id: str) -> bool:
        try:
            self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression="SET cost_settled = :true",
                ConditionExpression="attribute_exists(job_id) AND attribute_not_exists(cost_settled)",
                ExpressionAttributeValues={":true": True},
            )
        except ClientError as error:
            if condition_failed(error):
                return False
            raise
        return True

    # --- plumbing ----------------------------------------------------------------------------------
    def _update(
        self,
        job_id: str,
        fields: dict[str, Any],
        condition: str,
        condition_values: dict[str, Any],
        ignore_condition: bool = False,
    ) -> None:
        names = {f"#f{i}": name for i, name in enumerate(fields)}
        values = {f":v{i}": value for i, value in enumerate(fields.values())}
        assignments = ", ".join(f"#f{i} = :v{i}" for i in range(len(fields)))
        try:
            self._table.update_item(
                Key={"job_id": job_id},
                UpdateExpression=f"SET {assignments}",
                ConditionExpression=f"attribute_exists(job_id) AND ({condition})",
                ExpressionAttributeNames={**names, "#status": "status"},
                ExpressionAttributeValues={**values, **condition_values},
            )
        except ClientError as error:
            if not (ignore_condition and condition_failed(error)):
                raise

    def _conditional_delete(self, job_id: str, condition: str, values: dict[str, Any]) -> None:
        try:
            self._table.delete_item(
                Key={"job_id": job_id},
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if not condition_failed(error):
                raise
