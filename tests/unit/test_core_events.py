"""Core-system events (``POST /v1/events``) through the use case, with the real DynamoDB, SQS and EventBridge
adapters on moto: the customer is found or created once, each sender's id counts once for 8 days, the consents an
event carries reach the profile before the event goes out (never undoing a newer choice), and every broken rule is a
422 naming its field."""

from __future__ import annotations

import dataclasses
import json
import secrets
import urllib.request
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from shared.adapters.core_event_store import CoreEventStore
from shared.adapters.event_publisher import EventPublisher
from shared.core_events import (
    RESERVED_NAMESPACES,
    Accepted,
    CoreEvents,
    Sender,
    consent_changes,
    event_source,
    parse_body,
)
from shared.errors import RetryableError, Unprocessable
from shared.identity import Normaliser
from shared.models.common import Channel, IdPrefix, new_id
from shared.models.customer import Consent, ConsentPurpose, ConsentStatus
from shared.models.events import DomainEvent
from shared.models.identity import IdentityKind
from shared.outbound.policy import Reason, decide
from tests.unit.identity import checkdigits
from tests.unit.ingest.conftest import Aws, _provision, moto_server  # noqa: F401 - a fixture
from tests.unit.ingest.support import T0, Faults, aws_client, envelope, run_together

CRM = Sender(subject="crm", correlation_id="req-1")


@pytest.fixture(scope="module")
def account(request: pytest.FixtureRequest) -> Aws:
    """One account on the atomic moto server for the whole module (provisioning costs most of a second): every test
    names its own people and ids, and reads items by key, so the tests cannot see each other's."""
    endpoint = request.getfixturevalue("moto_server")
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST"), timeout=10)  # noqa: S310
    return _provision(endpoint)


@pytest.fixture
def aws(account: Aws) -> Aws:
    account.clock.at = T0
    published(account)  # what an earlier test left on the queue
    return account


def core_events(aws: Aws, region: str = "CO") -> CoreEvents:
    publisher = EventPublisher(aws.queue_url, aws.bus, aws.sqs, aws.events)
    return CoreEvents(CoreEventStore(aws.table, aws.dynamodb), publisher, Normaliser(region), aws.clock)


