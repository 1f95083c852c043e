"""The local twin runs SQS event sources as Lambda does: batches, partial failures, redrive, FIFO order."""

from __future__ import annotations

import json
import uuid

import pytest

from hilo.local.stack import LocalStack, wait_until

pytestmark = pytest.mark.stack


def _send(stack: LocalStack, queue: str, body: dict[str, object], **extra: str) -> None:
    stack.client("sqs").send_message(QueueUrl=stack.physical_id(queue), MessageBody=json.dumps(body), **extra)


def _item(stack: LocalStack, pk: str) -> dict[str, object] | None:
    table = stack.physical_id("ResultsTable")
    item = stack.client("dynamodb").get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True).get("Item")
    return item


def _attempts(stack: LocalStack, record_id: str) -> int:
    item = _item(stack, f"attempts#{record_id}")
    return int(item["attempts"]["N"]) if item else 0


def _sequence(stack: LocalStack, group: str) -> list[str]:
    item = _item(stack, f"group#{group}")
    return [value["S"] for value in item["seq"]["L"]] if item else []


def _dlq_bodies(stack: LocalStack, queue: str) -> list[dict[str, object]]:
    messages = (
        stack.client("sqs")
        .receive_message(QueueUrl=stack.physical_id(queue), MaxNumberOfMessages=10, WaitTimeSeconds=1)
        .get("Messages", [])
    )
    return [json.loads(message["Body"]) for message in messages]


def test_a_message_sent_to_a_queue_is_handled_by_its_function(queue_stack: LocalStack) -> None:
    # Given a queue wired to a function in the template
    group = uuid.uuid4().hex
    # When a message is sent to it
    _send(queue_stack, "WorkQueue", {"id": f"{group}-1", "group": group})
    # Then the function handles it, once
    assert wait_until(lambda: _sequence(queue_stack, group), timeout=20) == [f"{group}-1"]
    assert _attempts(queue_stack, f"{group}-1") == 1


def test_an_event_bus_rule_delivers_matching_events_to_its_queue_and_function(queue_stack: LocalStack) -> None:
    # Given a rule on an event bus whose target is the function's queue (the event's detail only)
    group = uuid.uuid4().hex
    events = queue_stack.client("events")
    entry = {
        "EventBusName": "queuetest-work",
        "Source": "tests",
        "Detail": json.dumps({"id": f"{group}-1", "group": group}),
    }
    # When a matching and a non-matching event are put on the bus
    events.put_events(Entries=[{**entry, "DetailType": "work.requested"}, {**entry, "DetailType": "other.thing"}])
    # Then the function handles the matching one, once
    assert wait_until(lambda: _sequence(queue_stack, group), timeout=20) == [f"{group}-1"]
    assert _attempts(queue_stack, f"{group}-1") == 1


def test_only_the_failed_record_is_retried_and_it_ends_in_the_dlq(queue_stack: LocalStack) -> None:
    # Given a batch where one record always fails (poison) and the others succeed
    group = uuid.uuid4().hex
    good = [f"{group}-{n}" for n in range(5)]
    poison = f"{group}-poison"
    for record_id in [*good[:2], poison, *good[2:]]:
        _send(
            queue_stack, "WorkQueue", {"id": record_id, "group": group, "fail_times": 99 if record_id == poison else 0}
        )

    # When the function reports the poison record in batchItemFailures, batch after batch
    def poison_parked() -> list[dict[str, object]]:
        return [body for body in _dlq_bodies(queue_stack, "WorkDlq") if body["id"] == poison]

    parked = wait_until(poison_parked, timeout=40, interval=0.5)

    # Then every good record took effect exactly once (none was redelivered with the poison one)
    assert sorted(_sequence(queue_stack, group)) == sorted(good)
    assert all(_attempts(queue_stack, record_id) == 1 for record_id in good)
    # And the poison record was tried maxReceiveCount (3) times, then moved to the DLQ intact
    assert _attempts(queue_stack, poison) == 3
    assert parked[0]["fail_times"] == 99


def test_fifo_group_order_survives_a_failure_in_the_middle(queue_stack: LocalStack) -> None:
    # Given ten ordered messages of one group, the fourth failing on its first attempt
    group = uuid.uuid4().hex
    ids = [f"{group}-{n:02d}" for n in range(10)]
    entries = [
        {
            "Id": str(n),
            "MessageBody": json.dumps({"id": record_id, "group": group, "fail_times": 1 if n == 3 else 0}),
            "MessageGroupId": group,
            "MessageDeduplicationId": record_id,
        }
        for n, record_id in enumerate(ids)
    ]
    queue_stack.client("sqs").send_message_batch(QueueUrl=queue_stack.physical_id("OrderedQueue"), Entries=entries)

    # When the FIFO processor stops at the failure and the rest of the batch is retried
    sequence = wait_until(
        lambda: len(_sequence(queue_stack, group)) == 10 and _sequence(queue_stack, group), timeout=40
    )

    # Then the group was processed in send order, each message once
    assert sequence == ids
    assert _attempts(queue_stack, ids[3]) == 2
