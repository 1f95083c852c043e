"""Merging two profiles that turned out to be one person, and undoing it.

A merge is recorded before anything moves (``MergeRecord``, the audit: who, why, which identifier matched and
where it came from), then carried out by the merge function from MergeQueue: the absorbed profile's identities,
conversations, timeline and other items are COPIED under the survivor and its identity pointers moved; its own
items stay where they were, parked. Unmerge deletes the copies, moves the pointers back, returns what arrived
through the absorbed profile's identities meanwhile, and restores both profiles' fields the merge changed. A
"never merge these two" rule (set by every unmerge unless told otherwise) refuses the merge from then on.

This module holds the rules (who survives, how two profiles and two current conversations combine, how a profile
is restored) and the use case over its ports; ``shared.adapters.merge_store`` is the DynamoDB side.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from shared.errors import Conflict, NotFound, RetryableError
from shared.ingest.ports import Clock, EventPublisher, HeadState, MergeSuggestion
from shared.models.common import Channel, CustomerId, IdPrefix, UtcDatetime, new_id
from shared.models.conversation import ConversationStatus
from shared.models.customer import Consent, CustomerProfile
from shared.models.events import DomainEvent
from shared.models.identity import IdentityKind
from shared.models.timeline import Actor
from shared.outbound.consent import merge_consents

SOURCE: Final = "hilo.merge"
MERGED: Final = "customer.merged"
UNMERGED: Final = "customer.unmerged"
#: A sweep runs this long after a merge or unmerge finished: longer than ingest's timeout (30 s), so a message
#: that resolved the old owner just before the pointers moved has landed, and is carried over too.
SWEEP_DELAY_SECONDS: Final = 120
_ACTIVE: Final = (ConversationStatus.OPEN, ConversationStatus.PENDING)


class MergeStatus(StrEnum):
    """Where a merge stands; ``merging``/``unmerging`` while the merge function is moving items."""

    MERGING = "merging"
    MERGED = "merged"
    UNMERGING = "unmerging"
    UNMERGED = "unmerged"


class AutoMerge(StrEnum):
    """``HILO_AUTO_MERGE``: which identifiers a customer gives make ingest merge their profile with its holder."""

    #: Any strong identifier (phone, e-mail, national ID, CRM id), typed or verified: DESIGN §4's default.
    STRONG = "strong"
    #: Only identifiers the provider vouches for (a Telegram contact share); typed ones become suggestions.
    VERIFIED = "verified"
    #: Never: every match is a suggestion for an agent to act on.
    OFF = "off"


class MergeEvidence(BaseModel):
    """Why two profiles were merged: the identifier that matched and where it came from, or the agent's reason."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``ivr_digits``, ``webchat_email``, ``telegram_contact``, ``agent``...
    source: str = Field(min_length=1, max_length=64)
    identity_kinds: tuple[IdentityKind, ...] = ()
    verified: bool = False
    channel: Channel | None = None
    provider: str | None = None
    provider_message_id: str | None = None
    actor: Actor
    reason: str | None = Field(default=None, max_length=500)
    at: UtcDatetime


class MergeRecord(BaseModel):
    """The audit record of one merge, kept under the survivor (``MERGE#<merge id>``) for ever."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    merge_id: str = Field(pattern=r"^mrg_[0-9A-HJKMNP-TV-Z]{26}$")
    survivor_id: CustomerId
    absorbed_id: CustomerId
    status: MergeStatus
    evidence: MergeEvidence
    requested_at: UtcDatetime
    completed_at: UtcDatetime | None = None
    unmerged_at: UtcDatetime | None = None
    unmerged_by: Actor | None = None
    unmerge_reason: str | None = None
    #: The absorbed profile's conversation that was joined to the survivor's (both were current), if any.
    folded_conversation_id: str | None = None
    #: The survivor's conversation it was joined to.
    into_conversation_id: str | None = None
    #: ``<lookup kind>#<lookup value>`` of every identity pointer the merge moved to the survivor.
    moved_identities: tuple[str, ...] = ()
    entries_copied: int = 0
    #: The survivor's fields as they were, and as the merge left them: unmerge restores what nobody changed since.
    survivor_before: ProfileFields | None = None
    survivor_after: ProfileFields | None = None


class ProfileFields(BaseModel):
    """The profile fields a merge may change on the survivor."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    display_name: str | None = None
    time_zone: str | None = None
    attributes: dict[str, Any] = Field(default_factory=dict)
    consents: tuple[Consent, ...] = ()

    @classmethod
    def of(cls, profile: CustomerProfile) -> ProfileFields:
        return cls(
            display_name=profile.display_name,
            time_zone=profile.time_zone,
            attributes=dict(profile.attributes),
            consents=profile.consents,
        )


