"""HTTP client for Segmind's v2 async API.

One place (`_raise_for_response`) maps HTTP statuses to typed errors; transport failures are
classified by whether the request can have reached the provider, because a submit that may have
reached it must never be repeated blindly (every accepted POST is billed).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from avatar_pipeline.errors import (
    InsufficientCredits,
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
from avatar_pipeline.provider.wire import (
    RenderResult,
    StatusReport,
    SubmitAccepted,
    extract_render_result,
    parse_model,
)

RATE_LIMIT_RESET_HEADER = "x-rate-limit-reset-at-utc"

# Errors that prove the request never left this process or never reached the server.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


def default_timeout(connect_s: float = 5.0, read_s: float = 20.0) -> httpx.Timeout:
    # Request bodies are a few kilobytes: sending one takes no longer than connecting. A short write
    # timeout keeps a submit's worst case (Settings.submit_worst_case_seconds) honest.
    return httpx.Timeout(connect=connect_s, read=read_s, write=connect_s, pool=connect_s)


class SegmindClient:
    def __init__(
        self,
        base_url: str,
        api_key: Callable[[], str],
        http: httpx.Client | None = None,
        timeout: httpx.Timeout | None = None,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._http = http or httpx.Client(timeout=timeout or default_timeout(), follow_redirects=False)

    # --- the three calls -------------------------------------------------------------------------
    def submit(self, model: str, payload: dict[str, Any]) -> SubmitAccepted:
        try:
            response = self._http.post(f"{self._base_url}/v2/{model}", json=payload, headers=self._headers())
        except _NEVER_SENT as exc:
            raise ProviderConnectionError(f"could not connect to Segmind: {type(exc).__name__}") from None
        except httpx.TransportError as exc:
            raise ProviderSubmitAmbiguous(
                f"submit to Segmind got no answer ({type(exc).__name__}); it may have been accepted"
            ) from None
        _raise_for_response(response, during="submit")
        accepted: SubmitAccepted = parse_model(SubmitAccepted, _json_body(response), "submit")
        return accepted

    def status(self, request_id: str) -> StatusReport:
        response = self._get(f"/v2/requests/{request_id}/status")
        if response.status_code == httpx.codes.UNPROCESSABLE_ENTITY:
            return _failed_report(response)
        _raise_for_response(response, during="status")
        report: StatusReport = parse_model(StatusReport, _json_body(response), "status")
        return report

    def result(self, request_id: str) -> RenderResult | StatusReport:
        """The final body: a RenderResult once COMPLETED, else the current status."""
        response = self._get(f"/v2/requests/{request_id}")
        if response.status_code == httpx.codes.UNPROCESSABLE_ENTITY:
            return _failed_report(response)
        _raise_for_response(response, during="result")
        body = _json_body(response)
        report: StatusReport = parse_model(StatusReport, body, "result")
        if report.status != "COMPLETED":
            return report
        return extract_render_result(body)

    def close(self) -> None:
        self._http.close()

    # --- plumbing ----------------------------------------------------------------------------------
    def _headers(self) -> dict[str, str]:
        return {
            "x-api-key": self._api_key(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def _get(self, path: str) -> httpx.Response:
        try:
            return self._http.get(f"{self._base_url}{path}", headers=self._headers())
        except httpx.TimeoutException as exc:
            raise ProviderTimeout(f"Segmind did not answer in time ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise ProviderConnectionError(f"connection to Segmind failed ({type(exc).__name__})") from None


def _json_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ProviderBadResponse(f"Segmind answered HTTP {response.status_code} with a non-JSON body") from None
    if not isinstance(body, dict):
        raise ProviderBadResponse(f"Segmind answered HTTP {response.status_code} with a non-object body")
    return body


_URL_QUERY = re.compile(r"(https?://[^\s?\"']+)\?[^\s\"']*")


def redact_urls(text: str) -> str:
    """Provider messages go into reports and notifications: strip any URL's query string (a
    presigned URL echoed back would carry its signature)."""
    return _URL_QUERY.sub(r"\1", text)


def _error_message(response: httpx.Response) -> str:
    return redact_urls(_raw_error_message(response))


def _raw_error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        for key in ("error", "message", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])[:500]
    return response.reason_phrase


def _reset_at(response: httpx.Response) -> datetime | None:
    raw = response.headers.get(RATE_LIMIT_RESET_HEADER)
    if not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _failed_report(response: httpx.Response) -> StatusReport:
    """FAILED arrives as HTTP 422 with a body; a 422 without one is still a failure."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict):
        body = {**body, "status": "FAILED"}
        report: StatusReport = parse_model(StatusReport, body, "failed")
        if not report.error:
            report = report.model_copy(update={"error": "Segmind reported the render as FAILED"})
        return report.model_copy(update={"error": redact_urls(report.error or "")})
    return StatusReport(status="FAILED", error=f"Segmind reported FAILED: {response.text[:300]}")


def _raise_for_response(response: httpx.Response, during: str) -> None:
    """The single mapping from HTTP status to typed error (DESIGN.md section 5)."""
    code = response.status_code
    if 200 <= code < 300:
        return
    message = f"Segmind {during}: HTTP {code}: {_error_message(response)}"
    if code == httpx.codes.TOO_MANY_REQUESTS:
        raise ProviderThrottled(message, reset_at=_reset_at(response))
    if code >= 500:
        raise ProviderUnavailable(message)
    if code in (httpx.codes.UNAUTHORIZED, httpx.codes.FORBIDDEN):
        raise ProviderAuthError(message)
    if code == httpx.codes.NOT_ACCEPTABLE:
        # 406 also covers a wrong Content-Type, which is our bug rather than the user's credits.
        if "content-type" in message.lower() or "content type" in message.lower():
            raise ProviderRejected(message)
        raise InsufficientCredits(message)
    if code == httpx.codes.NOT_FOUND and during != "submit":
        raise ResultExpired(message)
    if code == httpx.codes.REQUEST_TIMEOUT:
        raise ProviderTimeout(message)
    raise ProviderRejected(message)
