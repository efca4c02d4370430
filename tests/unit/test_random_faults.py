"""The emulator's random fault plan: reproducible by seed, per job, at its rate, in runs of its lengths."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from avatar_local.emulator import FaultPlan, FaultRule
from avatar_local.emulator.faults import SINGLE_SHOT_FAULTS, FaultBook, RandomFaults

pytestmark = pytest.mark.unit


def draws(book: FaultBook, endpoint: str, identity: str, count: int, has_job: bool = True) -> list[str | None]:
    taken = [book.take(endpoint, None, has_job, identity) for _ in range(count)]
    return [rule.fault if rule else None for rule in taken]


def test_the_same_seed_draws_the_same_faults_for_each_job() -> None:
    """Given two books with the same random plan
    When each sees the same jobs' requests, one in order and one interleaved with another job's
    Then every job gets the same faults in both: draws depend on the job and the request's number,
    not on what else the emulator serves."""
    plan = FaultPlan(random=RandomFaults(rate=0.3, seed=42))
    alone, busy = FaultBook(plan), FaultBook(plan)

    expected = draws(alone, "status", "job A", 200)
    interleaved: list[str | None] = []
    for _ in range(200):
        interleaved += draws(busy, "status", "job A", 1)
        draws(busy, "status", "job B", 3)
        draws(busy, "result", "job A", 1)

    assert interleaved == expected
    assert any(expected), "a 30% plan over 200 requests draws some faults"


def test_another_seed_draws_other_faults() -> None:
    first = draws(FaultBook(FaultPlan(random=RandomFaults(rate=0.3, seed=1))), "submit", "job", 300)
    second = draws(FaultBook(FaultPlan(random=RandomFaults(rate=0.3, seed=2))), "submit", "job", 300)

    assert first != second


@pytest.mark.parametrize("rate", [0.05, 0.1, 0.3])
def test_the_share_of_faulted_requests_is_the_rate(rate: float) -> None:
    """Runs included: `rate` is the share of all requests that fail, over many jobs."""
    book = FaultBook(FaultPlan(random=RandomFaults(rate=rate, seed=7)))

    results = [fault for job in range(400) for fault in draws(book, "status", f"job {job}", 50)]

    share = sum(fault is not None for fault in results) / len(results)
    assert share == pytest.approx(rate, rel=0.15)
    assert book.injected == sum(fault is not None for fault in results)
    assert sum(book.injected_by_endpoint["status"].values()) == book.injected


def test_runs_have_the_plan_s_lengths_and_repeat_one_fault_on_one_job() -> None:
    """Given a plan whose transient faults come in runs of 1 (half) or 6 (half)
    When many jobs make requests
    Then runs start at those lengths only, in about those proportions, and each 6-run is six
    consecutive requests of that job failing with the same fault."""
    plan = RandomFaults(rate=0.1, seed=3, kinds={"http_500": 1.0, "http_502": 1.0}, run_lengths={1: 1.0, 6: 1.0})
    book = FaultBook(FaultPlan(random=plan))
    sequences = {job: draws(book, "result", f"job {job}", 60) for job in range(300)}

    lengths = Counter(length for (_, _, length), n in book.runs_started.items() for _ in range(n))
    assert set(lengths) == {1, 6}
    assert lengths[6] / (lengths[1] + lengths[6]) == pytest.approx(0.5, abs=0.1)
    six_runs = 0
    for faults in sequences.values():
        index = 0
        while index < len(faults):
            if faults[index] is None:
                index += 1
                continue
            end = index
            while end < len(faults) and faults[end] == faults[index]:
                end += 1
            six_runs += (end - index) >= 6
            index = end
    assert six_runs >= lengths[6] * 0.8  # a 6-run cut short by the end of a job's 60 requests is rare


def test_single_shot_kinds_never_run_and_each_kind_stays_on_its_endpoints() -> None:
    plan = RandomFaults(rate=0.5, seed=11, run_lengths={5: 1.0})
    book = FaultBook(FaultPlan(random=plan))

    for endpoint in ("submit", "status", "result", "download"):
        for job in range(100):
            draws(book, endpoint, f"job {job}", 20)

    for (endpoint, kind, length), _ in book.runs_started.items():
        assert length == (1 if kind in SINGLE_SHOT_FAULTS else 5)
        assert kind != "slow_download" or endpoint == "download"
        assert kind != "failed" or endpoint != "download"
    kinds = {kind for by_kind in book.injected_by_endpoint.values() for kind in by_kind}
    assert {"http_429", "http_500", "connection_reset", "malformed_body", "failed", "slow_download"} <= kinds


def test_job_faults_need_a_job_and_file_faults_a_file() -> None:
    """A drawn `early_expiry` on a status check of an unknown request, or a `slow_download` of a file
    that does not exist, injects nothing (the request is a plain 404 anyway)."""
    plan = RandomFaults(rate=1.0, seed=5, kinds={"early_expiry": 1.0, "slow_download": 1.0})
    book = FaultBook(FaultPlan(random=plan))

    assert draws(book, "status", "job", 10, has_job=False) == [None] * 10
    assert draws(book, "download", "job", 10, has_job=False) == [None] * 10
    assert book.injected == 0
    assert set(draws(book, "download", "job", 10, has_job=True)) <= {"early_expiry", "slow_download"}


def test_explicit_rules_come_first_and_random_draws_use_the_plan_s_delays() -> None:
    plan = FaultPlan(
        rules=[FaultRule(endpoint="submit", fault="http_504", times=1)],
        random=RandomFaults(rate=1.0, seed=1, kinds={"read_timeout": 1.0}, read_timeout_seconds=6.0),
    )
    book = FaultBook(plan)

    first, second = book.take("submit", "job", True, "job"), book.take("submit", "job", True, "job")

    assert first is not None
    assert first.fault == "http_504"
    assert second is not None
    assert (second.fault, second.delay_seconds) == ("read_timeout", 6.0)
    assert book.injected_by_endpoint == {"submit": {"http_504": 1, "read_timeout": 1}}


def test_a_random_section_loads_from_json_and_is_validated() -> None:
    plan = FaultPlan.model_validate_json(
        '{"random": {"rate": 0.1, "seed": 9, "endpoints": ["status"], "run_lengths": {"1": 1, "6": 1}}}'
    )
    assert plan.random is not None
    assert (plan.random.rate, plan.random.endpoints, plan.random.run_lengths) == (0.1, ["status"], {1: 1.0, 6: 1.0})
    book = FaultBook(plan)
    assert draws(book, "submit", "job", 100) == [None] * 100  # submit is not in the plan's endpoints

    for bad in ({"rate": 1.5}, {"rate": 0.1, "kinds": {"http_500": -1}}, {"rate": 0.1, "run_lengths": {"0": 1}}):
        with pytest.raises(ValidationError):
            RandomFaults.model_validate(bad)
