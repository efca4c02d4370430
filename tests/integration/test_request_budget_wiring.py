"""The request budget and learned render times, wired into the real handlers and the real ASL."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from avatar_pipeline.adapters.request_budget import RequestBudget
from avatar_pipeline.domain.request_budget import Denied
from tests.integration.conftest import Pipeline
from tests.integration.test_render_job_state_machine import drop_job, only_job_id, submit

pytestmark = pytest.mark.integration


def test_a_throttled_status_check_waits_for_the_reset_without_spending_a_retry(pipeline: Pipeline) -> None:
    """Given Segmind answers a status check with 429 and x-rate-limit-reset-at-utc, then the poll
    step comes back after the reset (no failed task, no Retry attempt used) and the job completes."""
    reset = (pipeline.clock.now() + timedelta(seconds=600)).isoformat().replace("+00:00", "Z")
    pipeline.provider.script.statuses = [
        (429, {"error": "Rate limit exceeded"}, {"x-rate-limit-reset-at-utc": reset}),
        "PROCESSING",
        "COMPLETED",
    ]
    submit(drop_job(pipeline))
    job_id = only_job_id(pipeline)

    execution = pipeline.aws.wait_for_execution(job_id)

    assert execution["status"] == "SUCCEEDED"
    assert [e for e in pipeline.aws.history(job_id) if e["type"] == "TaskFailed"] == []
    waits = [
        e["stateEnteredEventDetails"]
        for e in pipeline.aws.history(job_id)
        if e.get("stateEnteredEventDetails", {}).get("name") == "WaitForRender"
    ]
    assert len(waits) == 3  # the first, the one after the 429, the one after PROCESSING
    after_throttle = json.loads(waits[1]["input"])["poll"]
    assert after_throttle["wait_seconds"] >= 500  # until the reset Segmind named (600 s after the start)
    assert after_throttle["polls"] == 0  # the throttled request is not counted as a check
    assert pipeline.provider.calls["status"] == 3


def test_a_completed_render_teaches_the_poll_policy(pipeline: Pipeline) -> None:
    submit(drop_job(pipeline))
    job_id = only_job_id(pipeline)
    assert pipeline.aws.wait_for_execution(job_id)["status"] == "SUCCEEDED"

    items = boto3.resource("dynamodb").Table(pipeline.aws.state_table).scan()["Items"]
    stats = [i for i in items if str(i["pk"]).startswith("render-stats#heygen-avatar-iv#")]
    assert len(stats) == 1
    assert int(str(stats[0]["observations"])) >= 1


def test_a_submit_waits_in_the_queue_when_the_budget_is_spent(pipeline: Pipeline) -> None:
    """Given every token of the shared budget is taken, then the Submit handler does not call
    Segmind and the job is not claimed: the event goes back on the queue as a new, delayed message
    (so waiting spends none of the original's receives) and the original is done."""
    budget = RequestBudget(pipeline.aws.state_table, 50)
    now = datetime.now(UTC)
    while not isinstance(budget.try_acquire("poll", now), Denied):
        pass

    response = submit(drop_job(pipeline))

    assert response["batchItemFailures"] == []
    assert pipeline.provider.calls["submit"] == 0
    assert boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).scan()["Items"] == []
    queued = boto3.client("sqs").get_queue_attributes(
        QueueUrl=pipeline.aws.submit_queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
    )["Attributes"]
    assert queued["ApproximateNumberOfMessagesDelayed"] == "1"
