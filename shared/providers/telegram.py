"""Telegram Bot API webhooks: the secret-token check and Update → InboundEnvelope.

Telegram signs nothing: ``setWebhook(secret_token=...)`` makes it send that token verbatim in
``X-Telegram-Bot-Api-Secret-Token``, and we compare it in constant time. Message ids are unique per chat only, so
every provider message id here is ``<chat id>:<message id>`` (``models.common.ProviderMessageId``).

Only private chats become customer messages: in groups and channels the bot overhears people who never wrote to
the business. Update types Hilo does not handle are acknowledged (200) and ignored, because Telegram re-sends
anything that is not a 2xx and would otherwise hold back the bot's later updates.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import Forbidden, InvalidInput, Unauthorized
from shared.models.common import Channel, Provider
from shared.models.inbound import InboundEnvelope, InboundKind
from shared.models.message import (
    Address,
    ContactPart,
    ContentPart,
    InteractiveKind,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    TextPart,
)
from shared.webhooks import Normalized, failed_fields, secrets_equal, validated

SECRET_HEADER: Final = "x-telegram-bot-api-secret-token"  # noqa: S105 - a header name
BOT_RECIPIENT: Final = "bot"
#: Update fields Telegram may send; ``parse_update`` names the one it found when ignoring it.
_OTHER_UPDATE_TYPES: Final = (
    "channel_post",
    "edited_channel_post",
    "business_connection",
    "business_message",
    "edited_business_message",
    "deleted_business_messages",
    "message_reaction",
    "message_reaction_count",
    "inline_query",
    "chosen_inline_result",
    "shipping_query",
    "pre_checkout_query",
    "purchased_paid_media",
    "poll",
    "poll_answer",
    "my_chat_member",
    "chat_member",
    "chat_join_request",
    "chat_boost",
    "removed_chat_boost",
)
_PHONE_NOISE: Final = re.compile(r"[\s\-().]")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class User(_Wire):
    id: int
    is_bot: bool = False
    first_name: str = ""
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None


class Chat(_Wire):
    id: int
    type: str


class PhotoSize(_Wire):
    file_id: str
    width: int = 0
    height: int = 0
    file_size: int | None = None


class File(_Wire):
    """Document, voice, audio, video, animation, video note or sticker: the fields Hilo keeps."""

    file_id: str
    mime_type: str | None = None
    file_name: str | None = None
    file_size: int | None = None
    is_animated: bool = False
    is_video: bool = False


class Location(_Wire):
    latitude: float
    longitude: float


class Venue(_Wire):
    location: Location
    title: str | None = None
    address: str | None = None


class Contact(_Wire):
    phone_number: str
    first_name: str = ""
    last_name: str | None = None
    user_id: int | None = None


class ReplyTo(_Wire):
    message_id: int


class Message(_Wire):
    message_id: int
    from_: User | None = Field(None, alias="from")
    chat: Chat
    date: int
    edit_date: int | None = None
    text: str | None = None
    caption: str | None = None
    photo: list[PhotoSize] | None = None
    document: File | None = None
    voice: File | None = None
    audio: File | None = None
    video: File | None = None
    video_note: File | None = None
    animation: File | None = None
    sticker: File | None = None
    location: Location | None = None
    venue: Venue | None = None
    contact: Contact | None = None
    reply_to_message: ReplyTo | None = None


class CallbackQuery(_Wire):
    id: str
    from_: User = Field(alias="from")
    message: Message | None = None
    data: str | None = None


class Update(_Wire):
    # Extra fields kept (unvalidated) only to name an ignored update's type in the log.
    model_config = ConfigDict(extra="allow", frozen=True)

    update_id: int
    message: Message | None = None
    edited_message: Message | None = None
    callback_query: CallbackQuery | None = None


def verify_secret_token(header: str | None, configured: str | None) -> None:
    """Check the ``X-Telegram-Bot-Api-Secret-Token`` header against ``HILO_TELEGRAM_SECRET_TOKEN``.

    Parameters
    ----------
    header : str or None
        The header as received.
    configured : str or None
        The secret token given to ``setWebhook``; None when Hilo is not configured for Telegram.

    Raises
    ------
    Forbidden
        Telegram is not configured, so no request can be accepted.
    Unauthorized
        The header is missing or differs (compared in constant time).
    """
    if not configured:
        raise Forbidden("Telegram is not configured: set HILO_TELEGRAM_SECRET_TOKEN and pass it to setWebhook.")
    if not secrets_equal(header, configured):
        raise Unauthorized("Missing or wrong X-Telegram-Bot-Api-Secret-Token.")


def parse_update(body: bytes) -> Update:
    """Read a webhook body as a Telegram ``Update``.

    Raises
    ------
    InvalidInput
        Not JSON, or not an object with an integer ``update_id`` and well-formed known fields. A real Telegram
        delivery never is; answering 400 makes a misconfigured sender visible instead of silently dropped.
    """
    try:
        document: Any = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise InvalidInput("The body is not JSON; Telegram sends a JSON Update.") from error
    if not isinstance(document, dict) or "update_id" not in document:
        raise InvalidInput("The body is not a Telegram Update (no update_id).")
    return validated(Update, document, "The body is not a well-formed Telegram Update.")


def normalize(update: Update, *, correlation_id: str, received_at: datetime) -> Normalized:
    """Turn one Update into the envelope ingest consumes, or say why it was ignored.

    Parameters
    ----------
    update : Update
        A parsed update (``parse_update``).
    correlation_id : str
        The request id, carried into the envelope.
    received_at : datetime
        When Hilo received it; also ``occurred_at`` for a callback query, which carries no timestamp.

    Returns
    -------
    Normalized
        One inbound envelope, or an ignore reason (unsupported update or content, group chat), or a rejected
        reason when the update does not fit Hilo's limits (a 200 all the same: Telegram would re-send it forever).
    """
    try:
        if update.message is not None:
            return _from_message(update, update.message, False, correlation_id, received_at)
        if update.edited_message is not None:
            return _from_message(update, update.edited_message, True, correlation_id, received_at)
        if update.callback_query is not None:
            return _from_callback(update, update.callback_query, correlation_id, received_at)
    except ValidationError as error:
        problems = ", ".join(failed_fields(error))
        return Normalized(rejected=(f"update {update.update_id} does not fit the envelope: {problems}",))
    kind = next((name for name in _OTHER_UPDATE_TYPES if name in (update.model_extra or {})), "unknown")
    return Normalized(ignored=(f"update type {kind} is not handled",))


def callback_answer(update: Update) -> dict[str, str]:
    """The webhook's answer: ``answerCallbackQuery`` for a button tap (stops the client's spinner), else ``{}``."""
    if update.callback_query is None:
        return {}
    return {"method": "answerCallbackQuery", "callback_query_id": update.callback_query.id}


def _timestamp(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError) as error:
        raise InvalidInput("A Telegram date is out of range.") from error


def _sender(user: User | None, chat: Chat) -> tuple[Address, dict[str, str]]:
    # In a private chat the chat id is the user's id, so it stands in if ``from`` is ever absent.
    user_id = user.id if user is not None else chat.id
    name = " ".join(part for part in (user.first_name, user.last_name) if part).strip()[:256] if user else ""
    metadata = {"chat_id": str(chat.id)}
    if user is not None and user.username:
        metadata["username"] = user.username
    if user is not None and user.language_code:
        metadata["language_code"] = user.language_code
    return Address(value=str(user_id), name=name or None), metadata


def normalize_phone(phone: str) -> str:
    """Telegram's ``contact.phone_number`` as ``+digits`` (Telegram sends ``573001234567`` or ``+573001234567``)."""
    compact = _PHONE_NOISE.sub("", phone)
    return compact if compact.startswith("+") else f"+{compact}"


