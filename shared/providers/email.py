"""Inbound e-mail, whoever carried it: MIME → ``ParsedEmail`` → ``InboundEnvelope``.

Both e-mail providers end here: SES hands over the raw MIME (from S3 or inline in the notification) and SendGrid
either the raw MIME (its "POST the raw, full MIME message" mode) or fields it parsed itself, which
``shared.providers.email_sendgrid`` turns into the same ``ParsedEmail``. Everything is standard library
(``email`` with ``policy.default``, ``html.parser``), so the webhooks that never see e-mail pay nothing for it.

What the envelope carries:

- ``parts``: one ``TextPart`` with the customer's *new* text (``strip_reply``: quoted history and signatures cut),
  then one ``MediaPart`` per attachment, as metadata only (file name, MIME type, size). Its ``provider_media_id``
  says where the bytes are inside ``raw_ref``: ``cid:<content-id>`` for inline parts (RFC 2392), ``part:<path>``
  (IMAP-style part numbers, ``1.2``) for the others, ``form:attachmentN`` for SendGrid's parsed mode.
- ``raw_ref``: ``s3://bucket/key`` of the raw mail, so the full text, the quoted history and the attachments'
  bytes stay available.
- Threading: the RFC 5322 ``Message-ID`` (``metadata["message_id"]``), ``In-Reply-To`` and ``References``, each
  as the id between the angle brackets (``id-left@id-right``). Hilo's own outbound SES mail carries
  ``<{ses message id}@{region}.amazonses.com>``, so a reply names our message in ``in_reply_to``.
- ``sender``: the SMTP envelope sender (what SPF checked), lower-cased, with the ``From`` header's display name;
  ``metadata["header_from"]`` when the ``From`` address differs. ``recipient``: the first envelope recipient.

Mail that is not a customer writing is acknowledged and ignored with a reason: auto-submitted mail (RFC 3834
auto-replies, which would otherwise start reply loops with the bot) and bounces (empty envelope sender).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser
from typing import Any, Final

from pydantic import ValidationError

from shared.models.common import Channel, Provider
from shared.models.inbound import InboundEnvelope, InboundKind
from shared.models.message import Address, ContentPart, MediaPart, TextPart
from shared.webhooks import Normalized, failed_fields

MAX_TEXT_CHARS: Final = 65536  # TextPart's limit
MAX_SUBJECT_CHARS: Final = 998  # RFC 5322 line limit, and the envelope's
MAX_REFERENCES: Final = 64
MAX_PARTS: Final = 32
MAX_METADATA_CHARS: Final = 1024
_MIME_DEPTH: Final = 20  # nested multiparts deeper than this are not walked (hostile mail)

_MSG_ID_RE: Final = re.compile(r"<([^<>\s]+)>")
_PROVIDER_ID_RE: Final = re.compile(r"[\x21-\x7e]{1,512}")
_MIME_TYPE_RE: Final = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+\-]*/[a-z0-9][a-z0-9!#$&^_.+\-]*")
_ADDRESS_RE: Final = re.compile(r"[^@\s<>]+@[^@\s<>]+")


# ------------------------------------------------------------------------------------------------ parsed mail


@dataclass(frozen=True)
class AttachmentInfo:
    """One attachment or inline part, described, never carried: the bytes stay in the raw mail."""

    locator: str  # where the bytes are inside raw_ref: "cid:…", "part:1.2" or "form:attachment1"
    mime_type: str
    filename: str | None = None
    size_bytes: int | None = None
    content_id: str | None = None


@dataclass(frozen=True)
class HeaderInfo:
    """The headers Hilo reads, decoded; what ``read_headers`` returns."""

    message_id: str | None = None
    in_reply_to: str | None = None
    references: tuple[str, ...] = ()
    subject: str | None = None
    from_address: str | None = None
    from_name: str | None = None
    to: tuple[str, ...] = ()
    date: datetime | None = None
    auto_submitted: str | None = None


@dataclass(frozen=True)
class ParsedEmail:
    """What Hilo keeps of one mail, the same whichever provider parsed it."""

    headers: HeaderInfo
    text: str = ""  # the whole body as text: text/plain, or text/html converted when there is no plain part
    text_source: str = "none"  # "plain" | "html" | "none"
    attachments: tuple[AttachmentInfo, ...] = ()


def parse_mime(raw: bytes) -> ParsedEmail:
    """Parse a raw RFC 5322 / MIME message.

    Never raises on malformed mail: the standard library's parser is lenient (it records defects), and every header
    is read defensively, so a broken header costs that header only.

    Parameters
    ----------
    raw : bytes
        The message exactly as received (CRLF or LF line endings).

    Returns
    -------
    ParsedEmail
        Headers, the body as text (plain preferred; HTML converted when there is only HTML) and attachment metadata.
    """
    message = BytesParser(policy=policy.default).parsebytes(raw)
    headers = read_headers(message)
    body_parts: list[Message] = []
    text, source = _body_text(message, body_parts)
    attachments = tuple(_attachments(message, {id(part) for part in body_parts}))
    return ParsedEmail(
        headers=headers,
        text=text,
        text_source=source,
        attachments=attachments,
    )


def parse_headers(raw: bytes) -> HeaderInfo:
    """Parse a bare header block (SendGrid's ``headers`` field) the way ``parse_mime`` reads a message's headers."""
    block = raw.rstrip(b"\r\n") + b"\r\n\r\n"
    return read_headers(BytesParser(policy=policy.default).parsebytes(block, headersonly=True))


def read_headers(message: Message) -> HeaderInfo:
    """Read Message-ID, threading, Subject, From, To, Date and Auto-Submitted from a parsed message."""
    from_address, from_name = _first_address(message, "From")
    return HeaderInfo(
        message_id=next(iter(message_ids(_raw_header(message, "Message-ID"))), None),
        in_reply_to=next(iter(message_ids(_raw_header(message, "In-Reply-To"))), None),
        references=_capped_references(message_ids(_raw_header(message, "References"))),
        subject=_text_header(message, "Subject"),
        from_address=from_address,
        from_name=from_name,
        to=tuple(address for address, _ in _addresses(message, "To")),
        date=parse_date(_raw_header(message, "Date")),
        auto_submitted=(_raw_header(message, "Auto-Submitted") or "").strip().lower() or None,
    )


def message_ids(raw: str | None) -> list[str]:
    """The msg-ids in a Message-ID / In-Reply-To / References value, without angle brackets, in order.

    A bare id without brackets (sent by some broken clients) is accepted when it is a single printable token.
    Ids that are not printable ASCII up to 512 characters (the envelope's ``ProviderMessageId``) are dropped.
    """
    if not raw:
        return []
    found = _MSG_ID_RE.findall(raw)
    if not found:
        bare = raw.strip()
        found = [bare] if bare and not any(char in bare for char in " <>") else []
    ids: list[str] = []
    for value in found:
        if _PROVIDER_ID_RE.fullmatch(value) and value not in ids:
            ids.append(value)
    return ids


def parse_date(raw: str | None) -> datetime | None:
    """An RFC 5322 date as an aware UTC datetime; None when absent or unreadable (``-0000`` means UTC)."""
    if not raw:
        return None
    try:
        value = parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Decode body bytes with their declared charset; undeclared, unknown or wrong charsets fall back gracefully.

    Order: the declared charset (strict), UTF-8 (strict), then Windows-1252 with replacement characters (the usual
    truth behind mislabelled "iso-8859-1" mail).
    """
    for candidate in (charset, "utf-8"):
        if not candidate:
            continue
        try:
            return data.decode(candidate.strip().strip('"'))
        except (LookupError, UnicodeDecodeError, ValueError):
            continue
    return data.decode("cp1252", errors="replace")


# ------------------------------------------------------------------------------------------------ headers


def _raw_header(message: Message, name: str) -> str | None:
    # The raw, unparsed value: policy.default's structured parsers have raised on hostile input in past releases,
    # and ids and dates are read with our own small parsers anyway.
    for key, value in message.raw_items():
        if key.lower() == name.lower():
            text = str(value)
            return re.sub(r"\r?\n[ \t]", " ", text).strip()
    return None


def _decode_words(value: str) -> str:
    try:
        return str(make_header(decode_header(value)))
    except (LookupError, UnicodeError, ValueError, TypeError, AssertionError, IndexError):
        return value


def _clean_text(value: str) -> str:
    # Surrogates come from undecodable 8-bit header bytes; control characters have no place in a subject.
    value = value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f]", "", value).strip()


def _text_header(message: Message, name: str) -> str | None:
    raw = _raw_header(message, name)
    if raw is None:
        return None
    try:
        header = message[name]
        value = str(header) if header is not None else raw
    except Exception:  # the stdlib header parser's failure modes are open-ended; fall back to raw
        value = _decode_words(raw)
    value = _clean_text(value)
    return value[:MAX_SUBJECT_CHARS] or None


def _addresses(message: Message, name: str) -> list[tuple[str, str | None]]:
    raw = _raw_header(message, name)
    if not raw:
        return []
    pairs: list[tuple[str, str | None]] = []
    try:
        header: Any = message[name]
        for item in header.addresses:
            address = f"{item.username}@{item.domain}" if item.domain else item.username
            pairs.append((address, item.display_name or None))
    except Exception:  # see _text_header; the lenient getaddresses below takes over
        pairs = []
    if not pairs:
        try:
            pairs = [(address, _decode_words(display) or None) for display, address in getaddresses([raw])]
        except (ValueError, TypeError, IndexError):
            pairs = []
    result: list[tuple[str, str | None]] = []
    for address, display in pairs:
        clean = normalize_address(address)
        if clean:
            name_text = _clean_text(display)[:256] if display else ""
            result.append((clean, name_text or None))
    return result


def _first_address(message: Message, name: str) -> tuple[str | None, str | None]:
    found = _addresses(message, name)
    return found[0] if found else (None, None)


def normalize_address(value: str | None) -> str | None:
    """``Camila@Example.COM`` → ``camila@example.com``; None for anything that is not ``local@domain``."""
    if not value:
        return None
    text = _clean_text(value).strip().strip("<>").strip().lower()
    if len(text) > 320 or not _ADDRESS_RE.fullmatch(text):
        return None
    return text


def _capped_references(ids: list[str]) -> tuple[str, ...]:
    # Keep the thread's root (first) and the most recent ancestors (last): those are what threading looks at.
    if len(ids) <= MAX_REFERENCES:
        return tuple(ids)
    return (ids[0], *ids[-(MAX_REFERENCES - 1) :])


# ------------------------------------------------------------------------------------------------ body


def _decode_part(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, TypeError, AssertionError, LookupError):
        payload = None
    if not isinstance(payload, bytes):
        return ""
    try:
        charset = part.get_content_charset()
    except (ValueError, TypeError, LookupError):
        charset = None
    return decode_bytes(payload, charset)


def _body_text(message: Message, body_parts: list[Message]) -> tuple[str, str]:
    if not isinstance(message, EmailMessage):
        return "", "none"
    try:
        plain = message.get_body(preferencelist=("plain",))
        html = message.get_body(preferencelist=("html",))
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, RecursionError):
        return "", "none"
    body_parts.extend(part for part in (plain, html) if part is not None)
    if plain is not None:
        text = _decode_part(plain)
        if text.strip():
            return normalize_newlines(text), "plain"
    if html is not None:
        text = html_to_text(_decode_part(html))
        if text.strip():
            return text, "html"
    return "", "none"


