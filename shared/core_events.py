"""Core-system events (``POST /v1/events``): a CRM or core system tells Hilo that something happened to a customer.

Why it works the way it does:

- **The sender's id is the idempotency key, per sender.** Each caller is a principal (its token's subject); its ids
  live under its own event source, so two systems' ``"1001"`` never collide. The first request claims the marker
  ``EVT#<source>#<id>`` (docs/data-model.md, pattern 15) with the event id it will publish; a repeat within
  ``DEDUP_WINDOW`` (8 days, DESIGN §5) finds the marker and is answered 202 with that same id, publishing nothing.
  After the window the marker's condition (``expires_at < :now``) lets the id be claimed again, as a new event.
- **Claim, find the customer, publish, then mark the marker published.** A request that dies between its claim
  and its publish leaves a marker that is not marked; the sender's retry finds it, publishes under the marker's
  event id and marks it. Consumers deduplicate on the event id, so two twins publishing at once are harmless; a
  plain repeat of an event that went out publishes nothing.
- **Ids are seeded by (source, sender's id) at ``occurred_at``**: the same event sent again (same id and time) is
  the same event, under the same id, even after the marker has expired.
- **The customer is found by the one identifier given**, normalised as ``GET /v1/customers`` reads it (phones to
  E.164 in ``HILO_DEFAULT_REGION``, national IDs checked). Nobody has it → a new profile (a lead who downloaded a
  document is a person Hilo should know), claimed with the identity pointer's condition exactly as ingest claims
  one: of two first events for one e-mail, one creates the profile and the other finds it. A lead has no
  conversation: nothing was said yet, and an empty case would sit in the agents' open queue. Its first message
  opens one, as for any customer without a current case. A merge can absorb a lead like any profile.
- **A core system cannot forge Hilo's own events**: the namespaces Hilo publishes in (``message.*``,
  ``customer.*``...) are refused, so consumers can trust them.
- **The event may carry the person's consents** (``consents``: channel, purpose, status), because the sender's web
  form is where they ticked "acepto recibir comunicaciones", and a workflow's marketing e-mail needs that opt-in
  (``shared.outbound.policy``). They become ``Consent`` records with the sender's event source as ``source`` and
  ``occurred_at`` as ``at``, folded in as keywords are (``merge_consents``: the latest ``at`` per channel and
  purpose wins), so an older event never undoes a newer opt-out. They are applied *before* the event is published,
  so what it triggers sees them; a new lead is created with them (no extra write), a known customer's profile is
  written only when they change it, and a repeat of a published event writes nothing. What actually changed is
  announced as ``consent.changed``, in ingest's shape (one event per channel and status), so consumers (a
  workflow's ``exit_when: opt_out``) read one schema whoever learnt it; a retry after a failed publish announces
  it again under the same ids.

Nothing here knows about AWS or HTTP: ``shared.adapters.core_event_store.CoreEventStore`` and
``shared.adapters.event_publisher.EventPublisher`` implement the ports.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Protocol, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.customers import given_identity
from shared.errors import InvalidInput, RetryableError, Unprocessable
from shared.identity.normaliser import Normaliser
from shared.ingest.ports import Clock, EventPublisher, KnownIdentity
from shared.models.common import Channel, IdPrefix, UtcDatetime, id_time, new_id
from shared.models.customer import AppliedConsents, Consent, ConsentPurpose, ConsentStatus, CustomerProfile
from shared.models.events import DomainEvent, EventType
from shared.models.identity import Identity, IdentityKind
from shared.outbound.consent import KeywordKind, merge_consents

#: How long a sender's id is remembered: at least 8 days (DESIGN §5), so a retry days later is still a repeat.
DEDUP_WINDOW: Final = timedelta(days=8)
#: How far ahead of our clock ``occurred_at`` may be: clocks drift, but the future has not happened.
MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
#: ``data`` as compact UTF-8 JSON; the whole event must fit an SQS message and an EventBridge entry with room.
MAX_DATA_BYTES: Final = 32 * 1024
#: The event-type namespaces Hilo itself publishes in: a core system's event may not pretend to be one of them.
RESERVED_NAMESPACES: Final = frozenset(
    {"message", "conversation", "customer", "consent", "visit", "note", "call", "merge", "workflow", "hilo"}
)
#: The identifiers ``customer`` may carry, exactly one per event.
IDENTIFIERS: Final = ("email", "phone", "national_id", "crm_id")
#: Source of the events Hilo publishes itself while accepting one (``customer.created``).
SOURCE: Final = "hilo.events_api"
CUSTOMER_CREATED: Final = "customer.created"
#: Published (source ``SOURCE``) when the event's consents changed the profile, in ingest's shape.
CONSENT_CHANGED: Final = "consent.changed"
#: At most this many consents per event: a form asks for one or two; one per channel and purpose would be 20.
MAX_CONSENTS: Final = 10
#: The error ``parse_body`` names ``consents.<index>.purpose`` (the entry that repeats a channel and purpose).
_CONSENT_REPEATED: Final = "consent_repeated"

_PLAIN_SUBJECT_RE: Final = re.compile(r"[a-z][a-z0-9_-]{0,58}")
_NOT_SLUG_RE: Final = re.compile(r"[^a-z0-9]+")
_EARLIEST: Final = datetime(1970, 1, 1, tzinfo=UTC)


# ------------------------------------------------------------------------------------------ the request body


def _iso_text(value: Any) -> Any:
    # Pydantic would read a bare number as Unix seconds; the contract says ISO-8601, so a number is a mistake.
    if not isinstance(value, str):
        raise ValueError("occurred_at must be an ISO-8601 string with an offset, e.g. 2026-03-02T15:00:00-05:00")
    return value


def _not_hilos(value: str) -> str:
    namespace = value.split(".", 1)[0]
    if namespace in RESERVED_NAMESPACES:
        raise ValueError(
            f"'{namespace}.*' events are Hilo's own; name yours after your domain, e.g. document.downloaded"
        )
    return value


def _data_fits(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    try:
        size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode())
    except ValueError as error:
        raise ValueError("data must be plain JSON: NaN and Infinity are not numbers JSON knows") from error
    if size > MAX_DATA_BYTES:
        raise ValueError(f"data is {size} bytes as JSON; at most {MAX_DATA_BYTES} are accepted")
    return value


def _once_each(consents: list[ConsentGiven]) -> list[ConsentGiven]:
    # A profile holds one consent per (channel, purpose): two in one event would be a contradiction or a typo.
    first_at: dict[tuple[Channel, ConsentPurpose], int] = {}
    for index, consent in enumerate(consents):
        first = first_at.setdefault((consent.channel, consent.purpose), index)
        if first != index:
            raise PydanticCustomError(
                _CONSENT_REPEATED,
                "consents.{first} already gives {channel} {purpose}; give each channel and purpose once",
                {"index": index, "first": first, "channel": str(consent.channel), "purpose": str(consent.purpose)},
            )
    return consents


_Raw = Annotated[str, StringConstraints(min_length=1, max_length=320)]


class CustomerRef(BaseModel):
    """``customer``: exactly one identifier, with the document's country and type for a national ID when known."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    email: _Raw | None = None
    phone: _Raw | None = None
    national_id: Annotated[str, StringConstraints(min_length=1, max_length=40)] | None = None
    crm_id: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = None
    #: ISO 3166-1 alpha-2 issuing country of ``national_id`` (``CO``); with ``document_type``, or neither.
    country: Annotated[str, StringConstraints(min_length=2, max_length=2)] | None = None
    #: ``CC``, ``CURP``, ``RUT``...; without them the document is guessed from its shape in ``HILO_DEFAULT_REGION``.
    document_type: Annotated[str, StringConstraints(min_length=1, max_length=8)] | None = None
    #: The person's name, kept on the profile when this event creates it.
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _one_identifier(self) -> Self:
        given = [name for name in IDENTIFIERS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(IDENTIFIERS)}")
        if (self.country is not None or self.document_type is not None) and given != ["national_id"]:
            raise ValueError("country and document_type go with national_id only")
        return self

    @property
    def identifier(self) -> tuple[str, str]:
        """The identifier given: its name (one of ``IDENTIFIERS``) and its value as sent."""
        name = next(name for name in IDENTIFIERS if getattr(self, name) is not None)
        return name, getattr(self, name)


