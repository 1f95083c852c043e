"""The use case with the real DynamoDB, SQS and EventBridge adapters, on moto (table keys read from template.yaml)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import InvalidInput
from shared.models.common import Channel
from shared.models.identity import IdentityKind
from shared.models.inbound import InboundEnvelope
from tests.unit.ingest.conftest import Aws
from tests.unit.ingest.support import T0, envelope, every_kind, unique_phone


def test_a_new_customer_is_stored_as_the_data_model_says(aws: Aws) -> None:
    # Given
    phone = unique_phone()
    # When
    result = aws.ingest()(envelope(channel="whatsapp", provider="meta", sender=phone))
    # Then the pointer, profile, identity, conversation, head and entry exist under the documented keys
    keys = {(item["pk"]["S"], item["sk"]["S"]) for item in aws.dynamodb.scan(TableName=aws.table)["Items"]}
    customer = f"CUST#{result.customer_id}"
    assert keys == {
        (f"ID#phone#{phone}", "ID"),
        (customer, "PROFILE"),
        (customer, f"IDENT#whatsapp#{phone}"),
        (customer, f"CONV#{result.conversation_id}"),
        (customer, "HEAD"),
        (customer, f"TL#2026-03-02T15:00:00.000000Z#{result.entry_id}"),
    }
    (conversation,) = aws.items("CONVERSATION")
    assert conversation["gsi2pk"] == {"S": "STATUS#open"}
    assert "expires_at" not in aws.items("TIMELINE")[0]  # the dedup lives as long as the timeline
    assert len(aws.event_ids()) == 3


def test_a_returning_customer_costs_one_read_one_head_update_and_one_put(aws: Aws) -> None:
    from tests.unit.ingest.support import Faults

    phone = unique_phone()
    ingest = aws.ingest()
    first = ingest(envelope(channel="sms", provider="twilio", sender=phone))
    faults = Faults().attach(aws.dynamodb)
    later = ingest(envelope(channel="sms", provider="twilio", sender=phone, at=T0 + timedelta(minutes=5)))
    assert faults.operations == ["GetItem", "UpdateItem", "PutItem"]
    assert later.conversation_id == first.conversation_id


def test_continuity_across_channels_and_a_new_conversation_after_the_window(aws: Aws) -> None:
    phone = unique_phone()
    ingest, store = aws.ingest(), aws.store()
    call = ingest(envelope(channel="voice", provider="twilio", sender=phone, kind="call"))
    photo = ingest(envelope(channel="whatsapp", provider="meta", sender=phone, at=T0 + timedelta(hours=1)))
    mail = ingest(envelope(channel="email", provider="ses", sender="Mateo@Example.com", at=T0 + timedelta(hours=2)))
    aws.clock.advance(timedelta(days=4))
    late = ingest(envelope(channel="sms", provider="twilio", sender=phone, at=T0 + timedelta(days=4)))
    assert photo.conversation_id == call.conversation_id
    assert mail.customer_id != call.customer_id  # an e-mail is another identity until a merge links them
    assert late.conversation_id != call.conversation_id
    assert late.customer_id == call.customer_id
    old, new = sorted(store.conversations(call.customer_id), key=lambda c: c.opened_at)
    assert (old.id, new.id) == (call.conversation_id, late.conversation_id)
    # the old conversation got its live fields back when the head moved on
    assert set(old.channels) == {Channel.VOICE, Channel.WHATSAPP}
    assert old.last_message_at == T0 + timedelta(hours=1)
    assert new.channels == (Channel.SMS,)
    found = store.conversation(call.conversation_id)
    assert found is not None
    assert found.customer_id == call.customer_id


def test_a_late_message_joins_its_conversation_without_moving_the_head_back(aws: Aws) -> None:
    phone = unique_phone()
    ingest, store = aws.ingest(), aws.store()
    first = ingest(envelope(channel="sms", provider="twilio", sender=phone, at=T0 + timedelta(hours=2)))
    late = ingest(envelope(channel="whatsapp", provider="meta", sender=phone, at=T0 + timedelta(hours=1)))
    card = store.get_card(first.customer_id)
    assert card is not None
    assert card.head is not None
    assert late.conversation_id == first.conversation_id
    assert card.head.last_message_at == T0 + timedelta(hours=2)
    assert card.head.channels == {Channel.SMS, Channel.WHATSAPP}


@pytest.mark.parametrize("message", every_kind(), ids=lambda e: f"{e.channel}-{e.kind}")
def test_every_inbound_kind_three_times_in_sequence_is_one_entry(aws: Aws, message: InboundEnvelope) -> None:
    ingest = aws.ingest()
    results = [ingest(message) for _ in range(3)]
    assert len(aws.items("TIMELINE")) == 1
    assert [result.duplicate for result in results] == [False, True, True]
    assert len(set(aws.event_ids())) == 3  # customer.created, conversation.opened, the entry's event


def test_the_same_provider_id_after_seven_days_is_still_one_entry(aws: Aws) -> None:
    message = envelope()
    ingest = aws.ingest()
    ingest(message)
    aws.clock.advance(timedelta(days=7))
    ingest(envelope(sender=message.sender.value, at=T0 + timedelta(days=7)))  # the conversation moved on
    again = ingest(message.model_copy(update={"received_at": T0 + timedelta(days=7)}))
    assert again.duplicate
    assert len(aws.items("TIMELINE")) == 2
    assert len(aws.items("CONVERSATION")) == 2  # the late copy opened nothing


def test_reads_for_the_agent_api(aws: Aws) -> None:
    phone = unique_phone()
    ingest, store = aws.ingest(), aws.store()
    results = [
        ingest(envelope(channel=channel, provider="twilio" if channel == "sms" else "meta", sender=phone,
                        at=T0 + timedelta(minutes=minute), text=f"mensaje {minute}"))
        for minute, channel in enumerate(["sms", "whatsapp", "sms", "whatsapp", "sms"])
    ]  # fmt: skip
    customer = results[0].customer_id
    assert store.find_customer_id(IdentityKind.PHONE, phone) == customer
    assert store.find_customer_id(IdentityKind.PHONE, "+10000000000") is None
    profile = store.get_profile(customer)
    assert profile is not None
    assert {identity.kind for identity in profile.identities} == {IdentityKind.PHONE, IdentityKind.WHATSAPP}
    assert store.get_profile("cus_01KJQH0CC0812Z806NSEERNKWN") is None
    # newest first, two per page, through the cursor
    first = store.timeline(customer, limit=2)
    second = store.timeline(customer, limit=2, cursor=first.cursor)
    third = store.timeline(customer, limit=2, cursor=second.cursor)
    summaries = [stored.entry.summary for page in (first, second, third) for stored in page.entries]
    assert summaries == [f"mensaje {minute}" for minute in (4, 3, 2, 1, 0)]
    assert first.entries[0].message is not None
    assert first.entries[0].message.text == "mensaje 4"
    only_whatsapp = store.timeline(customer, limit=10, channel=Channel.WHATSAPP)
    assert [stored.entry.summary for stored in only_whatsapp.entries] == ["mensaje 3", "mensaje 1"]
    with pytest.raises(InvalidInput):
        store.timeline(customer, cursor="bm90LWEtY3Vyc29y")
    with pytest.raises(InvalidInput):
        store.timeline(results[0].customer_id.replace("cus_0", "cus_1"), cursor=first.cursor)
    assert store.conversation("conv_01KJQH0CC0812Z806NSEERNKWN") is None