def a_body(customer: dict[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    """A valid ``POST /v1/events`` body for a fresh e-mail, at the fake clock's time (T0)."""
    return {
        "id": f"evt-{secrets.token_hex(6)}",
        "type": "document.downloaded",
        "occurred_at": "2026-03-02T10:00:00-05:00",  # T0 in Bogotá
        "customer": customer if customer is not None else {"email": f"lead.{secrets.token_hex(4)}@correo.co"},
        "data": {"document": "guia-credito-hipotecario.pdf", "campaign": "marzo"},
        **fields,
    }


def send(aws: Aws, body: dict[str, Any], sender: Sender = CRM, region: str = "CO") -> Accepted:
    return core_events(aws, region).accept(parse_body(body), sender)


def published(aws: Aws) -> list[DomainEvent]:
    """Every event on EventsQueue since the last call (drained), oldest first."""
    found: list[DomainEvent] = []
    while True:
        messages = aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return found
        found.extend(DomainEvent.model_validate(json.loads(message["Body"])) for message in messages)
        aws.sqs.delete_message_batch(QueueUrl=aws.queue_url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])  # fmt: skip


def own_clients(aws: Aws) -> Aws:
    """The account with clients of its own, for a test that hooks them (``Faults``): the module's stay clean."""
    endpoint = aws.dynamodb.meta.endpoint_url
    return dataclasses.replace(aws, dynamodb=aws_client("dynamodb", endpoint), sqs=aws_client("sqs", endpoint),
                               events=aws_client("events", endpoint))  # fmt: skip


def pointer(aws: Aws, kind: str, value: str) -> str | None:
    known = aws.store().find_customer(IdentityKind(kind), value, consistent=True)
    return known.customer_id if known is not None else None


def item(aws: Aws, pk: str, sk: str) -> dict[str, Any] | None:
    found = aws.dynamodb.get_item(TableName=aws.table, Key={"pk": {"S": pk}, "sk": {"S": sk}}, ConsistentRead=True)
    stored: dict[str, Any] | None = found.get("Item")
    return stored


def marker(aws: Aws, body: dict[str, Any], source: str = "core.crm") -> dict[str, Any] | None:
    return item(aws, f"EVT#{source}#{body['id']}", "EVT")


def lead_id(body: dict[str, Any], source: str = "core.crm") -> str:
    """The id a lead created by this event gets (seeded by the event, so every attempt makes the same one)."""
    return new_id(IdPrefix.CUSTOMER, at=datetime.fromisoformat(body["occurred_at"]), seed=f"{source}:{body['id']}")


def unique_email(name: str = "lead") -> str:
    return f"{name}.{secrets.token_hex(4)}@correo.co"


# ------------------------------------------------------------------------------------------ customers


def test_an_event_for_a_known_customer_by_email_is_published_for_them(aws: Aws) -> None:
    # Given a customer who wrote an e-mail
    address = unique_email("mateo.rojas")
    written = aws.ingest()(envelope(channel="email", provider="ses", sender=address.title()))
    published(aws)
    # When their bank's core system says they downloaded a document, with the address typed its own way
    body = a_body({"email": f"  {address.upper()} "})
    accepted = send(aws, body)
    # Then the event is theirs, as sent, from the CRM's source, under the seeded id
    assert accepted == Accepted(accepted.event_id, written.customer_id, duplicate=False)
    (event,) = published(aws)
    assert (event.id, event.type, event.customer_id) == (accepted.event_id, "document.downloaded", written.customer_id)
    assert (event.source, event.correlation_id) == ("core.crm", "req-1")
    assert event.occurred_at == T0
    assert event.data == body["data"]
    assert event.id == new_id(IdPrefix.EVENT, at=T0, seed=f"core.crm:{body['id']}")
    assert item(aws, f"CUST#{lead_id(body)}", "PROFILE") is None


def test_an_unknown_customer_becomes_a_lead_once_without_a_conversation(aws: Aws) -> None:
    # Given an e-mail Hilo has never seen
    address = unique_email("laura.gomez")
    customer = {"email": address, "name": "Laura Gómez"}
    # When a document download names it
    body = a_body(customer)
    first = send(aws, body)
    # Then a profile is created for it (named, its id seeded by the event), with the identity, and no case
    assert first.customer_id == lead_id(body)
    assert pointer(aws, "email", address) == first.customer_id
    card = aws.store().get_card(first.customer_id)
    assert card is not None
    assert card.profile.display_name == "Laura Gómez"
    assert [(i.kind, i.value) for i in card.profile.identities] == [(IdentityKind.EMAIL, address)]
    assert card.head is None
    assert aws.store().conversations(first.customer_id) == ()
    created, downloaded = published(aws)
    assert (created.type, created.source, created.customer_id) == ("customer.created", "hilo.events_api",
                                                                   first.customer_id)  # fmt: skip
    assert created.data == {"customer_id": first.customer_id}
    assert (downloaded.type, downloaded.customer_id) == ("document.downloaded", first.customer_id)
    # And a second event for the same person finds the lead, and creates nobody
    second = send(aws, a_body(customer, type="webinar.registered"))
    assert second.customer_id == first.customer_id
    assert [event.type for event in published(aws)] == ["webinar.registered"]


def test_a_lead_who_then_writes_is_the_same_customer_and_their_message_opens_the_first_case(aws: Aws) -> None:
    address = unique_email("pedro.perez")
    lead = send(aws, a_body({"email": address}))
    aws.clock.advance(timedelta(hours=2))
    written = aws.ingest()(envelope(channel="email", provider="ses", sender=address, at=T0 + timedelta(hours=2)))
    assert written.customer_id == lead.customer_id
    card = aws.store().get_card(lead.customer_id)
    assert card is not None
    assert card.head is not None
    assert card.head.conversation_id == written.conversation_id


@pytest.mark.parametrize("attempt", range(3))
def test_two_first_events_for_one_email_at_the_same_instant_make_one_customer(aws: Aws, attempt: int) -> None:
    # Given two events (different ids) naming one unknown e-mail, and a twin delivery of the first
    address = unique_email("ana")
    one, two = a_body({"email": address}), a_body({"email": address}, type="form.submitted")
    # When three workers accept them at once (the moto server runs one DynamoDB request at a time, as DynamoDB's
    # conditions are atomic: the race is between our requests)
    results = run_together([lambda: send(aws, one), lambda: send(aws, two), lambda: send(aws, one)])
    # Then one profile (of the two leads the events could have made), one customer.created, one event per id
    assert not [result for result in results if isinstance(result, Exception)]
    assert {result.customer_id for result in results} == {pointer(aws, "email", address)}
    profiles = [item(aws, f"CUST#{lead_id(body)}", "PROFILE") for body in (one, two)]
    assert len([profile for profile in profiles if profile is not None]) == 1
    events = published(aws)
    assert len({event.id for event in events if event.type == "customer.created"}) == 1
    assert {event.type for event in events} == {"customer.created", "document.downloaded", "form.submitted"}
    assert results[0].event_id == results[2].event_id
    assert len({event.id for event in events if event.type != "customer.created"}) == 2


def test_a_lead_newer_than_the_profile_it_turns_out_to_be_can_be_merged_into_it(aws: Aws) -> None:
    """Story 3 meets story 2: a WhatsApp customer's e-mail first reaches Hilo through the CRM (a new lead), then
    the customer gives that e-mail in the chat. The lead, the newer profile, must be absorbable."""
    from shared.adapters.merge_store import MergeStore
    from shared.merging import MergeCommand, MergeEvidence, Merges
    from shared.models.timeline import Actor, ActorKind

    class Queue:
        def send(self, command: Any, delay_seconds: int = 0) -> None: ...

    customer = aws.ingest()(envelope()).customer_id
    aws.clock.advance(timedelta(hours=1))
    lead = send(aws, a_body()).customer_id
    publisher = EventPublisher(aws.queue_url, aws.bus, aws.sqs, aws.events)
    merges = Merges(MergeStore(aws.table, aws.dynamodb), Queue(), publisher, aws.clock)
    evidence = MergeEvidence(
        source="agent", actor=Actor(kind=ActorKind.AGENT, id="a-1"), reason="misma", at=aws.clock()
    )
    record = merges.request(customer, lead, evidence)
    assert (record.survivor_id, record.absorbed_id) == (customer, lead)
    done = merges.run(MergeCommand(merge_id=record.merge_id, survivor_id=customer, action="merge"))
    assert done is not None
    assert str(done.status) == "merged"
    card = MergeStore(aws.table, aws.dynamodb).get_card(customer)
    assert card is not None
    assert {identity.kind for identity in card.profile.identities} >= {"whatsapp", "email"}


# ------------------------------------------------------------------------------------------ once per id


def test_a_repeat_gets_the_same_event_id_and_publishes_nothing_for_one_write(aws: Aws) -> None:
    # Given an accepted event
    body = a_body()
    first = send(aws, body)
    published(aws)
    # When the sender sends it again (its retry, a replay), even with another request id
    hooked = own_clients(aws)
    dynamodb = Faults().attach(hooked.dynamodb)
    again = send(hooked, body, Sender("crm", "req-2"))
    # Then: the same answer, marked a duplicate; one refused conditional put; nothing published
    assert again == Accepted(first.event_id, first.customer_id, duplicate=True)
    assert dynamodb.operations == ["PutItem"]
    assert published(aws) == []


def test_the_same_id_from_another_system_is_another_event(aws: Aws) -> None:
    body = a_body()
    crm = send(aws, body, Sender("crm", "req-1"))
    erp = send(aws, body, Sender("erp", "req-2"))
    assert not erp.duplicate
    assert erp.event_id != crm.event_id
    assert erp.customer_id == crm.customer_id
    events = [event for event in published(aws) if event.type == "document.downloaded"]
    assert [(event.id, event.source) for event in events] == [(crm.event_id, "core.crm"), (erp.event_id, "core.erp")]


def test_an_id_is_remembered_eight_days_then_accepted_as_new(aws: Aws) -> None:
    body = a_body()
    first = send(aws, body)
    # Seven days later it is still a repeat
    aws.clock.advance(timedelta(days=7))
    assert send(aws, body).duplicate
    published(aws)
    # Nine days after the first, the marker has expired (TTL may not have deleted it yet): the id is free again
    aws.clock.advance(timedelta(days=2))
    recycled = {**body, "occurred_at": aws.clock().isoformat(), "type": "document.viewed"}
    later = send(aws, recycled)
    assert not later.duplicate
    assert later.event_id != first.event_id
    assert [(event.id, event.type) for event in published(aws)] == [(later.event_id, "document.viewed")]
    stored = marker(aws, body)
    assert stored is not None
    assert stored["event_id"] == {"S": later.event_id}
    assert int(stored["expires_at"]["N"]) == int((aws.clock() + timedelta(days=8)).timestamp())


def test_a_retry_after_a_failed_publish_publishes_under_the_first_id(aws: Aws) -> None:
    # Given the events queue failing once, after the marker was claimed and the lead created
    body = a_body()
    hooked = own_clients(aws)
    Faults(fail_on={1}).attach(hooked.sqs, "sqs")
    with pytest.raises(RetryableError):
        send(hooked, body)
    assert published(aws) == []
    # When the sender retries, then sends it once more
    retried = send(aws, body, Sender("crm", "req-2"))
    repeat = send(aws, body, Sender("crm", "req-3"))
    # Then the retry published the lead and the event, under the ids the first attempt was given, once
    assert not retried.duplicate
    assert repeat == Accepted(retried.event_id, retried.customer_id, duplicate=True)
    events = published(aws)
    assert [(event.type, event.customer_id) for event in events] == [
        ("customer.created", retried.customer_id),
        ("document.downloaded", retried.customer_id),
    ]
    assert events[1].id == new_id(IdPrefix.EVENT, at=T0, seed=f"core.crm:{body['id']}")
    assert retried.customer_id == lead_id(body)


def test_an_id_given_to_another_type_of_event_is_a_422_naming_the_id(aws: Aws) -> None:
    body = a_body()
    send(aws, body)
    with pytest.raises(Unprocessable) as raised:
        send(aws, {**body, "type": "document.viewed"})
    assert raised.value.details == [{"field": "id"}]


def test_a_known_customer_costs_a_claim_a_read_and_a_mark_then_one_send_each_way(aws: Aws) -> None:
    crm_id = f"C-{secrets.token_hex(4)}"
    lead = send(aws, a_body({"crm_id": crm_id}))
    published(aws)
    hooked = own_clients(aws)
    dynamodb, sqs, events = (Faults().attach(hooked.dynamodb), Faults().attach(hooked.sqs, "sqs"),
                             Faults().attach(hooked.events, "events"))  # fmt: skip
    again = send(hooked, a_body({"crm_id": crm_id}))
    assert again.customer_id == lead.customer_id
    assert dynamodb.operations == ["PutItem", "GetItem", "UpdateItem"]
    assert (sqs.operations, events.operations) == (["SendMessageBatch"], ["PutEvents"])


# ------------------------------------------------------------------------------------------ identifiers


def test_a_phone_is_read_as_ingest_reads_it_in_the_default_region(aws: Aws) -> None:
    # Given a customer who wrote on WhatsApp from +57 300 …
    digits = f"{secrets.randbelow(10**7):07d}"
    written = aws.ingest()(envelope(sender=f"+57300{digits}"))
    # When events name the phone as core systems write it, Colombia being the default region
    forms = [f"+57 300 {digits[:3]} {digits[3:]}", f"300 {digits[:3]} {digits[3:]}", f"(300) {digits[:3]}-{digits[3:]}",
             f"57300{digits}"]  # fmt: skip
    # Then every one is that customer
    assert [send(aws, a_body({"phone": form})).customer_id for form in forms] == [written.customer_id] * 4


def test_a_lead_by_phone_is_keyed_in_e164_and_found_by_any_form(aws: Aws) -> None:
    digits = f"{secrets.randbelow(10**7):07d}"
    accepted = send(aws, a_body({"phone": f"311 {digits[:3]} {digits[3:]}"}))
    assert pointer(aws, "phone", f"+57311{digits}") == accepted.customer_id
    assert send(aws, a_body({"phone": f"+57311{digits}"})).customer_id == accepted.customer_id


def test_a_national_id_with_its_country_and_type_is_checked_and_found_however_it_is_written(aws: Aws) -> None:
    body = f"{10_000_000 + secrets.randbelow(10**7)}"
    rut = body + checkdigits.cl_rut(body)
    dotted = f"{body[:2]}.{body[2:5]}.{body[5:]}-{rut[-1]}"
    created = send(aws, a_body({"national_id": dotted, "country": "CL", "document_type": "RUT"}))
    assert pointer(aws, "national_id", f"CL:RUT:{rut}") == created.customer_id
    found = send(aws, a_body({"national_id": rut, "country": "cl", "document_type": "run"}))
    assert found.customer_id == created.customer_id


def test_a_cedula_without_country_is_read_in_the_default_region(aws: Aws) -> None:
    cedula = f"10{secrets.randbelow(10**8):08d}"
    accepted = send(aws, a_body({"national_id": f"{cedula[0]}.{cedula[1:4]}.{cedula[4:7]}.{cedula[7:]}"}))
    assert pointer(aws, "national_id", f"CO:CC:{cedula}") == accepted.customer_id


def test_a_crm_id_is_its_own_kind_of_identity(aws: Aws) -> None:
    crm_id = f"SF-{secrets.token_hex(4)}"
    accepted = send(aws, a_body({"crm_id": crm_id}))
    assert pointer(aws, "crm_id", crm_id) == accepted.customer_id


# ------------------------------------------------------------------------------------------ consents


def consents_of(aws: Aws, customer_id: str) -> dict[tuple[str, str], tuple[str, str, datetime]]:
    """The profile's consents as stored: (channel, purpose) → (status, source, at)."""
    profile = aws.store().get_profile(customer_id)
    assert profile is not None
    return {(str(c.channel), str(c.purpose)): (str(c.status), c.source, c.at) for c in profile.consents}


class ConsentChanged(BaseModel):
    """``consent.changed``'s ``data`` as a consumer reads it (ingest's shape); extra fields would fail it."""

    model_config = ConfigDict(extra="forbid")

    kind: str
    keyword: str | None
    channel: str
    consents: list[dict[str, str]]
    reply: str | None
    language: str | None
    provider_replies: bool


def announced(events: list[DomainEvent]) -> list[tuple[str, Any, Any]]:
    return [(event.type, event.data.get("channel"), event.data.get("kind")) for event in events]


def test_a_lead_is_born_with_its_forms_consents_so_its_workflow_may_send_marketing(aws: Aws) -> None:
    # Given a web form where the person ticked "acepto recibir comunicaciones" for e-mail and WhatsApp
    body = a_body({"email": unique_email("laura")}, consents=[_consent("email"), _consent("whatsapp")])
    hooked = own_clients(aws)
    dynamodb = Faults().attach(hooked.dynamodb)
    # When the site posts the download
    accepted = send(hooked, body)
    # Then the lead has both opt-ins, learnt from the sender at the event's time, for no extra request
    assert dynamodb.operations == ["PutItem", "GetItem", "TransactWriteItems", "UpdateItem"]
    assert consents_of(aws, accepted.customer_id) == {
        ("email", "marketing"): ("opted_in", "core.crm", T0),
        ("whatsapp", "marketing"): ("opted_in", "core.crm", T0),
    }
    # And the send rules let a marketing e-mail go, which without the consent they refuse
    profile = aws.store().get_profile(accepted.customer_id)
    assert profile is not None
    allowed = decide(profile, Channel.EMAIL, ConsentPurpose.MARKETING, T0, last_inbound_at={}, quiet_hours=None)
    assert allowed.reason == Reason.ALLOWED
    bare = profile.model_copy(update={"consents": ()})
    refused = decide(bare, Channel.EMAIL, ConsentPurpose.MARKETING, T0, last_inbound_at={}, quiet_hours=None)
    assert refused.reason == Reason.NO_MARKETING_OPT_IN
    # And each change is announced before the event that starts the workflow
    events = published(aws)
    assert announced(events) == [
        ("customer.created", None, None),
        ("consent.changed", "email", "opt_in"),
        ("consent.changed", "whatsapp", "opt_in"),
        ("document.downloaded", None, None),
    ]
    email = events[1]
    assert (email.source, email.customer_id, email.occurred_at) == ("hilo.events_api", accepted.customer_id, T0)
    assert email.data["consents"] == [
        {
            "channel": "email",
            "purpose": "marketing",
            "status": "opted_in",
            "source": "core.crm",
            "at": "2026-03-02T15:00:00Z",
        }
    ]


def test_an_older_events_opt_in_never_undoes_a_newer_opt_out_and_a_newer_one_does(aws: Aws) -> None:
    # Given a customer who wrote BAJA by e-mail at T0
    address = unique_email("mateo")
    customer = aws.ingest()(envelope(channel="email", provider="ses", sender=address, text="BAJA")).customer_id
    (keyword,) = [event for event in published(aws) if event.type == "consent.changed"]
    # When, ten minutes later, the CRM posts an event of an hour before whose form opted in to e-mail and WhatsApp
    aws.clock.advance(timedelta(minutes=10))
    hour_before = T0 - timedelta(hours=1)
    send(aws, a_body({"email": address}, occurred_at=hour_before.isoformat(),
                     consents=[_consent("email"), _consent("whatsapp")]))  # fmt: skip
    # Then the e-mail opt-out stands; WhatsApp, where the customer had said nothing, takes the opt-in
    assert consents_of(aws, customer) == {
        ("email", "marketing"): ("opted_out", "keyword:BAJA", T0),
        ("whatsapp", "marketing"): ("opted_in", "core.crm", hour_before),
    }
    events = published(aws)
    assert announced(events) == [("consent.changed", "whatsapp", "opt_in"), ("document.downloaded", None, None)]
    # And consumers read one schema, whoever learnt the consent
    assert set(events[0].data) == set(keyword.data)
    ours, theirs = events[0].payload(ConsentChanged), keyword.payload(ConsentChanged)
    assert set(ours.consents[0]) == set(theirs.consents[0])
    # When a newer event says the customer opted in again by e-mail, that is their latest word
    send(aws, a_body({"email": address}, occurred_at=aws.clock().isoformat(), consents=[_consent("email")]))
    assert consents_of(aws, customer)[("email", "marketing")] == ("opted_in", "core.crm", aws.clock())
    assert announced(published(aws)) == [("consent.changed", "email", "opt_in"), ("document.downloaded", None, None)]


def test_consents_for_a_known_customer_cost_a_read_and_a_write_only_when_they_change_it(aws: Aws) -> None:
    # Given a known customer (a lead of an earlier event)
    crm_id = f"C-{secrets.token_hex(4)}"
    customer = send(aws, a_body({"crm_id": crm_id})).customer_id
    published(aws)
    hooked = own_clients(aws)
    dynamodb = Faults().attach(hooked.dynamodb)
    # When the core system says they opted out of SMS altogether
    stop = [_consent("sms", "opted_out"), _consent("sms", "opted_out", "transactional")]
    body = a_body({"crm_id": crm_id}, consents=stop)
    send(hooked, body)
    # Then: claim, pointer, the profile's consents (consistent), their write, the mark; one event for the channel
    assert dynamodb.operations == ["PutItem", "GetItem", "GetItem", "UpdateItem", "UpdateItem"]
    assert {key: status for key, (status, _, _) in consents_of(aws, customer).items()} == {
        ("sms", "marketing"): "opted_out",
        ("sms", "transactional"): "opted_out",
    }
    (changed, _) = published(aws)
    assert (changed.type, changed.data["kind"]) == ("consent.changed", "opt_out")
    assert [(c["purpose"], c["status"]) for c in changed.payload(ConsentChanged).consents] == [
        ("marketing", "opted_out"),
        ("transactional", "opted_out"),
    ]
    # When another event carries the very same records (a form sent twice, same instant): read, not written
    dynamodb.operations.clear()
    send(hooked, {**body, "id": f"evt-{secrets.token_hex(6)}"})
    assert dynamodb.operations == ["PutItem", "GetItem", "GetItem", "UpdateItem"]
    assert announced(published(aws)) == [("document.downloaded", None, None)]


def test_a_repeat_of_an_event_with_consents_writes_and_announces_nothing(aws: Aws) -> None:
    crm_id = f"C-{secrets.token_hex(4)}"
    customer = send(aws, a_body({"crm_id": crm_id})).customer_id
    body = a_body({"crm_id": crm_id}, consents=[_consent("whatsapp")])
    send(aws, body)
    published(aws)
    profile = aws.store().get_profile(customer)
    assert profile is not None
    hooked = own_clients(aws)
    dynamodb = Faults().attach(hooked.dynamodb)
    again = send(hooked, body, Sender("crm", "req-2"))
    assert again.duplicate
    assert dynamodb.operations == ["PutItem"]
    assert published(aws) == []
    assert aws.store().get_profile(customer) == profile


@pytest.mark.parametrize("known", [True, False], ids=["known customer", "new lead"])
def test_a_retry_after_a_failed_publish_announces_the_consents_again_under_the_same_ids(aws: Aws, known: bool) -> None:
    # Given an event whose consents were applied, then the integration bus failed (the queue got the events)
    crm_id = f"C-{secrets.token_hex(4)}"
    if known:
        send(aws, a_body({"crm_id": crm_id}))
        published(aws)
    body = a_body({"crm_id": crm_id}, consents=[_consent("whatsapp")])
    failing = own_clients(aws)
    Faults(fail_on={1}).attach(failing.events, "events")
    with pytest.raises(RetryableError):
        send(failing, body)
    first = published(aws)
    # When the sender retries
    hooked = own_clients(aws)
    dynamodb = Faults().attach(hooked.dynamodb)
    retried = send(hooked, body, Sender("crm", "req-2"))
    # Then the profile, which has the consent already, is read and not written again
    assert dynamodb.operations == ["PutItem", "GetItem", "GetItem", "UpdateItem"]
    assert consents_of(aws, retried.customer_id) == {("whatsapp", "marketing"): ("opted_in", "core.crm", T0)}
    # And the change is announced again, under the ids of the first attempt (consumers deduplicate on them)
    again = published(aws)
    assert [(event.id, event.type) for event in again] == [(event.id, event.type) for event in first]
    assert "consent.changed" in {event.type for event in again}


def _record(status: ConsentStatus, at: datetime, source: str = "core.crm") -> Consent:
    return Consent(channel=Channel.EMAIL, purpose=ConsentPurpose.MARKETING, status=status, source=source, at=at)


def test_a_change_is_a_new_pair_or_another_status_that_is_not_older_than_the_one_held() -> None:
    opted_in, opted_out = ConsentStatus.OPTED_IN, ConsentStatus.OPTED_OUT
    later = T0 + timedelta(minutes=1)
    assert consent_changes((), [_record(opted_in, T0)], resumed=False) == (_record(opted_in, T0),)
    assert consent_changes([_record(opted_out, later, "keyword:BAJA")], [_record(opted_in, T0)], resumed=False) == ()
    assert consent_changes([_record(opted_out, T0, "keyword:BAJA")], [_record(opted_in, later)], resumed=False) == (
        _record(opted_in, later),
    )
    # The same status again, newer: kept on the profile (the latest word) but nothing changed
    assert consent_changes([_record(opted_in, T0, "keyword:ALTA")], [_record(opted_in, later)], resumed=False) == ()
    # The very record held: this event's own, if an earlier attempt may have written it without announcing it
    assert consent_changes([_record(opted_in, T0)], [_record(opted_in, T0)], resumed=False) == ()
    assert consent_changes([_record(opted_in, T0)], [_record(opted_in, T0)], resumed=True) == (_record(opted_in, T0),)


def test_every_channel_and_purpose_is_accepted_once_each() -> None:
    given = [_consent(str(channel), purpose=str(purpose)) for channel in Channel for purpose in ConsentPurpose][:10]
    body = parse_body(a_body(consents=given))
    assert [(str(c.channel), str(c.purpose)) for c in body.consents] == [(c["channel"], c["purpose"]) for c in given]
    assert parse_body(a_body()).consents == []


def test_a_repeated_consent_is_refused_naming_the_entry_and_the_one_it_repeats() -> None:
    with pytest.raises(Unprocessable) as raised:
        parse_body(a_body(consents=[_consent("email"), _consent("email", "opted_out")]))
    (detail,) = raised.value.details
    assert detail["field"] == "consents.1.purpose"
    assert "consents.0" in detail["problem"]


# ------------------------------------------------------------------------------------------ refusals


def _consent(channel: str, status: str = "opted_in", purpose: str = "marketing") -> dict[str, Any]:
    return {"channel": channel, "purpose": purpose, "status": status}


def _without(name: str) -> dict[str, Any]:
    body = a_body()
    del body[name]
    return body


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_without("id"), "id"),
        (a_body(id=""), "id"),
        (a_body(id="has space"), "id"),
        (a_body(id="x" * 129), "id"),
        (a_body(id=1001), "id"),
        (_without("type"), "type"),
        (a_body(type="Document.Downloaded"), "type"),
        (a_body(type="downloaded"), "type"),
        (a_body(type="message.received"), "type"),
        (a_body(type="customer.created"), "type"),
        (a_body(type="consent.changed"), "type"),
        (_without("occurred_at"), "occurred_at"),
        (a_body(occurred_at="2026-03-02T10:00:00"), "occurred_at"),  # no offset
        (a_body(occurred_at="ayer"), "occurred_at"),
        (a_body(occurred_at=1772463600), "occurred_at"),  # Unix seconds are not ISO-8601
        (a_body(occurred_at="1969-12-31T23:59:59Z"), "occurred_at"),
        (_without("customer"), "customer"),
        (a_body({}), "customer"),
        (a_body({"email": "a@b.co", "phone": "+573001234567"}), "customer"),
        (a_body({"email": "a@b.co", "country": "CO"}), "customer"),
        (a_body({"email": ""}), "customer.email"),
        (a_body({"email": "a@b.co", "facebook": "x"}), "customer.facebook"),
        (a_body(data=[1, 2]), "data"),
        (a_body(data={"blob": "x" * (32 * 1024)}), "data"),
        (a_body(source="crm"), "source"),
        (a_body(consents={"channel": "email"}), "consents"),
        (a_body(consents=[_consent("email")] * 11), "consents"),
        (a_body(consents=[_consent("email"), _consent("fax")]), "consents.1.channel"),
        (a_body(consents=[_consent("email", purpose="promociones")]), "consents.0.purpose"),
        (a_body(consents=[_consent("email", status="yes")]), "consents.0.status"),
        (a_body(consents=[{"channel": "email", "purpose": "marketing"}]), "consents.0.status"),
        (a_body(consents=[{**_consent("email"), "at": "2020-01-01T00:00:00Z"}]), "consents.0.at"),
        (a_body(consents=[{**_consent("email"), "source": "web_form"}]), "consents.0.source"),
        (a_body(consents=[_consent("email"), _consent("sms"), _consent("email", "opted_out")]), "consents.2.purpose"),
    ],
)
def test_a_body_that_breaks_the_contract_is_a_422_naming_the_field(body: dict[str, Any], field: str) -> None:
    with pytest.raises(Unprocessable) as raised:
        parse_body(body)
    assert [detail["field"] for detail in raised.value.details] == [field]


