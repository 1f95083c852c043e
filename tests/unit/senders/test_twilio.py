"""Twilio's Messages API through the fake: the exact form sent, and what each answer means for the message."""

from __future__ import annotations

import json

import pytest

from hilo.local.fake_providers import LOCAL_RCS_FROM, LOCAL_SMS_FROM, LOCAL_WHATSAPP_FROM, TWILIO, FakeProviders
from shared.adapters.senders.base import SenderNotConfigured
from shared.adapters.senders.http import HttpClient
from shared.adapters.senders.twilio import TwilioClient, http_client
from shared.errors import RetryableError
from shared.models.common import Channel, Provider
from shared.models.message import DeliveryStatus
from shared.models.outbound import WhatsAppTemplateMessage
from shared.outbound.delivery import DeliveryRejected, Rejection
from shared.settings import Settings, settings_from
from tests.unit.senders.support import Sleeps, image, job

TO = "+573001234567"
STATUS_CALLBACK = "https://hilo.example.co/webhooks/twilio/status"


@pytest.fixture
def twilio(settings: Settings, sleeps: Sleeps) -> TwilioClient:
    return TwilioClient.from_settings(settings, http=twilio_http(sleeps))


def twilio_http(sleeps: Sleeps, **options: float) -> HttpClient:
    return http_client(sleep=sleeps, jitter=lambda: 0.5, **options)


def form(fake: FakeProviders, index: int = -1) -> dict[str, list[str]]:
    body: dict[str, list[str]] = fake.requests[index].body
    return body


def test_an_sms_is_one_form_post_with_basic_auth(twilio: TwilioClient, fake: FakeProviders) -> None:
    # When
    accepted = twilio.send(job(Channel.SMS, TO, text="Tu pedido está listo"))
    # Then the exact request
    [request] = fake.requests
    assert request.path == f"/2010-04-01/Accounts/{fake.twilio_account_sid}/Messages.json"
    assert request.authorized
    assert request.auth_user == fake.twilio_account_sid
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.body == {
        "To": [TO],
        "From": [LOCAL_SMS_FROM],
        "Body": ["Tu pedido está listo"],
        "StatusCallback": [STATUS_CALLBACK],
    }
    # And Twilio's answer ("queued" at Twilio): out of Hilo's hands, so sent; the status callbacks move it on
    assert accepted.provider_message_id == request.response["sid"]
    assert accepted.provider_message_id.startswith("SM")
    assert len(accepted.provider_message_id) == 34
    assert request.response["status"] == "queued"
    assert accepted.status == DeliveryStatus.SENT


def test_whatsapp_and_rcs_carry_their_channel_prefix(twilio: TwilioClient, fake: FakeProviders) -> None:
    twilio.send(job(Channel.WHATSAPP, TO, provider=Provider.TWILIO, text="Hola"))
    twilio.send(job(Channel.RCS, TO, text="Hola"))
    whatsapp, rcs = form(fake, 0), form(fake, 1)
    assert (whatsapp["To"], whatsapp["From"]) == ([f"whatsapp:{TO}"], [f"whatsapp:{LOCAL_WHATSAPP_FROM}"])
    assert (rcs["To"], rcs["From"]) == ([f"rcs:{TO}"], [LOCAL_RCS_FROM])


def test_the_number_the_customer_wrote_to_is_the_sender(twilio: TwilioClient, fake: FakeProviders) -> None:
    twilio.send(job(Channel.WHATSAPP, TO, provider=Provider.TWILIO, sender="whatsapp:+15550001111", text="Hola"))
    assert form(fake)["From"] == ["whatsapp:+15550001111"]


def test_a_messaging_service_goes_as_messaging_service_sid(fake: FakeProviders, sleeps: Sleeps) -> None:
    service = "MG" + "ab" * 16
    settings = settings_from({**fake.environ(), "HILO_TWILIO_SMS_FROM": service})
    accepted = TwilioClient.from_settings(settings, http=twilio_http(sleeps)).send(job(Channel.SMS, TO))
    sent = form(fake)
    assert sent["MessagingServiceSid"] == [service]
    assert "From" not in sent
    assert "StatusCallback" not in sent  # no HILO_PUBLIC_URL: the Messaging Service's own callback applies
    assert fake.requests[0].response["status"] == "accepted"
    assert accepted.status == DeliveryStatus.SENT


