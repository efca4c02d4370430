"""Submit: SQS batch of inbox "Object Created" events and campaign rows -> one provider submit per new job."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_pipeline.adapters.queue import SubmitEventRecord, to_submit_request
from avatar_pipeline.campaigns.row_jobs import submit_row
from avatar_pipeline.domain.submit import Requeue, SubmitResult, retry_delay_for, submit_job
from avatar_pipeline.errors import TransientError
from avatar_pipeline.observability import logger, metrics, tracer
from avatar_pipeline.runtime import dependencies

# Report failed records individually even when all of them failed: SQS then redelivers just those,
# with the per-record delays set below, rather than the whole batch after the visibility timeout.
processor = BatchProcessor(event_type=EventType.SQS, model=SubmitEventRecord, raise_on_entire_batch_failure=False)


def _submit(record: SubmitEventRecord, lambda_context: LambdaContext) -> SubmitResult | Requeue:
    ports = dependencies().submit_ports
    request = to_submit_request(record)
    time_left = lambda: lambda_context.get_remaining_time_in_millis() / 1000  # noqa: E731 - read before a POST
    if isinstance(request, tuple):
        row, delivery = request
        return submit_row(row, delivery, ports, time_left)
    return submit_job(request, ports, time_left)


@tracer.capture_method
def record_handler(record: SubmitEventRecord, lambda_context: LambdaContext) -> str:
    deps = dependencies()
    try:
        result = _submit(record, lambda_context)
    except TransientError as error:
        delay = retry_delay_for(error, deps.clock.now())
        if delay is not None:
            deps.retries.retry_in(record.eventSourceARN, record.receiptHandle, delay)
        logger.info("transient failure; the queue will deliver it again", extra={"error": error.message})
        raise
    if isinstance(result, Requeue):
        # A wait that is not a failure: a delayed copy of the event replaces this message.
        deps.retries.requeue(
            record.eventSourceARN,
            record.body.model_dump_json(by_alias=True),
            result.delay_seconds,
            result.provider_failures,
            result.provider_failing_since,
        )
        logger.info(
            "the event comes back later", extra={"reason": result.reason, "delay_seconds": result.delay_seconds}
        )
        metrics.add_metric(name="SubmitRequeued", unit=MetricUnit.Count, value=1)
        return "REQUEUED"
    metrics.add_metric(name=f"Submit{result.value.title()}", unit=MetricUnit.Count, value=1)
    return result.value


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
