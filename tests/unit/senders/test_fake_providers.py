"""The fake provider server itself: its scripted and magic failures, its provider-shaped answers, and its status
callbacks, which Hilo's own webhook code must verify and read."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from hilo.local.fake_providers import PAGES, TELEGRAM, TWILIO, WHATSAPP, FakeProviders, StatusCallbacks
from shared.adapters.senders import client_for
from shared.models.common import Channel, Provider
from shared.models.message import DeliveryStatus
from shared.providers import meta as meta_webhook
from shared.providers import twilio as twilio_webhook
from shared.settings import settings_from
from tests.helpers import HttpResult, http
from tests.unit.senders.support import job

TO = "+573005550123"


def twilio_post(fake: FakeProviders, to: str = TO, password: str | None = None) -> HttpResult:
    credentials = f"{fake.twilio_account_sid}:{password or fake.twilio_auth_token}".encode()
    return http(
        "POST",
        f"{fake.url}/2010-04-01/Accounts/{fake.twilio_account_sid}/Messages.json",
        f"To={to.replace('+', '%2B')}&From=%2B15005550006&Body=hola",
        {
            "Authorization": "Basic " + base64.b64encode(credentials).decode(),
            "Content-Type": "application/x-www-form-urlencoded",
        },
    )


def test_a_scripted_failure_fails_as_many_times_as_asked(fake: FakeProviders) -> None:
    fake.fail(TO, "invalid_number", provider=TWILIO, times=2)
    statuses = [twilio_post(fake).status for _ in range(3)]
    assert statuses == [400, 400, 201]
    assert fake.requests[0].response == {
        "code": 21211,
        "message": "The 'To' number +573005550123 is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211",
        "status": 400,
    }


def test_a_failure_for_one_provider_leaves_the_others_alone(fake: FakeProviders) -> None:
    fake.fail(TO, "blocked", provider=TELEGRAM, times=-1)
    assert twilio_post(fake).status == 201


@pytest.mark.parametrize(
    ("to", "status", "code"),
    [
        ("+573001230000", 400, 21211),
        ("+573001230003", 400, 21610),
        ("+573001230004", 429, 20429),
        ("+573001230005", 500, 20500),
    ],
)
def test_magic_recipients_always_fail(fake: FakeProviders, to: str, status: int, code: int) -> None:
    for _ in range(2):
        answer = twilio_post(fake, to)
        assert (answer.status, answer.json()["code"]) == (status, code)


def test_magic_recipients_can_be_turned_off() -> None:
    with FakeProviders(magic_recipients=False) as fake:
        assert twilio_post(fake, "+573001230000").status == 201


def test_unknown_kinds_and_providers_are_refused_at_once(fake: FakeProviders) -> None:
    with pytest.raises(ValueError, match="unknown failure kind 'lost'"):
        fake.fail(TO, "lost")
    with pytest.raises(ValueError, match="unknown provider 'sms'"):
        fake.fail(TO, "blocked", provider="sms")


def test_wrong_credentials_get_each_providers_own_answer(fake: FakeProviders) -> None:
    twilio = twilio_post(fake, password="nope")
    assert twilio.status == 401
    assert twilio.json()["code"] == 20003
    assert twilio.headers["www-authenticate"] == 'Basic realm="Twilio API"'
    graph = http(
        "POST",
        f"{fake.url}/v21.0/{fake.whatsapp_phone_number_id}/messages",
        json.dumps({"messaging_product": "whatsapp", "to": "573005550123", "type": "text", "text": {"body": "x"}}),
        {"Authorization": "Bearer nope", "Content-Type": "application/json"},
    )
    assert graph.status == 401
    assert graph.json()["error"]["code"] == 190
    assert graph.json()["error"]["type"] == "OAuthException"
    bot = http(
        "POST", f"{fake.url}/bot1:nope/sendMessage", '{"chat_id": 1, "text": "x"}', {"Content-Type": "application/json"}
    )
    assert (bot.status, bot.json()) == (401, {"ok": False, "error_code": 401, "description": "Unauthorized"})


def test_records_keep_the_request_but_not_the_credentials(fake: FakeProviders) -> None:
    # Given a Telegram call (token in the path) and a Send API call with the token as a query parameter
    http(
        "POST",
        f"{fake.url}/bot{fake.telegram_bot_token}/sendMessage",
        "chat_id=42&text=hola",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    http(
        "POST",
        f"{fake.url}/v21.0/me/messages?access_token={fake.meta_page_access_token}",
        '{"recipient": {"id": "4242"}, "message": {"text": "hola"}}',
        {"Content-Type": "application/json"},
    )
    # When
    telegram, pages = fake.wait_for(2)
    # Then
    assert (telegram.provider, telegram.path, telegram.body, telegram.to) == (
        TELEGRAM,
        "/bot<token>/sendMessage",
        {"chat_id": ["42"], "text": ["hola"]},
        "42",
    )
    assert telegram.response["result"]["message_id"] == 1
    assert pages.provider == PAGES
    assert pages.authorized
    assert pages.query == {}
    assert pages.response["message_id"].startswith("m_")
    for record in (telegram, pages):
        assert "authorization" not in record.headers
        assert fake.telegram_bot_token not in repr(record)
        assert fake.meta_page_access_token not in repr(record)


def test_wait_for_times_out_with_a_count(fake: FakeProviders) -> None:
    with pytest.raises(TimeoutError, match="0 of 1 requests arrived"):
        fake.wait_for(1, timeout=0.05)


# --------------------------------------------------------------------------------------------- status callbacks


class Receiver:
    """Hilo's side of the callbacks: a server that keeps every request as it came."""

    def __init__(self) -> None:
        self.received: list[tuple[str, dict[str, str], bytes]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                with receiver.arrived:
                    receiver.received.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    receiver.arrived.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def wait(self, count: int) -> list[tuple[str, dict[str, str], bytes]]:
        with self.arrived:
            assert self.arrived.wait_for(lambda: len(self.received) >= count, timeout=5), self.received
            return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.server.shutdown()
    receiver.server.server_close()


@pytest.fixture
def calling_fake(receiver: Receiver) -> Iterator[FakeProviders]:
    with FakeProviders(callbacks=StatusCallbacks(public_url=receiver.url, delay=0)) as fake:
        yield fake


def twilio_statuses(receiver: Receiver, count: int, token: str) -> list[Any]:
    envelopes: list[Any] = []
    for path, headers, body in receiver.wait(count):
        url = receiver.url + path
        params, is_json = twilio_webhook.parse_params(body, headers["content-type"])
        twilio_webhook.verify_signature(
            url=url, params=params, body=body, is_json=is_json, signature=headers["x-twilio-signature"], token=token
        )
        normalized = twilio_webhook.normalize_status(params, correlation_id="c", now=datetime.now(UTC))
        envelopes.extend(normalized.statuses)
    return envelopes


def whatsapp_statuses(receiver: Receiver, count: int, secret: str) -> list[Any]:
    envelopes: list[Any] = []
    for path, headers, body in receiver.wait(count):
        assert path == "/webhooks/whatsapp"
        meta_webhook.verify_signature(body, headers["x-hub-signature-256"], secret)
        notification = meta_webhook.parse_notification(body)
        normalized = meta_webhook.normalize(
            notification, channel=Channel.WHATSAPP, correlation_id="c", received_at=datetime.now(UTC)
        )
        assert normalized.rejected == ()
        envelopes.extend(normalized.statuses)
    return envelopes


def test_twilio_callbacks_are_signed_and_read_by_hilos_webhook(calling_fake: FakeProviders, receiver: Receiver) -> None:
    # Given Hilo's Twilio client with its public URL at the receiver
    settings = settings_from({**calling_fake.environ(), "HILO_PUBLIC_URL": receiver.url})
    # When a WhatsApp message goes through Twilio
    accepted = client_for(Provider.TWILIO, settings).send(job(Channel.WHATSAPP, TO, provider=Provider.TWILIO))
    # Then sent, delivered and read come back, signed with the Auth Token, for that Message SID
    envelopes = twilio_statuses(receiver, 3, calling_fake.twilio_auth_token)
    assert [envelope.status for envelope in envelopes] == [
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.READ,
    ]
    assert {envelope.provider_message_id for envelope in envelopes} == {accepted.provider_message_id}
    assert {envelope.channel for envelope in envelopes} == {Channel.WHATSAPP}
    assert all(path == "/webhooks/twilio/status" for path, _, _ in receiver.received)


def test_a_twilio_whatsapp_window_failure_comes_later_as_a_failed_callback(
    calling_fake: FakeProviders, receiver: Receiver
) -> None:
    settings = settings_from({**calling_fake.environ(), "HILO_PUBLIC_URL": receiver.url})
    calling_fake.fail(TO, "window_closed")
    accepted = client_for(Provider.TWILIO, settings).send(job(Channel.WHATSAPP, TO, provider=Provider.TWILIO))
    [envelope] = twilio_statuses(receiver, 1, calling_fake.twilio_auth_token)
    assert (envelope.provider_message_id, envelope.status, envelope.error_code) == (
        accepted.provider_message_id,
        DeliveryStatus.FAILED,
        "63016",
    )


def test_whatsapp_statuses_are_signed_and_read_by_hilos_webhook(
    calling_fake: FakeProviders, receiver: Receiver
) -> None:
    accepted = client_for(Provider.META, settings_from(calling_fake.environ())).send(job(Channel.WHATSAPP, TO))
    envelopes = whatsapp_statuses(receiver, 3, "local-meta-app-secret")
    assert [envelope.status for envelope in envelopes] == [
        DeliveryStatus.SENT,
        DeliveryStatus.DELIVERED,
        DeliveryStatus.READ,
    ]
    assert {envelope.provider_message_id for envelope in envelopes} == {accepted.provider_message_id}
    assert envelopes[0].recipient.value == TO


def test_an_undeliverable_whatsapp_number_is_accepted_then_fails_with_131026(
    calling_fake: FakeProviders, receiver: Receiver
) -> None:
    calling_fake.fail(TO, "not_on_whatsapp", provider=WHATSAPP)
    accepted = client_for(Provider.META, settings_from(calling_fake.environ())).send(job(Channel.WHATSAPP, TO))
    [envelope] = whatsapp_statuses(receiver, 1, "local-meta-app-secret")
    assert (envelope.provider_message_id, envelope.status, envelope.error_code) == (
        accepted.provider_message_id,
        DeliveryStatus.FAILED,
        "131026",
    )
    assert envelope.error_reason.startswith("Message undeliverable")
    assert calling_fake.wait_for_callbacks(1)[0][1] == 200
