"""Identifiers a customer gives (IVR digits, Telegram's own contact, web chat form): the rule, and the use case over
in-memory fakes (link, idempotent redelivery, merge suggestion)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from shared.identity import Normaliser
from shared.ingest.linking import Given, given_identities
from shared.ingest.service import IDENTITY_LINKED, MERGE_SUGGESTED, Ingest
from shared.models.common import Channel
from shared.models.identity import IdentityKind
from shared.models.inbound import CallDetails, InboundEnvelope, InboundKind
from shared.models.message import ContactPart
from tests.unit.ingest.support import T0, FakePublisher, FakeRepository, envelope, unique_phone

CEDULA = "1020304050"


def ivr(phone: str, digits: str = CEDULA, call_sid: str | None = None, at: Any = T0) -> InboundEnvelope:
    sid = call_sid or f"CA{secrets.token_hex(16)}"
    call = CallDetails(status="in-progress", digits=digits)
    return envelope(
        InboundKind.CALL,
        channel="voice",
        provider="twilio",
        sender=phone,
        at=at,
        provider_message_id=f"{sid}:digits",
        call=call,
    )


def telegram_contact(phone: str, *, own: bool = True, chat: str | None = None, at: Any = T0) -> InboundEnvelope:
    chat = chat or str(7_000_000_000 + secrets.randbelow(10**9))
    metadata = {"contact_user_id": chat if own else "1", "contact_is_sender": "true" if own else "false"}
    part = ContactPart(name="Mateo", phones=(phone,))
    return envelope(channel="telegram", provider="telegram", sender=chat, at=at, parts=(part,), metadata=metadata)


def webchat(email: str | None = None, phone: str | None = None, session: str | None = None) -> InboundEnvelope:
    metadata = {name: value for name, value in (("email", email), ("phone", phone)) if value}
    return envelope(channel="webchat", provider="hilo", sender=session or f"chs_{secrets.token_urlsafe(16)}",
                    metadata={**metadata, "chat_message_id": "chm_1"})  # fmt: skip


# ------------------------------------------------------------------------------------------ the rule


def test_ivr_digits_are_a_cedula_typed_by_the_caller() -> None:
    # Given a call whose caller typed their ID number in the IVR
    call = ivr(unique_phone(), digits="1020304050")
    # When
    (given,) = given_identities(call, Normaliser("CO"), "CO")
    # Then plain digits in CO are a cédula de ciudadanía, not verified (anyone can type any number)
    identity = given.identity
    assert (identity.kind, identity.lookup_value) == (IdentityKind.NATIONAL_ID, "CO:CC:1020304050")
    assert (identity.verified, identity.source_channel, identity.first_seen) == (False, Channel.VOICE, T0)
    assert given.evidence.provider_message_id == call.provider_message_id
    assert (given.evidence.provider, given.evidence.source, given.evidence.at) == ("twilio", "ivr_digits", T0)


def test_ivr_digits_are_read_as_a_document_of_the_country_the_caller_calls_from() -> None:
    # A company whose default region is Mexico takes a call from Colombia: the digits are a Colombian cédula
    (given,) = given_identities(ivr("+573001234567", digits="1020304050"), Normaliser("MX"), "MX")
    assert given.identity.lookup_value == "CO:CC:1020304050"
    # and a caller whose number names no single country falls back to the default region
    (fallback,) = given_identities(ivr("+80012345678", digits="1020304050"), Normaliser("CO"), "CO")
    assert fallback.identity.lookup_value == "CO:CC:1020304050"


def test_a_telegram_share_of_the_senders_own_contact_is_a_verified_phone() -> None:
    (given,) = given_identities(telegram_contact("+57 300 123 4567"), Normaliser("CO"), "CO")
    assert (given.identity.kind, given.identity.value) == (IdentityKind.PHONE, "+573001234567")
    assert given.identity.verified
    assert given.identity.source_channel == Channel.TELEGRAM
    assert given.evidence.source == "telegram_contact"


def test_someone_elses_contact_on_telegram_gives_nothing() -> None:
    assert given_identities(telegram_contact("+573001234567", own=False), Normaliser("CO"), "CO") == ()


def test_the_email_and_phone_of_a_web_chat_visitor_are_given_unverified() -> None:
    given = given_identities(webchat(email=" Ana@Example.COM", phone="+573001234567"), Normaliser("CO"), "CO")
    assert [(g.identity.kind, g.identity.value, g.identity.verified, g.evidence.source) for g in given] == [
        (IdentityKind.EMAIL, "ana@example.com", False, "webchat_email"),
        (IdentityKind.PHONE, "+573001234567", False, "webchat_phone"),
    ]


@pytest.mark.parametrize(
    "message",
    [
        envelope(channel="sms", provider="twilio"),
        envelope(InboundKind.CALL, channel="voice", provider="twilio"),
        envelope(channel="webchat", provider="hilo", sender="chs_abc"),
        envelope(channel="telegram", provider="telegram", sender="7000000001", metadata={"contact_is_sender": "true"}),
        envelope(InboundKind.ECHO, channel="webchat", provider="hilo", sender="chs_abc", metadata={"email": "a@b.co"}),
    ],
    ids=["sms", "call-without-digits", "webchat-without-contact", "telegram-without-contact-part", "echo"],
)
def test_ordinary_messages_give_nothing(message: InboundEnvelope) -> None:
    assert given_identities(message, Normaliser("CO"), "CO") == ()


@pytest.mark.parametrize(
    ("message", "value"),
    [
        (ivr("+573001234567", digits="12"), "12"),  # too short for a cédula
        (ivr("+573001234567", digits="10203*4050"), "10203*4050"),
        (telegram_contact("+999123456789"), "+999123456789"),  # no such country code
        (webchat(email="ana.at.example.com"), "ana.at.example.com"),
        (webchat(phone="+5730012"), "+5730012"),  # too short to be a number
    ],
    ids=["short-digits", "star-in-digits", "impossible-phone", "not-an-email", "short-phone"],
)
def test_an_invalid_identifier_is_skipped_and_logged_without_its_value(
    message: InboundEnvelope, value: str, caplog: pytest.LogCaptureFixture
) -> None:
    # When
    with caplog.at_level(logging.INFO):
        given = given_identities(message, Normaliser("CO"), "CO")
    # Then it is skipped, the reason is logged by route and kind, and the value appears nowhere in the log
    assert given == ()
    (record,) = [record for record in caplog.records if record.getMessage() == "given identifier skipped"]
    fields = {name: str(getattr(record, name)) for name in ("source", "identity_kind", "reason")}
    assert fields["reason"].startswith("not a valid")
    assert record.provider_message_id == message.provider_message_id
    assert not [text for text in fields.values() if value in text]


def test_an_invalid_identifier_does_not_hide_the_valid_one_next_to_it() -> None:
    given = given_identities(webchat(email="ana@example.com", phone="+5730012"), Normaliser("CO"), "CO")
    assert [g.identity.value for g in given] == ["ana@example.com"]


def test_a_new_source_is_one_function_and_each_identifier_is_given_once() -> None:
    # Given a future source (a CRM id in the metadata) listed alongside one that repeats an identifier
    def crm(message: InboundEnvelope) -> Iterator[Given]:
        if crm_id := message.metadata.get("crm_id"):
            yield Given("crm", IdentityKind.CRM_ID, crm_id, verified=True)

    message = envelope(metadata={"crm_id": "SF-0042"})
    # When
    given = given_identities(message, Normaliser("CO"), "CO", sources=(crm, crm))
    # Then
    assert [(g.identity.kind, g.identity.value, g.evidence.source) for g in given] == [
        (IdentityKind.CRM_ID, "SF-0042", "crm")
    ]


# ------------------------------------------------------------------------------------------ the use case on fakes


def test_an_unclaimed_identifier_is_linked_to_the_sender(
    ingest: Ingest, repo: FakeRepository, publisher: FakePublisher
) -> None:
    # Given a caller Hilo knows by phone
    phone = unique_phone()
    caller = ingest(envelope(channel="sms", provider="twilio", sender=phone))
    # When they type their cédula in the IVR
    call = ivr(phone, at=T0 + timedelta(minutes=1))
    result = ingest(call)
    # Then the cédula points to them, and one event says so
    assert result.customer_id == caller.customer_id
    pointer = repo.pointers[("national_id", f"CO:CC:{CEDULA}")]
    assert pointer.customer_id == caller.customer_id
    assert pointer.linked_by == f"twilio:{call.provider_message_id}"
    assert ("national_id", f"CO:CC:{CEDULA}") in repo.identities[caller.customer_id]
    assert result.event_types == ("call.received", IDENTITY_LINKED)
    linked = publisher.events[-1]
    assert linked.data["identity_kind"] == "national_id"
    assert linked.data["provider_message_id"] == call.provider_message_id
    assert CEDULA not in linked.model_dump_json()


def test_a_redelivery_links_nothing_more_and_republishes_the_same_event(
    ingest: Ingest, repo: FakeRepository, publisher: FakePublisher
) -> None:
    phone = unique_phone()
    ingest(envelope(channel="sms", provider="twilio", sender=phone))
    call = ivr(phone, at=T0 + timedelta(minutes=1))
    results = [ingest(call) for _ in range(3)]
    assert [IDENTITY_LINKED in result.event_types for result in results] == [True, True, True]
    linked_ids = {event.id for event in publisher.events if event.type == IDENTITY_LINKED}
    assert len(linked_ids) == 1
    # a later, different message giving the same cédula again changes nothing and says nothing
    again = ingest(ivr(phone, at=T0 + timedelta(hours=1)))
    assert IDENTITY_LINKED not in again.event_types
    assert len(repo.identities[results[0].customer_id]) == 2  # the phone and the cédula


def test_an_identifier_of_another_customer_is_a_merge_suggestion_not_a_merge(
    ingest: Ingest, repo: FakeRepository, publisher: FakePublisher
) -> None:
    # Given customer D, whose cédula an earlier call attached
    owner = ingest(ivr(unique_phone()))
    # When a new number calls and types the same cédula (three deliveries)
    call = ivr(unique_phone(), at=T0 + timedelta(days=1))
    results = [ingest(call) for _ in range(3)]
    caller = results[0].customer_id
    # Then the cédula stays D's; one suggestion C -> D, its event re-published under one id
    assert caller != owner.customer_id
    assert repo.pointers[("national_id", f"CO:CC:{CEDULA}")].customer_id == owner.customer_id
    (suggestion,) = repo.suggestions.values()
    assert (suggestion.customer_id, suggestion.other_customer_id) == (caller, owner.customer_id)
    assert suggestion.identity_kinds == {IdentityKind.NATIONAL_ID}
    assert suggestion.evidence.provider_message_id == call.provider_message_id
    suggested = [event for event in publisher.events if event.type == MERGE_SUGGESTED]
    assert len({event.id for event in suggested}) == 1
    assert suggested[0].data["other_customer_id"] == owner.customer_id
    # a later message giving it again keeps the first evidence and publishes nothing new
    later = ingest(ivr(call.sender.value, at=T0 + timedelta(days=2)))
    assert MERGE_SUGGESTED not in later.event_types
    assert repo.suggestions[(caller, owner.customer_id)].evidence.provider_message_id == call.provider_message_id


def test_losing_the_claim_to_another_customer_becomes_a_suggestion(
    ingest: Ingest, repo: FakeRepository, publisher: FakePublisher
) -> None:
    # Given D claimed the cédula a moment ago, and C's eventually consistent read does not see it yet
    owner = ingest(ivr(unique_phone()))
    caller = ingest(envelope(channel="sms", provider="twilio", sender=(phone := unique_phone())))
    repo.stale_lookups.add(f"CO:CC:{CEDULA}")
    # When C types the same cédula: C's claim fails on the pointer's condition
    result = ingest(ivr(phone, at=T0 + timedelta(minutes=1)))
    # Then C re-reads consistently and records a suggestion instead of a link
    assert result.customer_id == caller.customer_id
    assert result.event_types == ("call.received", MERGE_SUGGESTED)
    assert repo.pointers[("national_id", f"CO:CC:{CEDULA}")].customer_id == owner.customer_id
    assert list(repo.suggestions) == [(caller.customer_id, owner.customer_id)]
