"""What operators see: EMF metrics per outcome, and completion events on EventBridge."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest

from tests.integration.conftest import Pipeline
from tests.integration.test_render_job_state_machine import drop_job, only_job_id, submit

pytestmark = pytest.mark.integration


def emitted_metrics(stdout: str) -> list[dict[str, Any]]:
    """The EMF documents Powertools printed: {"name", "value", "dimensions"} per metric."""
    found = []
    for line in stdout.splitlines():
        if not line.startswith('{"_aws"'):
            continue
        document = json.loads(line)
        for directive in document["_aws"]["CloudWatchMetrics"]:
            dimension_names = [name for group in directive["Dimensions"] for name in group]
            for metric in directive["Metrics"]:
                found.append(
                    {
                        "name": metric["Name"],
                        # Powertools writes a metric's values as a list when it holds several.
                        "value": document[metric["Name"]][0]
                        if isinstance(document[metric["Name"]], list)
                        else document[metric["Name"]],
                        "dimensions": {name: document[name] for name in dimension_names},
                        "namespace": directive["Namespace"],
                    }
                )
    return found


def test_a_success_emits_outcome_metrics_and_a_succeeded_event(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    submit(drop_job(pipeline))
    job_id = only_job_id(pipeline)
    assert pipeline.aws.wait_for_execution(job_id)["status"] == "SUCCEEDED"

    metrics = emitted_metrics(capsys.readouterr().out)
    by_name = {m["name"]: m for m in metrics}
    assert by_name["JobsSubmitted"]["dimensions"]["Model"] == "heygen-avatar-iv"
    assert by_name["JobsSucceeded"]["value"] == 1.0
    assert by_name["StatusCallsPerJob"]["value"] == 3.0
    assert "EndToEndSeconds" in by_name
    assert {m["namespace"] for m in metrics} == {"AvatarPipeline"}
    assert "JobsFailed" not in by_name

    events = pipeline.aws.completion_events()
    assert [e["detail-type"] for e in events] == ["Avatar Video Succeeded"]
    assert events[0]["source"] == "avatar-pipeline"
    assert events[0]["detail"]["job_id"] == job_id
    assert events[0]["detail"]["output"]["video_key"] == "videos/campaign-a/alice welcome.mp4"


def test_a_failure_emits_a_metric_by_error_code_and_a_failed_event(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    pipeline.provider.script.statuses = [(422, {"status": "FAILED", "error": "blocked", "metrics": {}})]
    submit(drop_job(pipeline))
    job_id = only_job_id(pipeline)
    assert pipeline.aws.wait_for_execution(job_id)["status"] == "FAILED"

    failed = [m for m in emitted_metrics(capsys.readouterr().out) if m["name"] == "JobsFailed"]
    assert len(failed) == 1
    assert failed[0]["dimensions"] == {
        "Model": "heygen-avatar-iv",
        "ErrorCode": "PROVIDER_FAILED",
        "service": "avatar-pipeline",
    }
    events = pipeline.aws.completion_events()
    assert [e["detail-type"] for e in events] == ["Avatar Video Failed"]
    assert events[0]["detail"]["error_code"] == "PROVIDER_FAILED"


def test_the_job_record_answers_what_happened_to_my_file(pipeline: Pipeline) -> None:
    submit(drop_job(pipeline))
    job_id = only_job_id(pipeline)
    pipeline.aws.wait_for_execution(job_id)

    record = boto3.resource("dynamodb").Table(pipeline.aws.jobs_table).get_item(Key={"job_id": job_id})["Item"]
    assert record["status"] == "SUCCEEDED"
    assert record["job_key"] == "inbox/campaign-a/alice welcome.json"
    assert record["output_keys"] == ["videos/campaign-a/alice welcome.mp4", "videos/campaign-a/alice welcome.json"]
    for field in ("received_at", "submitted_at", "completed_at", "request_id", "execution_arn"):
        assert record.get(field), field
