"""The agent API's writes: an in-store visit, an agent's note, an identifier an agent links to a customer.

Why they work the way they do:

- **A visit is a customer interaction**, like a message: it continues the customer's open case (any channel,
  within the reopen window) or opens one, through ``shared.ingest.service.Continuity``, the one implementation of
  continuity that ingest uses too. Its channel is ``in_store``, its actor the agent who recorded it.
- **A note is the agent's, not the customer's**: it never moves the conversation head and never opens a
  conversation. It goes on the conversation named, else on the head's conversation while that is open or
  pending, else on none.
- **Exactly once per idempotency key.** An agent's request is retried by browsers, proxies and impatient people.
  The first request with a key claims ``REQ#<key>`` (a conditional put that fixes the entry's time and id); a
  repeat gets the claim back and goes on with the same ids, so the timeline entry's conditional write finds the
  first one. The claim is needed because the time defaults to "now", which a repeat cannot recompute; the ids are
  seeded by (customer id, key) like ingest's by the provider's message id. A repeat answers 200 with the entry
  as stored, and re-publishes its events under the same ids (consumers deduplicate), so a request that failed
  between its write and its publish loses nothing when the agent retries.
- **A link is a claim on the identifier's pointer**, conditional like ingest's: nobody holds it → linked (201);
  this customer holds it → 200; another customer holds it → 409 naming them. Nothing is merged here: that is an
  agent's explicit decision (``POST /v1/customers/{id}/merge``).

Nothing here knows about AWS or HTTP; ``ProfileStore`` and ``EventPublisher`` implement the ports.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any, Final, Protocol

from pydantic import BaseModel, ConfigDict, StringConstraints

from shared.customers import FINDERS, entry_json, given_identity
from shared.errors import Conflict, InvalidInput, NotFound, RetryableError, Unprocessable
from shared.identity.normaliser import Normaliser
from shared.ingest.ports import (
    Clock,
    ConversationRepository,
    EventPublisher,
    HeadState,
    KnownIdentity,
    RequestClaim,
    TimelineRecord,
)
from shared.ingest.rules import CONTINUABLE, shorten
from shared.ingest.service import Continuity
from shared.models.common import Channel, ConversationId, IdPrefix, Provider, UtcDatetime, new_id
from shared.models.customer import CustomerProfile
from shared.models.events import DomainEvent
from shared.models.identity import Identity, IdentityKind
from shared.models.message import Message
from shared.models.timeline import Actor, ActorKind, TimelineEntry, TimelineKind

SOURCE: Final = "hilo.agent_api"
#: The header that carries the idempotency key (HTTP API lower-cases header names); a body ``id`` also works.
IDEMPOTENCY_HEADER: Final = "idempotency-key"
#: How far ahead of our clock an ``occurred_at`` may be: devices' clocks drift; the future has not happened.
MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
#: The actions of ``POST /v1/customers/{id}/<action>`` that belong to merging (another use case).
VISIT: Final = "visit"
NOTE: Final = "note"
VISIT_RECORDED: Final = "visit.recorded"
NOTE_ADDED: Final = "note.added"
CONVERSATION_OPENED: Final = "conversation.opened"
IDENTITY_LINKED: Final = "customer.identity_linked"

#: Printable ASCII without spaces, as ``Idempotency-Key`` values are in practice (UUIDs, ULIDs).
IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]
_KEY_FIELDS: Final = [{"field": "Idempotency-Key"}, {"field": "id"}]
_MAX_NOTE: Final = 2000


# ------------------------------------------------------------------------------------------ request bodies


class _Body(BaseModel):
    # Unknown fields are refused: a typo ("sumary") must not be silently dropped from what an agent recorded.
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    #: The idempotency key, when the client cannot send the ``Idempotency-Key`` header.
    id: IdempotencyKey | None = None


class VisitBody(_Body):
    """``POST /v1/customers/{id}/visits``: a clerk who found the customer records their visit."""

    #: The store's name or code.
    store: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    #: What happened ("Cambio del televisor; cita el sábado"): the line agents read on the timeline.
    summary: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    #: When the visit happened, with its offset; now when omitted.
    occurred_at: UtcDatetime | None = None


class NoteBody(_Body):
    """``POST /v1/customers/{id}/notes``: an agent's call note or internal note."""

    text: Annotated[str, StringConstraints(min_length=1, max_length=_MAX_NOTE)]
    #: The case it is about; else the customer's open case, else none.
    conversation_id: ConversationId | None = None
    #: Where it happened, e.g. ``voice`` for a call note; none for an internal note.
    channel: Channel | None = None
    #: When, with its offset; now when omitted (a call note is often written after the call).
    occurred_at: UtcDatetime | None = None