class ConsentGiven(BaseModel):
    """One entry of ``consents``: what the person chose for one channel and purpose. Hilo sets ``source`` (the
    sender) and ``at`` (``occurred_at``), so a sender cannot give them: an entry is refused with them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    channel: Channel
    purpose: ConsentPurpose
    status: ConsentStatus


class CoreEventBody(BaseModel):
    """``POST /v1/events``: the contract of DESIGN §3. Unknown fields are refused (a typo must not be dropped)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The sender's unique id of this event: 1-128 printable ASCII characters without spaces.
    id: Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")]
    #: ``<entity>.<past-tense verb>`` in lower case, outside Hilo's own namespaces: ``document.downloaded``.
    type: Annotated[EventType, AfterValidator(_not_hilos)]
    #: When it happened, with its offset.
    occurred_at: Annotated[UtcDatetime, BeforeValidator(_iso_text)]
    customer: CustomerRef
    #: What the consumers need to know, as sent (at most 32 KB of JSON).
    data: Annotated[dict[str, JsonValue], AfterValidator(_data_fits)] = Field(default_factory=dict)
    #: The person's consents as the sender learnt them (a form's tick box), at most one per channel and purpose.
    consents: Annotated[list[ConsentGiven], Field(max_length=MAX_CONSENTS), AfterValidator(_once_each)] = Field(
        default_factory=list
    )

    @field_validator("occurred_at")
    @classmethod
    def _not_before_1970(cls, value: datetime) -> datetime:
        if value < _EARLIEST:
            raise ValueError("occurred_at is before 1970")
        return value


