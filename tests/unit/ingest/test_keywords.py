"""Opt-out and opt-in keywords on inbound messages: the consent lands on the profile as the message is ingested,
and a ``consent.changed`` event carries the confirmation; every other message costs nothing more."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.identity import Normaliser
from shared.ingest.service import CONSENT_CHANGED, Ingest
from shared.models.common import Channel
from shared.models.customer import ConsentPurpose, ConsentStatus
from shared.models.outbound import OutboundCommand
from tests.unit.ingest.conftest import Aws
from tests.unit.ingest.support import T0, FakeClock, FakePublisher, FakeRepository, Faults, envelope, unique_phone


def statuses(repo: FakeRepository, customer_id: str) -> dict[tuple[Channel, ConsentPurpose], ConsentStatus]:
    return {(c.channel, c.purpose): c.status for c in repo.profiles[customer_id].consents}


def test_baja_on_whatsapp_opts_out_of_marketing_there_and_says_so(
    ingest: Ingest, repo: FakeRepository, publisher: FakePublisher
) -> None:
    phone = unique_phone()
    first = ingest(envelope(sender=phone, text="Hola"))
    publisher.events.clear()
    result = ingest(envelope(sender=phone, text="Baja.", at=T0 + timedelta(minutes=5)))
    assert statuses(repo, first.customer_id) == {(Channel.WHATSAPP, ConsentPurpose.MARKETING): ConsentStatus.OPTED_OUT}
    (event,) = [event for event in publisher.events if event.type == CONSENT_CHANGED]
    assert (event.data["kind"], event.data["keyword"], event.data["channel"]) == ("opt_out", "BAJA", "whatsapp")
    assert event.data["language"] == "es"
    assert "ALTA" in str(event.data["reply"])
    assert result.event_types == ("message.received", CONSENT_CHANGED)
    # and ALTA later opts back in, the latest choice winning
    ingest(envelope(sender=phone, text="ALTA", at=T0 + timedelta(minutes=9)))
    assert statuses(repo, first.customer_id)[(Channel.WHATSAPP, ConsentPurpose.MARKETING)] == ConsentStatus.OPTED_IN


def test_a_redelivered_keyword_changes_nothing_and_repeats_the_same_event(
    ingest: Ingest, repo: FakeRepository, publisher: FakePublisher
) -> None:
    message = envelope(channel="sms", provider="twilio", text="STOP")
    once = ingest(message)
    consents = repo.profiles[once.customer_id].consents
    ids = [event.id for event in publisher.events if event.type == CONSENT_CHANGED]
    ingest(message)
    assert repo.profiles[once.customer_id].consents == consents
    assert [event.id for event in publisher.events if event.type == CONSENT_CHANGED] == ids * 2
    assert {c.purpose for c in consents} == {ConsentPurpose.MARKETING, ConsentPurpose.TRANSACTIONAL}


@pytest.mark.parametrize("text", ["quiero cancelar mi pedido", "no me den de baja", "Cancelar"])
def test_a_sentence_that_mentions_a_keyword_changes_no_consent(
    ingest: Ingest, repo: FakeRepository, publisher: FakePublisher, text: str
) -> None:
    # "Cancelar" alone answers a bot on WhatsApp ("¿confirmas o cancelas tu cita?"): only SMS reads it as STOP
    result = ingest(envelope(text=text))
    assert repo.profiles[result.customer_id].consents == ()
    assert CONSENT_CHANGED not in publisher.types()


def test_on_dynamodb_a_keyword_costs_two_requests_more_and_other_messages_none(aws: Aws) -> None:
    ingest, store, phone = aws.ingest(), aws.store(), unique_phone()
    customer = ingest(envelope(sender=phone, text="Hola")).customer_id
    faults = Faults().attach(aws.dynamodb)
    ingest(envelope(sender=phone, text="Gracias", at=T0 + timedelta(minutes=1)))
    assert faults.operations == ["GetItem", "UpdateItem", "PutItem"]
    faults.operations.clear()
    ingest(envelope(sender=phone, text="BAJA", at=T0 + timedelta(minutes=2)))
    assert faults.operations == ["GetItem", "UpdateItem", "PutItem", "GetItem", "UpdateItem"]
    profile = store.get_profile(customer)
    assert profile is not None
    assert [(c.channel, c.purpose, c.status, c.source) for c in profile.consents] == [
        (Channel.WHATSAPP, ConsentPurpose.MARKETING, ConsentStatus.OPTED_OUT, "keyword:BAJA")
    ]
    assert profile.version == 2


class Commands:
    def __init__(self) -> None:
        self.sent: list[OutboundCommand] = []

    def send(self, command: OutboundCommand) -> None:
        self.sent.append(command)


def test_the_confirmation_goes_to_the_outbound_queue_on_the_keywords_channel_once_per_keyword(
    repo: FakeRepository, publisher: FakePublisher
) -> None:
    commands = Commands()
    ingest = Ingest(repo, publisher, Normaliser("CO"), FakeClock(), outbound=commands)
    phone = unique_phone()
    ingest(envelope(sender=phone, text="Hola"))
    baja = envelope(sender=phone, text="BAJA", at=T0 + timedelta(minutes=5))

    ingest(baja)
    ingest(baja)  # redelivered

    first, again = commands.sent
    assert first == again  # same key and time: the planner makes it one message
    assert (first.channel, first.to, first.keyword_reply) == (Channel.WHATSAPP, phone, True)
    assert first.actor.kind == "system"
    assert first.requested_at > baja.occurred_at
    assert "ALTA" in first.content.text  # type: ignore[union-attr]


def test_no_confirmation_where_the_provider_answers_the_keyword_itself(
    repo: FakeRepository, publisher: FakePublisher
) -> None:
    commands = Commands()
    ingest = Ingest(repo, publisher, Normaliser("CO"), FakeClock(), outbound=commands)

    ingest(envelope(channel="sms", provider="twilio", text="STOP"))  # Twilio answers STOP on its network

    assert commands.sent == []