def _media(file: File, default_mime: str, caption: str | None) -> MediaPart:
    return MediaPart(
        provider_media_id=file.file_id,
        mime_type=file.mime_type or default_mime,
        filename=file.file_name,
        size_bytes=file.file_size,
        caption=caption,
    )


def _parts(message: Message) -> tuple[list[ContentPart], dict[str, str]]:
    parts: list[ContentPart] = []
    extra: dict[str, str] = {}
    caption = message.caption or None
    if message.text and message.text.strip():
        parts.append(TextPart(text=message.text))
    if message.photo:
        # Telegram sends every size it made; the last-but-not-always largest is picked by area.
        largest = max(message.photo, key=lambda size: (size.width * size.height, size.file_size or 0))
        parts.append(
            MediaPart(
                provider_media_id=largest.file_id, mime_type="image/jpeg", size_bytes=largest.file_size, caption=caption
            )
        )
    files = (
        (message.document, "application/octet-stream"),
        (message.voice, "audio/ogg"),
        (message.audio, "audio/mpeg"),
        (message.video, "video/mp4"),
        (message.video_note, "video/mp4"),
        (message.animation, "video/mp4"),
    )
    for file, default_mime in files:
        if file is not None:
            parts.append(_media(file, default_mime, caption))
    if message.sticker is not None:
        sticker = message.sticker
        mime = "video/webm" if sticker.is_video else "application/x-tgsticker" if sticker.is_animated else "image/webp"
        parts.append(_media(sticker, mime, None))
    if message.venue is not None:
        venue = message.venue
        parts.append(
            LocationPart(
                latitude=venue.location.latitude,
                longitude=venue.location.longitude,
                name=venue.title or None,
                address=venue.address or None,
            )
        )
    elif message.location is not None:
        parts.append(LocationPart(latitude=message.location.latitude, longitude=message.location.longitude))
    if message.contact is not None:
        contact = message.contact
        name = " ".join(part for part in (contact.first_name, contact.last_name) if part).strip()
        parts.append(ContactPart(name=name[:256] or "?", phones=(normalize_phone(contact.phone_number),)))
        if contact.user_id is not None:
            extra["contact_user_id"] = str(contact.user_id)
            # The customer shared their OWN number (the "share my phone" button): ingest links this identity.
            sender_id = message.from_.id if message.from_ is not None else message.chat.id
            extra["contact_is_sender"] = "true" if contact.user_id == sender_id else "false"
    return parts, extra


