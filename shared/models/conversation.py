"""Conversations: one case thread per customer that stays open across channels."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.models.common import Channel, ConversationId, CustomerId, ExternalId, UtcDatetime


class ConversationStatus(StrEnum):
    """Where a case stands.

    ``open``: waiting on us; ``pending``: waiting on the customer; ``resolved``: answered, reopens if the customer
    writes within the reopen window; ``closed``: final, a new message starts a new conversation.
    """

    OPEN = "open"
    PENDING = "pending"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Conversation(BaseModel):
    """A case thread; frozen, updates are explicit copies (its live fields are stored on the customer's head)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: ConversationId
    customer_id: CustomerId
    status: ConversationStatus = ConversationStatus.OPEN
    #: Every channel the case has touched, in the order first seen.
    channels: tuple[Channel, ...] = Field(min_length=1)
    opened_at: UtcDatetime
    last_message_at: UtcDatetime
    last_channel: Channel
    assigned_agent_id: ExternalId | None = None
    subject: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if len(set(self.channels)) != len(self.channels):
            raise ValueError("channels must not repeat")
        if self.last_channel not in self.channels:
            raise ValueError("last_channel must be one of channels")
        if self.last_message_at < self.opened_at:
            raise ValueError("last_message_at is before opened_at")
        return self

    @property
    def is_active(self) -> bool:
        """True while the case is open or waiting on the customer."""
        return self.status in (ConversationStatus.OPEN, ConversationStatus.PENDING)
