"""The local event source mapping: redrive to the DLQ, and duplicated deliveries."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest

from avatar_local.stack.runner import LocalPipeline, LocalRunConfig
from tests.e2e.conftest import local_run, write_job

pytestmark = pytest.mark.e2e


def test_a_message_that_always_fails_is_redriven_to_the_dlq_and_kept_there_for_a_person() -> None:
    """Given a message the Submit function cannot parse (not an S3 event), then it is received
    maxReceiveCount times and then moved to the dead-letter queue by SQS's redrive; the DeadLetter
    function reads it, finds no job in it, and leaves it in the DLQ (hidden for 12 hours at a time)."""
    with LocalPipeline(LocalRunConfig(time_scale=0.001)) as pipeline:
        assert pipeline.stack is not None
        assert pipeline.poller is not None
        assert pipeline.dead_letter_poller is not None
        sqs = boto3.client("sqs")
        sqs.send_message(QueueUrl=pipeline.stack.outputs["SubmitQueueUrl"], MessageBody='{"not": "an S3 event"}')
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not pipeline.dead_letter_poller.stats.failed_records:
            time.sleep(0.2)

        assert pipeline.dead_letter_poller.stats.failed_records == 1, "the poison message never reached the DLQ"
        assert pipeline.poller.stats.failed_records == pipeline.stack.max_receive_count
        attributes = sqs.get_queue_attributes(
            QueueUrl=pipeline.stack.outputs["SubmitDeadLetterQueueUrl"],
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        assert (
            int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
            == 1
        )


def test_duplicated_events_still_submit_and_notify_once(inbox: Path, tmp_path: Path) -> None:
    """Given every S3 event delivered three times, then each job is posted once and notified once."""
    for name in ("one", "two"):
        write_job(
            inbox,
            f"{name}.json",
            {"model": "heygen-avatar-iv", "photo": f"{name}.png", "video_title": name, "script": "Twice?"},
            photo=f"{name}.png",
        )

    result = local_run(inbox, tmp_path / "out", "--time-scale", "0.01", "--duplicate-events", "3")

    assert result.exit_code == 0, result.stderr[-3000:]
    assert result.summary["queue"]["duplicates_sent"] == 4
    for job in result.summary["jobs"]:
        assert job["status"] == "SUCCEEDED"
        assert job["provider_submits"] == 1
        assert job["notifications"] == 1
    assert result.summary["provider"]["submits_accepted"] == 2
