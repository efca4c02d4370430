"""Campaign rows onto the submit queue, and the campaign's one notification (SNS) and event (EventBridge)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from avatar_pipeline.adapters.events import EVENT_SOURCE
from avatar_pipeline.campaigns.records import CampaignNotification, RowMessage
from avatar_pipeline.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

CAMPAIGN_DETAIL_TYPE = "Avatar Campaign Completed"


class RowSendFailed(RuntimeError):
    """SQS did not take some rows; the split is retried (a row sent twice is still one job)."""


class SqsRowQueue:
    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._sqs = client
        self._queue_url = queue_url

    def send(self, messages: list[RowMessage]) -> None:
        for start in range(0, len(messages), 10):
            batch = messages[start : start + 10]
            response = self._sqs.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "MessageBody": m.model_dump_json()} for i, m in enumerate(batch)],
            )
            if response.get("Failed"):
                raise RowSendFailed(f"SQS refused {len(response['Failed'])} of {len(batch)} row messages")


class CampaignAnnouncer:
    def __init__(self, sns: SNSClient, topic_arn: str, events: EventBridgeClient, bus_name: str) -> None:
        self._sns = sns
        self._topic_arn = topic_arn
        self._events = events
        self._bus = bus_name

    def publish(self, notification: CampaignNotification) -> None:
        """The SNS message, then the event (a failed event is logged, not retried: the message went out)."""
        body = notification.model_dump_json()
        self._sns.publish(
            TopicArn=self._topic_arn,
            Subject=f"Avatar campaign {notification.status.lower()}: {notification.campaign_key}"[:99],
            Message=body,
            MessageAttributes={
                "kind": {"DataType": "String", "StringValue": "campaign"},
                "status": {"DataType": "String", "StringValue": notification.status},
            },
        )
        try:
            self._events.put_events(
                Entries=[
                    {
                        "Source": EVENT_SOURCE,
                        "DetailType": CAMPAIGN_DETAIL_TYPE,
                        "Detail": body,
                        "EventBusName": self._bus,
                        "Resources": [],
                    }
                ]
            )
        except (ClientError, BotoCoreError) as error:
            logger.error("the campaign event could not be published", extra={"error": str(error)})
