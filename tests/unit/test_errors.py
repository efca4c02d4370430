"""Error codes (DESIGN.md section 5) and the contract between error class names and the ASL's Retry blocks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from avatar_pipeline import errors
from avatar_pipeline.errors import (
    ADVICE,
    ErrorCode,
    PipelineError,
    TransientError,
    error_code_for,
    transient_error_names,
)

pytestmark = pytest.mark.unit

ASL_PATH = Path(__file__).resolve().parents[2] / "statemachine" / "render_job.asl.json"

# The expected code of every error class, written out rather than read back from the classes.
EXPECTED_CODES: dict[str, ErrorCode] = {
    "PipelineError": ErrorCode.INTERNAL,
    "InvalidJob": ErrorCode.INVALID_JOB,
    "MissingMedia": ErrorCode.MISSING_MEDIA,
    "UnsupportedMedia": ErrorCode.UNSUPPORTED_MEDIA,
    "MediaTooLarge": ErrorCode.MEDIA_TOO_LARGE,
    "ProviderRejected": ErrorCode.PROVIDER_REJECTED,
    "ProviderAuthError": ErrorCode.PROVIDER_AUTH,
    "InsufficientCredits": ErrorCode.INSUFFICIENT_CREDITS,
    "ProviderJobFailed": ErrorCode.PROVIDER_FAILED,
    "ResultExpired": ErrorCode.RESULT_EXPIRED,
    "RenderTimeout": ErrorCode.RENDER_TIMEOUT,
    "OutputInvalid": ErrorCode.OUTPUT_INVALID,
    "OutputConflict": ErrorCode.OUTPUT_CONFLICT,
    "SubmitNeverAccepted": ErrorCode.PROVIDER_UNAVAILABLE,
    "ResultUnavailable": ErrorCode.RESULT_UNAVAILABLE,
    "SpendLimitReached": ErrorCode.SPEND_LIMIT,
    "InvalidCampaign": ErrorCode.INVALID_JOB,
    "CampaignNotApproved": ErrorCode.NOT_APPROVED,
    "SubmissionUncertain": ErrorCode.INTERNAL,
    "ProviderSubmitAmbiguous": ErrorCode.INTERNAL,
    # Transient errors reach a Catch only once their retries are spent.
    "TransientError": ErrorCode.INTERNAL,
    "ProviderThrottled": ErrorCode.INTERNAL,
    "ProviderUnavailable": ErrorCode.INTERNAL,
    "ProviderTimeout": ErrorCode.INTERNAL,
    "ProviderConnectionError": ErrorCode.INTERNAL,
    "ProviderBadResponse": ErrorCode.INTERNAL,
    "MediaNotYetAvailable": ErrorCode.INTERNAL,
    "SubmissionInProgress": ErrorCode.INTERNAL,
    "OutputTransferError": ErrorCode.INTERNAL,
    "NotificationInProgress": ErrorCode.INTERNAL,
}

EXPECTED_TRANSIENT = [
    "MediaNotYetAvailable",
    "NotificationInProgress",
    "OutputTransferError",
    "ProviderBadResponse",
    "ProviderConnectionError",
    "ProviderThrottled",
    "ProviderTimeout",
    "ProviderUnavailable",
    "SubmissionInProgress",
]


def all_error_classes() -> list[type[PipelineError]]:
    found: list[type[PipelineError]] = []
    pending: list[type[PipelineError]] = [PipelineError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


def load_asl() -> dict[str, Any]:
    asl: dict[str, Any] = json.loads(ASL_PATH.read_text())
    return asl


def retried_names(state: dict[str, Any]) -> set[str]:
    return {name for retrier in state.get("Retry", []) for name in retrier["ErrorEquals"]}


def test_expected_codes_cover_every_error_class() -> None:
    """Given every PipelineError subclass in the package
    When the table of expected codes is compared with them
    Then each class is listed (a new error class needs a deliberate code)."""
    assert {cls.__name__ for cls in all_error_classes()} == set(EXPECTED_CODES)


@pytest.mark.parametrize(("name", "code"), sorted(EXPECTED_CODES.items()))
def test_error_code_for_each_class_name(name: str, code: ErrorCode) -> None:
    """Given the class name of a pipeline error, as a Step Functions Catch reports it
    When it is mapped to an error code
    Then the DESIGN.md section 5 code comes back, and it matches the class's own code."""
    assert error_code_for(name) is code
    assert getattr(errors, name).code is code


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("States.Timeout", ErrorCode.RENDER_TIMEOUT),
        ("States.TaskFailed", ErrorCode.INTERNAL),
        ("States.ALL", ErrorCode.INTERNAL),
        ("Lambda.ServiceException", ErrorCode.INTERNAL),
        ("KeyError", ErrorCode.INTERNAL),
        ("invalidjob", ErrorCode.INTERNAL),
        ("", ErrorCode.INTERNAL),
    ],
)
def test_error_code_for_foreign_and_unknown_names(name: str, code: ErrorCode) -> None:
    """Given an error name that is not one of our classes (Step Functions' own, Python's, or mis-cased)
    When it is mapped to an error code
    Then States.Timeout is a render timeout and anything else is INTERNAL."""
    assert error_code_for(name) is code


