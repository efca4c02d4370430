"""The v2 API over real HTTP: auth, validation, credits, rate limit, status progression, retention, counters."""

from __future__ import annotations

import json
import re
import threading
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from avatar_local.emulator import EmulatorConfig, run_server_forever
from avatar_local.emulator.server import CLIENT_JOB_HEADER, RATE_LIMIT_RESET_HEADER
from tests.emulator.emulator_testkit import (
    API_KEY,
    EmulatorFactory,
    PresignedFileServer,
    poll_until_terminal,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _iv_body(file_server: PresignedFileServer, title: str = "Welcome", **extra: Any) -> dict[str, Any]:
    return {"image_url": file_server.url("alice.jpg"), "video_title": title, "script": "Hello there.", **extra}


def test_missing_or_unknown_api_key_is_401(make_emulator: EmulatorFactory, file_server: PresignedFileServer) -> None:
    emulator, client = make_emulator()
    body = _iv_body(file_server)

    without = httpx.post(f"{emulator.base_url}/v2/heygen-avatar-iv", json=body)
    unknown = client.post("/v2/heygen-avatar-iv", json=body, headers={"x-api-key": "stolen"})
    poll = httpx.get(f"{emulator.base_url}/v2/requests/abc/status")

    assert (without.status_code, unknown.status_code, poll.status_code) == (401, 401, 401)
    assert "x-api-key" in without.json()["error"]
    assert emulator.jobs_snapshot() == []
    assert emulator.stats().submits_rejected_by_code == {401: 2}


def test_wrong_content_type_is_406_and_bad_json_is_400(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    _, client = make_emulator()

    as_text = client.post(
        "/v2/heygen-avatar-iv", content=json.dumps(_iv_body(file_server)), headers={"Content-Type": "text/plain"}
    )
    not_json = client.post("/v2/heygen-avatar-iv", content=b"{oops", headers={"Content-Type": "application/json"})
    a_list = client.post("/v2/heygen-avatar-iv", json=[1, 2])

    assert as_text.status_code == 406
    assert as_text.json() == {"error": "Content-Type must be application/json"}
    assert not_json.status_code == 400
    assert a_list.status_code == 400
    assert "JSON object" in a_list.json()["error"]


def test_oversized_or_unreadable_bodies_are_refused(make_emulator: EmulatorFactory) -> None:
    emulator, client = make_emulator()

    huge = client.post(
        "/v2/heygen-avatar-v", content=b"x" * (1024 * 1024 + 1), headers={"Content-Type": "application/json"}
    )

    assert huge.status_code == 413
    assert emulator.stats().submits_rejected_by_code == {413: 1}


def test_invalid_parameters_are_400_naming_the_field(make_emulator: EmulatorFactory) -> None:
    emulator, client = make_emulator()

    response = client.post("/v2/heygen-avatar-v", json={"prompt": "hi", "aspect_ratio": "21:9"})

    assert response.status_code == 400
    assert response.json()["error"].startswith("aspect_ratio: must be one of")
    assert emulator.stats().submits_accepted == 0


def test_unknown_paths_are_404(make_emulator: EmulatorFactory) -> None:
    _, client = make_emulator()

    assert client.post("/v2/no-such-model", json={}).status_code == 404
    assert client.get("/v1/heygen-avatar-iv").status_code == 404
    assert client.get("/outputs/nope.mp4").status_code == 404


def test_accepted_submit_matches_the_v2_envelope(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    emulator, client = make_emulator()

    response = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server))

    body = response.json()
    assert response.status_code == 200
    assert set(body) == {"request_id", "status", "poll_url", "status_url", "response_url"}
    assert body["status"] == "QUEUED"
    assert body["status_url"] == f"{emulator.base_url}/v2/requests/{body['request_id']}/status"
    assert body["response_url"] == f"{emulator.base_url}/v2/requests/{body['request_id']}"


def test_status_goes_queued_processing_completed_on_the_render_clock(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    # Given a 140 s render at time_scale 0.005 (0.7 s), 30% of it queued
    emulator, client = make_emulator(time_scale=0.005, queued_fraction=0.3)
    started = time.monotonic()
    accepted = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server)).json()

    # When the status is polled until it is terminal
    answers = poll_until_terminal(client, accepted["status_url"])
    elapsed = time.monotonic() - started

    # Then it passes through each state in order, finishing no earlier than the drawn render time
    statuses = [answer.json()["status"] for answer in answers]
    seen = [status for i, status in enumerate(statuses) if i == 0 or statuses[i - 1] != status]
    assert seen == ["QUEUED", "PROCESSING", "COMPLETED"]
    assert elapsed >= 0.7
    first_processing = next(a for a in answers if a.json()["status"] == "PROCESSING")
    assert first_processing.json()["metrics"]["queue_time"] == pytest.approx(42.0, abs=0.01)
    final = answers[-1].json()
    assert set(final) == {"status", "request_id", "status_url", "response_url", "metrics"}
    assert final["metrics"]["total_time"] >= 140.0
    assert final["metrics"]["cost"] > 0
    job = emulator.jobs_snapshot()[0]
    assert job.status == "COMPLETED"
    assert job.completed_at is not None
    assert job.completed_at - job.submitted_at >= 0.7


