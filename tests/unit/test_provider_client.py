"""SegmindClient against an in-process HTTP transport: every status code and body shape of notes/segmind-v2.md."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from avatar_pipeline.errors import (
    InsufficientCredits,
    PipelineError,
    ProviderAuthError,
    ProviderBadResponse,
    ProviderConnectionError,
    ProviderRejected,
    ProviderSubmitAmbiguous,
    ProviderThrottled,
    ProviderTimeout,
    ProviderUnavailable,
    ResultExpired,
)
from avatar_pipeline.provider.client import SegmindClient
from avatar_pipeline.provider.wire import RenderResult, StatusReport, SubmitAccepted

pytestmark = pytest.mark.unit

BASE_URL = "https://api.segmind.com"
MODEL = "heygen-avatar-iv"
REQUEST_ID = "8b5e7f3c-2a41-4c8e-9d3b-1f6a0e2c4d5b"
VIDEO = "https://segmind-outputs.s3.amazonaws.com/videos/abc.mp4"
CAPTIONS = "https://segmind-outputs.s3.amazonaws.com/videos/abc.srt"
PAYLOAD = {"image_url": "https://cdn.example.com/a.png", "video_title": "Hi", "script": "Hello."}

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that answers with one scripted response and keeps what it was sent."""

    def __init__(self, respond: Handler) -> None:
        self._respond = respond
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._respond(request)


def client_for(respond: Handler) -> tuple[SegmindClient, Recorder]:
    recorder = Recorder(respond)
    http = httpx.Client(transport=httpx.MockTransport(recorder))
    return SegmindClient(BASE_URL, api_key=lambda: "k", http=http), recorder


