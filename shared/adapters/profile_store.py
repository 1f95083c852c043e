"""The customer side of ProfileTable on DynamoDB: identities, profiles, conversations, heads and the timeline.

Keys and item shapes are docs/data-model.md's (access patterns 1-9). Ingest's hot path, per message of a known
customer: ``GetItem`` on the identity pointer (eventually consistent), one conditional ``UpdateItem`` of the
``HEAD`` (``ALL_NEW`` on success names the conversation; ``ALL_OLD`` on failure says why), one conditional
``PutItem`` of the timeline entry (the dedup). Every ``ClientError`` becomes a ``RetryableError`` (throttling,
conflicts, outages) or, for a request DynamoDB can never accept, a ``PermanentError``.

Values are (de)serialised here rather than with ``boto3.dynamodb.types``: importing boto3 costs cold start.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws
from shared.adapters.dynamodb import from_attribute, from_item, to_attribute, to_item
from shared.errors import InvalidInput, PermanentError, RetryableError
from shared.ingest.ports import (
    AlreadyRecorded,
    Continued,
    ContinueOutcome,
    Evidence,
    HeadChanged,
    HeadState,
    HeadTouch,
    KnownIdentity,
    MergeSuggestion,
    NewCustomer,
    NotContinued,
    Opened,
    OpenOutcome,
    RequestClaim,
    TimelineRecord,
)
from shared.ingest.rules import name_key
from shared.models.common import Channel, sortable_timestamp
from shared.models.conversation import Conversation, ConversationStatus
from shared.models.customer import AppliedConsents, AttributeChange, Consent, CustomerProfile
from shared.models.identity import Identity, IdentityKind
from shared.models.message import Message
from shared.models.timeline import TimelineEntry

#: Requests DynamoDB will never accept as sent (too large, malformed): retrying cannot help.
_PERMANENT_CODES: Final = frozenset({"ValidationException", "ItemCollectionSizeLimitExceededException"})
_CONDITION_FAILED: Final = "ConditionalCheckFailedException"
_CANCELLED: Final = "TransactionCanceledException"
_CONTINUABLE: Final = (ConversationStatus.OPEN, ConversationStatus.PENDING)
_MAX_PAGE: Final = 100
#: A profile's attributes at most (``CustomerProfile.attributes``).
MAX_ATTRIBUTES: Final = 100


# ------------------------------------------------------------------------------------------ keys


def pointer_key(lookup_kind: IdentityKind | str, lookup_value: str) -> dict[str, Any]:
    """Key of the identity pointer ``ID#<lookup kind>#<lookup value>`` (pattern 1)."""
    return {"pk": {"S": f"ID#{lookup_kind}#{lookup_value}"}, "sk": {"S": "ID"}}


def customer_pk(customer_id: str) -> str:
    """Partition of everything one customer owns."""
    return f"CUST#{customer_id}"


def timeline_sk(occurred_at: datetime, entry_id: str) -> str:
    """Sort key of a timeline entry: ``TL#<occurred_at, fixed width>#<entry id>``."""
    return f"TL#{sortable_timestamp(occurred_at)}#{entry_id}"


# ------------------------------------------------------------------------------------------ values


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text)


# ------------------------------------------------------------------------------------------ items


def _profile_item(profile: CustomerProfile) -> dict[str, Any]:
    values = profile.model_dump(mode="json", exclude={"identities"})
    values["created_at"] = profile.created_at
    values["updated_at"] = profile.updated_at
    # Pattern 25: profiles by full name (a weak signal, for merge suggestions only); sparse, like the name itself.
    key = name_key(profile.display_name)
    index = {"gsi1pk": f"NAME#{key}", "gsi1sk": profile.id} if key else {}
    return {"pk": customer_pk(profile.id), "sk": "PROFILE", "type": "PROFILE", **values, **index}


def _identity_sk(identity: Identity) -> str:
    return f"IDENT#{identity.kind}#{identity.lookup_value}"


def _identity_item(customer_id: str, identity: Identity) -> dict[str, Any]:
    values = identity.model_dump(mode="json")
    values["first_seen"] = identity.first_seen
    return {"pk": customer_pk(customer_id), "sk": _identity_sk(identity), "type": "IDENTITY", **values}


def _pointer_item(customer_id: str, identity: Identity, created_at: datetime) -> dict[str, Any]:
    # ``kinds`` (beyond docs/data-model.md's shape) lists which identity kinds of this key the profile holds, so
    # a WhatsApp message from a number first seen by SMS adds its IDENT# entry once, without a read per message.
    return {
        "pk": f"ID#{identity.lookup_kind}#{identity.lookup_value}",
        "sk": "ID",
        "type": "IDENTITY_POINTER",
        "customer_id": customer_id,
        "kind": str(identity.lookup_kind),
        "kinds": {str(identity.kind)},
        "created_at": created_at,
    }


