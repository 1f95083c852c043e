"""The messages of Hilo's one outbound path: a send command, and the job a channel's sender carries out.

Agents, bots, workflows and ingest's keyword confirmations all put an ``OutboundCommand`` on OutboundQueue.fifo
(group = customer). The outbound function decides (channel, consent, quiet hours, WhatsApp window), renders, records
the message on the timeline as ``queued`` and hands a ``SendJob`` to the sender of that channel's provider. The
command's ``key`` is the idempotency key end to end: the message and timeline ids are derived from it, so the same
command twice is one message and one provider call.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator

from shared.models.common import (
    Channel,
    ConversationId,
    CustomerId,
    MessageId,
    Provider,
    UtcDatetime,
    new_id,
)
from shared.models.customer import ConsentPurpose
from shared.models.events import QueueEnvelope
from shared.models.message import MediaPart, TextPart
from shared.models.timeline import Actor

#: Printable ASCII, as callers' own ids usually are (a workflow step id, an agent request id, a CRM event id).
IdempotencyKey = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,200}$")]
TemplateId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.\-]{0,99}$")]
ShortLine = Annotated[str, StringConstraints(min_length=1, max_length=998)]


class Route(StrEnum):
    """How the channel is chosen."""

    #: The command names the channel.
    EXPLICIT = "explicit"
    #: Where the customer last wrote (in this conversation, if one is given).
    REPLY = "reply"
    #: The best channel for the message's intent, among those the customer can be reached on and allows.
    BEST = "best"


class Intent(StrEnum):
    """What the message is for; the ``best`` route reads it (docs/outbound.md, "Channel choice")."""

    URGENT = "urgent"
    CONFIRMATION = "confirmation"
    DETAIL = "detail"
    REASSURANCE = "reassurance"
    NOTIFICATION = "notification"


class ReplyButton(BaseModel):
    """A quick-reply option (WhatsApp interactive buttons, Messenger quick replies, Telegram keyboard)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Comes back as ``InteractiveReplyPart.reply_id`` when the customer taps it.
    id: Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,256}$")]
    #: WhatsApp limits a button title to 20 characters.
    title: Annotated[str, StringConstraints(min_length=1, max_length=20)]


class TemplateContent(BaseModel):
    """A stored message template, rendered for the chosen channel and the customer's locale."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["template"] = "template"
    template_id: TemplateId
    #: Values for ``vars.*`` in the template (an appointment slot, a tracking link...).
    vars: dict[str, JsonValue] = Field(default_factory=dict)
    #: The triggering event's data, for ``event.*``.
    event: dict[str, JsonValue] = Field(default_factory=dict)


class DirectContent(BaseModel):
    """Content written by a person or a bot: text and media as they are, with optional quick-reply buttons."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["direct"] = "direct"
    parts: tuple[TextPart | MediaPart, ...] = Field(min_length=1, max_length=10)
    #: E-mail only; when absent, a reply takes "Re: " + the customer's subject, anything else "Mensaje de …".
    subject: ShortLine | None = None
    buttons: tuple[ReplyButton, ...] = Field(default=(), max_length=3)

    @property
    def text(self) -> str:
        """The text parts joined by blank lines."""
        return "\n\n".join(part.text for part in self.parts if isinstance(part, TextPart))


OutboundContent = Annotated[TemplateContent | DirectContent, Field(discriminator="type")]


def dedup_id(key: str) -> str:
    """SQS FIFO's ``MessageDeduplicationId`` for a key: at most 128 characters, so a hash."""
    return hashlib.sha256(key.encode()).hexdigest()


