"""Operations in the template: the alarms an operator is woken by, and the dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from avatar_local.stack.sam_translate import load_cfn_yaml

pytestmark = pytest.mark.integration

TEMPLATE = load_cfn_yaml(Path(__file__).resolve().parents[2] / "template.yaml")
RESOURCES: dict[str, Any] = TEMPLATE["Resources"]


@pytest.mark.parametrize(
    ("alarm", "namespace", "metric"),
    [
        ("FailedExecutionsAlarm", "AWS/States", "ExecutionsFailed"),
        ("ProviderBlockedAlarm", "AvatarPipeline", "ProviderBlocked"),
        ("SubmitBacklogAlarm", "AWS/SQS", "ApproximateAgeOfOldestMessage"),
    ],
)
def test_each_alarm_watches_its_metric_and_can_page(alarm: str, namespace: str, metric: str) -> None:
    props = RESOURCES[alarm]["Properties"]
    assert RESOURCES[alarm]["Type"] == "AWS::CloudWatch::Alarm"
    assert (props["Namespace"], props["MetricName"]) == (namespace, metric)
    assert props["AlarmDescription"]  # says what it means and what to do
    assert props["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    assert props["TreatMissingData"] == "notBreaching"


def test_the_dead_letter_alarm_fires_on_every_arrival_even_when_the_queue_is_drained() -> None:
    """The DeadLetter function reads every message that lands in the DLQ, so the queue is usually
    empty: the alarm adds the messages received (by it) to those still visible."""
    props = RESOURCES["DeadLetterAlarm"]["Properties"]
    metrics = {m["Id"]: m for m in props["Metrics"]}
    (shown,) = [m for m in metrics.values() if m["ReturnData"]]
    assert shown["Expression"] == "received + visible"
    watched = {
        m["Id"]: (
            m["MetricStat"]["Metric"]["Namespace"],
            m["MetricStat"]["Metric"]["MetricName"],
            m["MetricStat"]["Stat"],
        )
        for m in metrics.values()
        if "MetricStat" in m
    }
    assert watched == {
        "received": ("AWS/SQS", "NumberOfMessagesReceived", "Sum"),
        "visible": ("AWS/SQS", "ApproximateNumberOfMessagesVisible", "Maximum"),
    }
    for metric in metrics.values():
        if "MetricStat" in metric:
            assert metric["MetricStat"]["Metric"]["Dimensions"] == [
                {"Name": "QueueName", "Value": {"Fn::GetAtt": ["SubmitDeadLetterQueue", "QueueName"]}}
            ]
    assert (props["Threshold"], props["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    assert props["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    assert props["TreatMissingData"] == "notBreaching"


def test_the_spend_alarm_fires_at_80_percent_of_the_ceiling_and_only_with_one() -> None:
    """The Submit function emits DailySpendPercent (of DailySpendLimitUsd) at each reservation; with no
    ceiling (0) there is nothing to warn about, so the alarm is not created."""
    from avatar_pipeline import observability

    alarm = RESOURCES["SpendAlarm"]
    props = alarm["Properties"]
    assert alarm["Condition"] == "HasSpendLimit"
    assert TEMPLATE["Conditions"]["HasSpendLimit"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "DailySpendLimitUsd"}, 0]}]}
    assert (props["Namespace"], props["MetricName"]) == (observability.METRICS_NAMESPACE, "DailySpendPercent")
    assert {d["Name"]: d["Value"] for d in props["Dimensions"]} == {"service": observability.SERVICE_NAME}
    assert (props["Threshold"], props["ComparisonOperator"]) == (80, "GreaterThanOrEqualToThreshold")
    assert props["AlarmActions"] == {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}


def test_the_provider_blocked_alarm_matches_the_metric_the_code_emits() -> None:
    """The alarm's dimensions must equal the emitted metric's exactly, or it never fires."""
    from avatar_pipeline import observability

    dimensions = {d["Name"]: d["Value"] for d in RESOURCES["ProviderBlockedAlarm"]["Properties"]["Dimensions"]}
    assert dimensions == {"service": observability.SERVICE_NAME}
    assert RESOURCES["ProviderBlockedAlarm"]["Properties"]["Namespace"] == observability.METRICS_NAMESPACE


def test_the_dashboard_body_is_valid_json_once_substituted() -> None:
    body, variables = RESOURCES["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    rendered = re.sub(r"\$\{([A-Za-z0-9:]+)\}", "x", body)
    dashboard = json.loads(rendered)
    titles = [w["properties"]["title"] for w in dashboard["widgets"]]
    assert "Jobs" in titles
    assert "Submit queue" in titles
    assert set(re.findall(r"\$\{([A-Za-z]+)\}", body)) - {"AWS"} <= set(variables) | {"RenderJobStateMachine"}
