"""Telegram: secret-token check and Update → envelope, with payloads shaped like core.telegram.org/bots/api."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.errors import Forbidden, HiloError, InvalidInput, Unauthorized
from shared.models.inbound import InboundEnvelope, InboundKind
from shared.models.message import ContactPart, InteractiveReplyPart, LocationPart, MediaPart, TextPart
from shared.providers import telegram
from shared.webhooks import Normalized

NOW = datetime(2026, 3, 14, 15, 0, tzinfo=UTC)
DATE = 1_773_500_000
USER = {"id": 7102345678, "is_bot": False, "first_name": "Camila", "last_name": "Restrepo", "username": "camir",
        "language_code": "es"}  # fmt: skip
CHAT = {"id": 7102345678, "first_name": "Camila", "last_name": "Restrepo", "username": "camir", "type": "private"}


def message(**fields: Any) -> dict[str, Any]:
    return {"message_id": 345, "from": USER, "chat": CHAT, "date": DATE, **fields}


def update(**fields: Any) -> bytes:
    return json.dumps({"update_id": 918273645, **fields}).encode()


def one(body: bytes) -> InboundEnvelope:
    result = telegram.normalize(telegram.parse_update(body), correlation_id="req-1", received_at=NOW)
    assert result.ignored == ()
    assert result.rejected == ()
    (envelope,) = result.inbound
    return envelope


# ------------------------------------------------------------------ secret token


def test_the_configured_secret_token_is_accepted() -> None:
    telegram.verify_secret_token("telegram-secret_token-1", "telegram-secret_token-1")


@pytest.mark.parametrize("header", [None, "", "telegram-secret_token-2", "TELEGRAM-SECRET_TOKEN-1", "telegram"])
def test_a_missing_or_wrong_secret_token_is_unauthorized(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        telegram.verify_secret_token(header, "telegram-secret_token-1")


def test_without_a_configured_token_every_request_is_forbidden() -> None:
    with pytest.raises(Forbidden, match="HILO_TELEGRAM_SECRET_TOKEN"):
        telegram.verify_secret_token("anything", None)


# ------------------------------------------------------------------ messages


def test_a_text_message_becomes_one_envelope_with_the_chat_scoped_id() -> None:
    # When
    envelope = one(update(message=message(text="Hola, ¿tienen la talla 38 en azul?")))
    # Then
    assert envelope.kind == InboundKind.MESSAGE
    assert (envelope.channel, envelope.provider) == ("telegram", "telegram")
    assert envelope.provider_message_id == "7102345678:345"
    assert envelope.sender.value == "7102345678"
    assert envelope.sender.name == "Camila Restrepo"
    assert envelope.recipient.value == "bot"
    assert envelope.occurred_at == datetime.fromtimestamp(DATE, UTC)
    assert envelope.received_at == NOW
    assert envelope.parts == (TextPart(text="Hola, ¿tienen la talla 38 en azul?"),)
    assert envelope.metadata == {"update_id": "918273645", "chat_id": "7102345678", "username": "camir",
                                 "language_code": "es"}  # fmt: skip
    assert envelope.correlation_id == "req-1"


def test_the_same_update_twice_gives_identical_envelopes() -> None:
    body = update(message=message(text="¿Hacen envíos a Medellín?"))
    assert one(body) == one(body)


def test_a_reply_names_the_message_it_answers() -> None:
    envelope = one(update(message=message(text="Sí, esa", reply_to_message=message(message_id=340, text="x"))))
    assert envelope.in_reply_to == "7102345678:340"


def test_an_edited_message_is_its_own_event_pointing_at_the_original() -> None:
    # When
    envelope = one(update(edited_message=message(text="Hola, talla 39", edit_date=DATE + 60)))
    # Then
    assert envelope.kind == InboundKind.MESSAGE_EDITED
    assert envelope.provider_message_id == f"7102345678:345:edit:{DATE + 60}"
    assert envelope.metadata["edited_message_id"] == "7102345678:345"
    assert envelope.occurred_at == datetime.fromtimestamp(DATE, UTC)


def test_a_photo_keeps_the_largest_size_and_the_caption() -> None:
    photos = [
        {"file_id": "AgACAgEAAxkBAAIBSmall", "file_unique_id": "u1", "width": 90, "height": 67, "file_size": 1200},
        {"file_id": "AgACAgEAAxkBAAIBLarge", "file_unique_id": "u3", "width": 1280, "height": 960, "file_size": 98000},
        {"file_id": "AgACAgEAAxkBAAIBMedium", "file_unique_id": "u2", "width": 320, "height": 240, "file_size": 9000},
    ]
    envelope = one(update(message=message(photo=photos, caption="Así llegó la caja 😞")))
    assert envelope.parts == (
        MediaPart(provider_media_id="AgACAgEAAxkBAAIBLarge", mime_type="image/jpeg", size_bytes=98000,
                  caption="Así llegó la caja 😞"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("field", "wire", "expected_mime"),
    [
        ("document", {"file_id": "BQACAgEdoc", "file_name": "factura_0231.pdf", "mime_type": "application/pdf"},
         "application/pdf"),
        ("voice", {"file_id": "AwACAgEvoice", "duration": 4, "mime_type": "audio/ogg", "file_size": 5210},
         "audio/ogg"),
        ("audio", {"file_id": "CQACAgEaudio", "duration": 120, "file_name": "nota.mp3"}, "audio/mpeg"),
        ("video", {"file_id": "BAACAgEvideo", "width": 640, "height": 360, "duration": 9, "mime_type": "video/mp4"},
         "video/mp4"),
    ],
)  # fmt: skip
def test_files_keep_their_file_id_mime_type_and_name(field: str, wire: dict[str, Any], expected_mime: str) -> None:
    (part,) = one(update(message=message(**{field: wire}))).parts
    assert isinstance(part, MediaPart)
    assert part.provider_media_id == wire["file_id"]
    assert part.mime_type == expected_mime
    assert part.filename == wire.get("file_name")


def test_a_location_and_a_venue_become_location_parts() -> None:
    located = one(update(message=message(location={"latitude": 4.6097, "longitude": -74.0817})))
    assert located.parts == (LocationPart(latitude=4.6097, longitude=-74.0817),)
    venue = {"location": {"latitude": 19.4326, "longitude": -99.1332}, "title": "Tienda Centro",
             "address": "Av. Juárez 10, CDMX"}  # fmt: skip
    at_venue = one(update(message=message(venue=venue, location=venue["location"])))
    assert at_venue.parts == (
        LocationPart(latitude=19.4326, longitude=-99.1332, name="Tienda Centro", address="Av. Juárez 10, CDMX"),
    )


@pytest.mark.parametrize(
    ("phone", "expected"), [("573001234567", "+573001234567"), ("+5215512345678", "+5215512345678"),
                            ("54 9 11 2345-6789", "+5491123456789")],
)  # fmt: skip
def test_a_shared_contact_carries_the_phone_in_e164(phone: str, expected: str) -> None:
    contact = {"phone_number": phone, "first_name": "Camila", "last_name": "Restrepo", "user_id": 7102345678}
    envelope = one(update(message=message(contact=contact)))
    assert envelope.parts == (ContactPart(name="Camila Restrepo", phones=(expected,)),)
    assert envelope.metadata["contact_user_id"] == "7102345678"
    assert envelope.metadata["contact_is_sender"] == "true"


def test_someone_elses_contact_is_not_marked_as_the_senders() -> None:
    contact = {"phone_number": "5491122334455", "first_name": "Lucía", "user_id": 55}
    assert one(update(message=message(contact=contact))).metadata["contact_is_sender"] == "false"


def test_a_button_tap_becomes_an_interactive_reply() -> None:
    # Given a callback query on a message the bot sent
    query = {"id": "4382bfdwdsb323b2d9", "from": USER, "chat_instance": "-5678", "data": "talla_38",
             "message": message(message_id=350, from_={"id": 1, "is_bot": True, "first_name": "Hilo"},
                                text="¿Qué talla?")}  # fmt: skip
    body = update(callback_query=query)
    # When
    envelope = one(body)
    # Then
    assert envelope.provider_message_id == "callback:4382bfdwdsb323b2d9"
    assert envelope.sender.value == "7102345678"
    assert envelope.parts == (InteractiveReplyPart(reply_id="talla_38", title="talla_38", kind="button"),)
    assert envelope.in_reply_to == "7102345678:350"
    assert envelope.occurred_at == NOW  # a callback query has no date of its own
    assert telegram.callback_answer(telegram.parse_update(body)) == {
        "method": "answerCallbackQuery",
        "callback_query_id": "4382bfdwdsb323b2d9",
    }


def test_a_plain_update_is_answered_with_an_empty_object() -> None:
    assert telegram.callback_answer(telegram.parse_update(update(message=message(text="hola")))) == {}


# ------------------------------------------------------------------ ignored and rejected


def normalized(body: bytes) -> Normalized:
    return telegram.normalize(telegram.parse_update(body), correlation_id="req-1", received_at=NOW)


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"inline_query": {"id": "1", "from": USER, "query": "zapatos", "offset": ""}}, "inline_query"),
        ({"my_chat_member": {"chat": CHAT, "from": USER, "date": DATE}}, "my_chat_member"),
        ({"channel_post": message(chat={"id": -100123, "type": "channel"}, text="oferta")}, "channel_post"),
        ({"message": message(chat={"id": -4001, "type": "group", "title": "Familia"}, text="hola")}, "group chat"),
        ({"message": message(chat={"id": -1004001, "type": "supergroup"}, text="hola")}, "supergroup chat"),
        ({"message": message(text="   ")}, "without supported content"),
        ({"message": message(dice={"emoji": "🎲", "value": 3})}, "without supported content"),
        ({"callback_query": {"id": "9", "from": USER, "chat_instance": "1", "game_short_name": "g"}}, "without data"),
        ({}, "unknown"),
    ],
)
def test_updates_hilo_does_not_handle_are_ignored_with_a_reason(fields: dict[str, Any], reason: str) -> None:
    result = normalized(update(**fields))
    assert result.inbound == ()
    assert len(result.ignored) == 1
    assert reason in result.ignored[0]


def test_an_update_that_breaks_envelope_limits_is_rejected_not_raised() -> None:
    result = normalized(update(message=message(location={"latitude": 123.0, "longitude": 0.0})))
    assert result.inbound == ()
    assert len(result.rejected) == 1
    assert "918273645" in result.rejected[0]


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", b'"hola"', b'{"message": {}}', b'{"update_id": "x"}', b"\xff\xfe",
     b'{"update_id": 1, "message": {"message_id": 1}}'],
)  # fmt: skip
def test_a_body_that_is_not_an_update_is_invalid_input(body: bytes) -> None:
    with pytest.raises(InvalidInput):
        telegram.parse_update(body)


# ------------------------------------------------------------------ property


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)
_keys = st.sampled_from(
    ["message_id", "from", "chat", "date", "text", "photo", "document", "location", "contact",
     "id", "type", "data", "file_id", "latitude", "phone_number", "update_id", "edit_date"]
)  # fmt: skip
_telegramish = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=6),
    max_leaves=30,
)

_text = st.text(max_size=40)
_message = st.fixed_dictionaries(
    {
        "message_id": st.integers(),
        "chat": st.fixed_dictionaries({"id": st.integers(), "type": st.sampled_from(["private", "group", "x"])}),
        "date": st.integers(),
    },
    optional={
        "from": st.fixed_dictionaries({"id": st.integers(), "first_name": _text}, optional={"username": _text}),
        "text": _text,
        "caption": _text,
        "edit_date": st.integers(),
        "photo": st.lists(st.fixed_dictionaries({"file_id": _text, "width": st.integers(), "height": st.integers()})),
        "document": st.fixed_dictionaries({"file_id": _text}, optional={"mime_type": _text, "file_name": _text}),
        "sticker": st.fixed_dictionaries({"file_id": _text}, optional={"is_video": st.booleans()}),
        "location": st.fixed_dictionaries({"latitude": st.floats(), "longitude": st.floats()}),
        "contact": st.fixed_dictionaries(
            {"phone_number": _text, "first_name": _text}, optional={"user_id": st.integers()}
        ),
        "reply_to_message": st.fixed_dictionaries({"message_id": st.integers()}),
    },
)
_callback = st.fixed_dictionaries(
    {"id": _text, "from": st.fixed_dictionaries({"id": st.integers(), "first_name": _text})},
    optional={"data": _text, "message": _message},
)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    st.one_of(
        st.binary(max_size=200),
        _json.map(lambda value: json.dumps(value).encode()),
        st.fixed_dictionaries(
            {"update_id": st.integers()},
            optional={"message": _telegramish, "edited_message": _telegramish, "callback_query": _telegramish},
        ).map(lambda value: json.dumps(value).encode()),
        st.fixed_dictionaries(
            {"update_id": st.integers()},
            optional={"message": _message, "edited_message": _message, "callback_query": _callback},
        ).map(lambda value: json.dumps(value).encode()),
    )
)
def test_no_body_makes_the_parser_raise_anything_but_a_hilo_error(body: bytes) -> None:
    try:
        result = normalized(body)
    except HiloError:
        return
    assert isinstance(result, Normalized)
