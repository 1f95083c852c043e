"""Meta webhooks (WhatsApp Cloud API, Messenger, Instagram): the handshake, ``X-Hub-Signature-256``, and
notifications → envelopes. One module for the three channels: they share the handshake, the signature and the
envelope ``{"object", "entry": [...]}``; only what is inside an entry differs (``changes[].value`` for WhatsApp,
``messaging[]``/``standby[]`` for Messenger and Instagram).

Trust: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>`` is checked over the exact bytes received
(Meta signs its escaped-unicode form, so parsed JSON is never re-serialised), in constant time, before anything is
parsed. The GET handshake compares ``hub.verify_token`` in constant time too.

Status codes, and why (Meta retries every answer that is not 200, with backoff, for up to 7 days):

- 200 once everything usable is enqueued. Also 200, with each dropped item logged and counted, for genuine traffic
  Hilo does not turn into envelopes: an ``object`` this endpoint does not serve, other webhook fields (template
  status, account updates, comments), event and message types Hilo does not handle, ``unsupported`` messages,
  value-level ``errors``. A 4xx would change nothing but make Meta re-send the same notification for a week and
  eventually flag or disable the subscription. Items that are malformed inside a well-formed notification are
  ``rejected`` (logged, counted as ``WebhookItemsRejected``); the rest of the notification still goes, and the
  answer is still 200, because a retry would carry the same malformed item.
- 400 for a signed body that is not a Meta notification at all (not UTF-8 JSON, not an object with an ``object``
  string and an ``entry`` list). Meta never sends one; whoever holds the app secret and did should see why.
- 401 for a missing or wrong signature (nothing is parsed or enqueued); 403 for a failed handshake and whenever Hilo
  is not configured (``HILO_META_APP_SECRET`` / ``HILO_META_VERIFY_TOKEN``), so it can check nothing; 400 for a
  handshake whose token matches but whose ``hub.challenge`` is missing. Never a 5xx for anything a caller sent.
- 503 only when the enqueue fails (``WebhookPorts.deliver``): Meta retries, and nothing is lost.

Mapping choices:

- Dedup key: the ``wamid`` / ``mid``. A postback without ``mid`` uses ``postback:<sender>:<timestamp>``, a reaction
  (which has no id of its own) ``reaction:<target mid>:<action>:<timestamp>``, a Messenger edit
  ``<mid>:edit:<num_edit>``; all stable across Meta's retries.
- WhatsApp sender: ``+<wa_id>`` with the profile name from ``contacts``; recipient: ``phone_number_id`` (the
  display number and WABA id travel in metadata). Statuses ``sent|delivered|read|failed`` map one to one; ``played``
  (a voice message was listened to) counts as ``read``.
- Messenger/Instagram sender: the PSID/IGSID. Echoes (``is_echo``) are our side's outbound (an agent in Meta's
  inbox, another app, or Hilo's own send): kind ``echo``, with the customer as ``sender`` so they keep their place in
  the customer's FIFO group, and ``app_id``/``metadata`` so ingest can tell Hilo's own sends (same ``mid``) apart.
- ``standby[]`` (another app owns the thread under the handover protocol) is normalised like ``messaging[]`` and
  marked ``metadata.standby = "true"``: the timeline must show those messages, but bots should not answer them.
- Receipts that name messages (``delivery.mids``, Instagram ``read.mid``) become statuses. Watermark-only receipts
  (Messenger ``read``, ``delivery`` without ``mids``) name no message, so they are ignored with a reason: a status
  envelope is per message id.

Logs carry ids, types and counts; never text, phone numbers or names (reasons name fields, never values).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import mimetypes
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlsplit

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from shared import clock
from shared.errors import Forbidden, InvalidInput, Unauthorized
from shared.http import api_handler, create_app, raw_body
from shared.models.common import Channel, Provider
from shared.models.inbound import InboundEnvelope, InboundKind, StatusEnvelope
from shared.models.message import (
    Address,
    ContactPart,
    ContentPart,
    DeliveryStatus,
    InteractiveKind,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    MimeType,
    ReactionPart,
    TextPart,
)
from shared.settings import Settings
from shared.webhooks import Normalized, failed_fields, secrets_equal, validated, webhook_ports

SIGNATURE_HEADER: Final = "x-hub-signature-256"
CHALLENGE_CONTENT_TYPE: Final = "text/plain"
#: Meta's notifications can reach ~3 MB; API Gateway's base64 of a non-text body still fits Lambda's 6 MB.
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
#: The ``object`` each endpoint serves.
OBJECT_BY_CHANNEL: Final = {
    Channel.WHATSAPP: "whatsapp_business_account",
    Channel.MESSENGER: "page",
    Channel.INSTAGRAM: "instagram",
}
MAX_PARTS: Final = 32  # InboundEnvelope.parts

_CHALLENGE_RE: Final = re.compile(r"[\x21-\x7e]{1,256}")
_WA_ID_RE: Final = re.compile(r"\+?([0-9]{5,20})")
_WA_ID_PATTERN: Final = r"^\+?[0-9]{5,20}$"  # pydantic patterns are unanchored searches
_WA_STATUS: Final = {
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "played": DeliveryStatus.READ,  # a voice message was played: it was read, and more
    "failed": DeliveryStatus.FAILED,
}
_WA_MEDIA_DEFAULT_MIME: Final = {
    "image": "image/jpeg",
    "audio": "audio/ogg",
    "video": "video/mp4",
    "document": "application/octet-stream",
    "sticker": "image/webp",
}
_PAGE_MEDIA_DEFAULT_MIME: Final = {
    "image": "image/jpeg",
    "audio": "audio/mp4",
    "video": "video/mp4",
    "file": "application/octet-stream",
}
_EVENT_COMMON: Final = frozenset({"sender", "recipient", "timestamp"})
_MIME: Final = TypeAdapter(MimeType)
_LIST: Final = TypeAdapter(list[Any])
# Built-in table only (no /etc/mime.types), so the guess is the same on every machine.
_GUESS: Final = mimetypes.MimeTypes(filenames=())


class _Ignored(Exception):
    """Raised by a step for genuine traffic Hilo does not turn into an envelope (reason in the message)."""


class _Rejected(Exception):
    """Raised by a step for a malformed item (reason in the message: field names, never values)."""


# --------------------------------------------------------------------------------------------- trust


def verify_handshake(query: Mapping[str, str] | None, settings: Settings) -> str:
    """Answer Meta's subscription check (``GET <callback>?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…``).

    Parameters
    ----------
    query : Mapping or None
        The query string parameters (API Gateway has decoded them).
    settings : Settings
        Hilo's settings: ``HILO_META_VERIFY_TOKEN``.

    Returns
    -------
    str
        ``hub.challenge``, to be echoed verbatim as a ``text/plain`` body.

    Raises
    ------
    Forbidden
        No verify token is configured, ``hub.mode`` is not ``subscribe`` or the token differs (constant time).
    InvalidInput
        The token matches but ``hub.challenge`` is missing or not what Meta sends (printable, ≤ 256 characters).
    """
    if settings.meta_verify_token is None:
        raise Forbidden(
            "Meta is not configured: set HILO_META_VERIFY_TOKEN to the Verify Token typed in the app's webhook "
            "settings."
        )
    params = query or {}
    if params.get("hub.mode") != "subscribe" or not secrets_equal(
        params.get("hub.verify_token"), settings.meta_verify_token.get_secret_value()
    ):
        raise Forbidden("Verification refused: hub.mode must be 'subscribe' and hub.verify_token the configured one.")
    challenge = params.get("hub.challenge") or ""
    if not _CHALLENGE_RE.fullmatch(challenge):
        raise InvalidInput("hub.challenge is missing or is not printable text of at most 256 characters.")
    return challenge


def verify_signature(body: bytes, header: str | None, app_secret: str) -> None:
    """Check ``X-Hub-Signature-256`` against the raw body, in constant time.

    Parameters
    ----------
    body : bytes
        The body exactly as received (after undoing API Gateway's base64).
    header : str or None
        The ``X-Hub-Signature-256`` header: ``sha256=<hex>``.
    app_secret : str
        The App Secret of the Meta app subscribed to the webhook.

    Raises
    ------
    Unauthorized
        The header is missing, not ``sha256=<hex>``, or does not match.
    """
    if not header:
        raise Unauthorized("Missing X-Hub-Signature-256 header.")
    scheme, separator, given = header.strip().partition("=")
    if not separator or scheme.strip().lower() != "sha256":
        raise Unauthorized("X-Hub-Signature-256 must be 'sha256=<hex HMAC-SHA256 of the body>'.")
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    if not secrets_equal(given.strip().lower(), expected):
        raise Unauthorized("Invalid X-Hub-Signature-256.")


def verify_request(event: APIGatewayProxyEventV2, settings: Settings) -> bytes:
    """Read one notification's body and verify its signature (the first step of every Meta POST).

    Parameters
    ----------
    event : APIGatewayProxyEventV2
        The HTTP API event.
    settings : Settings
        Hilo's settings: ``HILO_META_APP_SECRET``.

    Returns
    -------
    bytes
        The verified raw body.

    Raises
    ------
    Forbidden
        No app secret is configured.
    Unauthorized
        The signature is missing or wrong.
    PayloadTooLarge, InvalidInput
        The body is over ``MAX_BODY_BYTES``, or marked base64 but not base64.
    """
    if settings.meta_app_secret is None:
        raise Forbidden(
            "Meta is not configured: set HILO_META_APP_SECRET to the App Secret (App settings → Basic) so "
            "X-Hub-Signature-256 can be checked."
        )
    body = raw_body(event, max_bytes=MAX_BODY_BYTES)
    verify_signature(body, (event.headers or {}).get(SIGNATURE_HEADER), settings.meta_app_secret.get_secret_value())
    return body


# --------------------------------------------------------------------------------------------- wire models


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Notification(_Wire):
    """The envelope of every Meta notification; entries are read one by one so one bad entry sinks nothing else."""

    object_: str = Field(alias="object")
    entry: list[Any]


class _WaEntry(_Wire):
    id: str = ""
    changes: list[Any] = []


class _WaChange(_Wire):
    field: str
    value: Any = None


class _WaValue(_Wire):
    metadata: Any = None  # validated only when there are messages: statuses do not need it
    contacts: list[Any] = []
    messages: list[Any] = []
    statuses: list[Any] = []
    errors: list[Any] = []


class _WaMetadata(_Wire):
    phone_number_id: str = Field(min_length=1)
    display_phone_number: str | None = None


class _WaContext(_Wire):
    id: str | None = None
    forwarded: bool = False
    frequently_forwarded: bool = False
    referred_product: dict[str, Any] | None = None


class _WaReferral(_Wire):
    source_url: str | None = None
    source_id: str | None = None
    source_type: str | None = None
    headline: str | None = None
    media_type: str | None = None
    ctwa_clid: str | None = None


class _WaMessage(_Wire):
    from_: str = Field(alias="from", pattern=_WA_ID_PATTERN)
    id: str
    timestamp: int
    type: str
    context: _WaContext | None = None
    referral: _WaReferral | None = None


class _WaText(_Wire):
    body: str


class _WaMedia(_Wire):
    id: str
    mime_type: str | None = None
    sha256: str | None = None
    caption: str | None = None
    filename: str | None = None
    voice: bool = False
    animated: bool = False


class _WaLocation(_Wire):
    latitude: float
    longitude: float
    name: str | None = None
    address: str | None = None


class _WaCardName(_Wire):
    formatted_name: str | None = None
    first_name: str | None = None
    last_name: str | None = None


class _WaCardPhone(_Wire):
    phone: str | None = None
    wa_id: str | None = None


class _WaCardEmail(_Wire):
    email: str | None = None


class _WaCard(_Wire):
    name: _WaCardName = _WaCardName()
    phones: list[_WaCardPhone] = []
    emails: list[_WaCardEmail] = []


class _WaReply(_Wire):
    id: str
    title: str = ""


class _WaInteractive(_Wire):
    type: str
    button_reply: _WaReply | None = None
    list_reply: _WaReply | None = None


class _WaButton(_Wire):
    payload: str | None = None
    text: str | None = None


class _WaReaction(_Wire):
    message_id: str
    emoji: str | None = None


class _WaError(_Wire):
    code: int | str | None = None
    title: str | None = None
    message: str | None = None
    error_data: dict[str, Any] | None = None


class _WaStatus(_Wire):
    id: str
    status: str
    timestamp: int
    recipient_id: str | None = None
    errors: list[_WaError] = []


class _PageEntry(_Wire):
    id: str = ""
    messaging: list[Any] = []
    standby: list[Any] = []
    changes: list[Any] = []


class _Party(_Wire):
    id: str = Field(min_length=1)


class _Event(_Wire):
    sender: _Party
    recipient: _Party
    timestamp: int


class _QuickReply(_Wire):
    payload: str


class _Coordinates(_Wire):
    lat: float
    long: float


class _AttachmentPayload(_Wire):
    url: str | None = None
    title: str | None = None
    sticker_id: int | str | None = None
    coordinates: _Coordinates | None = None


class _Attachment(_Wire):
    type: str
    payload: _AttachmentPayload | None = None
    title: str | None = None
    url: str | None = None


class _Story(_Wire):
    id: str | None = None


class _ReplyTo(_Wire):
    mid: str | None = None
    story: _Story | None = None


class _PageReferral(_Wire):
    ref: str | None = None
    source: str | None = None
    type: str | None = None
    ad_id: str | None = None


class _PageMessage(_Wire):
    mid: str
    text: str | None = None
    quick_reply: _QuickReply | None = None
    attachments: list[Any] = []
    reply_to: _ReplyTo | None = None
    referral: _PageReferral | None = None
    is_echo: bool = False
    is_deleted: bool = False
    is_unsupported: bool = False
    app_id: int | str | None = None
    metadata: str | None = None


class _MessageEdit(_Wire):
    mid: str
    text: str = ""
    num_edit: int = 0


class _Postback(_Wire):
    payload: str = ""
    title: str | None = None
    mid: str | None = None
    referral: _PageReferral | None = None


class _Reaction(_Wire):
    mid: str
    action: str = "react"
    emoji: str | None = None
    reaction: str | None = None


class _Delivery(_Wire):
    mids: list[str] = []
    watermark: int | None = None


class _Read(_Wire):
    mid: str | None = None
    watermark: int | None = None


# --------------------------------------------------------------------------------------------- parse


def parse_notification(body: bytes) -> Notification:
    """Read a verified body as a Meta notification; its entries are checked later, one by one.

    Raises
    ------
    InvalidInput
        Not UTF-8 JSON, or not an object with an ``object`` string and an ``entry`` list. Meta never sends such a
        body, so whoever signed it should see the 400.
    """
    try:
        document: Any = json.loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidInput("The body is not JSON; Meta sends a JSON notification.") from error
    if not isinstance(document, dict):
        raise InvalidInput("The body is not a Meta notification (a JSON object with 'object' and 'entry').")
    return validated(
        Notification, document, "The body is not a Meta notification (a JSON object with 'object' and 'entry')."
    )


# --------------------------------------------------------------------------------------------- normalize


def normalize(
    notification: Notification, *, channel: Channel, correlation_id: str, received_at: datetime
) -> Normalized:
    """Turn one notification into envelopes, item by item.

    Parameters
    ----------
    notification : Notification
        A parsed notification (``parse_notification``).
    channel : Channel
        The endpoint it arrived on: ``whatsapp``, ``messenger`` or ``instagram``.
    correlation_id : str
        The request id, carried into every envelope.
    received_at : datetime
        When Hilo received it.

    Returns
    -------
    Normalized
        Inbound envelopes (messages, edits, echoes), status envelopes, the reasons items were ignored (genuine
        traffic Hilo does not handle) and the reasons items were rejected (malformed; the others still go).
    """
    expected = OBJECT_BY_CHANNEL[channel]
    if notification.object_ != expected:
        return Normalized(
            ignored=(
                f"object {notification.object_[:64]!r} is not served here: the {channel} webhook takes {expected!r}",
            )
        )
    context = _Context(channel, correlation_id, received_at)
    for index, entry in enumerate(notification.entry):
        label = f"entry {index}"
        if channel == Channel.WHATSAPP:
            context.attempt(label, _whatsapp_entry, context, label, entry)
        else:
            context.attempt(label, _page_entry, context, label, entry)
    return context.result()


@dataclass
class _Context:
    """One notification being normalised: what every step needs and what they produced so far."""

    channel: Channel
    correlation_id: str
    received_at: datetime
    inbound: list[InboundEnvelope] = field(default_factory=list)
    statuses: list[StatusEnvelope] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)

    def attempt(self, label: str, step: Callable[..., None], *args: Any) -> None:
        """Run one item's step; a malformed item is rejected (named, never quoted), the others are unaffected."""
        try:
            step(*args)
        except _Ignored as reason:
            self.ignored.append(f"{label}: {reason}")
        except _Rejected as reason:
            self.rejected.append(f"{label}: {reason}")
        except ValidationError as error:
            self.rejected.append(f"{label}: malformed ({', '.join(failed_fields(error)) or 'value'})")
        except (ValueError, OverflowError, OSError, InvalidInput) as error:
            self.rejected.append(f"{label}: malformed ({type(error).__name__})")

    def add(self, envelope: InboundEnvelope | StatusEnvelope) -> None:
        # Serialised once here so an envelope the queue could not carry (a lone UTF-16 surrogate in the text) is
        # this item's rejection, not a 500 for the whole notification.
        envelope.model_dump_json()
        if isinstance(envelope, InboundEnvelope):
            self.inbound.append(envelope)
        else:
            self.statuses.append(envelope)

    def result(self) -> Normalized:
        return Normalized(
            inbound=tuple(self.inbound),
            statuses=tuple(self.statuses),
            ignored=tuple(self.ignored),
            rejected=tuple(self.rejected),
        )


# --------------------------------------------------------------------------------------------- WhatsApp


def _whatsapp_entry(context: _Context, label: str, raw: Any) -> None:
    entry = _WaEntry.model_validate(raw)
    for index, change in enumerate(entry.changes):
        change_label = f"{label} change {index}"
        context.attempt(change_label, _whatsapp_change, context, change_label, entry.id, change)


def _whatsapp_change(context: _Context, label: str, waba_id: str, raw: Any) -> None:
    change = _WaChange.model_validate(raw)
    if change.field != "messages":
        raise _Ignored(f"field {change.field[:64]!r} is not handled")
    value = _WaValue.model_validate(change.value)
    for error in value.errors:
        context.ignored.append(f"{label}: error reported by Meta ({_error_code(error)})")
    for index, status in enumerate(value.statuses):
        item = f"{label} status {index}{_id_suffix(status, 'id')}"
        context.attempt(item, _whatsapp_status, context, status)
    if not value.messages:
        return
    try:
        metadata = _WaMetadata.model_validate(value.metadata)
    except ValidationError as error:
        raise _Rejected(f"{len(value.messages)} message(s) without a valid metadata.phone_number_id") from error
    names = _profile_names(value.contacts)
    for index, message in enumerate(value.messages):
        item = f"{label} message {index}{_id_suffix(message, 'id')}"
        context.attempt(item, _whatsapp_message, context, waba_id, metadata, names, message)


def _profile_names(contacts: list[Any]) -> dict[str, str]:
    # Names only decorate the sender, so a malformed contact costs its name, never the message.
    names: dict[str, str] = {}
    for contact in contacts:
        if not isinstance(contact, dict):
            continue
        wa_id, profile = contact.get("wa_id"), contact.get("profile")
        name = profile.get("name") if isinstance(profile, dict) else None
        if isinstance(wa_id, str) and isinstance(name, str) and name.strip():
            names[wa_id.lstrip("+")] = name.strip()[:256]
    return names


def _whatsapp_message(
    context: _Context, waba_id: str, metadata: _WaMetadata, names: Mapping[str, str], raw: Any
) -> None:
    message = _WaMessage.model_validate(raw)
    if message.type in ("unsupported", "unknown"):
        errors = [_WaError.model_validate(item) for item in raw.get("errors") or [] if isinstance(item, dict)]
        code = f" ({_error_code(errors[0])})" if errors else ""
        raise _Ignored(f"message type {message.type!r}{code}: WhatsApp could not deliver its content")
    read = _WA_CONTENT.get(message.type)
    if read is None:
        raise _Ignored(f"message type {message.type[:32]!r} is not handled")
    parts, extra = read(message.type, raw.get(message.type))
    if not parts:
        raise _Ignored(f"message type {message.type!r} without content Hilo handles")
    wa_id = message.from_.lstrip("+")
    details = {
        "waba_id": waba_id,
        "display_phone_number": metadata.display_phone_number,
        "message_type": message.type,
        **extra,
    }
    in_reply_to = None
    if message.context is not None:
        in_reply_to = message.context.id or None
        product = message.context.referred_product or {}
        details.update(
            forwarded="true" if message.context.forwarded else None,
            frequently_forwarded="true" if message.context.frequently_forwarded else None,
            product_catalog_id=_text(product.get("catalog_id")),
            product_retailer_id=_text(product.get("product_retailer_id")),
        )
    if message.referral is not None:
        referral = message.referral
        details.update(
            referral_source_type=referral.source_type,
            referral_source_id=referral.source_id,
            referral_source_url=referral.source_url,
            referral_headline=referral.headline,
            referral_media_type=referral.media_type,
            referral_ctwa_clid=referral.ctwa_clid,
        )
    context.add(
        InboundEnvelope(
            correlation_id=context.correlation_id,
            kind=InboundKind.MESSAGE,
            channel=Channel.WHATSAPP,
            provider=Provider.META,
            provider_message_id=message.id,
            occurred_at=_from_seconds(message.timestamp),
            received_at=context.received_at,
            sender=Address(value=f"+{wa_id}", name=names.get(wa_id)),
            recipient=Address(value=metadata.phone_number_id),
            parts=tuple(parts),
            in_reply_to=in_reply_to,
            metadata=_metadata(details),
        )
    )


Content = tuple[list[ContentPart], dict[str, str | None]]


def _wa_text(_: str, raw: Any) -> Content:
    body = _WaText.model_validate(raw).body
    return ([TextPart(text=body)] if body.strip() else []), {}


def _wa_media(kind: str, raw: Any) -> Content:
    media = _WaMedia.model_validate(raw)
    part = MediaPart(
        provider_media_id=media.id,
        mime_type=_mime_or(media.mime_type, _WA_MEDIA_DEFAULT_MIME[kind]),
        caption=media.caption or None,
        filename=(media.filename or "").strip()[:255] or None,
    )
    extra = {
        "media_sha256": media.sha256,
        "voice": "true" if media.voice else None,
        "animated": "true" if media.animated else None,
    }
    return [part], extra


def _wa_location(_: str, raw: Any) -> Content:
    location = _WaLocation.model_validate(raw)
    part = LocationPart(
        latitude=location.latitude,
        longitude=location.longitude,
        name=(location.name or "").strip()[:256] or None,
        address=(location.address or "").strip()[:512] or None,
    )
    return [part], {}


def _wa_contacts(_: str, raw: Any) -> Content:
    cards = [_WaCard.model_validate(item) for item in _LIST.validate_python(raw)]
    parts: list[ContentPart] = []
    for card in cards[:MAX_PARTS]:
        name = card.name.formatted_name or " ".join(filter(None, (card.name.first_name, card.name.last_name)))
        phones = [phone.phone or (f"+{phone.wa_id}" if phone.wa_id else "") for phone in card.phones]
        parts.append(
            ContactPart(
                name=name.strip()[:256] or "?",
                phones=tuple(phone.strip()[:64] for phone in phones if phone.strip())[:20],
                emails=tuple((email.email or "").strip()[:320] for email in card.emails if (email.email or "").strip())[
                    :20
                ],
            )
        )
    return parts, {}


def _wa_interactive(_: str, raw: Any) -> Content:
    interactive = _WaInteractive.model_validate(raw)
    replies = {
        "button_reply": (interactive.button_reply, InteractiveKind.BUTTON),
        "list_reply": (interactive.list_reply, InteractiveKind.LIST),
    }
    reply, kind = replies.get(interactive.type, (None, InteractiveKind.BUTTON))
    if reply is None:
        # WhatsApp Flows (nfm_reply) and others: not replies to options Hilo offered.
        raise _Ignored(f"interactive type {interactive.type[:32]!r} is not handled")
    part = InteractiveReplyPart(reply_id=reply.id, title=(reply.title.strip() or reply.id)[:256], kind=kind)
    return [part], {"interactive_type": interactive.type}


def _wa_button(_: str, raw: Any) -> Content:
    button = _WaButton.model_validate(raw)
    payload, text = button.payload or "", button.text or ""
    if not (payload or text):
        return [], {}
    part = InteractiveReplyPart(
        reply_id=payload or text, title=(text.strip() or payload)[:256], kind=InteractiveKind.BUTTON
    )
    return [part], {}


def _wa_reaction(_: str, raw: Any) -> Content:
    reaction = _WaReaction.model_validate(raw)
    # WhatsApp removes a reaction by sending it again without an emoji; the empty emoji says the same.
    return [ReactionPart(emoji=reaction.emoji or "", target_message_id=reaction.message_id)], {}


_WA_CONTENT: Final[dict[str, Callable[[str, Any], Content]]] = {
    "text": _wa_text,
    **dict.fromkeys(_WA_MEDIA_DEFAULT_MIME, _wa_media),
    "location": _wa_location,
    "contacts": _wa_contacts,
    "interactive": _wa_interactive,
    "button": _wa_button,
    "reaction": _wa_reaction,
}


def _whatsapp_status(context: _Context, raw: Any) -> None:
    status = _WaStatus.model_validate(raw)
    mapped = _WA_STATUS.get(status.status)
    if mapped is None:
        raise _Ignored(f"status {status.status[:32]!r} is not delivery progress")
    error = status.errors[0] if status.errors and mapped == DeliveryStatus.FAILED else None
    recipient = (status.recipient_id or "").strip()
    match = _WA_ID_RE.fullmatch(recipient)
    context.add(
        StatusEnvelope(
            correlation_id=context.correlation_id,
            channel=Channel.WHATSAPP,
            provider=Provider.META,
            provider_message_id=status.id,
            status=mapped,
            occurred_at=_from_seconds(status.timestamp),
            recipient=Address(value=f"+{match.group(1)}" if match else recipient) if recipient else None,
            error_code=_text(error.code) if error else None,
            error_reason=_error_reason(error) if error else None,
        )
    )


def _error_code(error: Any) -> str:
    code = error.code if isinstance(error, _WaError) else (error.get("code") if isinstance(error, dict) else None)
    return f"code {str(code)[:16]}" if isinstance(code, int | str) and not isinstance(code, bool) else "no code"


def _error_reason(error: _WaError) -> str | None:
    details = (error.error_data or {}).get("details")
    title = (error.title or error.message or "").strip()
    if isinstance(details, str) and details.strip() and details.strip() != title:
        title = f"{title}: {details.strip()}" if title else details.strip()
    return title[:500] or None


# --------------------------------------------------------------------------------------------- Messenger, Instagram


def _page_entry(context: _Context, label: str, raw: Any) -> None:
    entry = _PageEntry.model_validate(raw)
    if entry.changes:
        kinds = sorted({str(change.get("field"))[:32] for change in entry.changes if isinstance(change, dict)})
        context.ignored.append(f"{label}: changes ({', '.join(kinds) or 'unnamed'}) are not messaging events")
    for source, events in (("messaging", entry.messaging), ("standby", entry.standby)):
        for index, event in enumerate(events):
            item = f"{label} {source} {index}{_id_suffix(_dict(event).get('message'), 'mid')}"
            context.attempt(item, _page_event, context, event, source == "standby")


def _page_event(context: _Context, raw: Any, standby: bool) -> None:
    event = _Event.model_validate(raw)
    data = _dict(raw)
    handlers: tuple[tuple[str, Callable[[_Context, _Event, Any, bool], None]], ...] = (
        ("message", _page_message),
        ("message_edit", _page_edit),
        ("postback", _page_postback),
        ("reaction", _page_reaction),
        ("delivery", _page_delivery),
        ("read", _page_read),
    )
    for key, handle in handlers:
        if data.get(key) is not None:
            handle(context, event, data[key], standby)
            return
    other = next((key for key in data if key not in _EVENT_COMMON), "empty")
    raise _Ignored(f"event {other[:32]!r} is not handled")


def _page_message(context: _Context, event: _Event, raw: Any, standby: bool) -> None:
    message = _PageMessage.model_validate(raw)
    if message.is_deleted:
        raise _Ignored("message unsent by the customer")
    if message.is_unsupported:
        raise _Ignored("message type unsupported by the API")
    parts, details, rejected = _page_parts(message)
    if not parts:
        if rejected:
            raise _Rejected("; ".join(rejected))
        raise _Ignored("message without content Hilo handles")
    # An echo is our side writing: the customer is its recipient.
    customer, ours = (event.recipient, event.sender) if message.is_echo else (event.sender, event.recipient)
    if message.reply_to is not None and message.reply_to.story is not None:
        details["reply_to_story_id"] = message.reply_to.story.id
    if message.is_echo:
        details.update(app_id=_text(message.app_id), echo_metadata=message.metadata)
    _page_envelope(
        context,
        event,
        kind=InboundKind.ECHO if message.is_echo else InboundKind.MESSAGE,
        provider_message_id=message.mid,
        customer=customer,
        ours=ours,
        parts=parts,
        in_reply_to=message.reply_to.mid if message.reply_to is not None else None,
        details={**details, **_referral(message.referral)},
        standby=standby,
    )
    context.rejected.extend(f"message {message.mid[:128]}: {reason}" for reason in rejected)


def _page_parts(message: _PageMessage) -> tuple[list[ContentPart], dict[str, str | None], list[str]]:
    parts: list[ContentPart] = []
    rejected: list[str] = []
    details: dict[str, str | None] = {}
    if message.quick_reply is not None:
        # The text of a quick reply is the tapped option's title: the reply part says it all.
        payload = message.quick_reply.payload
        title = ((message.text or "").strip() or payload)[:256]
        _add(
            parts,
            rejected,
            "quick_reply",
            lambda: InteractiveReplyPart(reply_id=payload, title=title, kind=InteractiveKind.BUTTON),
        )
    elif message.text and message.text.strip():
        text = message.text
        _add(parts, rejected, "text", lambda: TextPart(text=text))
    types: list[str] = []
    for index, raw in enumerate(message.attachments):
        try:
            attachment = _Attachment.model_validate(raw)
        except ValidationError:
            rejected.append(f"attachment {index} malformed")
            continue
        types.append(attachment.type[:32])
        _add(parts, rejected, f"attachment {index}", functools.partial(_attachment_part, attachment))
        if attachment.payload is not None and attachment.payload.sticker_id is not None:
            details["sticker_id"] = _text(attachment.payload.sticker_id)
    if types:
        details["attachment_types"] = ",".join(types)
    if len(parts) > MAX_PARTS:
        rejected.append(f"{len(parts) - MAX_PARTS} parts over the limit of {MAX_PARTS} dropped")
    return parts[:MAX_PARTS], details, rejected


def _attachment_part(attachment: _Attachment) -> ContentPart | None:
    payload = attachment.payload or _AttachmentPayload()
    url = payload.url or attachment.url
    if attachment.type == "location" and payload.coordinates is not None:
        return LocationPart(
            latitude=payload.coordinates.lat,
            longitude=payload.coordinates.long,
            name=(payload.title or attachment.title or "").strip()[:256] or None,
        )
    if not url:
        return None
    default = _PAGE_MEDIA_DEFAULT_MIME.get(attachment.type)
    if default is not None:
        guessed, _ = _GUESS.guess_type(urlsplit(url).path)
        return MediaPart(url=url, mime_type=_mime_or(guessed, default))
    # Shared posts, reels, story mentions, link fallbacks: a link the customer sent, kept as text to open.
    title = (payload.title or attachment.title or "").strip()
    return TextPart(text=f"{title}\n{url}" if title else url)


def _page_edit(context: _Context, event: _Event, raw: Any, standby: bool) -> None:
    edit = _MessageEdit.model_validate(raw)
    if not edit.text.strip():
        raise _Ignored("edit without text")
    _page_envelope(
        context,
        event,
        kind=InboundKind.MESSAGE_EDITED,
        provider_message_id=f"{edit.mid}:edit:{edit.num_edit}",
        customer=event.sender,
        ours=event.recipient,
        parts=[TextPart(text=edit.text)],
        details={"edited_message_id": edit.mid},
        standby=standby,
    )


def _page_postback(context: _Context, event: _Event, raw: Any, standby: bool) -> None:
    postback = _Postback.model_validate(raw)
    if not postback.payload:
        raise _Ignored("postback without payload")
    title = ((postback.title or "").strip() or postback.payload)[:256]
    _page_envelope(
        context,
        event,
        kind=InboundKind.MESSAGE,
        provider_message_id=postback.mid or f"postback:{event.sender.id}:{event.timestamp}",
        customer=event.sender,
        ours=event.recipient,
        parts=[InteractiveReplyPart(reply_id=postback.payload, title=title, kind=InteractiveKind.BUTTON)],
        details={"event": "postback", **_referral(postback.referral)},
        standby=standby,
    )


def _page_reaction(context: _Context, event: _Event, raw: Any, standby: bool) -> None:
    reaction = _Reaction.model_validate(raw)
    removed = reaction.action == "unreact"
    emoji = "" if removed else (reaction.emoji or reaction.reaction or "")
    _page_envelope(
        context,
        event,
        kind=InboundKind.MESSAGE,
        provider_message_id=f"reaction:{reaction.mid}:{reaction.action}:{event.timestamp}",
        customer=event.sender,
        ours=event.recipient,
        parts=[ReactionPart(emoji=emoji, target_message_id=reaction.mid)],
        details={"reaction": reaction.reaction, "reaction_action": reaction.action},
        standby=standby,
    )


def _page_delivery(context: _Context, event: _Event, raw: Any, _standby: bool) -> None:
    delivery = _Delivery.model_validate(raw)
    if not delivery.mids:
        raise _Ignored("delivery watermark without mids names no message")
    for mid in delivery.mids:
        _page_status(context, event, mid, DeliveryStatus.DELIVERED)


def _page_read(context: _Context, event: _Event, raw: Any, _standby: bool) -> None:
    read = _Read.model_validate(raw)
    if not read.mid:
        raise _Ignored("read watermark names no message")
    _page_status(context, event, read.mid, DeliveryStatus.READ)


def _page_status(context: _Context, event: _Event, mid: str, status: DeliveryStatus) -> None:
    context.add(
        StatusEnvelope(
            correlation_id=context.correlation_id,
            channel=context.channel,
            provider=Provider.META,
            provider_message_id=mid,
            status=status,
            occurred_at=_from_millis(event.timestamp),
            recipient=Address(value=event.sender.id),
        )
    )


def _page_envelope(
    context: _Context,
    event: _Event,
    *,
    kind: InboundKind,
    provider_message_id: str,
    customer: _Party,
    ours: _Party,
    parts: list[ContentPart],
    details: dict[str, str | None],
    standby: bool,
    in_reply_to: str | None = None,
) -> None:
    context.add(
        InboundEnvelope(
            correlation_id=context.correlation_id,
            kind=kind,
            channel=context.channel,
            provider=Provider.META,
            provider_message_id=provider_message_id,
            occurred_at=_from_millis(event.timestamp),
            received_at=context.received_at,
            sender=Address(value=customer.id),
            recipient=Address(value=ours.id),
            parts=tuple(parts),
            in_reply_to=in_reply_to or None,
            metadata=_metadata({**details, "standby": "true" if standby else None}),
        )
    )


def _referral(referral: _PageReferral | None) -> dict[str, str | None]:
    if referral is None:
        return {}
    return {
        "referral_ref": referral.ref,
        "referral_source": referral.source,
        "referral_type": referral.type,
        "referral_ad_id": referral.ad_id,
    }


# --------------------------------------------------------------------------------------------- helpers


def _add(parts: list[ContentPart], rejected: list[str], name: str, build: Callable[[], ContentPart | None]) -> None:
    try:
        part = build()
    except ValueError:  # pydantic's ValidationError included
        rejected.append(f"{name} does not fit the envelope")  # names the part, never its content
        return
    if part is not None:
        parts.append(part)


def _from_seconds(seconds: int) -> datetime:
    return _from_millis(seconds * 1000)


def _from_millis(millis: int) -> datetime:
    try:
        return datetime.fromtimestamp(millis // 1000, UTC) + timedelta(milliseconds=millis % 1000)
    except (OverflowError, OSError) as error:
        raise ValueError("timestamp out of range") from error


def _mime_or(value: str | None, default: str) -> str:
    if value:
        try:
            return _MIME.validate_python(value)
        except ValidationError:
            pass
    return default


def _metadata(values: Mapping[str, str | None]) -> dict[str, str]:
    return {key: value[:1024] for key, value in values.items() if value}


def _text(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    return str(value) or None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _id_suffix(item: Any, key: str) -> str:
    """`` (<id>)`` for log lines when the item carries a printable id (ids are not personal data; text is)."""
    value = _dict(item).get(key)
    if (
        isinstance(value, str)
        and 0 < len(value) <= 160
        and value.isascii()
        and value.isprintable()
        and " " not in value
    ):
        return f" ({value})"
    return ""


# --------------------------------------------------------------------------------------------- the function


def webhook_handler(channel: Channel) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    """The Lambda entry point of one Meta channel's webhook: the three functions differ only in ``channel``.

    GET answers the subscription handshake; POST verifies, normalises and enqueues, then answers 200 ``{}``.
    The adapters are built on the first request, once per execution environment.
    """
    app = create_app()
    ports = functools.cache(webhook_ports)

    @app.get(f"/webhooks/{channel}")
    def verify_subscription() -> Response[str]:
        challenge = verify_handshake(app.current_event.query_string_parameters, ports().settings.get())
        return Response(status_code=200, content_type=CHALLENGE_CONTENT_TYPE, body=challenge)

    @app.post(f"/webhooks/{channel}")
    def receive_notification() -> dict[str, str]:
        event = app.current_event
        body = verify_request(event, ports().settings.get())
        normalized = normalize(
            parse_notification(body),
            channel=channel,
            correlation_id=event.request_context.request_id,
            received_at=clock.now(),
        )
        ports().deliver(normalized, channel=channel)
        return {}

    return api_handler(app)
