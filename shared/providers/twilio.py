"""Twilio webhooks: ``X-Twilio-Signature`` and Messaging / Voice requests → envelopes and TwiML answers.

The signature is Twilio's own algorithm (``twilio.request_validator.RequestValidator``): HMAC-SHA1 with the account
Auth Token over the public URL Twilio called, followed, for form bodies, by every parameter name and value sorted by
name (a repeated name's values sorted too). For JSON bodies the URL carries ``bodySHA256=<hex>`` and only the URL is
signed, so the hash is checked against the raw body as well. Every received parameter counts: Twilio adds
parameters without notice, and a whitelist would reject its genuine requests.

Status codes, and why:

- 403 for a missing or wrong signature and for a Hilo that cannot check one (no ``HILO_TWILIO_AUTH_TOKEN`` or no
  ``HILO_PUBLIC_URL``): Twilio's security docs answer forged requests with 403, and it does not retry a 4xx.
- 400 for a signed request Twilio never sends (no ``MessageSid``, invalid UTF-8, a SID that is not printable ASCII):
  Twilio does not retry it, and its debugger shows the 400 (error 11200) to whoever misconfigured the webhook.
- 200 and ignored (with a logged reason) for genuine traffic Hilo does not turn into an envelope: an empty SMS, an
  unsupported channel prefix, status values that are not delivery progress, intermediate call statuses. A 4xx
  would not be retried either and would only fill the Twilio debugger with alerts nobody can act on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit
from xml.sax.saxutils import escape, quoteattr

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.errors import Forbidden, InvalidInput, UnsupportedMediaType
from shared.http import raw_body
from shared.models.common import Channel, Provider, ensure_utc
from shared.models.inbound import CallDetails, InboundEnvelope, InboundKind, StatusEnvelope
from shared.models.message import (
    Address,
    ContentPart,
    DeliveryStatus,
    InteractiveKind,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    TextPart,
)
from shared.settings import Settings
from shared.webhooks import Normalized, public_request_url, secrets_equal, validated

SIGNATURE_HEADER: Final = "x-twilio-signature"
#: SharedKey-signed webhooks name their algorithm here (twilio-python 9.13; not in the public docs).
SIGNATURE_SETTINGS_HEADER: Final = "x-twilio-webhooks-signature-settings"
MAX_BODY_BYTES: Final = 64 * 1024
#: Twilio sends a few dozen parameters; a cap keeps a 64 KiB body of ``a&a&a...`` cheap to reject.
MAX_PARAMS: Final = 1000
MAX_MEDIA: Final = 10  # Twilio sends MediaUrl0..MediaUrl9

TWIML_CONTENT_TYPE: Final = "text/xml"
EMPTY_TWIML: Final = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
VOICE_QUEUE: Final = "soporte"  # the TaskRouter-free queue agents dequeue callers from
VOICE_LANGUAGE: Final = "es-MX"
#: Document-relative on purpose: Twilio resolves it against the URL it just called, so the follow-up request
#: reaches the same function under any stage prefix or base-path mapping, and is signed with that same base.
DIGITS_ACTION: Final = "voice?step=id"
DIGITS_STEP: Final = "id"

_ALGORITHMS: Final = {"HMAC_SHA1": hashlib.sha1, "HMAC_SHA256": hashlib.sha256}
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}
_CHANNEL_PREFIXES: Final = {"whatsapp": Channel.WHATSAPP, "rcs": Channel.RCS}
_PREFIX_RE: Final = re.compile(r"([a-z][a-z0-9-]{0,31}):(.*)", re.IGNORECASE | re.DOTALL)
_BARE_NUMBER_RE: Final = re.compile(r"[0-9]{8,15}")
_DIGITS_RE: Final = re.compile(r"[0-9*#]{1,64}")
_STATUS_MAP: Final = {
    "accepted": DeliveryStatus.QUEUED,
    "queued": DeliveryStatus.QUEUED,
    "scheduled": DeliveryStatus.QUEUED,
    "sending": DeliveryStatus.QUEUED,
    "sent": DeliveryStatus.SENT,
    "delivered": DeliveryStatus.DELIVERED,
    "read": DeliveryStatus.READ,
    "failed": DeliveryStatus.FAILED,
    "undelivered": DeliveryStatus.FAILED,
    "canceled": DeliveryStatus.CANCELED,
}
_FINAL_CALL_STATUSES: Final = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
_METADATA_FIELDS: Final = (
    ("AccountSid", "account_sid"),
    ("MessagingServiceSid", "messaging_service_sid"),
    ("WaId", "wa_id"),
    ("MessageType", "message_type"),
    ("NumSegments", "num_segments"),
)

ModelT = TypeVar("ModelT", bound=BaseModel)

#: Every parameter as received: name → its values in arrival order (a name may repeat).
Params = Mapping[str, tuple[str, ...]]


# --------------------------------------------------------------------------------------------- signature


def compute_signature(url: str, params: Params, token: str, algorithm: str = "HMAC_SHA1") -> str:
    """Compute ``X-Twilio-Signature`` as Twilio does.

    Parameters
    ----------
    url : str
        The full URL Twilio requested, query string included.
    params : Params
        The form parameters (empty for JSON bodies, whose URL carries ``bodySHA256``).
    token : str
        The account Auth Token.
    algorithm : str
        ``HMAC_SHA1`` (the Auth Token signature) or ``HMAC_SHA256`` (SharedKey webhooks).

    Returns
    -------
    str
        The base64 signature.

    Raises
    ------
    Forbidden
        The algorithm is not one Twilio documents, so no signature can be trusted.
    """
    digest = _ALGORITHMS.get(algorithm.upper())
    if digest is None:
        raise Forbidden(f"Unsupported Twilio signature algorithm {algorithm[:32]!r}.")
    data = url + "".join(name + value for name in sorted(params) for value in sorted(params[name]))
    return base64.b64encode(hmac.new(token.encode(), data.encode(), digest).digest()).decode()


def url_variants(url: str) -> tuple[str, ...]:
    """The URL as given and with its default port added or removed: Twilio signs either form."""
    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    try:
        port = parts.port
    except ValueError:
        return (url,)
    if default is None or parts.hostname is None or (port is not None and port != default):
        return (url,)
    host = parts.netloc.rpartition("@")[2]
    userinfo = parts.netloc[: len(parts.netloc) - len(host)]
    bare_host = host if port is None else host.rsplit(":", 1)[0]
    other = f"{userinfo}{bare_host}:{default}" if port is None else f"{userinfo}{bare_host}"
    return (url, urlunsplit(parts._replace(netloc=other)))


def verify_signature(
    *,
    url: str,
    params: Params,
    body: bytes,
    is_json: bool,
    signature: str | None,
    token: str,
    signature_settings: str | None = None,
) -> None:
    """Check ``X-Twilio-Signature`` (and, for JSON bodies, ``bodySHA256``) in constant time.

    Parameters
    ----------
    url : str
        ``HILO_PUBLIC_URL`` + path + query: the URL Twilio called.
    params : Params
        Every form parameter received (ignored for JSON bodies).
    body : bytes
        The raw body, for the ``bodySHA256`` check.
    is_json : bool
        Whether the body is JSON (then only the URL is signed).
    signature : str or None
        The ``X-Twilio-Signature`` header.
    token : str
        The Auth Token.
    signature_settings : str or None
        The ``X-Twilio-Webhooks-Signature-Settings`` header, naming the algorithm of SharedKey webhooks.

    Raises
    ------
    Forbidden
        The signature is missing or matches none of the URL forms, or the body hash differs.
    """
    if not signature:
        raise Forbidden("Missing X-Twilio-Signature header.")
    algorithm = _algorithm(signature_settings)
    if is_json:
        hashes = parse_qs(urlsplit(url).query, keep_blank_values=True).get("bodySHA256", [])
        if len(hashes) != 1:
            raise Forbidden("A JSON body from Twilio needs exactly one bodySHA256 in the URL.")
        if not secrets_equal(hashes[0].lower(), hashlib.sha256(body).hexdigest()):
            raise Forbidden("The body does not match bodySHA256.")
        params = {}
    # twilio-python drops repeated identical values (sorted(set(values))), other SDKs keep them: accept both.
    deduped = {name: tuple(dict.fromkeys(values)) for name, values in params.items()}
    forms = (params, deduped) if deduped != params else (params,)
    # Every variant is computed, so the time taken does not tell which URL form came close.
    matches = [
        secrets_equal(signature, compute_signature(variant, form, token, algorithm))
        for variant in url_variants(url)
        for form in forms
    ]
    if not any(matches):
        raise Forbidden("Invalid X-Twilio-Signature.")


def _algorithm(signature_settings: str | None) -> str:
    for item in (signature_settings or "").split(","):
        name, separator, value = item.partition("=")
        if separator and name.strip().lower() == "algorithm" and value.strip():
            return value.strip()
    return "HMAC_SHA1"


def parse_params(body: bytes, content_type: str | None) -> tuple[dict[str, tuple[str, ...]], bool]:
    """Read a Twilio body: a form (the usual case) or a flat JSON object.

    Parameters
    ----------
    body : bytes
        The raw body.
    content_type : str or None
        The ``Content-Type`` header; missing means a form, as Twilio always sends one.

    Returns
    -------
    tuple of (dict, bool)
        The parameters (name → values) and whether the body was JSON.

    Raises
    ------
    UnsupportedMediaType
        Neither a form nor JSON.
    InvalidInput
        Invalid UTF-8, too many parameters, or JSON that is not an object.
    """
    mime = (content_type or "application/x-www-form-urlencoded").split(";")[0].strip().lower()
    is_json = mime == "application/json" or mime.endswith("+json")
    if not is_json and mime != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType(f"Twilio posts forms or JSON, not {mime[:64]!r}.")
    try:
        text = body.decode("utf-8")
        if is_json:
            return _json_params(json.loads(text)), True
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=False, errors="strict", max_num_fields=MAX_PARAMS
        )
    except UnicodeDecodeError as error:
        raise InvalidInput("The body is not valid UTF-8.") from error
    except (json.JSONDecodeError, RecursionError) as error:
        raise InvalidInput("The body is declared JSON but is not valid JSON.") from error
    except ValueError as error:  # parse_qsl: more than MAX_PARAMS fields
        raise InvalidInput(f"The form has more than {MAX_PARAMS} parameters.") from error
    params: dict[str, list[str]] = {}
    for name, value in pairs:
        params.setdefault(name, []).append(value)
    return {name: tuple(values) for name, values in params.items()}, False


def _json_params(document: Any) -> dict[str, tuple[str, ...]]:
    # Twilio's JSON webhooks are flat; scalars are read as their text, nested objects are not Hilo's fields.
    if not isinstance(document, dict):
        raise InvalidInput("The JSON body is not an object.")
    params: dict[str, tuple[str, ...]] = {}
    for name, value in document.items():
        values = value if isinstance(value, list) else [value]
        texts = tuple(_scalar_text(item) for item in values if isinstance(item, str | int | float | bool))
        if texts:
            params[name] = texts
    return params


def _scalar_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def verify_event(event: APIGatewayProxyEventV2, settings: Settings) -> Params:
    """Read, verify and parse one Twilio request (the first step of every Twilio route).

    Parameters
    ----------
    event : APIGatewayProxyEventV2
        The HTTP API event.
    settings : Settings
        Hilo's settings: ``HILO_TWILIO_AUTH_TOKEN`` and ``HILO_PUBLIC_URL``.

    Returns
    -------
    Params
        Every parameter Twilio sent, verified.

    Raises
    ------
    Forbidden
        Hilo is not configured for Twilio, or the signature does not verify.
    PayloadTooLarge
        The body is over 64 KiB.
    InvalidInput, UnsupportedMediaType
        The body is not a readable form or JSON object.
    """
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
    url = public_request_url(settings, event.raw_path, event.raw_query_string or "")
    if not token or not url:
        raise Forbidden(
            "Twilio is not configured: set HILO_TWILIO_AUTH_TOKEN (the account Auth Token) and HILO_PUBLIC_URL "
            "(the base URL configured in the Twilio console) so signatures can be checked."
        )
    headers = event.headers or {}
    body = raw_body(event, max_bytes=MAX_BODY_BYTES)
    params, is_json = parse_params(body, headers.get("content-type"))
    verify_signature(
        url=url,
        params=params,
        body=body,
        is_json=is_json,
        signature=headers.get(SIGNATURE_HEADER),
        token=token,
        signature_settings=headers.get(SIGNATURE_SETTINGS_HEADER),
    )
    return params


# --------------------------------------------------------------------------------------------- wire models


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    @classmethod
    def from_params(cls, params: Params, what: str) -> Any:
        first = {name: values[0] for name, values in params.items() if values}
        return validated(cls, first, f"The request is not a well-formed Twilio {what}.")


class MessageRequest(_Wire):
    """An incoming message (SMS, MMS, WhatsApp, RCS); media and metadata are read from the raw parameters."""

    message_sid: str = Field(alias="MessageSid", min_length=1)
    from_: str = Field(alias="From", min_length=1)
    to: str = Field(alias="To", min_length=1)
    body: str = Field("", alias="Body")
    num_media: int = Field(0, alias="NumMedia", ge=0)
    profile_name: str | None = Field(None, alias="ProfileName")
    latitude: str | None = Field(None, alias="Latitude")
    longitude: str | None = Field(None, alias="Longitude")
    address: str | None = Field(None, alias="Address")
    label: str | None = Field(None, alias="Label")
    button_text: str | None = Field(None, alias="ButtonText")
    button_payload: str | None = Field(None, alias="ButtonPayload")
    original_replied_message_sid: str | None = Field(None, alias="OriginalRepliedMessageSid")


class StatusRequest(_Wire):
    """A message status callback."""

    message_sid: str = Field(alias="MessageSid", min_length=1)
    message_status: str = Field(alias="MessageStatus", min_length=1)
    from_: str | None = Field(None, alias="From")
    to: str | None = Field(None, alias="To")
    error_code: str | None = Field(None, alias="ErrorCode")
    error_message: str | None = Field(None, alias="ErrorMessage")


class CallRequest(_Wire):
    """A voice webhook: the incoming call, a ``<Gather>`` result or a call status callback."""

    call_sid: str = Field(alias="CallSid", min_length=1)
    from_: str = Field("", alias="From")
    to: str = Field(alias="To", min_length=1)
    call_status: str = Field(alias="CallStatus", min_length=1, max_length=32)
    direction: str | None = Field(None, alias="Direction", max_length=32)
    call_duration: int | None = Field(None, alias="CallDuration", ge=0)
    timestamp: str | None = Field(None, alias="Timestamp")
    digits: str | None = Field(None, alias="Digits")
    account_sid: str | None = Field(None, alias="AccountSid", max_length=1024)


# --------------------------------------------------------------------------------------------- messaging


def normalize_message(params: Params, *, correlation_id: str, now: datetime) -> Normalized:
    """Turn an incoming-message webhook into an InboundEnvelope.

    Parameters
    ----------
    params : Params
        The verified parameters.
    correlation_id : str
        The request id, carried into the envelope.
    now : datetime
        Receipt time; also ``occurred_at``, since Twilio sends no timestamp with a message.

    Returns
    -------
    Normalized
        One envelope; or an ignore reason (no usable content, unknown channel prefix), with rejected reasons for
        parts that do not fit Hilo's limits (a bad media URL) while the rest of the message still goes.

    Raises
    ------
    InvalidInput
        Fields every genuine message carries are missing or malformed (``MessageSid``, ``From``, ``To``).
    """
    request: MessageRequest = MessageRequest.from_params(params, "message")
    prefix, sender_value = _split(request.from_)
    channel = _channel(prefix)
    if channel is None:
        return Normalized(ignored=(f"messages with the channel prefix {(prefix or '')[:32]!r} are not handled",))
    parts, rejected = _message_parts(request, params)
    if not parts:
        return Normalized(ignored=("message without supported content",), rejected=tuple(rejected))
    metadata = {key: params[name][0] for name, key in _METADATA_FIELDS if params.get(name) and params[name][0]}
    name = (request.profile_name or "").strip()[:256] or None
    envelope = _build(
        InboundEnvelope,
        correlation_id=correlation_id,
        kind=InboundKind.MESSAGE,
        channel=channel,
        provider=Provider.TWILIO,
        provider_message_id=request.message_sid,
        occurred_at=now,
        received_at=now,
        sender=_address(_phone(sender_value), name),
        recipient=_address(_phone(_split(request.to)[1])),
        parts=tuple(parts),
        in_reply_to=request.original_replied_message_sid or None,
        metadata={key: value[:1024] for key, value in metadata.items()},
    )
    return Normalized(inbound=(envelope,), rejected=tuple(rejected))


def _message_parts(request: MessageRequest, params: Params) -> tuple[list[ContentPart], list[str]]:
    parts: list[ContentPart] = []
    rejected: list[str] = []
    button = request.button_payload or request.button_text
    # A WhatsApp quick reply repeats the button's text as Body; the reply part already says it.
    body_is_button = bool(button) and request.body == (request.button_text or request.button_payload)
    if request.body.strip() and not body_is_button:
        _add(parts, rejected, "Body", lambda: TextPart(text=request.body))
    for index in range(min(request.num_media, MAX_MEDIA)):
        url = _first(params, f"MediaUrl{index}")
        mime = _first(params, f"MediaContentType{index}") or "application/octet-stream"
        _add(parts, rejected, f"MediaUrl{index}", lambda url=url, mime=mime: MediaPart(url=url, mime_type=mime))
    if request.latitude is not None or request.longitude is not None:
        _add(
            parts,
            rejected,
            "Latitude/Longitude",
            lambda: LocationPart(
                latitude=float(request.latitude or "nan"),
                longitude=float(request.longitude or "nan"),
                name=(request.label or "").strip()[:256] or None,
                address=(request.address or "").strip()[:512] or None,
            ),
        )
    if button:
        payload = (request.button_payload or request.button_text or "")[:256]
        title = (request.button_text or request.button_payload or "")[:256]
        _add(
            parts,
            rejected,
            "ButtonPayload",
            lambda: InteractiveReplyPart(reply_id=payload, title=title, kind=InteractiveKind.BUTTON),
        )
    return parts, rejected


def _add(parts: list[ContentPart], rejected: list[str], field: str, build: Any) -> None:
    try:
        parts.append(build())
    except (ValidationError, ValueError):
        # Names the field, never its value: it may be the customer's text or location.
        rejected.append(f"{field} does not fit the envelope")


def normalize_status(params: Params, *, correlation_id: str, now: datetime) -> Normalized:
    """Turn a message status callback into a StatusEnvelope.

    Parameters
    ----------
    params : Params
        The verified parameters.
    correlation_id : str
        The request id, carried into the envelope.
    now : datetime
        ``occurred_at``: Twilio's callbacks carry no reliable event time (``RawDlrDoneDate`` is the carrier's, in
        an unstated zone, and SMS-only). Dedup does not depend on it: the status queue dedups on SID + status.

    Returns
    -------
    Normalized
        One status envelope, or an ignore reason for statuses that are not delivery progress of our message
        (``receiving``, ``received``, ``partially_delivered``, or one Twilio added since).

    Raises
    ------
    InvalidInput
        ``MessageSid`` or ``MessageStatus`` missing or malformed.
    """
    request: StatusRequest = StatusRequest.from_params(params, "status callback")
    status = _STATUS_MAP.get(request.message_status.strip().lower())
    if status is None:
        return Normalized(ignored=(f"message status {request.message_status[:32]!r} is not a delivery status",))
    to_prefix, recipient = _split(request.to or "")
    channel = _channel(to_prefix if to_prefix is not None else _split(request.from_ or "")[0])
    if channel is None:
        return Normalized(ignored=("status of a message on an unhandled channel prefix",))
    failed = status == DeliveryStatus.FAILED
    envelope = _build(
        StatusEnvelope,
        correlation_id=correlation_id,
        channel=channel,
        provider=Provider.TWILIO,
        provider_message_id=request.message_sid,
        status=status,
        occurred_at=now,
        recipient=_address(_phone(recipient)) if recipient else None,
        error_code=((request.error_code or "").strip() or None) if failed else None,
        error_reason=((request.error_message or "").strip()[:500] or None) if failed else None,
    )
    return Normalized(statuses=(envelope,))


# --------------------------------------------------------------------------------------------- voice


def voice_step(raw_query: str) -> str | None:
    """The IVR step named in the voice webhook's query (``step=id`` for the ``<Gather>`` result), None at first."""
    steps = parse_qs(raw_query or "", keep_blank_values=True).get("step")
    return steps[0] if steps else None


