"""The one place Powertools logger, tracer and metrics are created (configured by POWERTOOLS_* env vars)."""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger()
tracer = Tracer()
metrics = Metrics()
