"""One notification per job: the jobs table grants the right to publish it, as a lease.

The SNS message is the notification; the EventBridge event carries the same fields for rules. A
publisher takes the lease (the record's notified_status PENDING until notify_lease_until), publishes,
then makes it final (notified_status = the status). A publisher that fails to publish gives the
lease back; one that dies holding it leaves it to expire, and the next run of the same ending (the
state machine's Retry, a redelivery) finds it busy, waits (a transient error), then publishes: no
notification is lost. The one way to two notifications is a publisher dying in the instant between
SNS accepting the message and its record of it. If the event fails after the SNS message went out,
the claim is kept (a retry would send a second SNS message) and the failure is logged and counted.
"""

from __future__ import annotations

from datetime import timedelta

from aws_lambda_powertools.metrics import MetricUnit

from avatar_pipeline.domain.ports import ClosingPorts, EventPublishFailed
from avatar_pipeline.errors import NotificationInProgress
from avatar_pipeline.observability import logger, metrics
from avatar_pipeline.records import Notification


def publish_once(notification: Notification, ports: ClosingPorts, announce: bool = True) -> bool:
    """Publish unless this job was already notified (False). A failed SNS publish gives the claim
    back; a claim another publisher holds is NotificationInProgress, to be tried again later.
    `announce` False (a campaign row without notify_rows): the ending is marked notified, nothing sent."""
    now = ports.clock.now()
    lease_until = now + timedelta(seconds=ports.settings.notify_lease_seconds)
    claim = ports.jobs.claim_notification(notification.job_id, now, lease_until)
    if claim == "sent":
        return False
    if claim == "busy":
        raise NotificationInProgress(f"another run is publishing {notification.job_id}'s notification; trying again")
    if not announce:
        ports.jobs.confirm_notification(notification.job_id, notification.status)
        return False
    try:
        ports.notifier.publish(notification)
    except BaseException:
        ports.jobs.release_notification(notification.job_id)
        raise
    ports.jobs.confirm_notification(notification.job_id, notification.status)
    try:
        ports.events.publish(notification)
    except EventPublishFailed as error:
        logger.error("the completion event could not be published", extra={"error": str(error)})
        metrics.add_metric(name="CompletionEventsFailed", unit=MetricUnit.Count, value=1)
    return True
