"""Completion events on EventBridge, so other pipelines can chain work onto finished videos by rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from avatar_pipeline.records import Notification

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient

EVENT_SOURCE = "avatar-pipeline"
DETAIL_TYPES = {"SUCCEEDED": "Avatar Video Succeeded", "FAILED": "Avatar Video Failed"}


class EventPublishFailed(RuntimeError):
    pass


class CompletionEvents:
    def __init__(self, client: EventBridgeClient, bus_name: str) -> None:
        self._events = client
        self._bus = bus_name

    def publish(self, notification: Notification) -> None:
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
        if response.get("FailedEntryCount", 0):
            entry = response["Entries"][0]
            raise EventPublishFailed(
                f"EventBridge refused the event: {entry.get('ErrorCode')} {entry.get('ErrorMessage')}"
            )
