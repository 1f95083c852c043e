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

Conversation continuity (continue the open case within the reopen window on any channel, or open a new
conversation) is ``Continuity``, the one implementation: the agent API's in-store visits use it too
(``shared.agent_writes``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final

from shared.errors import Conflict, RetryableError
from shared.ingest.linking import GivenIdentity, LinkingNormaliser, given_identities
from shared.ingest.ports import (
    AlreadyRecorded,
    Clock,
    Continued,
    ConversationRepository,
    EventPublisher,
    Evidence,
    HeadChanged,
    HeadTouch,
    IngestRepository,
    KnownIdentity,
    MergeRequests,
    MergeSuggestion,
    NewCustomer,
    Opened,
    OutboundCommands,
    TimelineRecord,
)
from shared.ingest.rules import (
    EVENT_TYPE,
    MessageKeys,
    head_touch,
    is_from_customer,
    keyword_reply,
    name_key,
    opened_conversation,
    sender_identity,
    sender_key,
    timeline_record,
)
from shared.merging import MergeEvidence, MergeRefused, Refusal
from shared.models.common import Channel, IdPrefix, new_id
from shared.models.customer import CustomerProfile
from shared.models.events import DomainEvent
from shared.models.identity import Identity
from shared.models.inbound import InboundEnvelope, InboundKind
from shared.models.timeline import Actor, ActorKind
from shared.observability import logger
from shared.outbound.consent import read_keyword

SOURCE: Final = "hilo.ingest"
IDENTITY_LINKED: Final = "customer.identity_linked"
MERGE_SUGGESTED: Final = "customer.merge_suggested"
CONSENT_CHANGED: Final = "consent.changed"
#: Decisions retried when another message moved the head between our read and our write.
_ATTEMPTS: Final = 4
#: Message content travels in the event only while it is small; consumers read the timeline entry otherwise.
_MAX_INLINE_PARTS_BYTES: Final = 32 * 1024


#: Builds the timeline entry once the customer (a merge may redirect it) and conversation are known.
RecordFactory = Callable[[str, str], TimelineRecord]


@dataclass(frozen=True)
class Attached:
    """Where an entry landed: its customer and conversation, and whether it was there already (a retry wrote
    nothing)."""

    customer_id: str
    conversation_id: str
    duplicate: bool


class Continuity:
    """One customer, one case: put a timeline entry on the customer's open conversation, or open one.

    The single implementation of conversation continuity, for ingest's envelopes and the agent API's visits. An
    entry within the reopen window of an open or pending conversation continues it, whatever its channel
    (the head's conditional update checks the rule, never a stale read); otherwise the conversation, the new head
    and the entry are written together. The entry's key is deterministic, so a retry finds it and writes nothing.
    """

    def __init__(self, repository: ConversationRepository, reopen_window: timedelta = timedelta(hours=72)) -> None:
        self.repository = repository
        self.reopen_window = reopen_window

    def touch(self, at: datetime, channel: Channel, *, inbound: bool, message_id: str | None = None) -> HeadTouch:
        """What an entry at ``at`` on ``channel`` does to the head, with this process's reopen window."""
        return head_touch(at, channel, self.reopen_window, inbound=inbound, message_id=message_id)

    def attach(
        self,
        customer_id: str,
        touch: HeadTouch,
        conversation_id: str,
        record: RecordFactory,
        *,
        follow_merges: bool = False,
    ) -> Attached:
        """Continue the customer's case with this entry, or open a new conversation for it.

        Parameters
        ----------
        customer_id : str
            An existing customer.
        touch : HeadTouch
            The entry's time and channel (``touch``).
        conversation_id : str
            The id of the conversation this entry opens if it opens one; seeded by the entry's input, so a retry
            opens the same one (and tells, by comparing ids, that it was this entry that opened it).
        record : callable
            (customer id, conversation id) → the timeline record to write.
        follow_merges : bool
            When the customer was merged into another (its head says so), put the entry on the survivor: ingest
            resolved the sender a moment before the merge moved its pointers. Otherwise that is a Conflict.

        Returns
        -------
        Attached
            The conversation the entry is on, and whether it was recorded before.

        Raises
        ------
        RetryableError
            The head kept moving under us (other entries of the same customer), or storage failed.
        Conflict
            The customer was merged into another and ``follow_merges`` is off.
        """
        for _attempt in range(_ATTEMPTS):
            outcome = self.repository.continue_conversation(customer_id, touch)
            if isinstance(outcome, Continued):
                existing = self.repository.record(record(customer_id, outcome.conversation_id))
                if existing is None:
                    return Attached(customer_id, outcome.conversation_id, duplicate=False)
                return Attached(customer_id, existing.conversation_id or outcome.conversation_id, duplicate=True)
            if outcome.head is not None and outcome.head.merged_into is not None:
                if not follow_merges:
                    raise Conflict(f"This customer was merged into {outcome.head.merged_into}; write there.")
                customer_id = outcome.head.merged_into
                continue
            conversation, head = opened_conversation(customer_id, conversation_id, touch)
            opened = self.repository.open_conversation(
                conversation, head, outcome.head, record(customer_id, conversation.id)
            )
            if isinstance(opened, Opened):
                return Attached(customer_id, conversation.id, duplicate=False)
            if isinstance(opened, AlreadyRecorded):
                return Attached(customer_id, opened.conversation_id or conversation.id, duplicate=True)
            assert isinstance(opened, HeadChanged)
        raise RetryableError("The customer's conversation kept changing under us; try again.")


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
        merges: MergeRequests | None = None,
        auto_merge: str = "strong",
        outbound: OutboundCommands | None = None,
    ) -> None:
        self.repository = repository
        self.publisher = publisher
        self.normaliser = normaliser
        self.clock = clock
        self.reopen_window = reopen_window
        self.default_region = default_region
        self.continuity = Continuity(repository, reopen_window)
        self.merges = merges
        self.auto_merge = auto_merge
        self.outbound = outbound

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
        if customer_id == keys.customer_id:  # this message created the customer (now, or on an earlier delivery)
            linking += self._same_name(envelope, keys, customer_id)
        linking += self._keyword(envelope, keys, customer_id)
        return self._finish(envelope, keys, customer_id, conversation_id, duplicate, linking)

    def _land(self, envelope: InboundEnvelope, identity: Identity, keys: MessageKeys) -> tuple[str, str, bool]:
        known = self.repository.find_customer(identity.lookup_kind, identity.lookup_value)
        if known is None:
            if self.repository.create_customer(self._new_customer(envelope, identity, keys)):
                record = _record(envelope, keys, identity, keys.customer_id, keys.conversation_id)
                duplicate = self.repository.record(record) is not None
                return keys.customer_id, keys.conversation_id, duplicate
            # Someone claimed the identity first (a parallel first message, or an earlier delivery of this one).
            known = self._claimed(identity)
        if identity.kind not in known.kinds:
            self.repository.add_identity(known.customer_id, identity)
        return self._attach(envelope, keys, identity, known.customer_id)

    def _claimed(self, identity: Identity) -> KnownIdentity:
        known = self.repository.find_customer(identity.lookup_kind, identity.lookup_value, consistent=True)
        if known is None:
            raise RetryableError("The identity was claimed but cannot be read yet; try again.")
        return known

    def _link(
        self, envelope: InboundEnvelope, keys: MessageKeys, customer_id: str, given: Sequence[GivenIdentity]
    ) -> list[DomainEvent]:
        """Link each given identifier to ``customer_id``, or suggest a merge with the profile that holds it.

        One eventually consistent read per identifier; a write only when something changes. An identifier held by
        another profile means the two are one person: they are merged (recorded, reversible: ``shared.merging``)
        when ``HILO_AUTO_MERGE`` allows, otherwise it becomes a ``SUGGEST#<other>`` item and a
        ``customer.merge_suggested`` event for an agent.
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
            if self._merged(keys, customer_id, other_id, items):
                continue
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

    def _keyword(self, envelope: InboundEnvelope, keys: MessageKeys, customer_id: str) -> list[DomainEvent]:
        """An opt-out or opt-in keyword ("BAJA", "STOP", "ALTA"): the consents go on the profile at once, and a
        ``consent.changed`` event says so, and the confirmation goes to OutboundQueue (unless the provider replies).

        Pure and request-free for every other message. A redelivery applies the same records (nothing changes) and
        re-publishes the event under the same id.
        """
        if envelope.kind != InboundKind.MESSAGE or len(envelope.parts) != 1:
            return []
        (part,) = envelope.parts
        text = getattr(part, "text", None)
        intent = read_keyword(text, channel=envelope.channel, at=envelope.occurred_at) if text else None
        if intent is None:
            return []
        if intent.consents:
            locale = self.repository.apply_consents(customer_id, intent.consents).locale
            if locale != "es":
                intent = read_keyword(text, channel=envelope.channel, at=envelope.occurred_at, locale=locale) or intent
        data: dict[str, Any] = {
            "kind": str(intent.kind),
            "keyword": intent.keyword,
            "channel": str(intent.channel),
            "consents": [consent.model_dump(mode="json") for consent in intent.consents],
            "reply": intent.reply,
            "language": intent.language,
            "provider_replies": intent.provider_replies,
        }
        if self.outbound is not None and not intent.provider_replies:
            self.outbound.send(keyword_reply(envelope, customer_id, intent.reply))
        logger.info("consent keyword", extra={"customer_id": customer_id, "kind": str(intent.kind),
                                              "channel": str(intent.channel), "keyword": intent.keyword})  # fmt: skip
        return [self._event(envelope, keys, CONSENT_CHANGED, customer_id, data)]

    def _same_name(self, envelope: InboundEnvelope, keys: MessageKeys, customer_id: str) -> list[DomainEvent]:
        """A new customer whose full name another profile has: a weak signal, so a suggestion, never a merge.

        Only when a customer is created (one index query then; none for the messages after), and only for names
        of two words or more. A redelivery finds its own suggestions and re-publishes their events (same ids).
        """
        key = name_key(envelope.sender.name)
        if key is None:
            return []
        events: list[DomainEvent] = []
        evidence = Evidence(
            provider=str(envelope.provider),
            provider_message_id=envelope.provider_message_id,
            channel=envelope.channel,
            at=envelope.occurred_at,
            source="same_name",
        )
        for other_id in self.repository.customers_named(key):
            if other_id == customer_id:
                continue
            suggestion = MergeSuggestion(customer_id, other_id, frozenset(), verified=False, evidence=evidence)
            if self.repository.suggest_merge(suggestion):
                events.append(self._suggested_event(envelope, keys, suggestion))
        return events

    def _merged(self, keys: MessageKeys, customer_id: str, other_id: str, items: Sequence[GivenIdentity]) -> bool:
        """Merge the sender's profile with the one that holds what they gave, when ``HILO_AUTO_MERGE`` allows.

        Returns False when the policy (or a "never merge" rule, or a profile merged meanwhile) leaves it to an
        agent, so the caller records a suggestion instead. The merge id is seeded by the message and the other
        profile, so a redelivery resumes the same merge instead of starting another.
        """
        verified = any(item.identity.verified for item in items)
        if self.merges is None or self.auto_merge == "off" or (self.auto_merge == "verified" and not verified):
            return False
        first = items[0].evidence
        evidence = MergeEvidence(
            source=first.source,
            identity_kinds=tuple(sorted({item.identity.kind for item in items})),
            verified=verified,
            channel=first.channel,
            provider=first.provider,
            provider_message_id=first.provider_message_id,
            actor=Actor(kind=ActorKind.CUSTOMER),
            at=first.at,
        )
        merge_id = new_id(IdPrefix.MERGE, at=first.at, seed=f"{keys.seed}:merge:{other_id}")
        try:
            record = self.merges.request(customer_id, other_id, evidence, merge_id=merge_id)
        except MergeRefused as refused:
            if refused.refusal == Refusal.BUSY:
                raise RetryableError("A merge of this customer is running; try again once it is done.") from refused
            logger.info("merge refused", extra={"customer_id": customer_id, "other_customer_id": other_id,
                                                "refusal": str(refused.refusal)})  # fmt: skip
            return refused.refusal == Refusal.NEVER_MERGE  # an agent said no: do not suggest it again either
        logger.info("profiles merged", extra={"merge_id": record.merge_id, "survivor_id": record.survivor_id,
                                              "absorbed_id": record.absorbed_id, "source": first.source})  # fmt: skip
        return True

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

    def _touch(self, envelope: InboundEnvelope, keys: MessageKeys) -> HeadTouch:
        return self.continuity.touch(
            envelope.occurred_at,
            envelope.channel,
            inbound=is_from_customer(envelope),
            message_id=keys.message_id if envelope.parts else None,
        )

    def _attach(
        self, envelope: InboundEnvelope, keys: MessageKeys, identity: Identity, customer_id: str
    ) -> tuple[str, str, bool]:
        def record(customer: str, conversation_id: str) -> TimelineRecord:
            return _record(envelope, keys, identity, customer, conversation_id)

        touch = self._touch(envelope, keys)
        attached = self.continuity.attach(customer_id, touch, keys.conversation_id, record, follow_merges=True)
        return attached.customer_id, attached.conversation_id, attached.duplicate

    def _new_customer(self, envelope: InboundEnvelope, identity: Identity, keys: MessageKeys) -> NewCustomer:
        now = self.clock()
        conversation, head = opened_conversation(keys.customer_id, keys.conversation_id, self._touch(envelope, keys))
        profile = CustomerProfile(
            id=keys.customer_id,
            display_name=envelope.sender.name,
            created_at=now,
            updated_at=now,
        )
        return NewCustomer(profile=profile, identity=identity, conversation=conversation, head=head)

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


def _record(
    envelope: InboundEnvelope, keys: MessageKeys, identity: Identity, customer_id: str, conversation_id: str
) -> TimelineRecord:
    """The envelope's timeline record, marked with the sender's lookup key: an unmerge returns to the absorbed
    profile what its identities brought in while the two were one (``shared.merging``)."""
    record = timeline_record(envelope, keys, customer_id, conversation_id)
    return replace(record, extras={**record.extras, "sender_key": sender_key(identity)})


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