def answer(status: int, body: object = None, *, text: str | None = None, headers: dict[str, str] | None = None):
    def respond(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    return respond


def raising(exc_type: type[httpx.TransportError]) -> Handler:
    def respond(request: httpx.Request) -> httpx.Response:
        raise exc_type("boom", request=request)

    return respond


def submit_with(respond: Handler) -> SubmitAccepted:
    client, _ = client_for(respond)
    return client.submit(MODEL, PAYLOAD)


def status_with(respond: Handler) -> StatusReport:
    client, _ = client_for(respond)
    return client.status(REQUEST_ID)


def result_with(respond: Handler) -> RenderResult | StatusReport:
    client, _ = client_for(respond)
    return client.result(REQUEST_ID)


ACCEPTED_BODY: dict[str, Any] = {
    "request_id": REQUEST_ID,
    "status": "QUEUED",
    "poll_url": f"{BASE_URL}/v2/requests/{REQUEST_ID}/status",
    "status_url": f"{BASE_URL}/v2/requests/{REQUEST_ID}/status",
    "response_url": f"{BASE_URL}/v2/requests/{REQUEST_ID}",
}


# --- submit -----------------------------------------------------------------------------------------


def test_submit_accepted() -> None:
    """Given Segmind answers the POST with 200 and the full body
    When a job is submitted
    Then the request id and URLs are returned, and the payload was sent as JSON."""
    client, recorder = client_for(answer(200, ACCEPTED_BODY))

    accepted = client.submit(MODEL, PAYLOAD)

    assert accepted.request_id == REQUEST_ID
    assert accepted.status == "QUEUED"
    assert accepted.status_url == ACCEPTED_BODY["status_url"]
    assert accepted.response_url == ACCEPTED_BODY["response_url"]
    (request,) = recorder.requests
    assert request.method == "POST"
    assert json.loads(request.content) == PAYLOAD


@pytest.mark.parametrize("missing", ["request_id", "status_url", "response_url"])
def test_submit_2xx_without_a_required_field_is_a_bad_response(missing: str) -> None:
    """Given a 200 answer lacking request_id, status_url or response_url
    When a job is submitted
    Then ProviderBadResponse is raised (a 2xx without them is not a job)."""
    body = {k: v for k, v in ACCEPTED_BODY.items() if k != missing}
    with pytest.raises(ProviderBadResponse):
        submit_with(answer(200, body))


def test_submit_2xx_with_an_empty_request_id_is_a_bad_response() -> None:
    """Given a 200 answer whose request_id is an empty string
    When a job is submitted
    Then ProviderBadResponse is raised."""
    with pytest.raises(ProviderBadResponse):
        submit_with(answer(200, {**ACCEPTED_BODY, "request_id": ""}))


@pytest.mark.parametrize(
    "respond",
    [
        answer(200, text="<html>gateway</html>"),
        answer(200, text=""),
        answer(200, ["not", "an", "object"]),
    ],
    ids=["html", "empty", "json-array"],
)
def test_submit_2xx_that_is_not_a_json_object_is_a_bad_response(respond: Handler) -> None:
    """Given a 200 answer that is not JSON, or JSON but not an object
    When a job is submitted
    Then ProviderBadResponse is raised."""
    with pytest.raises(ProviderBadResponse):
        submit_with(respond)


def test_submit_400_is_rejected_with_the_providers_message() -> None:
    """Given Segmind answers 400 with an error envelope
    When a job is submitted
    Then ProviderRejected carries Segmind's message."""
    with pytest.raises(ProviderRejected) as caught:
        submit_with(answer(400, {"error": "video_title is required"}))
    assert "video_title is required" in caught.value.message
    assert "400" in caught.value.message


def test_submit_400_with_a_plain_text_body_keeps_the_text() -> None:
    """Given Segmind answers 400 with plain text
    When a job is submitted
    Then ProviderRejected carries that text."""
    with pytest.raises(ProviderRejected) as caught:
        submit_with(answer(400, text="bad parameter: fit"))
    assert "bad parameter: fit" in caught.value.message


@pytest.mark.parametrize("status", [401, 403])
def test_submit_auth_failures(status: int) -> None:
    """Given Segmind answers 401 or 403
    When a job is submitted
    Then ProviderAuthError is raised."""
    with pytest.raises(ProviderAuthError):
        submit_with(answer(status, {"error": "Invalid API key"}))


def test_submit_404_is_a_rejection_not_an_expired_result() -> None:
    """Given Segmind answers the POST with 404 (unknown model slug)
    When a job is submitted
    Then ProviderRejected is raised, not ResultExpired."""
    with pytest.raises(ProviderRejected):
        submit_with(answer(404, {"error": "Model not found"}))


def test_submit_406_is_insufficient_credits() -> None:
    """Given Segmind answers 406 about credits
    When a job is submitted
    Then InsufficientCredits is raised with the message."""
    with pytest.raises(InsufficientCredits) as caught:
        submit_with(answer(406, {"error": "Insufficient credits"}))
    assert "Insufficient credits" in caught.value.message


@pytest.mark.parametrize("message", ["Invalid Content-Type header", "content type must be application/json"])
def test_submit_406_about_content_type_is_a_rejection(message: str) -> None:
    """Given Segmind answers 406 because of the Content-Type
    When a job is submitted
    Then ProviderRejected is raised (our bug, not the user's credits)."""
    with pytest.raises(ProviderRejected):
        submit_with(answer(406, {"error": message}))


def test_submit_429_carries_the_reset_time() -> None:
    """Given Segmind answers 429 with x-rate-limit-reset-at-utc
    When a job is submitted
    Then ProviderThrottled carries the reset time as an aware UTC datetime."""
    respond = answer(429, {"error": "Rate limited"}, headers={"x-rate-limit-reset-at-utc": "2026-11-21T10:00:30Z"})
    with pytest.raises(ProviderThrottled) as caught:
        submit_with(respond)
    assert caught.value.reset_at == datetime(2026, 11, 21, 10, 0, 30, tzinfo=UTC)


def test_429_reset_time_without_a_zone_is_read_as_utc() -> None:
    """Given a 429 whose reset header has no zone
    When a job is submitted
    Then the reset time is taken as UTC."""
    respond = answer(429, {"error": "Rate limited"}, headers={"x-rate-limit-reset-at-utc": "2026-11-21 10:00:30"})
    with pytest.raises(ProviderThrottled) as caught:
        submit_with(respond)
    assert caught.value.reset_at == datetime(2026, 11, 21, 10, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    "headers",
    [None, {"x-rate-limit-reset-at-utc": "soon"}, {"x-rate-limit-reset-at-utc": ""}],
    ids=["none", "junk", "empty"],
)
def test_submit_429_without_a_usable_reset_header(headers: dict[str, str] | None) -> None:
    """Given a 429 without the reset header, or with one that is not a time
    When a job is submitted
    Then ProviderThrottled is still raised, with no reset time."""
    with pytest.raises(ProviderThrottled) as caught:
        submit_with(answer(429, {"error": "Rate limited"}, headers=headers))
    assert caught.value.reset_at is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_submit_server_errors_are_unavailable(status: int) -> None:
    """Given Segmind answers with a 5xx
    When a job is submitted
    Then ProviderUnavailable (transient) is raised."""
    with pytest.raises(ProviderUnavailable) as caught:
        submit_with(answer(status, text="upstream trouble"))
    assert caught.value.retryable is True


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_submit_that_never_reached_segmind_is_safe_to_retry(exc_type: type[httpx.TransportError]) -> None:
    """Given the connection to Segmind could not be made
    When a job is submitted
    Then ProviderConnectionError (retryable) is raised: the POST provably never arrived."""
    with pytest.raises(ProviderConnectionError) as caught:
        submit_with(raising(exc_type))
    assert caught.value.retryable is True


@pytest.mark.parametrize(
    "exc_type", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError]
)
def test_submit_without_an_answer_is_ambiguous_and_never_retried(exc_type: type[httpx.TransportError]) -> None:
    """Given the POST may have been sent but no answer arrived
    When a job is submitted
    Then ProviderSubmitAmbiguous is raised, which is not retryable (a second POST is a second bill)."""
    with pytest.raises(ProviderSubmitAmbiguous) as caught:
        submit_with(raising(exc_type))
    assert caught.value.retryable is False
    assert "may have been accepted" in caught.value.message


