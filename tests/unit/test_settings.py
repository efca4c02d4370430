"""Settings.from_environ: every environment variable, validated once."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from avatar_pipeline.settings import Settings, get_settings, is_loopback_host

pytestmark = pytest.mark.unit

REQUIRED = {
    "INPUT_BUCKET": "avatar-input-123456789012",
    "OUTPUT_BUCKET": "avatar-output-123456789012",
    "JOBS_TABLE": "avatar-jobs",
    "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:us-east-1:123456789012:avatar-notifications",
    "SEGMIND_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:segmind-AbCdEf",
}


def settings(**overrides: str) -> Settings:
    return Settings.from_environ({**REQUIRED, **overrides})


def invalid_fields(**environ: str) -> set[str]:
    with pytest.raises(ValidationError) as caught:
        Settings.from_environ(environ)
    return {str(error["loc"][0]) for error in caught.value.errors()}


def test_required_variables_only_gives_the_defaults() -> None:
    """Given only the required variables
    When settings are read
    Then the documented defaults apply."""
    current = settings()

    assert current.input_bucket == REQUIRED["INPUT_BUCKET"]
    assert current.segmind_base_url == "https://api.segmind.com"
    assert current.render_deadline_minutes == 45
    assert current.output_host_allowlist == ()
    assert current.allow_loopback_http is False
    assert current.state_machine_arn is None


def test_missing_required_variables_are_all_named() -> None:
    """Given an empty environment
    When settings are read
    Then ValidationError names every required variable."""
    assert invalid_fields() == set(REQUIRED)


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_each_required_variable_is_named_when_missing(missing: str) -> None:
    """Given all required variables but one
    When settings are read
    Then ValidationError names exactly that variable."""
    environ = {k: v for k, v in REQUIRED.items() if k != missing}
    with pytest.raises(ValidationError) as caught:
        Settings.from_environ(environ)
    assert {str(error["loc"][0]) for error in caught.value.errors()} == {missing}
    assert missing in str(caught.value)


def test_unrelated_environment_variables_are_ignored() -> None:
    """Given the process environment's unrelated variables (PATH, AWS_REGION, lowercase lookalikes)
    When settings are read
    Then they are ignored."""
    current = settings(PATH="/usr/bin", AWS_REGION="us-east-1", input_bucket="not-this-one")
    assert current.input_bucket == REQUIRED["INPUT_BUCKET"]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.segmind.com", "https://api.segmind.com"),
        ("https://api.segmind.com/", "https://api.segmind.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:8080/", "http://localhost:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_segmind_base_url_https_or_loopback_http(url: str, expected: str) -> None:
    """Given an https base URL, or plain http to a loopback emulator
    When settings are read
    Then it is accepted without a trailing slash."""
    assert settings(SEGMIND_BASE_URL=url).segmind_base_url == expected


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com",
        "http://api.segmind.com",
        "http://localhost.example.com",
        "ftp://api.segmind.com",
        "https://",
        "api.segmind.com",
    ],
)
def test_segmind_base_url_plain_http_elsewhere_is_rejected(url: str) -> None:
    """Given plain http to a non-loopback host, another scheme, or no host
    When settings are read
    Then SEGMIND_BASE_URL is named as invalid."""
    assert invalid_fields(**REQUIRED, SEGMIND_BASE_URL=url) == {"SEGMIND_BASE_URL"}


@pytest.mark.parametrize(
    ("raw", "hosts"),
    [
        ("", ()),
        ("segmind.com", ("segmind.com",)),
        ("segmind.com, S3.Amazonaws.com ,,", ("segmind.com", "s3.amazonaws.com")),
        (" , ", ()),
    ],
)
def test_output_host_allowlist_is_split(raw: str, hosts: tuple[str, ...]) -> None:
    """Given OUTPUT_HOST_ALLOWLIST as a comma-separated string
    When settings are read
    Then it becomes a tuple of lowercase hosts with blanks dropped."""
    assert settings(OUTPUT_HOST_ALLOWLIST=raw).output_host_allowlist == hosts


@pytest.mark.parametrize("minutes", ["1", "45", "55"])
def test_render_deadline_within_the_hour_is_accepted(minutes: str) -> None:
    """Given a render deadline that leaves room inside Segmind's one-hour retention
    When settings are read
    Then it is accepted as a number."""
    assert settings(RENDER_DEADLINE_MINUTES=minutes).render_deadline_minutes == int(minutes)


@pytest.mark.parametrize("minutes", ["56", "60", "0", "-5", "forty"])
def test_render_deadline_past_55_minutes_is_rejected(minutes: str) -> None:
    """Given a render deadline over 55 minutes (results expire an hour after submission), zero or junk
    When settings are read
    Then RENDER_DEADLINE_MINUTES is named as invalid."""
    assert invalid_fields(**REQUIRED, RENDER_DEADLINE_MINUTES=minutes) == {"RENDER_DEADLINE_MINUTES"}


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("1", True), ("false", False), ("0", False)])
def test_allow_loopback_http_flag(raw: str, expected: bool) -> None:
    """Given ALLOW_LOOPBACK_HTTP as an environment string
    When settings are read
    Then it is read as a boolean."""
    assert settings(ALLOW_LOOPBACK_HTTP=raw).allow_loopback_http is expected


def test_notification_topic_must_be_an_sns_arn() -> None:
    """Given a topic ARN of another service
    When settings are read
    Then NOTIFICATION_TOPIC_ARN is named as invalid."""
    environ = {**REQUIRED, "NOTIFICATION_TOPIC_ARN": "arn:aws:sqs:us-east-1:123456789012:queue"}
    assert invalid_fields(**environ) == {"NOTIFICATION_TOPIC_ARN"}


def test_numbers_are_read_from_strings() -> None:
    """Given numeric limits as environment strings
    When settings are read
    Then they are numbers."""
    current = settings(MAX_OUTPUT_BYTES="1048576", PROVIDER_READ_TIMEOUT_S="2.5", PRESIGN_EXPIRY_SECONDS="900")
    assert current.max_output_bytes == 1048576
    assert current.provider_read_timeout_s == 2.5
    assert current.presign_expiry_seconds == 900


def test_get_settings_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given the required variables in the process environment
    When the process-wide settings are first read
    Then they come from that environment."""
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RENDER_DEADLINE_MINUTES", "30")
    get_settings.cache_clear()
    try:
        assert get_settings().render_deadline_minutes == 30
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("host", "expected"), [("127.0.0.1", True), ("localhost", True), ("::1", True), ("10.0.0.1", False), (None, False)]
)
def test_is_loopback_host(host: str | None, expected: bool) -> None:
    """Given a host name
    When it is checked for loopback
    Then only the loopback names count."""
    assert is_loopback_host(host) is expected


@pytest.mark.parametrize("seconds", ["60", "900", "3600"])
def test_presigned_media_url_lifetime_up_to_an_hour_is_accepted(seconds: str) -> None:
    """Given a presigned photo/audio URL lifetime of at most an hour (MediaUrlExpirySeconds)
    When settings are read
    Then it is accepted; without one the URLs live exactly the hour."""
    assert settings(PRESIGN_EXPIRY_SECONDS=seconds).presign_expiry_seconds == int(seconds)
    assert settings().presign_expiry_seconds == 3600


@pytest.mark.parametrize("seconds", ["3601", "7200", "604800", "59", "0", "-1", "an hour"])
def test_presigned_media_url_lifetime_over_an_hour_is_rejected(seconds: str) -> None:
    """Given a presigned URL lifetime over an hour (a leaked URL stays useful longer than Segmind
    needs it: results and inputs are only fetched within the hour), under a minute, or junk
    When settings are read
    Then PRESIGN_EXPIRY_SECONDS is named as invalid, whatever the template's parameter allowed."""
    assert invalid_fields(**REQUIRED, PRESIGN_EXPIRY_SECONDS=seconds) == {"PRESIGN_EXPIRY_SECONDS"}
