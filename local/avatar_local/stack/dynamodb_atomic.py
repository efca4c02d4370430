"""A gap in moto 5.2.5's DynamoDB, closed for the offline stack and the tests: concurrent writes.

DynamoDB applies the writes to an item one at a time, so a conditional write is atomic: two workers
racing to create the same job record, take the last token of the request budget or reserve the last
dollars of a day's spend ceiling cannot both win. moto evaluates a condition and applies the write as
separate steps, and serves concurrent requests on threads (its server) or in the caller's threads (in
process) without a lock around them: under load both racers win. The exactly-once submit, the
notification claim, the request budget and the spend ceiling all rest on that atomicity, so this
makes moto apply item operations one at a time while the context is active.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any
from unittest import mock

from moto.dynamodb.models import DynamoDBBackend

# Every operation that reads or writes items: one at a time, as DynamoDB serialises writes per item
# (one lock for all items is stricter than DynamoDB, and costs nothing at the offline stack's scale).
_ITEM_OPERATIONS = (
    "put_item",
    "update_item",
    "delete_item",
    "get_item",
    "query",
    "scan",
    "transact_write_items",
    "batch_get_item",
    "batch_write_item",
    "execute_statement",
)
_LOCK = threading.RLock()


def _one_at_a_time(operation: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(operation)
    def serialised(*args: Any, **kwargs: Any) -> Any:
        with _LOCK:
            return operation(*args, **kwargs)

    return serialised


@contextmanager
def dynamodb_item_writes_atomic() -> Iterator[None]:
    with ExitStack() as patches:
        for name in _ITEM_OPERATIONS:
            original = getattr(DynamoDBBackend, name)
            patches.enter_context(mock.patch.object(DynamoDBBackend, name, _one_at_a_time(original)))
        yield
