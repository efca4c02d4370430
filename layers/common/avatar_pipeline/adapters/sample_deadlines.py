"""A campaign sample's deadline as a one-time EventBridge Scheduler schedule: at that moment the
scheduler puts a SampleExpiry on the split queue (as the stack's SampleExpiryRole) and deletes the
schedule. Nothing runs until then: the wait costs nothing, and no loop polls for it."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

from avatar_pipeline.campaigns.records import SampleExpiry
from avatar_pipeline.observability import logger


def schedule_name(campaign_id: str, run_id: str) -> str:
    """One schedule per run (<= 64 characters): a redelivered split finds it and adds none."""
    return "avatar-sample-" + hashlib.sha256(f"{campaign_id}\n{run_id}".encode()).hexdigest()[:40]


class SchedulerDeadlines:
    def __init__(self, client: Any, queue_arn: str, role_arn: str) -> None:
        self._scheduler = client
        self._queue_arn = queue_arn
        self._role_arn = role_arn

    def set(self, campaign_id: str, run_id: str, at: datetime) -> None:
        try:
            self._scheduler.create_schedule(
                Name=schedule_name(campaign_id, run_id),
                ScheduleExpression=f"at({at.astimezone(UTC):%Y-%m-%dT%H:%M:%S})",
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Target={
                    "Arn": self._queue_arn,
                    "RoleArn": self._role_arn,
                    "Input": SampleExpiry(campaign_id=campaign_id, run_id=run_id).model_dump_json(),
                },
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConflictException":
                raise
            logger.info("the sample's deadline is set already", extra={"campaign_id": campaign_id})
