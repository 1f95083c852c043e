"""The ingest use case: one inbound envelope → identity → profile → conversation → timeline entry → events.

Exactly-once *effects* come from the storage conditions, not from a separate idempotency record:

- a new person is one all-or-nothing write claiming the identity pointer; the loser of a race re-reads the
  pointer consistently and carries on as a known customer, so two first messages make one profile;
- the timeline entry's key is derived from the provider's id and time (``MessageKeys``), and writing it is
  conditional on its absence: a redelivery finds it, writes nothing, and re-publishes the same events under the
  same ids (a crash between the write and the publish therefore loses nothing; consumers deduplicate on id);
- an identifier the customer gives (``shared.ingest.linking``) is claimed for them with a conditional write, so
  of two messages claiming it at once one links and the other records a merge suggestion; the pointer remembers
  which message linked it, and the suggestion is keyed on the other customer, so redeliveries add nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from shared.errors import RetryableError
from shared.ingest.linking import GivenIdentity, LinkingNormaliser, given_identities
from shared.ingest.ports import (
    AlreadyRecorded,
    Clock,
    Continued,
    EventPublisher,
    Evidence,
    HeadChanged,
    HeadState,
    HeadTouch,
    IngestRepository,
    KnownIdentity,
    MergeSuggestion,
    NewCustomer,
    Opened,
)
from shared.ingest.rules import (
    EVENT_TYPE,
    MessageKeys,
    is_from_customer,
    sender_identity,
    timeline_record,
    window_start,
)
from shared.models.conversation import Conversation, ConversationStatus
from shared.models.customer import CustomerProfile
from shared.models.events import DomainEvent
from shared.models.identity import Identity
from shared.models.inbound import InboundEnvelope, InboundKind
from shared.observability import logger

SOURCE: Final = "hilo.ingest"
IDENTITY_LINKED: Final = "customer.identity_linked"
MERGE_SUGGESTED: Final = "customer.merge_suggested"
#: Decisions retried when another message moved the head between our read and our write.
_ATTEMPTS: Final = 4
#: Message content travels in the event only while it is small; consumers read the timeline entry otherwise.
_MAX_INLINE_PARTS_BYTES: Final = 32 * 1024


@dataclass(frozen=True)
class IngestResult:
    """What one envelope did; ids only, so it can be logged."""

    customer_id: str
    conversation_id: str
    entry_id: str
    duplicate: bool
    event_types: tuple[str, ...]


class Ingest:
    """The use case, over its ports; build it once per process (``shared.ingest.bootstrap``)."""

    def __init__(
        self,
        repository: IngestRepository,
        publisher: EventPublisher,
        normaliser: LinkingNormaliser,
        clock: Clock,
        *,
        reopen_window: timedelta = timedelta(hours=72),
        default_region: str | None = "CO",
    ) -> None:
        self.repository = repository
        self.publisher = publisher
        self.normaliser = normaliser
        self.clock = clock
        self.reopen_window = reopen_window
        self.default_region = default_region

    def __call__(self, envelope: InboundEnvelope) -> IngestResult:
        """Ingest one envelope (idempotent: any number of deliveries of it have the effect of one).

        Parameters
        ----------
        envelope : InboundEnvelope
            A message, edit, echo or call from InboundQueue.

        Returns
        -------
        IngestResult
            The ids it landed under, whether it was a redelivery, and the events published.

        Raises
        ------
        PermanentError
            The envelope cannot be ingested whatever we retry (no usable sender identity, no content).
        RetryableError
            Storage or fan-out failed; nothing is half-done in a way a redelivery would not finish.
        """
        identity = sender_identity(envelope, self.normaliser, self.default_region)
        # Pure and request-free: an envelope that gives no identifier (nearly all) costs nothing more below.
        given = given_identities(envelope, self.normaliser, self.default_region)
        keys = MessageKeys.of(envelope)
        customer_id, conversation_id, duplicate = self._land(envelope, identity, keys)
        linking = self._link(envelope, keys, customer_id, given) if given else []
        return self._finish(envelope, keys, customer_id, conversation_id, duplicate, linking)

    def _land(self, envelope: InboundEnvelope, identity: Identity, keys: MessageKeys) -> tuple[str, str, bool]:
        known = self.repository.find_customer(identity.lookup_kind, identity.lookup_value)
        if known is None:
            if self.repository.create_customer(self._new_customer(envelope, identity, keys)):
                record = timeline_record(envelope, keys, keys.customer_id, keys.conversation_id)
                duplicate = self.repository.record(record) is not None
                return keys.customer_id, keys.conversation_id, duplicate
            # Someone claimed the identity first (a parallel first message, or an earlier delivery of this one).
            known = self._claimed(identity)
        if identity.kind not in known.kinds:
            self.repository.add_identity(known.customer_id, identity)
        conversation_id, duplicate = self._attach(envelope, keys, known.customer_id)
        return known.customer_id, conversation_id, duplicate

    def _claimed(self, identity: Identity) -> KnownIdentity:
        known = self.repository.find_customer(identity.lookup_kind, identity.lookup_value, consistent=True)
        if known is None:
            raise RetryableError("The identity was claimed but cannot be read yet; try again.")
        return known

    def _link(
        self, envelope: InboundEnvelope, keys: MessageKeys, customer_id: str, given: Sequence[GivenIdentity]
    ) -> list[DomainEvent]:
        """Link each given identifier to ``customer_id``, or suggest a merge with the profile that holds it.

        One eventually consistent read per identifier; a write only when something changes. Not merging here:
        an identifier held by another profile becomes a ``SUGGEST#<other>`` item and a ``customer.merge_suggested``
        event (merging, recorded and reversible, is the next step).
        """
        events: list[DomainEvent] = []
        held_by_others: dict[str, list[GivenIdentity]] = {}
        for item in given:
            identity = item.identity
            known = self.repository.find_customer(identity.lookup_kind, identity.lookup_value)
            if known is None:
                if self.repository.link_identity(customer_id, identity, keys.seed):
                    events.append(self._linked_event(envelope, keys, customer_id, item))
                    continue
                # Claimed meanwhile: by another message of this customer, a redelivery of this one, or someone else.
                known = self._claimed(identity)
            if known.customer_id != customer_id:
                held_by_others.setdefault(known.customer_id, []).append(item)
                continue
            if identity.kind not in known.kinds:
                self.repository.add_identity(customer_id, identity)
            if known.linked_by == keys.seed:
                # This message linked it on an earlier delivery that may have crashed before publishing.
                events.append(self._linked_event(envelope, keys, customer_id, item))
        for other_id, items in held_by_others.items():
            suggestion = MergeSuggestion(
                customer_id=customer_id,
                other_customer_id=other_id,
                identity_kinds=frozenset(item.identity.kind for item in items),
                verified=any(item.identity.verified for item in items),
                evidence=items[0].evidence,
            )
            recorded = self.repository.suggest_merge(suggestion)
            logger.info(
                "identifier held by another customer",
                extra={"customer_id": customer_id, "other_customer_id": other_id, "recorded": recorded,
                       "identity_kinds": sorted(str(kind) for kind in suggestion.identity_kinds)},
            )  # fmt: skip
            if recorded:
                events.append(self._suggested_event(envelope, keys, suggestion))
        return events

    def _linked_event(
        self, envelope: InboundEnvelope, keys: MessageKeys, customer_id: str, item: GivenIdentity
    ) -> DomainEvent:
        identity = item.identity
        data: dict[str, Any] = {
            "customer_id": customer_id,
            "identity_kind": str(identity.kind),
            "verified": identity.verified,
            **_evidence_data(item.evidence),
        }
        if identity.country is not None:
            data.update(country=identity.country, document_type=identity.document_type)
        seed = f"{IDENTITY_LINKED}:{identity.lookup_kind}:{identity.lookup_value}"
        return self._event(envelope, keys, IDENTITY_LINKED, customer_id, data, seed=seed)

    def _suggested_event(
        self, envelope: InboundEnvelope, keys: MessageKeys, suggestion: MergeSuggestion
    ) -> DomainEvent:
        data: dict[str, Any] = {
            "customer_id": suggestion.customer_id,
            "other_customer_id": suggestion.other_customer_id,
            "identity_kinds": sorted(str(kind) for kind in suggestion.identity_kinds),
            "verified": suggestion.verified,
            **_evidence_data(suggestion.evidence),
        }
        seed = f"{MERGE_SUGGESTED}:{suggestion.other_customer_id}"
        return self._event(envelope, keys, MERGE_SUGGESTED, suggestion.customer_id, data, seed=seed)

    def _attach(self, envelope: InboundEnvelope, keys: MessageKeys, customer_id: str) -> tuple[str, bool]:
        touch = HeadTouch(
            at=envelope.occurred_at,
            window_start=window_start(envelope.occurred_at, self.reopen_window),
            channel=envelope.channel,
            inbound=is_from_customer(envelope),
            message_id=keys.message_id if envelope.parts else None,
        )
        for _attempt in range(_ATTEMPTS):
            outcome = self.repository.continue_conversation(customer_id, touch)
            if isinstance(outcome, Continued):
                existing = self.repository.record(timeline_record(envelope, keys, customer_id, outcome.conversation_id))
                if existing is None:
                    return outcome.conversation_id, False
                return existing.conversation_id or outcome.conversation_id, True
            conversation, head = self._new_conversation(envelope, keys, customer_id)
            record = timeline_record(envelope, keys, customer_id, conversation.id)
            opened = self.repository.open_conversation(conversation, head, outcome.head, record)
            if isinstance(opened, Opened):
                return conversation.id, False
            if isinstance(opened, AlreadyRecorded):
                return opened.conversation_id or conversation.id, True
            assert isinstance(opened, HeadChanged)
        raise RetryableError("The customer's conversation kept changing under us; try again.")

    def _new_customer(self, envelope: InboundEnvelope, identity: Identity, keys: MessageKeys) -> NewCustomer:
        now = self.clock()
        conversation, head = self._new_conversation(envelope, keys, keys.customer_id)
        profile = CustomerProfile(
            id=keys.customer_id,
            display_name=envelope.sender.name,
            created_at=now,
            updated_at=now,
        )
        return NewCustomer(profile=profile, identity=identity, conversation=conversation, head=head)

    @staticmethod
    def _new_conversation(
        envelope: InboundEnvelope, keys: MessageKeys, customer_id: str
    ) -> tuple[Conversation, HeadState]:
        at = envelope.occurred_at
        conversation = Conversation(
            id=keys.conversation_id,
            customer_id=customer_id,
            status=ConversationStatus.OPEN,
            channels=(envelope.channel,),
            opened_at=at,
            last_message_at=at,
            last_channel=envelope.channel,
        )
        head = HeadState(
            conversation_id=conversation.id,
            status=conversation.status,
            opened_at=at,
            last_message_at=at,
            last_channel=envelope.channel,
            channels=frozenset({envelope.channel}),
            last_inbound_at={str(envelope.channel): at} if is_from_customer(envelope) else {},
            last_message_id=keys.message_id if envelope.parts else None,
        )
        return conversation, head

    def _finish(
        self,
        envelope: InboundEnvelope,
        keys: MessageKeys,
        customer_id: str,
        conversation_id: str,
        duplicate: bool,
        linking: Sequence[DomainEvent] = (),
    ) -> IngestResult:
        events: list[DomainEvent] = []
        # Seeded ids tell whether THIS message created the customer or the conversation, so a redelivery after a
        # crash re-publishes those events too (under the same ids) instead of losing them.
        if customer_id == keys.customer_id:
            events.append(self._event(envelope, keys, "customer.created", customer_id, {"customer_id": customer_id}))
        if conversation_id == keys.conversation_id:
            data = {"conversation_id": conversation_id, "channel": str(envelope.channel)}
            events.append(self._event(envelope, keys, "conversation.opened", customer_id, data))
        events.append(
            self._event(
                envelope, keys, EVENT_TYPE[envelope.kind], customer_id, _entry_data(envelope, keys, conversation_id)
            )
        )
        events.extend(linking)
        self.publisher.publish(events)
        return IngestResult(
            customer_id=customer_id,
            conversation_id=conversation_id,
            entry_id=keys.entry_id,
            duplicate=duplicate,
            event_types=tuple(event.type for event in events),
        )

    @staticmethod
    def _event(
        envelope: InboundEnvelope,
        keys: MessageKeys,
        event_type: str,
        customer_id: str,
        data: dict[str, Any],
        *,
        seed: str | None = None,
    ) -> DomainEvent:
        return DomainEvent.new(
            event_type,
            source=SOURCE,
            correlation_id=envelope.correlation_id,
            customer_id=customer_id,
            occurred_at=envelope.occurred_at,
            id_seed=keys.event_seed(seed or event_type),
            data=data,
        )


def _evidence_data(evidence: Evidence) -> dict[str, Any]:
    return {
        "source": evidence.source,
        "source_channel": str(evidence.channel),
        "provider": evidence.provider,
        "provider_message_id": evidence.provider_message_id,
        "at": evidence.at.isoformat(),
    }


def _entry_data(envelope: InboundEnvelope, keys: MessageKeys, conversation_id: str) -> dict[str, Any]:
    data: dict[str, Any] = {
        "timeline_entry_id": keys.entry_id,
        "conversation_id": conversation_id,
        "kind": str(envelope.kind),
        "channel": str(envelope.channel),
        "provider": str(envelope.provider),
        "provider_message_id": envelope.provider_message_id,
        "received_at": envelope.received_at.isoformat(),
    }
    if envelope.parts:
        data["message_id"] = keys.message_id
        data["direction"] = "outbound" if envelope.kind == InboundKind.ECHO else "inbound"
        parts = [part.model_dump(mode="json") for part in envelope.parts]
        if len(json.dumps(parts).encode()) <= _MAX_INLINE_PARTS_BYTES:
            data["parts"] = parts
        else:
            data["parts_omitted"] = True
    if envelope.call is not None:
        data["call"] = envelope.call.model_dump(mode="json", exclude_none=True)
    if envelope.in_reply_to:
        data["in_reply_to"] = envelope.in_reply_to
    return data
