"""The agent API's writes with the real DynamoDB, SQS and EventBridge adapters on moto: the items they leave, the
requests they cost (counted with a botocore hook), and exactly-once under a concurrent repeat."""

from __future__ import annotations

import json
from datetime import timedelta

from shared.adapters.event_publisher import EventPublisher
from shared.agent_writes import AgentRequest, AgentWrites, IdentityBody, NoteBody, VisitBody
from shared.identity import Normaliser
from shared.ingest.ports import RequestClaim
from shared.models.common import Channel
from shared.models.identity import IdentityKind
from tests.unit.ingest.conftest import Aws
from tests.unit.ingest.support import T0, Faults, envelope, run_together, unique_phone

CLERK = AgentRequest(agent_id="clerk-7", correlation_id="req-1")
VISIT = VisitBody(store="Unicentro 12", summary="Cambio del televisor; cita el sábado")


def writes(aws: Aws) -> AgentWrites:
    publisher = EventPublisher(aws.queue_url, aws.bus, aws.sqs, aws.events)
    return AgentWrites(aws.store(), publisher, Normaliser("CO"), aws.clock)


def a_caller(aws: Aws, phone: str | None = None) -> tuple[str, str]:
    result = aws.ingest()(envelope("call", channel="voice", provider="twilio", sender=phone or unique_phone()))
    aws.event_ids()  # drain the call's events
    return result.customer_id, result.conversation_id


def test_a_visit_continuing_the_case_costs_four_requests_and_a_repeat_three_without_a_write(aws: Aws) -> None:
    # Given a caller, and a clerk ten minutes later
    customer_id, conversation_id = a_caller(aws)
    aws.clock.advance(timedelta(minutes=10))
    agent = writes(aws)
    dynamodb, sqs, events = (Faults().attach(aws.dynamodb), Faults().attach(aws.sqs, "sqs"),
                             Faults().attach(aws.events, "events"))  # fmt: skip
    # When the visit is recorded
    first = agent.record_visit(customer_id, VISIT, AgentRequest("clerk-7", "req-1", "k-1"))
    # Then: card, claim, head update, entry; one SendMessageBatch and one PutEvents
    assert dynamodb.operations == ["Query", "PutItem", "UpdateItem", "PutItem"]
    assert (sqs.operations, events.operations) == (["SendMessageBatch"], ["PutEvents"])
    assert first.created
    assert first.body["conversation_id"] == conversation_id
    # And when it is sent again: card, the claim refused, the entry read back; nothing written
    dynamodb.operations.clear()
    again = agent.record_visit(customer_id, VISIT, AgentRequest("clerk-7", "req-2", "k-1"))
    assert dynamodb.operations == ["Query", "PutItem", "GetItem"]
    assert not again.created
    assert again.body == first.body
    # The items: one claim, one visit entry (with its store), the head on in_store
    (claim,) = aws.items("AGENT_REQUEST")
    assert claim["sk"] == {"S": "REQ#k-1"}
    assert claim["timeline_sk"]["S"] == f"TL#2026-03-02T15:10:00.000000Z#{first.body['id']}"
    visits = [item for item in aws.items("TIMELINE") if item["kind"]["S"] == "visit"]
    assert len(visits) == 1
    assert visits[0]["store"] == {"S": "Unicentro 12"}
    assert visits[0]["actor"]["M"]["id"] == {"S": "clerk-7"}
    assert "inbound_kind" not in visits[0]
    card = aws.store().get_card(customer_id)
    assert card is not None
    assert card.head is not None
    assert card.head.channels == {Channel.VOICE, Channel.IN_STORE}
    assert card.head.last_inbound_at["in_store"] == T0 + timedelta(minutes=10)
    assert len(set(aws.event_ids())) == 1  # the repeat re-sent the same event id


def test_a_visit_opening_a_conversation_writes_it_with_the_head_and_entry_in_one_transaction(aws: Aws) -> None:
    customer_id, conversation_id = a_caller(aws)
    aws.clock.advance(timedelta(days=4))
    dynamodb = Faults().attach(aws.dynamodb)
    written = writes(aws).record_visit(customer_id, VISIT.model_copy(update={"id": "k-1"}), CLERK)
    assert dynamodb.operations == ["Query", "PutItem", "UpdateItem", "TransactWriteItems"]
    assert written.body["conversation_id"] != conversation_id
    (opened,) = aws.store().conversations(customer_id, limit=1)
    assert opened.id == written.body["conversation_id"]
    assert opened.channels == (Channel.IN_STORE,)
    bodies = [json.loads(message["Body"]) for message in
              aws.sqs.receive_message(QueueUrl=aws.queue_url, MaxNumberOfMessages=10)["Messages"]]  # fmt: skip
    assert [body["type"] for body in bodies] == ["conversation.opened", "visit.recorded"]