# --- status -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wire", "expected"),
    [
        ("QUEUED", "QUEUED"),
        ("PROCESSING", "PROCESSING"),
        ("COMPLETED", "COMPLETED"),
        ("queued", "QUEUED"),
        ("processing", "PROCESSING"),
        ("completed", "COMPLETED"),
        (" Completed ", "COMPLETED"),
    ],
)
def test_status_values(wire: str, expected: str) -> None:
    """Given a status answer in any case
    When the status is checked
    Then the normalised status and the metrics are returned."""
    body = {"status": wire, "request_id": REQUEST_ID, "metrics": {"inference_time": 12.5}}
    report = status_with(answer(200, body))
    assert report.status == expected
    assert report.request_id == REQUEST_ID
    assert report.metrics == {"inference_time": 12.5}
    assert report.error is None


def test_status_422_with_a_failed_body_is_a_failed_report() -> None:
    """Given Segmind serves FAILED as HTTP 422 with a body
    When the status is checked
    Then a FAILED report carries Segmind's error and metrics (no exception)."""
    body = {"status": "FAILED", "error": "Content blocked by safety filter", "metrics": {"inference_time": 3}}
    report = status_with(answer(422, body))
    assert report.status == "FAILED"
    assert report.error == "Content blocked by safety filter"
    assert report.metrics == {"inference_time": 3}


def test_status_422_with_a_body_but_no_error_still_fails_with_a_message() -> None:
    """Given a 422 whose JSON body has no error text
    When the status is checked
    Then the report is FAILED with a generic error message."""
    report = status_with(answer(422, {"metrics": {}}))
    assert report.status == "FAILED"
    assert report.error


def test_status_422_without_a_json_body_is_still_failed() -> None:
    """Given a 422 whose body is not JSON
    When the status is checked
    Then the report is FAILED and its error quotes the body."""
    report = status_with(answer(422, text="render failed: face not detected"))
    assert report.status == "FAILED"
    assert report.error is not None
    assert "face not detected" in report.error


def test_status_404_means_the_result_expired() -> None:
    """Given Segmind answers the status check with 404 (unknown or expired id)
    When the status is checked
    Then ResultExpired is raised."""
    with pytest.raises(ResultExpired):
        status_with(answer(404, {"error": f"Request {REQUEST_ID} not found"}))