def _from_message(
    update: Update, message: Message, edited: bool, correlation_id: str, received_at: datetime
) -> Normalized:
    if message.chat.type != "private":
        return Normalized(ignored=(f"{message.chat.type} chat: only private chats are customer conversations",))
    parts, extra = _parts(message)
    if not parts:
        return Normalized(ignored=("message without supported content",))
    sender, metadata = _sender(message.from_, message.chat)
    chat_id = message.chat.id
    provider_message_id = f"{chat_id}:{message.message_id}"
    occurred_at = _timestamp(message.date)
    if edited:
        # Each edit is its own event; the original message's id tells ingest which message changed.
        edit_date = message.edit_date if message.edit_date is not None else message.date
        metadata["edited_message_id"] = provider_message_id
        provider_message_id = f"{provider_message_id}:edit:{edit_date}"
    envelope = InboundEnvelope(
        correlation_id=correlation_id,
        kind=InboundKind.MESSAGE_EDITED if edited else InboundKind.MESSAGE,
        channel=Channel.TELEGRAM,
        provider=Provider.TELEGRAM,
        provider_message_id=provider_message_id,
        occurred_at=occurred_at,
        received_at=received_at,
        sender=sender,
        recipient=Address(value=BOT_RECIPIENT),
        parts=tuple(parts),
        in_reply_to=f"{chat_id}:{message.reply_to_message.message_id}" if message.reply_to_message else None,
        metadata={**metadata, **extra, "update_id": str(update.update_id)},
    )
    return Normalized(inbound=(envelope,))


def _from_callback(update: Update, query: CallbackQuery, correlation_id: str, received_at: datetime) -> Normalized:
    message = query.message
    if message is not None and message.chat.type != "private":
        return Normalized(ignored=(f"callback in a {message.chat.type} chat: only private chats are handled",))
    if not query.data:
        return Normalized(ignored=("callback query without data (game or inline message)",))
    chat = message.chat if message is not None else Chat(id=query.from_.id, type="private")
    sender, metadata = _sender(query.from_, chat)
    envelope = InboundEnvelope(
        correlation_id=correlation_id,
        kind=InboundKind.MESSAGE,
        channel=Channel.TELEGRAM,
        provider=Provider.TELEGRAM,
        provider_message_id=f"callback:{query.id}",
        occurred_at=received_at,
        received_at=received_at,
        sender=sender,
        recipient=Address(value=BOT_RECIPIENT),
        parts=(InteractiveReplyPart(reply_id=query.data, title=query.data, kind=InteractiveKind.BUTTON),),
        in_reply_to=f"{message.chat.id}:{message.message_id}" if message is not None else None,
        metadata={**metadata, "update_id": str(update.update_id), "callback_query_id": query.id},
    )
    return Normalized(inbound=(envelope,))
