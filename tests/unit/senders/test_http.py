"""The HTTP helper against a real local server: which answers are retried, how long it waits, what it never says."""

from __future__ import annotations

import base64
import socket
import time

import pytest

from hilo.local.fake_providers import TWILIO, FakeProviders
from shared.adapters.senders.http import HttpClient, ProviderUnavailable
from shared.errors import RetryableError
from tests.unit.senders.support import Sleeps, http

TO = "+573001112233"
ERROR_503 = {"code": 20503, "message": "Service Unavailable", "status": 503}


def twilio_url(fake: FakeProviders) -> str:
    return f"{fake.url}/2010-04-01/Accounts/{fake.twilio_account_sid}/Messages.json"


def post(client: HttpClient, fake: FakeProviders, to: str = TO) -> int:
    token = base64.b64encode(f"{fake.twilio_account_sid}:{fake.twilio_auth_token}".encode()).decode()
    fields = [("To", to), ("From", "+15005550006"), ("Body", "hola")]
    return client.post_form(twilio_url(fake), fields, headers={"Authorization": f"Basic {token}"}).status


def test_a_5xx_is_retried_with_growing_waits_and_then_succeeds(fake: FakeProviders, sleeps: Sleeps) -> None:
    # Given a provider that fails twice with 503
    fake.respond(TO, 503, ERROR_503, provider=TWILIO, times=2)
    client = http("Twilio", sleeps, backoff=0.2)
    # When
    status = post(client, fake)
    # Then the third attempt went through, after two growing waits (equal jitter: between half and all of 0.2, 0.4)
    assert status == 201
    assert len(fake.requests) == 3
    assert sleeps.waits == pytest.approx([0.15, 0.3])


def test_a_5xx_every_time_is_retryable_after_the_last_attempt(fake: FakeProviders, sleeps: Sleeps) -> None:
    fake.respond(TO, 500, {"code": 20500, "message": "An internal server error has occurred"}, times=-1)
    with pytest.raises(ProviderUnavailable, match=r"Twilio answered HTTP 500: Twilio error 20500 after 3") as error:
        post(http("Twilio", sleeps, describe=lambda r: f"Twilio error {r.body['code']}"), fake)
    assert error.value.status == 500
    assert len(fake.requests) == 3
    assert len(sleeps.waits) == 2


def test_a_short_retry_after_is_honoured(fake: FakeProviders, sleeps: Sleeps) -> None:
    fake.respond(TO, 429, {"code": 20429, "message": "Too Many Requests"}, headers={"Retry-After": "2"})
    assert post(http("Twilio", sleeps), fake) == 201
    assert sleeps.waits == [2.0]


def test_a_long_retry_after_stops_at_once_so_the_queue_waits_not_the_function(
    fake: FakeProviders, sleeps: Sleeps
) -> None:
    fake.respond(TO, 429, {"code": 20429, "message": "Too Many Requests"}, headers={"Retry-After": "60"})
    with pytest.raises(ProviderUnavailable, match="asked to wait 60 s") as error:
        post(http("Twilio", sleeps), fake)
    assert error.value.retry_after == 60
    assert sleeps.waits == []
    assert len(fake.requests) == 1


def test_a_4xx_is_returned_once_never_retried(fake: FakeProviders, sleeps: Sleeps) -> None:
    fake.respond(TO, 400, {"code": 21211, "message": "The 'To' number is not a valid phone number."})
    assert post(http("Twilio", sleeps), fake) == 400
    assert len(fake.requests) == 1
    assert sleeps.waits == []


def test_a_provider_that_does_not_answer_in_time_is_not_asked_again(fake: FakeProviders, sleeps: Sleeps) -> None:
    # Given a provider that answers after 2 s, and a client that waits 0.3 s
    fake.hang(TO, 2.0)
    client = http("Twilio", sleeps, timeout=0.3)
    started = time.monotonic()
    # When / Then: the message may have left, so it is not sent again here; SQS retries it later
    with pytest.raises(RetryableError, match="did not answer in time") as error:
        post(client, fake)
    assert time.monotonic() - started < 1.5
    assert len(fake.requests) == 1
    assert "may or may not have been sent" in str(error.value)


def test_a_refused_connection_is_retried_then_retryable(sleeps: Sleeps) -> None:
    # Given a port nobody listens on
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = http("Telegram", sleeps)
    url = f"http://127.0.0.1:{port}/bot123:very-secret-token/sendMessage"
    # When / Then: three attempts, and neither the URL nor the token in the error
    with pytest.raises(RetryableError, match=r"Could not reach Telegram \(ConnectionRefusedError\) after 3") as error:
        client.post_json(url, {"chat_id": 1, "text": "hola"})
    assert len(sleeps.waits) == 2
    assert "very-secret-token" not in str(error.value)
    assert error.value.__cause__ is None
    assert error.value.__suppress_context__


def test_a_redirect_is_not_followed(fake: FakeProviders, sleeps: Sleeps) -> None:
    fake.respond(TO, 307, None, headers={"Location": "https://elsewhere.example/steal"})
    with pytest.raises(ProviderUnavailable, match="redirect"):
        post(http("Twilio", sleeps), fake)
    assert len(fake.requests) == 1


def test_retry_logs_name_the_provider_and_status_but_no_url_or_credentials(
    fake: FakeProviders, sleeps: Sleeps, caplog: pytest.LogCaptureFixture
) -> None:
    fake.respond("1234567", 502, {"ok": False, "error_code": 502, "description": "Bad Gateway"})
    client = http("Telegram", sleeps)
    url = f"{fake.url}/bot{fake.telegram_bot_token}/sendMessage"
    assert client.post_json(url, {"chat_id": 1234567, "text": "hola"}).status == 200
    [record] = [record for record in caplog.records if record.getMessage() == "Provider not available; retrying"]
    assert (record.provider, record.status, record.attempt) == ("Telegram", 502, 1)  # type: ignore[attr-defined]
    everything = repr(record.__dict__)
    assert fake.telegram_bot_token not in everything
    assert "/bot" not in everything
