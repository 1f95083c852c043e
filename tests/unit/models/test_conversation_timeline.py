"""Conversations and timeline entries."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from shared.models import (
    ActorKind,
    Channel,
    Conversation,
    IdPrefix,
    TimelineEntry,
    TimelineKind,
    new_id,
)
from tests.unit.models.factories import CONVERSATION_ID, CUSTOMER_ID, MESSAGE_ID, T0
from tests.unit.models.helpers import error_summary


def conversation_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": CONVERSATION_ID,
        "customer_id": CUSTOMER_ID,
        "status": "open",
        "channels": ["voice", "whatsapp", "email"],
        "opened_at": "2024-05-01T15:00:00Z",
        "last_message_at": "2024-05-01T15:30:00Z",
        "last_channel": "whatsapp",
        "assigned_agent_id": "agent-7f3a",
        "subject": "Televisor dañado — cambio",
    }
    return data | overrides


def entry_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": new_id(IdPrefix.TIMELINE, at=T0, seed="entry"),
        "customer_id": CUSTOMER_ID,
        "conversation_id": CONVERSATION_ID,
        "occurred_at": T0,
        "channel": "whatsapp",
        "kind": "message",
        "summary": "Foto del televisor dañado",
        "message_id": MESSAGE_ID,
        "actor": {"kind": "customer"},
    }
    return data | overrides


def test_conversation_round_trips_with_spanish_subject() -> None:
    # Given
    conversation = Conversation.model_validate(conversation_data())

    # When
    restored = Conversation.model_validate_json(conversation.model_dump_json())

    # Then
    assert restored == conversation
    assert restored.subject == "Televisor dañado — cambio"
    assert restored.channels == (Channel.VOICE, Channel.WHATSAPP, Channel.EMAIL)
    assert restored.is_active


@pytest.mark.parametrize(
    ("overrides", "location", "fragment"),
    [
        ({"last_channel": "sms"}, (), "last_channel must be one of channels"),
        ({"channels": ["sms", "sms"], "last_channel": "sms"}, (), "must not repeat"),
        ({"channels": []}, ("channels",), "at least 1 item"),
        ({"last_message_at": "2024-05-01T14:59:59Z"}, (), "before opened_at"),
        ({"opened_at": "2024-05-01T15:00:00"}, ("opened_at",), "naive datetime"),
        ({"status": "snoozed"}, ("status",), "'open', 'pending', 'resolved' or 'closed'"),
        ({"customer_id": CONVERSATION_ID}, ("customer_id",), "(customer id)"),
    ],
)
def test_invalid_conversations_are_rejected(
    overrides: dict[str, Any], location: tuple[str, ...], fragment: str
) -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        Conversation.model_validate(conversation_data(**overrides))

    # Then
    errors = error_summary(excinfo)
    assert any(loc == location and fragment in message for loc, message in errors), errors


@pytest.mark.parametrize(
    ("status", "active"),
    [("open", True), ("pending", True), ("resolved", False), ("closed", False)],
)
def test_active_means_open_or_pending(status: str, active: bool) -> None:
    # Given / When / Then
    assert Conversation.model_validate(conversation_data(status=status)).is_active is active


def test_timeline_entry_round_trips() -> None:
    # Given
    entry = TimelineEntry.model_validate(entry_data())

    # When
    restored = TimelineEntry.model_validate_json(entry.model_dump_json())

    # Then
    assert restored == entry
    assert restored.summary == "Foto del televisor dañado"


def test_note_without_channel_or_conversation_is_valid() -> None:
    # Given / When
    note = TimelineEntry.model_validate(
        entry_data(
            kind="note",
            channel=None,
            conversation_id=None,
            message_id=None,
            summary="Cliente pidió cambio en tienda",
            actor={"kind": "agent", "id": "agent-7f3a"},
        )
    )

    # Then
    assert note.kind is TimelineKind.NOTE
    assert note.actor.kind is ActorKind.AGENT


@pytest.mark.parametrize(
    ("overrides", "location", "fragment"),
    [
        ({"message_id": None}, (), "needs message_id and channel"),
        ({"channel": None}, (), "needs message_id and channel"),
        ({"kind": "visit"}, (), "message and status entries only"),
        ({"actor": {"kind": "agent"}}, ("actor",), "needs an id"),
        ({"summary": ""}, ("summary",), "at least 1 character"),
        ({"occurred_at": "2024-05-01T15:30:00"}, ("occurred_at",), "naive datetime"),
        ({"kind": "email_opened"}, ("kind",), "Input should be"),
    ],
)
def test_invalid_entries_are_rejected(overrides: dict[str, Any], location: tuple[str, ...], fragment: str) -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        TimelineEntry.model_validate(entry_data(**overrides))

    # Then
    errors = error_summary(excinfo)
    assert any(loc == location and fragment in message for loc, message in errors), errors