def test_result_before_completion_is_the_status_body_and_after_it_carries_the_output(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    emulator, client = make_emulator(time_scale=0.004)
    accepted = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server)).json()

    early = client.get(accepted["response_url"])
    poll_until_terminal(client, accepted["status_url"])
    final = client.get(accepted["response_url"])

    assert early.status_code == 200
    assert early.json()["status"] in ("QUEUED", "PROCESSING")
    assert "output" not in early.json()
    assert final.status_code == 200
    assert set(final.json()) == {"status", "metrics", "output"}
    assert final.json()["output"] == f"{emulator.base_url}/outputs/{accepted['request_id']}.mp4"


@pytest.mark.parametrize(
    ("shape", "expected"),
    [("list", lambda url: [url]), ("object", lambda url: {"video_url": url}), ("string", lambda url: url)],
)
def test_output_shape_is_configurable(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer, shape: str, expected: Any
) -> None:
    emulator, client = make_emulator(render_seconds=0, output_shape=shape)
    accepted = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server)).json()
    poll_until_terminal(client, accepted["status_url"])

    output = client.get(accepted["response_url"]).json()["output"]

    assert output == expected(f"{emulator.base_url}/outputs/{accepted['request_id']}.mp4")


def test_completed_requires_the_rendered_file(make_emulator: EmulatorFactory, file_server: PresignedFileServer) -> None:
    # Given a zero render time, the job can only complete once ffmpeg has written the file
    emulator, client = make_emulator(render_seconds=0)
    accepted = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server)).json()

    answers = poll_until_terminal(client, accepted["status_url"])

    assert answers[0].json()["status"] == "PROCESSING"
    assert answers[-1].json()["status"] == "COMPLETED"
    output_dir = emulator.output_dir
    assert output_dir is not None
    assert (output_dir / f"{accepted['request_id']}.mp4").stat().st_size > 1000


def test_unknown_and_expired_requests_are_404(make_emulator: EmulatorFactory, file_server: PresignedFileServer) -> None:
    # Given results kept for 3600 s at time_scale 0.0002 (0.72 s after submission)
    emulator, client = make_emulator(time_scale=0.0002, retention_seconds=3600)
    accepted = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server)).json()
    assert client.get(accepted["status_url"]).status_code == 200

    # When the retention has passed since submission
    assert wait_for(lambda: client.get(accepted["status_url"]).status_code == 404, timeout=5)
    status = client.get(accepted["status_url"])
    result = client.get(accepted["response_url"])
    unknown = client.get("/v2/requests/00000000-0000-4000-8000-000000000000/status")

    # Then status and result are gone, and an unknown id looks the same
    assert status.json() == {"error": f"Request {accepted['request_id']} not found"}
    assert result.status_code == 404
    assert unknown.status_code == 404
    job = emulator.jobs_snapshot()[0]
    assert job.expired is True
    assert time.time() - job.submitted_at >= 0.72


