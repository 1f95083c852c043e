"""The sender function's handler: a batch fails what it cannot do, alone, and stops before its time runs out."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.sender import handler
from shared.models.common import Provider
from tests.unit.outbound.test_sending import World, customer, fake, fake_server, reply, settings, world

__all__ = ["fake", "fake_server", "settings", "world"]


class Context:
    function_name = "SenderMetaFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:SenderMetaFunction"
    aws_request_id = "req-1"

    def __init__(self, remaining_ms: int = 30_000) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def record(index: int, body: str, group: str) -> dict[str, Any]:
    return {"messageId": f"sqs-{index}", "receiptHandle": f"rh-{index}", "body": body, "md5OfBody": "",
            "attributes": {"MessageGroupId": group, "ApproximateReceiveCount": "1"}, "messageAttributes": {},
            "eventSource": "aws:sqs", "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:SendMetaQueue.fifo"}  # fmt: skip


def test_a_bad_body_fails_alone_and_the_other_customers_job_goes(world: World, fake) -> None:
    customer_id, _ = customer(world)
    world.planner.submit(reply(customer_id, "h-1", world))
    job = world.jobs.sent.pop()
    event = {"Records": [record(0, "{not a job", "cus_other"), record(1, job.model_dump_json(), customer_id)]}

    response = handler.handle(event, Context(), world.senders[Provider.META])

    assert response == {"batchItemFailures": [{"itemIdentifier": "sqs-0"}]}
    assert len(fake.requests) == 1


def test_with_too_little_time_left_the_jobs_go_back_unsent(world: World, fake) -> None:
    customer_id, _ = customer(world)
    world.planner.submit(reply(customer_id, "h-2", world))
    job = world.jobs.sent.pop()

    event = {"Records": [record(0, job.model_dump_json(), customer_id)]}

    with pytest.raises(BatchProcessingError):  # every record failed: the whole batch goes back, as Lambda does
        handler.handle(event, Context(5_000), world.senders[Provider.META])

    assert fake.requests == []
