"""The agent API's write use cases over in-memory fakes: visits continue or open the case, notes never move it,
links claim an identifier or name who holds it, and every request counts once per idempotency key."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from shared.agent_writes import (
    AgentRequest,
    AgentWrites,
    IdentityBody,
    NoteBody,
    VisitBody,
    idempotency_key,
    note_conversation,
)
from shared.errors import Conflict, InvalidInput, NotFound, RetryableError, Unprocessable
from shared.identity import Normaliser
from shared.ingest.ports import HeadState, RequestClaim
from shared.ingest.service import Ingest, IngestResult
from shared.models.conversation import ConversationStatus
from shared.models.customer import CustomerProfile
from shared.models.identity import Identity
from shared.models.timeline import TimelineKind
from tests.unit.ingest.support import (
    T0,
    FakeClock,
    FakePublisher,
    FakeRepository,
    envelope,
    run_together,
    unique_phone,
)

CLERK = AgentRequest(agent_id="clerk-7", correlation_id="req-1")


@dataclass(frozen=True)
class Card:
    profile: CustomerProfile
    head: HeadState | None


class FakeAgentRepository(FakeRepository):
    """``FakeRepository`` plus the agent API's reads and the idempotency claims, with the adapter's rules."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: dict[tuple[str, str], RequestClaim] = {}

    def get_card(self, customer_id: str) -> Card | None:
        with self.lock:
            profile = self.profiles.get(customer_id)
            if profile is None:
                return None
            identities = tuple(self.identities.get(customer_id, {}).values())
            return Card(profile.model_copy(update={"identities": identities}), self.heads.get(customer_id))

    def owns_conversation(self, customer_id: str, conversation_id: str) -> bool:
        found = self.conversations.get(conversation_id)
        return found is not None and found.customer_id == customer_id

    def claim_request(self, customer_id: str, claim: RequestClaim) -> RequestClaim | None:
        with self.lock:
            earlier = self.claims.get((customer_id, claim.key))
            if earlier is None:
                self.claims[(customer_id, claim.key)] = claim
            return earlier

    def timeline_entry(self, customer_id: str, occurred_at: datetime, entry_id: str) -> Any:
        return self.timeline.get(customer_id, {}).get(entry_id)

    def link_identity(self, customer_id: str, identity: Identity, linked_by: str) -> bool:
        linked = super().link_identity(customer_id, identity, linked_by)
        if linked:  # the adapter's pointer remembers when it was written
            key = (str(identity.lookup_kind), identity.lookup_value)
            self.pointers[key] = replace(self.pointers[key], created_at=identity.first_seen)
        return linked

    def of_kind(self, customer_id: str, kind: TimelineKind) -> list[Any]:
        return [record for record in self.timeline.get(customer_id, {}).values() if record.entry.kind == kind]


@pytest.fixture
def repo() -> FakeAgentRepository:
    return FakeAgentRepository()


@pytest.fixture
def publisher() -> FakePublisher:
    return FakePublisher()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
def ingest(repo: FakeAgentRepository, clock: FakeClock) -> Ingest:
    return Ingest(repo, FakePublisher(), Normaliser("CO"), clock, reopen_window=timedelta(hours=72))


@pytest.fixture
def writes(repo: FakeAgentRepository, publisher: FakePublisher, clock: FakeClock) -> AgentWrites:
    return AgentWrites(repo, publisher, Normaliser("CO"), clock, reopen_window=timedelta(hours=72))


def a_caller(ingest: Ingest, phone: str | None = None) -> IngestResult:
    """A customer made by a phone call at T0: one open conversation on voice."""
    return ingest(envelope("call", channel="voice", provider="twilio", sender=phone or unique_phone(), at=T0))


def visit(**fields: Any) -> VisitBody:
    return VisitBody.model_validate({"store": "Unicentro 12", "summary": "Cambio del televisor; cita el sábado",
                                     **fields})  # fmt: skip


# ------------------------------------------------------------------------------------------ visits


