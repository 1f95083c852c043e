"""The customer timeline: every message, call, visit, note and automation step, in order, with its channel."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from shared.models.common import (
    Channel,
    ConversationId,
    CustomerId,
    ExternalId,
    MessageId,
    TimelineEntryId,
    UtcDatetime,
)


class TimelineKind(StrEnum):
    """What happened."""

    MESSAGE = "message"
    CALL = "call"
    VISIT = "visit"
    NOTE = "note"
    AUTOMATION_STEP = "automation_step"
    STATUS = "status"


class ActorKind(StrEnum):
    """Who made it happen."""

    CUSTOMER = "customer"
    AGENT = "agent"
    BOT = "bot"
    WORKFLOW = "workflow"
    SYSTEM = "system"


class Actor(BaseModel):
    """Who acted; frozen value object. Agents and workflows are named by id, the customer by the entry itself."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    kind: ActorKind
    id: ExternalId | None = None

    @model_validator(mode="after")
    def _named_when_needed(self) -> Self:
        if self.kind in (ActorKind.AGENT, ActorKind.WORKFLOW) and self.id is None:
            raise ValueError(f"an actor of kind {self.kind!s} needs an id")
        return self


class TimelineEntry(BaseModel):
    """One line of a customer's history; frozen, the timeline is append-only."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: TimelineEntryId
    customer_id: CustomerId
    #: None for what belongs to no case (a store visit, a marketing step).
    conversation_id: ConversationId | None = None
    occurred_at: UtcDatetime
    #: None for what happened on no channel (an agent's note, a workflow step).
    channel: Channel | None = None
    kind: TimelineKind
    #: A short line for the agent's list ("Foto del televisor dañado"); full content lives in the message.
    summary: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    message_id: MessageId | None = None
    actor: Actor

    @model_validator(mode="after")
    def _message_entries_point_at_their_message(self) -> Self:
        if self.kind == TimelineKind.MESSAGE and (self.message_id is None or self.channel is None):
            raise ValueError("a message entry needs message_id and channel")
        if self.message_id is not None and self.kind not in (TimelineKind.MESSAGE, TimelineKind.STATUS):
            raise ValueError("message_id belongs to message and status entries only")
        return self
