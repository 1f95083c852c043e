"""Messages: content parts, channel rules, delivery status that never goes backward."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from shared.models import (
    ContactPart,
    DeliveryStatus,
    InteractiveKind,
    InteractiveReplyPart,
    LocationPart,
    MediaPart,
    Message,
    ReactionPart,
    StatusUpdate,
    TextPart,
    status_may_follow,
)
from tests.unit.models.factories import T0, message_data, outbound_message_data
from tests.unit.models.helpers import error_summary

Q, S, D, R, F, C = (
    DeliveryStatus.QUEUED,
    DeliveryStatus.SENT,
    DeliveryStatus.DELIVERED,
    DeliveryStatus.READ,
    DeliveryStatus.FAILED,
    DeliveryStatus.CANCELED,
)

PART_INPUTS: list[tuple[dict[str, Any], type[Any]]] = [
    ({"type": "text", "text": "¿Me pueden ayudar? Ñandú, acción, pingüino 📺"}, TextPart),
    (
        {
            "type": "media",
            "url": "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1?sig=a%2Fb",
            "mime_type": "image/jpeg",
            "caption": "Así llegó la pantalla",
            "filename": "foto_daño.jpg",
            "size_bytes": 482113,
        },
        MediaPart,
    ),
    ({"type": "media", "provider_media_id": "1234567890", "mime_type": "audio/ogg; codecs=opus"}, MediaPart),
    (
        {"type": "location", "latitude": 4.6097, "longitude": -74.0817, "name": "Chapinero", "address": "Cra 13"},
        LocationPart,
    ),
    (
        {"type": "interactive_reply", "reply_id": "exchange", "title": "Cambio", "kind": "button"},
        InteractiveReplyPart,
    ),
    (
        {"type": "contact", "name": "Señora Peña", "phones": ["+57 300 123 4567"], "emails": ["pena@ejemplo.co"]},
        ContactPart,
    ),
]


def status(value: DeliveryStatus, minutes: int = 0, **extra: Any) -> StatusUpdate:
    return StatusUpdate(status=value, at=T0 + timedelta(minutes=minutes), **extra)


def outbound(*history: DeliveryStatus) -> Message:
    return Message.model_validate(outbound_message_data(status_history=[status(s, i) for i, s in enumerate(history)]))


# --- content ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("part", "expected_class"), PART_INPUTS)
def test_discriminator_picks_the_part_class_and_round_trips(part: dict[str, Any], expected_class: type[Any]) -> None:
    # Given
    message = Message.model_validate(message_data(parts=[part]))

    # When
    restored = Message.model_validate_json(message.model_dump_json())

    # Then
    assert type(message.parts[0]) is expected_class
    assert restored == message


def test_reaction_part_round_trips_alone() -> None:
    # Given
    reaction = {"type": "reaction", "emoji": "👍", "target_message_id": "x"}
    message = Message.model_validate(message_data(parts=[reaction]))

    # When
    restored = Message.model_validate_json(message.model_dump_json())

    # Then
    assert isinstance(restored.parts[0], ReactionPart)
    assert restored == message


def test_spanish_text_is_kept_verbatim() -> None:
    # Given text with accents, inverted punctuation, and meaningful whitespace
    text = "  ¡Hola! ¿El técnico vendrá mañana?\n— José  "
    message = Message.model_validate(message_data(parts=[{"type": "text", "text": text}]))

    # When
    as_json = message.model_dump_json()
    restored = Message.model_validate_json(as_json)

    # Then
    assert restored.text == text
    assert "¿El técnico vendrá mañana?" in as_json
    assert restored.sender.name == "José Pérez"


def test_interactive_reply_kind_is_an_enum() -> None:
    # Given / When
    message = Message.model_validate(
        message_data(parts=[{"type": "interactive_reply", "reply_id": "r1", "title": "Sí", "kind": "list"}])
    )

    # Then
    part = message.parts[0]
    assert isinstance(part, InteractiveReplyPart)
    assert part.kind is InteractiveKind.LIST


def test_unknown_part_type_is_reported_with_the_expected_tags() -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        Message.model_validate(message_data(parts=[{"type": "sticker", "url": "https://x.co/s.webp"}]))

    # Then
    location, message = error_summary(excinfo)[0]
    assert location == ("parts", 0)
    assert "'sticker'" in message
    assert "'text', 'media', 'location', 'interactive_reply', 'contact', 'reaction'" in message


@pytest.mark.parametrize(
    ("part", "location", "fragment"),
    [
        ({"type": "text", "text": " \n "}, ("parts", 0, "text", "text"), "must not be blank"),
        ({"type": "media", "mime_type": "image/png"}, ("parts", 0, "media"), "url or a provider_media_id"),
        ({"type": "media", "url": "ftp://x.co/a", "mime_type": "image/png"}, ("parts", 0, "media", "url"), "http(s)"),
        ({"type": "media", "url": "https://x.co/a", "mime_type": "jpeg"}, ("parts", 0, "media", "mime_type"), "image/"),
        (
            {"type": "location", "latitude": 91, "longitude": 0},
            ("parts", 0, "location", "latitude"),
            "less than or equal to 90",
        ),
        (
            {"type": "location", "latitude": 0, "longitude": -180.5},
            ("parts", 0, "location", "longitude"),
            "greater than or equal to -180",
        ),
        (
            {"type": "location", "latitude": "nan", "longitude": 0},
            ("parts", 0, "location", "latitude"),
            "finite number",
        ),
        (
            {"type": "interactive_reply", "reply_id": "a", "title": "b", "kind": "carousel"},
            ("parts", 0, "interactive_reply", "kind"),
            "'button' or 'list'",
        ),
        (
            {"type": "reaction", "emoji": "👍 👍", "target_message_id": "x"},
            ("parts", 0, "reaction", "emoji"),
            "should match pattern",
        ),
        ({"type": "text", "text": "hola", "bold": True}, ("parts", 0, "text", "bold"), "Extra inputs"),
    ],
)
def test_invalid_parts_are_rejected_at_their_location(
    part: dict[str, Any], location: tuple[int | str, ...], fragment: str
) -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        Message.model_validate(message_data(parts=[part]))

    # Then
    errors = error_summary(excinfo)
    assert any(loc == location and fragment in message for loc, message in errors), errors


def test_reaction_cannot_share_a_message() -> None:
    # Given
    parts = [{"type": "reaction", "emoji": "❤️", "target_message_id": "x"}, {"type": "text", "text": "gracias"}]

    # When
    with pytest.raises(ValidationError) as excinfo:
        Message.model_validate(message_data(parts=parts))

    # Then
    assert error_summary(excinfo) == [((), "Value error, a reaction is a message of its own: no other parts")]


def test_empty_emoji_means_reaction_removed() -> None:
    # Given / When
    message = Message.model_validate(message_data(parts=[{"type": "reaction", "emoji": "", "target_message_id": "x"}]))

    # Then
    part = message.parts[0]
    assert isinstance(part, ReactionPart)
    assert part.emoji == ""


# --- envelope rules --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"channel": "sms", "provider": "meta"}, "provider meta does not carry channel sms"),
        ({"provider_message_id": None}, "needs its provider_message_id"),
        ({"received_at": None}, "needs received_at"),
        ({"customer_id": None}, "needs its customer_id"),
        ({"status_history": [{"status": "delivered", "at": T0}]}, "only outbound messages"),
    ],
)
def test_message_level_rules(overrides: dict[str, Any], fragment: str) -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        Message.model_validate(message_data(**overrides))

    # Then
    [(location, message)] = error_summary(excinfo)
    assert location == ()
    assert fragment in message


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("received_at", "2024-05-01T15:30:00", "naive datetime"),
        ("sent_at", "2024-05-01T15:30:00.123", "naive datetime"),
        ("id", "msg_123", "(message id)"),
        ("parts", [], "at least 1 item"),
        ("direction", "sideways", "'inbound' or 'outbound'"),
        ("spam_score", 0.9, "Extra inputs are not permitted"),
    ],
)
def test_field_errors_name_the_field(field: str, value: Any, fragment: str) -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        Message.model_validate(message_data(**{field: value}))

    # Then
    errors = error_summary(excinfo)
    assert any(loc == (field,) and fragment in message for loc, message in errors), errors


def test_offsets_are_converted_to_utc() -> None:
    # Given a timestamp in Bogotá time
    message = Message.model_validate(message_data(received_at="2024-05-01T10:30:00-05:00"))

    # When / Then
    assert message.received_at == T0
    assert '"received_at":"2024-05-01T15:30:00Z"' in message.model_dump_json()


def test_message_is_frozen() -> None:
    # Given
    message = Message.model_validate(message_data())

    # When / Then
    with pytest.raises(ValidationError, match="frozen"):
        message.channel = "sms"  # type: ignore[misc, assignment]


# --- delivery status -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("current", "new", "allowed"),
    [
        (None, R, True),
        (Q, S, True),
        (S, D, True),
        (D, R, True),
        (Q, R, True),
        (R, D, False),
        (D, S, False),
        (D, D, False),
        (R, Q, False),
        (Q, C, True),
        (S, C, False),
        (C, S, False),
        (C, R, False),
        (Q, F, True),
        (S, F, True),
        (D, F, False),
        (R, F, False),
        (F, F, False),
        (F, S, False),
        (F, Q, False),
        (F, D, True),
        (F, R, True),
    ],
)
def test_status_order_rules(current: DeliveryStatus | None, new: DeliveryStatus, allowed: bool) -> None:
    # Given / When / Then
    assert status_may_follow(current, new) is allowed


def test_with_status_returns_a_new_message_moving_forward() -> None:
    # Given
    message = outbound(Q, S)

    # When
    delivered = message.with_status(status(D, 5))

    # Then
    assert delivered is not message
    assert delivered.status is DeliveryStatus.DELIVERED
    assert message.status is DeliveryStatus.SENT
    assert [update.status for update in delivered.status_history] == [Q, S, D]


def test_read_never_downgrades_to_delivered() -> None:
    # Given a read receipt that overtook the delivery receipt
    message = outbound(Q, S).with_status(status(R, 3))

    # When
    late = message.with_status(status(D, 2))

    # Then
    assert late is message
    assert late.status is DeliveryStatus.READ


def test_duplicate_callback_is_a_no_op() -> None:
    # Given
    message = outbound(Q, S, D)

    # When / Then
    assert message.with_status(status(D, 9)) is message


def test_failure_keeps_its_error_and_a_later_receipt_overrides_it() -> None:
    # Given
    failed = outbound(Q, S).with_status(status(F, 2, error_code="30003", error_reason="Teléfono apagado"))

    # When
    resent_late = failed.with_status(status(S, 3))
    delivered = failed.with_status(status(D, 4))

    # Then
    assert failed.status_history[-1].error_code == "30003"
    assert resent_late is failed
    assert delivered.status is DeliveryStatus.DELIVERED


def test_canceled_is_final() -> None:
    # Given
    canceled = outbound(Q, C)

    # When / Then
    for late in (S, D, R, F):
        assert canceled.with_status(status(late, 5)) is canceled


def test_status_history_that_goes_backward_is_rejected() -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        outbound(Q, R, D)

    # Then
    assert error_summary(excinfo) == [
        ((), "Value error, status_history goes from read to delivered, which is not allowed")
    ]


def test_error_fields_only_with_failed_status() -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        StatusUpdate(status=DeliveryStatus.DELIVERED, at=T0, error_code="30003")

    # Then
    assert "only allowed with status 'failed'" in error_summary(excinfo)[0][1]


def test_inbound_messages_have_no_delivery_status() -> None:
    # Given
    message = Message.model_validate(message_data())

    # When / Then
    assert message.status is None
    with pytest.raises(ValueError, match="only outbound"):
        message.with_status(status(D))


def test_outbound_message_with_history_round_trips() -> None:
    # Given
    message = outbound(Q, S, F).with_status(status(R, 9))

    # When / Then
    assert Message.model_validate_json(message.model_dump_json()) == message


# --- robustness ------------------------------------------------------------------------------------------------

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
FIELDS = sorted(message_data().keys())
PART_KEYS = ["type", "text", "url", "provider_media_id", "mime_type", "latitude", "longitude", "emoji", "kind"]


@st.composite
def mutated_messages(draw: st.DrawFn) -> dict[str, Any]:
    # Start from a valid message and break a few fields, so inputs reach the deep validators, not just the first.
    part = dict(draw(st.sampled_from([part for part, _ in PART_INPUTS])))
    if draw(st.booleans()):
        part[draw(st.sampled_from(PART_KEYS))] = draw(JSON_VALUES | st.sampled_from(["text", "media", "reaction"]))
    data = message_data(parts=[part])
    for field in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        data[field] = draw(JSON_VALUES)
    return data


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.dictionaries(st.text(max_size=20), JSON_VALUES, max_size=8) | mutated_messages())
def test_arbitrary_input_raises_only_validation_error(data: dict[str, Any]) -> None:
    # Given any JSON-like dict
    # When
    try:
        message = Message.model_validate(data)
    except ValidationError:
        return

    # Then whatever was accepted is a consistent message that survives JSON
    assert Message.model_validate_json(message.model_dump_json()) == message