MergeRecord.model_rebuild()


class MergeCommand(BaseModel):
    """MergeQueue's message: carry out (or sweep after) a recorded merge or unmerge."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["merge.run"] = "merge.run"
    action: Literal["merge", "unmerge"]
    merge_id: str
    survivor_id: CustomerId
    #: The late pass that carries over what landed on the old owner while pointers were moving.
    sweep: bool = False


class MergeBody(BaseModel):
    """``POST /v1/customers/{id}/merge``: the other profile, and why the agent knows they are one person."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    other_customer_id: CustomerId
    reason: str | None = Field(default=None, min_length=1, max_length=500)


class UnmergeBody(BaseModel):
    """``POST /v1/customers/{id}/unmerge``: which merge to undo; by default the two are kept apart from then on."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    merge_id: str = Field(pattern=r"^mrg_[0-9A-HJKMNP-TV-Z]{26}$")
    reason: str | None = Field(default=None, min_length=1, max_length=500)
    never_merge: bool = True


class NeverMergeBody(BaseModel):
    """``POST /v1/customers/{id}/never-merge``: a rule that refuses merging these two, automatically or not."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    other_customer_id: CustomerId
    reason: str | None = Field(default=None, min_length=1, max_length=500)


# ------------------------------------------------------------------------------------------ rules


def survivor_first(a: CustomerProfile, b: CustomerProfile) -> tuple[CustomerProfile, CustomerProfile]:
    """The older profile survives (its id is the one the CRM and other systems have had longest); ties by id."""
    return (a, b) if (a.created_at, a.id) <= (b.created_at, b.id) else (b, a)


def combined_profile(survivor: CustomerProfile, absorbed: CustomerProfile, at: datetime) -> CustomerProfile:
    """The survivor with what only the absorbed profile knew: missing fields and attributes, newer consents.

    The survivor's values win where both have one; per (channel, purpose) the most recent consent wins, because
    it is the customer's latest choice (an opt-out given on the absorbed profile's channel stays an opt-out).
    """
    attributes = {**absorbed.attributes, **survivor.attributes}
    return survivor.model_copy(
        update={
            "display_name": survivor.display_name or absorbed.display_name,
            "time_zone": survivor.time_zone or absorbed.time_zone,
            "attributes": attributes,
            "consents": merge_consents(survivor.consents, absorbed.consents),
            "updated_at": max(at, survivor.updated_at),
        }
    )


def restored_profile(
    current: CustomerProfile, before: ProfileFields, after: ProfileFields, at: datetime
) -> CustomerProfile:
    """Undo a merge's changes to the survivor, keeping every change made since (a value that is no longer what
    the merge left is someone's later decision)."""

    def undo(now: Any, merged: Any, was: Any) -> Any:
        return was if now == merged else now

    attributes = dict(current.attributes)
    for key in set(after.attributes) | set(before.attributes):
        value = undo(current.attributes.get(key), after.attributes.get(key), before.attributes.get(key))
        if value is None and key not in before.attributes:
            attributes.pop(key, None)
        else:
            attributes[key] = value
    merged_consents = {(c.channel, str(c.purpose)): c for c in after.consents}
    before_consents = {(c.channel, str(c.purpose)): c for c in before.consents}
    consents: list[Consent] = []
    for consent in current.consents:
        pair = (consent.channel, str(consent.purpose))
        if merged_consents.get(pair) == consent and consent != before_consents.get(pair):
            if pair in before_consents:
                consents.append(before_consents[pair])
            continue
        consents.append(consent)
    return current.model_copy(
        update={
            "display_name": undo(current.display_name, after.display_name, before.display_name),
            "time_zone": undo(current.time_zone, after.time_zone, before.time_zone),
            "attributes": attributes,
            "consents": tuple(consents),
            "updated_at": max(at, current.updated_at),
        }
    )


