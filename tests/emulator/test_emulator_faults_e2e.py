"""Every fault kind, injected over real HTTP, and what it leaves behind (jobs, counters, the log)."""

from __future__ import annotations

import json
import math
import socket
import time
from typing import Any

import httpx
import pytest

from avatar_local.emulator import EmulatorConfig, FaultPlan, FaultRule, SegmindEmulator
from avatar_local.emulator.server import RATE_LIMIT_RESET_HEADER, SLOW_CHUNK_BYTES
from tests.emulator.emulator_testkit import API_KEY, EmulatorFactory, PresignedFileServer, poll_until_terminal

pytestmark = pytest.mark.e2e


def _plan(*rules: dict[str, Any]) -> FaultPlan:
    return FaultPlan.model_validate({"rules": list(rules)})


def _iv_body(file_server: PresignedFileServer, title: str = "Welcome") -> dict[str, Any]:
    return {"image_url": file_server.url("alice.jpg"), "video_title": title, "script": "Hello there."}


def _completed_job(client: httpx.Client, file_server: PresignedFileServer, title: str = "Welcome") -> dict[str, Any]:
    accepted: dict[str, Any] = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server, title)).json()
    poll_until_terminal(client, accepted["status_url"])
    return accepted


@pytest.mark.parametrize(("fault", "status"), [("http_500", 500), ("http_502", 502), ("http_504", 504)])
def test_submit_server_errors_create_no_job(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer, fault: str, status: int
) -> None:
    emulator, client = make_emulator(faults=_plan({"endpoint": "submit", "fault": fault}))

    first = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server))
    second = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server))

    assert first.status_code == status
    assert "error" in first.json()
    assert second.status_code == 200
    assert len(emulator.jobs_snapshot()) == 1
    stats = emulator.stats()
    assert stats.submits_rejected_by_code == {status: 1}
    assert (stats.faults_injected, stats.faults_by_kind) == (1, {fault: 1})
    assert [entry.fault for entry in emulator.request_log] == [fault, None]


def test_injected_429_carries_the_reset_header(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    emulator, client = make_emulator(faults=_plan({"endpoint": "submit", "fault": "http_429"}))

    response = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server))

    assert response.status_code == 429
    assert response.json() == {"error": "Rate limit exceeded"}
    assert response.headers[RATE_LIMIT_RESET_HEADER].endswith("Z")
    assert emulator.jobs_snapshot() == []
    assert emulator.stats().http_429 == 1


def test_submit_connection_reset_is_a_tcp_reset_and_creates_no_job(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    emulator, _ = make_emulator(faults=_plan({"endpoint": "submit", "fault": "connection_reset"}))
    body = json.dumps(_iv_body(file_server)).encode()
    port = int(emulator.base_url.rsplit(":", 1)[1])

    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(
            b"POST /v2/heygen-avatar-iv HTTP/1.1\r\nHost: x\r\nx-api-key: local-dev-key\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        with pytest.raises(ConnectionResetError):
            raw.recv(1024)

    assert emulator.jobs_snapshot() == []
    assert emulator.request_log[0].fault == "connection_reset"
    assert emulator.request_log[0].status is None


def test_reset_on_status_surfaces_in_httpx(make_emulator: EmulatorFactory, file_server: PresignedFileServer) -> None:
    emulator, client = make_emulator(faults=_plan({"endpoint": "status", "fault": "connection_reset"}))
    accepted = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server)).json()

    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        client.get(accepted["status_url"])
    assert client.get(accepted["status_url"]).status_code == 200
    assert emulator.jobs_snapshot()[0].status_calls == 2


def test_submit_read_timeout_creates_the_job_the_client_never_hears_about(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    # Given a submit that will be accepted and then stall for 1 s
    emulator, client = make_emulator(
        faults=_plan({"endpoint": "submit", "fault": "read_timeout", "delay_seconds": 1.0})
    )

    # When the client gives up after 0.3 s
    with pytest.raises(httpx.ReadTimeout):
        client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server, "Ambiguous"), timeout=0.3)

    # Then the provider has a billable job all the same
    jobs = emulator.jobs_snapshot()
    assert [job.video_title for job in jobs] == ["Ambiguous"]
    assert emulator.stats().submits_accepted == 1