def test_media_go_as_repeated_media_urls_on_sms(twilio: TwilioClient, fake: FakeProviders) -> None:
    twilio.send(job(Channel.SMS, TO, text="Fotos", media=(image("https://a.co/1.jpg"), image("https://a.co/2.jpg"))))
    assert form(fake)["MediaUrl"] == ["https://a.co/1.jpg", "https://a.co/2.jpg"]


def test_whatsapp_sends_one_medium_per_message_the_text_with_the_last(
    twilio: TwilioClient, fake: FakeProviders
) -> None:
    media = (image("https://a.co/1.jpg", caption="Antes"), image("https://a.co/2.jpg"))
    accepted = twilio.send(job(Channel.WHATSAPP, TO, provider=Provider.TWILIO, text="Así quedó", media=media))
    first, last = form(fake, 0), form(fake, 1)
    assert (first["Body"], first["MediaUrl"]) == (["Antes"], ["https://a.co/1.jpg"])
    assert (last["Body"], last["MediaUrl"]) == (["Así quedó"], ["https://a.co/2.jpg"])
    assert accepted.provider_message_id == fake.requests[1].response["sid"]


def test_a_template_named_by_its_content_sid_is_sent_as_content_variables(
    twilio: TwilioClient, fake: FakeProviders
) -> None:
    template = WhatsAppTemplateMessage(
        name="hx" + "0123456789abcdef" * 2, language="es_MX", parameters=("Ana", "sábado 7 de marzo")
    )
    twilio.send(job(Channel.WHATSAPP, TO, provider=Provider.TWILIO, whatsapp_template=template))
    sent = form(fake)
    assert sent["ContentSid"] == ["HX" + "0123456789abcdef" * 2]
    assert json.loads(sent["ContentVariables"][0]) == {"1": "Ana", "2": "sábado 7 de marzo"}
    assert "Body" not in sent


def test_a_template_name_is_mapped_to_its_content_sid(fake: FakeProviders, settings: Settings, sleeps: Sleeps) -> None:
    sid = "HX" + "f" * 32
    client = TwilioClient.from_settings(settings, http=twilio_http(sleeps), content_sids={"cita:es": sid})
    template = WhatsAppTemplateMessage(name="cita", language="es")
    client.send(job(Channel.WHATSAPP, TO, provider=Provider.TWILIO, whatsapp_template=template))
    assert form(fake)["ContentSid"] == [sid]
    assert "ContentVariables" not in form(fake)


def test_an_unmapped_template_is_a_configuration_to_fix_not_a_lost_message(twilio: TwilioClient) -> None:
    template = WhatsAppTemplateMessage(name="cita", language="es")
    with pytest.raises(RetryableError, match="No Twilio Content SID for the WhatsApp template 'cita'"):
        twilio.send(job(Channel.WHATSAPP, TO, provider=Provider.TWILIO, whatsapp_template=template))


@pytest.mark.parametrize(
    ("code", "message", "rejection"),
    [
        (21211, "The 'To' number +573001234567 is not a valid phone number.", Rejection.INVALID_ADDRESS),
        (21610, "Attempt to send to unsubscribed recipient", Rejection.UNSUBSCRIBED),
        (63016, "Failed to send freeform message because you are outside the allowed window.", Rejection.WINDOW_CLOSED),
        (21617, "The concatenated message body exceeds the 1600 character limit.", Rejection.CONTENT),
    ],
)
def test_permanent_refusals_are_classified(
    twilio: TwilioClient, fake: FakeProviders, code: int, message: str, rejection: Rejection
) -> None:
    fake.respond(TO, 400, {"code": code, "message": message, "more_info": "https://x", "status": 400})
    with pytest.raises(DeliveryRejected) as error:
        twilio.send(job(Channel.SMS, TO))
    assert (error.value.rejection, error.value.provider_code, error.value.reason) == (rejection, str(code), message)
    assert len(fake.requests) == 1