def answer_call(params: Params, *, raw_query: str, correlation_id: str, now: datetime) -> tuple[Normalized, str]:
    """Handle ``POST /webhooks/twilio/voice``: the incoming call, or the IVR's digits (``?step=id``).

    Parameters
    ----------
    params : Params
        The verified parameters.
    raw_query : str
        The request's query string; ``step=id`` marks the ``<Gather>`` result.
    correlation_id : str
        The request id, carried into the envelope.
    now : datetime
        Receipt time, used as ``occurred_at`` (Twilio sends no timestamp with these requests).

    Returns
    -------
    tuple of (Normalized, str)
        The envelope to enqueue (kind ``call``; for the digits step ``<CallSid>:digits`` with ``call.digits``) and
        the TwiML to answer: the IVR that gathers the caller's ID, then the confirmation that queues the call.

    Raises
    ------
    InvalidInput
        ``CallSid``, ``To`` or ``CallStatus`` missing or malformed, or an unknown IVR step.
    """
    request: CallRequest = CallRequest.from_params(params, "voice request")
    step = voice_step(raw_query)
    if step is None:
        return Normalized(inbound=(_call_envelope(request, request.call_sid, correlation_id, now),)), ivr_twiml()
    if step != DIGITS_STEP:
        raise InvalidInput(f"Unknown IVR step {step[:32]!r}; Hilo's TwiML only sends step={DIGITS_STEP}.")
    digits = (request.digits or "").strip()
    if not _DIGITS_RE.fullmatch(digits):
        # The caller still reaches an agent: dropping them for a mistyped ID would be worse than no ID.
        reason = "IVR ended without digits" if not digits else "IVR digits are not 0-9 * #"
        return Normalized(ignored=(reason,)), digits_twiml(None)
    envelope = _call_envelope(request, f"{request.call_sid}:digits", correlation_id, now, digits=digits)
    return Normalized(inbound=(envelope,)), digits_twiml(digits)