def parse_body(document: Any) -> CoreEventBody:
    """Validate a decoded JSON body.

    Raises
    ------
    Unprocessable
        The body breaks a rule of the contract (422), ``details`` naming each field (``customer.phone``) and what
        is wrong, never the value sent.
    """
    try:
        return CoreEventBody.model_validate(document)
    except ValidationError as error:
        details = []
        for item in error.errors(include_url=False, include_input=False):
            loc = item["loc"]
            if item["type"] == _CONSENT_REPEATED:  # the list's validator found it: name the entry that repeats
                loc = (*loc, item.get("ctx", {}).get("index", ""), "purpose")
            details.append({"field": ".".join(str(part) for part in loc) or "(body)", "problem": item["msg"]})
        raise Unprocessable("The event is not valid.", details=details) from error


# ------------------------------------------------------------------------------------------ values and ports


@dataclass(frozen=True)
class Sender:
    """Who sent the event (the verified token's subject) and the request that carried it, for tracing."""

    subject: str
    correlation_id: str


@dataclass(frozen=True)
class EventMarker:
    """``EVT#<source>#<sender's id>``: the event id a sender's id was given, and whether it went out already."""

    source: str
    sender_id: str
    event_id: str
    event_type: str
    received_at: datetime
    expires_at: datetime
    #: Set once the event was published; None while a request is publishing it (or died doing so).
    published_at: datetime | None = None
    #: The customer it was published for (set with ``published_at``).
    customer_id: str | None = None


@dataclass(frozen=True)
class NewLead:
    """A person first named by a core system: profile and identity, written together or not at all."""

    profile: CustomerProfile
    identity: Identity


@dataclass(frozen=True)
class Accepted:
    """The 202 answer: the event's id, its customer, and whether an earlier request had published it already."""

    event_id: str
    customer_id: str
    duplicate: bool

    def body(self) -> dict[str, Any]:
        return {"event_id": self.event_id, "customer_id": self.customer_id, "duplicate": self.duplicate}