def test_status_429_is_throttled() -> None:
    """Given Segmind answers the status check with 429
    When the status is checked
    Then ProviderThrottled is raised with the reset time."""
    respond = answer(429, {"error": "Rate limited"}, headers={"x-rate-limit-reset-at-utc": "2026-11-21T10:01:00+00:00"})
    with pytest.raises(ProviderThrottled) as caught:
        status_with(respond)
    assert caught.value.reset_at == datetime(2026, 11, 21, 10, 1, tzinfo=UTC)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_status_server_errors_are_unavailable(status: int) -> None:
    """Given Segmind answers the status check with a 5xx
    When the status is checked
    Then ProviderUnavailable is raised."""
    with pytest.raises(ProviderUnavailable):
        status_with(answer(status, {"error": "oops"}))


@pytest.mark.parametrize("status", [401, 403])
def test_status_auth_failures(status: int) -> None:
    """Given Segmind answers the status check with 401 or 403
    When the status is checked
    Then ProviderAuthError is raised."""
    with pytest.raises(ProviderAuthError):
        status_with(answer(status, {"error": "Invalid API key"}))


@pytest.mark.parametrize("exc_type", [httpx.ReadTimeout, httpx.ConnectTimeout, httpx.PoolTimeout])
def test_status_timeouts(exc_type: type[httpx.TransportError]) -> None:
    """Given the status check times out
    When the status is checked
    Then ProviderTimeout (retryable; a GET is safe to repeat) is raised."""
    with pytest.raises(ProviderTimeout) as caught:
        status_with(raising(exc_type))
    assert caught.value.retryable is True


@pytest.mark.parametrize("exc_type", [httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError])
def test_status_connection_failures(exc_type: type[httpx.TransportError]) -> None:
    """Given the status check fails in transport
    When the status is checked
    Then ProviderConnectionError is raised."""
    with pytest.raises(ProviderConnectionError):
        status_with(raising(exc_type))


@pytest.mark.parametrize(
    "respond",
    [
        answer(200, {"status": "CANCELLED", "request_id": REQUEST_ID}),
        answer(200, {"request_id": REQUEST_ID}),
        answer(200, {"status": 3}),
        answer(200, text="<html>maintenance</html>"),
        answer(200, [1, 2]),
    ],
    ids=["unknown-status", "no-status", "numeric-status", "html", "json-array"],
)
def test_status_bodies_that_make_no_sense_are_bad_responses(respond: Handler) -> None:
    """Given a 200 status answer with an unknown status, no status, or a body that is not a JSON object
    When the status is checked
    Then ProviderBadResponse is raised."""
    with pytest.raises(ProviderBadResponse):
        status_with(respond)


@pytest.mark.parametrize("metrics", [None, "fast", [1, 2], 7])
def test_status_metrics_that_are_not_an_object_become_empty(metrics: object) -> None:
    """Given a status answer whose metrics is not an object
    When the status is checked
    Then the report has empty metrics rather than failing."""
    report = status_with(answer(200, {"status": "PROCESSING", "metrics": metrics}))
    assert report.status == "PROCESSING"
    assert report.metrics == {}


def test_status_extra_fields_are_tolerated() -> None:
    """Given a status answer with fields the client does not know
    When the status is checked
    Then they are tolerated."""
    body = {"status": "QUEUED", "status_url": "x", "response_url": "y", "queue_position": 3}
    assert status_with(answer(200, body)).status == "QUEUED"


# --- result -----------------------------------------------------------------------------------------


def completed(**fields: Any) -> dict[str, Any]:
    return {"status": "COMPLETED", "request_id": REQUEST_ID, "metrics": {"inference_time": 140.2}, **fields}


def render_result(body: dict[str, Any]) -> RenderResult:
    result = result_with(answer(200, body))
    assert isinstance(result, RenderResult)
    return result


def test_result_output_as_a_url_string() -> None:
    """Given a COMPLETED result whose output is the video URL
    When the result is fetched
    Then the video URL and metrics are returned, with no captions."""
    result = render_result(completed(output=VIDEO))
    assert result.video_url == VIDEO
    assert result.caption_url is None
    assert result.metrics == {"inference_time": 140.2}


