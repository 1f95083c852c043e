"""Agents send: a reply in a conversation (``POST /v1/conversations/{id}/messages``) or a message to a customer
(``POST /v1/customers/{id}/messages``), through the one outbound path, decided at once so the agent sees it.

The agent's request is claimed under its idempotency key first (``REQ#<key>``, as visits and notes are), which fixes
the message's time; the command's key is derived from it, so a retried request is the same message and one send.
Without a key, every request is a new message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field, JsonValue, StringConstraints, model_validator

from shared.agent_writes import AgentRequest, idempotency_key
from shared.errors import Conflict, NotFound, RetryableError, Unprocessable
from shared.ingest.ports import RequestClaim
from shared.models.common import Channel
from shared.models.conversation import Conversation
from shared.models.customer import ConsentPurpose
from shared.models.message import MediaPart, TextPart
from shared.models.outbound import (
    DirectContent,
    IdempotencyKey,
    Intent,
    OutboundCommand,
    ReplyButton,
    Route,
    TemplateContent,
    TemplateId,
)
from shared.models.timeline import Actor, ActorKind
from shared.outbound.planning import CONTENT_REASONS, Outbound, Outcome, Submitted

SEND = "send"


class SendBody(BaseModel):
    """What an agent sends: ``text`` (or ``parts``), or a ``template_id`` with its ``vars``; optionally where."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: IdempotencyKey | None = None
    text: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = None
    parts: tuple[TextPart | MediaPart, ...] = Field(default=(), max_length=10)
    subject: Annotated[str, StringConstraints(min_length=1, max_length=998)] | None = None
    buttons: tuple[ReplyButton, ...] = Field(default=(), max_length=3)
    template_id: TemplateId | None = None
    vars: dict[str, JsonValue] = Field(default_factory=dict)
    #: A channel; without one, a reply goes where the customer last wrote and a new message to the best channel.
    channel: Channel | None = None
    intent: Intent | None = None
    purpose: ConsentPurpose = ConsentPurpose.TRANSACTIONAL
    urgent: bool = False

    @model_validator(mode="after")
    def _one_content(self) -> Self:
        direct = self.text is not None or bool(self.parts)
        if direct == (self.template_id is not None):
            raise ValueError("give either text (or parts) or template_id")
        if self.text is not None and self.parts:
            raise ValueError("give text or parts, not both")
        if self.vars and self.template_id is None:
            raise ValueError("vars go with a template_id")
        return self

    def content(self) -> DirectContent | TemplateContent:
        if self.template_id is not None:
            return TemplateContent(template_id=self.template_id, vars=self.vars)
        parts = self.parts or (TextPart(text=self.text or ""),)
        return DirectContent(parts=parts, subject=self.subject, buttons=self.buttons)


class CommandQueue(Protocol):
    def send(self, command: OutboundCommand) -> None: ...


class SendRepository(Protocol):
    def claim_request(self, customer_id: str, claim: RequestClaim) -> RequestClaim | None: ...

    def conversation(self, conversation_id: str) -> Conversation | None: ...


@dataclass(frozen=True)
class SendAnswer:
    """HTTP status and JSON body for the agent."""

    status: int
    body: dict[str, Any]


@dataclass
class AgentSends:
    """The agent API's send use cases."""

    repository: SendRepository
    outbound: Outbound
    #: OutboundQueue: where a message goes when it cannot be decided at once.
    queue: CommandQueue
    clock: Callable[[], datetime]

    def reply(self, conversation_id: str, body: SendBody, request: AgentRequest) -> SendAnswer:
        """Send in a conversation: to its customer, where they last wrote unless a channel is given."""
        conversation = self.repository.conversation(conversation_id)
        if conversation is None:
            raise NotFound(f"No conversation {conversation_id}.")
        return self._send(conversation.customer_id, conversation_id, body, request)

    def send(self, customer_id: str, body: SendBody, request: AgentRequest) -> SendAnswer:
        """Send to a customer outside any conversation: to the best channel for the intent unless one is given."""
        return self._send(customer_id, None, body, request)

    def _send(self, customer_id: str, conversation_id: str | None, body: SendBody, request: AgentRequest) -> SendAnswer:
        key = idempotency_key(request.idempotency_key, body.id) or f"request:{request.correlation_id}"
        now = self.clock()
        mine = RequestClaim(key=key, action=SEND, occurred_at=now, entry_id="-", agent_id=request.agent_id)
        earlier = self.repository.claim_request(customer_id, mine)
        if earlier is not None and earlier.action != SEND:
            raise Unprocessable(f"This idempotency key was used for a {earlier.action} already; use a new one.",
                                details=[{"field": "Idempotency-Key"}])  # fmt: skip
        claim = earlier or mine
        route = Route.EXPLICIT if body.channel else Route.REPLY if conversation_id else Route.BEST
        command = OutboundCommand(
            correlation_id=request.correlation_id,
            key=f"agent:{customer_id}:{key}",
            customer_id=customer_id,
            conversation_id=conversation_id,
            channel=body.channel,
            route=route,
            intent=body.intent,
            purpose=body.purpose,
            content=body.content(),
            urgent=body.urgent,
            actor=Actor(kind=ActorKind.AGENT, id=claim.agent_id),
            requested_at=claim.occurred_at,
        )
        try:
            submitted = self.outbound.submit(command)
        except RetryableError:
            # Recorded perhaps, but not handed on (a queue or the scheduler throttled): the outbound function finishes
            # it from OutboundQueue (the key makes it one message), so the agent's message is never left stranded.
            self.queue.send(command)
            pending = Submitted(command.message_id, Outcome.QUEUED, command.channel, "pending", "being decided")
            return SendAnswer(202, submitted_view(pending, command))
        view = submitted_view(submitted, command)
        if submitted.outcome == Outcome.CANCELED:
            details = [{"reason": submitted.reason, "message_id": submitted.message_id}]
            why = submitted.detail.rstrip(".")
            if submitted.reason in CONTENT_REASONS:  # the request's content, not the customer's rules
                raise Unprocessable(f"The message cannot be sent as it is: {why}.", details=details)
            raise Conflict(f"The message cannot be sent: {why}.", details=details)
        return SendAnswer(200 if earlier is not None else 202, view)


def submitted_view(submitted: Submitted, command: OutboundCommand) -> dict[str, Any]:
    """The JSON an agent (or a log line) gets for a submitted message."""
    return {
        "message_id": submitted.message_id,
        "customer_id": command.customer_id,
        "conversation_id": command.conversation_id,
        "status": str(submitted.outcome),
        "channel": str(submitted.channel) if submitted.channel else None,
        "reason": str(submitted.reason),
        "detail": submitted.detail,
        "deferred_until": submitted.until.isoformat() if submitted.until else None,
    }
