"""DeadLetter: events (and campaign rows) that failed every delivery to Submit -> their jobs end with a report."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from avatar_pipeline.adapters.queue import SubmitEventRecord, to_submit_request
from avatar_pipeline.campaigns.row_jobs import end_dead_lettered_row
from avatar_pipeline.domain.dead_letter import end_dead_lettered_job
from avatar_pipeline.lambda_shell import sqs_batch_handler
from avatar_pipeline.observability import logger, metrics, tracer
from avatar_pipeline.runtime import dependencies

# A message that is not an S3 job event is left for a person (the DLQ alarm), shown again twice a day.
UNREADABLE_RETRY_SECONDS = 12 * 3600


@tracer.capture_method
def record_handler(record: SQSRecord) -> str:
    deps = dependencies()
    try:
        event = SubmitEventRecord.model_validate(record.raw_event)
    except ValidationError:
        logger.error("a dead-lettered message is not a job event; left in the DLQ", extra={"body": record.body})
        metrics.add_metric(name="DeadLettersUnreadable", unit=MetricUnit.Count, value=1)
        deps.retries.retry_in(record.event_source_arn, record.receipt_handle, UNREADABLE_RETRY_SECONDS)
        raise
    request = to_submit_request(event)
    if isinstance(request, tuple):
        row, delivery = request
        result = end_dead_lettered_row(row, delivery, deps.dead_letter_ports)
    else:
        result = end_dead_lettered_job(request, deps.dead_letter_ports)
    metrics.add_metric(name=f"DeadLetter{result.value.title()}", unit=MetricUnit.Count, value=1)
    return result.value


lambda_handler = sqs_batch_handler(record_handler)