def test_credits_run_out_with_406(make_emulator: EmulatorFactory, file_server: PresignedFileServer) -> None:
    emulator, client = make_emulator(credits=2)

    answers = [client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server, f"job {i}")) for i in range(3)]

    assert [answer.status_code for answer in answers] == [200, 200, 406]
    assert answers[2].json() == {"error": "Insufficient credits"}
    status = client.get(answers[0].json()["status_url"]).json()
    assert status["metrics"]["remaining_credits"] == 0
    stats = emulator.stats()
    assert stats.submits_accepted == 2
    assert stats.submits_rejected_by_code == {406: 1}


def test_rate_limit_counts_every_v2_request_per_key_and_resets(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    # Given 3 requests per minute, and a minute that lasts 1.2 s (time_scale 0.02)
    emulator, client = make_emulator(rpm=3, time_scale=0.02, api_keys={API_KEY, "other-key"})
    accepted = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server)).json()
    client.get(accepted["status_url"])
    client.get(accepted["response_url"])

    # When a fourth request arrives in the same window
    limited = client.get(accepted["status_url"])
    other_key = client.get(accepted["status_url"], headers={"x-api-key": "other-key"})
    download = client.get(f"/outputs/{accepted['request_id']}.mp4")

    # Then it is a 429 with the reset time, other keys and the CDN are unaffected
    assert limited.status_code == 429
    assert limited.json() == {"error": "Rate limit exceeded"}
    reset_at = datetime.fromisoformat(limited.headers[RATE_LIMIT_RESET_HEADER].replace("Z", "+00:00"))
    remaining = (reset_at - datetime.now(UTC)).total_seconds()
    assert 0 < remaining <= 1.2
    assert other_key.status_code == 200
    assert download.status_code == 404  # not rendered yet, but not throttled either

    # And after the reset time the key may call again
    time.sleep(remaining + 0.05)
    assert client.get(accepted["status_url"]).status_code == 200
    stats = emulator.stats()
    assert stats.http_429 == 1
    assert stats.rate_limited == 1


def test_counters_and_request_log(make_emulator: EmulatorFactory, file_server: PresignedFileServer) -> None:
    emulator, client = make_emulator(render_seconds=0)
    accepted = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server, "Counted")).json()
    request_id = accepted["request_id"]
    polls = poll_until_terminal(client, accepted["status_url"])
    output = client.get(accepted["response_url"]).json()["output"]
    client.get(accepted["response_url"])
    assert httpx.get(output).status_code == 200
    client.post("/v2/heygen-avatar-iv", json={"video_title": "bad"})

    job = emulator.jobs_snapshot()[0]
    stats = emulator.stats()
    log = emulator.request_log

    assert (job.request_id, job.model, job.video_title, job.submits) == (request_id, "heygen-avatar-iv", "Counted", 1)
    assert (job.status_calls, job.result_calls, job.downloads) == (len(polls), 2, 1)
    assert job.media_seconds is not None
    assert len(job.payload_fingerprint) == 32
    assert stats.submits_accepted == 1
    assert stats.submits_rejected_by_code == {400: 1}
    assert (stats.status_calls, stats.result_calls, stats.downloads) == (len(polls), 2, 1)
    assert stats.requests == len(log) == len(polls) + 5
    assert [entry.endpoint for entry in log[:2]] == ["submit", "status"]
    first = log[0]
    assert (first.method, first.path, first.status, first.fault) == ("POST", "/v2/heygen-avatar-iv", 200, None)
    assert (first.request_id, first.video_title) == (request_id, "Counted")
    assert abs(first.at - time.time()) < 30
    assert log[-2].endpoint == "download"
    assert log[-2].request_id == request_id
    assert (log[-1].status, log[-1].request_id) == (400, None)


