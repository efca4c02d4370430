"""The local event source mapping: redrive to the DLQ, and duplicated deliveries."""

from __future__ import annotations

import time
from pathlib import Path

import boto3
import pytest

from avatar_local.stack.runner import LocalPipeline, LocalRunConfig
from tests.e2e.conftest import local_run, write_job

pytestmark = pytest.mark.e2e


def test_a_message_that_always_fails_is_redriven_to_the_dlq_after_five_receives() -> None:
    """Given a message the Submit function cannot parse (not an S3 event), then it is received
    maxReceiveCount times and then moved to the dead-letter queue by SQS's redrive."""
    with LocalPipeline(LocalRunConfig(time_scale=0.001)) as pipeline:
        assert pipeline.stack is not None
        assert pipeline.poller is not None
        sqs = boto3.client("sqs")
        sqs.send_message(QueueUrl=pipeline.stack.outputs["SubmitQueueUrl"], MessageBody='{"not": "an S3 event"}')
        dlq = pipeline.stack.outputs["SubmitDeadLetterQueueUrl"]
        deadline = time.monotonic() + 30
        dead = 0
        while time.monotonic() < deadline and not dead:
            dead = len(sqs.receive_message(QueueUrl=dlq).get("Messages", []))
            time.sleep(0.2)

        assert dead, "the poison message never reached the DLQ"
        assert pipeline.poller.stats.failed_records == pipeline.stack.max_receive_count


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
