"""The offline stack runs outside us-east-1, so the tiers above exercise the regional code paths."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from avatar_local.stack.local_aws import REGION
from avatar_local.stack.runner import LocalPipeline, LocalRunConfig
from avatar_pipeline.adapters.storage import S3Storage
from tests.support.media import make_png

pytestmark = pytest.mark.e2e


def test_a_job_succeeds_outside_us_east_1_with_media_urls_signed_for_that_region(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given the offline stack in its default region, when a job runs, then the stack lives in that
    region (not us-east-1), the photo URL the emulator fetched was signed for it and pointed at the
    local S3 endpoint, and the job succeeded (so the fetch worked)."""
    presigned: list[str] = []
    original_presign = S3Storage.presign_get

    def recording_presign(self: S3Storage, bucket: str, key: str, expires_in: int) -> str:
        url = original_presign(self, bucket, key, expires_in)
        presigned.append(url)
        return url

    monkeypatch.setattr(S3Storage, "presign_get", recording_presign)
    job = {"model": "heygen-avatar-iv", "photo": "here.png", "video_title": "Here", "script": "Hello from here."}
    with LocalPipeline(LocalRunConfig(time_scale=0.01)) as pipeline:
        pipeline.put("inbox/here.png", make_png())
        pipeline.put("inbox/here.json", json.dumps(job).encode())
        assert pipeline.wait_until_terminal(["inbox/here.json"], timeout=90)
        assert pipeline.progress()["inbox/here.json"].status == "SUCCEEDED"
        assert pipeline.stack is not None
        state_machine_arn = pipeline.stack.outputs["StateMachineArn"]
        endpoint = boto3.client("s3").meta.endpoint_url

    assert REGION != "us-east-1"
    assert state_machine_arn.split(":")[3] == REGION
    (url,) = presigned
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == endpoint
    assert parse_qs(parts.query)["X-Amz-Credential"][0].split("/")[2] == REGION