def _suggestion_item(suggestion: MergeSuggestion) -> dict[str, Any]:
    evidence = suggestion.evidence
    return {
        "pk": customer_pk(suggestion.customer_id),
        "sk": f"SUGGEST#{suggestion.other_customer_id}",
        "type": "MERGE_SUGGESTION",
        "customer_id": suggestion.customer_id,
        "other_customer_id": suggestion.other_customer_id,
        # A name-only suggestion names no identifier; DynamoDB has no empty sets, so the attribute is left out.
        "identity_kinds": {str(kind) for kind in suggestion.identity_kinds} or None,
        "verified": suggestion.verified,
        "provider": evidence.provider,
        "provider_message_id": evidence.provider_message_id,
        "channel": str(evidence.channel),
        "at": evidence.at,
        "source": evidence.source,
    }


def _suggestion(values: Mapping[str, Any]) -> MergeSuggestion:
    return MergeSuggestion(
        customer_id=values["customer_id"],
        other_customer_id=values["other_customer_id"],
        identity_kinds=frozenset(IdentityKind(kind) for kind in values.get("identity_kinds", ())),
        verified=values["verified"],
        evidence=Evidence(
            provider=values["provider"],
            provider_message_id=values["provider_message_id"],
            channel=Channel(values["channel"]),
            at=_instant(values["at"]),
            source=values["source"],
        ),
    )


def _conversation_item(conversation: Conversation) -> dict[str, Any]:
    values = conversation.model_dump(mode="json")
    values["opened_at"] = conversation.opened_at
    values["last_message_at"] = conversation.last_message_at
    item: dict[str, Any] = {
        "pk": customer_pk(conversation.customer_id),
        "sk": f"CONV#{conversation.id}",
        "type": "CONVERSATION",
        "gsi1pk": f"CONV#{conversation.id}",
        "gsi1sk": "CONV",
        **values,
    }
    if conversation.status != ConversationStatus.CLOSED:
        item["gsi2pk"] = f"STATUS#{conversation.status}"
        item["gsi2sk"] = f"{sortable_timestamp(conversation.opened_at)}#{conversation.id}"
    return item


def _head_item(customer_id: str, head: HeadState) -> dict[str, Any]:
    return {
        "pk": customer_pk(customer_id),
        "sk": "HEAD",
        "type": "HEAD",
        "conversation_id": head.conversation_id,
        "conversation_status": str(head.status),
        "opened_at": head.opened_at,
        "last_message_at": head.last_message_at,
        "last_channel": str(head.last_channel),
        "channels": {str(channel) for channel in head.channels},
        # Always a map (possibly empty): the per-message update sets one key inside it.
        "last_inbound_at": {channel: sortable_timestamp(at) for channel, at in head.last_inbound_at.items()},
        "last_message_id": head.last_message_id,
    }


def _head(values: Mapping[str, Any]) -> HeadState:
    # A merged profile's head carries status "merged" (so ingest's update fails) and keeps the real one aside.
    merged_into = values.get("merged_into")
    status = values.get("status_before_merge", values["conversation_status"]) if merged_into else None
    return HeadState(
        conversation_id=values["conversation_id"],
        status=ConversationStatus(status or values["conversation_status"]),
        merged_into=merged_into,
        opened_at=_instant(values["opened_at"]),
        last_message_at=_instant(values["last_message_at"]),
        last_channel=Channel(values["last_channel"]),
        channels=frozenset(Channel(channel) for channel in values.get("channels", ())),
        last_inbound_at={channel: _instant(at) for channel, at in (values.get("last_inbound_at") or {}).items()},
        last_message_id=values.get("last_message_id"),
    )


def _timeline_item(record: TimelineRecord) -> dict[str, Any]:
    entry = record.entry
    values: dict[str, Any] = {
        "pk": customer_pk(entry.customer_id),
        "sk": timeline_sk(entry.occurred_at, entry.id),
        "type": "TIMELINE",
        **entry.model_dump(mode="json"),
        "occurred_at": entry.occurred_at,
        "inbound_kind": record.inbound_kind,
        "provider": record.provider,
        "provider_message_id": record.provider_message_id,
        "received_at": record.received_at,
        **record.extras,
    }
    if record.message is not None:
        message = record.message.model_dump(mode="json", exclude_none=True)
        values.update(
            {
                "direction": message["direction"],
                "sender": message["sender"],
                "recipient": message["recipient"],
                "parts": message["parts"],
                "sent_at": record.message.sent_at,
                "status": str(record.message.status) if record.message.status else None,
                "status_history": message.get("status_history", []),
            }
        )
    return values


def _claim_item(customer_id: str, claim: RequestClaim) -> dict[str, Any]:
    return {
        "pk": customer_pk(customer_id),
        "sk": f"REQ#{claim.key}",
        "type": "AGENT_REQUEST",
        "action": claim.action,
        "occurred_at": claim.occurred_at,
        "entry_id": claim.entry_id,
        "timeline_sk": timeline_sk(claim.occurred_at, claim.entry_id),
        "agent_id": claim.agent_id,
    }


def _claim(values: Mapping[str, Any]) -> RequestClaim:
    return RequestClaim(
        key=str(values["sk"]).removeprefix("REQ#"),
        action=values["action"],
        occurred_at=_instant(values["occurred_at"]),
        entry_id=values["entry_id"],
        agent_id=values["agent_id"],
    )


