"""Statuses of a message whose customer was merged into another after the send: the pointer still names the absorbed
customer, and the update lands on the survivor's copy (the one agents see) as well as on the original (which an
unmerge brings back). Real merges on moto with ``shared.merging`` and ``MergeStore``."""

from __future__ import annotations

from datetime import timedelta

from shared.adapters.profile_store import ProfileStore
from shared.models.common import Channel, Provider
from shared.models.message import DeliveryStatus
from tests.unit.ingest.conftest import Aws
from tests.unit.ingest.support import T0
from tests.unit.merge.test_merge_store import agent_evidence, two_customers
from tests.unit.merge.test_merge_store import wire as wire_merges
from tests.unit.status.support import Customer, Sent, callback, send, wire

DELIVERED, FAILED = DeliveryStatus.DELIVERED, DeliveryStatus.FAILED


def _absorbed_with_a_message(
    aws: Aws, channel: Channel = Channel.WHATSAPP, provider: Provider = Provider.META
) -> tuple[str, str, Sent]:
    """D (older) and C (newer, who gets the message): the message goes to C before anyone merges them."""
    d, c, _, phone_c = two_customers(aws)
    card = ProfileStore(aws.table, aws.dynamodb).get_card(c)
    assert card is not None
    assert card.head is not None
    who = Customer(c, card.head.conversation_id, phone_c)
    sent = send(aws, who, channel=channel, provider=provider, at=T0 + timedelta(hours=1, minutes=5))
    return d, c, sent


def test_a_receipt_for_a_merged_customers_message_updates_the_survivors_copy(aws: Aws) -> None:
    # Given a message sent to C, and then C merged into D
    d, c, sent = _absorbed_with_a_message(aws)
    merges, _, queue = wire_merges(aws)
    merges.request(c, d, agent_evidence())
    queue.drain(merges)
    wired = wire(aws)
    survivors = wired.item(d, sent.timeline_sk)
    assert survivors is not None
    assert survivors["status"] == "sent"  # the merge copied it under D, same key
    # When the delivery receipt comes (its pointer names C)
    assert wired.run(callback(sent, DELIVERED, T0 + timedelta(hours=1, minutes=6))) == []
    # Then D's copy is delivered, and so is C's original (an unmerge would restore it)
    assert wired.statuses_of(sent, d) == ["queued", "sent", "delivered"]
    assert wired.statuses_of(sent, c) == ["queued", "sent", "delivered"]
    # and the event speaks of D, the customer the message belongs to now, and of the case it is on
    (event,) = wired.events()
    assert event["customer_id"] == d
    assert event["data"]["customer_id"] == d
    assert event["data"]["conversation_id"] == survivors["conversation_id"]


def test_a_receipt_during_a_merge_waits_for_the_copy_then_lands_once(aws: Aws) -> None:
    # Given a message sent to C, and a merge of C into D that is recorded but not yet carried out
    d, c, sent = _absorbed_with_a_message(aws)
    merges, _, queue = wire_merges(aws)
    merges.request(c, d, agent_evidence())
    wired = wire(aws)
    delivered = callback(sent, DELIVERED, T0 + timedelta(hours=1, minutes=6))
    # When the receipt comes: C's original takes it, but D has no copy yet, so the record is retried
    assert wired.run(delivered) == ["sqs-0"]
    assert wired.statuses_of(sent, c) == ["queued", "sent", "delivered"]
    assert wired.item(d, sent.timeline_sk) is None
    # Then the merge copies the updated original, and the redelivery finds it there and announces it, once
    queue.drain(merges)
    assert wired.run(delivered, receives=2) == []
    assert wired.statuses_of(sent, d) == ["queued", "sent", "delivered"]
    (event,) = wired.events()
    assert (event["type"], event["customer_id"]) == ("message.delivered", d)


def test_a_failure_after_a_merge_falls_back_for_the_survivor(aws: Aws) -> None:
    d, c, sent = _absorbed_with_a_message(aws, Channel.SMS, Provider.TWILIO)
    merges, _, queue = wire_merges(aws)
    merges.request(c, d, agent_evidence())
    queue.drain(merges)
    wired = wire(aws)
    failed = callback(sent, FAILED, T0 + timedelta(hours=1, minutes=6), error_code="30005", error_reason="Unknown")
    assert wired.run(failed) == []
    # The next channel is tried for D (the FIFO group too), and both copies of the message name the fallback
    ((fallback, group),) = wired.fallbacks()
    assert (fallback.customer_id, group, fallback.exclude_channels) == (d, d, (Channel.SMS,))
    for customer_id in (c, d):
        item = wired.item(customer_id, sent.timeline_sk)
        assert item is not None
        assert (item["status"], item["fallback_message_id"]) == ("failed", fallback.message_id)
