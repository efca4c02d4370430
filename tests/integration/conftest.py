"""The integration tier: moto for AWS, the real ASL executed by moto, the real handlers, real HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aws_lambda_powertools.utilities import parameters
from moto import mock_aws

from avatar_local.stack.dynamodb_atomic import dynamodb_item_writes_atomic
from avatar_local.stack.timewarp import ScaledClock, WarpedWaits
from avatar_pipeline import runtime
from avatar_pipeline.clock import SystemClock
from tests.support.aws import PipelineResources, create_resources
from tests.support.media import make_mp4
from tests.support.scripted_provider import ScriptedProvider


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_mp4(Path(tmp_path_factory.mktemp("media")) / "sample.mp4")


@pytest.fixture
def provider(sample_video: bytes) -> Iterator[ScriptedProvider]:
    server = ScriptedProvider(sample_video).start()
    yield server
    server.stop()


@dataclass
class Pipeline:
    aws: PipelineResources
    provider: ScriptedProvider
    clock: ScaledClock


@pytest.fixture
def pipeline(monkeypatch: pytest.MonkeyPatch, provider: ScriptedProvider) -> Iterator[Pipeline]:
    """Given a fresh moto account with the pipeline's resources, the handlers wired to the ASL,
    and virtual time in which Wait states and Retry sleeps take no wall time."""
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}), dynamodb_item_writes_atomic():
        resources = create_resources()
        for name, value in resources.environment(provider.base_url).items():
            monkeypatch.setenv(name, value)
        clear_secret_cache: Callable[[], None] = parameters.clear_caches
        clear_secret_cache()
        clock = ScaledClock(scale=1.0)
        runtime.use_clock(clock)
        resources.router.install()
        try:
            with WarpedWaits(clock, skip=True):
                yield Pipeline(aws=resources, provider=provider, clock=clock)
                resources.drain_executions()
        finally:
            resources.router.uninstall()
            runtime.use_clock(SystemClock())