def _walk(part: Message, path: str, depth: int) -> Iterator[tuple[str, Message]]:
    if depth > _MIME_DEPTH:
        return
    if part.get_content_maintype() == "multipart":
        children = part.get_payload()
        if isinstance(children, list):
            for index, child in enumerate(children, start=1):
                if isinstance(child, Message):
                    yield from _walk(child, f"{path}.{index}" if path else str(index), depth + 1)
        return
    yield (path or "1"), part  # message/rfc822 is one attachment: its own parts are not walked


def _attachments(message: Message, body_ids: set[int]) -> Iterator[AttachmentInfo]:
    for path, part in _walk(message, "", 0):
        if id(part) in body_ids:
            continue
        try:
            disposition = part.get_content_disposition()
            filename = part.get_filename()
        except (ValueError, TypeError, IndexError, LookupError, AttributeError):
            disposition, filename = None, None
        mime_type = part.get_content_type()
        if mime_type.startswith("text/") and disposition != "attachment" and not filename:
            continue  # a further inline text piece of the body, not an attachment
        content_id = next(iter(message_ids(_raw_header(part, "Content-ID"))), None)
        try:
            payload = part.get_payload(decode=True)
        except (ValueError, TypeError, AssertionError, LookupError):
            payload = None
        size = len(payload) if isinstance(payload, bytes) else _serialized_size(part)
        yield attachment_info(
            locator=f"cid:{content_id}" if content_id else f"part:{path}",
            mime_type=mime_type,
            filename=filename,
            size_bytes=size,
            content_id=content_id,
        )