@pytest.mark.parametrize("document", [None, [], "evento", 42])
def test_a_body_that_is_not_an_object_is_a_422(document: Any) -> None:
    with pytest.raises(Unprocessable) as raised:
        parse_body(document)
    assert raised.value.details[0]["field"] == "(body)"


@pytest.mark.parametrize(
    ("customer", "field"),
    [
        ({"phone": "12"}, "customer.phone"),
        ({"email": "nadie"}, "customer.email"),
        ({"national_id": "12.345.678-0", "country": "CL", "document_type": "RUT"}, "customer.national_id"),
        ({"national_id": "1020304050", "country": "CO"}, "customer.national_id"),  # a country without a type
        ({"crm_id": "C-\x07"}, "customer.crm_id"),
    ],
)
def test_an_invalid_identifier_is_a_422_naming_it_and_claims_nothing(
    aws: Aws, customer: dict[str, Any], field: str
) -> None:
    body = a_body(customer)
    with pytest.raises(Unprocessable) as raised:
        send(aws, body)
    assert raised.value.details == [{"field": field}]
    assert all(value not in raised.value.message for value in customer.values() if len(value) > 3)
    assert marker(aws, body) is None


def test_an_event_from_the_future_is_a_422_and_a_few_minutes_of_clock_drift_are_not(aws: Aws) -> None:
    with pytest.raises(Unprocessable) as raised:
        send(aws, a_body(occurred_at=(T0 + timedelta(minutes=6)).isoformat()))
    assert raised.value.details == [{"field": "occurred_at"}]
    assert not send(aws, a_body(occurred_at=(T0 + timedelta(minutes=4)).isoformat())).duplicate