@dataclass(frozen=True)
class StoredEntry:
    """One timeline line as read back: the entry, its message, and the rest of the stored item."""

    entry: TimelineEntry
    message: Message | None
    inbound_kind: str | None
    extras: Mapping[str, Any]


def _stored_entry(values: Mapping[str, Any]) -> StoredEntry:
    entry = TimelineEntry.model_validate({name: values.get(name) for name in TimelineEntry.model_fields})
    message: Message | None = None
    if entry.message_id is not None and "parts" in values:
        message = Message.model_validate(
            {
                "id": entry.message_id,
                "direction": values["direction"],
                "channel": values["channel"],
                "provider": values["provider"],
                "provider_message_id": values.get("provider_message_id"),
                "customer_id": entry.customer_id,
                "conversation_id": entry.conversation_id,
                "sender": values["sender"],
                "recipient": values["recipient"],
                "parts": values["parts"],
                "sent_at": values.get("sent_at"),
                "received_at": values.get("received_at"),
                "status_history": values.get("status_history") or (),
            }
        )
    known = {*TimelineEntry.model_fields, "pk", "sk", "type", "parts", "sender", "recipient", "direction"}
    extras = {name: value for name, value in values.items() if name not in known}
    return StoredEntry(entry=entry, message=message, inbound_kind=values.get("inbound_kind"), extras=extras)


def _conversation(values: Mapping[str, Any], head: HeadState | None) -> Conversation:
    fields = {name: values.get(name) for name in Conversation.model_fields}
    if head is not None and head.conversation_id == values["id"]:
        # The head holds the live fields while the conversation is the current one.
        seen = list(fields["channels"] or [])
        seen += sorted(str(channel) for channel in head.channels if str(channel) not in seen)
        fields.update(
            status=str(head.status), channels=seen, last_message_at=head.last_message_at, last_channel=head.last_channel
        )
    return Conversation.model_validate({name: value for name, value in fields.items() if value is not None})


@dataclass(frozen=True)
class CustomerCard:
    """A customer's profile (with identities) and head, from one query (pattern 3)."""

    profile: CustomerProfile
    head: HeadState | None


@dataclass(frozen=True)
class TimelinePage:
    """Entries newest first; ``cursor`` continues after the last one, None at the end."""

    entries: tuple[StoredEntry, ...]
    cursor: str | None


# ------------------------------------------------------------------------------------------ the store


