"""Completion events on EventBridge, so other pipelines can chain work onto finished videos by rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from avatar_pipeline.domain.ports import EventPublishFailed
from avatar_pipeline.records import Notification

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

EVENT_SOURCE = "avatar-pipeline"
DETAIL_TYPES = {"SUCCEEDED": "Avatar Video Succeeded", "FAILED": "Avatar Video Failed"}


class CompletionEvents:
    def __init__(self, client: EventBridgeClient, bus_name: str) -> None:
        self._events = client
        self._bus = bus_name

    def publish(self, notification: Notification) -> None:
        """EventPublishFailed, whether EventBridge refused the entry or could not be reached."""
        try:
            response = self._events.put_events(
                Entries=[
                    {
                        "Source": EVENT_SOURCE,
                        "DetailType": DETAIL_TYPES[notification.status],
                        "Detail": notification.model_dump_json(),
                        "EventBusName": self._bus,
                        "Resources": [],
                    }
                ]
            )
        except (ClientError, BotoCoreError) as error:
            raise EventPublishFailed(f"EventBridge could not be reached: {error}") from None
        if response.get("FailedEntryCount", 0):
            entry = response["Entries"][0]
            raise EventPublishFailed(
                f"EventBridge refused the event: {entry.get('ErrorCode')} {entry.get('ErrorMessage')}"
            )
