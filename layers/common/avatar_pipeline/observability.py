"""The one place Powertools logger, tracer and metrics are created.

The service name and metrics namespace are fixed here (the template sets the same values) so the
package behaves the same whether it is imported before or after the environment is set, as the
offline stack does when one process plays every function. Log level and tracing still follow the
POWERTOOLS_* environment variables.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE_NAME = "avatar-pipeline"
METRICS_NAMESPACE = "AvatarPipeline"

logger = Logger(service=SERVICE_NAME)
tracer = Tracer(service=SERVICE_NAME)
metrics = Metrics(namespace=METRICS_NAMESPACE, service=SERVICE_NAME)
