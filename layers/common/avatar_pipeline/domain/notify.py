"""One notification per job: the jobs table grants the right to publish once."""

from __future__ import annotations

from avatar_pipeline.adapters.jobs_table import JobsTable
from avatar_pipeline.adapters.notifier import SnsNotifier
from avatar_pipeline.records import Notification


def publish_once(notification: Notification, jobs: JobsTable, notifier: SnsNotifier) -> bool:
    """Publish unless this job was already notified. A failed publish gives the claim back for a retry."""
    if not jobs.claim_notification(notification.job_id, notification.status):
        return False
    try:
        notifier.publish(notification)
    except BaseException:
        jobs.release_notification(notification.job_id)
        raise
    return True