@dataclass(frozen=True)
class HeadPlan:
    """The survivor's head after the merge, and the absorbed conversation joined into the survivor's (if any)."""

    head: HeadState | None
    folded_conversation_id: str | None = None
    into_conversation_id: str | None = None


def combined_head(survivor: HeadState | None, absorbed: HeadState | None, reopen_window: timedelta) -> HeadPlan:
    """One case: two current conversations (open or pending, last messages within the reopen window of each
    other) become the survivor's, with both channels; otherwise the survivor's head is the more recent one."""
    if absorbed is None:
        return HeadPlan(survivor)
    if survivor is None:
        return HeadPlan(absorbed)
    both_current = (
        survivor.status in _ACTIVE
        and absorbed.status in _ACTIVE
        and abs(survivor.last_message_at - absorbed.last_message_at) <= reopen_window
    )
    if both_current:
        later = max(survivor, absorbed, key=lambda head: head.last_message_at)
        inbound = dict(survivor.last_inbound_at)
        for channel, at in absorbed.last_inbound_at.items():
            inbound[channel] = max(at, inbound.get(channel, at))
        head = replace(
            survivor,
            opened_at=min(survivor.opened_at, absorbed.opened_at),
            last_message_at=later.last_message_at,
            last_channel=later.last_channel,
            channels=survivor.channels | absorbed.channels,
            last_inbound_at=inbound,
            last_message_id=later.last_message_id,
        )
        return HeadPlan(head, absorbed.conversation_id, survivor.conversation_id)
    if absorbed.status in _ACTIVE and survivor.status not in _ACTIVE:
        return HeadPlan(absorbed)
    if survivor.status in _ACTIVE:
        return HeadPlan(survivor)
    return HeadPlan(max(survivor, absorbed, key=lambda head: head.last_message_at))


# ------------------------------------------------------------------------------------------ ports


class Refusal(StrEnum):
    """Why a merge cannot begin."""

    NEVER_MERGE = "never_merge"
    ALREADY_MERGED = "already_merged"
    BUSY = "busy"


class MergeRefused(Conflict):
    """A merge that cannot begin (409): ``refusal`` says why, so ingest can tell "later" from "never"."""

    def __init__(self, message: str, refusal: Refusal) -> None:
        super().__init__(message)
        self.refusal = refusal


class MergeRepository(Protocol):
    """Port: ``shared.adapters.merge_store.MergeStore`` on ProfileTable."""

    def get_profile(self, customer_id: str) -> CustomerProfile | None: ...

    def begin(self, record: MergeRecord) -> MergeRecord | Refusal:
        """Record the merge and mark both profiles at once, or say why not (an existing record is returned)."""
        ...

    def get_record(self, survivor_id: str, merge_id: str) -> MergeRecord | None: ...

    def records(self, customer_id: str) -> tuple[MergeRecord, ...]: ...

    def absorb(self, record: MergeRecord, plan_head: Any) -> MergeRecord:
        """Move pointers, copy items, set the survivor's head and profile; idempotent. Returns the record as saved."""
        ...

    def begin_unmerge(self, record: MergeRecord) -> MergeRecord:
        """Mark the merge ``unmerging`` (Conflict when it is not ``merged`` or either profile is busy)."""
        ...

    def separate(self, record: MergeRecord, restore: Any) -> MergeRecord:
        """Undo the copies and pointer moves, restore both profiles; idempotent."""
        ...

    def never_merge(self, a: str, b: str, actor: Actor, reason: str | None, at: datetime) -> None: ...

    def never_merge_rules(self, customer_id: str) -> tuple[str, ...]: ...

    def merge_suggestions(self, customer_id: str) -> tuple[MergeSuggestion, ...]: ...


