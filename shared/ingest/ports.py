"""What ingest needs from the outside world (ports), and the small values that cross them.

Nothing here knows about AWS: ``shared.adapters.profile_store`` and ``shared.adapters.event_publisher`` implement
these ports on DynamoDB, SQS and EventBridge; the unit tests implement them in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from shared.models.common import Channel
from shared.models.conversation import Conversation, ConversationStatus
from shared.models.customer import AppliedConsents, Consent, CustomerProfile
from shared.models.events import DomainEvent
from shared.models.identity import Identity, IdentityKind
from shared.models.message import Message
from shared.models.outbound import OutboundCommand
from shared.models.timeline import TimelineEntry

#: The port for "what time is it": ``shared.clock.now`` in functions, a settable fake in tests.
Clock = Callable[[], datetime]


@dataclass(frozen=True)
class KnownIdentity:
    """An identity pointer: who owns a lookup key, and which identity kinds of it the profile already lists."""

    customer_id: str
    kinds: frozenset[IdentityKind]
    #: ``<provider>:<provider message id>`` of the message that linked this identity to an existing customer
    #: (``IngestRepository.link_identity``); None for a pointer made with its customer. A redelivery of that
    #: message learns from it, without another read, that it must re-publish ``customer.identity_linked``.
    linked_by: str | None = None
    #: When the pointer was written (the linking message's or request's time): a repeated agent link re-publishes
    #: its event under the same id, which is minted from this instant. None where a reader did not fetch it.
    created_at: datetime | None = None


@dataclass(frozen=True)
class HeadState:
    """The live fields of a customer's current conversation (the ``HEAD`` item)."""

    conversation_id: str
    status: ConversationStatus
    opened_at: datetime
    last_message_at: datetime
    last_channel: Channel
    channels: frozenset[Channel]
    last_inbound_at: Mapping[str, datetime] = field(default_factory=dict)
    last_message_id: str | None = None
    #: Set when this customer was merged into another: ingest follows it to the survivor (``shared.merging``).
    merged_into: str | None = None


@dataclass(frozen=True)
class HeadTouch:
    """What one timeline entry does to the head when it continues the conversation.

    ``window_start`` is the earliest ``last_message_at`` that still lets the conversation continue: the adapter
    puts it in its condition, so the rule is checked by the write itself and never on a stale read.
    """

    at: datetime
    window_start: datetime
    channel: Channel
    inbound: bool
    message_id: str | None


@dataclass(frozen=True)
class TimelineRecord:
    """A timeline entry as stored: the entry, its message when it is one, and what only its writer knows.

    Ingest writes envelopes (``inbound_kind`` and the provider's message id set); the agent API writes visits and
    notes, which have neither (``provider`` is ``hilo``).
    """

    entry: TimelineEntry
    message: Message | None
    inbound_kind: str | None
    provider: str
    provider_message_id: str | None
    received_at: datetime
    #: Call details, e-mail subject and threading, provider metadata, a note's full text: JSON-safe values only.
    extras: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewCustomer:
    """Everything the first message of a new person creates, written all together or not at all."""

    profile: CustomerProfile
    identity: Identity
    conversation: Conversation
    head: HeadState


@dataclass(frozen=True)
class Continued:
    """The head took the touch (or the message is older than the head and belongs to the same conversation)."""

    conversation_id: str


@dataclass(frozen=True)
class NotContinued:
    """The head's conversation is not open/pending, or the reopen window has passed; ``head`` as it was."""

    head: HeadState | None


@dataclass(frozen=True)
class Opened:
    """A new conversation, the head pointing at it and the timeline entry were written together."""


@dataclass(frozen=True)
class AlreadyRecorded:
    """The timeline entry existed already (a redelivery): nothing was written; its conversation as stored."""

    conversation_id: str | None


@dataclass(frozen=True)
class HeadChanged:
    """Someone moved the head between our read and our write: decide again."""


@dataclass(frozen=True)
class Evidence:
    """Where a given identifier came from: which message, on which channel, when, and by which route."""

    provider: str
    provider_message_id: str
    channel: Channel
    at: datetime
    #: The route inside the message (``ivr_digits``, ``telegram_contact``, ``webchat_email``...).
    source: str

    @property
    def seed(self) -> str:
        """``<provider>:<provider message id>``, the seed of every id this message gives rise to."""
        return f"{self.provider}:{self.provider_message_id}"


