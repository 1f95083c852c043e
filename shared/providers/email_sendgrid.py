"""SendGrid Inbound Parse: basic auth, the multipart/form-data body, and its two modes → ``ParsedEmail``.

SendGrid signs nothing by default; Hilo's Parse URL carries credentials (``https://USER:PASSWORD@host/...``), which
SendGrid sends as ``Authorization: Basic``. They are compared in constant time with ``HILO_SENDGRID_USER`` /
``HILO_SENDGRID_PASSWORD``.

- **Raw mode** ("POST the raw, full MIME message"): the ``email`` field is the whole MIME, parsed by
  ``shared.providers.email.parse_mime`` exactly like SES mail.
- **Default mode**: SendGrid's own fields. ``headers`` (the raw header block) gives the ids, threading, ``Date`` and
  ``From``; ``text`` / ``html`` / ``subject`` are decoded with the charset ``charsets`` names for each;
  attachments come from ``attachment-info`` and the ``attachmentN`` files (metadata only).
- **Addresses** come from ``envelope`` (the SMTP envelope), as SendGrid advises; ``from``/``to`` are headers anyone
  can write.
- **Dedup key**: the ``Message-ID`` (from ``headers``, or the MIME in raw mode). Without one, ``sha256:<hex>`` of
  the mail's own content (the raw MIME, or ``headers`` + ``text`` + ``html``), never of the request body, whose
  multipart boundary can change between SendGrid's retries.
- **Raw copy**: every accepted mail is stored in the payload bucket first (``inbound-email/sendgrid/``, keyed by the
  dedup key so a retry overwrites it): the MIME in raw mode, the whole request in default mode. That is the
  envelope's ``raw_ref``, where the full text, the quoted history and the attachments' bytes stay.

Answers: 401 (``WWW-Authenticate: Basic realm="hilo"``) for missing or wrong credentials, 403 when Hilo has none
configured, 415 for a body that is not multipart/form-data, 400 for a multipart body without the fields SendGrid
always sends (``envelope``, and ``email`` or ``headers``): current SendGrid retries only 5xx, so a request that will
never parse is not retried for three days. A mail that parses but is odd (no text, broken headers) is still
accepted: the MIME parser is lenient and the raw copy keeps what it could not read. 5xx only when storing or
enqueueing failed, so SendGrid retries and nothing is lost.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email import policy
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses
from typing import Any, Final

from shared.errors import Forbidden, InvalidInput, Unauthorized, UnsupportedMediaType
from shared.models.common import Provider
from shared.providers.email import (
    AttachmentInfo,
    Delivery,
    HeaderInfo,
    ParsedEmail,
    attachment_info,
    decode_bytes,
    html_to_text,
    message_ids,
    normalize_address,
    normalize_newlines,
    parse_headers,
    parse_mime,
    to_envelope,
)
from shared.settings import Settings
from shared.webhooks import Normalized, secrets_equal

CHALLENGE: Final = 'Basic realm="hilo"'
#: HTTP API's payload limit; Lambda's 6 MB invocation limit bites first for base64-encoded bodies.
MAX_BODY_BYTES: Final = 10 * 1024 * 1024
MAX_FIELDS: Final = 1000
RAW_PREFIX: Final = "inbound-email/sendgrid/"
_ATTACHMENT_FIELD: Final = re.compile(r"attachment(\d{1,4})")


@dataclass(frozen=True)
class FormField:
    """One multipart/form-data field: its bytes, and the file name and type when it is a file."""

    value: bytes
    filename: str | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class Form:
    """A parsed request: fields by name (first occurrence wins), plus the body as received."""

    fields: Mapping[str, FormField]
    body: bytes
    content_type: str


@dataclass(frozen=True)
class SendgridInbound:
    """One Inbound Parse request, read: the mail, the SMTP envelope, the dedup key and what to store as raw."""

    mail: ParsedEmail
    envelope_from: str | None
    recipients: tuple[str, ...]
    provider_message_id: str
    mode: str  # "raw" | "parsed"
    raw: bytes
    raw_content_type: str
    metadata: Mapping[str, str | None] = field(default_factory=dict)

    @property
    def raw_key(self) -> str:
        """The payload-bucket key of the raw copy: a hash of the dedup key, so retries overwrite one object."""
        digest = hashlib.sha256(self.provider_message_id.encode()).hexdigest()
        return f"{RAW_PREFIX}{digest}.{'eml' if self.mode == 'raw' else 'form'}"


# ------------------------------------------------------------------------------------------------ auth


def verify_basic_auth(header: str | None, settings: Settings) -> None:
    """Check ``Authorization: Basic`` against ``HILO_SENDGRID_USER`` / ``HILO_SENDGRID_PASSWORD``.

    Raises
    ------
    Forbidden
        Hilo has no SendGrid credentials configured, so no request can be accepted.
    Unauthorized
        The header is missing, is not Basic, does not decode, or names other credentials (both halves are compared
        in constant time, always both).
    """
    password = settings.sendgrid_password.get_secret_value() if settings.sendgrid_password else None
    if not settings.sendgrid_user or not password:
        raise Forbidden(
            "SendGrid is not configured: set HILO_SENDGRID_USER and HILO_SENDGRID_PASSWORD and use them in the "
            "Inbound Parse URL (https://USER:PASSWORD@host/webhooks/email/sendgrid)."
        )
    scheme, _, token = (header or "").strip().partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        raise Unauthorized("Missing Basic credentials; put them in the Inbound Parse URL.", challenge=CHALLENGE)
    try:
        decoded = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError) as error:
        raise Unauthorized("Malformed Basic credentials.", challenge=CHALLENGE) from error
    user, separator, given_password = decoded.partition(":")
    user_ok = secrets_equal(user, settings.sendgrid_user)
    password_ok = secrets_equal(given_password, password)
    if not (separator and user_ok and password_ok):
        raise Unauthorized("Wrong Basic credentials.", challenge=CHALLENGE)


# ------------------------------------------------------------------------------------------------ multipart


def parse_form(body: bytes, content_type: str | None) -> Form:
    """Parse a multipart/form-data body with the standard library (``cgi`` is gone from Python 3.13).

    The body is parsed as a MIME message whose only header is the request's Content-Type; each part's
    ``Content-Disposition: form-data; name=…`` names the field.

    Raises
    ------
    UnsupportedMediaType
        The Content-Type is not multipart/form-data with a boundary.
    InvalidInput
        The body is not a well-formed multipart body, or has more than ``MAX_FIELDS`` parts.
    """
    content_type = (content_type or "").strip()
    if (
        content_type.split(";")[0].strip().lower() != "multipart/form-data"
        or "boundary=" not in content_type.lower()
        or any(char in content_type for char in "\r\n")
        or not content_type.isascii()
    ):
        raise UnsupportedMediaType("Expected multipart/form-data with a boundary, as SendGrid Inbound Parse sends.")
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode("ascii")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    parts = message.get_payload() if message.is_multipart() else None
    if not isinstance(parts, list) or not parts or any(
        type(defect).__name__ in {"StartBoundaryNotFoundDefect", "MultipartInvariantViolationDefect"}
        for defect in message.defects
    ):  # fmt: skip
        raise InvalidInput("The body is not a well-formed multipart/form-data body.")
    if len(parts) > MAX_FIELDS:
        raise InvalidInput(f"The body has {len(parts)} parts; at most {MAX_FIELDS} are read.")
    fields: dict[str, FormField] = {}
    for part in parts:
        if not isinstance(part, Message):
            continue
        name, filename = _disposition(part)
        if not name or name in fields:
            continue
        try:
            payload = part.get_payload(decode=True)
        except (ValueError, TypeError, AssertionError, LookupError):
            payload = None
        fields[name] = FormField(
            value=payload if isinstance(payload, bytes) else b"",
            filename=filename,
            content_type=part.get_content_type() if part.get("Content-Type") else None,
        )
    return Form(fields=fields, body=body, content_type=content_type)


def _disposition(part: Message) -> tuple[str | None, str | None]:
    try:
        name = part.get_param("name", header="content-disposition")
        filename = part.get_filename()
    except (ValueError, TypeError, IndexError, LookupError, AttributeError):
        return None, None
    if isinstance(name, tuple):  # RFC 2231-encoded parameter
        name = name[2]
    if not isinstance(name, str):
        return None, None
    return _unmangle(name), (_unmangle(filename) if filename else None)


def _unmangle(value: str) -> str:
    # Non-ASCII header bytes arrive as surrogates; SendGrid writes UTF-8.
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


# ------------------------------------------------------------------------------------------------ fields


def _json_field(form: Form, name: str) -> Any:
    item = form.fields.get(name)
    if item is None:
        return None
    try:
        return json.loads(item.value.decode("utf-8", errors="replace"))
    except (json.JSONDecodeError, RecursionError):
        return None


def _charsets(form: Form) -> dict[str, str]:
    document = _json_field(form, "charsets")
    if not isinstance(document, dict):
        return {}
    return {str(key): value for key, value in document.items() if isinstance(value, str)}


def _text_field(form: Form, name: str, charsets: Mapping[str, str]) -> str:
    item = form.fields.get(name)
    if item is None:
        return ""
    return decode_bytes(item.value, charsets.get(name) or "utf-8")


def _envelope(form: Form) -> tuple[str | None, tuple[str, ...]]:
    document = _json_field(form, "envelope")
    if not isinstance(document, dict):
        raise InvalidInput("The envelope field is missing or not a JSON object; SendGrid always sends it.")
    sender = document.get("from")
    to = document.get("to")
    recipients = tuple(value for value in to if isinstance(value, str)) if isinstance(to, list) else ()
    return (sender if isinstance(sender, str) else None), recipients


def _attachments(form: Form) -> tuple[AttachmentInfo, ...]:
    info = _json_field(form, "attachment-info")
    info = info if isinstance(info, dict) else {}
    numbered: list[tuple[int, str]] = []
    for name in form.fields:
        match = _ATTACHMENT_FIELD.fullmatch(name)
        if match:
            numbered.append((int(match.group(1)), name))
    result: list[AttachmentInfo] = []
    for _, name in sorted(numbered):
        item = form.fields[name]
        details = info.get(name)
        details = details if isinstance(details, dict) else {}
        raw_id = str(details.get("content-id") or "").strip().strip("<>")
        content_id = next(iter(message_ids(f"<{raw_id}>")), None) if raw_id else None
        filename = details.get("filename") or details.get("name") or item.filename
        result.append(
            attachment_info(
                locator=f"cid:{content_id}" if content_id else f"form:{name}",
                mime_type=str(details.get("type") or item.content_type or ""),
                filename=str(filename) if filename else None,
                size_bytes=len(item.value),
                content_id=content_id,
            )
        )
    return tuple(result)


def _from_field(value: str) -> tuple[str | None, str | None]:
    try:
        pairs = getaddresses([value])
    except (ValueError, TypeError, IndexError):
        return None, None
    for display, address in pairs:
        clean = normalize_address(address)
        if clean:
            return clean, (display.strip()[:256] or None)
    return None, None


def _parsed_mode(form: Form) -> tuple[ParsedEmail, str]:
    charsets = _charsets(form)
    headers_field = form.fields["headers"].value
    headers = parse_headers(headers_field)
    subject = normalize_newlines(_text_field(form, "subject", charsets)).replace("\n", " ").strip()
    from_address, from_name = headers.from_address, headers.from_name
    if from_address is None:
        from_address, from_name = _from_field(_text_field(form, "from", charsets))
    text = normalize_newlines(_text_field(form, "text", charsets))
    html = _text_field(form, "html", charsets)
    source = "plain"
    if not text.strip():
        text, source = (html_to_text(html), "html") if html.strip() else ("", "none")
    mail = ParsedEmail(
        headers=HeaderInfo(
            message_id=headers.message_id,
            in_reply_to=headers.in_reply_to,
            references=headers.references,
            subject=(subject[:998] or None) if subject else headers.subject,
            from_address=from_address,
            from_name=from_name,
            to=headers.to,
            date=headers.date,
            auto_submitted=headers.auto_submitted,
        ),
        text=text,
        text_source=source,
        attachments=_attachments(form),
    )
    digest_input = b"\0".join(form.fields[name].value for name in ("headers", "text", "html") if name in form.fields)
    return mail, hashlib.sha256(digest_input).hexdigest()


def read_inbound(form: Form) -> SendgridInbound:
    """Read an Inbound Parse request in either mode.

    Raises
    ------
    InvalidInput
        No ``envelope``, or neither ``email`` (raw mode) nor ``headers`` (default mode).
    """
    envelope_from, recipients = _envelope(form)
    if "email" in form.fields:
        raw = form.fields["email"].value
        mail, digest, mode = parse_mime(raw), hashlib.sha256(raw).hexdigest(), "raw"
        stored, stored_type = raw, "message/rfc822"
    elif "headers" in form.fields:
        mail, digest = _parsed_mode(form)
        mode, stored, stored_type = "parsed", form.body, form.content_type
    else:
        raise InvalidInput("Neither an email field (raw mode) nor a headers field (default mode) was sent.")
    metadata = {
        "sendgrid_mode": mode,
        "spf": _short(form, "SPF"),
        "dkim": _short(form, "dkim"),
        "spam_score": _short(form, "spam_score"),
    }
    return SendgridInbound(
        mail=mail,
        envelope_from=envelope_from,
        recipients=recipients,
        provider_message_id=mail.headers.message_id or f"sha256:{digest}",
        mode=mode,
        raw=stored,
        raw_content_type=stored_type,
        metadata=metadata,
    )


def _short(form: Form, name: str) -> str | None:
    item = form.fields.get(name)
    if item is None:
        return None
    value = item.value.decode("utf-8", errors="replace").strip()
    return value[:128] or None


def normalize(
    inbound: SendgridInbound, *, correlation_id: str, received_at: datetime, raw_ref: str | None
) -> Normalized:
    """The envelope for one Inbound Parse request (or why it is ignored or rejected)."""
    delivery = Delivery(
        provider=Provider.SENDGRID,
        provider_message_id=inbound.provider_message_id,
        envelope_from=inbound.envelope_from,
        recipients=inbound.recipients,
        received_at=received_at,
        correlation_id=correlation_id,
        raw_ref=raw_ref,
        metadata=inbound.metadata,
    )
    return to_envelope(inbound.mail, delivery)
