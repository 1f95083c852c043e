"""Web chat: session tokens, request models, the cursor, and the service over an in-memory log."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.errors import Conflict, Forbidden, HiloError, InvalidInput, NotFound, Unauthorized
from shared.models.inbound import InboundEnvelope
from shared.providers import webchat
from shared.providers.webchat import ChatMessage, ChatService, ChatSession, MessageRequest, SessionRequest

KEY = b"k" * 64
NOW = datetime(2026, 5, 4, 18, 30, tzinfo=UTC)
SID = "chs_" + "b" * 22


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# ------------------------------------------------------------------ tokens


def test_the_token_is_payload_dot_hmac_sha256_in_base64url() -> None:
    # Given the documented construction, computed here independently
    payload = json.dumps({"sid": SID, "exp": int((NOW + timedelta(hours=24)).timestamp())}, separators=(",", ":"))
    expected = f"{b64(payload.encode())}.{b64(hmac.new(KEY, payload.encode(), hashlib.sha256).digest())}"
    # Then
    assert webchat.sign_token(KEY, SID, NOW + timedelta(hours=24)) == expected
    assert webchat.verify_token(expected, KEY, NOW) == SID


def test_a_token_is_valid_until_its_expiry_second() -> None:
    token = webchat.sign_token(KEY, SID, NOW + timedelta(seconds=10))
    assert webchat.verify_token(token, KEY, NOW + timedelta(seconds=9)) == SID
    with pytest.raises(Unauthorized, match="expired"):
        webchat.verify_token(token, KEY, NOW + timedelta(seconds=10))


@pytest.mark.parametrize(
    "token",
    [
        None,
        "",
        "abc",
        "abc.def",
        "!!.??",
        webchat.sign_token(b"other key", SID, NOW + timedelta(hours=1)),
        # A payload edited to another session, keeping the original signature.
        b64(json.dumps({"sid": "chs_" + "c" * 22, "exp": 2**40}).encode())
        + "."
        + webchat.sign_token(KEY, SID, NOW + timedelta(hours=1)).split(".")[1],
        # Signed with the real key but not our claims.
        f"{b64(b'[1]')}.{b64(hmac.new(KEY, b'[1]', hashlib.sha256).digest())}",
        f"{b64(b'{}')}.{b64(hmac.new(KEY, b'{}', hashlib.sha256).digest())}",
    ],
)
def test_bad_tokens_are_unauthorized(token: str | None) -> None:
    with pytest.raises(Unauthorized):
        webchat.verify_token(token, KEY, NOW)


def test_a_token_for_another_session_is_forbidden() -> None:
    token = webchat.sign_token(KEY, "chs_" + "c" * 22, NOW + timedelta(hours=1))
    with pytest.raises(Forbidden):
        webchat.authorize(token, KEY, NOW, SID)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": "Bearer abc.def"}, "abc.def"),
        ({"authorization": "bearer  abc.def "}, "abc.def"),
        ({"x-hilo-chat-token": "abc.def"}, "abc.def"),
        ({"authorization": "Basic dXNlcjpwYXNz", "x-hilo-chat-token": "t.t"}, "t.t"),
        ({}, None),
    ],
)
def test_the_token_is_read_from_bearer_or_the_hilo_header(headers: dict[str, str], expected: str | None) -> None:
    assert webchat.token_from(headers) == expected


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.one_of(st.text(max_size=120), st.builds(lambda a, b: f"{a}.{b}", st.text(), st.text())))
def test_no_token_string_raises_anything_but_unauthorized(token: str) -> None:
    with pytest.raises(Unauthorized):
        webchat.verify_token(token, KEY, NOW)


# ------------------------------------------------------------------ requests


def test_session_details_are_validated_and_normalised() -> None:
    request = SessionRequest.model_validate(
        {"name": " Sofía Pérez ", "email": "sofia@example.com.mx", "phone": "+52 55 1234-5678", "locale": "es"}
    )
    assert (request.name, request.phone) == ("Sofía Pérez", "+525512345678")


@pytest.mark.parametrize(
    "body",
    [
        {"email": "sofia@"},
        {"email": "sofia example.com"},
        {"phone": "5512345678"},
        {"phone": "+52 55"},
        {"phone": "+52 55 1234 5678 9012 34"},
        {"locale": "fr"},
        {"name": ""},
        {"surprise": True},
    ],
)
def test_bad_session_details_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SessionRequest.model_validate(body)


@pytest.mark.parametrize(
    "body",
    [
        {"client_message_id": "", "text": "hola"},
        {"client_message_id": "con espacio", "text": "hola"},
        {"client_message_id": "a" * 65, "text": "hola"},
        {"client_message_id": "m1", "text": ""},
        {"client_message_id": "m1", "text": " \n "},
        {"client_message_id": "m1", "text": "x" * 4001},
        {"client_message_id": "m1"},
        {"client_message_id": "m1", "text": "hola", "html": "<b>"},
    ],
)
def test_bad_messages_are_rejected(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        MessageRequest.model_validate(body)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.sampled_from(["client_message_id", "text", "email", "phone", "name", "x"]),
                       st.none() | st.text(max_size=30) | st.integers()))  # fmt: skip
def test_request_models_only_raise_validation_errors(body: dict[str, Any]) -> None:
    for model in (SessionRequest, MessageRequest):
        with contextlib.suppress(ValidationError):
            model.model_validate(body)


# ------------------------------------------------------------------ cursor


def test_a_cursor_round_trips_and_is_opaque() -> None:
    cursor = webchat.encode_cursor(42)
    assert cursor == b64(b"MSG#000000000042")
    assert webchat.decode_cursor(cursor) == 42
    assert webchat.decode_cursor(None) == 0


@settings(max_examples=1000, deadline=None)
@given(st.text(max_size=40))
def test_a_cursor_we_did_not_make_is_invalid_input(cursor: str) -> None:
    try:
        position = webchat.decode_cursor(cursor)
    except InvalidInput:
        return
    assert webchat.decode_cursor(webchat.encode_cursor(position)) == position


# ------------------------------------------------------------------ the service


@dataclass
class MemoryLog:
    """An in-memory ChatRepository with the store's semantics (idempotent by guard, sequence order)."""

    sessions: dict[str, ChatSession] = field(default_factory=dict)
    messages: dict[str, list[ChatMessage]] = field(default_factory=dict)
    guards: dict[tuple[str, str], ChatMessage] = field(default_factory=dict)

    def create_session(self, session: ChatSession) -> None:
        self.sessions[session.session_id] = session

    def get_session(self, session_id: str) -> ChatSession | None:
        return self.sessions.get(session_id)

    def set_contact(self, session_id: str, email: str | None, phone: str | None) -> None:
        session = self.sessions[session_id]
        self.sessions[session_id] = replace(session, email=email or session.email, phone=phone or session.phone)

    def append_inbound(self, session: ChatSession, message: ChatMessage) -> tuple[ChatMessage, bool]:
        guard = (session.session_id, f"IN#{message.client_message_id}")
        if guard in self.guards:
            return self.guards[guard], False
        log = self.messages.setdefault(session.session_id, [])
        placed = webchat.with_seq(message, len(log) + 1)
        log.append(placed)
        self.guards[guard] = placed
        return placed, True

    def list_messages(self, session_id: str, after_seq: int, limit: int) -> tuple[list[ChatMessage], bool]:
        later = [m for m in self.messages.get(session_id, []) if m.seq > after_seq]
        return later[:limit], len(later) > limit


