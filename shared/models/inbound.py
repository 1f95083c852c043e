"""What every channel webhook hands to the rest of Hilo: one inbound envelope shape, whatever the provider.

Webhooks verify, normalise to these envelopes and enqueue them; ingest (inbound FIFO queue) and the status step
(status queue) consume them. ``provider_message_id`` is the idempotency key end to end: the FIFO dedup id, and the
key of the conditional write that makes ingest exactly-once.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from shared.models.common import Channel, Provider, ProviderMessageId, UtcDatetime
from shared.models.events import QueueEnvelope
from shared.models.message import Address, ContentPart, DeliveryStatus

ShortValue = Annotated[str, StringConstraints(min_length=1, max_length=1024)]


class InboundKind(StrEnum):
    """What happened on the channel."""

    MESSAGE = "message"  # a customer wrote (text, media, location, button reply...)
    MESSAGE_EDITED = "message_edited"  # the customer edited an earlier message (Telegram, Messenger)
    # Our own side wrote to the customer and the provider echoed it back (Messenger/Instagram ``is_echo``): an agent
    # in Meta's inbox, another app, or Hilo's own send. Never a customer message; ``sender`` is still the customer,
    # so an echo keeps its place in that customer's FIFO group, and its id is the one the Send API returned.
    ECHO = "echo"
    CALL = "call"  # a phone call reached us (voice)
    CALL_ENDED = "call_ended"  # a call finished: duration and outcome in ``call``


class CallDetails(BaseModel):
    """What a voice webhook knows about a call."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    direction: Annotated[str, StringConstraints(min_length=1, max_length=32)] | None = None
    duration_seconds: Annotated[int, Field(ge=0)] | None = None
    digits: Annotated[str, StringConstraints(pattern=r"^[0-9*#]{1,64}$")] | None = None  # IVR input (ID digits)


class InboundEnvelope(QueueEnvelope):
    """One inbound message or call, normalised; the body of an InboundQueue message."""

    schema_version: Literal[1] = 1
    type: Literal["inbound"] = "inbound"
    kind: InboundKind
    channel: Channel
    provider: Provider
    provider_message_id: ProviderMessageId
    occurred_at: UtcDatetime  # the provider's own timestamp (stable across its retries) or, lacking one, receipt
    received_at: UtcDatetime
    sender: Address  # the customer: E.164 phone, e-mail, or channel-scoped id
    recipient: Address  # our number, page, bot or mailbox
    parts: tuple[ContentPart, ...] = Field(default=(), max_length=32)
    call: CallDetails | None = None
    in_reply_to: ProviderMessageId | None = None  # the provider id of the message this one answers
    references: tuple[ProviderMessageId, ...] = Field(default=(), max_length=64)  # e-mail threading
    subject: Annotated[str, StringConstraints(max_length=998)] | None = None  # e-mail
    metadata: dict[str, ShortValue] = Field(default_factory=dict, max_length=32)  # provider extras (ids, verdicts)
    raw_ref: Annotated[str, StringConstraints(min_length=1, max_length=1024)] | None = None  # raw payload in S3

    @property
    def group_id(self) -> str:
        """FIFO group: one customer on one channel, so their messages keep their order."""
        return f"{self.channel}:{self.sender.value}"


class StatusEnvelope(QueueEnvelope):
    """A provider's report on a message we sent; the body of a StatusQueue message."""

    schema_version: Literal[1] = 1
    type: Literal["status"] = "status"
    channel: Channel
    provider: Provider
    provider_message_id: ProviderMessageId  # the id the provider gave OUR outbound message
    status: DeliveryStatus
    occurred_at: UtcDatetime
    recipient: Address | None = None
    error_code: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    error_reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None

    @property
    def dedup_id(self) -> str:
        """One status of one message: the same callback twice is one effect; the next status is another."""
        return f"{self.provider_message_id}:{self.status}"


class ClaimCheck(QueueEnvelope):
    """Stands in the queue for an envelope too large for SQS; the envelope itself is in S3."""

    schema_version: Literal[1] = 1
    type: Literal["claim_check"] = "claim_check"
    bucket: Annotated[str, StringConstraints(min_length=3, max_length=63)]
    key: Annotated[str, StringConstraints(min_length=1, max_length=1024)]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    size_bytes: Annotated[int, Field(ge=0)]


QueueBody = Annotated[InboundEnvelope | StatusEnvelope | ClaimCheck, Field(discriminator="type")]


class QueueMessage(BaseModel):
    """Parses any body the inbound or status queue can hold."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    body: QueueBody

    @classmethod
    def parse(cls, raw: str | bytes) -> InboundEnvelope | StatusEnvelope | ClaimCheck:
        """Validate one SQS message body (raises pydantic.ValidationError on anything else)."""
        document: Any = json.loads(raw)
        return cls.model_validate({"body": document}).body
