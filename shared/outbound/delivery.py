"""What a provider said about a message we asked it to send: the port every sender's provider client speaks.

A client (``shared/adapters/senders``) turns a ``SendJob`` into the provider's request and its answer into one of:
``Accepted`` (the provider took it and named it), ``DeliveryRejected`` (permanent: this message will never go this
way, retrying cannot help), or ``RetryableError`` (429, 5xx, a timeout, bad credentials: the same request may work
later, so SQS redelivers it and, after five tries, parks it in the DLQ for a human).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from shared.errors import PermanentError
from shared.models.message import DeliveryStatus
from shared.models.outbound import SendJob


class Rejection(StrEnum):
    """Why a provider refused a message for good; decides what happens next (docs/outbound.md, "Failures")."""

    #: Not a number/address the channel can reach (Twilio 21211, Telegram "chat not found"): fall back.
    INVALID_ADDRESS = "invalid_address"
    #: The address exists but is not on this channel (no WhatsApp account, Meta 131026): fall back.
    NOT_ON_CHANNEL = "not_on_channel"
    #: WhatsApp/Messenger free-form outside the 24-hour window (Meta 131047): a template, or fall back.
    WINDOW_CLOSED = "window_closed"
    #: The customer told the provider to stop (Twilio 21610 after STOP, a blocked Telegram bot): fall back only for
    #: transactional messages, and never on the same channel.
    UNSUBSCRIBED = "unsubscribed"
    #: The content itself was refused (a template parameter, a media type, a body too long): no fallback helps.
    CONTENT = "content"
    #: Anything else the provider calls final.
    OTHER = "other"


@dataclass(frozen=True)
class Accepted:
    """The provider took the message: its id (what status callbacks will name) and the status it reported."""

    provider_message_id: str
    status: DeliveryStatus = DeliveryStatus.SENT


class DeliveryRejected(PermanentError):
    """The provider refused this message for good; ``provider_code`` and ``reason`` are its own words."""

    code = "delivery_rejected"

    def __init__(self, message: str, *, rejection: Rejection, provider_code: str, reason: str) -> None:
        super().__init__(message)
        self.rejection = rejection
        self.provider_code = provider_code[:64]
        self.reason = reason[:500]

    @property
    def may_fall_back(self) -> bool:
        """True when another channel could still reach the customer with this message."""
        return self.rejection not in (Rejection.CONTENT,)


class ProviderClient(Protocol):
    """Sends one job through one provider. Implementations never log the message content or credentials."""

    def send(self, job: SendJob) -> Accepted:
        """Send ``job``; raise ``DeliveryRejected`` (permanent) or ``RetryableError`` (try again later)."""
        ...
