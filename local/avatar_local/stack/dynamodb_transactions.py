"""A gap in moto 5.2.5's DynamoDB, closed for the campaign benchmark: TransactWriteItems at scale.

To roll a cancelled transaction back, moto deep-copies every table the transaction names, whole,
before each transaction (once per item naming it). A campaign's split enters each row in a
transaction (the row and its campaign's counters), into one table that grows by a row each time: the
n-th row copies n items twice, so splitting 10,000 rows copies about 10^8 items and takes hours
instead of a minute. DynamoDB itself keeps no such copy.

This backs up only the items the transaction names (each is one key) and puts those back when it
is cancelled, which undoes exactly what moto's whole-table copy would: a transaction writes nothing
but the items it names. The whole-table copy is skipped by handing moto's `copy` a deepcopy that
returns a table as it is (moto's only other deepcopy there, of one item in UpdateItem, is kept).

Enter it before `dynamodb_item_writes_atomic` (or LocalAws.start, which enters that), so the backup
is taken inside that lock, with the transaction, and no concurrent write falls between them.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from types import SimpleNamespace
from typing import Any
from unittest import mock

import moto.dynamodb.models as dynamodb_models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import Table

# (table, hash key, range key or None, the item as it was or None)
_Backup = tuple[Table, DynamoType, DynamoType | None, Any]


def _deepcopy_but_not_tables(value: Any, memo: dict[int, Any] | None = None) -> Any:
    return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _backups(backend: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> list[_Backup]:
    """The items the transaction names, as they are now (a copy: UpdateItem changes an item in place).
    An operation moto will refuse (no such table, no key) is skipped: it writes nothing."""
    found: list[_Backup] = []
    for entry in transact_items:
        operation: dict[str, Any] = next(iter(entry.values()), {})
        table = backend.tables.get(operation.get("TableName", ""))
        key = operation.get("Item") if "Item" in operation else operation.get("Key")
        if table is None or not isinstance(key, dict) or table.hash_key_attr not in key:
            continue
        if table.range_key_attr is not None and table.range_key_attr not in key:
            continue
        hash_key = DynamoType(key[table.hash_key_attr])
        range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        found.append((table, hash_key, range_key, copy.deepcopy(table.get_item(hash_key, range_key))))
    return found


def _restore(backups: list[_Backup]) -> None:
    for table, hash_key, range_key, item in reversed(backups):
        if item is None:
            table.delete_item(hash_key, range_key)
        elif range_key is not None:
            table.items[hash_key][range_key] = item
        else:
            table.items[hash_key] = item


@contextmanager
def dynamodb_transactions_back_up_items() -> Iterator[None]:
    original = DynamoDBBackend.transact_write_items

    @functools.wraps(original)
    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        backups = _backups(self, transact_items)
        try:
            original(self, transact_items)
        except Exception:
            _restore(backups)
            raise

    with ExitStack() as patches:
        patches.enter_context(mock.patch.object(DynamoDBBackend, "transact_write_items", transact_write_items))
        shim = SimpleNamespace(deepcopy=_deepcopy_but_not_tables)
        patches.enter_context(mock.patch.object(dynamodb_models, "copy", shim))
        yield
