"""S3 "Object Created" events on the local queues, in the two shapes they take.

moto's EventBridge queues an event with the raw key, `eTag` and a wall-clock time; AWS delivers the
key URL-encoded, `etag` and (here) the stack's virtual time. The poller turns what moto queued into
what AWS would send; a message the Submit function re-sends is already in that shape, so it is turned
back on its way into the queue (timewarp), or the poller would encode and convert it twice. Any other
body passes through untouched.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote_plus, unquote_plus

ShiftTime = Callable[[datetime], datetime]


def as_aws_would_send(body: str, to_virtual: ShiftTime) -> str:
    def rewrite(event: dict[str, Any], detail_object: dict[str, Any]) -> None:
        if "key" in detail_object:
            # moto sends the raw key; AWS URL-encodes it (space -> '+', '+' -> '%2B').
            detail_object["key"] = quote_plus(detail_object["key"], safe="/")
        if "eTag" in detail_object:
            # moto spells it eTag; AWS's event (and Powertools' model) has etag.
            detail_object["etag"] = detail_object.pop("eTag")
        _shift_time(event, to_virtual)

    return _rewrite_object_created(body, rewrite)


def as_queued_by_moto(body: str, to_real: ShiftTime) -> str:
    def rewrite(event: dict[str, Any], detail_object: dict[str, Any]) -> None:
        if "key" in detail_object:
            detail_object["key"] = unquote_plus(detail_object["key"])
        _shift_time(event, to_real)

    return _rewrite_object_created(body, rewrite)


def _rewrite_object_created(body: str, rewrite: Callable[[dict[str, Any], dict[str, Any]], None]) -> str:
    try:
        event = json.loads(body)
    except ValueError:
        return body
    if not isinstance(event, dict) or event.get("detail-type") != "Object Created":
        return body
    rewrite(event, event.get("detail", {}).get("object", {}))
    return json.dumps(event)


def _shift_time(event: dict[str, Any], shift: ShiftTime) -> None:
    if "time" in event:
        event["time"] = shift(datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))).isoformat()
