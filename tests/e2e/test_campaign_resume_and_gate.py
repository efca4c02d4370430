"""Campaigns on the offline stack, driven step by step (DESIGN.md section 7): a resume renders again only
the row that failed, and a sample gate waits for a person's decision (approved, and rejected)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from avatar_local.stack.runner import LocalPipeline, LocalRunConfig
from tests.support.media import make_png

pytestmark = pytest.mark.e2e

TEMPLATE = {"model": "heygen-avatar-iv", "photo": "{{photo}}", "video_title": "Hi {{name}}", "script": "Hi {{name}}"}


@pytest.fixture
def pipeline() -> Iterator[LocalPipeline]:
    # Per test: the root conftest's autouse fixture sets the test region before each test, and the
    # stack's clients must see its own region (avatar_local.stack.local_aws.REGION).
    with LocalPipeline(LocalRunConfig(time_scale=0.01)) as running:
        yield running


def drop(pipeline: LocalPipeline, folder: str, rows: str, photos: list[str], **extra: Any) -> str:
    """Upload a campaign as a person would: photos and rows first, the campaign file last."""
    for photo in photos:
        pipeline.put(f"inbox/{folder}/{photo}", make_png(64, 64))
    pipeline.put(f"inbox/{folder}/rows.csv", rows.encode())
    key = f"inbox/{folder}/batch.campaign.json"
    document = {"rows": "rows.csv", "row_id": "id", "template": TEMPLATE, **extra}
    pipeline.put(key, json.dumps(document).encode())
    return key


def campaign_messages(pipeline: LocalPipeline, key: str) -> list[dict[str, Any]]:
    with pipeline._notification_lock:
        return [
            n["message"]
            for n in pipeline.notifications
            if n["attributes"].get("kind") == "campaign" and n["message"].get("campaign_key") == key
        ]


def wait_for(pipeline: LocalPipeline, key: str, count: int, timeout: float = 90.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        messages = campaign_messages(pipeline, key)
        if len(messages) >= count:
            return messages
        time.sleep(0.1)
    raise TimeoutError(f"{key}: {campaign_messages(pipeline, key)}")


def accepted(pipeline: LocalPipeline) -> int:
    assert pipeline.emulator is not None
    return pipeline.emulator.stats().submits_accepted


def report(pipeline: LocalPipeline, folder: str) -> dict[str, Any]:
    import boto3

    assert pipeline.stack is not None
    body = boto3.client("s3").get_object(
        Bucket=pipeline.stack.outputs["OutputBucketName"], Key=f"campaigns/{folder}/batch/report.json"
    )["Body"]
    document: dict[str, Any] = json.loads(body.read())
    return document


def test_a_resume_after_fixing_the_bad_row_submits_only_that_row(pipeline: LocalPipeline) -> None:
    rows = "id,name,photo\r\nc1,Ann,face.png\r\nc2,Bob,late.png\r\nc3,Cy,face.png\r\n"
    before = accepted(pipeline)
    key = drop(pipeline, "resume", rows, ["face.png"])
    (first,) = wait_for(pipeline, key, 1)
    assert (first["status"], first["totals"]["succeeded"], first["totals"]["failed"]) == ("COMPLETED", 2, 1)
    assert accepted(pipeline) - before == 2

    # The missing photo now there, and the campaign file uploaded again. (On AWS the same bytes again are a
    # new upload: every PUT has its own event sequencer. moto's events all carry one sequencer, so here the
    # file changes a little, as it often does when a person fixes a campaign.)
    drop(pipeline, "resume", rows, ["face.png", "late.png"], metadata={"attempt": "2"})
    second = wait_for(pipeline, key, 2)[1]

    assert (second["status"], second["totals"]["succeeded"], second["totals"]["failed"]) == ("COMPLETED", 3, 0)
    assert accepted(pipeline) - before == 3  # only c2 again
    assert {r["row_id"]: r["status"] for r in report(pipeline, "resume")["rows"]} == dict.fromkeys(
        ("c1", "c2", "c3"), "SUCCEEDED"
    )


def test_an_approved_sample_renders_the_rest_and_a_rejected_one_skips_it(pipeline: LocalPipeline) -> None:
    rows = "id,name,photo\r\n" + "".join(f"r{n},Name {n},face.png\r\n" for n in range(1, 5))
    before = accepted(pipeline)
    approved = drop(pipeline, "approved", rows, ["face.png"], approve_after=2)
    rejected = drop(pipeline, "rejected", rows, ["face.png"], approve_after=1)
    (ready,) = wait_for(pipeline, approved, 1)
    (ready_too,) = wait_for(pipeline, rejected, 1)
    assert (ready["status"], ready["totals"]["succeeded"], ready["totals"]["planned"]) == ("SAMPLE_READY", 2, 2)
    assert ready_too["status"] == "SAMPLE_READY"
    time.sleep(1.0)  # waiting costs nothing: no more submits meanwhile
    assert accepted(pipeline) - before == 3

    pipeline.put("inbox/approved/batch.approve", b"")
    pipeline.put("inbox/rejected/batch.reject", b"")
    done = wait_for(pipeline, approved, 2)[1]
    skipped = wait_for(pipeline, rejected, 2)[1]

    assert (done["status"], done["totals"]["succeeded"]) == ("COMPLETED", 4)
    assert (skipped["status"], skipped["totals"]["succeeded"], skipped["totals"]["skipped"]) == ("COMPLETED", 1, 3)
    assert accepted(pipeline) - before == 5
    codes = {r["row_id"]: r["error_code"] for r in report(pipeline, "rejected")["rows"] if r["status"] == "SKIPPED"}
    assert codes == dict.fromkeys(("r2", "r3", "r4"), "NOT_APPROVED")
