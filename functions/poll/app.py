"""Poll: one status check of a render; returns the next state for the ASL's Choice."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_pipeline.domain.poll import check_status
from avatar_pipeline.observability import logger, metrics, tracer
from avatar_pipeline.runtime import dependencies
from avatar_pipeline.state import RenderState


@logger.inject_lambda_context(correlation_id_path="job.job_id", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=RenderState)
def lambda_handler(event: RenderState, context: LambdaContext) -> dict[str, Any]:
    next_state = check_status(event, dependencies().poll_ports)
    if next_state.poll.polls > event.poll.polls:
        outcome = "StatusCalls"
    elif next_state.poll.failed_checks > event.poll.failed_checks:
        outcome = "StatusChecksFailed"
    else:
        outcome = "StatusChecksDeferred"
    metrics.add_metric(name=outcome, unit=MetricUnit.Count, value=1)
    return next_state.model_dump(mode="json", by_alias=True)