class CoreEventRepository(Protocol):
    """Port: the profile table as ``POST /v1/events`` uses it (docs/data-model.md, patterns 1, 2 and 15)."""

    def find_customer(
        self, lookup_kind: IdentityKind, lookup_value: str, *, consistent: bool = False
    ) -> KnownIdentity | None:
        """Who owns this identity; None when nobody does (yet)."""
        ...

    def create_lead(self, lead: NewLead) -> bool:
        """Pointer, profile and identity entry at once; False when the identity was claimed already."""
        ...

    def claim_event(self, marker: EventMarker, now: datetime) -> EventMarker | None:
        """Claim the marker unless a live one is there; None when this request claimed it, else the live one."""
        ...

    def mark_published(self, marker: EventMarker, customer_id: str, at: datetime) -> None:
        """Record that the marker's event went out, for this customer. Idempotent."""
        ...

    def apply_consents(self, customer_id: str, consents: Sequence[Consent]) -> AppliedConsents:
        """Fold the records into the profile (``merge_consents``), writing only when that changes it; the consents
        the profile held before (those the fold was made on)."""
        ...


# ------------------------------------------------------------------------------------------ pure rules


def event_source(subject: str) -> str:
    """The event source of a sender, which also namespaces its ids: ``core.<subject>``.

    A subject that is not already lower-case letters, digits, ``-`` and ``_`` (a Cognito client id, an Auth0
    ``…@clients``) is slugged and given a hash of the exact subject, so two subjects never share a source:
    ``core.c-<slug>-<12 hex>``. Always fits ``shared.models.events.EventSource``.
    """
    if _PLAIN_SUBJECT_RE.fullmatch(subject):
        return f"core.{subject}"
    slug = _NOT_SLUG_RE.sub("-", subject.lower()).strip("-")[:40].rstrip("-")
    digest = hashlib.sha256(subject.encode()).hexdigest()[:12]
    return f"core.c-{slug}-{digest}" if slug else f"core.c-{digest}"


def customer_identity(ref: CustomerRef, normaliser: Normaliser, at: datetime) -> Identity:
    """The identity ``customer`` names, normalised as ``GET /v1/customers`` reads it.

    Raises
    ------
    Unprocessable
        Not a valid identifier of its kind (422), naming ``customer.<field>`` and why, never the value.
    """
    name, raw = ref.identifier
    field = f"customer.{name}"
    try:
        if name == "crm_id":
            value = normaliser.normalise(IdentityKind.CRM_ID, raw)
            return Identity(kind=IdentityKind.CRM_ID, value=value, first_seen=at)
        given = {name: raw, "country": ref.country or "", "document_type": ref.document_type or ""}
        return given_identity(given, normaliser, first_seen=at)
    except InvalidInput as error:  # given_identity names the bare field; here it is inside `customer`
        problem = error.message.split(": ", 1)[-1]
        raise Unprocessable(f"Invalid {field}: {problem}", details=[{"field": field}]) from error
    except ValidationError as error:  # its text holds the input: say what is wrong, not what was sent
        problem = "; ".join(item["msg"] for item in error.errors(include_url=False, include_input=False))
        raise Unprocessable(f"Invalid {field}: {problem}", details=[{"field": field}]) from error
    except ValueError as error:  # the normaliser's messages name the problem, never the value
        raise Unprocessable(f"Invalid {field}: {error}", details=[{"field": field}]) from error


def consent_records(body: CoreEventBody, source: str) -> tuple[Consent, ...]:
    """The event's ``consents`` as profile records: learnt from ``source`` (the sender's) at ``occurred_at``."""
    return tuple(
        Consent(channel=given.channel, purpose=given.purpose, status=given.status, source=source, at=body.occurred_at)
        for given in body.consents
    )