def normalize_call_status(params: Params, *, correlation_id: str, now: datetime) -> Normalized:
    """Turn a call status callback into a ``call_ended`` envelope, or ignore an intermediate status.

    Parameters
    ----------
    params : Params
        The verified parameters.
    correlation_id : str
        The request id, carried into the envelope.
    now : datetime
        Receipt time; ``occurred_at`` uses Twilio's ``Timestamp`` when it is a valid RFC 2822 date, so a retried
        callback yields the same envelope.

    Returns
    -------
    Normalized
        One envelope with provider message id ``<CallSid>:<CallStatus>`` and ``call.duration_seconds``; or an
        ignore reason for ``queued``, ``initiated``, ``ringing``, ``in-progress`` and unknown statuses.

    Raises
    ------
    InvalidInput
        ``CallSid``, ``To`` or ``CallStatus`` missing or malformed.
    """
    request: CallRequest = CallRequest.from_params(params, "call status callback")
    status = request.call_status.strip().lower()
    if status not in _FINAL_CALL_STATUSES:
        return Normalized(ignored=(f"call status {status[:32]!r} is not final",))
    occurred_at = _rfc2822(request.timestamp) or now
    envelope = _call_envelope(
        request,
        f"{request.call_sid}:{status}",
        correlation_id,
        now,
        kind=InboundKind.CALL_ENDED,
        occurred_at=occurred_at,
    )
    return Normalized(inbound=(envelope,))