def test_a_visit_continues_the_open_case_on_the_in_store_channel(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository, publisher: FakePublisher, clock: FakeClock
) -> None:
    # Given a customer who called an hour ago
    call = a_caller(ingest)
    clock.advance(timedelta(hours=1))
    # When a clerk records their visit
    written = writes.record_visit(call.customer_id, visit(id="k-1"), CLERK)
    # Then it is on the same case, which now has the store among its channels, and the head moved to it
    assert written.created
    assert written.body["conversation_id"] == call.conversation_id
    assert written.body["kind"] == "visit"
    assert written.body["channel"] == "in_store"
    assert written.body["store"] == "Unicentro 12"
    assert written.body["actor"] == {"kind": "agent", "id": "clerk-7"}
    assert written.body["occurred_at"].startswith("2026-03-02T16:00:00")
    head = repo.heads[call.customer_id]
    assert head.conversation_id == call.conversation_id
    assert head.channels == {"voice", "in_store"}
    assert head.last_message_at == T0 + timedelta(hours=1)
    assert publisher.types() == ["visit.recorded"]
    assert publisher.events[0].data["store"] == "Unicentro 12"
    assert publisher.events[0].source == "hilo.agent_api"


def test_a_visit_after_the_reopen_window_opens_a_new_conversation(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository, publisher: FakePublisher, clock: FakeClock
) -> None:
    call = a_caller(ingest)
    clock.advance(timedelta(hours=73))
    written = writes.record_visit(call.customer_id, visit(id="k-1"), CLERK)
    assert written.created
    assert written.body["conversation_id"] != call.conversation_id
    assert repo.conversations[written.body["conversation_id"]].channels == ("in_store",)
    assert repo.heads[call.customer_id].conversation_id == written.body["conversation_id"]
    assert publisher.types() == ["conversation.opened", "visit.recorded"]


def test_a_visit_on_a_resolved_case_opens_a_new_one(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository, clock: FakeClock
) -> None:
    call = a_caller(ingest)
    repo.heads[call.customer_id] = replace(repo.heads[call.customer_id], status=ConversationStatus.RESOLVED)
    clock.advance(timedelta(minutes=5))
    written = writes.record_visit(call.customer_id, visit(id="k-1"), CLERK)
    assert written.body["conversation_id"] != call.conversation_id


def test_the_same_visit_again_writes_nothing_and_answers_with_the_first_entry(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository, publisher: FakePublisher, clock: FakeClock
) -> None:
    # Given a visit recorded without a time (so "now")
    call = a_caller(ingest)
    clock.advance(timedelta(minutes=10))
    first = writes.record_visit(call.customer_id, visit(), replace(CLERK, idempotency_key="k-1"))
    head = repo.heads[call.customer_id]
    # When the browser sends it again a minute later, even with an edited summary
    clock.advance(timedelta(minutes=1))
    again = writes.record_visit(call.customer_id, visit(summary="otra cosa"), replace(CLERK, idempotency_key="k-1"))
    # Then one visit, the first one, and the same events re-published (same ids: consumers deduplicate)
    assert first.created
    assert not again.created
    assert again.body == first.body
    assert len(repo.of_kind(call.customer_id, TimelineKind.VISIT)) == 1
    assert repo.heads[call.customer_id] == head
    assert [event.id for event in publisher.events[:1]] == [event.id for event in publisher.events[1:]]


def test_a_repeated_visit_that_opened_a_conversation_says_so_again(
    ingest: Ingest, writes: AgentWrites, publisher: FakePublisher, clock: FakeClock
) -> None:
    call = a_caller(ingest)
    clock.advance(timedelta(days=5))
    writes.record_visit(call.customer_id, visit(id="k-1"), CLERK)
    writes.record_visit(call.customer_id, visit(id="k-1"), CLERK)
    assert publisher.types() == ["conversation.opened", "visit.recorded"] * 2
    assert len({event.id for event in publisher.events}) == 2


def test_two_identical_visits_at_once_make_one_entry(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository, clock: FakeClock
) -> None:
    call = a_caller(ingest)
    clock.advance(timedelta(minutes=3))
    results = run_together([lambda: writes.record_visit(call.customer_id, visit(id="twin"), CLERK)] * 4)
    assert not [result for result in results if isinstance(result, Exception)]
    assert sorted(result.created for result in results) == [False, False, False, True]
    assert len({result.body["id"] for result in results}) == 1
    assert len(repo.of_kind(call.customer_id, TimelineKind.VISIT)) == 1


