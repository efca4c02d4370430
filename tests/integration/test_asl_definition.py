"""statemachine/render_job.asl.json checked on its own: cfn-lint and `sam validate` never open it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import lint
from moto import mock_aws

pytestmark = pytest.mark.integration

ASL_PATH = Path(__file__).resolve().parents[2] / "statemachine" / "render_job.asl.json"
PLACEHOLDERS = {
    "${Partition}": "aws",
    "${PollFunctionArn}": "arn:aws:lambda:us-east-1:123456789012:function:Poll",
    "${FinalizeFunctionArn}": "arn:aws:lambda:us-east-1:123456789012:function:Finalize",
    "${ReportFailureFunctionArn}": "arn:aws:lambda:us-east-1:123456789012:function:ReportFailure",
}


def definition_text() -> str:
    text = ASL_PATH.read_text()
    for placeholder, value in PLACEHOLDERS.items():
        text = text.replace(placeholder, value)
    return text


@pytest.fixture(scope="module")
def asl() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(definition_text())
    return data


def successors(state: dict[str, Any]) -> set[str]:
    names = {state[k] for k in ("Next", "Default") if k in state}
    names |= {choice["Next"] for choice in state.get("Choices", [])}
    names |= {catcher["Next"] for catcher in state.get("Catch", [])}
    return names


def test_every_transition_names_an_existing_state_and_every_state_is_reachable(asl: dict[str, Any]) -> None:
    states: dict[str, dict[str, Any]] = asl["States"]
    assert asl["StartAt"] in states
    for name, state in states.items():
        assert successors(state) <= set(states), f"{name} points at a missing state"
        terminal = state["Type"] in ("Succeed", "Fail") or state.get("End") is True
        assert terminal or successors(state), f"{name} has no way out"
    reachable, frontier = set(), [asl["StartAt"]]
    while frontier:
        name = frontier.pop()
        if name not in reachable:
            reachable.add(name)
            frontier.extend(successors(states[name]))
    assert reachable == set(states)


def test_every_cycle_passes_through_a_task_that_knows_its_deadline(asl: dict[str, Any]) -> None:
    """Removing CheckRenderStatus and FinalizeVideo must leave no cycle: the loops are the poll loop
    (each turn asks Poll, whose answer carries deadline_passed) and the fetch-again loop (each turn
    runs Finalize, which fails the job once Segmind's retention of the result ends)."""
    states = asl["States"]
    bounded = {"CheckRenderStatus", "FinalizeVideo"}
    graph = {name: successors(state) - bounded for name, state in states.items()}
    visiting: set[str] = set()
    done: set[str] = set()

    def has_cycle(node: str) -> bool:
        if node in visiting:
            return True
        if node in done:
            return False
        visiting.add(node)
        found = any(has_cycle(nxt) for nxt in graph[node])
        visiting.discard(node)
        done.add(node)
        return found

    assert not any(has_cycle(name) for name in states)
    assert isinstance(asl["TimeoutSeconds"], int)


def test_the_choice_routes_every_status_and_the_deadline(asl: dict[str, Any]) -> None:
    choice = asl["States"]["RouteOnStatus"]
    text = json.dumps(choice["Choices"])
    for needle in ("COMPLETED", "FAILED", "QUEUED", "PROCESSING", "deadline_passed"):
        assert needle in text
    assert choice["Default"] == "UnexpectedStatus"


def test_retries_back_off_with_full_jitter(asl: dict[str, Any]) -> None:
    for name in ("CheckRenderStatus", "FinalizeVideo", "ReportFailure"):
        for retry in asl["States"][name]["Retry"]:
            assert retry["JitterStrategy"] == "FULL"
            assert retry["BackoffRate"] > 1
            assert retry["MaxDelaySeconds"] <= 60
            # A crashed Finalize holds a billed render: more attempts (each run checks the retention).
            assert retry["MaxAttempts"] <= (12 if name == "FinalizeVideo" else 6)


def test_a_crashed_finalize_is_retried_by_the_state_machine(asl: dict[str, Any]) -> None:
    """A Finalize that dies is retried by the state machine (Runtime.ExitError, Sandbox.Timedout); the
    retry runs at once (Finalize holds no lock) and finishes from the manifest if the dead run wrote it
    (tests/integration/test_render_job_state_machine.py); anything else ends in the failure branch."""
    retries = asl["States"]["FinalizeVideo"]["Retry"]
    crash = next(r for r in retries if "Runtime.ExitError" in r["ErrorEquals"])
    assert {"Sandbox.Timedout", "Runtime.ExitError"} <= set(crash["ErrorEquals"])
    # The soak (seed 2) saw a billed render thrown away INTERNAL after 7 Finalize crashes in a row: a
    # run makes dozens of AWS calls, so it is hit far more often than a status check.
    assert crash["MaxAttempts"] >= 10
    for name in ("CheckRenderStatus", "FinalizeVideo"):
        assert asl["States"][name]["Catch"][0]["Next"] == "ReportFailure"


def test_cfn_lint_accepts_the_definition_as_a_state_machine() -> None:
    template = {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Resources": {
            "RenderJob": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {
                    "RoleArn": "arn:aws:iam::123456789012:role/render-job",
                    "Definition": json.loads(definition_text()),
                },
            }
        },
    }
    matches = lint(json.dumps(template), regions=["us-east-1"])
    assert [str(m) for m in matches] == []


def test_step_functions_parses_the_definition() -> None:
    with mock_aws():
        sfn = boto3.client("stepfunctions", region_name="us-east-1")
        created = sfn.create_state_machine(
            name="RenderJob", definition=definition_text(), roleArn="arn:aws:iam::123456789012:role/render-job"
        )
        assert created["stateMachineArn"].endswith(":stateMachine:RenderJob")