def _call_envelope(
    request: CallRequest,
    provider_message_id: str,
    correlation_id: str,
    now: datetime,
    *,
    kind: InboundKind = InboundKind.CALL,
    digits: str | None = None,
    occurred_at: datetime | None = None,
) -> InboundEnvelope:
    caller = _phone(_split(request.from_)[1]) if request.from_.strip() else "anonymous"
    ours = _phone(_split(request.to)[1])
    # ``sender`` is the customer: the caller of an inbound call, the callee of a call Hilo placed.
    outbound = (request.direction or "inbound").startswith("outbound")
    customer, business = (ours, caller) if outbound else (caller, ours)
    call = _build(
        CallDetails,
        status=request.call_status.strip().lower(),
        direction=request.direction or None,
        duration_seconds=request.call_duration if kind == InboundKind.CALL_ENDED else None,
        digits=digits,
    )
    return _build(
        InboundEnvelope,
        correlation_id=correlation_id,
        kind=kind,
        channel=Channel.VOICE,
        provider=Provider.TWILIO,
        provider_message_id=provider_message_id,
        occurred_at=occurred_at or now,
        received_at=now,
        sender=_address(customer),
        recipient=_address(business),
        call=call,
        metadata={"account_sid": request.account_sid} if request.account_sid else {},
    )


