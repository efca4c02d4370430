"""Plays Lambda's SQS event source mapping for the Submit function, as the Lambda service would.

Batches of up to BatchSize records, at most MaximumConcurrency batches in flight, partial batch
responses (only the failed records stay on the queue), the queue's visibility timeout (scaled),
and SQS's own redrive to the DLQ after maxReceiveCount receives. It also closes moto's fidelity
gaps on the way: event keys URL-encoded as AWS encodes them, and event times on the virtual
timeline. `duplicate_events` re-sends each event N-1 times (EventBridge/SQS are at-least-once), or
a seeded random 1..3 times per event (`RandomDuplicates`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

from avatar_local.stack.object_events import as_aws_would_send
from avatar_local.stack.timewarp import ScaledClock

LOG = logging.getLogger("avatar_local.poller")
Invoke = Callable[[dict[str, Any]], tuple[Any, str | None]]


@dataclass
class PollerStats:
    batches: int = 0
    records: int = 0
    failed_records: int = 0
    deleted: int = 0
    duplicates_sent: int = 0
    errors: list[str] = field(default_factory=list)
    # How many times each S3 object event was delivered in all (1 = no duplicate), by its object key.
    deliveries: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class RandomDuplicates:
    """Deliver each S3 event between `low` and `high` times, drawn per event (its key and ETag) from
    `seed`: the same seed duplicates the same events."""

    low: int = 1
    high: int = 3
    seed: int = 0

    def copies(self, key: str, etag: str) -> int:
        digest = hashlib.sha256(f"{self.seed}|{key}|{etag}".encode()).digest()
        return self.low + int.from_bytes(digest[:8], "big") % (self.high - self.low + 1)


@dataclass(frozen=True)
class EventSourceMapping:
    """A queue and how Lambda's event source mapping reads it for one function (template.yaml)."""

    queue_url: str
    queue_arn: str
    batch_size: int
    concurrency: int  # ScalingConfig.MaximumConcurrency
    visibility_timeout: int  # the queue's
    function_timeout: int  # the function's, in seconds