def test_a_visit_whose_events_failed_is_finished_by_the_retry(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository, publisher: FakePublisher, clock: FakeClock
) -> None:
    call = a_caller(ingest)
    clock.advance(timedelta(minutes=3))
    publisher.fail_next = 1
    with pytest.raises(RetryableError):
        writes.record_visit(call.customer_id, visit(id="k-1"), CLERK)
    retried = writes.record_visit(call.customer_id, visit(id="k-1"), CLERK)
    assert not retried.created  # written by the first attempt
    assert publisher.types() == ["visit.recorded"]
    assert len(repo.of_kind(call.customer_id, TimelineKind.VISIT)) == 1


def test_a_visit_whose_claim_was_made_but_entry_not_written_is_written_by_the_retry(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository, clock: FakeClock
) -> None:
    # Given a first attempt that died after claiming its key, at 15:05
    call = a_caller(ingest)
    clock.advance(timedelta(minutes=5))
    at = clock()
    original = writes._claim(call.customer_id, "k-1", "visit", at, CLERK)[0]
    # When the agent retries at 15:20
    clock.advance(timedelta(minutes=15))
    retried = writes.record_visit(call.customer_id, visit(id="k-1"), CLERK)
    # Then the visit is written, at the claimed time and with the claimed id
    assert retried.created
    assert retried.body["id"] == original.entry_id
    assert retried.body["occurred_at"].startswith("2026-03-02T15:05:00")


@pytest.mark.parametrize(
    ("request_", "body", "error", "fields"),
    [
        (CLERK, {}, InvalidInput, ["Idempotency-Key", "id"]),
        (replace(CLERK, idempotency_key="a"), {"id": "b"}, Unprocessable, ["Idempotency-Key", "id"]),
        (replace(CLERK, idempotency_key="has space"), {}, Unprocessable, ["Idempotency-Key"]),
        (CLERK, {"id": "k", "occurred_at": "2026-03-02T15:06:00Z"}, Unprocessable, ["occurred_at"]),
    ],
)
def test_a_visit_needs_one_key_and_a_time_that_has_happened(
    ingest: Ingest,
    writes: AgentWrites,
    request_: AgentRequest,
    body: dict[str, Any],
    error: type[Exception],
    fields: list[str],
) -> None:
    call = a_caller(ingest)
    with pytest.raises(error) as raised:
        writes.record_visit(call.customer_id, visit(**body), request_)
    assert [detail["field"] for detail in raised.value.details] == fields  # type: ignore[attr-defined]


def test_a_little_clock_skew_is_accepted(ingest: Ingest, writes: AgentWrites) -> None:
    call = a_caller(ingest)
    written = writes.record_visit(call.customer_id, visit(id="k", occurred_at="2026-03-02T10:04:00-05:00"), CLERK)
    assert written.body["occurred_at"].startswith("2026-03-02T15:04:00")


def test_a_visit_to_nobody_is_404_and_to_a_merged_profile_409(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository
) -> None:
    with pytest.raises(NotFound):
        writes.record_visit("cus_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2", visit(id="k"), CLERK)
    call, other = a_caller(ingest), a_caller(ingest)
    repo.profiles[call.customer_id] = repo.profiles[call.customer_id].model_copy(
        update={"merged_into": other.customer_id}
    )
    with pytest.raises(Conflict):
        writes.record_visit(call.customer_id, visit(id="k"), CLERK)
    assert not repo.claims


def test_a_key_used_for_a_visit_cannot_add_a_note(ingest: Ingest, writes: AgentWrites) -> None:
    call = a_caller(ingest)
    writes.record_visit(call.customer_id, visit(id="k-1"), CLERK)
    with pytest.raises(Unprocessable, match="used for a visit"):
        writes.add_note(call.customer_id, NoteBody(text="nota", id="k-1"), CLERK)


# ------------------------------------------------------------------------------------------ notes