def test_status_read_timeout_then_normal_answers(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    emulator, client = make_emulator(
        faults=_plan({"endpoint": "status", "fault": "read_timeout", "delay_seconds": 1.0})
    )
    accepted = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server)).json()

    with pytest.raises(httpx.ReadTimeout):
        client.get(accepted["status_url"], timeout=0.3)

    assert client.get(accepted["status_url"]).status_code == 200
    assert emulator.stats().faults_by_kind == {"read_timeout": 1}


def test_malformed_result_body_is_a_truncated_200(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    emulator, client = make_emulator(render_seconds=0, faults=_plan({"endpoint": "result", "fault": "malformed_body"}))
    accepted = _completed_job(client, file_server)

    with pytest.raises(httpx.RemoteProtocolError):
        client.get(accepted["response_url"])
    good = client.get(accepted["response_url"])

    assert good.json()["status"] == "COMPLETED"
    assert emulator.request_log[-2].fault == "malformed_body"
    assert emulator.request_log[-2].status == 200


def test_malformed_submit_body_still_creates_the_job(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    emulator, _ = make_emulator(faults=_plan({"endpoint": "submit", "fault": "malformed_body"}))
    body = json.dumps(_iv_body(file_server)).encode()
    port = int(emulator.base_url.rsplit(":", 1)[1])

    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(
            b"POST /v2/heygen-avatar-iv HTTP/1.1\r\nHost: x\r\nx-api-key: local-dev-key\r\n"
            b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        received = b""
        while chunk := raw.recv(65536):
            received += chunk
    head, _, payload = received.partition(b"\r\n\r\n")

    assert head.startswith(b"HTTP/1.1 200")
    declared = int(
        next(line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")).split(b":")[1]
    )
    assert 0 < len(payload) < declared
    with pytest.raises(json.JSONDecodeError):
        json.loads(payload)
    assert len(emulator.jobs_snapshot()) == 1


def test_failed_fault_turns_the_job_failed_for_good(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    plan = _plan({"endpoint": "status", "fault": "failed", "message": "Content blocked by safety filter"})
    emulator, client = make_emulator(render_seconds=0, faults=plan)
    accepted = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server)).json()

    status = client.get(accepted["status_url"])
    result = client.get(accepted["response_url"])
    again = client.get(accepted["status_url"])

    assert status.status_code == 422
    assert status.json()["status"] == "FAILED"
    assert status.json()["error"] == "Content blocked by safety filter"
    assert set(status.json()) == {"status", "error", "metrics"}
    assert result.status_code == 422
    assert again.status_code == 422
    job = emulator.jobs_snapshot()[0]
    assert (job.status, job.error) == ("FAILED", "Content blocked by safety filter")


def test_failed_on_submit_accepts_then_fails(make_emulator: EmulatorFactory) -> None:
    emulator, client = make_emulator(
        faults=_plan({"endpoint": "submit", "fault": "failed", "title_pattern": "blocked"})
    )

    fine = client.post("/v2/heygen-avatar-v", json={"prompt": "a friendly hello"})
    blocked = client.post("/v2/heygen-avatar-v", json={"prompt": "this prompt is blocked"})

    assert (fine.status_code, blocked.status_code) == (200, 200)
    assert client.get(fine.json()["status_url"]).status_code == 200
    failed = client.get(blocked.json()["status_url"])
    assert failed.status_code == 422
    assert "injected" in failed.json()["error"]
    assert emulator.stats().submits_accepted == 2


def test_early_expiry_makes_the_job_404(make_emulator: EmulatorFactory, file_server: PresignedFileServer) -> None:
    emulator, client = make_emulator(faults=_plan({"endpoint": "result", "fault": "early_expiry"}))
    accepted = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server)).json()

    result = client.get(accepted["response_url"])
    status = client.get(accepted["status_url"])

    assert result.status_code == 404
    assert result.json() == {"error": f"Request {accepted['request_id']} not found"}
    assert status.status_code == 404
    assert emulator.jobs_snapshot()[0].expired is True


def test_title_pattern_targets_one_job_for_a_number_of_times(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    plan = _plan({"endpoint": "status", "fault": "http_502", "title_pattern": "^flaky", "times": 2})
    emulator, client = make_emulator(faults=plan)
    steady = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server, "steady one")).json()
    flaky = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server, "flaky one")).json()

    codes = [client.get(steady["status_url"]).status_code] + [
        client.get(flaky["status_url"]).status_code for _ in range(3)
    ]

    assert codes == [200, 502, 502, 200]
    log = emulator.request_log
    assert [(entry.video_title, entry.fault) for entry in log if entry.fault] == [("flaky one", "http_502")] * 2