@dataclass(frozen=True)
class MergeSuggestion:
    """Two profiles that one person's identifiers point to: ``customer_id`` was given an identifier of
    ``other_customer_id``. Recorded, not acted on (merging is a later step)."""

    customer_id: str
    other_customer_id: str
    identity_kinds: frozenset[IdentityKind]
    #: True when at least one of the identifiers was vouched for by the provider (a Telegram contact share).
    verified: bool
    #: The message that gave the identifier(s); the same on every redelivery, so the item is rewritten as it was.
    evidence: Evidence


@dataclass(frozen=True)
class RequestClaim:
    """An agent's request (a visit, a note) claimed under its idempotency key, before its entry is written.

    The first request with a key fixes the entry's time and id; a repeat (or a retry after a failure) finds the
    claim and carries on with the same ones, so the entry's conditional write deduplicates it even when the
    request gave no ``occurred_at`` and "now" has moved on.
    """

    key: str
    #: ``visit`` or ``note``: a key is one request, and cannot be reused for the other kind.
    action: str
    occurred_at: datetime
    entry_id: str
    agent_id: str


ContinueOutcome = Continued | NotContinued
OpenOutcome = Opened | AlreadyRecorded | HeadChanged


class ConversationRepository(Protocol):
    """Port: what putting one timeline entry on a customer's case needs (access patterns 5 and 6).

    ``shared.ingest.service.Continuity`` runs on it, for ingest's envelopes and the agent API's visits alike.
    """

    def continue_conversation(self, customer_id: str, touch: HeadTouch) -> ContinueOutcome:
        """Move the head forward if its conversation can take this entry."""
        ...

    def open_conversation(
        self, conversation: Conversation, head: HeadState, seen: HeadState | None, record: TimelineRecord
    ) -> OpenOutcome:
        """Write the conversation, the new head (only if it is still ``seen``) and the entry (only if new)."""
        ...

    def record(self, record: TimelineRecord) -> AlreadyRecorded | None:
        """Write the entry unless it exists (the dedup); None when written."""
        ...


class IngestRepository(ConversationRepository, Protocol):
    """Port: the profile table as ingest uses it (see docs/data-model.md, access patterns 1, 2, 5 and 6)."""

    def find_customer(
        self, lookup_kind: IdentityKind, lookup_value: str, *, consistent: bool = False
    ) -> KnownIdentity | None:
        """Who owns this identity; None when nobody does (yet)."""
        ...

    def create_customer(self, new: NewCustomer) -> bool:
        """Create profile, identity, conversation and head at once; False when the identity was claimed already."""
        ...

    def add_identity(self, customer_id: str, identity: Identity) -> None:
        """List another kind of an already claimed lookup key on its profile (WhatsApp after SMS). Idempotent."""
        ...

    def link_identity(self, customer_id: str, identity: Identity, linked_by: str) -> bool:
        """Claim an unclaimed identity for an existing customer (pointer and entry at once); False if claimed."""
        ...

    def suggest_merge(self, suggestion: MergeSuggestion) -> bool:
        """Record the suggestion unless an earlier message did; True when this message's evidence is the one kept."""
        ...

    def apply_consents(self, customer_id: str, consents: Sequence[Consent]) -> AppliedConsents:
        """Fold consent records into the profile (latest per channel and purpose wins); what it held, its locale."""
        ...

    def customers_named(self, key: str, *, limit: int = 6) -> tuple[str, ...]:
        """Live customers whose full name has this key (``rules.name_key``): a weak signal, for suggestions only."""
        ...


class MergeRequests(Protocol):
    """Port: ``shared.merging.Merges.request`` — record that two profiles are one person and queue the merge."""

    def request(self, customer_id: str, other_id: str, evidence: Any, *, merge_id: str | None = None) -> Any:
        """The merge record; raises ``shared.merging.MergeRefused`` when it cannot begin."""
        ...


class OutboundCommands(Protocol):
    """Port: put a send command on OutboundQueue (a keyword's confirmation). Idempotent per ``command.key``."""

    def send(self, command: OutboundCommand) -> None: ...


class EventPublisher(Protocol):
    """Port: fan domain events out (events queue and integration bus). All of them, or raise RetryableError."""

    def publish(self, events: Sequence[DomainEvent]) -> None:
        """Send every event; consumers deduplicate on ``DomainEvent.id``."""
        ...
