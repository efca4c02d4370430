"""The shell every SQS-fed handler shares: a Powertools batch over the records, and the time left.

Failed records are reported one by one even when all of them failed: SQS then redelivers just
those (with any per-record delay a handler set) rather than the whole batch after the visibility
timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.parser.models import SqsRecordModel
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_pipeline.observability import logger, metrics, tracer

SqsBatchHandler = Callable[[dict[str, Any], LambdaContext], PartialItemFailureResponse]


def sqs_batch_handler(record_handler: Callable[..., str], model: type[SqsRecordModel] | None = None) -> SqsBatchHandler:
    """The Lambda entry point for an SQS event source: each record to `record_handler` (parsed as
    `model` when one is given), with logging, tracing and metrics around the whole batch."""
    processor = BatchProcessor(event_type=EventType.SQS, model=model, raise_on_entire_batch_failure=False)

    @logger.inject_lambda_context(clear_state=True)
    @tracer.capture_lambda_handler
    @metrics.log_metrics
    def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
        return process_partial_response(event, record_handler, processor, context)

    return lambda_handler


def time_left(context: LambdaContext) -> Callable[[], float]:
    """The seconds this invocation has left, read afresh at each call (a split reads it per row,
    a submit before its POST)."""

    def seconds() -> float:
        return context.get_remaining_time_in_millis() / 1000

    return seconds