def ivr_twiml() -> str:
    """The TwiML that answers an incoming call: ask for the caller's ID digits, then queue the call."""
    action = quoteattr(DIGITS_ACTION)
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        f'<Gather input="dtmf" finishOnKey="#" timeout="8" action={action} method="POST">'
        + _say("Gracias por llamar. Para atenderle mejor, ingrese su número de documento seguido de la tecla numeral.")
        + "</Gather>"
        + _say("No recibimos su número de documento. Lo comunicamos con un asesor.")
        + f"<Enqueue>{escape(VOICE_QUEUE)}</Enqueue></Response>"
    )


def digits_twiml(digits: str | None) -> str:
    """The TwiML that answers the ``<Gather>`` result: confirm the digits read one by one, then queue the call."""
    if digits:
        spoken = " ".join(char for char in digits if char.isdigit())
        text = f"Gracias. Recibimos el documento {spoken}. En un momento lo atiende un asesor."
    else:
        text = "Gracias. En un momento lo atiende un asesor."
    return (
        '<?xml version="1.0" encoding="UTF-8"?><Response>'
        + _say(text)
        + f"<Enqueue>{escape(VOICE_QUEUE)}</Enqueue></Response>"
    )


def _say(text: str) -> str:
    return f"<Say language={quoteattr(VOICE_LANGUAGE)}>{escape(text)}</Say>"


