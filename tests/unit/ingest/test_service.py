"""The ingest use case over in-memory fakes of its ports."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.errors import RetryableError
from shared.identity import Normaliser
from shared.ingest.service import Ingest
from shared.models.identity import IdentityKind
from tests.unit.ingest.support import (
    T0,
    FakeClock,
    FakePublisher,
    FakeRepository,
    envelope,
    every_kind,
    run_together,
    unique_phone,
)


def test_a_first_message_creates_the_customer_and_opens_a_conversation(
    ingest: Ingest, repo: FakeRepository, publisher: FakePublisher
) -> None:
    # Given a person Hilo has never seen
    message = envelope(channel="whatsapp", provider="meta", name="Mateo Gómez")
    # When
    result = ingest(message)
    # Then one profile, one conversation, one entry, three events about the same customer
    assert len(repo.profiles) == len(repo.conversations) == len(repo.entries()) == 1
    assert repo.profiles[result.customer_id].display_name == "Mateo Gómez"
    assert publisher.types() == ["customer.created", "conversation.opened", "message.received"]
    assert {event.customer_id for event in publisher.events} == {result.customer_id}
    assert publisher.events[-1].data["timeline_entry_id"] == result.entry_id
    assert publisher.events[-1].data["parts"] == [{"type": "text", "text": "Hola, el televisor llegó roto"}]
    assert not result.duplicate


def test_a_returning_customer_continues_the_conversation_on_any_channel(
    ingest: Ingest, repo: FakeRepository, publisher: FakePublisher
) -> None:
    phone = unique_phone()
    first = ingest(envelope(channel="voice", provider="twilio", sender=phone, kind="call"))
    later = ingest(envelope(channel="whatsapp", provider="meta", sender=phone, at=T0 + timedelta(hours=71)))
    assert later.customer_id == first.customer_id
    assert later.conversation_id == first.conversation_id
    assert publisher.types()[-1:] == ["message.received"]
    head = repo.heads[first.customer_id]
    assert head.channels == {"voice", "whatsapp"}
    assert head.last_inbound_at["whatsapp"] == T0 + timedelta(hours=71)
    # WhatsApp after a call from the same number: the profile now lists both identities of that phone
    assert {kind for kind, _ in repo.identities[first.customer_id]} == {IdentityKind.PHONE, IdentityKind.WHATSAPP}


def test_after_the_reopen_window_a_new_conversation_opens(ingest: Ingest, repo: FakeRepository,
                                                          publisher: FakePublisher) -> None:  # fmt: skip
    phone = unique_phone()
    first = ingest(envelope(channel="sms", provider="twilio", sender=phone))
    later = ingest(envelope(channel="sms", provider="twilio", sender=phone, at=T0 + timedelta(hours=73)))
    assert later.customer_id == first.customer_id
    assert later.conversation_id != first.conversation_id
    assert publisher.types()[-2:] == ["conversation.opened", "message.received"]
    assert repo.heads[first.customer_id].conversation_id == later.conversation_id


@pytest.mark.parametrize("message", every_kind(), ids=lambda e: f"{e.channel}-{e.kind}")
def test_a_redelivery_writes_nothing_and_republishes_the_same_events(
    message: object, ingest: Ingest, repo: FakeRepository, publisher: FakePublisher
) -> None:
    results = [ingest(message) for _ in range(3)]  # type: ignore[arg-type]
    assert len(repo.entries()) == 1
    assert [result.duplicate for result in results] == [False, True, True]
    assert len({result.conversation_id for result in results}) == 1
    # the same ids every time, so consumers deduplicate
    ids = [event.id for event in publisher.events]
    assert len(set(ids)) == 3
    assert len(ids) == 9


def test_a_crash_between_the_writes_and_the_events_loses_no_event(
    ingest: Ingest, repo: FakeRepository, publisher: FakePublisher
) -> None:
    # Given the fan-out fails after the profile and entry were written
    message = envelope()
    publisher.fail_next = 1
    with pytest.raises(RetryableError):
        ingest(message)
    # When SQS redelivers the record
    result = ingest(message)
    # Then the customer.created and conversation.opened events are not lost: this message created them
    assert result.duplicate
    assert publisher.types() == ["customer.created", "conversation.opened", "message.received"]
    assert len(repo.entries()) == 1


def test_losing_the_race_for_a_new_identity_joins_the_winner(ingest: Ingest, repo: FakeRepository) -> None:
    # Given someone claimed the phone, and our eventually consistent read does not see it yet
    phone = unique_phone()
    winner = ingest(envelope(channel="sms", provider="twilio", sender=phone))
    repo.stale_reads = 1
    # When a WhatsApp message from the same number arrives
    loser = ingest(envelope(channel="whatsapp", provider="meta", sender=phone, at=T0 + timedelta(seconds=1)))
    # Then it joins the existing profile and conversation
    assert loser.customer_id == winner.customer_id
    assert loser.conversation_id == winner.conversation_id
    assert len(repo.profiles) == 1


def test_two_first_messages_at_the_same_instant_make_one_profile(ingest: Ingest, repo: FakeRepository) -> None:
    phone = unique_phone()
    sms = envelope(channel="sms", provider="twilio", sender=phone)
    whatsapp = envelope(channel="whatsapp", provider="meta", sender=phone)
    results = run_together([lambda: ingest(sms), lambda: ingest(whatsapp)])
    assert len({result.customer_id for result in results}) == 1
    assert len(repo.profiles) == 1
    assert len(repo.entries()) == 2


def test_the_same_message_after_seven_days_is_still_one_entry(repo: FakeRepository, publisher: FakePublisher) -> None:
    clock = FakeClock()
    ingest = Ingest(repo, publisher, Normaliser("CO"), clock)
    message = envelope()
    ingest(message)
    clock.advance(timedelta(days=7))
    ingest(envelope(channel="sms", provider="twilio", sender=message.sender.value, at=T0 + timedelta(days=7)))
    again = ingest(message.model_copy(update={"received_at": T0 + timedelta(days=7)}))
    assert again.duplicate
    assert len(repo.entries()) == 2
    assert len(repo.conversations) == 2  # the late copy opened nothing
