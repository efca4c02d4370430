"""The one place Powertools logger, tracer and metrics are created.

The service name and metrics namespace are fixed here (the template sets the same values) so the
package behaves the same whether it is imported before or after the environment is set, as the
offline stack does when one process plays every function. Log level and tracing still follow the
POWERTOOLS_* environment variables.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit, single_metric

SERVICE_NAME = "avatar-pipeline"
METRICS_NAMESPACE = "AvatarPipeline"

logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)


# --- job outcome metrics (EMF): one metric line each, with its own dimensions --------------------
# single_metric because one Submit batch can end several jobs with different models and codes.


def _count(name: str, dimensions: dict[str, str], value: float = 1.0, unit: MetricUnit = MetricUnit.Count) -> None:
    with single_metric(name=name, unit=unit, value=value, namespace=METRICS_NAMESPACE) as metric:
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)


def job_submitted(model: str) -> None:
    _count("JobsSubmitted", {"Model": model})


def job_succeeded(model: str, total_seconds: float, rendering_seconds: float | None, status_calls: int) -> None:
    _count("JobsSucceeded", {"Model": model})
    _count("EndToEndSeconds", {"Model": model}, total_seconds, MetricUnit.Seconds)
    if rendering_seconds is not None:
        _count("RenderSeconds", {"Model": model}, rendering_seconds, MetricUnit.Seconds)
    _count("StatusCallsPerJob", {"Model": model}, status_calls)


def job_spent(model: str | None, usd: float) -> None:
    """What a job cost (Segmind's figure or the estimate), by model: the dashboard's spend."""
    _count("SpendUsd", {"Model": model or "unknown"}, usd, MetricUnit.NoUnit)


# Codes that stop every job until a person acts (the key, the credits): one metric an alarm can watch.
_PROVIDER_BLOCKED = ("PROVIDER_AUTH", "INSUFFICIENT_CREDITS")


def job_failed(model: str | None, error_code: str) -> None:
    _count("JobsFailed", {"Model": model or "unknown", "ErrorCode": error_code})
    if error_code in _PROVIDER_BLOCKED:
        _count("ProviderBlocked", {})