def test_a_note_goes_on_the_open_case_without_moving_it(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository, publisher: FakePublisher, clock: FakeClock
) -> None:
    call = a_caller(ingest)
    head = repo.heads[call.customer_id]
    clock.advance(timedelta(minutes=2))
    text = "Llamó para preguntar por el cambio.\n" + "Detalle " * 300
    written = writes.add_note(call.customer_id, NoteBody(text=text[:2000], channel="voice", id="n-1"), CLERK)
    assert written.created
    assert written.body["conversation_id"] == call.conversation_id
    assert written.body["kind"] == "note"
    assert written.body["channel"] == "voice"
    assert written.body["text"] == text[:2000].strip()
    assert len(written.body["summary"]) == 200
    assert written.body["summary"].endswith("…")
    assert "\n" not in written.body["summary"]
    assert repo.heads[call.customer_id] == head  # the head did not move
    assert publisher.types() == ["note.added"]
    assert publisher.events[0].data["text"] == text[:2000].strip()


def test_a_note_when_no_case_is_open_belongs_to_no_conversation(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository
) -> None:
    call = a_caller(ingest)
    repo.heads[call.customer_id] = replace(repo.heads[call.customer_id], status=ConversationStatus.CLOSED)
    written = writes.add_note(call.customer_id, NoteBody(text="Cliente satisfecho", id="n-1"), CLERK)
    assert written.body["conversation_id"] is None
    assert written.body["channel"] is None
    assert len(repo.conversations) == 1  # no conversation was opened


def test_a_note_on_an_earlier_conversation_of_the_customer(
    ingest: Ingest, writes: AgentWrites, clock: FakeClock
) -> None:
    phone = unique_phone()
    first = a_caller(ingest, phone)
    later = ingest(envelope(channel="sms", provider="twilio", sender=phone, at=T0 + timedelta(days=10)))
    assert later.conversation_id != first.conversation_id
    written = writes.add_note(
        first.customer_id, NoteBody(text="Nota tardía", conversation_id=first.conversation_id, id="n"), CLERK
    )
    assert written.body["conversation_id"] == first.conversation_id


def test_a_note_on_someone_elses_conversation_is_refused(ingest: Ingest, writes: AgentWrites) -> None:
    mine, theirs = a_caller(ingest), a_caller(ingest)
    with pytest.raises(Unprocessable) as raised:
        writes.add_note(mine.customer_id, NoteBody(text="x", conversation_id=theirs.conversation_id, id="n"), CLERK)
    assert raised.value.details == [{"field": "conversation_id"}]


def test_the_same_note_again_is_the_first_one(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository, clock: FakeClock
) -> None:
    call = a_caller(ingest)
    first = writes.add_note(call.customer_id, NoteBody(text="Uno"), replace(CLERK, idempotency_key="n-1"))
    clock.advance(timedelta(seconds=30))
    again = writes.add_note(call.customer_id, NoteBody(text="Uno", id="n-1"), replace(CLERK, idempotency_key="n-1"))
    assert (first.created, again.created) == (True, False)
    assert again.body == first.body
    assert len(repo.of_kind(call.customer_id, TimelineKind.NOTE)) == 1


def test_where_a_note_goes() -> None:
    head = HeadState(conversation_id="conv_1", status=ConversationStatus.PENDING, opened_at=T0, last_message_at=T0,
                     last_channel="sms", channels=frozenset({"sms"}))  # type: ignore[arg-type]  # fmt: skip
    assert note_conversation(head, None) == "conv_1"
    assert note_conversation(head, "conv_0") == "conv_0"
    assert note_conversation(replace(head, status=ConversationStatus.RESOLVED), None) is None
    assert note_conversation(None, None) is None


# ------------------------------------------------------------------------------------------ links


def test_an_unclaimed_email_is_linked(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository, publisher: FakePublisher
) -> None:
    call = a_caller(ingest)
    written = writes.link_identity(
        call.customer_id, IdentityBody(email=" Ana.Maria@Correo.CO ", channel="voice"), CLERK
    )
    assert written.created
    assert written.body["identity"]["kind"] == "email"
    assert written.body["identity"]["value"] == "ana.maria@correo.co"
    assert written.body["identity"]["verified"] is False
    assert repo.pointers[("email", "ana.maria@correo.co")].customer_id == call.customer_id
    assert repo.pointers[("email", "ana.maria@correo.co")].linked_by.startswith("hilo:agent:clerk-7:")
    (event,) = publisher.events
    assert event.type == "customer.identity_linked"
    assert event.data["source"] == "agent"
    assert event.data["source_channel"] == "voice"
    assert "ana.maria" not in event.model_dump_json()  # consumers read the profile, not the event