def consent_changes(held: Sequence[Consent], records: Sequence[Consent], *, resumed: bool) -> tuple[Consent, ...]:
    """The records that change what the profile says: they won the fold (``merge_consents``) and set a new channel
    and purpose or another status. A newer or equal choice with the same status is kept but changes nothing.

    Parameters
    ----------
    held : sequence of Consent
        The profile's consents before these records were applied.
    records : sequence of Consent
        This event's records (one per channel and purpose).
    resumed : bool
        True when an earlier attempt of this event may have applied them and died before announcing them: a held
        record *equal* to one of ours is then taken as that attempt's change and announced again (same event id).

    Returns
    -------
    tuple of Consent
        In the order given; empty when nothing changed.
    """
    before = {(consent.channel, consent.purpose): consent for consent in held}
    after = {(consent.channel, consent.purpose): consent for consent in merge_consents(held, records)}
    changed = []
    for record in records:
        key = (record.channel, record.purpose)
        previous = before.get(key)
        if after[key] != record:
            continue  # an older choice than the one held: ignored
        if previous is None or previous.status != record.status or (resumed and previous == record):
            changed.append(record)
    return tuple(changed)


def consent_changed_data(channel: Channel, status: ConsentStatus, records: Sequence[Consent]) -> dict[str, Any]:
    """``consent.changed``'s ``data`` as ingest publishes it for a keyword, for records not learnt from one: no
    ``keyword``, ``reply`` or ``language`` (null), ``provider_replies`` false. ``kind`` is ``opt_out`` or ``opt_in``."""
    return {
        "kind": str(KeywordKind.OPT_OUT if status == ConsentStatus.OPTED_OUT else KeywordKind.OPT_IN),
        "keyword": None,
        "channel": str(channel),
        "consents": [record.model_dump(mode="json") for record in records],
        "reply": None,
        "language": None,
        "provider_replies": False,
    }


# ------------------------------------------------------------------------------------------ the use case


@dataclass(frozen=True)
class _Customer:
    """Whom the event is about, and how this event met them."""

    id: str
    #: This event created them, now or on an earlier attempt (the lead's id is seeded by the event, so a retry knows).
    created: bool
    #: This very request created them, with the event's consents on the new profile.
    born_now: bool


