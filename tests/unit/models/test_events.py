"""Domain events and queue envelopes."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from pydantic import BaseModel, ValidationError, create_model

from shared.models import DomainEvent, Message, QueueEnvelope, id_time
from tests.unit.models.factories import CUSTOMER_ID, T0, message_data
from tests.unit.models.helpers import error_summary


class DocumentDownloaded(BaseModel):
    document: str
    title: str


class InboundEnvelope(QueueEnvelope):
    schema_version: Literal[1] = 1
    message: Message


def event_data(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "evt_01HWT0D7G0BXSRE0RXWAF6KTRC",
        "type": "document.downloaded",
        "occurred_at": "2024-05-01T15:30:00Z",
        "correlation_id": "req-8f14e45f",
        "customer_id": CUSTOMER_ID,
        "source": "crm",
        "data": {"document": "guia-garantia.pdf", "title": "Guía de garantía — televisores"},
    }
    return data | overrides


def test_event_round_trips_with_spanish_data() -> None:
    # Given
    event = DomainEvent.model_validate(event_data())

    # When
    restored = DomainEvent.model_validate_json(event.model_dump_json())

    # Then
    assert restored == event
    assert restored.schema_version == 1
    assert restored.data["title"] == "Guía de garantía — televisores"


@pytest.mark.parametrize("event_type", ["message.received", "conversation.opened", "workflow.step_completed"])
def test_dotted_event_types_are_accepted(event_type: str) -> None:
    # Given / When / Then
    assert DomainEvent.model_validate(event_data(type=event_type)).type == event_type


@pytest.mark.parametrize("event_type", ["message", "Message.Received", "message..received", "message.received.", "1.a"])
def test_malformed_event_types_are_rejected(event_type: str) -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        DomainEvent.model_validate(event_data(type=event_type))

    # Then
    assert error_summary(excinfo) == [
        (("type",), "Value error, event type must be dotted lower-case words, e.g. 'message.received'")
    ]


@pytest.mark.parametrize(
    ("overrides", "location", "fragment"),
    [
        ({"occurred_at": "2024-05-01T15:30:00"}, ("occurred_at",), "naive datetime"),
        ({"schema_version": 0}, ("schema_version",), "greater than or equal to 1"),
        ({"source": "Core System"}, ("source",), "lower-case words"),
        ({"correlation_id": "has space"}, ("correlation_id",), "should match pattern"),
        ({"id": "1234"}, ("id",), "(event id)"),
        ({"tenant": "acme"}, ("tenant",), "Extra inputs are not permitted"),
    ],
)
def test_invalid_events_are_rejected(overrides: dict[str, Any], location: tuple[str, ...], fragment: str) -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        DomainEvent.model_validate(event_data(**overrides))

    # Then
    errors = error_summary(excinfo)
    assert any(loc == location and fragment in message for loc, message in errors), errors


def test_event_data_is_kept_verbatim() -> None:
    # Given payload text with surrounding whitespace
    event = DomainEvent.model_validate(event_data(data={"texto": "  hola  "}))

    # When / Then
    assert event.data == {"texto": "  hola  "}


def test_new_builds_a_typed_payload_and_reads_it_back() -> None:
    # Given
    payload = DocumentDownloaded(document="guia.pdf", title="Guía")

    # When
    event = DomainEvent.new(
        "document.downloaded",
        source="crm",
        correlation_id="req-1",
        data=payload,
        customer_id=CUSTOMER_ID,
        occurred_at=T0,
    )

    # Then
    assert event.data == {"document": "guia.pdf", "title": "Guía"}
    assert event.payload(DocumentDownloaded) == payload
    assert id_time(event.id) == T0


def test_new_with_seed_makes_redeliveries_emit_the_same_event() -> None:
    # Given the same input processed twice
    def emit() -> DomainEvent:
        return DomainEvent.new(
            "message.received", source="hilo.ingest", correlation_id="c", occurred_at=T0, id_seed="meta:wamid.1"
        )

    # When / Then
    assert emit() == emit()


def test_payload_of_the_wrong_shape_raises() -> None:
    # Given
    event = DomainEvent.model_validate(event_data(data={"document": "guia.pdf"}))

    # When / Then
    with pytest.raises(ValidationError, match="title"):
        event.payload(DocumentDownloaded)


def test_queue_envelope_forbids_unknown_fields_and_other_versions() -> None:
    # Given
    body = {"schema_version": 1, "correlation_id": "req-1", "message": message_data()}
    envelope = InboundEnvelope.model_validate(body)

    # When
    with pytest.raises(ValidationError) as excinfo:
        InboundEnvelope.model_validate(body | {"schema_version": 2, "retries": 3})

    # Then
    assert InboundEnvelope.model_validate_json(envelope.model_dump_json()) == envelope
    assert sorted(loc for loc, _ in error_summary(excinfo)) == [("retries",), ("schema_version",)]


def test_queue_envelope_requires_correlation_id() -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        InboundEnvelope.model_validate({"message": message_data()})

    # Then
    assert error_summary(excinfo) == [(("correlation_id",), "Field required")]


def test_subclass_must_pin_schema_version() -> None:
    # Given / When / Then
    with pytest.raises(TypeError, match="schema_version must be pinned"):
        create_model("Unpinned", __base__=QueueEnvelope, note=(str, ...))
