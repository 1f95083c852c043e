"""Valid plain-dict inputs for the canonical models; tests override one field to probe one rule."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.models import IdPrefix, new_id

T0 = datetime(2024, 5, 1, 15, 30, tzinfo=UTC)
CUSTOMER_ID = new_id(IdPrefix.CUSTOMER, at=T0, seed="customer")
CONVERSATION_ID = new_id(IdPrefix.CONVERSATION, at=T0, seed="conversation")
MESSAGE_ID = new_id(IdPrefix.MESSAGE, at=T0, seed="message")


def message_data(**overrides: Any) -> dict[str, Any]:
    """An inbound WhatsApp text message from a Colombian customer."""
    data: dict[str, Any] = {
        "id": MESSAGE_ID,
        "direction": "inbound",
        "channel": "whatsapp",
        "provider": "meta",
        "provider_message_id": "wamid.HBgMNTczMDAxMjM0NTY3FQIAEhgU",
        "customer_id": CUSTOMER_ID,
        "conversation_id": CONVERSATION_ID,
        "sender": {"value": "+573001234567", "name": "José Pérez"},
        "recipient": {"value": "+5716000000"},
        "parts": [{"type": "text", "text": "Hola, el televisor llegó dañado"}],
        "sent_at": "2024-05-01T15:29:58Z",
        "received_at": "2024-05-01T15:30:00Z",
    }
    return data | overrides


def outbound_message_data(**overrides: Any) -> dict[str, Any]:
    """An outbound SMS through Twilio, not yet reported on."""
    return (
        message_data(
            direction="outbound",
            channel="sms",
            provider="twilio",
            provider_message_id="SM0123456789abcdef0123456789abcdef",
            sender={"value": "+15005550006"},
            recipient={"value": "+573001234567"},
            parts=[{"type": "text", "text": "Su cita quedó confirmada para el martes."}],
            received_at=None,
        )
        | overrides
    )


def profile_data(**overrides: Any) -> dict[str, Any]:
    """A customer known by phone and cédula."""
    data: dict[str, Any] = {
        "id": CUSTOMER_ID,
        "display_name": "María José Núñez",
        "time_zone": "America/Bogota",
        "attributes": {"segmento": "preferencial", "puntos": 1200},
        "identities": [
            {"kind": "phone", "value": "+573001234567", "verified": True, "source_channel": "sms", "first_seen": T0},
            {
                "kind": "national_id",
                "value": "1020304050",
                "country": "CO",
                "document_type": "CC",
                "first_seen": T0,
            },
        ],
        "consents": [
            {"channel": "whatsapp", "purpose": "marketing", "status": "opted_in", "source": "web_form", "at": T0},
        ],
        "created_at": T0,
        "updated_at": T0,
    }
    return data | overrides