class CoreEvents:
    """Accept core-system events; build once per process."""

    def __init__(
        self,
        repository: CoreEventRepository,
        publisher: EventPublisher,
        normaliser: Normaliser,
        clock: Clock,
        *,
        dedup_window: timedelta = DEDUP_WINDOW,
        max_skew: timedelta = MAX_CLOCK_SKEW,
    ) -> None:
        self.repository = repository
        self.publisher = publisher
        self.normaliser = normaliser
        self.clock = clock
        self.dedup_window = dedup_window
        self.max_skew = max_skew

    def accept(self, body: CoreEventBody, sender: Sender) -> Accepted:
        """Accept one event: claim its id, find or create its customer, publish it (once per id and window).

        Parameters
        ----------
        body : CoreEventBody
            The validated request body.
        sender : Sender
            The authenticated caller and the request id.

        Returns
        -------
        Accepted
            The event id (the first one given to this sender's id within the window), the customer, and
            ``duplicate`` when an earlier request with this id had already published it (nothing published now).

        Raises
        ------
        Unprocessable
            ``occurred_at`` in the future, an invalid identifier, or this id used for another event type within the
            window (422, naming the field).
        RetryableError
            Storage or fan-out failed; the same request again finishes the job (503).

        Notes
        -----
        ``consents`` are on the customer's profile before anything is published (``consent.changed`` first, for
        what changed), so a workflow the event triggers sends under them.
        """
        now = self.clock()
        if body.occurred_at > now + self.max_skew:
            raise Unprocessable("occurred_at is in the future.", details=[{"field": "occurred_at"}])
        identity = customer_identity(body.customer, self.normaliser, now)
        source = event_source(sender.subject)
        seed = f"{source}:{body.id}"
        mine = EventMarker(
            source=source,
            sender_id=body.id,
            event_id=new_id(IdPrefix.EVENT, at=body.occurred_at, seed=seed),
            event_type=body.type,
            received_at=now,
            expires_at=now + self.dedup_window,
        )
        earlier = self.repository.claim_event(mine, now)
        if earlier is not None:
            if earlier.event_type != body.type:
                raise Unprocessable(
                    f"This id was given to a {earlier.event_type} event already; give each event its own id.",
                    details=[{"field": "id"}],
                )
            if earlier.published_at is not None and earlier.customer_id is not None:
                return Accepted(earlier.event_id, earlier.customer_id, duplicate=True)
            mine = earlier  # claimed by a request that has not published (yet, or ever): publish under its id
        records = consent_records(body, source)
        customer = self._customer(identity, body, records, seed, now)
        changed = self._consents(customer, records, resumed=earlier is not None)
        events: list[DomainEvent] = []
        if customer.created:
            events.append(self._created_event(customer.id, seed, sender))
        events.extend(self._consent_events(changed, body, seed, customer.id, sender))
        events.append(self._event(mine.event_id, body, source, customer.id, sender))
        self.publisher.publish(events)
        self.repository.mark_published(mine, customer.id, self.clock())
        return Accepted(mine.event_id, customer.id, duplicate=False)

    # ------------------------------------------------------------------ steps
    def _customer(
        self, identity: Identity, body: CoreEventBody, consents: tuple[Consent, ...], seed: str, now: datetime
    ) -> _Customer:
        """The customer who holds the identity, else a new lead created with the event's ``consents``."""
        lead_id = new_id(IdPrefix.CUSTOMER, at=body.occurred_at, seed=seed)
        known = self.repository.find_customer(identity.lookup_kind, identity.lookup_value)
        if known is None:
            profile = CustomerProfile(id=lead_id, display_name=body.customer.name, consents=consents, created_at=now,
                                      updated_at=now)  # fmt: skip
            if self.repository.create_lead(NewLead(profile=profile, identity=identity)):
                return _Customer(lead_id, created=True, born_now=True)
            # Claimed meanwhile (a twin event, or the person's first message): read who won, strongly consistent.
            known = self.repository.find_customer(identity.lookup_kind, identity.lookup_value, consistent=True)
            if known is None:
                raise RetryableError("The customer's identifier was claimed but cannot be read yet; try again.")
        return _Customer(known.customer_id, created=known.customer_id == lead_id, born_now=False)

    def _consents(self, customer: _Customer, records: tuple[Consent, ...], *, resumed: bool) -> tuple[Consent, ...]:
        """Put the event's consents on the customer's profile; the records that changed it (``consent_changes``)."""
        if customer.born_now:
            return records  # written with the new profile, where nothing was held
        if not records:
            return ()
        held = self.repository.apply_consents(customer.id, records).before
        return consent_changes(held, records, resumed=resumed)

    def _event(self, event_id: str, body: CoreEventBody, source: str, customer_id: str, sender: Sender) -> DomainEvent:
        return DomainEvent.model_validate(
            {
                "id": event_id,
                "type": body.type,
                "occurred_at": body.occurred_at,
                "correlation_id": sender.correlation_id,
                "customer_id": customer_id,
                "source": source,
                "data": body.data,
            }
        )

    @staticmethod
    def _consent_events(
        changed: Sequence[Consent], body: CoreEventBody, seed: str, customer_id: str, sender: Sender
    ) -> list[DomainEvent]:
        # One per channel and status, as a keyword makes one per channel: ``kind`` then speaks for every record.
        groups: dict[tuple[Channel, ConsentStatus], list[Consent]] = {}
        for consent in changed:
            groups.setdefault((consent.channel, consent.status), []).append(consent)
        return [
            DomainEvent.new(
                CONSENT_CHANGED,
                source=SOURCE,
                correlation_id=sender.correlation_id,
                customer_id=customer_id,
                occurred_at=body.occurred_at,
                id_seed=f"{seed}:{CONSENT_CHANGED}:{channel}:{status}",
                data=consent_changed_data(channel, status, records),
            )
            for (channel, status), records in groups.items()
        ]

    @staticmethod
    def _created_event(customer_id: str, seed: str, sender: Sender) -> DomainEvent:
        # Timed by the lead's own id, so every attempt of this event mints the same ``customer.created``.
        return DomainEvent.new(
            CUSTOMER_CREATED,
            source=SOURCE,
            correlation_id=sender.correlation_id,
            customer_id=customer_id,
            occurred_at=id_time(customer_id),
            id_seed=f"{seed}:{CUSTOMER_CREATED}",
            data={"customer_id": customer_id},
        )
