"""Fixtures for every tier: fake AWS credentials and Powertools settings (never a real account)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support import TEST_REGION

TEST_ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": TEST_REGION,
    "AWS_REGION": TEST_REGION,
    "POWERTOOLS_SERVICE_NAME": "avatar-pipeline",
    "POWERTOOLS_METRICS_NAMESPACE": "AvatarPipeline",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}


# Powertools reads its settings when the observability singletons are created, which happens when
# any conftest or test module first imports the package; this root conftest is imported first.
os.environ.update(TEST_ENVIRONMENT)
for _name in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from avatar_pipeline import runtime

    for name, value in TEST_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    yield
    runtime.reset()
