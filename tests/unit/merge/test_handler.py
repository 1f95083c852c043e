"""The merge function's handler on moto: a command carries out its merge and queues its sweep; a body that is not
a merge command fails (so it reaches MergeDlq) without holding up the rest of the batch."""

from __future__ import annotations

from typing import Any

from functions.merge import handler
from shared.adapters.command_queue import CommandQueue
from shared.adapters.event_publisher import EventPublisher
from shared.adapters.merge_store import MergeStore
from shared.merging import SWEEP_DELAY_SECONDS, MergeCommand, Merges, MergeStatus
from shared.models.identity import IdentityKind
from tests.unit.ingest.conftest import Aws
from tests.unit.merge.test_merge_store import agent_evidence, two_customers


class Context:
    function_name = "MergeFunction"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:MergeFunction"
    aws_request_id = "req-1"


def record(index: int, body: str) -> dict[str, Any]:
    return {"messageId": f"sqs-{index}", "receiptHandle": f"rh-{index}", "body": body, "attributes": {},
            "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:MergeQueue", "awsRegion": "us-east-1"}  # fmt: skip


def test_a_command_is_carried_out_and_its_sweep_queued_while_a_bad_body_fails(aws: Aws) -> None:
    merge_queue = aws.sqs.create_queue(QueueName="hilo-merges")["QueueUrl"]
    store = MergeStore(aws.table, aws.dynamodb)
    merges = Merges(store, CommandQueue(merge_queue, aws.sqs),
                    EventPublisher(aws.queue_url, aws.bus, aws.sqs, aws.events), aws.clock)  # fmt: skip
    d, c, _, phone_c = two_customers(aws)
    requested = merges.request(c, d, agent_evidence())
    (queued,) = aws.sqs.receive_message(QueueUrl=merge_queue)["Messages"]
    aws.sqs.delete_message(QueueUrl=merge_queue, ReceiptHandle=queued["ReceiptHandle"])
    # When the function gets that command next to a body that is not a command
    response = handler.handle({"Records": [record(0, "{not json"), record(1, queued["Body"])]}, Context(), merges)
    # Then only the bad body fails, and the merge is done
    assert response["batchItemFailures"] == [{"itemIdentifier": "sqs-0"}]
    done = store.get_record(d, requested.merge_id)
    assert done is not None
    assert done.status == MergeStatus.MERGED
    assert store.find_customer_id(IdentityKind.PHONE, phone_c) == d
    # and the same command, as a sweep, waits on the queue for its delay
    attributes = aws.sqs.get_queue_attributes(QueueUrl=merge_queue, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesDelayed"] == "1"
    assert SWEEP_DELAY_SECONDS > 30  # longer than ingest's timeout (template.yaml)
    assert MergeCommand.model_validate_json(queued["Body"]).sweep is False
    assert "customer.merged" in list(_event_types(aws))


def _event_types(aws: Aws) -> list[str]:
    import json

    types: list[str] = []
    while messages := aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10).get("Messages", []):
        types += [json.loads(message["Body"])["type"] for message in messages]
        for message in messages:
            aws.sqs.delete_message(QueueUrl=aws.queue_url, ReceiptHandle=message["ReceiptHandle"])
    return types
