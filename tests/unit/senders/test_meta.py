"""Meta's Graph API through the fake: WhatsApp Cloud API and the Messenger/Instagram Send API."""

from __future__ import annotations

from typing import Any

import pytest

from hilo.local.fake_providers import PAGES, WHATSAPP, FakeProviders
from shared.adapters.senders import meta
from shared.adapters.senders.base import SenderNotConfigured
from shared.adapters.senders.meta import MetaClient, MetaPageClient, WhatsAppCloudClient
from shared.errors import RetryableError
from shared.models.common import Channel
from shared.models.message import DeliveryStatus, MediaPart
from shared.models.outbound import WhatsAppTemplateMessage
from shared.outbound.delivery import DeliveryRejected, Rejection
from shared.settings import Settings, settings_from
from tests.unit.senders.support import Sleeps, buttons, image, job, pdf

TO = "+573001234567"
WA_ID = "573001234567"
PSID = "6543210987654321"


def graph_http(sleeps: Sleeps, **options: Any) -> Any:
    return meta.http_client(sleep=sleeps, jitter=lambda: 0.5, **options)


@pytest.fixture
def whatsapp(settings: Settings, sleeps: Sleeps) -> WhatsAppCloudClient:
    return WhatsAppCloudClient.from_settings(settings, http=graph_http(sleeps))


@pytest.fixture
def pages(settings: Settings, sleeps: Sleeps) -> MetaPageClient:
    return MetaPageClient.from_settings(settings, http=graph_http(sleeps))


def sent(fake: FakeProviders, index: int = -1) -> dict[str, Any]:
    body: dict[str, Any] = fake.requests[index].body
    return body


def graph_error(code: int, message: str, subcode: int | None = None, details: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Az1"}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return {"error": error}


# --------------------------------------------------------------------------------------------- WhatsApp


def test_a_text_is_one_cloud_api_message_with_bearer_auth(whatsapp: WhatsAppCloudClient, fake: FakeProviders) -> None:
    accepted = whatsapp.send(job(Channel.WHATSAPP, TO, text="Tu pedido: https://tienda.co/p/1"))
    [request] = fake.requests
    assert request.path == f"/v21.0/{fake.whatsapp_phone_number_id}/messages"
    assert request.authorized
    assert "authorization" not in request.headers
    assert request.body == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": WA_ID,
        "type": "text",
        "text": {"body": "Tu pedido: https://tienda.co/p/1", "preview_url": True},
    }
    assert accepted.provider_message_id == request.response["messages"][0]["id"]
    assert accepted.provider_message_id.startswith("wamid.")
    assert accepted.status == DeliveryStatus.SENT


def test_a_text_without_a_link_has_no_preview(whatsapp: WhatsAppCloudClient, fake: FakeProviders) -> None:
    whatsapp.send(job(Channel.WHATSAPP, TO, text="Hola Ana"))
    assert sent(fake)["text"] == {"body": "Hola Ana", "preview_url": False}


def test_a_lone_photo_carries_the_text_as_its_caption(whatsapp: WhatsAppCloudClient, fake: FakeProviders) -> None:
    whatsapp.send(job(Channel.WHATSAPP, TO, text="Así quedó", media=(image(),)))
    assert len(fake.requests) == 1
    assert sent(fake)["type"] == "image"
    assert sent(fake)["image"] == {"link": "https://cdn.tienda.co/tv.jpg", "caption": "Así quedó"}


def test_several_media_go_first_then_the_text(whatsapp: WhatsAppCloudClient, fake: FakeProviders) -> None:
    media = (
        image(caption="Frente"),
        pdf(filename="factura.pdf"),
        MediaPart(url="https://a.co/v.ogg", mime_type="audio/ogg"),
    )
    accepted = whatsapp.send(job(Channel.WHATSAPP, TO, text="Te envío todo", media=media))
    bodies = [request.body for request in fake.requests]
    assert [body["type"] for body in bodies] == ["image", "document", "audio", "text"]
    assert bodies[0]["image"] == {"link": "https://cdn.tienda.co/tv.jpg", "caption": "Frente"}
    assert bodies[1]["document"] == {"link": "https://cdn.tienda.co/factura.pdf", "filename": "factura.pdf"}
    assert bodies[2]["audio"] == {"link": "https://a.co/v.ogg"}
    assert accepted.provider_message_id == fake.requests[-1].response["messages"][0]["id"]