def test_hilo_namespaces_are_the_ones_it_publishes_in() -> None:
    assert {"message", "conversation", "customer", "consent", "visit", "note"} <= RESERVED_NAMESPACES


# ------------------------------------------------------------------------------------------ sources


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("crm", "core.crm"),
        ("dev", "core.dev"),
        ("salesforce-prod", "core.salesforce-prod"),
        ("1h57kf5cpq17m0eml12EXAMPLE", None),  # a Cognito app client id
        ("Xk3Lq9@clients", None),  # an Auth0 client-credentials subject
        ("a#b", None),
        ("x" * 200, None),
    ],
)
def test_every_subject_has_a_source_that_fits_an_event_and_a_key(subject: str, expected: str | None) -> None:
    source = event_source(subject)
    if expected is not None:
        assert source == expected
    else:
        assert source.startswith("core.c-")
        assert event_source(subject.swapcase()) != source  # different subjects, different sources
    assert "#" not in source
    DomainEvent.new("document.downloaded", source=source, correlation_id="r")  # fits EventSource


def test_two_subjects_that_slug_alike_do_not_share_ids() -> None:
    assert event_source("Crm") != event_source("crm") != event_source("CRM")


def test_the_marker_is_written_as_the_data_model_says(aws: Aws) -> None:
    body = a_body()
    accepted = send(aws, body)
    stored = item(aws, f"EVT#core.crm#{body['id']}", "EVT")
    assert stored is not None
    assert stored["type"] == {"S": "EVENT_MARKER"}
    assert stored["event_id"] == {"S": accepted.event_id}
    assert stored["customer_id"] == {"S": accepted.customer_id}
    assert stored["event_type"] == {"S": "document.downloaded"}
    assert datetime.fromisoformat(stored["published_at"]["S"]) == T0
    assert int(stored["expires_at"]["N"]) == int((T0 + timedelta(days=8)).timestamp())
