"""Emulator settings load from JSON, and submits are fingerprinted so duplicates can be counted."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from avatar_local.emulator import EmulatorConfig
from avatar_local.emulator.state import payload_fingerprint

pytestmark = pytest.mark.unit


def test_config_defaults_follow_the_provider() -> None:
    config = EmulatorConfig()

    assert config.api_keys == {"local-dev-key"}
    assert (config.render_seconds, config.render_sigma, config.queued_fraction) == (140.0, 0.0, 0.1)
    assert (config.time_scale, config.retention_seconds) == (1.0, 3600.0)
    assert (config.rpm, config.credits, config.output_shape) == (None, None, "string")
    assert (config.host, config.port, config.work_dir, config.faults) == ("127.0.0.1", 0, None, None)
    assert config.scaled(140) == 140


def test_config_loads_from_json_with_a_fault_plan(tmp_path: Path) -> None:
    path = tmp_path / "emulator.json"
    path.write_text(
        '{"api_keys": ["a", "b"], "time_scale": 0.01, "rpm": 5, "work_dir": "/tmp/emu",'
        ' "faults": [{"endpoint": "status", "fault": "http_502", "times": 3}]}'
    )

    config = EmulatorConfig.model_validate_json(path.read_text())

    assert config.api_keys == {"a", "b"}
    assert config.scaled(140) == pytest.approx(1.4)
    assert config.work_dir == Path("/tmp/emu")
    assert config.faults is not None
    assert config.faults.rules[0].times == 3


@pytest.mark.parametrize("bad", ['{"time_scale": 0}', '{"output_shape": "dict"}', '{"renderseconds": 1}'])
def test_config_rejects_nonsense(bad: str) -> None:
    with pytest.raises(ValidationError):
        EmulatorConfig.model_validate_json(bad)


def test_fingerprint_ignores_presigned_query_strings_only() -> None:
    params = {"image_url": "http://s3.local/in/alice.png?X-Amz-Signature=one", "video_title": "t", "script": "Hi"}
    resigned = {**params, "image_url": "http://s3.local/in/alice.png?X-Amz-Signature=two"}
    other_photo = {**params, "image_url": "http://s3.local/in/bob.png?X-Amz-Signature=one"}

    assert payload_fingerprint("heygen-avatar-iv", params) == payload_fingerprint("heygen-avatar-iv", resigned)
    assert payload_fingerprint("heygen-avatar-iv", params) != payload_fingerprint("heygen-avatar-iv", other_photo)
    assert payload_fingerprint("heygen-avatar-iv", params) != payload_fingerprint("heygen-avatar-v", params)