# --------------------------------------------------------------------------------------------- helpers


def _first(params: Params, name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _split(address: str) -> tuple[str | None, str]:
    """``whatsapp:+57…`` → (``whatsapp``, ``+57…``); ``+57…`` → (None, ``+57…``)."""
    match = _PREFIX_RE.fullmatch(address.strip())
    if match is None:
        return None, address.strip()
    return match.group(1).lower(), match.group(2).strip()


def _channel(prefix: str | None) -> Channel | None:
    if prefix is None:
        return Channel.SMS
    return _CHANNEL_PREFIXES.get(prefix)


def _phone(value: str) -> str:
    # Twilio sends E.164 with '+'; WhatsApp ids arrive bare (573001234567) in some fields. Short codes and
    # names (client:alice, anonymous) are kept as they are: they are not phone numbers.
    compact = value.strip()
    return f"+{compact}" if _BARE_NUMBER_RE.fullmatch(compact) else compact


def _rfc2822(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return ensure_utc(parsedate_to_datetime(value))
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _address(value: str, name: str | None = None) -> Address:
    if not value:
        raise InvalidInput("The request has an empty From or To address.")
    return _build(Address, value=value, name=name)


def _build(model: type[ModelT], **fields: Any) -> ModelT:
    """Validate a model; a signed request that does not fit Hilo's limits is a 400, never a 500."""
    return validated(model, fields, "The request does not fit Hilo's envelope.")
