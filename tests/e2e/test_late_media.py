"""A job file whose photo arrives after it: the Submit function waits for the photo, then submits."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from avatar_local.stack.runner import LocalPipeline, LocalRunConfig
from tests.support.media import make_png

pytestmark = pytest.mark.e2e


def test_media_uploaded_after_its_job_file_is_waited_for(tmp_path: Path) -> None:
    job = {"model": "heygen-avatar-iv", "photo": "late.png", "video_title": "Late", "script": "I was late."}
    with LocalPipeline(LocalRunConfig(time_scale=0.01)) as pipeline:
        pipeline.put("inbox/late.json", json.dumps(job).encode())
        time.sleep(1.5)  # several redeliveries happen meanwhile (15 s virtual each)
        assert pipeline.progress() == {}, "nothing may be submitted before the photo exists"
        pipeline.put("inbox/late.png", make_png())

        finished = pipeline.wait_until_terminal(["inbox/late.json"], timeout=60)

        assert finished
        progress = pipeline.progress()["inbox/late.json"]
        assert progress.status == "SUCCEEDED"
        assert pipeline.emulator is not None
        assert pipeline.emulator.stats().submits_accepted == 1
        assert pipeline.poller is not None
        assert pipeline.poller.stats.failed_records >= 1