@dataclass
class Clock:
    at: datetime = NOW

    def __call__(self) -> datetime:
        return self.at


def service() -> tuple[ChatService, MemoryLog, list[InboundEnvelope], Clock]:
    log, queue, clock = MemoryLog(), [], Clock()
    return ChatService(repository=log, key=lambda: KEY, clock=clock, enqueue=queue.append), log, queue, clock


def test_a_retry_later_enqueues_the_identical_envelope() -> None:
    # Given a session and a first message
    chat, log, queue, clock = service()
    started = chat.start(SessionRequest(name="Ana", email="ana@example.com"))
    sid, token = started["session_id"], started["token"]
    request = MessageRequest(client_message_id="w-1", text="Hola, ¿cuánto cuesta el envío?")
    first, created = chat.send(sid, token, request, "req-1")
    # When the widget retries a minute later
    clock.at = NOW + timedelta(minutes=1)
    again, created_again = chat.send(sid, token, request, "req-1")
    # Then it is the same message, enqueued identically, stored once
    assert (created, created_again) == (True, False)
    assert first == again
    assert queue[0] == queue[1]
    assert queue[0].occurred_at == NOW
    assert queue[0].provider_message_id == f"{sid}:w-1"
    assert queue[0].metadata["email"] == "ana@example.com"
    assert len(log.messages[sid]) == 1


def test_an_email_given_in_chat_reaches_later_messages() -> None:
    chat, _log, queue, _ = service()
    started = chat.start(SessionRequest())
    sid, token = started["session_id"], started["token"]
    chat.send(sid, token, MessageRequest(client_message_id="1", text="hola", phone="+54 9 11 2345 6789"), "r")
    chat.send(sid, token, MessageRequest(client_message_id="2", text="¿siguen ahí?"), "r")
    assert [envelope.metadata.get("phone") for envelope in queue] == ["+5491123456789"] * 2


def test_reusing_a_client_id_for_other_text_conflicts() -> None:
    chat, _, _, _ = service()
    started = chat.start(SessionRequest())
    chat.send(started["session_id"], started["token"], MessageRequest(client_message_id="1", text="a"), "r")
    with pytest.raises(Conflict):
        chat.send(started["session_id"], started["token"], MessageRequest(client_message_id="1", text="b"), "r")


def test_an_unknown_session_with_a_valid_token_is_not_found() -> None:
    chat, _, _, _ = service()
    with pytest.raises(NotFound):
        chat.history(SID, webchat.sign_token(KEY, SID, NOW + timedelta(hours=1)), None, None)


def test_a_token_expires_after_24_hours() -> None:
    chat, _, _, clock = service()
    started = chat.start(SessionRequest())
    clock.at = NOW + timedelta(hours=24)
    with pytest.raises(Unauthorized):
        chat.history(started["session_id"], started["token"], None, None)


@pytest.mark.parametrize("limit", ["0", "101", "-1", "diez", ""])
def test_a_bad_limit_is_invalid_input(limit: str) -> None:
    with pytest.raises(InvalidInput):
        webchat.page_size(limit)


def test_errors_of_the_service_are_hilo_errors() -> None:
    chat, _, _, _ = service()
    for call in (
        lambda: chat.history(SID, None, None, None),
        lambda: chat.history(SID, "x.y", "bad", "5"),
    ):
        with pytest.raises(HiloError):
            call()