def test_result_output_as_a_list() -> None:
    """Given a COMPLETED result whose output is a list of URLs
    When the result is fetched
    Then the first video URL is returned."""
    assert render_result(completed(output=[VIDEO])).video_url == VIDEO


@pytest.mark.parametrize("key", ["video_url", "url", "video", "output_url"])
def test_result_output_as_an_object(key: str) -> None:
    """Given a COMPLETED result whose output is an object holding the video URL under a known key
    When the result is fetched
    Then that URL is the video."""
    assert render_result(completed(output={key: VIDEO})).video_url == VIDEO


@pytest.mark.parametrize("key", ["caption_url", "subtitle_url", "captions_url", "srt_url", "caption", "subtitles"])
def test_result_caption_url_inside_the_output_object(key: str) -> None:
    """Given a COMPLETED Avatar V result whose output object has the video and captions (under any known key)
    When the result is fetched
    Then both URLs are returned, each in its place."""
    result = render_result(completed(output={"video_url": VIDEO, key: CAPTIONS}))
    assert result.video_url == VIDEO
    assert result.caption_url == CAPTIONS


@pytest.mark.parametrize("key", ["caption_url", "subtitle_url", "srt_url"])
def test_result_caption_url_at_the_top_level(key: str) -> None:
    """Given a COMPLETED result with the video as output and the captions beside it at the top level
    When the result is fetched
    Then both URLs are returned."""
    result = render_result(completed(output=VIDEO, **{key: CAPTIONS}))
    assert result.video_url == VIDEO
    assert result.caption_url == CAPTIONS


def test_result_video_url_at_the_top_level() -> None:
    """Given a COMPLETED result whose output is not a URL but video_url sits at the top level
    When the result is fetched
    Then the top-level video URL is used."""
    assert render_result(completed(output=None, video_url=VIDEO)).video_url == VIDEO


@pytest.mark.parametrize("output", [[VIDEO, CAPTIONS], [CAPTIONS, VIDEO], [CAPTIONS + "?sig=1", VIDEO + "?sig=2"]])
def test_result_list_of_video_and_srt(output: list[str]) -> None:
    """Given a COMPLETED result whose output lists the video and an .srt in any order
    When the result is fetched
    Then the .srt is the captions and the other URL the video."""
    result = render_result(completed(output=output))
    assert result.video_url.split("?")[0] == VIDEO
    assert result.caption_url is not None
    assert result.caption_url.split("?")[0] == CAPTIONS


@pytest.mark.parametrize(
    "body",
    [
        completed(),
        completed(output=None),
        completed(output="not a url"),
        completed(output=[]),
        completed(output={"caption_url": CAPTIONS}),
        completed(output={"video_url": ""}),
    ],
    ids=["no-output", "null", "not-a-url", "empty-list", "captions-only", "empty-url"],
)
def test_completed_result_without_a_video_url_is_a_bad_response(body: dict[str, Any]) -> None:
    """Given a COMPLETED result that carries no video URL anywhere
    When the result is fetched
    Then ProviderBadResponse is raised."""
    with pytest.raises(ProviderBadResponse):
        result_with(answer(200, body))


@pytest.mark.parametrize("status", ["QUEUED", "PROCESSING"])
def test_result_not_yet_completed_returns_the_status(status: str) -> None:
    """Given the result is fetched before the render completed
    When the result is fetched
    Then the current status report is returned instead of a result."""
    result = result_with(answer(200, {"status": status, "output": None}))
    assert isinstance(result, StatusReport)
    assert result.status == status


def test_result_422_is_a_failed_report() -> None:
    """Given the result endpoint serves FAILED as HTTP 422
    When the result is fetched
    Then a FAILED report with the error is returned."""
    result = result_with(answer(422, {"status": "FAILED", "error": "RAI block"}))
    assert isinstance(result, StatusReport)
    assert result.status == "FAILED"
    assert result.error == "RAI block"


def test_result_404_means_the_result_expired() -> None:
    """Given the result endpoint answers 404
    When the result is fetched
    Then ResultExpired is raised."""
    with pytest.raises(ResultExpired):
        result_with(answer(404, {"error": f"Request {REQUEST_ID} not found"}))


