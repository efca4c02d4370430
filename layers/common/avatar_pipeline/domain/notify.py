"""One notification per job: the jobs table grants the right to publish once.

The SNS message is the notification; the EventBridge event carries the same fields for rules.
Both are sent under the one claim. If the event fails after the SNS message went out, the claim is
kept (a retry would send a second SNS message) and the failure is logged and counted.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit

from avatar_pipeline.domain.ports import ClosingPorts, EventPublishFailed
from avatar_pipeline.observability import logger, metrics
from avatar_pipeline.records import Notification


def publish_once(notification: Notification, ports: ClosingPorts) -> bool:
    """Publish unless this job was already notified. A failed SNS publish gives the claim back."""
    if not ports.jobs.claim_notification(notification.job_id, notification.status):
        return False
    try:
        ports.notifier.publish(notification)
    except BaseException:
        ports.jobs.release_notification(notification.job_id)
        raise
    try:
        ports.events.publish(notification)
    except EventPublishFailed as error:
        logger.error("the completion event could not be published", extra={"error": str(error)})
        metrics.add_metric(name="CompletionEventsFailed", unit=MetricUnit.Count, value=1)
    return True
