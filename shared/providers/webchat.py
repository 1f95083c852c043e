"""Web chat (Hilo's own widget): visitor session tokens, request models, the chat log's rules, and normalisation.

There is no provider to verify: a visitor starts a session and gets a token signed with Hilo's key
(``base64url(payload) + "." + base64url(HMAC-SHA256(key, payload))``, payload ``{"sid", "exp"}``), and every later
call must carry it. The chat log of a session is an ordered list of messages both ways; each gets the next
sequence number of its session in the same write that stores it (see ``shared.adapters.chat_store``), so a poll
``after=`` a cursor can never skip a message that committed late.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal, Protocol

from pydantic import AfterValidator, BaseModel, ConfigDict, StringConstraints, field_validator

from shared.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from shared.models.common import Channel, Provider, new_id, sortable_timestamp
from shared.models.inbound import InboundEnvelope, InboundKind
from shared.models.message import Address, TextPart

SESSION_PREFIX: Final = "chs_"
TOKEN_TTL: Final = timedelta(hours=24)
#: Sessions and their messages stay this long after the token expired (DynamoDB TTL), for the agent's view.
RETENTION: Final = timedelta(days=30)
RECIPIENT: Final = "webchat"
MAX_PAGE: Final = 100
DEFAULT_PAGE: Final = 50
TOKEN_HEADER: Final = "x-hilo-chat-token"  # noqa: S105 - a header name

_SESSION_ID_RE: Final = re.compile(r"chs_[A-Za-z0-9_-]{22}")
_CURSOR_RE: Final = re.compile(r"MSG#(\d{12})")
_EMAIL_RE: Final = re.compile(r"[^@\s]{1,64}@[^@\s.]+(\.[^@\s.]+)+")
_PHONE_NOISE: Final = re.compile(r"[\s\-().]")
_PHONE_RE: Final = re.compile(r"\+[0-9]{8,15}")


# ------------------------------------------------------------------ requests


def _check_email(value: str) -> str:
    if len(value) > 254 or not _EMAIL_RE.fullmatch(value):
        raise ValueError("must be an e-mail address such as ana@example.com")
    return value


def _check_phone(value: str) -> str:
    compact = _PHONE_NOISE.sub("", value)
    if not _PHONE_RE.fullmatch(compact):
        raise ValueError("must be an international number with '+' and 8-15 digits, such as +57 300 123 4567")
    return compact


Email = Annotated[str, StringConstraints(strip_whitespace=True), AfterValidator(_check_email)]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, max_length=32), AfterValidator(_check_phone)]


class SessionRequest(BaseModel):
    """Body of POST /v1/chat/sessions: what the visitor chose to tell, all optional."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)] | None = None
    email: Email | None = None
    phone: Phone | None = None
    locale: Literal["es", "en"] | None = None
    page_url: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)] | None = None