def test_a_visit_repeated_concurrently_is_one_entry(threaded_aws: Aws) -> None:
    customer_id, _ = a_caller(threaded_aws)
    threaded_aws.clock.advance(timedelta(minutes=1))
    agent = writes(threaded_aws)
    results = run_together([lambda: agent.record_visit(customer_id, VISIT, AgentRequest("c", "r", "twin"))] * 3)
    assert not [result for result in results if isinstance(result, Exception)], results
    assert sorted(result.created for result in results) == [False, False, True]
    assert len([item for item in threaded_aws.items("TIMELINE") if item["kind"]["S"] == "visit"]) == 1


def test_a_note_costs_three_requests_and_leaves_the_head_alone(aws: Aws) -> None:
    customer_id, conversation_id = a_caller(aws)
    head = aws.store().get_card(customer_id).head  # type: ignore[union-attr]
    aws.clock.advance(timedelta(minutes=1))
    dynamodb = Faults().attach(aws.dynamodb)
    written = writes(aws).add_note(customer_id, NoteBody(text="Llamó otra vez " * 130, channel="voice", id="n"), CLERK)
    assert dynamodb.operations == ["Query", "PutItem", "PutItem"]
    assert written.body["conversation_id"] == conversation_id
    assert aws.store().get_card(customer_id).head == head  # type: ignore[union-attr]
    (note,) = [item for item in aws.items("TIMELINE") if item["kind"]["S"] == "note"]
    assert note["text"]["S"] == ("Llamó otra vez " * 130).strip()
    assert len(note["summary"]["S"]) == 200
    # and the timeline read shows the full text
    page = aws.store().timeline(customer_id)
    assert page.entries[0].extras["text"] == note["text"]["S"]


def test_a_note_on_an_older_conversation_is_checked_with_one_read(aws: Aws) -> None:
    phone = unique_phone()
    customer_id, first = a_caller(aws, phone)
    aws.ingest()(envelope(channel="sms", provider="twilio", sender=phone, at=T0 + timedelta(days=5)))
    store = aws.store()
    assert store.owns_conversation(customer_id, first)
    assert not store.owns_conversation(customer_id, "conv_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2")
    dynamodb = Faults().attach(aws.dynamodb)
    written = writes(aws).add_note(customer_id, NoteBody(text="Nota", conversation_id=first, id="n"), CLERK)
    assert dynamodb.operations == ["Query", "GetItem", "PutItem", "PutItem"]
    assert written.body["conversation_id"] == first


def test_a_link_costs_a_read_and_a_transaction_and_then_finds_the_customer(aws: Aws) -> None:
    customer_id, _ = a_caller(aws)
    dynamodb = Faults().attach(aws.dynamodb)
    written = writes(aws).link_identity(customer_id, IdentityBody(email="Ana@Correo.co"), CLERK)
    assert dynamodb.operations == ["Query", "GetItem", "TransactWriteItems"]
    assert written.created
    known = aws.store().find_customer(IdentityKind.EMAIL, "ana@correo.co")
    assert known is not None
    assert known.customer_id == customer_id
    assert known.linked_by is not None
    assert known.linked_by.startswith("hilo:agent:clerk-7:")
    assert known.created_at == T0
    # the same link again: 200, the same event id, nothing written
    dynamodb.operations.clear()
    again = writes(aws).link_identity(customer_id, IdentityBody(email="ana@correo.co"), CLERK)
    assert dynamodb.operations == ["Query", "GetItem"]
    assert not again.created
    ids = aws.event_ids()
    assert len(ids) == 2
    assert len(set(ids)) == 1


def test_a_claim_is_returned_as_first_stored(aws: Aws) -> None:
    customer_id, _ = a_caller(aws)
    store = aws.store()
    first = RequestClaim(
        key="k", action="visit", occurred_at=T0, entry_id="tl_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2", agent_id="a"
    )
    assert store.claim_request(customer_id, first) is None
    later = RequestClaim(key="k", action="note", occurred_at=T0 + timedelta(hours=1), entry_id="tl_x", agent_id="b")
    assert store.claim_request(customer_id, later) == first
    assert store.timeline_entry(customer_id, T0, first.entry_id) is None
