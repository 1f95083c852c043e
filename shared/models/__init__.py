"""Hilo's canonical models: the domain language shared by every function, queue and test.

Pure pydantic; nothing here knows about AWS. Storage items and provider payloads are separate models, mapped
explicitly to and from these.

Names are imported from their submodule on first use (PEP 562): a webhook that needs only the inbound envelope
does not pay, at cold start, for building every model of the domain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shared.lazy import lazy_getattr

if TYPE_CHECKING:
    from shared.models.common import (
        PROVIDERS_BY_CHANNEL,
        Channel,
        ConversationId,
        CorrelationId,
        CustomerId,
        EventId,
        ExternalId,
        IdPrefix,
        MessageId,
        Provider,
        ProviderMessageId,
        TimelineEntryId,
        UtcDatetime,
        ensure_utc,
        id_time,
        new_id,
        sortable_timestamp,
        utc_now,
    )
    from shared.models.conversation import Conversation, ConversationStatus
    from shared.models.customer import Consent, ConsentPurpose, ConsentStatus, CustomerProfile
    from shared.models.events import DomainEvent, EventType, QueueEnvelope
    from shared.models.identity import (
        Identity,
        IdentityKind,
        IdentityNormaliser,
        check_identity_value,
    )
    from shared.models.message import (
        Address,
        ContactPart,
        ContentPart,
        DeliveryStatus,
        Direction,
        InteractiveKind,
        InteractiveReplyPart,
        LocationPart,
        MediaPart,
        Message,
        ReactionPart,
        StatusUpdate,
        TextPart,
        status_may_follow,
    )
    from shared.models.timeline import Actor, ActorKind, TimelineEntry, TimelineKind

_SUBMODULE = {
    "Channel": "shared.models.common",
    "ConversationId": "shared.models.common",
    "CorrelationId": "shared.models.common",
    "CustomerId": "shared.models.common",
    "EventId": "shared.models.common",
    "ExternalId": "shared.models.common",
    "IdPrefix": "shared.models.common",
    "MessageId": "shared.models.common",
    "PROVIDERS_BY_CHANNEL": "shared.models.common",
    "Provider": "shared.models.common",
    "ProviderMessageId": "shared.models.common",
    "TimelineEntryId": "shared.models.common",
    "UtcDatetime": "shared.models.common",
    "ensure_utc": "shared.models.common",
    "id_time": "shared.models.common",
    "new_id": "shared.models.common",
    "sortable_timestamp": "shared.models.common",
    "utc_now": "shared.models.common",
    "Conversation": "shared.models.conversation",
    "ConversationStatus": "shared.models.conversation",
    "Consent": "shared.models.customer",
    "ConsentPurpose": "shared.models.customer",
    "ConsentStatus": "shared.models.customer",
    "CustomerProfile": "shared.models.customer",
    "DomainEvent": "shared.models.events",
    "EventType": "shared.models.events",
    "QueueEnvelope": "shared.models.events",
    "Identity": "shared.models.identity",
    "IdentityKind": "shared.models.identity",
    "IdentityNormaliser": "shared.models.identity",
    "check_identity_value": "shared.models.identity",
    "Address": "shared.models.message",
    "ContactPart": "shared.models.message",
    "ContentPart": "shared.models.message",
    "DeliveryStatus": "shared.models.message",
    "Direction": "shared.models.message",
    "InteractiveKind": "shared.models.message",
    "InteractiveReplyPart": "shared.models.message",
    "LocationPart": "shared.models.message",
    "MediaPart": "shared.models.message",
    "Message": "shared.models.message",
    "ReactionPart": "shared.models.message",
    "StatusUpdate": "shared.models.message",
    "TextPart": "shared.models.message",
    "status_may_follow": "shared.models.message",
    "Actor": "shared.models.timeline",
    "ActorKind": "shared.models.timeline",
    "TimelineEntry": "shared.models.timeline",
    "TimelineKind": "shared.models.timeline",
}

__all__ = [
    "PROVIDERS_BY_CHANNEL",
    "Actor",
    "ActorKind",
    "Address",
    "Channel",
    "Consent",
    "ConsentPurpose",
    "ConsentStatus",
    "ContactPart",
    "ContentPart",
    "Conversation",
    "ConversationId",
    "ConversationStatus",
    "CorrelationId",
    "CustomerId",
    "CustomerProfile",
    "DeliveryStatus",
    "Direction",
    "DomainEvent",
    "EventId",
    "EventType",
    "ExternalId",
    "IdPrefix",
    "Identity",
    "IdentityKind",
    "IdentityNormaliser",
    "InteractiveKind",
    "InteractiveReplyPart",
    "LocationPart",
    "MediaPart",
    "Message",
    "MessageId",
    "Provider",
    "ProviderMessageId",
    "QueueEnvelope",
    "ReactionPart",
    "StatusUpdate",
    "TextPart",
    "TimelineEntry",
    "TimelineEntryId",
    "TimelineKind",
    "UtcDatetime",
    "check_identity_value",
    "ensure_utc",
    "id_time",
    "new_id",
    "sortable_timestamp",
    "status_may_follow",
    "utc_now",
]


__getattr__ = lazy_getattr(__name__, globals(), _SUBMODULE)
