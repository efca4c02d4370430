"""Finalize: copy the finished video into the output bucket, write the manifest, notify."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.exceptions import BotoCoreError, ClientError

from avatar_pipeline.domain.finalize import finalize_job, finalize_or_retry_later
from avatar_pipeline.errors import TransientError
from avatar_pipeline.observability import logger, metrics, tracer
from avatar_pipeline.runtime import dependencies
from avatar_pipeline.state import RenderState


@logger.inject_lambda_context(correlation_id_path="job.job_id", clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=RenderState)
def lambda_handler(event: RenderState, context: LambdaContext) -> dict[str, Any]:
    ports = dependencies().finalize_ports
    # Try again later, not fail: an AWS call that failed (throttled, a blip), like a provider fault.
    retryable = (TransientError, ClientError, BotoCoreError)
    outcome = finalize_or_retry_later(
        event,
        ports.clock,
        # The copies get this invocation's time left: they abort their uploads before the timeout would.
        lambda state: finalize_job(state, ports, context.get_remaining_time_in_millis),
        retryable,
    )
    # A JobOutcome ends the execution; a RenderState with fetch_retry set goes round the loop again.
    return outcome.model_dump(mode="json", by_alias=True)
