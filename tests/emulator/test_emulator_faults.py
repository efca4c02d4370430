"""Fault plans: loading from JSON, what a rule may say, and how rules are consumed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from avatar_local.emulator import FaultPlan, FaultRule
from avatar_local.emulator.faults import FaultBook

pytestmark = pytest.mark.unit


def test_plan_loads_from_a_json_file(tmp_path: Path) -> None:
    # Given a plan file as an operator would write it
    path = tmp_path / "plan.json"
    path.write_text(
        json.dumps(
            {
                "rules": [
                    {"endpoint": "submit", "fault": "http_429", "times": 2},
                    {"endpoint": "status", "fault": "failed", "title_pattern": "^Blocked", "message": "RAI block"},
                    {"endpoint": "download", "fault": "slow_download", "delay_seconds": 0.1},
                ]
            }
        )
    )
    # When it is loaded
    plan = FaultPlan.model_validate_json(path.read_text())
    # Then every rule keeps its settings and the defaults apply
    assert [rule.fault for rule in plan.rules] == ["http_429", "failed", "slow_download"]
    assert plan.rules[0].times == 2
    assert plan.rules[1].times == 1
    assert plan.rules[1].message == "RAI block"
    assert plan.rules[2].delay_seconds == 0.1


def test_a_bare_list_of_rules_is_a_plan() -> None:
    plan = FaultPlan.model_validate_json('[{"endpoint": "result", "fault": "malformed_body"}]')
    assert plan.rules == [FaultRule(endpoint="result", fault="malformed_body")]


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"endpoint": "submit", "fault": "http_418"}, "fault"),
        ({"endpoint": "webhook", "fault": "http_500"}, "endpoint"),
        ({"endpoint": "status", "fault": "slow_download"}, "slow_download only applies"),
        ({"endpoint": "download", "fault": "failed"}, "failed applies to"),
        ({"endpoint": "status", "fault": "http_500", "title_pattern": "(unclosed"}, "not a valid regular expression"),
        ({"endpoint": "status", "fault": "http_500", "times": 0}, "times"),
        ({"endpoint": "status", "fault": "http_500", "probability": 0.5}, "probability"),
    ],
)
def test_bad_rules_are_rejected_when_loading(rule: dict[str, object], expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FaultPlan.model_validate({"rules": [rule]})
    assert expected in str(caught.value)


def test_rules_are_used_up_after_their_times() -> None:
    book = FaultBook(FaultPlan(rules=[FaultRule(endpoint="status", fault="http_500", times=2)]))

    taken = [book.take("status", None, has_job=True) for _ in range(3)]

    assert [rule.fault if rule else None for rule in taken] == ["http_500", "http_500", None]
    assert book.injected == 2
    assert book.injected_by_kind == {"http_500": 2}


def test_title_pattern_and_endpoint_must_both_match() -> None:
    book = FaultBook(
        FaultPlan(rules=[FaultRule(endpoint="result", fault="http_502", title_pattern=r"flaky-\d+", times=5)])
    )

    assert book.take("result", "steady-1", has_job=True) is None
    assert book.take("status", "flaky-1", has_job=True) is None
    assert book.take("result", None, has_job=True) is None
    assert book.take("result", "a flaky-7 title", has_job=True) is not None


def test_job_faults_need_a_live_job() -> None:
    # A "failed" rule cannot turn an unknown request id into a failed job, so it waits for a real one.
    book = FaultBook(FaultPlan(rules=[FaultRule(endpoint="status", fault="failed")]))

    assert book.take("status", None, has_job=False) is None
    assert book.take("status", None, has_job=True) is not None


def test_replacing_the_plan_resets_the_counts() -> None:
    book = FaultBook(FaultPlan(rules=[FaultRule(endpoint="submit", fault="http_500")]))
    assert book.take("submit", None, has_job=True) is not None

    book.replace(FaultPlan(rules=[FaultRule(endpoint="submit", fault="http_504", times=3)]))

    assert book.remaining() == [3]
    taken = book.take("submit", None, has_job=True)
    assert taken is not None
    assert taken.fault == "http_504"


def test_file_faults_wait_for_a_file_that_exists() -> None:
    # A slow or truncated download of a missing file would be a plain 404 and waste the rule.
    book = FaultBook(FaultPlan(rules=[FaultRule(endpoint="download", fault="slow_download")]))

    assert book.take("download", None, has_job=False) is None
    assert book.take("download", None, has_job=True) is not None
