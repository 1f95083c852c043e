"""Fixtures of the workflow tests that store enrolments: ProfileTable alone (as template.yaml declares it) on moto's
in-process mock. The ingest tests' ``aws`` fixture would do too, but it also makes a queue, a bus and a bucket these
tests never touch, which doubles each test's setup."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from moto import mock_aws

from shared.adapters.dynamodb import from_item
from tests.unit.ingest.support import aws_client, profile_table_definition


@dataclass
class Table:
    dynamodb: Any
    name: str

    def raw_items(self, item_type: str) -> list[dict[str, Any]]:
        """Every item of a ``type``, as DynamoDB returns them (a scan: tests only)."""
        found: list[dict[str, Any]] = []
        request: dict[str, Any] = {"TableName": self.name, "FilterExpression": "#t = :t",
                                   "ExpressionAttributeNames": {"#t": "type"},
                                   "ExpressionAttributeValues": {":t": {"S": item_type}}}  # fmt: skip
        while True:
            page = self.dynamodb.scan(**request)
            found.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def items(self, item_type: str) -> list[dict[str, Any]]:
        """The same, as plain values."""
        return [from_item(item) for item in self.raw_items(item_type)]


@cache
def _definition() -> dict[str, Any]:
    return profile_table_definition()


@pytest.fixture
def table() -> Iterator[Table]:
    """A fresh ProfileTable on moto."""
    with mock_aws():
        dynamodb = aws_client("dynamodb")
        dynamodb.create_table(**_definition())
        yield Table(dynamodb, _definition()["TableName"])