def test_result_non_json_body_is_a_bad_response() -> None:
    """Given the result endpoint answers 200 with a non-JSON body
    When the result is fetched
    Then ProviderBadResponse is raised."""
    with pytest.raises(ProviderBadResponse):
        result_with(answer(200, text="<html></html>"))


# --- what goes on the wire ---------------------------------------------------------------------------


def test_every_call_sends_the_api_key_and_json_content_type_to_the_right_path() -> None:
    """Given a Segmind that answers every call successfully
    When a job is submitted, its status checked and its result fetched
    Then each request carries x-api-key and exactly one Content-Type: application/json, on the v2 paths."""

    def respond(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json=ACCEPTED_BODY)
        if request.url.path.endswith("/status"):
            return httpx.Response(200, json={"status": "COMPLETED"})
        return httpx.Response(200, json=completed(output=VIDEO))

    client, recorder = client_for(respond)

    client.submit(MODEL, PAYLOAD)
    client.status(REQUEST_ID)
    client.result(REQUEST_ID)

    assert [(r.method, r.url.host, r.url.path) for r in recorder.requests] == [
        ("POST", "api.segmind.com", f"/v2/{MODEL}"),
        ("GET", "api.segmind.com", f"/v2/requests/{REQUEST_ID}/status"),
        ("GET", "api.segmind.com", f"/v2/requests/{REQUEST_ID}"),
    ]
    for request in recorder.requests:
        assert request.headers["x-api-key"] == "k"
        assert request.headers.get_list("content-type") == ["application/json"]


def test_api_key_is_read_on_every_call() -> None:
    """Given an API key source that changes (a rotated secret)
    When two calls are made
    Then each carries the key current at that time."""
    keys = iter(["old-key", "new-key"])
    recorder = Recorder(answer(200, {"status": "QUEUED"}))
    client = SegmindClient(
        BASE_URL + "/", api_key=lambda: next(keys), http=httpx.Client(transport=httpx.MockTransport(recorder))
    )

    client.status(REQUEST_ID)
    client.status(REQUEST_ID)

    assert [r.headers["x-api-key"] for r in recorder.requests] == ["old-key", "new-key"]
    assert all(r.url.path == f"/v2/requests/{REQUEST_ID}/status" for r in recorder.requests)


def test_loopback_base_url_with_a_port() -> None:
    """Given the offline emulator's base URL (plain http on loopback, with a port)
    When a job is submitted
    Then the POST goes to that host and port."""
    recorder = Recorder(answer(200, ACCEPTED_BODY))
    client = SegmindClient(
        "http://127.0.0.1:8080", api_key=lambda: "k", http=httpx.Client(transport=httpx.MockTransport(recorder))
    )
    client.submit("heygen-avatar-v", {"prompt": "Hi"})
    assert str(recorder.requests[0].url) == "http://127.0.0.1:8080/v2/heygen-avatar-v"


@pytest.mark.parametrize(
    ("respond", "expected"),
    [
        (answer(400, {"error": "bad"}), ProviderRejected),
        (answer(401, {"error": "bad"}), ProviderAuthError),
        (answer(406, {"error": "credits"}), InsufficientCredits),
        (answer(429, {"error": "slow"}), ProviderThrottled),
        (answer(503, {"error": "down"}), ProviderUnavailable),
    ],
)
def test_errors_are_pipeline_errors_with_their_codes(respond: Handler, expected: type[PipelineError]) -> None:
    """Given an error answer on submit
    When a job is submitted
    Then the raised error is exactly the expected pipeline error class."""
    with pytest.raises(PipelineError) as caught:
        submit_with(respond)
    assert type(caught.value) is expected


def test_urls_in_provider_messages_lose_their_query_strings() -> None:
    """Given a provider error that echoes a presigned media URL, then the message kept for reports
    and notifications has the URL without its signature."""
    from avatar_pipeline.provider.client import redact_urls

    echoed = "could not fetch https://bucket.s3.amazonaws.com/inbox/a.png?X-Amz-Signature=abc&X-Amz-Credential=k (403)"
    assert redact_urls(echoed) == "could not fetch https://bucket.s3.amazonaws.com/inbox/a.png (403)"
