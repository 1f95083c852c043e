"""The agent API's customer reads: find a customer by any identifier, their card, timeline and conversations.

Pure rules and presentation over a ``CustomerReader`` port (``shared.adapters.profile_store.ProfileStore``
implements it): turning ``?phone=`` / ``?email=`` / ``?national_id=`` / ``?identity=channel:id`` into the identity
pointer's lookup key (with the same normaliser ingest uses, so a clerk's ``300 123 4567`` finds the customer whose
WhatsApp sent ``573001234567``), and the JSON the agent console reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final, Protocol

from pydantic import ValidationError

from shared.errors import InvalidInput, NotFound, Unprocessable
from shared.identity.normaliser import Normaliser
from shared.ingest.rules import IDENTITY_KIND_BY_CHANNEL
from shared.models.common import Channel, utc_now
from shared.models.conversation import Conversation
from shared.models.identity import Identity, IdentityKind

#: The query parameters that name a customer, exactly one per request.
FINDERS: Final = ("phone", "email", "national_id", "identity")
_MAX_LIMIT: Final = 100


class CustomerReader(Protocol):
    """Port: the reads the agent API needs (patterns 1, 3, 7, 8 and 9 of docs/data-model.md)."""

    def find_customer_id(self, lookup_kind: IdentityKind, lookup_value: str) -> str | None: ...

    def get_card(self, customer_id: str) -> Any | None: ...

    def timeline(
        self, customer_id: str, *, limit: int = 50, cursor: str | None = None, channel: Channel | None = None
    ) -> Any: ...

    def conversations(self, customer_id: str, *, limit: int = 50) -> tuple[Conversation, ...]: ...

    def conversation(self, conversation_id: str) -> Conversation | None: ...


def given_identity(
    given: Mapping[str, str],
    normaliser: Normaliser,
    *,
    first_seen: datetime | None = None,
    source_channel: Channel | None = None,
) -> Identity:
    """The identity named by one of ``FINDERS``: the one parser for finding a customer and for linking to one.

    Parameters
    ----------
    given : Mapping
        A query string or a request body: exactly one of ``phone``, ``email``, ``national_id`` (with optional
        ``country`` and ``document_type``; else guessed, plain digits read in ``HILO_DEFAULT_REGION``) or
        ``identity`` (``<channel or kind>:<id>``, e.g. ``telegram:912345678``, ``whatsapp:573001234567``,
        ``crm_id:C-1001``).
    normaliser : Normaliser
        The identity normaliser (its default region reads national-format phones and plain ID digits).
    first_seen : datetime, optional
        When the identity was given; now when omitted (a lookup does not store it).
    source_channel : Channel, optional
        Where the customer gave it, when that is known.

    Returns
    -------
    Identity
        Normalised, not verified; ``lookup_kind`` / ``lookup_value`` are the key of its pointer.

    Raises
    ------
    InvalidInput
        None or several identifiers given (400).
    Unprocessable
        The identifier is not a valid one of its kind (422), naming the field and why, never the value.
    """
    named = [name for name in FINDERS if given.get(name)]
    if len(named) != 1:
        raise InvalidInput(f"Give exactly one of {', '.join(FINDERS)}.", details=[{"field": name} for name in FINDERS])
    name = named[0]
    raw = given[name]
    country: str | None = None
    document_type: str | None = None
    try:
        if name == "phone":
            kind, value = IdentityKind.PHONE, normaliser.normalise(IdentityKind.PHONE, raw)
        elif name == "email":
            kind, value = IdentityKind.EMAIL, normaliser.normalise(IdentityKind.EMAIL, raw)
        elif name == "national_id":
            document = normaliser.national_id(
                raw, country=given.get("country") or None, document_type=given.get("document_type") or None
            )
            kind, value = IdentityKind.NATIONAL_ID, document.value
            country, document_type = document.country, document.document_type
        else:
            kind, value = _scoped(raw, normaliser)
        return Identity(
            kind=kind,
            value=value,
            country=country,
            document_type=document_type,
            source_channel=source_channel,
            first_seen=first_seen or utc_now(),
        )
    except ValidationError as error:  # its text holds the input: say what is wrong, not what was sent
        problems = "; ".join(item["msg"] for item in error.errors(include_url=False, include_input=False))
        raise Unprocessable(f"Invalid {name}: {problems}", details=[{"field": name}]) from error
    except ValueError as error:  # the normaliser's messages name the problem, never the value
        raise Unprocessable(f"Invalid {name}: {error}", details=[{"field": name}]) from error


def lookup_key(query: Mapping[str, str], normaliser: Normaliser) -> tuple[IdentityKind, str]:
    """The identity pointer key named by the request's query (see ``given_identity``).

    Returns
    -------
    tuple of (IdentityKind, str)
        ``Identity.lookup_kind`` and ``lookup_value`` of the identity named: a WhatsApp id and a phone share one.
    """
    identity = given_identity(query, normaliser)
    return identity.lookup_kind, identity.lookup_value


def _scoped(raw: str, normaliser: Normaliser) -> tuple[IdentityKind, str]:
    prefix, separator, value = raw.partition(":")
    if not separator or not value:
        raise ValueError("write it as <channel>:<id>, e.g. telegram:912345678 or crm_id:C-1001")
    prefix = prefix.strip().lower()
    kind = IDENTITY_KIND_BY_CHANNEL.get(Channel(prefix)) if prefix in Channel.__members__.values() else None
    if kind is None:
        if prefix not in IdentityKind.__members__.values():
            raise ValueError(f"{prefix[:20]!r} is neither a channel nor an identity kind")
        kind = IdentityKind(prefix)
    if kind == IdentityKind.NATIONAL_ID:
        raise ValueError("use national_id= (with country= and document_type= when needed)")
    return kind, normaliser.normalise(kind, value)


def page_limit(raw: str | None) -> int:
    """``limit=`` of a list request: 1 to 100, 50 when absent."""
    if raw is None or raw == "":
        return 50
    if not raw.isdecimal() or not 1 <= int(raw) <= _MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {_MAX_LIMIT}.", details=[{"field": "limit"}])
    return int(raw)


def channel_filter(raw: str | None) -> Channel | None:
    """``channel=`` of a timeline request, or None."""
    if not raw:
        return None
    if raw not in Channel.__members__.values():
        raise InvalidInput(f"Unknown channel; use one of {', '.join(Channel)}.", details=[{"field": "channel"}])
    return Channel(raw)


def card_json(card: Any) -> dict[str, Any]:
    """A customer's card: the profile with identities and consents, and the current conversation's live fields."""
    head = card.head
    current = None
    if head is not None:
        current = {
            "id": head.conversation_id,
            "status": str(head.status),
            "opened_at": head.opened_at.isoformat(),
            "last_message_at": head.last_message_at.isoformat(),
            "last_channel": str(head.last_channel),
            "channels": sorted(str(channel) for channel in head.channels),
        }
    return {"customer": card.profile.model_dump(mode="json"), "current_conversation": current}


#: Attributes stored beside a timeline entry that an agent reads: a call's details, an e-mail's subject and raw
#: message, a visit's store, a note's full text.
_SHOWN_EXTRAS: Final = (
    "call", "subject", "raw_ref", "store", "text",
    # outbound (docs/outbound.md, "The message on the timeline")
    "purpose", "template_id", "whatsapp_template", "deferred_until", "outcome_reason", "outcome_detail",
    "fallback_of", "fallback_message_id",
)  # fmt: skip


def entry_json(stored: Any) -> dict[str, Any]:
    """One timeline line: the entry, its message (content, sender, status history) when it is one."""
    body: dict[str, Any] = stored.entry.model_dump(mode="json")
    if stored.message is not None:
        body["message"] = stored.message.model_dump(mode="json")
    if stored.inbound_kind is not None:
        body["inbound_kind"] = stored.inbound_kind
    for name in _SHOWN_EXTRAS:
        if stored.extras.get(name) is not None:
            body[name] = stored.extras[name]
    return body


class CustomerQueries:
    """The read use cases of the agent API."""

    def __init__(self, reader: CustomerReader, normaliser: Normaliser) -> None:
        self.reader = reader
        self.normaliser = normaliser

    def find(self, query: Mapping[str, str]) -> dict[str, Any]:
        """GET /v1/customers?<identifier>: the customer's card, or NotFound."""
        kind, value = lookup_key(query, self.normaliser)
        customer_id = self.reader.find_customer_id(kind, value)
        if customer_id is None:
            raise NotFound("No customer has that identifier.")
        return self.card(customer_id)

    def card(self, customer_id: str) -> dict[str, Any]:
        """GET /v1/customers/{id}."""
        card = self.reader.get_card(customer_id)
        if card is None:
            raise NotFound("No such customer.")
        return card_json(card)

    def timeline(self, customer_id: str, query: Mapping[str, str]) -> dict[str, Any]:
        """GET /v1/customers/{id}/timeline?limit=&cursor=&channel=: newest first."""
        limit, channel = page_limit(query.get("limit")), channel_filter(query.get("channel"))
        if self.reader.get_card(customer_id) is None:
            raise NotFound("No such customer.")
        page = self.reader.timeline(customer_id, limit=limit, cursor=query.get("cursor") or None, channel=channel)
        return {"entries": [entry_json(stored) for stored in page.entries], "next_cursor": page.cursor}

    def conversations(self, customer_id: str, query: Mapping[str, str]) -> dict[str, Any]:
        """GET /v1/customers/{id}/conversations: newest first."""
        limit = page_limit(query.get("limit"))
        found = self.reader.conversations(customer_id, limit=limit)
        if not found and self.reader.get_card(customer_id) is None:
            raise NotFound("No such customer.")
        return {"conversations": [conversation.model_dump(mode="json") for conversation in found]}

    def conversation(self, conversation_id: str) -> dict[str, Any]:
        """GET /v1/conversations/{id}."""
        found = self.reader.conversation(conversation_id)
        if found is None:
            raise NotFound("No such conversation.")
        return found.model_dump(mode="json")
