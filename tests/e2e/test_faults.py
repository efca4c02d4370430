"""Fault injection through `avatar-pipeline local run --faults`, with every event delivered 3 times.

One run, one job per fault: each fault rule matches exactly one job by its title. For every job:
it ends terminal, with exactly one notification and at most one accepted provider submit;
transient faults end SUCCEEDED; nothing is lost (the summary lists every job file dropped).
"""

from __future__ import annotations

import json

import pytest

from tests.e2e.conftest import RunResult, local_run, write_job

pytestmark = pytest.mark.e2e

TRANSIENT = ["http_429", "http_500", "http_502", "http_504", "read_timeout", "connection_reset", "malformed_body"]
# What each fault must end in; anything not listed must end SUCCEEDED.
EXPECTED_FAILURES = {
    # A submit whose answer never arrives (or arrives unreadable) may have been accepted and
    # billed: it is never repeated, the job fails with a report saying so.
    "submit-read_timeout": "INTERNAL",
    "submit-connection_reset": "INTERNAL",
    "submit-malformed_body": "INTERNAL",
    # Permanent: the provider says the render failed, or forgot it.
    "status-failed": "PROVIDER_FAILED",
    "status-early_expiry": "RESULT_EXPIRED",
    "result-failed": "PROVIDER_FAILED",
    "result-early_expiry": "RESULT_EXPIRED",
    "download-early_expiry": "RESULT_EXPIRED",
}
SCENARIOS = (
    [f"submit-{f}" for f in TRANSIENT]
    + [f"status-{f}" for f in [*TRANSIENT, "failed", "early_expiry"]]
    + [f"result-{f}" for f in [*TRANSIENT, "failed", "early_expiry"]]
    + [f"download-{f}" for f in [*TRANSIENT, "slow_download", "early_expiry"]]
    + ["finalize-crash"]
)


def fault_rule(scenario: str) -> dict[str, object] | None:
    endpoint, fault = scenario.split("-", 1)
    if endpoint == "finalize":
        return None
    rule: dict[str, object] = {"endpoint": endpoint, "fault": fault, "times": 1, "title_pattern": f"^{scenario}$"}
    if fault == "read_timeout":
        rule["delay_seconds"] = 7  # past the stack's 5 s loopback read timeout
    if fault == "failed":
        rule["message"] = "Content blocked by the provider's safety filter"
    return rule


@pytest.fixture(scope="module")
def fault_run(tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    inbox = tmp_path_factory.mktemp("faults") / "inbox"
    inbox.mkdir()
    for scenario in SCENARIOS:
        write_job(
            inbox,
            f"{scenario}.json",
            {"model": "heygen-avatar-iv", "photo": f"{scenario}.png", "video_title": scenario, "script": "Faults."},
            photo=f"{scenario}.png",
        )
    plan = {
        "provider": {"rules": [r for r in map(fault_rule, SCENARIOS) if r is not None]},
        # Kill the first Finalize that has copied its video, before the manifest and notification.
        "handlers": [{"function": "finalize", "point": "after_video_copy", "times": 1}],
    }
    faults = inbox.parent / "faults.json"
    faults.write_text(json.dumps(plan))
    return local_run(
        inbox,
        tmp_path_factory.mktemp("faults-out"),
        "--faults",
        str(faults),
        "--duplicate-events",
        "3",
        "--time-scale",
        "0.01",
        "--timeout",
        "280",
        timeout=320,
    )


def test_every_job_is_accounted_for_and_terminal(fault_run: RunResult) -> None:
    assert fault_run.exit_code == 0, fault_run.stderr[-3000:]
    summary = fault_run.summary
    assert sorted(j["input_key"] for j in summary["jobs"]) == sorted(f"inbox/{s}.json" for s in SCENARIOS)
    assert summary["counts"]["pending"] == 0
    assert summary["counts"]["dead_letters"] == 0
    assert summary["queue"]["duplicates_sent"] == 2 * len(SCENARIOS)
    # Every rule fired (and the crash happened): the suite tested what it claims to.
    assert summary["provider"]["faults_injected"] == len(SCENARIOS) - 1


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_each_fault_ends_as_it_should_with_one_notification_and_at_most_one_submit(
    fault_run: RunResult, scenario: str
) -> None:
    job = fault_run.job(f"inbox/{scenario}.json")
    expected = EXPECTED_FAILURES.get(scenario)
    if expected is None:
        assert (job["status"], job["error_code"]) == ("SUCCEEDED", None), job["error_message"]
    else:
        assert (job["status"], job["error_code"]) == ("FAILED", expected), job["error_message"]
    assert job["notifications"] == 1
    assert job["provider_submits"] <= 1
    if expected is None:
        assert job["provider_submits"] == 1


def test_the_crashed_finalize_still_delivered_a_complete_video(fault_run: RunResult) -> None:
    """The crash left a video without a manifest; the retried Finalize completed it."""
    for job in fault_run.summary["jobs"]:
        if job["status"] == "SUCCEEDED":
            manifest = fault_run.out / "outputs" / job["outputs"][-1]
            assert json.loads(manifest.read_text())["job_id"] == job["job_id"]
