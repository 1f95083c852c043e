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
  opens one, as for any customer without a current case. (``MergeStore.begin`` cannot absorb a profile without a
  head yet; tests/unit/test_core_events.py holds the case as a strict xfail.)
- **A core system cannot forge Hilo's own events**: the namespaces Hilo publishes in (``message.*``,
  ``customer.*``...) are refused, so consumers can trust them.

Nothing here knows about AWS or HTTP: ``shared.adapters.core_event_store.CoreEventStore`` and
``shared.adapters.event_publisher.EventPublisher`` implement the ports.
"""

from __future__ import annotations

import hashlib
import json
import re
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

from shared.customers import given_identity
from shared.errors import InvalidInput, RetryableError, Unprocessable
from shared.identity.normaliser import Normaliser
from shared.ingest.ports import Clock, EventPublisher, KnownIdentity
from shared.models.common import IdPrefix, UtcDatetime, id_time, new_id
from shared.models.customer import CustomerProfile
from shared.models.events import DomainEvent, EventType
from shared.models.identity import Identity, IdentityKind

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
        details = [
            {"field": ".".join(str(part) for part in item["loc"]) or "(body)", "problem": item["msg"]}
            for item in error.errors(include_url=False, include_input=False)
        ]
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


# ------------------------------------------------------------------------------------------ the use case


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
        customer_id, created = self._customer(identity, body, seed, now)
        events: list[DomainEvent] = []
        if created:
            events.append(self._created_event(customer_id, seed, sender))
        events.append(self._event(mine.event_id, body, source, customer_id, sender))
        self.publisher.publish(events)
        self.repository.mark_published(mine, customer_id, self.clock())
        return Accepted(mine.event_id, customer_id, duplicate=False)

    # ------------------------------------------------------------------ steps
    def _customer(self, identity: Identity, body: CoreEventBody, seed: str, now: datetime) -> tuple[str, bool]:
        """The customer who holds the identity, else a new lead; True when this event created them (now or on an
        earlier attempt: the lead's id is seeded by the event, so a retry still knows)."""
        lead_id = new_id(IdPrefix.CUSTOMER, at=body.occurred_at, seed=seed)
        known = self.repository.find_customer(identity.lookup_kind, identity.lookup_value)
        if known is None:
            profile = CustomerProfile(id=lead_id, display_name=body.customer.name, created_at=now, updated_at=now)
            if self.repository.create_lead(NewLead(profile=profile, identity=identity)):
                return lead_id, True
            # Claimed meanwhile (a twin event, or the person's first message): read who won, strongly consistent.
            known = self.repository.find_customer(identity.lookup_kind, identity.lookup_value, consistent=True)
            if known is None:
                raise RetryableError("The customer's identifier was claimed but cannot be read yet; try again.")
        return known.customer_id, known.customer_id == lead_id

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