_Raw = Annotated[str, StringConstraints(min_length=1, max_length=320)]


class IdentityBody(_Body):
    """``POST /v1/customers/{id}/identities``: exactly one identifier, in the forms ``GET /v1/customers`` takes."""

    phone: _Raw | None = None
    email: _Raw | None = None
    national_id: _Raw | None = None
    country: Annotated[str, StringConstraints(min_length=2, max_length=2)] | None = None
    document_type: Annotated[str, StringConstraints(min_length=1, max_length=8)] | None = None
    #: ``<channel or kind>:<id>``: ``telegram:912345678``, ``whatsapp:573001234567``, ``crm_id:C-1001``.
    identity: _Raw | None = None
    #: Where the customer gave it (``voice`` on a call, ``in_store`` at the counter), when known.
    channel: Channel | None = None


# ------------------------------------------------------------------------------------------ values and ports


@dataclass(frozen=True)
class AgentRequest:
    """Who asks (the token's subject), the ``Idempotency-Key`` header if any, and the request id for tracing."""

    agent_id: str
    correlation_id: str
    idempotency_key: str | None = None


@dataclass(frozen=True)
class Written:
    """The answer: ``created`` (201) or found as an earlier request left it (200), and the JSON body."""

    created: bool
    body: dict[str, Any]


class EntryView(Protocol):
    """A timeline line as written (``TimelineRecord``) or read back (``ProfileStore``'s ``StoredEntry``)."""

    @property
    def entry(self) -> TimelineEntry: ...

    @property
    def message(self) -> Message | None: ...

    @property
    def inbound_kind(self) -> str | None: ...

    @property
    def extras(self) -> Mapping[str, Any]: ...


class Card(Protocol):
    """A customer's profile (with identities) and head, as ``ProfileStore.get_card`` reads them."""

    @property
    def profile(self) -> CustomerProfile: ...

    @property
    def head(self) -> HeadState | None: ...


class AgentRepository(ConversationRepository, Protocol):
    """Port: the profile table as the agent API's writes use it (docs/data-model.md, patterns 1, 3, 5, 6, 16, 19)."""

    def get_card(self, customer_id: str) -> Card | None:
        """Profile and head in one read; None for an unknown customer."""
        ...

    def owns_conversation(self, customer_id: str, conversation_id: str) -> bool:
        """Whether the conversation is this customer's."""
        ...

    def claim_request(self, customer_id: str, claim: RequestClaim) -> RequestClaim | None:
        """Claim the idempotency key; None when this request claimed it, else the claim as first stored."""
        ...

    def timeline_entry(self, customer_id: str, occurred_at: datetime, entry_id: str) -> EntryView | None:
        """One timeline entry by its key, strongly consistent; None when absent."""
        ...

    def find_customer(
        self, lookup_kind: IdentityKind, lookup_value: str, *, consistent: bool = False
    ) -> KnownIdentity | None:
        """Who owns this identity; None when nobody does."""
        ...

    def link_identity(self, customer_id: str, identity: Identity, linked_by: str) -> bool:
        """Claim an unclaimed identity for the customer; False if someone holds it."""
        ...

    def add_identity(self, customer_id: str, identity: Identity) -> None:
        """List another kind of a lookup key the customer already holds (WhatsApp after phone). Idempotent."""
        ...


