"""The photo/audio URLs handed to Segmind, presigned by the functions' own S3 client.

S3 answers a bucket outside us-east-1 on the global host (<bucket>.s3.amazonaws.com) with a 307
redirect for up to a day after the bucket is created, and with 400 in regions launched after March
2019; Host is a signed header, so a redirected fetch fails its signature. The URLs must name the
bucket's regional host, us-east-1 included.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from avatar_pipeline.clock import SystemClock
from avatar_pipeline.runtime import Dependencies
from avatar_pipeline.settings import Settings

pytestmark = pytest.mark.unit

BUCKET = "avatar-pipeline-inputbucket-1a2b3c4d5e6f"
SETTINGS = Settings.from_environ(
    {
        "INPUT_BUCKET": BUCKET,
        "OUTPUT_BUCKET": "avatar-pipeline-outputbucket-1a2b3c4d5e6f",
        "JOBS_TABLE": "avatar-jobs",
        "NOTIFICATION_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:avatar-notifications",
        "SEGMIND_API_KEY_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:segmind-AbCdEf",
    }
)


def presigned_in(region: str, monkeypatch: pytest.MonkeyPatch, key: str = "inbox/alice.png") -> str:
    """A URL as the Submit function presigns it in a Lambda of that region (AWS_REGION is set there)."""
    monkeypatch.setenv("AWS_REGION", region)
    monkeypatch.setenv("AWS_DEFAULT_REGION", region)
    return Dependencies(settings=SETTINGS, clock=SystemClock()).storage.presign_get(BUCKET, key, 3600)


@pytest.mark.parametrize(
    "region",
    [
        "us-east-1",  # the global host's own region: regional too, one rule everywhere
        "eu-west-1",
        "af-south-1",  # launched 2020: the global host answers 400
        "ap-southeast-3",  # launched 2021
    ],
)
def test_urls_name_the_buckets_regional_virtual_host(region: str, monkeypatch: pytest.MonkeyPatch) -> None:
    url = urlsplit(presigned_in(region, monkeypatch))
    assert url.scheme == "https"
    assert url.hostname == f"{BUCKET}.s3.{region}.amazonaws.com"
    assert url.path == "/inbox/alice.png"
    query = parse_qs(url.query)
    # SigV4, scoped to the bucket's region: the only signature S3 accepts for SSE-KMS objects.
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Credential"][0].split("/")[2:4] == [region, "s3"]
    assert query["X-Amz-SignedHeaders"] == ["host"]
    assert query["X-Amz-Expires"] == ["3600"]


def test_keys_are_percent_encoded_in_the_path(monkeypatch: pytest.MonkeyPatch) -> None:
    url = urlsplit(presigned_in("eu-west-1", monkeypatch, key="inbox/Team Ö/hello world+1.png"))
    assert url.path == "/inbox/Team%20%C3%96/hello%20world%2B1.png"


def test_offline_the_url_points_at_the_local_endpoint_path_style(monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline stack sets AWS_ENDPOINT_URL to its moto server on 127.0.0.1: the emulator must
    reach that, so the bucket goes in the path (a virtual host under an IP address resolves nowhere)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5123")
    url = urlsplit(presigned_in("ap-southeast-3", monkeypatch))
    assert (url.scheme, url.netloc) == ("http", "127.0.0.1:5123")
    assert url.path == f"/{BUCKET}/inbox/alice.png"
    assert parse_qs(url.query)["X-Amz-Credential"][0].split("/")[2] == "ap-southeast-3"
