"""Canonical messages: what every channel's inbound and outbound traffic is normalised to."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Annotated, Final, Literal, Self
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from shared.models.common import (
    PROVIDERS_BY_CHANNEL,
    Channel,
    ConversationId,
    CustomerId,
    MessageId,
    Provider,
    ProviderMessageId,
    UtcDatetime,
)

_MIME_NAME: Final = r"[a-z0-9][a-z0-9!#$&^_.+\-]*"
# type/subtype with optional parameters: WhatsApp sends voice notes as "audio/ogg; codecs=opus".
_MIME_RE: Final = re.compile(rf"{_MIME_NAME}/{_MIME_NAME}(\s*;\s*{_MIME_NAME}=[^;]+)*", re.IGNORECASE)


def _check_http_url(value: str) -> str:
    # Kept as the provider's exact string (not pydantic's HttpUrl): media URLs are often signed, and
    # re-encoding a signed query string breaks the signature.
    if any(char.isspace() for char in value):
        raise ValueError("url must not contain whitespace")
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        raise ValueError("url must be an absolute http(s) URL")
    return value


def _check_mime_type(value: str) -> str:
    if not _MIME_RE.fullmatch(value):
        raise ValueError("mime_type must look like 'image/jpeg' or 'audio/ogg; codecs=opus'")
    return value


HttpUrlText = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_check_http_url)]
MimeType = Annotated[str, StringConstraints(max_length=255), AfterValidator(_check_mime_type)]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=256)]

# Content parts are frozen and strict like every domain model, but never strip whitespace: they are what the
# customer (or agent) wrote, and leading spaces or line breaks are part of it.


class TextPart(BaseModel):
    """Plain text; kept verbatim (not stripped) because whitespace is part of what the customer wrote."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["text"] = "text"
    text: Annotated[str, StringConstraints(min_length=1, max_length=65536)]

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        return value


class MediaPart(BaseModel):
    """An image, audio, video, sticker or document; verbatim, referenced by URL or by the provider's media id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["media"] = "media"
    url: HttpUrlText | None = None
    provider_media_id: ShortText | None = None
    mime_type: MimeType
    caption: Annotated[str, StringConstraints(max_length=4096)] | None = None
    filename: Annotated[str, StringConstraints(min_length=1, max_length=255)] | None = None
    size_bytes: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _has_a_source(self) -> Self:
        if self.url is None and self.provider_media_id is None:
            raise ValueError("media needs a url or a provider_media_id")
        return self


class LocationPart(BaseModel):
    """A shared location, with the name and address as the customer's app sent them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["location"] = "location"
    latitude: Annotated[float, Field(ge=-90, le=90, allow_inf_nan=False)]
    longitude: Annotated[float, Field(ge=-180, le=180, allow_inf_nan=False)]
    name: ShortText | None = None
    address: Annotated[str, StringConstraints(min_length=1, max_length=512)] | None = None


class InteractiveKind(StrEnum):
    """Which kind of interactive element the customer tapped."""

    BUTTON = "button"
    LIST = "list"


class InteractiveReplyPart(BaseModel):
    """The customer's tap on a button or list row we sent; ``reply_id`` is the id we gave that option."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["interactive_reply"] = "interactive_reply"
    reply_id: ShortText
    title: ShortText
    kind: InteractiveKind


class ContactPart(BaseModel):
    """A contact card; phones and e-mails kept as written on the card, not normalised into identities."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["contact"] = "contact"
    name: ShortText
    phones: tuple[Annotated[str, StringConstraints(min_length=1, max_length=64)], ...] = Field((), max_length=20)
    emails: tuple[Annotated[str, StringConstraints(min_length=1, max_length=320)], ...] = Field((), max_length=20)


class ReactionPart(BaseModel):
    """An emoji reaction to an earlier message; an empty emoji means the reaction was removed (as WhatsApp does)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: Literal["reaction"] = "reaction"
    emoji: Annotated[str, StringConstraints(pattern=r"^\S{0,32}$")]
    #: The provider's id of the message reacted to.
    target_message_id: ProviderMessageId


#: One piece of a message's content, chosen by its ``type``.
ContentPart = Annotated[
    TextPart | MediaPart | LocationPart | InteractiveReplyPart | ContactPart | ReactionPart,
    Field(discriminator="type"),
]


class Direction(StrEnum):
    """From the customer (inbound) or to the customer (outbound)."""

    INBOUND = "inbound"
    OUTBOUND = "outbound"


class DeliveryStatus(StrEnum):
    """Delivery progress of an outbound message; see ``status_may_follow`` for the order rules."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    FAILED = "failed"
    CANCELED = "canceled"


_PROGRESS: Final = {
    DeliveryStatus.QUEUED: 0,
    DeliveryStatus.SENT: 1,
    DeliveryStatus.DELIVERED: 2,
    DeliveryStatus.READ: 3,
}