def _serialized_size(part: Message) -> int | None:
    # message/rfc822 has no decodable payload of its own: its size is the attached message, serialised.
    try:
        return len(part.as_bytes())
    except Exception:  # serialising a hostile nested message may fail any way; size is optional
        return None


def attachment_info(
    *, locator: str, mime_type: str | None, filename: str | None, size_bytes: int | None, content_id: str | None
) -> AttachmentInfo:
    """An ``AttachmentInfo`` with every field made safe for the envelope (type, name and id lengths and charset)."""
    clean_type = (mime_type or "").split(";")[0].strip().lower()
    if not _MIME_TYPE_RE.fullmatch(clean_type) or len(clean_type) > 255:
        clean_type = "application/octet-stream"
    name = _clean_text(filename).replace("/", "_").replace("\\", "_")[:255] if filename else ""
    return AttachmentInfo(
        locator=_clean_text(locator)[:256] or "part:?",
        mime_type=clean_type,
        filename=name or None,
        size_bytes=size_bytes if size_bytes is not None and size_bytes >= 0 else None,
        content_id=content_id,
    )


def normalize_newlines(text: str) -> str:
    """CRLF and CR to LF, nothing else touched."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


# ------------------------------------------------------------------------------------------------ HTML → text

_BLOCK_TAGS: Final = frozenset(
    {"p", "div", "tr", "table", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "pre", "section", "article",
     "header", "footer", "blockquote", "dl", "dt", "dd", "center", "address", "form", "hr"}
)  # fmt: skip
_SKIP_TAGS: Final = frozenset({"script", "style", "head", "title", "template", "noscript"})


class _TextExtractor(HTMLParser):
    """Keeps the text of an HTML mail, one line per block; text inside ``<blockquote>`` is prefixed with ``> ``."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._line_depth = 0
        self._quote_depth = 0
        self._skip = 0
        self._pre = 0

    def _flush(self, *, hard: bool = True) -> None:
        # A block boundary ends the current line only if it has text; <br> (hard) always ends one.
        text = "".join(self._line)
        text = text.rstrip() if self._pre else text.strip(" ")
        if text or hard:
            self.lines.append(("> " * self._line_depth) + text if text else "")
        self._line = []
        self._line_depth = self._quote_depth

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "br":
            self._flush()
        elif tag in _BLOCK_TAGS:
            self._flush(hard=False)
            if tag == "blockquote":
                self._quote_depth += 1
                self._line_depth = self._quote_depth
            elif tag == "pre":
                self._pre += 1
            elif tag == "li":
                self._line.append("- ")
            elif tag == "hr":
                self.lines.append("________________________________")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIP_TAGS:  # <script/> opens nothing
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag in _BLOCK_TAGS:
            self._flush(hard=False)
            if tag in ("p", "blockquote", "table", "pre"):
                self.lines.append("")  # a paragraph ends with a blank line
            if tag == "blockquote":
                self._quote_depth = max(0, self._quote_depth - 1)
                self._line_depth = self._quote_depth
            elif tag == "pre":
                self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        data = data.replace("\xa0", " ")
        if self._pre:
            pieces = data.split("\n")
            for index, piece in enumerate(pieces):
                if index:
                    self._flush()
                self._line.append(piece)
            return
        collapsed = re.sub(r"\s+", " ", data)
        if not self._line and collapsed.startswith(" "):
            collapsed = collapsed.lstrip(" ")
        if collapsed:
            if not self._line:
                self._line_depth = self._quote_depth
            self._line.append(collapsed)

    def text(self) -> str:
        self._flush(hard=False)
        joined = "\n".join(line.rstrip() for line in self.lines)
        return re.sub(r"\n{3,}", "\n\n", joined).strip("\n")


