"""SQS: the inbox events as Powertools parser models, and rescheduling a record's next delivery."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from aws_lambda_powertools.utilities.parser.models import S3EventNotificationEventBridgeModel, SqsRecordModel
from botocore.exceptions import ClientError
from pydantic import Json

from avatar_pipeline.campaigns.records import RowMessage, SampleExpiry, SplitCursor
from avatar_pipeline.domain.context import InboxObject
from avatar_pipeline.keys import decode_event_key, row_input_key
from avatar_pipeline.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef

# Message attributes a requeued event carries: the streak of submits Segmind refused (InboxObject).
PROVIDER_FAILURES_ATTRIBUTE = "provider-failures"
PROVIDER_FAILING_SINCE_ATTRIBUTE = "provider-failing-since"


class InboxEventRecord(SqsRecordModel):
    """An SQS record whose body is the EventBridge "Object Created" event from the input bucket."""

    body: Json[S3EventNotificationEventBridgeModel]


class SubmitEventRecord(SqsRecordModel):
    """An SQS record on the submit queue: a job file's "Object Created" event, or a campaign row the
    Split function handed out."""

    body: Json[RowMessage | S3EventNotificationEventBridgeModel]


class SplitEventRecord(SqsRecordModel):
    """An SQS record on the split queue: a campaign file's (or a sample decision's) "Object Created" event,
    the cursor a split that neared its time limit left for its next invocation, or a sample's expiry."""

    body: Json[SplitCursor | SampleExpiry | S3EventNotificationEventBridgeModel]


class RetryScheduler:
    """Sets when a failed record is delivered again, instead of waiting out the full visibility timeout.

    Used for waits with a known length (media that is still uploading, a rate-limit window).
    """

    def __init__(self, client: SQSClient) -> None:
        self._sqs = client
        self._queue_urls: dict[str, str] = {}

    def retry_in(self, queue_arn: str, receipt_handle: str, seconds: int) -> bool:
        """Best effort: if SQS refuses, the record still comes back after the queue's visibility timeout."""
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._queue_url(queue_arn),
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=max(0, min(seconds, 43_200)),
            )
        except ClientError as error:
            logger.warning("could not reschedule the record", extra={"error": str(error)})
            return False
        return True

    def requeue(
        self,
        queue_arn: str,
        body: str,
        delay_seconds: int,
        provider_failures: int = 0,
        provider_failing_since: datetime | None = None,
    ) -> None:
        """Put the event back as a new message, delivered after `delay_seconds` (at most 15 min).

        For waits that are not failures (the request budget, Segmind's rate window, a provider that
        refuses submits for a while): a redelivery would count against the queue's maxReceiveCount and,
        in a long wait, end in the DLQ. The streak of refused submits travels as message attributes.
        """
        attributes: dict[str, MessageAttributeValueTypeDef] = {}
        if provider_failures:
            attributes[PROVIDER_FAILURES_ATTRIBUTE] = {"DataType": "Number", "StringValue": str(provider_failures)}
        if provider_failing_since is not None:
            attributes[PROVIDER_FAILING_SINCE_ATTRIBUTE] = {
                "DataType": "String",
                "StringValue": provider_failing_since.isoformat(),
            }
        self._sqs.send_message(
            QueueUrl=self._queue_url(queue_arn),
            MessageBody=body,
            DelaySeconds=max(0, min(delay_seconds, 900)),
            MessageAttributes=attributes,
        )

    def _queue_url(self, queue_arn: str) -> str:
        if queue_arn not in self._queue_urls:
            _, _, _, _, account, name = queue_arn.split(":", 5)
            response = self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
            self._queue_urls[queue_arn] = response["QueueUrl"]
        return self._queue_urls[queue_arn]


def to_inbox_object(record: InboxEventRecord | SubmitEventRecord) -> InboxObject:
    """The only place an event's object key is decoded (S3 URL-encodes it: space -> '+')."""
    event = record.body
    if isinstance(event, RowMessage):
        raise TypeError("a campaign row is no S3 event (to_submit_request)")
    detail = event.detail
    return InboxObject(
        bucket=detail.bucket.name,
        key=decode_event_key(detail.object.key),
        etag=detail.object.etag,
        # An unversioned bucket's events may say "null".
        version_id=detail.object.version_id if detail.object.version_id not in (None, "", "null") else None,
        sequencer=detail.object.sequencer,
        event_time=event.time,
        receive_count=int(record.attributes.ApproximateReceiveCount),
        message_id=record.messageId,
        provider_failures=int(_attribute(record, PROVIDER_FAILURES_ATTRIBUTE) or 0),
        provider_failing_since=_moment(_attribute(record, PROVIDER_FAILING_SINCE_ATTRIBUTE)),
    )


def to_submit_request(record: SubmitEventRecord) -> InboxObject | tuple[RowMessage, InboxObject]:
    """A job file's event, or a campaign row with its delivery (received when the split handed it out)."""
    row = record.body
    if not isinstance(row, RowMessage):
        return to_inbox_object(record)
    return row, InboxObject(
        bucket=row.bucket,
        key=row_input_key(row.campaign_key, row.row_id),
        etag="",
        version_id=None,
        sequencer=None,
        event_time=record.attributes.SentTimestamp,
        receive_count=int(record.attributes.ApproximateReceiveCount),
        message_id=record.messageId,
        provider_failures=int(_attribute(record, PROVIDER_FAILURES_ATTRIBUTE) or 0),
        provider_failing_since=_moment(_attribute(record, PROVIDER_FAILING_SINCE_ATTRIBUTE)),
    )


def to_split_request(record: SplitEventRecord) -> InboxObject | SplitCursor | SampleExpiry:
    if isinstance(record.body, SplitCursor | SampleExpiry):
        return record.body
    event = record.body
    return InboxObject(
        bucket=event.detail.bucket.name,
        key=decode_event_key(event.detail.object.key),
        etag=event.detail.object.etag,
        version_id=None,
        sequencer=event.detail.object.sequencer,
        event_time=event.time,
        receive_count=int(record.attributes.ApproximateReceiveCount),
        message_id=record.messageId,
    )


def _attribute(record: InboxEventRecord | SubmitEventRecord, name: str) -> str | None:
    attribute = record.messageAttributes.get(name)
    return attribute.stringValue if attribute is not None else None


def _moment(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        logger.warning("ignoring an unreadable message attribute", extra={"value": text})
        return None