class OutboundCommand(QueueEnvelope):
    """Send something to a customer; the body of an OutboundQueue message (group = ``customer_id``)."""

    schema_version: Literal[1] = 1
    type: Literal["send"] = "send"
    key: IdempotencyKey
    customer_id: CustomerId
    conversation_id: ConversationId | None = None
    channel: Channel | None = None
    #: The customer's address on ``channel`` when it must be that one (the number a keyword came from); else the most
    #: recently seen of their identities on the channel.
    to: Annotated[str, StringConstraints(min_length=1, max_length=320)] | None = None
    route: Route = Route.BEST
    intent: Intent | None = None
    purpose: ConsentPurpose = ConsentPurpose.TRANSACTIONAL
    content: OutboundContent
    #: Transactional only: quiet hours do not hold it (a fraud alert, a one-time code).
    urgent: bool = False
    #: The confirmation of an opt-out/opt-in keyword: answers the customer at once, whatever their consents.
    keyword_reply: bool = False
    actor: Actor
    #: When the caller asked; the message's place on the timeline. Stable across redeliveries.
    requested_at: UtcDatetime
    #: Channels that already failed permanently for this message (fallback): never chosen again.
    exclude_channels: tuple[Channel, ...] = Field(default=(), max_length=10)
    #: The message this one replaces after a permanent failure.
    fallback_of: MessageId | None = None
    #: Set on the copy a timer delivers: the instant it was due. Makes each timer's body unique (OutboundQueue
    #: deduplicates timers' messages by content) and tells the planner the deferral is over, whatever its clock says.
    wake_at: UtcDatetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _route_follows_channel(cls, data: Any) -> Any:
        # A named channel means "this channel"; without one the default is "best", or "reply" inside a conversation.
        if isinstance(data, dict) and "route" not in data:
            if data.get("channel") is not None:
                return {**data, "route": Route.EXPLICIT}
            if data.get("conversation_id") is not None:
                return {**data, "route": Route.REPLY}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.route == Route.EXPLICIT) != (self.channel is not None):
            raise ValueError("route 'explicit' needs a channel, and only it takes one")
        if self.to is not None and self.channel is None:
            raise ValueError("an address ('to') goes with the channel it is on")
        if self.channel is not None and self.channel in self.exclude_channels:
            raise ValueError(f"channel {self.channel!s} is also excluded")
        if self.urgent and self.purpose == ConsentPurpose.MARKETING:
            raise ValueError("a marketing message is never urgent")
        return self

    @property
    def message_id(self) -> str:
        """The outbound message's id, the same for every delivery of this command."""
        return new_id("msg", at=self.requested_at, seed=f"outbound:{self.key}")

    @property
    def entry_id(self) -> str:
        """The timeline entry's id, the same for every delivery of this command."""
        return new_id("tl", at=self.requested_at, seed=f"outbound:{self.key}")

    def fallback(self, failed: Channel, at: datetime) -> Self:
        """The command that tries the next channel after ``failed`` failed permanently.

        ``at`` places it on the timeline and seeds its ids, so it must be the same on every redelivery of the
        failure (a provider's failure timestamp, or the original message's time): then a repeat is one message.
        """
        return self.model_copy(
            update={
                "key": f"{self.key[:180]}#fb{len(self.exclude_channels) + 1}",
                "channel": None,
                "to": None,
                "route": Route.BEST,
                "exclude_channels": (*self.exclude_channels, failed),
                "fallback_of": self.message_id,
                "requested_at": at,
                "wake_at": None,
            }
        )


class WhatsAppTemplateMessage(BaseModel):
    """An approved WhatsApp template ready to send: its registered name, language and body parameters' text."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: Annotated[str, StringConstraints(pattern=r"^[a-z0-9_]{1,512}$")]
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(_[A-Z]{2})?$")]
    parameters: tuple[Annotated[str, StringConstraints(max_length=1024)], ...] = ()


#: The queue body type of each provider's sender.
SEND_JOB: Final = "send_job"


class SendJob(QueueEnvelope):
    """One rendered message for one provider; the body of a send queue message (group = ``customer_id``).

    Everything the sender needs is here, so a sender reads nothing before calling its provider: it only claims the
    send on the message's timeline item (``command.requested_at`` and ``command.entry_id`` make its key) first and
    records the provider's answer after.
    """

    schema_version: Literal[1] = 1
    type: Literal["send_job"] = "send_job"
    key: IdempotencyKey
    message_id: MessageId
    customer_id: CustomerId
    conversation_id: ConversationId | None = None
    channel: Channel
    provider: Provider
    #: The customer's address on the channel: E.164 phone, e-mail, page-scoped id, Telegram chat id, chat session.
    to: Annotated[str, StringConstraints(min_length=1, max_length=320)]
    #: Our address, when the customer wrote to a particular one (a Twilio number, a mailbox); else the configured one.
    sender: Annotated[str, StringConstraints(min_length=1, max_length=320)] | None = None
    text: Annotated[str, StringConstraints(min_length=1, max_length=65536)] | None = None
    subject: ShortLine | None = None
    html: Annotated[str, StringConstraints(min_length=1, max_length=262144)] | None = None
    media: tuple[MediaPart, ...] = Field(default=(), max_length=10)
    buttons: tuple[ReplyButton, ...] = Field(default=(), max_length=3)
    whatsapp_template: WhatsAppTemplateMessage | None = None
    #: E-mail threading: the customer's message we answer, and the chain before it (``References``).
    in_reply_to: Annotated[str, StringConstraints(min_length=1, max_length=998)] | None = None
    references: tuple[Annotated[str, StringConstraints(min_length=1, max_length=998)], ...] = Field(
        default=(), max_length=64
    )
    purpose: ConsentPurpose
    #: The command it came from: the timeline item's key, and what a permanent failure's fallback is planned from.
    command: OutboundCommand

    @model_validator(mode="after")
    def _has_content(self) -> Self:
        if self.text is None and self.whatsapp_template is None and not self.media:
            raise ValueError("a send job needs text, media or a WhatsApp template")
        if self.channel == Channel.EMAIL and (self.subject is None or self.text is None):
            raise ValueError("an e-mail needs a subject and a text body")
        return self