def html_to_text(html: str) -> str:
    """Readable text from an HTML mail body: blocks and ``<br>`` become line breaks, scripts and styles vanish,
    entities are decoded, and quoted blocks (``<blockquote>``) become ``> `` lines, so ``strip_reply`` treats an
    HTML-only reply like a plain one."""
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError, IndexError):  # html.parser's own failure modes on broken markup
        return re.sub(r"<[^>]*>", " ", html).strip()
    return parser.text()


# ------------------------------------------------------------------------------------------------ reply stripping

_ATTRIBUTION_START: Final = re.compile(r"^\s*(?:on|el)\s", re.IGNORECASE)
_ATTRIBUTION: Final = re.compile(r"^\s*(?:on\s.{4,}\swrote|el\s.{4,}\sescribi[óo])\s*:\s*$", re.IGNORECASE | re.DOTALL)
_ORIGINAL_MESSAGE: Final = re.compile(r"^\s*-{2,}\s*(?:original message|mensaje original)\s*-{2,}\s*$", re.IGNORECASE)
_HEADER_FROM: Final = re.compile(r"^\s*\*?(?:from|de)\s*:\*?\s*\S", re.IGNORECASE)
_HEADER_OTHER: Final = re.compile(
    r"^\s*\*?(?:sent|date|to|cc|subject|enviado(?: el)?|fecha|para|asunto)\s*:\*?", re.IGNORECASE
)
_SEPARATOR: Final = re.compile(r"^\s*[_\-=*]{5,}\s*$")
_SIGNATURE_DELIMITER: Final = re.compile(r"^--\s?$")
_MOBILE_FOOTER: Final = re.compile(
    r"^\s*(?:sent from my\s.{1,60}|sent from (?:outlook|yahoo mail|mail)(?:\sfor\s.{1,40})?"
    r"|get outlook for\s.{1,40}|enviado desde mi\s.{1,60}"
    r"|enviado desde (?:outlook|yahoo mail|correo)(?:\spara\s.{1,40})?|(?:obtener|descargar) outlook para\s.{1,40})"
    r"\s*$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Reply:
    """``strip_reply``'s answer: the new text, and whether anything was cut."""

    text: str
    stripped: bool = field(default=False)


def _is_attribution(lines: list[str], index: int) -> bool:
    if not _ATTRIBUTION_START.match(lines[index]):
        return False
    # Gmail wraps a long "On … <address> wrote:" over two or three lines.
    joined = ""
    for offset in range(3):
        if index + offset >= len(lines):
            break
        joined = f"{joined} {lines[index + offset].strip()}" if joined else lines[index + offset].strip()
        if len(joined) > 400:
            return False
        if _ATTRIBUTION.match(joined):
            return True
    return False


def _is_header_block(lines: list[str], index: int) -> bool:
    # Outlook's "From: / Sent: / To: / Subject:" (or "De: / Enviado: / Para: / Asunto:"): From first, then at least
    # two more header lines right after, so a customer's own "De: Bogotá" line does not count.
    if not _HEADER_FROM.match(lines[index]):
        return False
    following = [line for line in lines[index + 1 : index + 6] if line.strip()][:4]
    return sum(1 for line in following if _HEADER_OTHER.match(line)) >= 2


def _quote_cut(lines: list[str]) -> int | None:
    unquoted = [index for index, line in enumerate(lines) if line.strip() and not line.lstrip().startswith(">")]
    last_unquoted = unquoted[-1] if unquoted else -1
    for index, line in enumerate(lines):
        if _is_attribution(lines, index) or _ORIGINAL_MESSAGE.match(line) or _is_header_block(lines, index):
            return index
        if index > last_unquoted and line.lstrip().startswith(">"):
            return index  # the trailing quoted block (bottom of a top-posted reply)
    return None


def _signature_cut(lines: list[str]) -> int | None:
    seen_text = False
    for index, line in enumerate(lines):
        if seen_text and (_SIGNATURE_DELIMITER.match(line) or _MOBILE_FOOTER.match(line)):
            return index
        seen_text = seen_text or bool(line.strip())
    return None


def strip_reply(text: str) -> Reply:
    """The customer's new text: quoted history and signatures cut, in Spanish and English.

    Cut at the first of: an attribution line ("On … wrote:", "El … escribió:", wrapped over up to three lines),
    "-----Original Message-----" / "-----Mensaje original-----", an Outlook header block ("From:/Sent:/To:/Subject:",
    "De:/Enviado:/Para:/Asunto:", at least three lines), or a trailing block of ``>`` lines; then, in what is left,
    at a signature: the ``-- `` delimiter (RFC 3676) or a mobile footer ("Sent from my iPhone", "Enviado desde mi
    iPhone", "Obtener Outlook para iOS"). Separator lines just above a cut (``____``) go too.

    Deliberately *not* cut: valedictions ("Gracias,", "Saludos", "Best regards") and what follows them, because a
    customer's sentence may start with those words, and forwarded messages ("---------- Forwarded message ---------",
    "Mensaje reenviado"), which are what the customer wants us to read. When cutting would leave nothing (a reply
    made only of a quote), the whole text is kept.

    Parameters
    ----------
    text : str
        A plain-text body (``html_to_text`` output included).

    Returns
    -------
    Reply
        The new text (trailing blank lines removed) and whether anything was cut.
    """
    lines = normalize_newlines(text).split("\n")
    cut = _quote_cut(lines)
    kept = lines[:cut] if cut is not None else lines
    signature = _signature_cut(kept)
    if signature is not None:
        kept = kept[:signature]
    while kept and (not kept[-1].strip() or _SEPARATOR.match(kept[-1])):
        kept.pop()
    new = "\n".join(kept).strip("\n")
    whole = "\n".join(lines).strip("\n")
    if not new.strip():
        return Reply(text=whole, stripped=False)
    return Reply(text=new, stripped=new != whole)


# ------------------------------------------------------------------------------------------------ envelope


def _metadata(values: Mapping[str, str | None]) -> dict[str, str]:
    return {key: value[:MAX_METADATA_CHARS] for key, value in values.items() if value and value.strip()}


def _text_part(mail: ParsedEmail) -> tuple[TextPart | None, dict[str, str | None]]:
    reply = strip_reply(mail.text) if mail.text.strip() else Reply(text="")
    text = reply.text
    truncated = len(text) > MAX_TEXT_CHARS
    text = text[:MAX_TEXT_CHARS]
    info: dict[str, str | None] = {
        "text_source": mail.text_source,
        "reply_stripped": "true" if reply.stripped else None,
        "text_truncated": "true" if truncated else None,
    }
    if text.strip():
        return TextPart(text=text), info
    return None, info


def _media_parts(attachments: Iterable[AttachmentInfo], room: int) -> tuple[list[MediaPart], int]:
    parts: list[MediaPart] = []
    omitted = 0
    for attachment in attachments:
        if len(parts) >= room:
            omitted += 1
            continue
        parts.append(
            MediaPart(
                provider_media_id=attachment.locator,
                mime_type=attachment.mime_type,
                filename=attachment.filename,
                size_bytes=attachment.size_bytes,
            )
        )
    return parts, omitted


@dataclass(frozen=True)
class Delivery:
    """What the transport knows beyond the MIME: who the SMTP envelope says, ids, times, where the raw mail is."""

    provider: Provider
    provider_message_id: str
    envelope_from: str | None  # SMTP MAIL FROM; "" for a bounce (null sender)
    recipients: tuple[str, ...]  # SMTP RCPT TO that reached us
    received_at: datetime
    correlation_id: str
    raw_ref: str | None = None
    metadata: Mapping[str, str | None] = field(default_factory=dict)


def to_envelope(mail: ParsedEmail, delivery: Delivery) -> Normalized:
    """Turn one parsed mail into the envelope ingest consumes, or say why it is ignored or rejected.

    ``occurred_at`` is the ``Date`` header (stable across retries) unless it is missing or later than
    ``received_at`` (a sender's clock running ahead), in which case it is ``received_at``.

    Returns
    -------
    Normalized
        One envelope; or an ignore reason (auto-submitted mail, bounce, empty mail); or a rejected reason when no
        sender or recipient address can be found or the envelope's limits are broken.
    """
    head = mail.headers
    if head.auto_submitted and head.auto_submitted != "no":
        return Normalized(ignored=("auto-submitted mail (auto-reply or notification)",))
    if delivery.envelope_from is not None and not delivery.envelope_from.strip("<> "):
        return Normalized(ignored=("bounce (empty envelope sender)",))
    sender_address = normalize_address(delivery.envelope_from) or head.from_address
    recipient_address = next(
        (clean for clean in (normalize_address(value) for value in (*delivery.recipients, *head.to)) if clean), None
    )
    if sender_address is None:
        return Normalized(rejected=("mail without a usable sender address",))
    if recipient_address is None:
        return Normalized(rejected=("mail without a usable recipient address",))
    text_part, text_info = _text_part(mail)
    media, omitted = _media_parts(mail.attachments, MAX_PARTS - (1 if text_part else 0))
    parts: list[ContentPart] = [text_part, *media] if text_part else [*media]
    if not parts:
        if not head.subject:
            return Normalized(ignored=("mail without text, attachments or subject",))
        parts = [TextPart(text=head.subject)]  # a subject-only mail: the subject is what the customer wrote
    occurred_at = head.date if head.date is not None and head.date <= delivery.received_at else delivery.received_at
    metadata = _metadata(
        {
            **delivery.metadata,
            "message_id": head.message_id,
            "header_from": head.from_address if head.from_address != sender_address else None,
            **text_info,
            "attachments": str(len(mail.attachments)) if mail.attachments else None,
            "attachments_omitted": str(omitted) if omitted else None,
        }
    )
    try:
        envelope = InboundEnvelope(
            correlation_id=delivery.correlation_id,
            kind=InboundKind.MESSAGE,
            channel=Channel.EMAIL,
            provider=delivery.provider,
            provider_message_id=delivery.provider_message_id,
            occurred_at=occurred_at,
            received_at=delivery.received_at,
            sender=Address(value=sender_address, name=head.from_name),
            recipient=Address(value=recipient_address),
            parts=tuple(parts),
            in_reply_to=head.in_reply_to,
            references=head.references,
            subject=head.subject,
            metadata=metadata,
            raw_ref=delivery.raw_ref,
        )
    except ValidationError as error:
        return Normalized(rejected=(f"mail does not fit the envelope: {', '.join(failed_fields(error))[:200]}",))
    return Normalized(inbound=(envelope,))
