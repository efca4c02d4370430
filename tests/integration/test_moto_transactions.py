"""local/avatar_local/stack/dynamodb_transactions.py: moto's TransactWriteItems without a copy of the whole
table per transaction, and a cancelled transaction still undoing exactly what it wrote."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.dynamodb.models import dynamodb_backends

from avatar_local.stack.dynamodb_atomic import dynamodb_item_writes_atomic
from avatar_local.stack.dynamodb_transactions import dynamodb_transactions_back_up_items
from tests.support import TEST_REGION

pytestmark = pytest.mark.integration

TABLE = "campaigns"


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws(), dynamodb_transactions_back_up_items(), dynamodb_item_writes_atomic():
        dynamodb = boto3.client("dynamodb", region_name=TEST_REGION)
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": "c"}, "sk": {"S": "campaign"}, "n": {"N": "0"}})
        yield dynamodb


def enter(client: Any, row: str, run: str = "r1") -> None:
    """A row and its campaign's counter, as CampaignsTable.enter_row writes them."""
    client.transact_write_items(
        TransactItems=[
            {
                "Put": {
                    "TableName": TABLE,
                    "Item": {"pk": {"S": "c"}, "sk": {"S": f"row#{row}"}, "v": {"S": "new"}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Update": {
                    "TableName": TABLE,
                    "Key": {"pk": {"S": "c"}, "sk": {"S": "campaign"}},
                    "UpdateExpression": "ADD n :one",
                    "ConditionExpression": "attribute_not_exists(run) OR run = :run",
                    "ExpressionAttributeValues": {":one": {"N": "1"}, ":run": {"S": run}},
                }
            },
        ]
    )


def item(client: Any, sk: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = client.get_item(TableName=TABLE, Key={"pk": {"S": "c"}, "sk": {"S": sk}}).get("Item")
    return found


def test_a_transaction_applies_every_item(client: Any) -> None:
    enter(client, "1")
    enter(client, "2")

    assert item(client, "campaign") == {"pk": {"S": "c"}, "sk": {"S": "campaign"}, "n": {"N": "2"}}
    assert item(client, "row#2") is not None


def test_a_cancelled_transaction_undoes_the_items_it_changed_and_copies_no_table(client: Any) -> None:
    """Given a row entered once
    When it is entered again (its Put's condition fails; moto still applies the counter's Update, then
    rolls back), and a new row's transaction fails on the counter's condition (its Put applied first)
    Then the counter is as before, the new row does not exist, and the table is the same table object
    (moto's own rollback would have put a deep copy of the whole table in its place)."""
    enter(client, "1")
    table = dynamodb_backends[DEFAULT_ACCOUNT_ID][TEST_REGION].tables[TABLE]

    with pytest.raises(client.exceptions.TransactionCanceledException):
        enter(client, "1")
    client.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "c"}, "sk": {"S": "campaign"}},
        UpdateExpression="SET run = :r",
        ExpressionAttributeValues={":r": {"S": "r2"}},
    )
    with pytest.raises(client.exceptions.TransactionCanceledException):
        enter(client, "2", run="r1")

    assert item(client, "campaign") == {
        "pk": {"S": "c"},
        "sk": {"S": "campaign"},
        "n": {"N": "1"},
        "run": {"S": "r2"},
    }
    assert item(client, "row#1") == {"pk": {"S": "c"}, "sk": {"S": "row#1"}, "v": {"S": "new"}}
    assert item(client, "row#2") is None
    assert dynamodb_backends[DEFAULT_ACCOUNT_ID][TEST_REGION].tables[TABLE] is table
