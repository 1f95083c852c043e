"""Fixtures of the ingest tests: the AWS side on moto, in process (``mock_aws``) or behind a threaded server."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from moto import mock_aws
from moto.server import ThreadedMotoServer

from hilo.local.stack import free_port
from shared.adapters.event_publisher import EventPublisher
from shared.adapters.profile_store import ProfileStore
from shared.identity import Normaliser
from shared.ingest.service import Ingest
from tests.unit.ingest.support import (
    FakeClock,
    FakePublisher,
    FakeRepository,
    atomic_dynamodb,
    aws_client,
    profile_table_definition,
)


@dataclass
class Aws:
    dynamodb: Any
    sqs: Any
    events: Any
    s3: Any
    table: str
    queue_url: str
    bus: str
    bucket: str
    clock: FakeClock

    def store(self) -> ProfileStore:
        return ProfileStore(self.table, self.dynamodb)

    def ingest(self) -> Ingest:
        publisher = EventPublisher(self.queue_url, self.bus, self.sqs, self.events)
        return Ingest(self.store(), publisher, Normaliser("CO"), self.clock)

    def items(self, item_type: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        request: dict[str, Any] = {"TableName": self.table, "FilterExpression": "#t = :t",
                                   "ExpressionAttributeNames": {"#t": "type"},
                                   "ExpressionAttributeValues": {":t": {"S": item_type}}}  # fmt: skip
        while True:
            page = self.dynamodb.scan(**request)
            found.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                return found
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def event_ids(self) -> list[str]:
        """Every event on the queue (drained), by id; duplicates kept."""
        import json

        ids: list[str] = []
        while True:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return ids
            ids.extend(json.loads(message["Body"])["id"] for message in messages)
            self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])  # fmt: skip


def _provision(endpoint: str | None) -> Aws:
    dynamodb, sqs, events, s3 = (aws_client(name, endpoint) for name in ("dynamodb", "sqs", "events", "s3"))
    table = profile_table_definition()["TableName"]
    dynamodb.create_table(**profile_table_definition())
    queue_url = sqs.create_queue(QueueName="hilo-events")["QueueUrl"]
    events.create_event_bus(Name="hilo-integrations")
    s3.create_bucket(Bucket="hilo-payloads")
    return Aws(dynamodb, sqs, events, s3, table, queue_url, "hilo-integrations", "hilo-payloads", FakeClock())


@pytest.fixture
def repo() -> FakeRepository:
    """The in-memory profile table (same rules as the DynamoDB adapter)."""
    return FakeRepository()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def ingest(repo: FakeRepository, publisher: FakePublisher) -> Ingest:
    """Ingest on the fakes, as the function builds it (Colombian default region, 72-hour reopen window)."""
    return Ingest(repo, publisher, Normaliser("CO"), FakeClock())


@pytest.fixture
def aws() -> Iterator[Aws]:
    """A fresh account on moto's in-process mock (single-threaded tests)."""
    with mock_aws():
        yield _provision(None)


@pytest.fixture(scope="module")
def moto_server() -> Iterator[str]:
    """A moto server on 127.0.0.1 whose DynamoDB requests are atomic (see ``atomic_dynamodb``)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    with atomic_dynamodb():
        server.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.stop()


@pytest.fixture
def threaded_aws(moto_server: str) -> Aws:
    """A fresh account on the moto server, for tests that run requests on several threads."""
    import urllib.request

    urllib.request.urlopen(urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10)  # noqa: S310
    return _provision(moto_server)