def test_buttons_become_interactive_reply_buttons(whatsapp: WhatsAppCloudClient, fake: FakeProviders) -> None:
    whatsapp.send(
        job(
            Channel.WHATSAPP,
            TO,
            text="¿Cambio o reparación?",
            buttons=buttons(("cambio", "Cambio"), ("rep", "Reparación")),
        )
    )
    assert sent(fake)["type"] == "interactive"
    assert sent(fake)["interactive"] == {
        "type": "button",
        "body": {"text": "¿Cambio o reparación?"},
        "action": {
            "buttons": [
                {"type": "reply", "reply": {"id": "cambio", "title": "Cambio"}},
                {"type": "reply", "reply": {"id": "rep", "title": "Reparación"}},
            ]
        },
    }


def test_buttons_with_a_body_over_1024_characters_are_refused_before_sending(
    whatsapp: WhatsAppCloudClient, fake: FakeProviders
) -> None:
    with pytest.raises(DeliveryRejected) as error:
        whatsapp.send(job(Channel.WHATSAPP, TO, text="a" * 1025, buttons=buttons(("si", "Sí"))))
    assert error.value.rejection == Rejection.CONTENT
    assert error.value.provider_code == "hilo"
    assert fake.requests == []


def test_a_template_is_sent_with_its_body_parameters(whatsapp: WhatsAppCloudClient, fake: FakeProviders) -> None:
    template = WhatsAppTemplateMessage(name="cita_confirmada", language="es_MX", parameters=("Ana", "sábado 7"))
    whatsapp.send(job(Channel.WHATSAPP, TO, whatsapp_template=template, text="ignored when the window is closed"))
    assert sent(fake)["type"] == "template"
    assert sent(fake)["template"] == {
        "name": "cita_confirmada",
        "language": {"code": "es_MX"},
        "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "sábado 7"}]}
        ],
    }


@pytest.mark.parametrize(
    ("code", "message", "details", "rejection"),
    [
        (131047, "(#131047) Re-engagement message", "more than 24 hours have passed", Rejection.WINDOW_CLOSED),
        (131026, "(#131026) Message undeliverable", "Unable to deliver message.", Rejection.NOT_ON_CHANNEL),
        (132001, "(#132001) Template name does not exist in the translation", None, Rejection.CONTENT),
        (131050, "(#131050) Unable to deliver the message", "chose to stop marketing", Rejection.UNSUBSCRIBED),
    ],
)
def test_permanent_whatsapp_refusals_are_classified(
    whatsapp: WhatsAppCloudClient,
    fake: FakeProviders,
    code: int,
    message: str,
    details: str | None,
    rejection: Rejection,
) -> None:
    fake.respond(WA_ID, 400, graph_error(code, message, details=details))
    with pytest.raises(DeliveryRejected) as error:
        whatsapp.send(job(Channel.WHATSAPP, TO))
    assert error.value.rejection == rejection
    assert error.value.provider_code == str(code)
    assert error.value.reason.startswith(message)


@pytest.mark.parametrize(
    ("status", "code"),
    [(400, 130429), (400, 131056), (400, 80007), (400, 4), (400, 131048), (401, 190), (400, 131042), (400, 100)],
)
def test_limits_credentials_accounts_and_unknown_codes_are_retried_not_dropped(
    whatsapp: WhatsAppCloudClient, fake: FakeProviders, status: int, code: int
) -> None:
    fake.respond(WA_ID, status, graph_error(code, f"(#{code}) something"))
    with pytest.raises(RetryableError, match=f"Graph error {code}") as error:
        whatsapp.send(job(Channel.WHATSAPP, TO))
    assert not isinstance(error.value, DeliveryRejected)
    assert len(fake.requests) == 1  # a 4xx is never retried in process: SQS waits


def test_a_wrong_token_gets_metas_401_and_is_retryable(fake: FakeProviders, sleeps: Sleeps) -> None:
    settings = settings_from({**fake.environ(), "HILO_META_ACCESS_TOKEN": "EAAG-wrong-token"})
    client = WhatsAppCloudClient.from_settings(settings, http=graph_http(sleeps))
    with pytest.raises(RetryableError, match="Graph error 190") as error:
        client.send(job(Channel.WHATSAPP, TO))
    assert "EAAG-wrong-token" not in str(error.value)
    assert fake.requests[0].status == 401


def test_a_graph_5xx_is_retried_then_accepted(
    whatsapp: WhatsAppCloudClient, fake: FakeProviders, sleeps: Sleeps
) -> None:
    fake.fail(WA_ID, "server_error", provider=WHATSAPP)
    accepted = whatsapp.send(job(Channel.WHATSAPP, TO))
    assert [request.status for request in fake.requests] == [500, 200]
    assert len(sleeps.waits) == 1
    assert accepted.provider_message_id.startswith("wamid.")


