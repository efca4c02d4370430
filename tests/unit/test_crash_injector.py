"""The offline stack's crash injector: crashes only inside handler invocations, as a dead runtime.

AWS calls are answered by a `before-send` hook (no network, no moto): the injector acts at
`before-call` / `after-call`, around them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import httpx
import pytest
from botocore.awsrequest import AWSResponse

from avatar_local.stack.crashes import CrashInjector, LambdaDeath, RandomCrashes
from avatar_local.stack.lambda_router import CURRENT_INVOCATION, LambdaRouter
from avatar_pipeline.provider.client import SegmindClient

pytestmark = pytest.mark.unit

FINALIZE = "avatar-pipeline-FinalizeFunction-ABC123"
SUBMIT = "avatar-pipeline-SubmitFunction-DEF456"
JOB_EVENT = {"job": {"job_id": "job-1", "job_key": "inbox/a/job.json"}}


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def offline_dynamodb() -> tuple[Any, list[str]]:
    """A DynamoDB client (from a new session, so it carries the injector's hooks) whose requests are
    answered locally; returns it and the operations that were really sent."""
    client: Any = boto3.session.Session(region_name="us-east-1").client("dynamodb", endpoint_url="http://127.0.0.1:9")
    sent: list[str] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        sent.append(str(request.headers.get("X-Amz-Target", b"")))
        headers = {"Content-Type": "application/x-amz-json-1.0"}
        return AWSResponse(request.url, 200, headers, _Body(b'{"TableNames": []}'))  # type: ignore[arg-type]

    client.meta.events.register("before-send", answer)
    return client, sent


def route(handler: Callable[[Any, Any], Any], name: str = FINALIZE) -> LambdaRouter:
    router = LambdaRouter()
    router.register(name, lambda: handler)
    return router


@pytest.fixture
def injector() -> Iterator[CrashInjector]:
    with CrashInjector(RandomCrashes(rate=1.0, seed=1)) as installed:
        yield installed


def test_calls_outside_a_handler_invocation_never_crash(injector: CrashInjector) -> None:
    """The harness's own calls, moto's interpreter and the emulator run outside any invocation."""
    client, sent = offline_dynamodb()

    for _ in range(50):
        client.list_tables()

    assert len(sent) == 50
    assert injector.crashes == []


def test_a_handler_dies_at_an_aws_call_and_the_router_reports_a_dead_runtime(injector: CrashInjector) -> None:
    """Given a certain crash per call, and a handler that catches every Exception around its calls
    When it is invoked
    Then it dies anyway (the crash is no Exception), Lambda's Runtime.ExitError is reported, and the
    next invocation gets a fresh environment (a cold start), as after a real crash."""
    client, _ = offline_dynamodb()

    def handler(event: Any, context: Any) -> str:
        for _ in range(20):
            try:
                client.list_tables()
            except Exception:  # noqa: S112 - the point: even this does not stop a crash
                continue
        return "survived"

    router = route(handler)
    payload, error = router.invoke(FINALIZE, JOB_EVENT)

    assert (error, payload["errorType"]) == ("Unhandled", "Runtime.ExitError")
    [crash] = injector.crashes
    assert (crash.function, crash.point_kind, crash.job_keys) == ("finalize", "aws_call", ("inbox/a/job.json",))
    assert crash.point in ("before:dynamodb.ListTables", "after:dynamodb.ListTables")
    router.invoke(FINALIZE, JOB_EVENT)
    assert router.cold_starts[FINALIZE] == 2
    assert CURRENT_INVOCATION.get() is None


def test_a_dead_invocation_cannot_clean_up(injector: CrashInjector) -> None:
    """A `finally` that would abort an upload or release a claim dies too: nothing runs after a crash."""
    client, sent = offline_dynamodb()
    cleanup: list[str] = []

    def handler(event: Any, context: Any) -> None:
        try:
            for _ in range(20):
                client.list_tables()
        finally:
            try:
                client.describe_limits()
                cleanup.append("done")
            except LambdaDeath:
                cleanup.append("died")
                raise

    route(handler).invoke(FINALIZE, JOB_EVENT)

    assert cleanup == ["died"]
    assert "DynamoDB_20120810.DescribeLimits" not in sent


def test_work_a_handler_hands_to_a_thread_pool_belongs_to_its_invocation(injector: CrashInjector) -> None:
    """A copy's part uploads run in a pool: they die with the Finalize that started them. A pool
    used outside an invocation is untouched."""
    client, _ = offline_dynamodb()
    outcomes: list[str] = []

    def handler(event: Any, context: Any) -> None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [pool.submit(client.list_tables) for _ in range(20)]
        for future in futures:
            outcomes.append(type(future.exception()).__name__ if future.exception() else "ok")

    payload, _ = route(handler).invoke(FINALIZE, JOB_EVENT)

    assert "LambdaDeath" in outcomes
    assert payload is None  # the handler itself returned: only its pool's calls died
    with ThreadPoolExecutor(max_workers=2) as pool:
        assert all(f.exception() is None for f in [pool.submit(client.list_tables) for _ in range(20)])


def segmind() -> SegmindClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"status": "PROCESSING", "request_id": "r1"})

    return SegmindClient(
        "https://api.segmind.example", lambda: "key", http=httpx.Client(transport=httpx.MockTransport(answer))
    )


@pytest.mark.parametrize(("points", "crashes"), [(["provider_call"], True), (["aws_call", "between_parts"], False)])
def test_provider_calls_are_crash_points_of_their_own(points: list[str], crashes: bool) -> None:
    with CrashInjector(RandomCrashes(rate=1.0, seed=2, points=points)) as injector:
        provider = segmind()

        def handler(event: Any, context: Any) -> None:
            for _ in range(20):
                provider.status("r1")

        _, error = route(handler).invoke(FINALIZE, JOB_EVENT)
        outside = [provider.status("r1").status for _ in range(5)]

    assert (error is not None) == crashes
    assert [c.point for c in injector.crashes][:1] in ([], ["before:segmind.status"], ["after:segmind.status"])
    assert outside == ["PROCESSING"] * 5


def test_only_the_plan_s_functions_crash() -> None:
    with CrashInjector(RandomCrashes(rate=1.0, seed=3, functions=["submit"])) as injector:
        client, _ = offline_dynamodb()

        def handler(event: Any, context: Any) -> str:
            for _ in range(20):
                client.list_tables()
            return "done"

        assert route(handler).invoke(FINALIZE, JOB_EVENT) == ("done", None)
        _, error = route(handler, SUBMIT).invoke(SUBMIT, {"Records": []})

    assert error == "Unhandled"
    assert [c.function for c in injector.crashes] == ["submit"]


def test_the_same_seed_crashes_the_same_jobs_at_the_same_points() -> None:
    def run(seed: int) -> list[tuple[str, str]]:
        with CrashInjector(RandomCrashes(rate=0.05, seed=seed)) as injector:
            client, _ = offline_dynamodb()

            def handler(event: Any, context: Any) -> None:
                for _ in range(10):
                    client.list_tables()

            router = route(handler)
            for job in range(30):
                router.invoke(FINALIZE, {"job": {"job_id": f"job-{job}", "job_key": f"inbox/{job}.json"}})
        return [(crash.job_keys[0], crash.point) for crash in injector.crashes]

    first = run(seed=4)

    assert first
    assert first == run(seed=4)
    assert first != run(seed=5)