def test_downloads_are_served_like_a_cdn(make_emulator: EmulatorFactory, file_server: PresignedFileServer) -> None:
    emulator, client = make_emulator(render_seconds=0)
    accepted = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server)).json()
    poll_until_terminal(client, accepted["status_url"])
    url = client.get(accepted["response_url"]).json()["output"]

    whole = httpx.get(url)
    head = httpx.head(url)
    part = httpx.get(url, headers={"Range": "bytes=0-99"})
    tail = httpx.get(url, headers={"Range": "bytes=-10"})
    beyond = httpx.get(url, headers={"Range": f"bytes={len(whole.content)}-"})

    assert whole.status_code == 200
    assert whole.headers["content-type"] == "video/mp4"
    assert int(whole.headers["content-length"]) == len(whole.content) > 1000
    assert whole.content[4:8] == b"ftyp"
    assert head.status_code == 200
    assert head.headers["content-length"] == whole.headers["content-length"]
    assert part.status_code == 206
    assert part.content == whole.content[:100]
    assert part.headers["content-range"] == f"bytes 0-99/{len(whole.content)}"
    assert tail.content == whole.content[-10:]
    assert beyond.status_code == 416
    assert emulator.jobs_snapshot()[0].downloads == 5


def test_concurrent_submits_each_get_their_own_job(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    emulator, client = make_emulator(render_seconds=0)
    results: list[int] = []
    lock = threading.Lock()

    def submit(index: int) -> None:
        response = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server, f"parallel {index}"))
        with lock:
            results.append(response.status_code)

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert results == [200] * 8
    jobs = emulator.jobs_snapshot()
    assert len({job.request_id for job in jobs}) == 8
    assert sorted(job.video_title or "" for job in jobs) == sorted(f"parallel {i}" for i in range(8))
    assert emulator.wait_idle(timeout=20)
    assert wait_for(lambda: all(job.status == "COMPLETED" for job in emulator.jobs_snapshot()), timeout=5)


def test_run_server_forever_serves_until_stopped(capsys: pytest.CaptureFixture[str]) -> None:
    # Given the blocking entry point the CLI uses, on an ephemeral port
    stop = threading.Event()
    server = threading.Thread(
        target=run_server_forever, args=(EmulatorConfig(),), kwargs={"port": 0, "stop": stop}, daemon=True
    )
    server.start()
    printed: list[str] = []

    def announced() -> bool:
        printed.append(capsys.readouterr().out)
        return "listening on" in "".join(printed)

    # When it has announced its URL
    assert wait_for(announced, timeout=5)
    match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", "".join(printed))
    assert match is not None
    unauthorized = httpx.post(f"{match.group(1)}/v2/heygen-avatar-iv", json={})
    stop.set()
    server.join(timeout=5)

    # Then it answered like the provider and stopped when asked
    assert unauthorized.status_code == 401
    assert not server.is_alive()


def test_a_submit_may_name_its_job_and_the_emulator_records_it(
    make_emulator: EmulatorFactory, file_server: PresignedFileServer
) -> None:
    """Given two identical submits, one naming its job in the local header and one naming none, then
    each accepted job carries what its submit said (the offline stack counts a job's submits by it)."""
    emulator, client = make_emulator(render_seconds=0)

    named = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server), headers={CLIENT_JOB_HEADER: "job-1"})
    anonymous = client.post("/v2/heygen-avatar-iv", json=_iv_body(file_server))

    by_request = {job.request_id: job.client_job_id for job in emulator.jobs_snapshot()}
    assert by_request == {named.json()["request_id"]: "job-1", anonymous.json()["request_id"]: None}
    assert emulator.wait_idle(timeout=20)
