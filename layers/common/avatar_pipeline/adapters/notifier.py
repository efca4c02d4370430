"""SNS notifications: a JSON body plus `status` and `model` attributes for subscription filter policies."""

from __future__ import annotations

from typing import TYPE_CHECKING

from avatar_pipeline.records import Notification

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient


class SnsNotifier:
    def __init__(self, client: SNSClient, topic_arn: str) -> None:
        self._sns = client
        self._topic_arn = topic_arn

    def publish(self, notification: Notification) -> str:
        title = f"Avatar video {notification.status.lower()}: {notification.input.job_key}"
        response = self._sns.publish(
            TopicArn=self._topic_arn,
            Subject=title[:99],
            Message=notification.model_dump_json(),
            MessageAttributes={
                "status": {"DataType": "String", "StringValue": notification.status},
                "model": {"DataType": "String", "StringValue": notification.model or "unknown"},
            },
        )
        return str(response["MessageId"])