def status_may_follow(current: DeliveryStatus | None, new: DeliveryStatus) -> bool:
    """Tell whether a message whose status is ``current`` may move to ``new``.

    Rules: queued < sent < delivered < read, forward only, skipping allowed (a read receipt may be the first
    callback to arrive); repeating the current status is not a move. ``canceled`` follows ``queued`` only and is
    final. ``failed`` follows ``queued`` or ``sent`` and is final except for ``delivered`` and ``read``: a
    receipt from the handset is first-hand evidence that the message arrived and wins over an earlier failure
    report (carriers' late receipts). ``failed`` never follows ``delivered`` or ``read``.

    Parameters
    ----------
    current : DeliveryStatus or None
        The status now, None when nothing was recorded yet (any status may come first).
    new : DeliveryStatus
        The status reported.

    Returns
    -------
    bool
        True if recording ``new`` moves the message forward.
    """
    if current is None:
        return True
    if new == current or current == DeliveryStatus.CANCELED:
        return False
    if new == DeliveryStatus.CANCELED:
        return current == DeliveryStatus.QUEUED
    if new == DeliveryStatus.FAILED:
        return current in (DeliveryStatus.QUEUED, DeliveryStatus.SENT)
    if current == DeliveryStatus.FAILED:
        return new in (DeliveryStatus.DELIVERED, DeliveryStatus.READ)
    return _PROGRESS[new] > _PROGRESS[current]


class StatusUpdate(BaseModel):
    """One delivery status report; frozen like the history it is appended to."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    status: DeliveryStatus
    at: UtcDatetime
    #: The provider's error code (Twilio 30003, Meta 131026...), kept as text: codes are not numbers to us.
    error_code: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    error_reason: Annotated[str, StringConstraints(min_length=1, max_length=500)] | None = None

    @model_validator(mode="after")
    def _errors_only_on_failure(self) -> Self:
        has_error = self.error_code is not None or self.error_reason is not None
        if has_error and self.status != DeliveryStatus.FAILED:
            raise ValueError("error_code and error_reason are only allowed with status 'failed'")
        return self


class Address(BaseModel):
    """A sender or recipient as its channel knows it: phone, e-mail address, page-scoped id, chat session..."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    value: Annotated[str, StringConstraints(min_length=1, max_length=320)]
    name: ShortText | None = None


class Message(BaseModel):
    """One message in or out, on any channel; frozen: a status change is a new model (``with_status``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    id: MessageId
    direction: Direction
    channel: Channel
    provider: Provider
    #: Required inbound (it is the dedup key); outbound it is known once the provider accepted the message.
    provider_message_id: ProviderMessageId | None = None
    #: None until ingest resolved who wrote (inbound) or for whom it is (outbound).
    customer_id: CustomerId | None = None
    conversation_id: ConversationId | None = None
    sender: Address
    recipient: Address
    parts: tuple[ContentPart, ...] = Field(min_length=1, max_length=32)
    #: When it was sent: the provider's timestamp inbound, the provider's acceptance outbound.
    sent_at: UtcDatetime | None = None
    #: When Hilo received it (inbound only).
    received_at: UtcDatetime | None = None
    #: Accepted status reports, oldest first; every step obeys ``status_may_follow`` (timestamps may not, clocks
    #: differ between providers and handsets).
    status_history: tuple[StatusUpdate, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.provider not in PROVIDERS_BY_CHANNEL[self.channel]:
            raise ValueError(f"provider {self.provider!s} does not carry channel {self.channel!s}")
        if self.conversation_id is not None and self.customer_id is None:
            raise ValueError("a message with a conversation_id needs its customer_id")
        if any(isinstance(part, ReactionPart) for part in self.parts) and len(self.parts) > 1:
            raise ValueError("a reaction is a message of its own: no other parts")
        if self.direction == Direction.INBOUND:
            if self.provider_message_id is None:
                raise ValueError("an inbound message needs its provider_message_id (the dedup key)")
            if self.received_at is None:
                raise ValueError("an inbound message needs received_at")
            if self.status_history:
                raise ValueError("only outbound messages have a delivery status history")
        previous: DeliveryStatus | None = None
        for update in self.status_history:
            if not status_may_follow(previous, update.status):
                raise ValueError(f"status_history goes from {previous!s} to {update.status!s}, which is not allowed")
            previous = update.status
        return self

    @property
    def status(self) -> DeliveryStatus | None:
        """The current delivery status: the last accepted report, None if none (and always for inbound)."""
        return self.status_history[-1].status if self.status_history else None

    @property
    def text(self) -> str:
        """The text parts joined by line breaks; empty when the message has none."""
        return "\n".join(part.text for part in self.parts if isinstance(part, TextPart))

    def with_status(self, update: StatusUpdate) -> Self:
        """Return this message with a status report applied.

        Out-of-order and duplicate callbacks are normal (a read receipt can overtake the delivery receipt), so a
        report that would not move the message forward is ignored rather than raised.

        Parameters
        ----------
        update : StatusUpdate
            The report received.

        Returns
        -------
        Message
            A new message with ``update`` appended to ``status_history``; or ``self`` unchanged (the same object)
            when ``status_may_follow`` says no.

        Raises
        ------
        ValueError
            If the message is inbound.
        """
        if self.direction != Direction.OUTBOUND:
            raise ValueError("only outbound messages have a delivery status")
        if not status_may_follow(self.status, update.status):
            return self
        return self.model_validate({**dict(self), "status_history": (*self.status_history, update)})
