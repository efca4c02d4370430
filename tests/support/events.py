"""Sample events from events/ (the same files `sam local invoke -e` takes), and builders based on them."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

from tests.support import TEST_REGION

EVENTS_DIR = Path(__file__).resolve().parents[2] / "events"


def load_event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS_DIR / name).read_text())
    return data


@dataclass(frozen=True)
class Delivery:
    """The SQS side of a record: which queue it came from, and the message that carried it."""

    queue_arn: str = f"arn:aws:sqs:{TEST_REGION}:123456789012:SubmitQueue"
    receipt_handle: str = "receipt-1"
    message_id: str = "msg-1"


def object_created_sqs_event(
    bucket: str,
    key: str,
    etag: str,
    size: int,
    sequencer: str = "0062E99A88DC407460",
    event_time: datetime | None = None,
    delivery: Delivery = Delivery(),
) -> dict[str, Any]:
    """The SQS batch Lambda receives for one S3 upload, with the key URL-encoded as AWS encodes it."""
    event = copy.deepcopy(load_event("submit_sqs_object_created.json"))
    record = event["Records"][0]
    body = json.loads(record["body"])
    body["detail"]["bucket"]["name"] = bucket
    body["resources"] = [f"arn:aws:s3:::{bucket}"]
    queue_arn = delivery.queue_arn
    body["region"] = queue_arn.split(":")[3]
    body["time"] = (event_time or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body["detail"]["object"].update(
        {"key": quote_plus(key, safe="/"), "etag": etag, "size": size, "sequencer": sequencer}
    )
    record.update(
        {
            "body": json.dumps(body),
            "eventSourceARN": queue_arn,
            "awsRegion": queue_arn.split(":")[3],
            "receiptHandle": delivery.receipt_handle,
            "messageId": delivery.message_id,
        }
    )
    return event