@dataclass(frozen=True)
class EntryKeys:
    """The ids one agent request gives rise to, the same on every repeat of it."""

    seed: str
    entry_id: str
    conversation_id: str

    @classmethod
    def of(cls, customer_id: str, key: str, at: datetime) -> EntryKeys:
        """Ids seeded by (customer id, idempotency key) at the claimed time (``new_id``, as ``MessageKeys``)."""
        seed = f"{Provider.HILO}:agent:{customer_id}:{key}"
        return cls(
            seed=seed,
            entry_id=new_id(IdPrefix.TIMELINE, at=at, seed=seed),
            conversation_id=new_id(IdPrefix.CONVERSATION, at=at, seed=seed),
        )

    def event_seed(self, event_type: str) -> str:
        return f"{self.seed}:{event_type}"


# ------------------------------------------------------------------------------------------ pure rules


def idempotency_key(header: str | None, body_id: str | None) -> str | None:
    """The request's idempotency key, if any: the ``Idempotency-Key`` header or the body's ``id`` (equal if both).

    Raises
    ------
    Unprocessable
        The header is not 1-128 printable ASCII characters without spaces, or it and the body's id differ (422).
    """
    header = header.strip() if header is not None else None
    if not header:
        return body_id
    if len(header) > 128 or not header.isascii() or not header.isprintable() or " " in header:
        raise Unprocessable("Idempotency-Key must be 1-128 printable ASCII characters without spaces.",
                            details=[{"field": "Idempotency-Key"}])  # fmt: skip
    if body_id is not None and body_id != header:
        raise Unprocessable("The Idempotency-Key header and the body's id differ; send one.", details=_KEY_FIELDS)
    return header


def required_key(header: str | None, body_id: str | None) -> str:
    """``idempotency_key``, which a visit or a note must have.

    Raises
    ------
    InvalidInput
        Neither the header nor the body's id was given (400).
    Unprocessable
        As ``idempotency_key`` (422).
    """
    key = idempotency_key(header, body_id)
    if key is None:
        raise InvalidInput(
            "An idempotency key is required: an Idempotency-Key header or an id in the body (e.g. a UUID).",
            details=_KEY_FIELDS,
        )
    return key


def visit_record(
    customer_id: str, keys: EntryKeys, claim: RequestClaim, body: VisitBody, received_at: datetime, conversation_id: str
) -> TimelineRecord:
    """The timeline entry of an in-store visit, on ``conversation_id``."""
    entry = TimelineEntry(
        id=keys.entry_id,
        customer_id=customer_id,
        conversation_id=conversation_id,
        occurred_at=claim.occurred_at,
        channel=Channel.IN_STORE,
        kind=TimelineKind.VISIT,
        summary=body.summary,
        actor=Actor(kind=ActorKind.AGENT, id=claim.agent_id),
    )
    extras = {"store": body.store, "idempotency_key": claim.key}
    return TimelineRecord(entry, None, None, str(Provider.HILO), None, received_at, extras)


def note_record(
    customer_id: str,
    keys: EntryKeys,
    claim: RequestClaim,
    body: NoteBody,
    received_at: datetime,
    conversation_id: str | None,
) -> TimelineRecord:
    """An agent's note: the full text kept beside the entry (whose summary is at most 500 characters)."""
    entry = TimelineEntry(
        id=keys.entry_id,
        customer_id=customer_id,
        conversation_id=conversation_id,
        occurred_at=claim.occurred_at,
        channel=body.channel,
        kind=TimelineKind.NOTE,
        summary=shorten(body.text),
        actor=Actor(kind=ActorKind.AGENT, id=claim.agent_id),
    )
    extras = {"text": body.text, "idempotency_key": claim.key}
    return TimelineRecord(entry, None, None, str(Provider.HILO), None, received_at, extras)


