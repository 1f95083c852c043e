"""The twin's corrections to moto keep AWS's behaviour: a cancelled DynamoDB transaction changes nothing, whatever
the backup strategy behind it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from hilo.local import moto_fidelity
from shared.adapters import aws

TABLE = "fidelity"


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    moto_fidelity.apply()
    with mock_aws():
        client = aws.client("dynamodb")
        client.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])  # fmt: skip
        client.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "n": {"N": "1"}})
        yield client


def item(client: Any, pk: str) -> dict[str, Any] | None:
    return client.get_item(TableName=TABLE, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")


def test_a_cancelled_transaction_puts_back_what_it_changed_and_removes_what_it_added(dynamodb: Any) -> None:
    writes = [
        {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET n = :two",
                    "ExpressionAttributeValues": {":two": {"N": "2"}}}},
        {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "b"}}}},
        {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "c"}}, "ConditionExpression": "attribute_exists(pk)"}},
    ]  # fmt: skip
    with pytest.raises(ClientError) as cancelled:
        dynamodb.transact_write_items(TransactItems=writes)
    assert cancelled.value.response["Error"]["Code"] == "TransactionCanceledException"
    assert item(dynamodb, "a") == {"pk": {"S": "a"}, "n": {"N": "1"}}
    assert item(dynamodb, "b") is None
    assert item(dynamodb, "c") is None


def test_a_transaction_that_holds_takes_effect_whole(dynamodb: Any) -> None:
    writes = [
        {"Update": {"TableName": TABLE, "Key": {"pk": {"S": "a"}}, "UpdateExpression": "SET n = :two",
                    "ConditionExpression": "n = :one",
                    "ExpressionAttributeValues": {":one": {"N": "1"}, ":two": {"N": "2"}}}},
        {"Put": {"TableName": TABLE, "Item": {"pk": {"S": "b"}}, "ConditionExpression": "attribute_not_exists(pk)"}},
        {"Delete": {"TableName": TABLE, "Key": {"pk": {"S": "nobody"}}}},
    ]  # fmt: skip
    dynamodb.transact_write_items(TransactItems=writes)
    assert item(dynamodb, "a") == {"pk": {"S": "a"}, "n": {"N": "2"}}
    assert item(dynamodb, "b") == {"pk": {"S": "b"}}


def test_a_query_reads_its_partition_in_order_as_before(dynamodb: Any) -> None:
    dynamodb.create_table(TableName="ranged", BillingMode="PAY_PER_REQUEST",
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                                                {"AttributeName": "sk", "AttributeType": "S"}],
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                     {"AttributeName": "sk", "KeyType": "RANGE"}])  # fmt: skip
    for pk in ("CUST#1", "CUST#2"):
        for sk in ("TL#3", "ENROL#b", "TL#1", "PROFILE", "ENROL#a"):
            dynamodb.put_item(TableName="ranged", Item={"pk": {"S": pk}, "sk": {"S": sk}})

    def sort_keys(**request: Any) -> list[str]:
        found = dynamodb.query(TableName="ranged", **request)["Items"]
        return [item["sk"]["S"] for item in found]

    everything = sort_keys(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "CUST#2"}})
    assert everything == ["ENROL#a", "ENROL#b", "PROFILE", "TL#1", "TL#3"]
    newest = sort_keys(KeyConditionExpression="pk = :pk AND begins_with(sk, :tl)", ScanIndexForward=False, Limit=1,
                       ExpressionAttributeValues={":pk": {"S": "CUST#1"}, ":tl": {"S": "TL#"}})  # fmt: skip
    assert newest == ["TL#3"]
    nobody = sort_keys(KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": "CUST#9"}})
    assert nobody == []