def test_the_fakes_window_failure_is_synchronous_without_callbacks(
    whatsapp: WhatsAppCloudClient, fake: FakeProviders
) -> None:
    fake.fail(WA_ID, "window_closed")
    with pytest.raises(DeliveryRejected) as error:
        whatsapp.send(job(Channel.WHATSAPP, TO))
    assert error.value.rejection == Rejection.WINDOW_CLOSED


def test_no_answer_in_time_is_retryable(fake: FakeProviders, settings: Settings, sleeps: Sleeps) -> None:
    fake.hang(WA_ID, 2.0)
    client = WhatsAppCloudClient.from_settings(settings, http=graph_http(sleeps, timeout=0.2))
    with pytest.raises(RetryableError, match="did not answer in time"):
        client.send(job(Channel.WHATSAPP, TO))


# --------------------------------------------------------------------------------------------- Messenger, Instagram


def test_a_messenger_text_with_quick_replies(pages: MetaPageClient, fake: FakeProviders) -> None:
    accepted = pages.send(
        job(Channel.MESSENGER, PSID, text="¿Te sirve el sábado?", buttons=buttons(("si", "Sí"), ("no", "No")))
    )
    [request] = fake.requests
    assert request.path == "/v21.0/me/messages"
    assert request.authorized
    assert request.body == {
        "recipient": {"id": PSID},
        "messaging_type": "RESPONSE",
        "message": {
            "text": "¿Te sirve el sábado?",
            "quick_replies": [
                {"content_type": "text", "title": "Sí", "payload": "si"},
                {"content_type": "text", "title": "No", "payload": "no"},
            ],
        },
    }
    assert accepted.provider_message_id == request.response["message_id"]
    assert accepted.status == DeliveryStatus.SENT


def test_instagram_attachments_go_by_url_then_the_text(pages: MetaPageClient, fake: FakeProviders) -> None:
    pages.send(job(Channel.INSTAGRAM, PSID, text="Tu factura", media=(pdf(caption="Marzo"),)))
    bodies = [request.body["message"] for request in fake.requests]
    assert bodies == [
        {"attachment": {"type": "file", "payload": {"url": "https://cdn.tienda.co/factura.pdf", "is_reusable": True}}},
        {"text": "Marzo"},
        {"text": "Tu factura"},
    ]


@pytest.mark.parametrize(
    ("kind", "rejection", "code"),
    [
        ("window_closed", Rejection.WINDOW_CLOSED, "10/2018278"),
        ("invalid_number", Rejection.INVALID_ADDRESS, "100/2018001"),
        ("blocked", Rejection.UNSUBSCRIBED, "551/1545041"),
    ],
)
def test_permanent_send_api_refusals_are_classified(
    pages: MetaPageClient, fake: FakeProviders, kind: str, rejection: Rejection, code: str
) -> None:
    fake.fail(PSID, kind, provider=PAGES)
    with pytest.raises(DeliveryRejected) as error:
        pages.send(job(Channel.MESSENGER, PSID))
    assert error.value.rejection == rejection
    assert error.value.provider_code == code


def test_a_send_api_rate_limit_is_retryable(pages: MetaPageClient, fake: FakeProviders) -> None:
    fake.fail(PSID, "rate_limited", provider=PAGES)
    with pytest.raises(RetryableError, match="Graph error 613"):
        pages.send(job(Channel.MESSENGER, PSID))


# --------------------------------------------------------------------------------------------- one client for Meta


def test_meta_client_routes_each_channel_and_checks_only_its_settings(fake: FakeProviders, sleeps: Sleeps) -> None:
    # Given a deployment with WhatsApp but no Page token
    environ = {key: value for key, value in fake.environ().items() if key != "HILO_META_PAGE_ACCESS_TOKEN"}
    client = MetaClient.from_settings(settings_from(environ), http=graph_http(sleeps))
    # Then WhatsApp goes, and Messenger names the missing setting
    assert client.send(job(Channel.WHATSAPP, TO)).provider_message_id.startswith("wamid.")
    with pytest.raises(SenderNotConfigured, match="HILO_META_PAGE_ACCESS_TOKEN"):
        client.send(job(Channel.MESSENGER, PSID))
    assert [request.provider for request in fake.requests] == [WHATSAPP]