def test_an_invalid_number_as_the_fake_validates_it(twilio: TwilioClient) -> None:
    with pytest.raises(DeliveryRejected) as error:
        twilio.send(job(Channel.SMS, "+57 300"))
    assert error.value.rejection == Rejection.INVALID_ADDRESS
    assert error.value.provider_code == "21211"


def test_rate_limited_then_accepted_after_a_retry(twilio: TwilioClient, fake: FakeProviders, sleeps: Sleeps) -> None:
    fake.fail(TO, "rate_limited", provider=TWILIO, retry_after=1)
    accepted = twilio.send(job(Channel.SMS, TO))
    assert [request.status for request in fake.requests] == [429, 201]
    assert sleeps.waits == [1.0]
    assert accepted.provider_message_id == fake.requests[1].response["sid"]


def test_rate_limited_with_a_long_wait_is_retryable_without_sleeping(
    twilio: TwilioClient, fake: FakeProviders, sleeps: Sleeps
) -> None:
    fake.fail(TO, "rate_limited", provider=TWILIO, retry_after=120)
    with pytest.raises(RetryableError, match="asked to wait 120 s"):
        twilio.send(job(Channel.SMS, TO))
    assert sleeps.waits == []


def test_a_server_error_every_time_is_retryable(twilio: TwilioClient, fake: FakeProviders) -> None:
    fake.fail(TO, "server_error", times=-1)
    with pytest.raises(RetryableError, match="HTTP 500: Twilio error 20500"):
        twilio.send(job(Channel.SMS, TO))
    assert len(fake.requests) == 3


def test_wrong_credentials_are_retryable_and_never_quoted(fake: FakeProviders, sleeps: Sleeps) -> None:
    settings = settings_from({**fake.environ(), "HILO_TWILIO_AUTH_TOKEN": "wrong-token-123"})
    client = TwilioClient.from_settings(settings, http=twilio_http(sleeps))
    with pytest.raises(RetryableError) as error:
        client.send(job(Channel.SMS, TO))
    assert "Twilio error 20003" in str(error.value)
    assert "HILO_TWILIO_AUTH_TOKEN" in str(error.value)
    assert "wrong-token-123" not in str(error.value)
    assert fake.requests[0].status == 401
    assert not fake.requests[0].authorized
    assert len(fake.requests) == 1


def test_no_answer_in_time_is_retryable(fake: FakeProviders, settings: Settings, sleeps: Sleeps) -> None:
    fake.hang(TO, 2.0)
    client = TwilioClient.from_settings(settings, http=twilio_http(sleeps, timeout=0.2))
    with pytest.raises(RetryableError, match="did not answer in time"):
        client.send(job(Channel.SMS, TO))


def test_a_missing_sender_names_the_setting(fake: FakeProviders) -> None:
    environ = {key: value for key, value in fake.environ().items() if key != "HILO_TWILIO_SMS_FROM"}
    client = TwilioClient.from_settings(settings_from(environ))
    with pytest.raises(SenderNotConfigured, match="set HILO_TWILIO_SMS_FROM") as error:
        client.send(job(Channel.SMS, TO))
    assert error.value.settings == ("HILO_TWILIO_SMS_FROM",)
    assert fake.requests == []


def test_missing_credentials_are_named_not_shown() -> None:
    with pytest.raises(SenderNotConfigured, match="HILO_TWILIO_ACCOUNT_SID, HILO_TWILIO_AUTH_TOKEN"):
        TwilioClient.from_settings(settings_from({}))


def test_a_whatsapp_template_alone_cannot_go_by_sms(twilio: TwilioClient, fake: FakeProviders) -> None:
    template = WhatsAppTemplateMessage(name="cita", language="es")
    with pytest.raises(DeliveryRejected) as error:
        twilio.send(job(Channel.SMS, TO, whatsapp_template=template))
    assert error.value.rejection == Rejection.CONTENT
    assert fake.requests == []
