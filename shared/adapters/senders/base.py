"""What every provider client shares: the configuration error, settings look-ups and local content checks."""

from __future__ import annotations

from typing import Final

from pydantic import SecretStr

from shared.errors import RetryableError
from shared.models.message import MediaPart
from shared.outbound.delivery import DeliveryRejected, Rejection

#: ``provider_code`` of a refusal Hilo decides itself, before calling the provider (the provider would refuse too).
LOCAL_CODE: Final = "hilo"


class SenderNotConfigured(RetryableError):
    """A setting the sender needs is missing: a person sets it and redrives the message from the DLQ.

    Retryable on purpose: dropping the customer's message because a secret was not filled in yet would be worse than
    parking it. The message names the settings, never a value.
    """

    code = "sender_not_configured"

    def __init__(self, what: str, settings: tuple[str, ...]) -> None:
        super().__init__(f"{what} is not configured: set {', '.join(settings)}.")
        self.settings = settings


def require(what: str, **values: str | SecretStr | None) -> None:
    """Raise ``SenderNotConfigured`` naming every ``HILO_*`` setting (keyword = setting name) that is empty."""
    missing = tuple(name for name, value in values.items() if not _present(value))
    if missing:
        raise SenderNotConfigured(what, missing)


def _present(value: str | SecretStr | None) -> bool:
    if isinstance(value, SecretStr):
        return bool(value.get_secret_value())
    return bool(value)


def secret(value: SecretStr | None) -> str:
    """The clear value of a secret setting already checked by ``require``."""
    return value.get_secret_value() if value is not None else ""


def media_kind(media: MediaPart) -> str:
    """``image``, ``video``, ``audio`` or ``document``: the four kinds every chat API sends by URL."""
    top = media.mime_type.split("/", 1)[0].lower()
    return top if top in ("image", "video", "audio") else "document"


def rejected_locally(provider: str, rejection: Rejection, reason: str) -> DeliveryRejected:
    """A refusal decided before calling ``provider``: the same request would be refused by it, every time."""
    return DeliveryRejected(
        f"{provider}: the message cannot be sent as it is ({rejection})",
        rejection=rejection,
        provider_code=LOCAL_CODE,
        reason=reason,
    )


def with_captions(
    media: tuple[MediaPart, ...], text: str | None, *, caption_limit: int, kinds: frozenset[str]
) -> tuple[list[tuple[MediaPart, str | None]], str | None]:
    """Pair each medium with its caption, folding the text into a lone medium's caption when it fits.

    Chat APIs send one medium per message. A photo with a short text reads best as one message (the text as its
    caption); anything else goes as the media, each with its own caption, then the text last.

    Returns
    -------
    tuple of (list, str or None)
        The media with their captions, in order, and the text still to send after them (None when folded).
    """
    lone = media[0] if len(media) == 1 else None
    if text and lone is not None and not lone.caption and media_kind(lone) in kinds and len(text) <= caption_limit:
        return [(lone, text)], None
    return [(item, item.caption) for item in media], text