class MessageRequest(BaseModel):
    """Body of POST /v1/chat/sessions/{id}/messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The widget's own id for the message: a retry with the same id is the same message.
    client_message_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._:\-]{1,64}$")]
    text: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    email: Email | None = None
    phone: Phone | None = None

    @field_validator("text")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("text must not be blank")
        return value


# ------------------------------------------------------------------ tokens


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sign_token(key: bytes, session_id: str, expires_at: datetime) -> str:
    """Sign a visitor token for ``session_id`` valid until ``expires_at`` (whole seconds).

    Parameters
    ----------
    key : bytes
        The ChatTokenSecret's value.
    session_id : str
        The session the token opens.
    expires_at : datetime
        Aware expiry instant.

    Returns
    -------
    str
        ``base64url(payload JSON) + "." + base64url(HMAC-SHA256(key, payload JSON))``.
    """
    payload = json.dumps({"sid": session_id, "exp": int(expires_at.timestamp())}, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(hmac.new(key, payload, hashlib.sha256).digest())}"


def verify_token(token: str | None, key: bytes, now: datetime) -> str:
    """Check a visitor token and return the session id it opens.

    Raises
    ------
    Unauthorized
        Missing, malformed, forged (HMAC compared with ``hmac.compare_digest``) or expired.
    """
    if not token:
        raise Unauthorized("A chat session token is required (Authorization: Bearer <token>).")
    encoded_payload, _, encoded_mac = token.partition(".")
    try:
        payload, mac = _unb64(encoded_payload), _unb64(encoded_mac)
    except (ValueError, binascii.Error) as error:
        raise Unauthorized("The chat session token is not valid.") from error
    if not hmac.compare_digest(mac, hmac.new(key, payload, hashlib.sha256).digest()):
        raise Unauthorized("The chat session token is not valid.")
    try:
        claims: Any = json.loads(payload)
        session_id, expires = claims["sid"], claims["exp"]
    except (ValueError, TypeError, KeyError) as error:  # only a holder of the key could get here
        raise Unauthorized("The chat session token is not valid.") from error
    if not isinstance(session_id, str) or not isinstance(expires, int) or isinstance(expires, bool):
        raise Unauthorized("The chat session token is not valid.")
    if now.timestamp() >= expires:
        raise Unauthorized("The chat session has expired; start a new one.")
    return session_id


def token_from(headers: Mapping[str, str]) -> str | None:
    """The token from ``Authorization: Bearer <token>`` or, failing that, ``x-hilo-chat-token``."""
    authorization = headers.get("authorization", "")
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return headers.get(TOKEN_HEADER) or None


def authorize(token: str | None, key: bytes, now: datetime, session_id: str) -> None:
    """Let the call through only with a valid token for ``session_id`` (401 invalid, 403 another session's)."""
    if verify_token(token, key, now) != session_id:
        raise Forbidden("The chat session token belongs to another session.")


# ------------------------------------------------------------------ the chat log


@dataclass(frozen=True)
class ChatSession:
    """One visitor's session: what they told us and how far its message sequence has gone."""

    session_id: str
    created_at: datetime
    token_expires_at: datetime
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    locale: str | None = None
    page_url: str | None = None
    last_seq: int = 0

    @property
    def retain_until(self) -> int:
        """Epoch seconds for DynamoDB TTL: the token's expiry plus the retention period."""
        return int((self.token_expires_at + RETENTION).timestamp())


@dataclass(frozen=True)
class ChatMessage:
    """One message of a session's log, either way. ``seq`` is 0 until the store gives it its place."""

    session_id: str
    message_id: str
    direction: Literal["inbound", "outbound"]
    text: str
    at: datetime
    seq: int = 0
    client_message_id: str | None = None  # inbound: the widget's id (idempotency key)
    sender_name: str | None = None  # inbound: the visitor's name when it was written
    email: str | None = None  # inbound: contact details known when it was written, for the envelope
    phone: str | None = None

    @property
    def sort_key(self) -> str:
        """The item's sort key in its session's partition: ``MSG#<12-digit seq>``."""
        return f"MSG#{self.seq:012d}"

    def public(self) -> dict[str, Any]:
        """What the widget sees."""
        shown: dict[str, Any] = {"id": self.message_id, "direction": self.direction, "text": self.text,
                                 "at": self.at.isoformat()}  # fmt: skip
        if self.client_message_id is not None:
            shown["client_message_id"] = self.client_message_id
        return shown


class ChatRepository(Protocol):
    """Storage of sessions and their logs (``shared.adapters.chat_store.ChatStore`` in AWS)."""

    def create_session(self, session: ChatSession) -> None: ...

    def get_session(self, session_id: str) -> ChatSession | None: ...

    def set_contact(self, session_id: str, email: str | None, phone: str | None) -> None: ...

    def append_inbound(self, session: ChatSession, message: ChatMessage) -> tuple[ChatMessage, bool]:
        """Store ``message`` once per ``client_message_id``: (stored message, True) the first time; later
        (the message stored the first time, False)."""
        ...

    def list_messages(self, session_id: str, after_seq: int, limit: int) -> tuple[list[ChatMessage], bool]:
        """Up to ``limit`` messages with a sequence above ``after_seq``, oldest first, and whether more follow."""
        ...


def new_session(request: SessionRequest, now: datetime, session_id: str | None = None) -> ChatSession:
    """A fresh session for ``request``, valid for ``TOKEN_TTL``."""
    return ChatSession(
        session_id=session_id or f"{SESSION_PREFIX}{secrets.token_urlsafe(16)}",
        created_at=now,
        token_expires_at=(now + TOKEN_TTL).replace(microsecond=0),
        **request.model_dump(exclude_none=True),
    )


def check_session_id(session_id: str) -> str:
    """Reject a path id that cannot be a session id (404: there is no such session)."""
    if not _SESSION_ID_RE.fullmatch(session_id):
        raise NotFound("No such chat session.")
    return session_id


def inbound_message(session: ChatSession, request: MessageRequest, now: datetime) -> ChatMessage:
    """The log entry for a visitor's message, with the contact details to hand to ingest."""
    provider_message_id = f"{session.session_id}:{request.client_message_id}"
    return ChatMessage(
        session_id=session.session_id,
        # Seeded: the same client message id always names the same chat message.
        message_id=new_id("chm", at=now, seed=f"hilo:{provider_message_id}"),
        direction="inbound",
        text=request.text,
        at=now,
        client_message_id=request.client_message_id,
        sender_name=session.name,
        email=request.email or session.email,
        phone=request.phone or session.phone,
    )


def same_message(stored: ChatMessage, request: MessageRequest) -> None:
    """A retry must repeat the message; reusing a client id for other text is a widget bug (409)."""
    if stored.text != request.text:
        raise Conflict("client_message_id was already used for a different message.")


def to_envelope(message: ChatMessage, correlation_id: str) -> InboundEnvelope:
    """The envelope for a stored visitor message; built only from the stored item, so retries enqueue the same."""
    metadata = {name: value for name, value in (("email", message.email), ("phone", message.phone)) if value}
    return InboundEnvelope(
        correlation_id=correlation_id,
        kind=InboundKind.MESSAGE,
        channel=Channel.WEBCHAT,
        provider=Provider.HILO,
        provider_message_id=f"{message.session_id}:{message.client_message_id}",
        occurred_at=message.at,
        received_at=message.at,
        sender=Address(value=message.session_id, name=message.sender_name),
        recipient=Address(value=RECIPIENT),
        parts=(TextPart(text=message.text),),
        metadata={**metadata, "chat_message_id": message.message_id},
    )


def encode_cursor(seq: int) -> str:
    """The opaque ``after=`` cursor for a position in a session's log."""
    return _b64(f"MSG#{seq:012d}".encode())


def decode_cursor(cursor: str | None) -> int:
    """The position an ``after=`` cursor names (0 = from the start).

    Raises
    ------
    InvalidInput
        The cursor was not made by ``encode_cursor``.
    """
    if cursor is None:
        return 0
    try:
        match = _CURSOR_RE.fullmatch(_unb64(cursor).decode("ascii"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        match = None
    if match is None:
        raise InvalidInput("The 'after' cursor is not valid; use a next_cursor this API returned.")
    return int(match.group(1))


def page_size(limit: str | None) -> int:
    """The ``limit`` query parameter, 1-100, 50 by default."""
    if limit is None:
        return DEFAULT_PAGE
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_PAGE:
        raise InvalidInput(f"'limit' must be a whole number from 1 to {MAX_PAGE}.")
    return int(limit)


def iso(value: datetime) -> str:
    """An instant as the API shows it."""
    return value.astimezone(UTC).isoformat()


# ------------------------------------------------------------------ use cases


@dataclass(frozen=True)
class ChatService:
    """The three calls of the widget's API over a repository, the token key, the clock and the inbound queue."""

    repository: ChatRepository
    key: Callable[[], bytes]
    clock: Callable[[], datetime]
    enqueue: Callable[[InboundEnvelope], None]

    def start(self, request: SessionRequest) -> dict[str, str]:
        """POST /v1/chat/sessions."""
        session = new_session(request, self.clock())
        self.repository.create_session(session)
        token = sign_token(self.key(), session.session_id, session.token_expires_at)
        return {"session_id": session.session_id, "token": token, "expires_at": iso(session.token_expires_at)}

    def send(
        self, session_id: str, token: str | None, request: MessageRequest, correlation_id: str
    ) -> tuple[dict[str, str], bool]:
        """POST /v1/chat/sessions/{id}/messages: (answer, True when the message is new)."""
        session = self._open(session_id, token)
        if (request.email and request.email != session.email) or (request.phone and request.phone != session.phone):
            self.repository.set_contact(session_id, request.email, request.phone)
        stored, created = self.repository.append_inbound(session, inbound_message(session, request, self.clock()))
        same_message(stored, request)
        # Enqueued on every call: a retry after a failed enqueue must still reach ingest; FIFO dedup and
        # ingest's conditional write keep it to one effect.
        self.enqueue(to_envelope(stored, correlation_id))
        return {"message_id": stored.message_id, "received_at": iso(stored.at)}, created

    def history(self, session_id: str, token: str | None, after: str | None, limit: str | None) -> dict[str, Any]:
        """GET /v1/chat/sessions/{id}/messages."""
        after_seq, size = decode_cursor(after), page_size(limit)
        self._open(session_id, token)
        messages, more = self.repository.list_messages(session_id, after_seq, size)
        last = messages[-1].seq if messages else after_seq
        return {
            "messages": [message.public() for message in messages],
            # Always where to poll from next (null only while the log is empty), so a widget just keeps it.
            "next_cursor": encode_cursor(last) if last else None,
            "has_more": more,
        }

    def _open(self, session_id: str, token: str | None) -> ChatSession:
        authorize(token, self.key(), self.clock(), session_id)
        session = self.repository.get_session(check_session_id(session_id))
        if session is None:
            raise NotFound("No such chat session.")
        return session


def with_seq(message: ChatMessage, seq: int) -> ChatMessage:
    """``message`` placed at ``seq`` in its session's log."""
    return replace(message, seq=seq)


def timestamp_key(value: datetime) -> str:
    """Fixed-width UTC text for storage (sorts like the instant)."""
    return sortable_timestamp(value)
