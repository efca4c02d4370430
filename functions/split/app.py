"""Split: SQS batch of campaign-file events (or a split's own cursor) -> the campaign's rows, handed to Submit;
a sample decision's event (<name>.approve / <name>.reject) -> the held rows handed out or skipped."""

from __future__ import annotations

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from avatar_pipeline.adapters.queue import SplitEventRecord, to_split_request
from avatar_pipeline.campaigns.approval import decide_sample, expire_sample
from avatar_pipeline.campaigns.records import SampleExpiry, SplitCursor
from avatar_pipeline.campaigns.split import resume_split, split_campaign
from avatar_pipeline.keys import sample_decision_of
from avatar_pipeline.lambda_shell import sqs_batch_handler, time_left
from avatar_pipeline.observability import logger, metrics, tracer
from avatar_pipeline.runtime import dependencies


@tracer.capture_method
def record_handler(record: SplitEventRecord, lambda_context: LambdaContext) -> str:
    deps = dependencies()
    request = to_split_request(record)
    seconds_left = time_left(lambda_context)
    if isinstance(request, SampleExpiry):
        return "EXPIRED" if expire_sample(request, deps.split_ports) else "IGNORED"
    if isinstance(request, SplitCursor):
        result = resume_split(request, deps.split_ports, seconds_left)
    elif sample_decision_of(request.key) is not None:
        decided = decide_sample(request, deps.split_ports)
        metrics.add_metric(name="SampleDecided" if decided else "SampleDecisionIgnored", unit=MetricUnit.Count, value=1)
        return "DECIDED" if decided else "IGNORED"
    else:
        result = split_campaign(request, deps.split_ports, seconds_left)
    if isinstance(result, SplitCursor):
        # Time ran short: the rest of the split is the next message on this queue (no receive spent).
        deps.retries.requeue(record.eventSourceARN, result.model_dump_json(), 0)
        logger.info("the split goes on from a cursor", extra={"after_row": result.after_row})
        metrics.add_metric(name="SplitContinued", unit=MetricUnit.Count, value=1)
        return "CONTINUED"
    metrics.add_metric(name=f"Split{result.value.title()}", unit=MetricUnit.Count, value=1)
    return result.value


lambda_handler = sqs_batch_handler(record_handler, SplitEventRecord)
