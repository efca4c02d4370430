"""What every DynamoDB adapter here does the same way: recognise a lost conditional write, and try
again a bounded number of times (optimistic concurrency: never a lock, never a lost update)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from botocore.exceptions import ClientError

T = TypeVar("T")


def condition_failed(error: ClientError) -> bool:
    """The write's condition did not hold: another writer got there first (or the item is not as asked)."""
    return error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"


def until_written(attempts: int, attempt: Callable[[], T | None]) -> T | None:
    """Run `attempt` (read, decide, write conditionally) until it answers (its write went through, or it
    decided there is nothing to write) or `attempts` are spent; None then. `attempt` answers None when
    another writer overtook it and it must decide again from what it now sees."""
    for _ in range(attempts):
        answer = attempt()
        if answer is not None:
            return answer
    return None
