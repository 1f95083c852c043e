"""Send jobs as the outbound planner makes them, and an HTTP client that never sleeps for real."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shared.adapters.senders.http import HttpClient
from shared.models.common import Channel, Provider, new_id
from shared.models.customer import ConsentPurpose
from shared.models.message import MediaPart
from shared.models.outbound import OutboundCommand, ReplyButton, SendJob
from shared.models.timeline import Actor, ActorKind

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
PROVIDER_OF = {
    Channel.SMS: Provider.TWILIO,
    Channel.RCS: Provider.TWILIO,
    Channel.WHATSAPP: Provider.META,
    Channel.MESSENGER: Provider.META,
    Channel.INSTAGRAM: Provider.META,
    Channel.TELEGRAM: Provider.TELEGRAM,
    Channel.EMAIL: Provider.SES,
}


def job(channel: Channel, to: str, *, provider: Provider | None = None, key: str = "k-1", **fields: Any) -> SendJob:
    """A send job on ``channel`` to ``to``; ``fields`` are SendJob fields (text, media, buttons, sender...).

    Without text, media or a template, the text is "hola" (and e-mail gets a subject).
    """
    if not {"text", "media", "whatsapp_template"} & fields.keys():
        fields["text"] = "hola"
    if channel == Channel.EMAIL:
        fields.setdefault("subject", "Tu pedido")
    command = OutboundCommand(
        correlation_id="corr-1",
        key=key,
        customer_id=new_id("cus", at=T0, seed=to),
        channel=channel,
        content={"type": "direct", "parts": [{"type": "text", "text": "hola"}]},
        actor=Actor(kind=ActorKind.AGENT, id="agente-7"),
        requested_at=T0,
    )
    return SendJob(
        correlation_id="corr-1",
        key=key,
        message_id=command.message_id,
        customer_id=command.customer_id,
        channel=channel,
        provider=provider or PROVIDER_OF[channel],
        to=to,
        purpose=ConsentPurpose.TRANSACTIONAL,
        command=command,
        **fields,
    )


def image(url: str = "https://cdn.tienda.co/tv.jpg", **fields: Any) -> MediaPart:
    return MediaPart(url=url, mime_type="image/jpeg", **fields)


def pdf(url: str = "https://cdn.tienda.co/factura.pdf", **fields: Any) -> MediaPart:
    return MediaPart(url=url, mime_type="application/pdf", **fields)


def buttons(*pairs: tuple[str, str]) -> tuple[ReplyButton, ...]:
    return tuple(ReplyButton(id=button_id, title=title) for button_id, title in pairs)


class Sleeps:
    """Records the waits an HttpClient asks for instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def http(provider: str, sleeps: Sleeps, **options: Any) -> HttpClient:
    """An HttpClient with the defaults of production but recorded sleeps and a fixed jitter."""
    return HttpClient(provider, sleep=sleeps, jitter=lambda: 0.5, **options)