def note_conversation(head: HeadState | None, given: str | None) -> str | None:
    """Where a note goes when the request names no conversation: the head's, while it is open or pending."""
    if given is not None:
        return given
    return head.conversation_id if head is not None and head.status in CONTINUABLE else None


def linked_by(agent_id: str, customer_id: str, identity: Identity, key: str | None) -> str:
    """``hilo:agent:<subject>:<idempotency key, or a hash of customer and identifier>``: the link's evidence.

    Without a key the hash is stable, so the same agent linking the same identifier again is recognised as the
    same link (and its event re-published under the same id); the identifier itself is not written out.
    """
    if key is None:
        digest = hashlib.sha256(f"{customer_id}|{identity.lookup_kind}|{identity.lookup_value}".encode()).hexdigest()
        key = digest[:24]
    return f"{Provider.HILO}:agent:{agent_id}:{key}"


# ------------------------------------------------------------------------------------------ the use cases


class AgentWrites:
    """The write use cases of the agent API, over their ports; build once per process."""

    def __init__(
        self,
        repository: AgentRepository,
        publisher: EventPublisher,
        normaliser: Normaliser,
        clock: Clock,
        *,
        reopen_window: timedelta = timedelta(hours=72),
        max_skew: timedelta = MAX_CLOCK_SKEW,
    ) -> None:
        self.repository = repository
        self.publisher = publisher
        self.normaliser = normaliser
        self.clock = clock
        self.max_skew = max_skew
        self.continuity = Continuity(repository, reopen_window)

    def record_visit(self, customer_id: str, body: VisitBody, request: AgentRequest) -> Written:
        """Record an in-store visit on the customer's case (continuing it, or opening a new conversation).

        Parameters
        ----------
        customer_id : str
            The customer the clerk found.
        body : VisitBody
            Store, summary, optional time and idempotency key.
        request : AgentRequest
            The agent, the header's idempotency key, the request id.

        Returns
        -------
        Written
            Created (201) with the entry, or the entry an earlier request with the same key recorded (200).

        Raises
        ------
        InvalidInput
            No idempotency key (400).
        Unprocessable
            A time in the future, a malformed or reused key (422).
        NotFound
            No such customer (404).
        Conflict
            The customer was merged into another one (409).
        RetryableError
            Storage or fan-out failed; the same request again finishes the job.
        """
        key = required_key(request.idempotency_key, body.id)
        self._card(customer_id)
        now = self.clock()
        claim, earlier = self._claim(customer_id, key, VISIT, self._when(body.occurred_at, now), request)
        keys = EntryKeys.of(customer_id, key, claim.occurred_at)

        def record(conversation_id: str) -> TimelineRecord:
            return visit_record(customer_id, keys, claim, body, now, conversation_id)

        view = self._stored(customer_id, claim) if earlier else None
        created = False
        if view is None:
            # The customer walked in: an interaction from them, so it counts as inbound on the in-store channel.
            touch = self.continuity.touch(claim.occurred_at, Channel.IN_STORE, inbound=True)
            attached = self.continuity.attach(
                customer_id, touch, keys.conversation_id, lambda _customer, conversation: record(conversation)
            )
            created = not attached.duplicate
            view = record(attached.conversation_id)
            if not created:  # a twin request wrote it meanwhile: answer with what it stored
                view = self._stored(customer_id, claim) or view
        events: list[DomainEvent] = []
        if view.entry.conversation_id == keys.conversation_id:
            # This visit opened the conversation (its id is seeded by the request), so say so, on repeats too.
            opened = {"conversation_id": keys.conversation_id, "channel": str(Channel.IN_STORE)}
            events.append(self._event(CONVERSATION_OPENED, customer_id, keys, claim.occurred_at, request, opened))
        data = {**_entry_data(view), "store": view.extras.get("store"), "summary": view.entry.summary}
        events.append(self._event(VISIT_RECORDED, customer_id, keys, claim.occurred_at, request, data))
        self.publisher.publish(events)
        return Written(created=created, body=entry_json(view))

    def add_note(self, customer_id: str, body: NoteBody, request: AgentRequest) -> Written:
        """Add an agent's note to the customer's timeline, without moving their case.

        Returns
        -------
        Written
            Created (201) with the entry, or the entry an earlier request with the same key added (200).

        Raises
        ------
        InvalidInput, Unprocessable, NotFound, Conflict, RetryableError
            As ``record_visit``; also Unprocessable when ``conversation_id`` is not this customer's (422).
        """
        key = required_key(request.idempotency_key, body.id)
        card = self._card(customer_id)
        given = body.conversation_id
        head_id = card.head.conversation_id if card.head is not None else None
        if given is not None and given != head_id and not self.repository.owns_conversation(customer_id, given):
            raise Unprocessable(
                "The conversation is not one of this customer's.", details=[{"field": "conversation_id"}]
            )
        now = self.clock()
        claim, earlier = self._claim(customer_id, key, NOTE, self._when(body.occurred_at, now), request)
        keys = EntryKeys.of(customer_id, key, claim.occurred_at)
        view = self._stored(customer_id, claim) if earlier else None
        created = False
        if view is None:
            record = note_record(customer_id, keys, claim, body, now, note_conversation(card.head, given))
            created = self.repository.record(record) is None
            view = record if created else (self._stored(customer_id, claim) or record)
        data = {**_entry_data(view), "text": view.extras.get("text")}
        self.publisher.publish([self._event(NOTE_ADDED, customer_id, keys, claim.occurred_at, request, data)])
        return Written(created=created, body=entry_json(view))

    def link_identity(self, customer_id: str, body: IdentityBody, request: AgentRequest) -> Written:
        """Link an identifier the customer gave an agent; never merge (another customer's → 409).

        Returns
        -------
        Written
            Linked (201), or already this customer's (200); the body names the customer and the identity.

        Raises
        ------
        Unprocessable
            Not exactly one identifier, or an invalid one (422, naming the field, never echoing the value).
        NotFound
            No such customer (404).
        Conflict
            Another customer holds it (409; ``details`` name ``other_customer_id``), or this one was merged.
        RetryableError
            Storage or fan-out failed; the same request again finishes the job.
        """
        key = idempotency_key(request.idempotency_key, body.id)
        card = self._card(customer_id)
        given = {name: value for name, value in body.model_dump(exclude={"id", "channel"}).items() if value}
        named = [name for name in FINDERS if name in given]
        if len(named) != 1:
            raise Unprocessable(f"Give exactly one of {', '.join(FINDERS)}.",
                                details=[{"field": name} for name in named or FINDERS])  # fmt: skip
        now = self.clock()
        identity = given_identity(given, self.normaliser, first_seen=now, source_channel=body.channel)
        evidence = linked_by(request.agent_id, customer_id, identity, key)
        known = self.repository.find_customer(identity.lookup_kind, identity.lookup_value)
        linked_at: datetime | None = None
        if known is None:
            if self.repository.link_identity(customer_id, identity, evidence):
                linked_at = now
            else:  # claimed meanwhile (a parallel request, or another customer's message): read who won
                known = self.repository.find_customer(identity.lookup_kind, identity.lookup_value, consistent=True)
                if known is None:
                    raise RetryableError("The identifier was claimed but cannot be read yet; try again.")
        if known is not None:
            if known.customer_id != customer_id:
                raise Conflict(
                    f"Another customer has this {named[0]}. If they are the same person, merge the two with "
                    f"POST /v1/customers/{customer_id}/merge.",
                    details=[{"field": named[0], "other_customer_id": known.customer_id,
                              "merge": f"POST /v1/customers/{customer_id}/merge"}],
                )  # fmt: skip
            if identity.kind not in known.kinds:
                self.repository.add_identity(customer_id, identity)
            if known.linked_by == evidence:
                # This request (or its twin) linked it earlier and may have failed before publishing.
                linked_at = known.created_at or now
        if linked_at is not None:
            self.publisher.publish([self._linked_event(customer_id, identity, evidence, linked_at, request)])
        shown = _stored_identity(card.profile, identity) if known is not None else identity
        return Written(
            created=known is None,
            body={"customer_id": customer_id, "identity": shown.model_dump(mode="json")},
        )

    # ------------------------------------------------------------------ steps
    def _card(self, customer_id: str) -> Card:
        card = self.repository.get_card(customer_id)
        if card is None:
            raise NotFound("No such customer.")
        if card.profile.merged_into is not None:
            raise Conflict(
                f"This customer was merged into {card.profile.merged_into}; write there.",
                details=[{"merged_into": card.profile.merged_into}],
            )
        return card

    def _when(self, occurred_at: datetime | None, now: datetime) -> datetime:
        if occurred_at is None:
            return now
        if occurred_at > now + self.max_skew:
            raise Unprocessable("occurred_at is in the future.", details=[{"field": "occurred_at"}])
        return occurred_at

    def _claim(
        self, customer_id: str, key: str, action: str, at: datetime, request: AgentRequest
    ) -> tuple[RequestClaim, bool]:
        """Claim the key with this request's time, or get the earlier claim; True when it was there before."""
        keys = EntryKeys.of(customer_id, key, at)
        mine = RequestClaim(key=key, action=action, occurred_at=at, entry_id=keys.entry_id, agent_id=request.agent_id)
        earlier = self.repository.claim_request(customer_id, mine)
        if earlier is None:
            return mine, False
        if earlier.action != action:
            raise Unprocessable(f"This idempotency key was used for a {earlier.action} already; use a new one.",
                                details=_KEY_FIELDS)  # fmt: skip
        return earlier, True

    def _stored(self, customer_id: str, claim: RequestClaim) -> EntryView | None:
        return self.repository.timeline_entry(customer_id, claim.occurred_at, claim.entry_id)

    def _event(
        self,
        event_type: str,
        customer_id: str,
        keys: EntryKeys,
        at: datetime,
        request: AgentRequest,
        data: Mapping[str, Any],
    ) -> DomainEvent:
        return DomainEvent.new(
            event_type,
            source=SOURCE,
            correlation_id=request.correlation_id,
            customer_id=customer_id,
            occurred_at=at,
            id_seed=keys.event_seed(event_type),
            data=data,
        )

    def _linked_event(
        self, customer_id: str, identity: Identity, evidence: str, at: datetime, request: AgentRequest
    ) -> DomainEvent:
        data: dict[str, Any] = {
            "customer_id": customer_id,
            "identity_kind": str(identity.kind),
            "verified": identity.verified,
            "source": "agent",
            "source_channel": str(identity.source_channel) if identity.source_channel else None,
            "agent_id": request.agent_id,
            "linked_by": evidence,
            "at": at.isoformat(),
        }
        if identity.country is not None:
            data.update(country=identity.country, document_type=identity.document_type)
        seed = f"{evidence}:{IDENTITY_LINKED}:{identity.lookup_kind}:{identity.lookup_value}"
        return DomainEvent.new(
            IDENTITY_LINKED,
            source=SOURCE,
            correlation_id=request.correlation_id,
            customer_id=customer_id,
            occurred_at=at,
            id_seed=seed,
            data=data,
        )


def _entry_data(view: EntryView) -> dict[str, Any]:
    entry = view.entry
    return {
        "timeline_entry_id": entry.id,
        "conversation_id": entry.conversation_id,
        "kind": str(entry.kind),
        "channel": str(entry.channel) if entry.channel is not None else None,
        "agent_id": entry.actor.id,
    }


def _stored_identity(profile: CustomerProfile, identity: Identity) -> Identity:
    """The identity as the profile lists it (with the time it was first seen), else as given."""
    for other in profile.identities:
        if other.kind == identity.kind and other.lookup_value == identity.lookup_value:
            return other
    return identity
