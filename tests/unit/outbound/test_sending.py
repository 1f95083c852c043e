"""The sender on moto's DynamoDB against the fake provider server: one provider call per message, the answer recorded
with its pointer, a permanent refusal failed and replaced on the next channel, a transient one retried by SQS.

The planner decides the message (as in production); the send queues, the fallback queue and the events are recorded
in memory (ports with adapters of their own), so each step can be driven by hand.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.adapters.dynamodb import from_item
from shared.adapters.outbound_store import OutboundStore
from shared.adapters.profile_store import timeline_sk
from shared.adapters.senders import client_for
from shared.delivery_status import failure_event
from shared.errors import RetryableError
from shared.models.common import Channel, Provider
from shared.models.outbound import OutboundCommand, SendJob
from shared.models.timeline import Actor, ActorKind
from shared.outbound.catalog import shipped_catalog
from shared.outbound.planning import Outbound
from shared.outbound.sending import Sender, Sent
from shared.outbound.wiring import sendable_channels
from shared.settings import Settings
from tests.unit.ingest.conftest import Aws
from tests.unit.ingest.support import FakePublisher, envelope, unique_phone
from tests.unit.senders.conftest import fake, fake_server, settings

__all__ = ["fake", "fake_server", "settings"]  # the senders' fake provider server and settings


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, item: Any) -> None:
        self.sent.append(item)


class NoTimers:
    def schedule(self, *_: Any, **__: Any) -> None:
        raise AssertionError("nothing here is deferred")


class World:
    """A planner and one sender per provider, sharing the table; jobs and fallbacks wait until ``run``."""

    def __init__(self, aws: Aws, settings: Settings) -> None:
        self.aws = aws
        self.jobs, self.fallbacks, self.events = Recorder(), Recorder(), FakePublisher()
        store = OutboundStore(aws.table, aws.dynamodb)
        self.store = store
        self.planner = Outbound(store, self.jobs, NoTimers(), shipped_catalog(), sendable_channels(settings),
                                aws.clock)  # fmt: skip
        self.senders = {
            provider: Sender(
                store, client_for(provider, settings), self.fallbacks, self.events, failure_event, aws.clock
            )
            for provider in (Provider.META, Provider.TWILIO)
        }

    def send_all(self) -> list[Sent]:
        """Run every waiting job, and plan every fallback they queue, until nothing is left."""
        done: list[Sent] = []
        while self.jobs.sent or self.fallbacks.sent:
            while self.jobs.sent:
                job: SendJob = self.jobs.sent.pop(0)
                done.append(self.senders[job.provider].run(job))
            while self.fallbacks.sent:
                self.planner.submit(self.fallbacks.sent.pop(0))
        return done

    def item(self, customer_id: str, command: OutboundCommand) -> dict[str, Any]:
        key = {"pk": {"S": f"CUST#{customer_id}"}, "sk": {"S": timeline_sk(command.requested_at, command.entry_id)}}
        return from_item(self.aws.dynamodb.get_item(TableName=self.aws.table, Key=key)["Item"])


@pytest.fixture
def world(aws: Aws, settings: Settings) -> World:
    return World(aws, settings)


def reply(customer_id: str, key: str, world: World, **fields: Any) -> OutboundCommand:
    return OutboundCommand.model_validate({
        "correlation_id": "corr-1", "key": key, "customer_id": customer_id, "requested_at": world.aws.clock(),
        "actor": Actor(kind=ActorKind.AGENT, id="agente-7"), "channel": "whatsapp",
        "content": {"type": "direct", "parts": [{"type": "text", "text": "Ya llegó el repuesto 📦"}]}, **fields,
    })  # fmt: skip


def customer(world: World, phone: str | None = None) -> tuple[str, str]:
    phone = phone or unique_phone()
    return world.aws.ingest()(envelope(sender=phone, at=world.aws.clock(), text="Hola")).customer_id, phone


def test_a_message_reaches_whatsapp_once_and_is_recorded_as_sent_with_its_pointer(world, fake) -> None:
    customer_id, phone = customer(world)
    command = reply(customer_id, "r-1", world)

    world.planner.submit(command)
    assert world.send_all() == [Sent.SENT]

    [request] = fake.requests
    assert (request.provider, request.path) == ("whatsapp", "/v21.0/100000000000001/messages")
    assert request.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": phone[1:],
        "type": "text",
        "text": {"body": "Ya llegó el repuesto 📦", "preview_url": False},
    }
    item = world.item(customer_id, command)
    wamid = request.response["messages"][0]["id"]
    assert (item["status"], item["provider_message_id"]) == ("sent", wamid)
    assert "send_job" not in item
    key = {"pk": {"S": f"MSG#meta#{wamid}"}, "sk": {"S": "MSG"}}
    pointer = world.aws.dynamodb.get_item(TableName=world.aws.table, Key=key)["Item"]
    assert from_item(pointer)["customer_id"] == customer_id


def test_a_duplicate_command_is_one_provider_call(world, fake) -> None:
    customer_id, _ = customer(world)
    command = reply(customer_id, "r-dup", world)

    world.planner.submit(command)
    world.planner.submit(command)  # the producer sent it twice (or SQS delivered it twice)
    assert len(world.jobs.sent) == 2  # the FIFO queue would drop the second inside 5 minutes; here it does not

    assert world.send_all() == [Sent.SENT, Sent.DUPLICATE]
    assert len(fake.requests) == 1
    world.planner.submit(command)  # and long after, once sent, a repeat enqueues nothing
    assert world.jobs.sent == []


def test_a_whatsapp_refusal_falls_back_to_sms_and_the_timeline_says_so(world, fake) -> None:
    customer_id, phone = customer(world)
    fake.fail(phone, "invalid_number", provider="whatsapp", sync=True)
    command = reply(customer_id, "r-fb", world)

    world.planner.submit(command)
    assert world.send_all() == [Sent.REJECTED, Sent.SENT]

    whatsapp, sms = fake.requests
    assert (whatsapp.provider, whatsapp.status) == ("whatsapp", 400)
    assert (sms.provider, sms.body["To"], sms.body["Body"]) == ("twilio", [phone], ["Ya llegó el repuesto 📦"])
    failed = world.item(customer_id, command)
    assert failed["status"] == "failed"
    assert (
        failed["fallback_message_id"]
        == command.fallback(Channel.WHATSAPP, command.requested_at + timedelta(milliseconds=1)).message_id
    )
    assert failed["status_history"][-1]["error_code"] is not None
    fallback = command.fallback(Channel.WHATSAPP, command.requested_at + timedelta(milliseconds=1))
    replacement = world.item(customer_id, fallback)
    assert (replacement["channel"], replacement["status"], replacement["fallback_of"]) == (
        "sms", "sent", command.message_id)  # fmt: skip
    [event] = world.events.events
    assert (event.type, event.data["fallback_message_id"]) == ("message.failed", fallback.message_id)
    assert phone[1:] not in event.model_dump_json()  # events leave the customer's partition: no numbers in them


def test_a_transient_failure_is_left_for_sqs_to_retry_and_then_goes_once(world, fake) -> None:
    customer_id, phone = customer(world)
    fake.fail(phone, "server_error", provider="whatsapp", times=3)  # every attempt of the first delivery
    world.planner.submit(reply(customer_id, "r-503", world))
    job = world.jobs.sent.pop()

    with pytest.raises(RetryableError):
        world.senders[Provider.META].run(job)
    assert world.senders[Provider.META].run(job) == Sent.SENT  # SQS delivers it again

    assert [request.status for request in fake.requests] == [500, 500, 500, 200]


def test_a_reply_costs_three_requests_to_decide_and_two_to_send(world, fake) -> None:
    customer_id, _ = customer(world)
    calls: list[str] = []
    world.aws.dynamodb.meta.events.register("before-call.dynamodb.*", lambda model, **_: calls.append(model.name))

    world.planner.submit(reply(customer_id, "r-cost", world))
    decided = list(calls)
    world.send_all()

    assert decided == ["Query", "GetItem", "PutItem"]  # card, the command's item (a repeat?), the item itself
    assert calls[len(decided) :] == ["GetItem", "TransactWriteItems"]  # still queued?, pointer + sent
