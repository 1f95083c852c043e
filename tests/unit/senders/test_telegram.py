"""Telegram's Bot API through the fake: methods, keyboards, ids like the webhook's, and the token kept secret."""

from __future__ import annotations

from typing import Any

import pytest

from hilo.local.fake_providers import TELEGRAM, FakeProviders
from shared.adapters.senders import telegram
from shared.adapters.senders.telegram import TelegramClient
from shared.errors import RetryableError
from shared.models.common import Channel
from shared.models.message import DeliveryStatus
from shared.outbound.delivery import DeliveryRejected, Rejection
from shared.settings import Settings, settings_from
from tests.unit.senders.support import Sleeps, buttons, image, job, pdf

CHAT = "987654321"


def bot_http(sleeps: Sleeps, **options: Any) -> Any:
    return telegram.http_client(sleep=sleeps, jitter=lambda: 0.5, **options)


@pytest.fixture
def bot(settings: Settings, sleeps: Sleeps) -> TelegramClient:
    return TelegramClient.from_settings(settings, http=bot_http(sleeps))


def test_a_text_with_buttons_is_send_message_with_an_inline_keyboard(bot: TelegramClient, fake: FakeProviders) -> None:
    accepted = bot.send(job(Channel.TELEGRAM, CHAT, text="¿Confirmas?", buttons=buttons(("si", "Sí"), ("no", "No"))))
    [request] = fake.requests
    assert request.path == "/bot<token>/sendMessage"
    assert request.authorized
    assert request.body == {
        "chat_id": 987654321,
        "text": "¿Confirmas?",
        "reply_markup": {
            "inline_keyboard": [[{"text": "Sí", "callback_data": "si"}], [{"text": "No", "callback_data": "no"}]]
        },
    }
    # The same form as the webhook's inbound ids: <chat id>:<message id>
    result = request.response["result"]
    assert accepted.provider_message_id == f"{result['chat']['id']}:{result['message_id']}"
    assert accepted.status == DeliveryStatus.SENT


def test_a_photo_with_a_short_text_is_one_send_photo(bot: TelegramClient, fake: FakeProviders) -> None:
    bot.send(job(Channel.TELEGRAM, CHAT, text="Así quedó", media=(image(),)))
    [request] = fake.requests
    assert request.path == "/bot<token>/sendPhoto"
    assert request.body == {"chat_id": 987654321, "photo": "https://cdn.tienda.co/tv.jpg", "caption": "Así quedó"}


def test_documents_then_the_text_each_a_message_of_its_own(bot: TelegramClient, fake: FakeProviders) -> None:
    first = bot.send(job(Channel.TELEGRAM, CHAT, text="x" * 1100, media=(pdf(),)))
    paths = [request.path for request in fake.requests]
    assert paths == ["/bot<token>/sendDocument", "/bot<token>/sendMessage"]
    assert fake.requests[0].body == {"chat_id": 987654321, "document": "https://cdn.tienda.co/factura.pdf"}
    assert first.provider_message_id == f"{CHAT}:{fake.requests[1].response['result']['message_id']}"


@pytest.mark.parametrize(
    ("kind", "rejection", "code"),
    [
        ("blocked", Rejection.UNSUBSCRIBED, "403/bot was blocked by the user"),
        ("invalid_number", Rejection.INVALID_ADDRESS, "400/chat not found"),
        ("not_on_channel", Rejection.INVALID_ADDRESS, "403/user is deactivated"),
    ],
)
def test_permanent_refusals_are_classified(
    bot: TelegramClient, fake: FakeProviders, kind: str, rejection: Rejection, code: str
) -> None:
    fake.fail(CHAT, kind, provider=TELEGRAM)
    with pytest.raises(DeliveryRejected) as error:
        bot.send(job(Channel.TELEGRAM, CHAT))
    assert error.value.rejection == rejection
    assert error.value.provider_code == code


def test_flood_control_waits_as_telegram_asks_then_sends(
    bot: TelegramClient, fake: FakeProviders, sleeps: Sleeps
) -> None:
    fake.fail(CHAT, "rate_limited", retry_after=2)
    accepted = bot.send(job(Channel.TELEGRAM, CHAT))
    assert [request.status for request in fake.requests] == [429, 200]
    assert sleeps.waits == [2.0]
    assert accepted.provider_message_id == f"{CHAT}:{fake.requests[1].response['result']['message_id']}"


def test_a_long_flood_wait_is_left_to_the_queue(bot: TelegramClient, fake: FakeProviders, sleeps: Sleeps) -> None:
    fake.fail(CHAT, "rate_limited", retry_after=35)
    with pytest.raises(RetryableError, match="asked to wait 35 s"):
        bot.send(job(Channel.TELEGRAM, CHAT))
    assert sleeps.waits == []
    assert len(fake.requests) == 1


def test_a_wrong_token_is_retryable_and_never_shown(fake: FakeProviders, sleeps: Sleeps) -> None:
    settings = settings_from({**fake.environ(), "HILO_TELEGRAM_BOT_TOKEN": "42:wrong-secret"})
    client = TelegramClient.from_settings(settings, http=bot_http(sleeps))
    with pytest.raises(RetryableError, match="error 401") as error:
        client.send(job(Channel.TELEGRAM, CHAT))
    assert "wrong-secret" not in str(error.value)
    assert "HILO_TELEGRAM_BOT_TOKEN" in str(error.value)
    assert "wrong-secret" not in fake.requests[0].path


def test_a_timeout_names_neither_the_url_nor_the_token(fake: FakeProviders, settings: Settings, sleeps: Sleeps) -> None:
    fake.hang(CHAT, 2.0)
    client = TelegramClient.from_settings(settings, http=bot_http(sleeps, timeout=0.2))
    with pytest.raises(RetryableError, match="did not answer in time") as error:
        client.send(job(Channel.TELEGRAM, CHAT))
    assert fake.telegram_bot_token not in str(error.value)
    assert fake.url not in str(error.value)


def test_a_button_id_longer_than_64_bytes_is_refused_before_sending(bot: TelegramClient, fake: FakeProviders) -> None:
    with pytest.raises(DeliveryRejected) as error:
        bot.send(job(Channel.TELEGRAM, CHAT, buttons=buttons(("x" * 65, "Largo"))))
    assert error.value.rejection == Rejection.CONTENT
    assert fake.requests == []