class MergeQueue(Protocol):
    """Port: MergeQueue (standard; the merge function is idempotent, so duplicates are harmless)."""

    def send(self, command: MergeCommand, delay_seconds: int = 0) -> None: ...


# ------------------------------------------------------------------------------------------ the use case


class Merges:
    """Request, carry out and undo merges; the agent API, ingest and the merge function share this one."""

    def __init__(
        self,
        repository: MergeRepository,
        queue: MergeQueue,
        publisher: EventPublisher,
        clock: Clock,
        *,
        reopen_window: timedelta = timedelta(hours=72),
    ) -> None:
        self.repository = repository
        self.queue = queue
        self.publisher = publisher
        self.clock = clock
        self.reopen_window = reopen_window

    def request(
        self, customer_id: str, other_id: str, evidence: MergeEvidence, *, merge_id: str | None = None
    ) -> MergeRecord:
        """Record that two profiles are one person and queue the work; the older profile survives.

        Parameters
        ----------
        customer_id, other_id : str
            The two profiles, in any order.
        evidence : MergeEvidence
            Why: the identifier and its origin, or the agent and their reason.
        merge_id : str, optional
            A deterministic id (ingest seeds it from the message), so asking again resumes the same merge.

        Returns
        -------
        MergeRecord
            ``merging`` until the merge function has moved everything.

        Raises
        ------
        NotFound
            Either profile does not exist.
        Conflict
            Same profile, already merged, a "never merge" rule, or a merge of either still running.
        """
        if customer_id == other_id:
            raise MergeRefused("A profile cannot be merged with itself.", Refusal.ALREADY_MERGED)
        survivor, absorbed = survivor_first(self._profile(customer_id), self._profile(other_id))
        if merge_id is not None and (existing := self.repository.get_record(survivor.id, merge_id)) is not None:
            return self._queued(existing)  # asked again (a redelivered message): the same merge goes on
        for profile in (survivor, absorbed):
            if profile.merged_into is not None:
                raise MergeRefused(
                    f"Profile {profile.id} was merged into {profile.merged_into}; merge that one.",
                    Refusal.ALREADY_MERGED,
                )
        at = self.clock()
        record = MergeRecord(
            merge_id=merge_id or new_id(IdPrefix.MERGE, at=at),
            survivor_id=survivor.id,
            absorbed_id=absorbed.id,
            status=MergeStatus.MERGING,
            evidence=evidence,
            requested_at=at,
        )
        begun = self.repository.begin(record)
        if begun == Refusal.NEVER_MERGE:
            raise MergeRefused(f"A rule says {survivor.id} and {absorbed.id} must never be merged.", begun)
        if begun == Refusal.ALREADY_MERGED:
            raise MergeRefused("One of the profiles was merged meanwhile; look it up again.", begun)
        if begun == Refusal.BUSY:
            raise MergeRefused(
                "A merge or unmerge of one of these profiles is still running; try again shortly.", begun
            )
        assert isinstance(begun, MergeRecord)
        return self._queued(begun)

    def _queued(self, record: MergeRecord) -> MergeRecord:
        if record.status == MergeStatus.MERGING:
            self.queue.send(MergeCommand(action="merge", merge_id=record.merge_id, survivor_id=record.survivor_id))
        return record

    def unmerge(
        self, customer_id: str, merge_id: str, actor: Actor, *, reason: str | None, never_merge: bool
    ) -> MergeRecord:
        """Start undoing a merge (of which ``customer_id`` is the survivor); optionally forbid it from then on."""
        record = self.repository.get_record(customer_id, merge_id)
        if record is None:
            raise NotFound(f"Customer {customer_id} has no merge {merge_id}.")
        if record.status in (MergeStatus.UNMERGING, MergeStatus.UNMERGED):
            return record
        at = self.clock()
        if never_merge:
            self.repository.never_merge(record.survivor_id, record.absorbed_id, actor, reason, at)
        record = record.model_copy(update={"unmerged_by": actor, "unmerge_reason": reason})
        begun = self.repository.begin_unmerge(record)
        self.queue.send(MergeCommand(action="unmerge", merge_id=merge_id, survivor_id=customer_id))
        return begun

    def never_merge(self, customer_id: str, other_id: str, actor: Actor, reason: str | None) -> None:
        """Forbid merging two profiles (both must exist); idempotent."""
        if customer_id == other_id:
            raise Conflict("A profile cannot be kept apart from itself.")
        self._profile(customer_id)
        self._profile(other_id)
        self.repository.never_merge(customer_id, other_id, actor, reason, self.clock())

    def history(self, customer_id: str) -> dict[str, Any]:
        """A customer's merges (as survivor), the profiles it must never be merged with, and open suggestions."""
        self._profile(customer_id)
        return {
            "merges": [record_view(record) for record in self.repository.records(customer_id)],
            "never_merge_with": list(self.repository.never_merge_rules(customer_id)),
            "suggestions": [
                {
                    "other_customer_id": suggestion.other_customer_id,
                    "identity_kinds": sorted(str(kind) for kind in suggestion.identity_kinds),
                    "verified": suggestion.verified,
                    "source": suggestion.evidence.source,
                    "channel": str(suggestion.evidence.channel),
                    "at": suggestion.evidence.at.isoformat(),
                }
                for suggestion in self.repository.merge_suggestions(customer_id)
            ],
        }

    def run(self, command: MergeCommand) -> MergeRecord | None:
        """Carry out a queued merge or unmerge (idempotent: any number of deliveries have the effect of one)."""
        record = self.repository.get_record(command.survivor_id, command.merge_id)
        if record is None:
            return None  # a command for a merge that was never recorded: nothing to do, nothing to retry
        if command.action == "merge":
            if record.status not in (MergeStatus.MERGING, MergeStatus.MERGED):
                return record  # unmerged meanwhile: the unmerge owns the items now
            first = record.status == MergeStatus.MERGING
            done = self.repository.absorb(record, lambda s, a: combined_head(s, a, self.reopen_window))
            if first or not command.sweep:
                self._announce(done, MERGED)
        else:
            if record.status not in (MergeStatus.UNMERGING, MergeStatus.UNMERGED):
                raise RetryableError("The unmerge is not recorded yet; try again.")
            done = self.repository.separate(record, lambda current, at: _restore(current, record, at))
            if not command.sweep:
                self._announce(done, UNMERGED)
        if not command.sweep:
            self.queue.send(command.model_copy(update={"sweep": True}), delay_seconds=SWEEP_DELAY_SECONDS)
        return done

    def _announce(self, record: MergeRecord, event_type: str) -> None:
        data: dict[str, Any] = {
            "merge_id": record.merge_id,
            "survivor_id": record.survivor_id,
            "absorbed_id": record.absorbed_id,
            "evidence": record.evidence.model_dump(mode="json", exclude_none=True),
            "entries_copied": record.entries_copied,
        }
        event = DomainEvent.new(
            event_type,
            source=SOURCE,
            correlation_id=record.merge_id,
            customer_id=record.survivor_id,
            occurred_at=record.unmerged_at if event_type == UNMERGED and record.unmerged_at else record.requested_at,
            id_seed=f"{record.merge_id}:{event_type}",
            data=data,
        )
        self.publisher.publish([event])

    def _profile(self, customer_id: str) -> CustomerProfile:
        profile = self.repository.get_profile(customer_id)
        if profile is None:
            raise NotFound(f"There is no customer {customer_id}.")
        return profile


def _restore(current: CustomerProfile, record: MergeRecord, at: datetime) -> CustomerProfile:
    if record.survivor_before is None or record.survivor_after is None:
        return current
    return restored_profile(current, record.survivor_before, record.survivor_after, at)


def record_view(record: MergeRecord) -> dict[str, Any]:
    """The JSON an agent reads for one merge."""
    return record.model_dump(mode="json", exclude_none=True, exclude={"survivor_before", "survivor_after"})