def test_linking_the_same_identifier_again_is_200_and_the_same_event(
    ingest: Ingest, writes: AgentWrites, publisher: FakePublisher, clock: FakeClock
) -> None:
    call = a_caller(ingest)
    first = writes.link_identity(call.customer_id, IdentityBody(national_id="1.020.304.050"), CLERK)
    clock.advance(timedelta(minutes=1))
    again = writes.link_identity(call.customer_id, IdentityBody(national_id="1020304050"), CLERK)
    assert (first.created, again.created) == (True, False)
    assert again.body["identity"]["value"] == "1020304050"
    assert again.body["identity"]["country"] == "CO"
    assert [event.id for event in publisher.events[:1]] == [event.id for event in publisher.events[1:]]


def test_an_identifier_the_customer_already_had_is_200_without_an_event(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository, publisher: FakePublisher
) -> None:
    phone = unique_phone()
    call = a_caller(ingest, phone)
    written = writes.link_identity(call.customer_id, IdentityBody(phone=phone[3:]), CLERK)  # national format
    assert not written.created
    assert written.body["identity"]["value"] == phone
    assert publisher.events == []
    # the WhatsApp form of the same number joins the profile as one more kind of the same key
    writes.link_identity(call.customer_id, IdentityBody(identity=f"whatsapp:{phone[1:]}"), CLERK)
    assert {kind for kind, _ in repo.identities[call.customer_id]} == {"phone", "whatsapp"}


def test_an_identifier_of_another_customer_is_409_naming_them(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository
) -> None:
    phone = unique_phone()
    theirs, mine = a_caller(ingest, phone), a_caller(ingest)
    with pytest.raises(Conflict) as raised:
        writes.link_identity(mine.customer_id, IdentityBody(phone=phone), CLERK)
    assert raised.value.details[0]["other_customer_id"] == theirs.customer_id
    assert f"POST /v1/customers/{mine.customer_id}/merge" in raised.value.message
    assert phone not in raised.value.message
    assert repo.pointers[("phone", phone)].customer_id == theirs.customer_id  # nothing merged, nothing moved


def test_an_identifier_claimed_by_someone_else_meanwhile_is_409(
    ingest: Ingest, writes: AgentWrites, repo: FakeAgentRepository
) -> None:
    phone = unique_phone()
    theirs, mine = a_caller(ingest, phone), a_caller(ingest)
    repo.stale_lookups.add(phone)  # our read misses their pointer; the claim then fails on it
    with pytest.raises(Conflict) as raised:
        writes.link_identity(mine.customer_id, IdentityBody(phone=phone), CLERK)
    assert raised.value.details[0]["other_customer_id"] == theirs.customer_id


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({"email": "nadie"}, ["email"]),
        ({"national_id": "12.345.678-0", "country": "CL", "document_type": "RUT"}, ["national_id"]),
        ({"identity": "fax:123"}, ["identity"]),
        ({"phone": "+573001234567", "email": "a@b.co"}, ["phone", "email"]),
        ({}, ["phone", "email", "national_id", "identity"]),
    ],
)
def test_a_bad_identifier_is_422_naming_the_field(
    ingest: Ingest, writes: AgentWrites, body: dict[str, str], fields: list[str]
) -> None:
    call = a_caller(ingest)
    with pytest.raises(Unprocessable) as raised:
        writes.link_identity(call.customer_id, IdentityBody.model_validate(body), CLERK)
    assert [detail["field"] for detail in raised.value.details] == fields
    assert "nadie" not in raised.value.message
    assert "12.345.678" not in raised.value.message


def test_linking_to_nobody_is_404(writes: AgentWrites) -> None:
    with pytest.raises(NotFound):
        writes.link_identity("cus_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2", IdentityBody(email="a@b.co"), CLERK)


def test_the_idempotency_key_rules() -> None:
    assert idempotency_key(None, None) is None
    assert idempotency_key(" k-1 ", None) == "k-1"
    assert idempotency_key("k-1", "k-1") == "k-1"
    assert idempotency_key(None, "b") == "b"
    with pytest.raises(Unprocessable):
        idempotency_key("k" * 129, None)
