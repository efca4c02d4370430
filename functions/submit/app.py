"""Submit: SQS batch of inbox "Object Created" events and campaign rows -> one provider submit per new job."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_pipeline.adapters.queue import SubmitEventRecord, to_submit_request
from avatar_pipeline.campaigns.row_jobs import submit_row
from avatar_pipeline.domain.submit import Requeue, SubmitResult, retry_delay_for, submit_job
from avatar_pipeline.errors import TransientError
from avatar_pipeline.lambda_shell import sqs_batch_handler, time_left
from avatar_pipeline.observability import logger, metrics, tracer
from avatar_pipeline.runtime import dependencies


def _submit(record: SubmitEventRecord, lambda_context: LambdaContext) -> SubmitResult | Requeue:
    ports = dependencies().submit_ports
    request = to_submit_request(record)
    seconds_left = time_left(lambda_context)
    if isinstance(request, tuple):
        row, delivery = request
        return submit_row(row, delivery, ports, seconds_left)
    return submit_job(request, ports, seconds_left)


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


# Failed records are reported one by one: SQS redelivers just those, with the delays set above.
lambda_handler = sqs_batch_handler(record_handler, SubmitEventRecord)
