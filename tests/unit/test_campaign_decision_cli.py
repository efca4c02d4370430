"""`avatar-pipeline campaign approve|reject NAME|KEY` drops the decision file beside the campaign file."""

from __future__ import annotations

import io
from collections.abc import Iterator

import boto3
import pytest
from moto import mock_aws

from avatar_local.campaign_decision import campaign_key_of
from avatar_local.cli import main
from avatar_local.stack.local_aws import bucket_location
from tests.support import TEST_REGION

pytestmark = pytest.mark.unit


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", TEST_REGION)
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="input", **bucket_location(TEST_REGION))
        yield "input"


@pytest.mark.parametrize("given", ["inbox/shop/spring.campaign.json", "shop/spring.campaign.json", "shop/spring"])
def test_a_campaign_is_named_by_its_key_or_its_name_under_inbox(given: str) -> None:
    assert campaign_key_of(given) == "inbox/shop/spring.campaign.json"


@pytest.mark.parametrize(
    ("verb", "key"), [("approve", "inbox/shop/spring.approve"), ("reject", "inbox/shop/spring.reject")]
)
def test_the_decision_is_the_file_beside_the_campaign_file(bucket: str, verb: str, key: str) -> None:
    console = io.StringIO()
    assert main(["campaign", verb, "shop/spring", "--input-bucket", bucket], console=console) == 0
    boto3.client("s3").head_object(Bucket=bucket, Key=key)
    assert key in console.getvalue()