class ProfileStore:
    """``IngestRepository`` and the agent API's customer reads, on ProfileTable."""

    def __init__(self, table_name: str, client: Any | None = None) -> None:
        self.table_name = table_name
        self._client = client

    @property
    def client(self) -> Any:
        self._client = self._client or aws.client("dynamodb")
        return self._client

    def _call(self, operation: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as error:
            raise _translated(error) from error
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error

    # ------------------------------------------------------------------ ingest (IngestRepository)
    def find_customer(
        self, lookup_kind: IdentityKind, lookup_value: str, *, consistent: bool = False
    ) -> KnownIdentity | None:
        """Pattern 1: who owns ``ID#<kind>#<value>``; eventually consistent unless ``consistent``."""
        found = self._call(
            "get_item",
            TableName=self.table_name,
            Key=pointer_key(lookup_kind, lookup_value),
            ConsistentRead=consistent,
            ProjectionExpression="customer_id, kinds, linked_by, created_at",
        )
        if "Item" not in found:
            return None
        values = from_item(found["Item"])
        return KnownIdentity(
            customer_id=values["customer_id"],
            kinds=frozenset(IdentityKind(kind) for kind in values.get("kinds", ())),
            linked_by=values.get("linked_by"),
            created_at=_instant(values["created_at"]) if values.get("created_at") else None,
        )

    def create_customer(self, new: NewCustomer) -> bool:
        """Pattern 2: pointer, profile, identity entry, conversation and head in one transaction."""
        customer_id = new.profile.id
        return self._put_all_new([
            _pointer_item(customer_id, new.identity, new.profile.created_at),
            _profile_item(new.profile),
            _identity_item(customer_id, new.identity),
            _conversation_item(new.conversation),
            _head_item(customer_id, new.head),
        ])  # fmt: skip

    def _put_all_new(self, items: Sequence[Mapping[str, Any]]) -> bool:
        """Put every item, none existing before, in one transaction; False when the first (a pointer) was taken:
        someone else is (or this request already made) the customer, and the caller re-reads the pointer."""
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self.table_name, "Item": to_item(item),
                             "ConditionExpression": "attribute_not_exists(pk)"}}
                    for item in items
                ]
            )  # fmt: skip
        except ClientError as error:
            if _code(error) == _CANCELLED and _reasons(error)[:1] == ["ConditionalCheckFailed"]:
                return False
            raise _translated(error) from error
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return True

    def add_identity(self, customer_id: str, identity: Identity) -> None:
        """Put the IDENT# entry (if absent), then mark its kind on the pointer; both idempotent, in that order."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=to_item(_identity_item(customer_id, identity)),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except ClientError as error:
            if _code(error) != _CONDITION_FAILED:
                raise _translated(error) from error
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        self._call(
            "update_item",
            TableName=self.table_name,
            Key=pointer_key(identity.lookup_kind, identity.lookup_value),
            UpdateExpression="ADD kinds :kind",
            ConditionExpression="customer_id = :customer",
            ExpressionAttributeValues={":kind": {"SS": [str(identity.kind)]}, ":customer": {"S": customer_id}},
        )

    def link_identity(self, customer_id: str, identity: Identity, linked_by: str) -> bool:
        """Claim an unclaimed identity for an existing customer: pointer and ``IDENT#`` entry in one transaction.

        The pointer's ``attribute_not_exists(pk)`` decides races: of two messages claiming one identifier, one
        transaction commits and the other is cancelled (False). ``linked_by`` (``<provider>:<message id>``) is kept
        on both items as evidence, and on the pointer so a redelivery knows this message made the link.
        """
        pointer = {**_pointer_item(customer_id, identity, identity.first_seen), "linked_by": linked_by}
        entry = {**_identity_item(customer_id, identity), "linked_by": linked_by}
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {"Put": {"TableName": self.table_name, "Item": to_item(pointer),
                             "ConditionExpression": "attribute_not_exists(pk)"}},
                    {"Put": {"TableName": self.table_name, "Item": to_item(entry)}},
                ]
            )  # fmt: skip
        except ClientError as error:
            if _code(error) == _CANCELLED and _reasons(error)[:1] == ["ConditionalCheckFailed"]:
                return False
            raise _translated(error) from error
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return True

    def suggest_merge(self, suggestion: MergeSuggestion) -> bool:
        """Put ``SUGGEST#<other customer id>`` under the customer, unless an earlier message's suggestion is there.

        The same message again (a redelivery, concurrent or not) rewrites the same item and answers True, so its
        event is re-published under the same id; another message's evidence is kept as the first (False).
        """
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=to_item(_suggestion_item(suggestion)),
                ConditionExpression="attribute_not_exists(pk) OR (#provider = :provider AND #pmid = :pmid)",
                ExpressionAttributeNames={"#provider": "provider", "#pmid": "provider_message_id"},
                ExpressionAttributeValues={
                    ":provider": {"S": suggestion.evidence.provider},
                    ":pmid": {"S": suggestion.evidence.provider_message_id},
                },
            )
        except ClientError as error:
            if _code(error) == _CONDITION_FAILED:
                return False
            raise _translated(error) from error
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return True

    def apply_consents(self, customer_id: str, consents: Sequence[Consent]) -> AppliedConsents:
        """Fold consent records into the profile (latest ``at`` per channel and purpose wins, ``merge_consents``),
        written under ``version = :seen`` and folded again onto a concurrent save.

        A consistent GetItem, then a conditional UpdateItem only when the fold changes something: a redelivered BAJA,
        or a repeated core event, costs the read alone.

        Returns
        -------
        AppliedConsents
            The consents held before the fold (the caller tells what changed) and the profile's locale.

        Raises
        ------
        RetryableError
            The profile cannot be read yet, kept changing, or the table failed.
        """
        from shared.outbound.consent import merge_consents

        key = to_item({"pk": customer_pk(customer_id), "sk": "PROFILE"})
        for _attempt in range(4):
            found = self._call("get_item", TableName=self.table_name, Key=key, ConsistentRead=True,
                               ProjectionExpression="consents, version, locale")  # fmt: skip
            if "Item" not in found:
                raise RetryableError("The customer's profile cannot be read yet; try again.")
            values = from_item(found["Item"])
            held = tuple(Consent.model_validate(consent) for consent in values.get("consents") or ())
            applied = AppliedConsents(before=held, locale=str(values.get("locale") or "es"))
            merged = merge_consents(held, consents)
            if tuple(merged) == held:
                return applied
            if self._conditionally(
                "update_item",
                Key=key,
                UpdateExpression="SET consents = :consents, version = :next",
                ConditionExpression="version = :seen",
                ExpressionAttributeValues=to_item({
                    ":consents": [consent.model_dump(mode="json") for consent in merged],
                    ":next": int(values["version"]) + 1,
                    ":seen": int(values["version"]),
                }),
            ):  # fmt: skip
                return applied
            # someone saved the profile meanwhile: fold again onto theirs
        raise RetryableError("The customer's profile kept changing; try again.")

    def set_attributes(self, customer_id: str, attributes: Mapping[str, Any], at: datetime) -> list[AttributeChange]:
        """Set profile attributes (a None value removes one) under ``version = :seen``, retrying a race.

        Returns the attributes that changed, before and after; none when every value already was so (a redelivered
        workflow step), and then nothing is written. Raises ``PermanentError`` when the profile is gone, or the
        change would pass the profile's 100 attributes.
        """
        key = to_item({"pk": customer_pk(customer_id), "sk": "PROFILE"})
        for _attempt in range(4):
            found = self._call("get_item", TableName=self.table_name, Key=key, ConsistentRead=True,
                               ProjectionExpression="attributes, version")  # fmt: skip
            if "Item" not in found:
                raise PermanentError(f"Customer {customer_id} has no profile to update.")
            values = from_item(found["Item"])
            held: dict[str, Any] = dict(values.get("attributes") or {})
            changes = [
                AttributeChange(name, held.get(name), value)
                for name, value in attributes.items()
                if held.get(name) != value
            ]
            if not changes:
                return []
            for change in changes:
                if change.new_value is None:
                    held.pop(change.name, None)
                else:
                    held[change.name] = change.new_value
            if len(held) > MAX_ATTRIBUTES:
                raise PermanentError(f"Customer {customer_id} would have more than {MAX_ATTRIBUTES} attributes.")
            if self._conditionally(
                "update_item",
                Key=key,
                UpdateExpression="SET attributes = :attributes, updated_at = :at, version = :next",
                ConditionExpression="version = :seen",
                ExpressionAttributeValues=to_item({":attributes": held, ":at": at,
                                                   ":next": int(values["version"]) + 1,
                                                   ":seen": int(values["version"])}),
            ):  # fmt: skip
                return changes
        raise RetryableError("The customer's profile kept changing; try again.")

    def customers_named(self, key: str, *, limit: int = 6) -> tuple[str, ...]:
        """Pattern 25: up to ``limit`` live (not merged) customers whose name has this ``name_key``."""
        found = self._call(
            "query",
            TableName=self.table_name,
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :name",
            ExpressionAttributeValues={":name": {"S": f"NAME#{key}"}},
            ProjectionExpression="id, merged_into",
            Limit=limit,
        )
        items = (from_item(item) for item in found.get("Items", []))
        return tuple(values["id"] for values in items if not values.get("merged_into"))

    def continue_conversation(self, customer_id: str, touch: HeadTouch) -> ContinueOutcome:
        """Pattern 6: continue the head's conversation if it is active and within the window."""
        assignments = ["last_message_at = :at", "last_channel = :channel"]
        values: dict[str, Any] = {
            ":at": to_attribute(touch.at),
            ":from": to_attribute(touch.window_start),
            ":channel": {"S": str(touch.channel)},
            ":channels": {"SS": [str(touch.channel)]},
            ":open": {"S": str(ConversationStatus.OPEN)},
            ":pending": {"S": str(ConversationStatus.PENDING)},
        }
        names: dict[str, str] = {}
        if touch.message_id is not None:
            assignments.append("last_message_id = :message")
            values[":message"] = {"S": touch.message_id}
        if touch.inbound:
            assignments.append("last_inbound_at.#channel = :at")
            names["#channel"] = str(touch.channel)
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": to_item({"pk": customer_pk(customer_id), "sk": "HEAD"}),
            "UpdateExpression": f"SET {', '.join(assignments)} ADD channels :channels",
            # Active, and the last message within the window but not after this one: a later message already
            # moved the head, and this (late or redelivered) one must not move it back.
            "ConditionExpression": "conversation_status IN (:open, :pending) AND last_message_at BETWEEN :from AND :at",
            "ExpressionAttributeValues": values,
            "ReturnValues": "ALL_NEW",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        if names:
            request["ExpressionAttributeNames"] = names
        try:
            updated = self.client.update_item(**request)
        except ClientError as error:
            if _code(error) != _CONDITION_FAILED:
                raise _translated(error) from error
            old = error.response.get("Item")
            head = _head(from_item(old)) if old else None
            if head is None or head.merged_into is not None:
                return NotContinued(head)  # merged: the caller follows merged_into (shared.ingest.service)
            if head.status not in _CONTINUABLE or head.last_message_at < touch.window_start:
                return NotContinued(head)
            return self._continue_late(customer_id, head, touch)
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return Continued(from_item(updated["Attributes"])["conversation_id"])

    def _continue_late(self, customer_id: str, head: HeadState, touch: HeadTouch) -> ContinueOutcome:
        # An entry older than the head's last message: it belongs to that conversation, leaves the live fields
        # alone, and only adds its channel when the conversation has not seen it yet.
        if touch.channel in head.channels:
            return Continued(head.conversation_id)
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": customer_pk(customer_id), "sk": "HEAD"}),
                UpdateExpression="ADD channels :channels",
                ConditionExpression="conversation_id = :conversation",
                ExpressionAttributeValues={
                    ":channels": {"SS": [str(touch.channel)]},
                    ":conversation": {"S": head.conversation_id},
                },
            )
        except ClientError as error:
            if _code(error) == _CONDITION_FAILED:
                return NotContinued(None)  # the head moved on meanwhile: decide again from a fresh state
            raise _translated(error) from error
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return Continued(head.conversation_id)

    def open_conversation(
        self, conversation: Conversation, head: HeadState, seen: HeadState | None, record: TimelineRecord
    ) -> OpenOutcome:
        """A new conversation: conversation, head (only if unchanged since ``seen``) and entry in one transaction.

        One transaction rather than three writes: a redelivery of an old message whose conversation has since
        closed finds its entry and opens nothing; two messages racing to open a conversation make one.
        """
        customer_id = conversation.customer_id
        if seen is None:
            head_condition: dict[str, Any] = {"ConditionExpression": "attribute_not_exists(pk)"}
        else:
            head_condition = {
                "ConditionExpression": "conversation_id = :seen AND last_message_at = :seen_at",
                "ExpressionAttributeValues": {
                    ":seen": {"S": seen.conversation_id},
                    ":seen_at": to_attribute(seen.last_message_at),
                },
            }
        entry_item = to_item(_timeline_item(record))
        writes: list[dict[str, Any]] = [
            {"Put": {"TableName": self.table_name, "Item": to_item(_conversation_item(conversation)),
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Put": {"TableName": self.table_name, "Item": to_item(_head_item(customer_id, head)), **head_condition}},
            {"Put": {"TableName": self.table_name, "Item": entry_item,
                     "ConditionExpression": "attribute_not_exists(pk)",
                     "ReturnValuesOnConditionCheckFailure": "ALL_OLD"}},
        ]  # fmt: skip
        if seen is not None and seen.conversation_id != conversation.id:
            writes.append({"Update": self._fold_head(customer_id, seen)})
        try:
            self.client.transact_write_items(TransactItems=writes)
        except ClientError as error:
            if _code(error) != _CANCELLED:
                raise _translated(error) from error
            reasons = _reasons(error)
            if reasons[2:3] == ["ConditionalCheckFailed"]:
                return AlreadyRecorded(self._recorded_conversation(error, 2, entry_item))
            if "ConditionalCheckFailed" in reasons:
                return HeadChanged()
            raise RetryableError("The profile table is busy; try again.") from error
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return Opened()

    def _fold_head(self, customer_id: str, seen: HeadState) -> dict[str, Any]:
        # The head leaves the old conversation: its live fields go back to its CONV# item, so the conversation
        # list shows when it really last moved and on which channels.
        return {
            "TableName": self.table_name,
            "Key": to_item({"pk": customer_pk(customer_id), "sk": f"CONV#{seen.conversation_id}"}),
            "UpdateExpression": "SET last_message_at = :at, last_channel = :channel, channels = :channels",
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeValues": to_item(
                {
                    ":at": seen.last_message_at,
                    ":channel": str(seen.last_channel),
                    ":channels": sorted(str(channel) for channel in seen.channels),
                }
            ),
        }

    def record(self, record: TimelineRecord) -> AlreadyRecorded | None:
        """Pattern 5: the conditional put of the entry, which is the dedup."""
        old = self._put_new(to_item(_timeline_item(record)))
        return None if old is None else AlreadyRecorded(from_item(old).get("conversation_id"))

    def _conditionally(self, operation: str, **request: Any) -> bool:
        """One conditional write; False when its condition did not hold (the state it guards against, or done)."""
        try:
            getattr(self.client, operation)(TableName=self.table_name, **request)
        except ClientError as error:
            if _code(error) != _CONDITION_FAILED:
                raise _translated(error) from error
            return False
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return True

    def _transact_or_reasons(self, writes: list[dict[str, Any]]) -> list[str] | None:
        """Write all or nothing: None when written; when a condition failed, every write's cancellation reason."""
        try:
            self.client.transact_write_items(TransactItems=writes)
        except ClientError as error:
            if _code(error) == _CANCELLED and "ConditionalCheckFailed" in _reasons(error):
                return _reasons(error)
            raise _translated(error) from error
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return None

    def _put_new(self, item: dict[str, Any]) -> dict[str, Any] | None:
        """Put ``item`` unless its key exists: None when written, else the item as stored (from ``ALL_OLD``, or a
        strongly consistent read when DynamoDB did not return it), which tells a retry what the first write was."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _code(error) != _CONDITION_FAILED:
                raise _translated(error) from error
            old: dict[str, Any] | None = error.response.get("Item")
            if not old:
                found = self._call("get_item", TableName=self.table_name,
                                   Key={"pk": item["pk"], "sk": item["sk"]}, ConsistentRead=True)  # fmt: skip
                old = found.get("Item")
            if not old:
                raise RetryableError("The item exists but cannot be read yet; try again.") from error
            return old
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return None

    def _recorded_conversation(self, error: ClientError, index: int, item: Mapping[str, Any]) -> str | None:
        reasons = error.response.get("CancellationReasons") or []
        old = reasons[index].get("Item") if len(reasons) > index else None
        if old:
            return str(from_item(old).get("conversation_id")) if "conversation_id" in old else None
        return self._stored_conversation(item)

    def _stored_conversation(self, item: Mapping[str, Any]) -> str | None:
        found = self._call(
            "get_item",
            TableName=self.table_name,
            Key={"pk": item["pk"], "sk": item["sk"]},
            ConsistentRead=True,
            ProjectionExpression="conversation_id",
        )
        value = from_item(found.get("Item") or {}).get("conversation_id")
        return str(value) if value is not None else None

    # ------------------------------------------------------------------ reads for the agent API
    def find_customer_id(self, lookup_kind: IdentityKind, lookup_value: str) -> str | None:
        """Pattern 1 for a clerk or the IVR: the customer id behind an identity (lookup form), or None."""
        known = self.find_customer(lookup_kind, lookup_value)
        return known.customer_id if known is not None else None

    def get_card(self, customer_id: str) -> CustomerCard | None:
        """Pattern 3: profile with identities, and head, in one query; None for an unknown customer."""
        items = self._query_all(
            KeyConditionExpression="pk = :pk AND sk BETWEEN :head AND :profile",
            ExpressionAttributeValues=to_item(
                {":pk": customer_pk(customer_id), ":head": "HEAD", ":profile": "PROFILE"}
            ),
        )
        profile: dict[str, Any] | None = None
        head: HeadState | None = None
        identities: list[dict[str, Any]] = []
        for values in items:
            if values["type"] == "PROFILE":
                profile = values
            elif values["type"] == "HEAD":
                head = _head(values)
            elif values["type"] == "IDENTITY":
                identities.append({name: values.get(name) for name in Identity.model_fields})
        if profile is None:
            return None
        fields = {name: profile.get(name) for name in CustomerProfile.model_fields if name != "identities"}
        fields = {name: value for name, value in fields.items() if value is not None}
        fields["identities"] = [{k: v for k, v in identity.items() if v is not None} for identity in identities]
        return CustomerCard(profile=CustomerProfile.model_validate(fields), head=head)

    def merge_suggestions(self, customer_id: str) -> tuple[MergeSuggestion, ...]:
        """The profiles this customer's given identifiers point to (``SUGGEST#…`` items), by other customer id."""
        items = self._query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :suggest)",
            ExpressionAttributeValues=to_item({":pk": customer_pk(customer_id), ":suggest": "SUGGEST#"}),
        )
        return tuple(_suggestion(values) for values in items)

    def get_profile(self, customer_id: str) -> CustomerProfile | None:
        """The profile with its identities (pattern 3); None for an unknown customer."""
        card = self.get_card(customer_id)
        return card.profile if card is not None else None

    def timeline(
        self, customer_id: str, *, limit: int = 50, cursor: str | None = None, channel: Channel | None = None
    ) -> TimelinePage:
        """Pattern 7: one page of the timeline, newest first, optionally one channel only.

        Parameters
        ----------
        customer_id : str
            Whose timeline.
        limit : int
            Items read per page (1-100). With a channel filter a page may hold fewer: the filter applies after
            the read, as DynamoDB does.
        cursor : str, optional
            The ``cursor`` of the previous page.
        channel : Channel, optional
            Only entries on this channel.

        Returns
        -------
        TimelinePage
            The entries and the cursor of the next page.

        Raises
        ------
        InvalidInput
            The cursor is not one this method returned for this customer, or the limit is out of range.
        """
        if not 1 <= limit <= _MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {_MAX_PAGE}")
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :tl)",
            "ExpressionAttributeValues": to_item({":pk": customer_pk(customer_id), ":tl": "TL#"}),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if channel is not None:
            request["FilterExpression"] = "channel = :channel"
            request["ExpressionAttributeValues"][":channel"] = {"S": str(channel)}
        if cursor is not None:
            request["ExclusiveStartKey"] = _decode_cursor(cursor, customer_pk(customer_id))
        found = self._call("query", **request)
        entries = tuple(_stored_entry(from_item(item)) for item in found.get("Items", []))
        last = found.get("LastEvaluatedKey")
        return TimelinePage(entries=entries, cursor=_encode_cursor(last) if last else None)

    def conversations(self, customer_id: str, *, limit: int = 50) -> tuple[Conversation, ...]:
        """Pattern 8: a customer's conversations, newest first (live fields from the head for the current one)."""
        found = self._call(
            "query",
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :conv)",
            ExpressionAttributeValues=to_item({":pk": customer_pk(customer_id), ":conv": "CONV#"}),
            ScanIndexForward=False,
            Limit=min(max(limit, 1), _MAX_PAGE),
        )
        items = [from_item(item) for item in found.get("Items", [])]
        head = self._head(customer_id) if items else None
        return tuple(_conversation(values, head) for values in items)

    def conversation(self, conversation_id: str) -> Conversation | None:
        """Pattern 9: one conversation by id, through gsi1; None when unknown."""
        found = self._call(
            "query",
            TableName=self.table_name,
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :pk AND gsi1sk = :sk",
            ExpressionAttributeValues=to_item({":pk": f"CONV#{conversation_id}", ":sk": "CONV"}),
        )
        items = found.get("Items", [])
        if not items:
            return None
        values = from_item(items[0])
        return _conversation(values, self._head(values["customer_id"]))

    # ------------------------------------------------------------------ the agent API's writes
    def claim_request(self, customer_id: str, claim: RequestClaim) -> RequestClaim | None:
        """Put ``REQ#<idempotency key>`` under the customer unless it is there; None when this request claimed it.

        A conditional ``PutItem`` (``ReturnValuesOnConditionCheckFailure=ALL_OLD``): of two requests with one key,
        one claims it and the other gets the claim as stored, so both go on with the same entry time and id.
        """
        old = self._put_new(to_item(_claim_item(customer_id, claim)))
        return None if old is None else _claim(from_item(old))

    def timeline_entry(self, customer_id: str, occurred_at: datetime, entry_id: str) -> StoredEntry | None:
        """One timeline entry by its key (strongly consistent: it is read right after a write raced with ours)."""
        found = self._call(
            "get_item",
            TableName=self.table_name,
            Key=to_item({"pk": customer_pk(customer_id), "sk": timeline_sk(occurred_at, entry_id)}),
            ConsistentRead=True,
        )
        return _stored_entry(from_item(found["Item"])) if "Item" in found else None

    def owns_conversation(self, customer_id: str, conversation_id: str) -> bool:
        """Whether ``CONV#<conversation id>`` is under this customer (one strongly consistent ``GetItem``)."""
        found = self._call(
            "get_item",
            TableName=self.table_name,
            Key=to_item({"pk": customer_pk(customer_id), "sk": f"CONV#{conversation_id}"}),
            ConsistentRead=True,
            ProjectionExpression="pk",
        )
        return "Item" in found

    def _head(self, customer_id: str) -> HeadState | None:
        found = self._call(
            "get_item", TableName=self.table_name, Key=to_item({"pk": customer_pk(customer_id), "sk": "HEAD"})
        )
        return _head(from_item(found["Item"])) if "Item" in found else None

    def _index_page(
        self, index: str, partition: str, *, item_prefix: str, forward: bool, limit: int, cursor: str | None, what: str
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a sparse index's partition (``<index>pk = partition``) and the cursor of the next (None on the
        last): enrolments by workflow, tasks by queue. The cursor must be one this read gave for this partition and
        this kind of item (``item_prefix`` of ``sk``); ``what`` names the partition in the error.

        Raises
        ------
        InvalidInput
            The limit is out of range (1-100) or the cursor is not one of this partition's.
        """
        if not 1 <= limit <= _MAX_PAGE:
            raise InvalidInput(f"limit must be between 1 and {_MAX_PAGE}")
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "IndexName": index,
            "KeyConditionExpression": f"{index}pk = :partition",
            "ExpressionAttributeValues": to_item({":partition": partition}),
            "ScanIndexForward": forward,
            "Limit": limit,
        }
        if cursor is not None:
            request["ExclusiveStartKey"] = _index_cursor(cursor, index, partition, item_prefix, what)
        found = self._call("query", **request)
        last = found.get("LastEvaluatedKey")
        return [from_item(item) for item in found.get("Items", [])], _encode_cursor(last) if last else None

    def _query_all(self, **request: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        start: Any = None
        while True:
            page = self._call("query", TableName=self.table_name, **request,
                              **({"ExclusiveStartKey": start} if start else {}))  # fmt: skip
            items.extend(from_item(item) for item in page.get("Items", []))
            start = page.get("LastEvaluatedKey")
            if not start:
                return items


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _reasons(error: ClientError) -> list[str]:
    return [str(reason.get("Code") or "None") for reason in error.response.get("CancellationReasons") or []]


def _translated(error: ClientError) -> PermanentError | RetryableError:
    code = _code(error)
    if code in _PERMANENT_CODES:
        return PermanentError(f"The profile table refused the request ({code}).")
    return RetryableError(f"The profile table failed ({code or 'unknown error'}); try again.")


def _encode_cursor(key: Mapping[str, Any]) -> str:
    plain = {name: from_attribute(value) for name, value in key.items()}
    return base64.urlsafe_b64encode(json.dumps(plain, separators=(",", ":")).encode()).decode().rstrip("=")


def _cursor_key(cursor: str) -> Any:
    """The key a cursor of ``_encode_cursor`` holds, as plain values; the caller checks it is one of its own."""
    try:
        return json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError) as error:
        raise InvalidInput("The cursor is not valid.") from error


def _decode_cursor(cursor: str, pk: str) -> dict[str, Any]:
    plain = _cursor_key(cursor)
    if not isinstance(plain, dict) or plain.get("pk") != pk or not str(plain.get("sk", "")).startswith("TL#"):
        raise InvalidInput("The cursor is not valid for this timeline.")
    return to_item({"pk": plain["pk"], "sk": plain["sk"]})


def _index_cursor(cursor: str, index: str, partition: str, item_prefix: str, what: str) -> dict[str, Any]:
    """The ``ExclusiveStartKey`` of an index page's cursor, refused unless it is one of that partition's items."""
    problem = InvalidInput(f"The cursor is not valid for this {what}.", details=[{"field": "cursor"}])
    try:
        plain = _cursor_key(cursor)
    except InvalidInput as error:
        raise problem from error
    names = {"pk", "sk", f"{index}pk", f"{index}sk"}
    if (
        not isinstance(plain, dict)
        or set(plain) != names
        or not all(isinstance(plain[name], str) for name in names)
        or plain[f"{index}pk"] != partition
        or not plain["sk"].startswith(item_prefix)
    ):
        raise problem
    return to_item(plain)
