"""ReportFailure: the state machine's failure branch -> error report, inputs to failed/, notify."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_pipeline.domain.failure import report_failure
from avatar_pipeline.observability import logger, metrics, tracer
from avatar_pipeline.runtime import dependencies
from avatar_pipeline.state import RenderState


@logger.inject_lambda_context(correlation_id_path="job.job_id", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=RenderState)
def lambda_handler(event: RenderState, context: LambdaContext) -> dict[str, Any]:
    outcome = report_failure(event, dependencies().closing_ports)
    return outcome.model_dump(mode="json")