@pytest.mark.parametrize("code", list(ErrorCode))
def test_every_error_code_has_advice(code: ErrorCode) -> None:
    """Given any error code
    When the advice for a person is looked up
    Then there is a non-trivial sentence."""
    assert len(ADVICE[code]) > 20


def test_transient_error_names_are_exactly_the_retryable_classes() -> None:
    """Given the package's error classes
    When the transient names are listed
    Then they are exactly the retryable concrete classes, sorted, without the TransientError base."""
    names = transient_error_names()

    assert names == EXPECTED_TRANSIENT
    assert names == sorted(cls.__name__ for cls in all_error_classes() if cls.retryable and cls is not TransientError)
    for name in names:
        assert issubclass(getattr(errors, name), TransientError)


def test_submit_ambiguity_is_never_retryable() -> None:
    """Given the errors that say a POST may have been accepted
    When their retryability is checked
    Then they are permanent (a retried POST is a second bill)."""
    assert errors.ProviderSubmitAmbiguous.retryable is False
    assert errors.SubmissionUncertain.retryable is False
    assert "ProviderSubmitAmbiguous" not in transient_error_names()


LAMBDA_FAILURES = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
    "Runtime.ExitError",
    "Runtime.Unknown",
    "Sandbox.Timedout",
}


def test_the_poll_and_finalize_tasks_retry_only_lambda_failures() -> None:
    """Given the RenderJob state machine definition
    When the Retry blocks of CheckRenderStatus and FinalizeVideo are read
    Then they retry Lambda-level failures (a crash, a timeout, a throttled invoke) and no provider
    error: Poll and Finalize turn Segmind's transient faults into a longer wait themselves, bounded by
    the render deadline and the result's retention (a Retry's MaxAttempts would give up on a render
    that is still running, or already billed)."""
    states = load_asl()["States"]
    provider_transients = {name for name in transient_error_names() if name.startswith("Provider")}
    for name in ("CheckRenderStatus", "FinalizeVideo"):
        retried = retried_names(states[name])
        assert retried >= LAMBDA_FAILURES, name
        assert not retried & (provider_transients | {"OutputTransferError"}), name


def test_finalize_tries_again_later_through_a_wait_in_the_state_machine() -> None:
    """Given the RenderJob state machine definition
    When FinalizeVideo's way out is followed
    Then a result carrying fetch_retry waits its wait_seconds and runs FinalizeVideo again; anything
    else is the job's outcome and ends the execution."""
    states = load_asl()["States"]
    choice = states[states["FinalizeVideo"]["Next"]]
    assert choice["Type"] == "Choice"
    (retry,) = choice["Choices"]
    assert retry == {"Variable": "$.fetch_retry", "IsPresent": True, "Next": retry["Next"]}
    wait = states[retry["Next"]]
    assert wait == {**wait, "Type": "Wait", "SecondsPath": "$.fetch_retry.wait_seconds", "Next": "FinalizeVideo"}
    assert states[choice["Default"]]["Type"] == "Succeed"


def test_no_permanent_error_is_retried_by_the_state_machine() -> None:
    """Given every Task state of the RenderJob state machine except the catch-all failure reporter
    When their Retry blocks are read
    Then each error name listed is either transient or a Lambda service error, never a permanent one."""
    permanent = {cls.__name__ for cls in all_error_classes() if not cls.retryable}
    for name, state in load_asl()["States"].items():
        if state["Type"] != "Task" or name == "ReportFailure":
            continue
        assert not (retried_names(state) & permanent), name


def test_retries_use_full_jitter_and_a_max_delay() -> None:
    """Given the Retry blocks of the poll and finalize tasks
    When they are read
    Then each has full jitter and a bounded delay (DESIGN.md section 1)."""
    states = load_asl()["States"]
    for name in ("CheckRenderStatus", "FinalizeVideo"):
        for retrier in states[name]["Retry"]:
            assert retrier["JitterStrategy"] == "FULL"
            assert 0 < retrier["MaxDelaySeconds"] <= 60


def test_throttled_error_keeps_the_reset_time() -> None:
    """Given a throttled error built with a reset time
    When it is inspected
    Then it is retryable and carries the time and the message."""
    error = errors.ProviderThrottled("slow down", reset_at=None)
    assert error.retryable is True
    assert error.message == "slow down"
    assert error.reset_at is None