def test_slow_download_paces_the_file_but_delivers_all_of_it(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    plan = _plan({"endpoint": "download", "fault": "slow_download", "delay_seconds": 0.05})
    emulator, client = make_emulator(render_seconds=0, faults=plan)
    accepted = _completed_job(client, file_server)
    url = client.get(accepted["response_url"]).json()["output"]

    started = time.monotonic()
    slow = httpx.get(url)
    slow_seconds = time.monotonic() - started
    fast = httpx.get(url)

    chunks = math.ceil(len(fast.content) / SLOW_CHUNK_BYTES)
    assert slow.content == fast.content
    assert slow_seconds >= 0.05 * chunks * 0.9
    assert emulator.stats().faults_by_kind == {"slow_download": 1}


@pytest.mark.parametrize(("fault", "status"), [("http_500", 500), ("early_expiry", 404)])
def test_download_faults(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer, fault: str, status: int
) -> None:
    emulator, client = make_emulator(render_seconds=0, faults=_plan({"endpoint": "download", "fault": fault}))
    accepted = _completed_job(client, file_server)
    url = client.get(accepted["response_url"]).json()["output"]

    first = httpx.get(url)
    second = httpx.get(url)

    assert first.status_code == status
    assert second.status_code == (404 if fault == "early_expiry" else 200)
    assert emulator.stats().faults_by_kind == {fault: 1}
    assert emulator.jobs_snapshot()[0].downloads == 2


def test_truncated_download_is_an_incomplete_body(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    _, client = make_emulator(render_seconds=0, faults=_plan({"endpoint": "download", "fault": "malformed_body"}))
    accepted = _completed_job(client, file_server)
    url = client.get(accepted["response_url"]).json()["output"]

    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url)
    assert httpx.get(url).status_code == 200


def test_download_read_timeout(make_emulator: EmulatorFactory, file_server: PresignedFileServer) -> None:
    plan = _plan({"endpoint": "download", "fault": "read_timeout", "delay_seconds": 1.0})
    _, client = make_emulator(render_seconds=0, faults=plan)
    accepted = _completed_job(client, file_server)
    url = client.get(accepted["response_url"]).json()["output"]

    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url, timeout=0.3)


def test_plan_can_be_replaced_at_run_time(make_emulator: EmulatorFactory, file_server: PresignedFileServer) -> None:
    emulator, client = make_emulator()
    assert client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server)).status_code == 200

    emulator.set_faults(FaultPlan(rules=[FaultRule(endpoint="submit", fault="http_504", times=2)]))
    codes = [client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server)).status_code for _ in range(3)]

    assert codes == [504, 504, 200]
    assert emulator.stats().faults_injected == 2


def test_config_fault_plan_applies_from_the_start(file_server: PresignedFileServer) -> None:
    # Given a plan carried by the config (as the CLI passes it) rather than by set_faults
    config = EmulatorConfig(faults=FaultPlan(rules=[FaultRule(endpoint="submit", fault="http_502")]))

    with SegmindEmulator(config) as emulator:
        response = httpx.post(
            f"{emulator.base_url}/v2/heygen-avatar-iv", json=_iv_body(file_server), headers={"x-api-key": API_KEY}
        )
        stats = emulator.stats()

    assert response.status_code == 502
    assert stats.faults_by_kind == {"http_502": 1}
