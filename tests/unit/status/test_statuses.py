"""The status function on moto, through its handler: callbacks move outbound messages forward and never back, each
move is announced once, a permanent failure queues the fallback, and callbacks that race the sender are retried."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from shared.delivery_status import ORPHAN_GRACE
from shared.models.common import Channel, Provider
from shared.models.inbound import ClaimCheck
from shared.models.message import DeliveryStatus
from shared.models.outbound import Route
from tests.unit.ingest.conftest import Aws
from tests.unit.ingest.support import T0, Faults, aws_client, envelope
from tests.unit.status.support import callback, customer, send, unsent, wire

SENT, DELIVERED, READ, FAILED = (DeliveryStatus.SENT, DeliveryStatus.DELIVERED, DeliveryStatus.READ,
                                 DeliveryStatus.FAILED)  # fmt: skip


def test_a_message_moves_to_delivered_then_read_and_each_step_is_announced_without_content(aws: Aws) -> None:
    # Given a WhatsApp message the provider accepted
    wired = wire(aws)
    who = customer(aws)
    sent = send(aws, who)
    # When its delivery and read receipts arrive
    assert wired.run(callback(sent, DELIVERED, T0 + timedelta(seconds=3))) == []
    assert wired.run(callback(sent, READ, T0 + timedelta(minutes=2))) == []
    # Then the message went queued → sent → delivered → read, with the provider's instants
    item = wired.item(who.id, sent.timeline_sk)
    assert item is not None
    assert item["status"] == "read"
    assert wired.statuses_of(sent) == ["queued", "sent", "delivered", "read"]
    assert item["status_history"][-1]["at"] == "2026-03-02T15:02:00.000000Z"
    # and each move was published once, with ids and codes but no content or address
    events = wired.events()
    assert [event["type"] for event in events] == ["message.delivered", "message.read"]
    delivered = events[0]
    assert delivered["customer_id"] == who.id
    assert delivered["source"] == "hilo.status"
    assert delivered["occurred_at"].startswith("2026-03-02T15:00:03")
    assert delivered["data"] == {
        "message_id": sent.command.message_id, "customer_id": who.id, "conversation_id": who.conversation_id,
        "channel": "whatsapp", "provider": "meta", "status": "delivered", "purpose": "transactional",
        "template_id": "cita_confirmada", "error_code": None, "error_reason": None, "rejection": None,
        "fallback_message_id": None,
    }  # fmt: skip
    raw = json.dumps(events)
    assert who.phone not in raw
    assert "sábado" not in raw


def test_a_read_receipt_that_overtakes_the_delivery_receipt_wins_and_the_late_one_is_acknowledged(aws: Aws) -> None:
    wired = wire(aws)
    sent = send(aws, customer(aws))
    # When "read" arrives first, then the late "delivered"
    assert wired.run(callback(sent, READ, T0 + timedelta(seconds=9))) == []
    assert wired.run(callback(sent, DELIVERED, T0 + timedelta(seconds=5))) == []
    # Then the message is read, the late receipt changed nothing and was not announced
    assert wired.statuses_of(sent) == ["queued", "sent", "read"]
    assert [event["type"] for event in wired.events()] == ["message.read"]


def test_the_same_callback_twice_is_one_transition_and_one_event(aws: Aws) -> None:
    wired = wire(aws)
    sent = send(aws, customer(aws), channel=Channel.SMS, provider=Provider.TWILIO)
    delivered = callback(sent, DELIVERED, T0 + timedelta(seconds=4))
    # When the provider repeats its callback: the same body again, twice in one batch, and once with its own time
    # (Twilio's callbacks carry none, so the webhook stamps each one when it arrives)
    assert wired.run(delivered) == []
    assert wired.run(delivered, delivered) == []
    assert wired.run(delivered.model_copy(update={"occurred_at": T0 + timedelta(seconds=30)})) == []
    # Then it moved once and was announced once
    assert wired.statuses_of(sent) == ["queued", "sent", "delivered"]
    assert [event["type"] for event in wired.events()] == ["message.delivered"]


def test_a_crash_between_the_write_and_the_event_is_finished_by_the_redelivery(aws: Aws) -> None:
    # Given an events queue that fails the first send (the status is written, the event is not)
    sqs = aws_client("sqs")
    Faults(fail_on={1}).attach(sqs, "sqs")
    wired = wire(aws, events_sqs=sqs)
    sent = send(aws, customer(aws))
    delivered = callback(sent, DELIVERED, T0 + timedelta(seconds=4))
    # When the callback is processed, fails, and SQS delivers it again
    assert wired.run(delivered) == ["sqs-0"]
    assert wired.statuses_of(sent) == ["queued", "sent", "delivered"]
    assert wired.events() == []
    assert wired.run(delivered, receives=2) == []
    # Then the redelivery published the event the first attempt lost; a later provider repeat publishes nothing
    assert wired.run(delivered) == []
    (event,) = wired.events()
    assert event["type"] == "message.delivered"
    assert wired.statuses_of(sent) == ["queued", "sent", "delivered"]


@pytest.mark.parametrize(
    ("channel", "provider", "code", "reason", "rejection"),
    [
        (Channel.SMS, Provider.TWILIO, "30003", "Unreachable destination handset", "other"),
        (Channel.WHATSAPP, Provider.META, "131026", "Message undeliverable", "not_on_channel"),
    ],
)
def test_a_permanent_failure_is_recorded_announced_and_falls_back_to_another_channel(
    aws: Aws, channel: Channel, provider: Provider, code: str, reason: str, rejection: str
) -> None:
    wired = wire(aws)
    who = customer(aws)
    sent = send(aws, who, channel=channel, provider=provider)
    failed_at = T0 + timedelta(seconds=20)
    failed = callback(sent, FAILED, failed_at, error_code=code, error_reason=reason)
    # When the provider reports the failure (twice: a provider retry changes nothing)
    assert wired.run(failed) == []
    assert wired.run(failed) == []
    # Then the message failed with the provider's words, and names the command that replaces it
    (fallback, group), *others = wired.fallbacks()
    assert others == []
    item = wired.item(who.id, sent.timeline_sk)
    assert item is not None
    assert item["status"] == "failed"
    assert item["status_history"][-1] == {"status": "failed", "at": "2026-03-02T15:00:20.000000Z",
                                          "error_code": code, "error_reason": reason}  # fmt: skip
    assert item["outcome_reason"] == rejection
    assert (item["fallback_key"], item["fallback_message_id"]) == (fallback.key, fallback.message_id)
    # and the fallback tries any other channel, for the same customer and case, from the failure's instant
    assert fallback.key == f"{sent.command.key}#fb1"
    assert (fallback.route, fallback.channel, fallback.exclude_channels) == (Route.BEST, None, (channel,))
    assert fallback.fallback_of == sent.command.message_id
    assert (fallback.customer_id, group, fallback.conversation_id) == (who.id, who.id, who.conversation_id)
    assert fallback.requested_at == failed_at
    assert fallback.content == sent.command.content
    # and one message.failed says why and what comes next
    (event,) = wired.events()
    assert event["type"] == "message.failed"
    assert event["data"]["error_code"] == code
    assert event["data"]["rejection"] == rejection
    assert event["data"]["fallback_message_id"] == fallback.message_id


def test_a_failure_of_the_content_itself_tries_no_other_channel(aws: Aws) -> None:
    wired = wire(aws)
    who = customer(aws)
    sent = send(aws, who)
    # When Meta says the template does not exist
    failed = callback(sent, FAILED, T0 + timedelta(seconds=2), error_code="132001", error_reason="Template not found")
    assert wired.run(failed) == []
    # Then the message failed and is announced, but nothing is queued: the same content would fail anywhere
    assert wired.fallbacks() == []
    item = wired.item(who.id, sent.timeline_sk)
    assert item is not None
    assert (item["status"], item["outcome_reason"]) == ("failed", "content")
    assert "fallback_key" not in item
    (event,) = wired.events()
    assert (event["data"]["rejection"], event["data"]["fallback_message_id"]) == ("content", None)


def test_a_failure_with_a_code_nobody_knows_is_recorded_and_announced_without_a_fallback(aws: Aws) -> None:
    wired = wire(aws)
    sent = send(aws, customer(aws))
    assert wired.run(callback(sent, FAILED, T0 + timedelta(seconds=2), error_code="131000")) == []
    assert wired.statuses_of(sent) == ["queued", "sent", "failed"]
    assert wired.fallbacks() == []
    (event,) = wired.events()
    assert (event["type"], event["data"]["rejection"]) == ("message.failed", None)


def test_a_callback_that_beats_the_senders_write_is_retried_until_the_pointer_is_there(aws: Aws) -> None:
    wired = wire(aws)
    who = customer(aws)
    later = unsent(who)
    early = callback(later, DELIVERED, T0 + timedelta(seconds=1))
    # When the delivery receipt comes before the sender recorded the provider's id
    aws.clock.advance(timedelta(seconds=2))
    assert wired.run(early) == ["sqs-0"]
    # Then the record failed (SQS redelivers it); once the pointer is written, the redelivery applies it
    sent = send(aws, who, outbound=later.command, provider_id=later.provider_message_id)
    aws.clock.advance(timedelta(minutes=3))
    assert wired.run(early, receives=2) == []
    assert wired.statuses_of(sent) == ["queued", "sent", "delivered"]
    assert [event["type"] for event in wired.events()] == ["message.delivered"]


def test_an_old_callback_for_a_message_hilo_never_sent_is_acknowledged(
    aws: Aws, caplog: pytest.LogCaptureFixture
) -> None:
    wired = wire(aws)
    who = customer(aws)
    orphan = callback(unsent(who, Channel.SMS, Provider.TWILIO), DELIVERED, T0)
    before = len(aws.items("TIMELINE"))
    # When a callback names a message nobody recorded, and it is older than the grace the sender's write may take
    aws.clock.advance(ORPHAN_GRACE + timedelta(seconds=1))
    # Then it is acknowledged, and nothing is written or announced
    assert wired.run(orphan) == []
    assert len(aws.items("TIMELINE")) == before
    assert wired.events() == []
    # and the log line says what it was, without the provider's id (Telegram's holds the chat)
    (line,) = [vars(record) for record in caplog.records if record.getMessage() == "status record processed"]
    assert (line["result"], line["provider"], line["status"]) == ("orphan", "twilio", "delivered")
    assert orphan.provider_message_id not in json.dumps(line, default=str)


def test_a_queued_callback_moves_nothing_and_reads_nothing(aws: Aws) -> None:
    dynamodb = aws_client("dynamodb")
    faults = Faults().attach(dynamodb)
    wired = wire(aws, dynamodb=dynamodb)
    sent = send(aws, customer(aws), channel=Channel.SMS, provider=Provider.TWILIO)
    assert wired.run(callback(sent, DeliveryStatus.QUEUED, T0)) == []
    assert faults.count() == 0
    assert wired.statuses_of(sent) == ["queued", "sent"]


def test_a_delivered_callback_costs_a_pointer_read_one_write_and_a_merge_check(aws: Aws) -> None:
    dynamodb = aws_client("dynamodb")
    faults = Faults().attach(dynamodb)
    wired = wire(aws, dynamodb=dynamodb)
    sent = send(aws, customer(aws))
    assert wired.run(callback(sent, DELIVERED, T0 + timedelta(seconds=3))) == []
    assert faults.operations == ["GetItem", "UpdateItem", "GetItem"]


def test_poison_fails_alone_and_the_rest_of_the_batch_goes_ahead(aws: Aws) -> None:
    wired = wire(aws)
    sent = send(aws, customer(aws))
    claim = ClaimCheck(correlation_id="req-1", bucket="hilo-payloads", key="claim-checks/x.json", sha256="0" * 64,
                       size_bytes=300_000)  # fmt: skip
    bodies = ["{not json", envelope().model_dump_json(), claim.model_dump_json(),
              callback(sent, DELIVERED, T0 + timedelta(seconds=3)).model_dump_json()]  # fmt: skip
    assert wired.run(*bodies) == ["sqs-0", "sqs-1", "sqs-2"]
    assert wired.statuses_of(sent) == ["queued", "sent", "delivered"]
