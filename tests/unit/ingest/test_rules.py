"""The pure rules of ingest: sender identity per channel, ids, continuity, the timeline entry."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import PermanentError
from shared.identity import Normaliser
from shared.ingest.ports import HeadState
from shared.ingest.rules import MessageKeys, can_continue, sender_identity, summary, timeline_record
from shared.models.common import Channel, id_time
from shared.models.conversation import ConversationStatus
from shared.models.identity import IdentityKind
from shared.models.inbound import InboundKind
from shared.models.message import Direction, LocationPart, ReactionPart
from shared.models.timeline import ActorKind, TimelineKind
from tests.unit.ingest.support import T0, envelope

WINDOW = timedelta(hours=72)


@pytest.mark.parametrize(
    ("channel", "provider", "sender", "kind", "lookup_kind", "value"),
    [
        ("sms", "twilio", "+57 300 123 4567", IdentityKind.PHONE, IdentityKind.PHONE, "+573001234567"),
        ("rcs", "twilio", "+573001234567", IdentityKind.PHONE, IdentityKind.PHONE, "+573001234567"),
        ("voice", "twilio", "+573001234567", IdentityKind.PHONE, IdentityKind.PHONE, "+573001234567"),
        ("whatsapp", "meta", "+573001234567", IdentityKind.WHATSAPP, IdentityKind.PHONE, "+573001234567"),
        ("whatsapp", "twilio", "+573001234567", IdentityKind.WHATSAPP, IdentityKind.PHONE, "+573001234567"),
        ("email", "ses", "Mateo.Gomez@Example.COM", IdentityKind.EMAIL, IdentityKind.EMAIL, "mateo.gomez@example.com"),
        ("messenger", "meta", "6543210987654321", IdentityKind.MESSENGER, IdentityKind.MESSENGER, "6543210987654321"),
        ("instagram", "meta", "17841400000000", IdentityKind.INSTAGRAM, IdentityKind.INSTAGRAM, "17841400000000"),
        ("telegram", "telegram", "7000000123", IdentityKind.TELEGRAM, IdentityKind.TELEGRAM, "7000000123"),
        ("webchat", "hilo", "chs_abc123", IdentityKind.WEBCHAT, IdentityKind.WEBCHAT, "chs_abc123"),
    ],
)
def test_the_sender_identity_follows_the_channel(
    channel: str, provider: str, sender: str, kind: IdentityKind, lookup_kind: IdentityKind, value: str
) -> None:
    # Given an envelope from that channel
    inbound = envelope(channel=channel, provider=provider, sender=sender)
    # When
    identity = sender_identity(inbound, Normaliser("CO"), "CO")
    # Then WhatsApp and phones share a lookup key, e-mail is lower-cased, the rest are channel-scoped
    assert (identity.kind, identity.lookup_kind, identity.lookup_value) == (kind, lookup_kind, value)
    assert identity.source_channel == channel
    assert identity.first_seen == inbound.occurred_at
    assert identity.verified is (kind not in (IdentityKind.EMAIL, IdentityKind.WEBCHAT))


@pytest.mark.parametrize(("channel", "sender"), [("voice", "anonymous"), ("sms", "+999123456789"), ("email", "nadie")])
def test_a_sender_that_is_no_identity_is_a_permanent_error_without_the_address(channel: str, sender: str) -> None:
    provider = "ses" if channel == "email" else "twilio"
    with pytest.raises(PermanentError) as raised:
        sender_identity(envelope(channel=channel, provider=provider, sender=sender), Normaliser("CO"), "CO")
    assert sender not in raised.value.message


def test_keys_are_the_same_on_every_delivery_and_distinct_per_message() -> None:
    first = envelope(provider_message_id="wamid.1")
    again = first.model_copy(update={"correlation_id": "another-request", "received_at": T0 + timedelta(days=7)})
    other = envelope(provider_message_id="wamid.2")
    assert MessageKeys.of(first) == MessageKeys.of(again)
    assert MessageKeys.of(first).entry_id != MessageKeys.of(other).entry_id
    assert id_time(MessageKeys.of(first).entry_id) == T0  # sorts with the provider's time


def head(status: ConversationStatus = ConversationStatus.OPEN, last: timedelta = timedelta(0)) -> HeadState:
    return HeadState("conv_x", status, T0, T0 + last, Channel.SMS, frozenset({Channel.SMS}))


@pytest.mark.parametrize(
    ("state", "at", "expected"),
    [
        (None, T0, False),
        (head(), T0 + WINDOW, True),  # exactly at the edge of the window
        (head(), T0 + WINDOW + timedelta(microseconds=1), False),
        (head(ConversationStatus.PENDING), T0 + timedelta(hours=1), True),
        (head(ConversationStatus.RESOLVED), T0 + timedelta(hours=1), False),
        (head(ConversationStatus.CLOSED), T0 + timedelta(hours=1), False),
        (head(last=timedelta(hours=5)), T0 + timedelta(hours=1), True),  # a late message still belongs to it
    ],
)
def test_a_conversation_continues_while_active_and_within_the_window(
    state: HeadState | None, at: object, expected: bool
) -> None:
    assert can_continue(state, at, WINDOW) is expected  # type: ignore[arg-type]


def test_an_echo_is_an_outbound_message_by_our_side() -> None:
    inbound = envelope(InboundKind.ECHO, channel="instagram", provider="meta", sender="17841400000000")
    record = timeline_record(inbound, MessageKeys.of(inbound), "cus_01KJQH0CC0812Z806NSEERNKWN",
                             "conv_01KJQH0CC0812Z806NSEERNKWN")  # fmt: skip
    assert record.message is not None
    assert record.message.direction == Direction.OUTBOUND
    assert record.message.recipient.value == "17841400000000"
    assert record.entry.actor.kind == ActorKind.AGENT


def test_a_call_is_a_call_entry_without_a_message() -> None:
    inbound = envelope(InboundKind.CALL_ENDED, channel="voice", provider="twilio")
    record = timeline_record(inbound, MessageKeys.of(inbound), "cus_01KJQH0CC0812Z806NSEERNKWN",
                             "conv_01KJQH0CC0812Z806NSEERNKWN")  # fmt: skip
    assert record.entry.kind == TimelineKind.CALL
    assert record.message is None
    assert record.extras["call"]["status"] == "completed"


def test_a_message_without_content_cannot_be_ingested() -> None:
    inbound = envelope(parts=())
    with pytest.raises(PermanentError):
        timeline_record(inbound, MessageKeys.of(inbound), "cus_01KJQH0CC0812Z806NSEERNKWN",
                        "conv_01KJQH0CC0812Z806NSEERNKWN")  # fmt: skip


def test_summaries_are_short_single_lines() -> None:
    assert summary(envelope(text="  Hola\n\n  mundo ")) == "Hola mundo"
    assert len(summary(envelope(text="a" * 1000))) == 200
    assert summary(envelope(parts=(ReactionPart(emoji="", target_message_id="m1"),))) == "Reacción eliminada"
    assert summary(envelope(parts=(LocationPart(latitude=4.6, longitude=-74.1),))) == "Ubicación"
    assert summary(envelope(InboundKind.MESSAGE_EDITED, channel="telegram", provider="telegram",
                            sender="7000000123", text="otra")) == "(editado) otra"  # fmt: skip
