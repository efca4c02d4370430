"""One notification per job: the jobs table grants the right to publish once.

The SNS message is the notification; the EventBridge event carries the same fields for rules.
Both are sent under the one claim. If the event fails after the SNS message went out, the claim is
kept (a retry would send a second SNS message) and the failure is logged and counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aws_lambda_powertools.metrics import MetricUnit
from botocore.exceptions import BotoCoreError, ClientError

from avatar_pipeline.adapters.events import EventPublishFailed
from avatar_pipeline.observability import logger, metrics
from avatar_pipeline.records import Notification

if TYPE_CHECKING:
    from avatar_pipeline.runtime import Dependencies


def publish_once(notification: Notification, deps: Dependencies) -> bool:
    """Publish unless this job was already notified. A failed SNS publish gives the claim back."""
    if not deps.jobs.claim_notification(notification.job_id, notification.status):
        return False
    try:
        deps.notifier.publish(notification)
    except BaseException:
        deps.jobs.release_notification(notification.job_id)
        raise
    try:
        deps.events.publish(notification)
    except (ClientError, BotoCoreError, EventPublishFailed) as error:
        logger.error("the completion event could not be published", extra={"error": str(error)})
        metrics.add_metric(name="CompletionEventsFailed", unit=MetricUnit.Count, value=1)
    return True