class QueuePoller:
    def __init__(
        self,
        mapping: EventSourceMapping,
        invoke: Invoke,
        clock: ScaledClock,
        rescheduled: Callable[[str], bool],
        duplicate_events: int | RandomDuplicates = 1,
    ) -> None:
        self._queue_url, self._queue_arn, self._invoke = mapping.queue_url, mapping.queue_arn, invoke
        self._batch_size = max(1, min(mapping.batch_size, 10))
        self._concurrency = max(1, mapping.concurrency)
        # While a batch is being worked on its messages stay hidden for the function's real timeout,
        # as on AWS (visibility >= 6x the timeout): the handler's HTTP calls take wall-clock time.
        self._in_flight_visibility = mapping.function_timeout
        # After a failed invocation, the queue's visibility timeout; the stack's ScaledQueueDelays hook
        # scales it on the way to SQS, like every delay a handler asks for.
        self._redelivery_delay = mapping.visibility_timeout
        self._rescheduled = rescheduled
        self._clock = clock
        self._duplicates = (
            duplicate_events if isinstance(duplicate_events, RandomDuplicates) else max(1, duplicate_events)
        )
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self.stats = PollerStats()

    def start(self) -> QueuePoller:
        for index in range(self._concurrency):
            thread = threading.Thread(target=self._loop, name=f"sqs-poller-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def _loop(self) -> None:
        sqs = boto3.client("sqs")
        while not self._stop.is_set():
            try:
                self._poll_once(sqs)
            except Exception as exc:
                LOG.exception("poller iteration failed")
                with self._lock:
                    self.stats.errors.append(f"{type(exc).__name__}: {exc}")
                self._stop.wait(0.2)

    def _poll_once(self, sqs: Any) -> None:
        response = sqs.receive_message(
            QueueUrl=self._queue_url,
            MaxNumberOfMessages=self._batch_size,
            WaitTimeSeconds=1,
            VisibilityTimeout=self._in_flight_visibility,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        messages = response.get("Messages", [])
        if not messages:
            return
        self._send_duplicates(sqs, messages)
        event = {"Records": [self._record(m) for m in messages]}
        payload, function_error = self._invoke(event)
        if function_error:
            failed = {m["MessageId"] for m in messages}
        else:
            failed = {item["itemIdentifier"] for item in (payload or {}).get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] in failed and not self._rescheduled(message["ReceiptHandle"]):
                sqs.change_message_visibility(
                    QueueUrl=self._queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=self._redelivery_delay,
                )
        done = [m for m in messages if m["MessageId"] not in failed]
        if done:
            sqs.delete_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
            )
        with self._lock:
            self.stats.batches += 1
            self.stats.records += len(messages)
            self.stats.failed_records += len(failed)
            self.stats.deleted += len(done)

    def _copies(self, body: str) -> int:
        if isinstance(self._duplicates, RandomDuplicates):
            key, etag = _event_object(body)
            return self._duplicates.copies(key, etag) if key else 1
        return self._duplicates

    def _send_duplicates(self, sqs: Any, messages: list[dict[str, Any]]) -> None:
        if self._duplicates == 1:
            return
        for message in messages:
            fingerprint = _event_identity(message["Body"])
            with self._lock:
                if fingerprint in self._seen:
                    continue
                self._seen.add(fingerprint)
            copies = self._copies(message["Body"])
            # Sent as AWS delivers it: the stack's SendMessage hook (ScaledQueueDelays) turns a body of
            # that shape back into moto's, as for the events the Submit function re-sends. moto's own
            # body would be taken for AWS's shape and its (wall-clock) time moved back once more.
            delivered = as_aws_would_send(message["Body"], self._clock.to_virtual)
            for _ in range(copies - 1):
                sqs.send_message(QueueUrl=self._queue_url, MessageBody=delivered)
            key, _etag = _event_object(message["Body"])
            with self._lock:
                self.stats.duplicates_sent += copies - 1
                if key:
                    self.stats.deliveries[key] = copies

    def _record(self, message: dict[str, Any]) -> dict[str, Any]:
        """An SQS record exactly as Lambda hands it to the function."""
        return {
            "messageId": message["MessageId"],
            "receiptHandle": message["ReceiptHandle"],
            "body": as_aws_would_send(message["Body"], self._clock.to_virtual),
            "attributes": message.get("Attributes", {}),
            "messageAttributes": {
                name: {
                    "stringValue": value.get("StringValue"),
                    "binaryValue": None,
                    "stringListValues": [],
                    "binaryListValues": [],
                    "dataType": value["DataType"],
                }
                for name, value in message.get("MessageAttributes", {}).items()
            },
            "md5OfBody": message["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": self._queue_arn,
            "awsRegion": self._queue_arn.split(":")[3],
        }


def _event_object(body: str) -> tuple[str, str]:
    """(key, ETag) of the S3 object event a message carries (as moto queued it), or ("", "")."""
    try:
        obj = json.loads(body)["detail"]["object"]
        return str(obj["key"]), str(obj.get("etag", obj.get("eTag", "")))
    except (ValueError, KeyError, TypeError):
        return "", ""


def _event_identity(body: str) -> str:
    """The S3 object event a message carries (bucket, key, ETag, sequencer), whatever its JSON
    formatting: an event the Submit function re-sent after a rate limit is the same event (the
    stack's SendMessage hook gives it back the raw key moto's own messages carry). moto's event ids
    are not unique, so they cannot serve."""
    try:
        detail = json.loads(body)["detail"]
        obj = detail["object"]
        parts = [detail["bucket"]["name"], obj["key"], obj.get("etag", obj.get("eTag", "")), obj.get("sequencer", "")]
    except (ValueError, KeyError, TypeError):
        return hashlib.sha256(body.encode()).hexdigest()
    return hashlib.sha256("\n".join(str(part) for part in parts).encode()).hexdigest()
