"""Merging and unmerging two real profiles on moto: nothing lost, the round trip restores both exactly."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import pytest

from shared.adapters.event_publisher import EventPublisher
from shared.adapters.merge_store import MergeStore
from shared.errors import Conflict
from shared.identity import Normaliser
from shared.ingest.service import Ingest
from shared.merging import MergeCommand, MergeEvidence, Merges, MergeStatus
from shared.models.common import Channel, IdPrefix, new_id
from shared.models.identity import IdentityKind
from shared.models.inbound import InboundKind
from shared.models.timeline import Actor, ActorKind
from tests.unit.ingest.conftest import Aws
from tests.unit.ingest.support import T0, envelope, unique_phone
from tests.unit.ingest.test_linking import ivr

AGENT = Actor(kind=ActorKind.AGENT, id="agente-7")


class RecordingQueue:
    def __init__(self) -> None:
        self.sent: list[tuple[MergeCommand, int]] = []

    def send(self, command: MergeCommand, delay_seconds: int = 0) -> None:
        self.sent.append((command, delay_seconds))

    def drain(self, merges: Merges) -> None:
        """Run every queued command, as the merge function would (sweeps included, ignoring their delay)."""
        while self.sent:
            command, _ = self.sent.pop(0)
            merges.run(command)


def wire(aws: Aws) -> tuple[Merges, MergeStore, RecordingQueue]:
    store = MergeStore(aws.table, aws.dynamodb)
    queue = RecordingQueue()
    publisher = EventPublisher(aws.queue_url, aws.bus, aws.sqs, aws.events)
    return Merges(store, queue, publisher, aws.clock), store, queue


def everything(aws: Aws) -> dict[tuple[str, str], dict[str, Any]]:
    items: dict[tuple[str, str], dict[str, Any]] = {}
    request: dict[str, Any] = {"TableName": aws.table, "ConsistentRead": True}
    while True:
        page = aws.dynamodb.scan(**request)
        for item in page["Items"]:
            # String sets have no order.
            item = {name: {"SS": sorted(value["SS"])} if "SS" in value else value for name, value in item.items()}
            items[(item["pk"]["S"], item["sk"]["S"])] = item
        if "LastEvaluatedKey" not in page:
            return items
        request["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def agent_evidence(at: Any = T0) -> MergeEvidence:
    return MergeEvidence(source="agent", actor=AGENT, reason="Misma persona: lo confirmó por teléfono", at=at)


def two_customers(aws: Aws) -> tuple[str, str, str, str]:
    """D (older): WhatsApp, then SMS, open case. C (newer): a call, then WhatsApp from another number."""
    ingest = aws.ingest()
    phone_d, phone_c = unique_phone(), unique_phone()
    d = ingest(envelope(sender=phone_d, at=T0, text="El televisor llegó roto")).customer_id
    ingest(envelope(channel="sms", provider="twilio", sender=phone_d, at=T0 + timedelta(minutes=5)))
    aws.clock.advance(timedelta(hours=1))
    c = ingest(envelope(InboundKind.CALL, channel="voice", provider="twilio", sender=phone_c,
                        at=T0 + timedelta(hours=1))).customer_id  # fmt: skip
    ingest(envelope(sender=phone_c, at=T0 + timedelta(hours=1, minutes=2), text="Le mando la foto"))
    # C has an attribute and a consent D lacks; D has a display name already.
    aws.dynamodb.update_item(
        TableName=aws.table, Key={"pk": {"S": f"CUST#{c}"}, "sk": {"S": "PROFILE"}},
        UpdateExpression="SET attributes = :a, consents = :c",
        ExpressionAttributeValues={
            ":a": {"M": {"tier": {"S": "gold"}}},
            ":c": {"L": [{"M": {"channel": {"S": "sms"}, "purpose": {"S": "marketing"}, "status": {"S": "opted_out"},
                                "source": {"S": "keyword:BAJA"}, "at": {"S": "2026-03-02T16:00:00.000000Z"}}}]},
        },
    )  # fmt: skip
    assert d != c
    return d, c, phone_d, phone_c


def test_a_merge_puts_everything_on_the_older_profile_and_one_case(aws: Aws) -> None:
    d, c, phone_d, phone_c = two_customers(aws)
    merges, store, queue = wire(aws)
    # When an agent merges them (naming the newer one first)
    record = merges.request(c, d, agent_evidence())
    assert (record.survivor_id, record.absorbed_id, record.status) == (d, c, MergeStatus.MERGING)
    queue.drain(merges)
    # Then both numbers find D, C says where it went, and D holds every entry of both on one case
    assert store.find_customer_id(IdentityKind.PHONE, phone_c) == d
    assert store.find_customer_id(IdentityKind.PHONE, phone_d) == d
    absorbed = store.get_profile(c)
    assert absorbed is not None
    assert absorbed.merged_into == d
    survivor = store.get_profile(d)
    assert survivor is not None
    assert {identity.value for identity in survivor.identities} >= {phone_c, phone_d}
    assert survivor.attributes == {"tier": "gold"}
    assert [(x.channel, x.status) for x in survivor.consents] == [(Channel.SMS, "opted_out")]
    entries = store.timeline(d).entries
    messages = [entry for entry in entries if entry.entry.kind != "note"]
    assert len(messages) == 4
    (case,) = {entry.entry.conversation_id for entry in messages}
    card = store.get_card(d)
    assert card is not None
    assert card.head is not None
    assert card.head.conversation_id == case
    assert card.head.channels == {Channel.WHATSAPP, Channel.SMS, Channel.VOICE}
    assert [entry.entry.summary for entry in entries if entry.entry.kind == "note"] == [
        f"Perfil {c} unido a este cliente (unión hecha por un agente)."
    ]
    done = store.get_record(d, record.merge_id)
    assert done is not None
    assert done.status == MergeStatus.MERGED
    assert done.entries_copied == 2
    # And the agent queue lists D's case once, not C's folded one
    assert [conversation.status for conversation in store.conversations(d)].count("open") == 1


def test_a_message_to_the_absorbed_profile_after_the_merge_lands_on_the_survivor(aws: Aws) -> None:
    d, c, _, phone_c = two_customers(aws)
    merges, store, queue = wire(aws)
    merges.request(d, c, agent_evidence())
    queue.drain(merges)
    later = aws.ingest()(envelope(sender=phone_c, at=T0 + timedelta(hours=2), text="¿Ya tienen la factura?"))
    assert later.customer_id == d
    assert later.conversation_id == store.get_card(d).head.conversation_id  # type: ignore[union-attr]


def test_merge_then_unmerge_restores_both_profiles_exactly(aws: Aws) -> None:
    # Given two profiles and a snapshot of every item in the table
    d, c, phone_d, phone_c = two_customers(aws)
    before = everything(aws)
    merges, store, queue = wire(aws)
    record = merges.request(d, c, agent_evidence())
    queue.drain(merges)
    # When an agent undoes it
    undone = merges.unmerge(d, record.merge_id, AGENT, reason="Eran dos personas", never_merge=True)
    assert undone.status == MergeStatus.UNMERGING
    queue.drain(merges)
    # Then every item that existed before is back exactly as it was, except D's profile version and update time
    after = everything(aws)
    for key, item in before.items():
        restored = dict(after[key])
        if key == (f"CUST#{d}", "PROFILE"):
            assert int(restored.pop("version")["N"]) == int(item["version"]["N"]) + 2
            restored.pop("updated_at")
            item = {name: value for name, value in item.items() if name not in ("version", "updated_at")}
        assert restored == item, key
    # And what is new is only the audit: the merge record, the never-merge rules and one note per merge/unmerge
    new = {key: after[key]["type"]["S"] for key in after.keys() - before.keys()}
    assert sorted(new.values()) == ["MERGE", "NEVER_MERGE", "NEVER_MERGE", "TIMELINE", "TIMELINE", "TIMELINE"]
    assert store.find_customer_id(IdentityKind.PHONE, phone_c) == c
    assert store.find_customer_id(IdentityKind.PHONE, phone_d) == d
    final = store.get_record(d, record.merge_id)
    assert final is not None
    assert final.status == MergeStatus.UNMERGED
    assert final.unmerged_by == AGENT
    # And the rule keeps them apart
    with pytest.raises(Conflict, match="never be merged"):
        merges.request(c, d, agent_evidence())


def test_what_arrived_through_the_absorbed_number_during_the_merge_goes_back_on_unmerge(aws: Aws) -> None:
    d, c, _, phone_c = two_customers(aws)
    merges, store, queue = wire(aws)
    record = merges.request(d, c, agent_evidence())
    queue.drain(merges)
    aws.clock.advance(timedelta(hours=1))
    later = aws.ingest()(envelope(sender=phone_c, at=T0 + timedelta(hours=2), text="Sigo esperando"))
    assert later.customer_id == d
    merges.unmerge(d, record.merge_id, AGENT, reason=None, never_merge=False)
    queue.drain(merges)
    summaries = [entry.entry.summary for entry in store.timeline(c).entries]
    assert any("Sigo esperando" in summary for summary in summaries)
    assert not any("Sigo esperando" in entry.entry.summary for entry in store.timeline(d).entries)


def test_redelivered_and_swept_merge_commands_change_nothing(aws: Aws) -> None:
    d, c, _, _ = two_customers(aws)
    merges, _, queue = wire(aws)
    record = merges.request(d, c, agent_evidence())
    command = queue.sent[0][0]
    queue.drain(merges)
    once = everything(aws)
    merges.run(command)
    merges.run(command.model_copy(update={"sweep": True}))
    twice = everything(aws)
    assert once == twice
    assert record.merge_id in {key[1].removeprefix("MERGE#") for key in twice}


def test_a_busy_or_merged_profile_refuses_another_merge(aws: Aws) -> None:
    d, c, _, _ = two_customers(aws)
    third = aws.ingest()(envelope(sender=unique_phone(), at=T0 + timedelta(hours=3))).customer_id
    merges, _, queue = wire(aws)
    merges.request(d, c, agent_evidence())
    with pytest.raises(Conflict, match="still running"):
        merges.request(d, third, agent_evidence())
    queue.drain(merges)
    with pytest.raises(Conflict, match="was merged into"):
        merges.request(c, third, agent_evidence())
    with pytest.raises(Conflict, match="itself"):
        merges.request(d, d, agent_evidence())


def test_an_ingest_merge_asked_twice_is_one_merge(aws: Aws) -> None:
    d, c, _, _ = two_customers(aws)
    merges, store, _queue = wire(aws)
    merge_id = new_id(IdPrefix.MERGE, at=T0, seed=f"twilio:CA{secrets.token_hex(16)}:digits:merge")
    first = merges.request(c, d, agent_evidence(), merge_id=merge_id)
    again = merges.request(c, d, agent_evidence(), merge_id=merge_id)
    assert first.merge_id == again.merge_id
    assert len(store.records(d)) == 1


def ingest_merging(aws: Aws, merges: Merges, auto_merge: str = "strong") -> Ingest:
    publisher = EventPublisher(aws.queue_url, aws.bus, aws.sqs, aws.events)
    return Ingest(aws.store(), publisher, Normaliser("CO"), aws.clock, merges=merges, auto_merge=auto_merge)


def test_a_message_that_resolved_the_absorbed_profile_before_its_pointers_moved_lands_on_the_survivor(
    aws: Aws,
) -> None:
    d, c, _, phone_c = two_customers(aws)
    merges, store, queue = wire(aws)
    # Given a merge recorded but not carried out yet: phone_c still points at C
    merges.request(d, c, agent_evidence())
    assert store.find_customer_id(IdentityKind.PHONE, phone_c) == c
    # When C's number writes
    late = aws.ingest()(envelope(sender=phone_c, at=T0 + timedelta(hours=1, minutes=5), text="¿Hola?"))
    # Then C's head sends it on to D's case, and carrying out the merge leaves it there, once
    assert late.customer_id == d
    queue.drain(merges)
    texts = [entry.entry.summary for entry in store.timeline(d).entries]
    assert texts.count("¿Hola?") == 1
    assert not any(entry.entry.summary == "¿Hola?" for entry in store.timeline(c).entries)


def test_story_two_the_ivr_cedula_of_a_known_customer_joins_the_new_callers_profile_to_theirs(aws: Aws) -> None:
    # Given D, who gave their cédula on an earlier call
    merges, store, queue = wire(aws)
    ingest = ingest_merging(aws, merges)
    cedula, known_phone, new_phone = "1020304050", unique_phone(), unique_phone()
    d = ingest(ivr(known_phone, digits=cedula)).customer_id
    # When they call from a number Hilo has never seen and type the same cédula
    aws.clock.advance(timedelta(hours=2))
    call = ingest(envelope(InboundKind.CALL, channel="voice", provider="twilio", sender=new_phone,
                           at=T0 + timedelta(hours=2), provider_message_id="CA-new"))  # fmt: skip
    assert call.customer_id != d
    digits = ingest(ivr(new_phone, digits=cedula, call_sid="CA-new", at=T0 + timedelta(hours=2, seconds=20)))
    # Then the new caller's profile is merged into D's, with the cédula as evidence, and D's case has the call
    (record,) = store.records(d)
    assert (record.absorbed_id, record.evidence.source, record.evidence.identity_kinds) == (
        call.customer_id,
        "ivr_digits",
        (IdentityKind.NATIONAL_ID,),
    )
    assert (record.evidence.verified, record.evidence.actor.kind) == (False, ActorKind.CUSTOMER)
    queue.drain(merges)
    assert store.find_customer_id(IdentityKind.PHONE, new_phone) == d
    case = store.get_card(d).head.conversation_id  # type: ignore[union-attr]
    calls = [entry.entry for entry in store.timeline(d, channel=Channel.VOICE).entries]
    assert len(calls) == 3
    assert {entry.conversation_id for entry in calls} == {case}
    # And the same message again changes nothing
    again = ingest(ivr(new_phone, digits=cedula, call_sid="CA-new", at=T0 + timedelta(hours=2, seconds=20)))
    assert again.customer_id == d
    assert again.duplicate
    assert len(store.records(d)) == 1
    assert not queue.sent
    assert digits.customer_id == call.customer_id


@pytest.mark.parametrize("policy", ["off", "verified"])
def test_a_policy_that_does_not_allow_typed_identifiers_leaves_a_suggestion(aws: Aws, policy: str) -> None:
    merges, store, _ = wire(aws)
    ingest = ingest_merging(aws, merges, auto_merge=policy)
    cedula, new_phone = "1020304051", unique_phone()
    d = ingest(ivr(unique_phone(), digits=cedula)).customer_id
    c = ingest(ivr(new_phone, digits=cedula, at=T0 + timedelta(minutes=5))).customer_id
    assert store.records(d) == ()
    assert store.records(c) == ()
    assert [suggestion.other_customer_id for suggestion in store.merge_suggestions(c)] == [d]
    (listed,) = merges.history(c)["suggestions"]
    assert (listed["other_customer_id"], listed["identity_kinds"], listed["source"]) == (
        d,
        ["national_id"],
        "ivr_digits",
    )


def test_a_never_merge_rule_stops_the_automatic_merge_and_its_suggestion(aws: Aws) -> None:
    merges, store, _ = wire(aws)
    ingest = ingest_merging(aws, merges)
    cedula = "1020304052"
    d = ingest(ivr(unique_phone(), digits=cedula)).customer_id
    c = ingest(envelope(InboundKind.CALL, channel="voice", provider="twilio", sender=(phone := unique_phone()),
                        at=T0 + timedelta(minutes=5))).customer_id  # fmt: skip
    merges.never_merge(c, d, AGENT, "Homónimos")
    ingest(ivr(phone, digits=cedula, at=T0 + timedelta(minutes=6)))
    assert store.records(d) == ()
    assert store.records(c) == ()
    assert store.merge_suggestions(c) == ()
