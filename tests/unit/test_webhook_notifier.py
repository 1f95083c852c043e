"""Workflow webhooks against a real CRM-like server on 127.0.0.1: headers, signature, retries, refusals, secrecy."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pydantic import SecretStr

from shared.adapters.webhook_notifier import USER_AGENT, WebhookAnswer, WebhookNotifier, WebhookRefused
from shared.errors import InvalidInput, PermanentError, RetryableError
from tests.fake_crm import Answer, Crm, running_crm

SECRET = "whsec-crm-4f9a1c"
KEY = "workflow:enr_01HX:notify-crm"
PAYLOAD = {"evento": "cita_confirmada", "nombre": "Ana María Núñez", "enrolment_id": "enr_01HX", "step_id": "n1"}


# ------------------------------------------------------------------------------------- the receiver's recipe


def verify(secret: str, headers: Mapping[str, str], body: bytes, *, now: float, tolerance: int = 300) -> bool:
    """The verification recipe documented for receivers (docs/workflows.md), with lower-cased header names."""
    timestamp = headers.get("x-hilo-timestamp", "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    offered = [part.strip()[3:] for part in headers.get("x-hilo-signature", "").split(",") if part.strip()[:3] == "v1="]
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


# ------------------------------------------------------------------------------------- a CRM on 127.0.0.1


@pytest.fixture(scope="module")
def crm_server() -> Iterator[Crm]:
    yield from running_crm()


@pytest.fixture
def crm(crm_server: Crm) -> Crm:
    crm_server.clear()
    return crm_server


class Sleeps:
    """The waits the notifier asks for, instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


def notifier(sleeps: Sleeps, secret: str | SecretStr | None = SECRET, **options: Any) -> WebhookNotifier:
    return WebhookNotifier(secret, sleep=sleeps, jitter=lambda: 0.5, **options)


# ------------------------------------------------------------------------------------- the contract


def test_a_call_is_signed_json_with_the_steps_idempotency_key(crm: Crm, sleeps: Sleeps) -> None:
    # When a notify step calls the CRM
    answer = notifier(sleeps).call(f"{crm.url}/hooks/hilo?tenant=tienda", PAYLOAD, KEY)
    # Then it went once, as compact UTF-8 JSON with Hilo's headers
    assert answer == WebhookAnswer(status=200, body={"ok": True})
    [request] = crm.received
    assert (request.method, request.path) == ("POST", "/hooks/hilo?tenant=tienda")
    assert request.body == json.dumps(PAYLOAD, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    assert "Ana María Núñez".encode() in request.body
    assert json.loads(request.body) == PAYLOAD
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"] == USER_AGENT == "Hilo-Workflows/1"
    assert request.headers["idempotency-key"] == KEY
    assert abs(int(request.headers["x-hilo-timestamp"]) - request.at) <= 2
    # And the signature verifies with the documented recipe, and only with the right secret, body and time
    assert request.headers["x-hilo-signature"].startswith("v1=")
    assert verify(SECRET, request.headers, request.body, now=request.at)
    assert not verify("another-secret", request.headers, request.body, now=request.at)
    assert not verify(SECRET, request.headers, request.body.replace(b"Ana", b"Eva"), now=request.at)
    assert not verify(SECRET, request.headers, request.body, now=request.at + 301)


def test_a_redelivered_step_calls_again_with_the_same_key(crm: Crm, sleeps: Sleeps) -> None:
    hook = notifier(sleeps)
    hook.call(f"{crm.url}/hooks/hilo", PAYLOAD, KEY)
    hook.call(f"{crm.url}/hooks/hilo", PAYLOAD, KEY)
    assert [r.headers["idempotency-key"] for r in crm.received] == [KEY, KEY]
    assert crm.received[0].body == crm.received[1].body


def test_the_setting_itself_may_be_passed_and_signs_the_same(crm: Crm, sleeps: Sleeps) -> None:
    # Given the notifier built from the setting (a SecretStr, as Settings holds HILO_WEBHOOK_SECRET)
    hook = notifier(sleeps, secret=SecretStr(SECRET))
    # When / Then: the signature verifies with the clear secret, and the notifier never shows it
    hook.call(f"{crm.url}/hooks/hilo", PAYLOAD, KEY)
    [request] = crm.received
    assert verify(SECRET, request.headers, request.body, now=request.at)
    assert SECRET not in repr(vars(hook))


def test_without_a_secret_the_call_is_unsigned(crm: Crm, sleeps: Sleeps) -> None:
    notifier(sleeps, secret="").call(f"{crm.url}/hooks/hilo", PAYLOAD, KEY)
    [request] = crm.received
    assert "x-hilo-signature" not in request.headers
    assert request.headers["idempotency-key"] == KEY


# ------------------------------------------------------------------------------------- retries


def test_a_503_then_200_is_one_success_after_one_retry(crm: Crm, sleeps: Sleeps) -> None:
    # Given a CRM that is briefly unavailable
    crm.answer(Answer(503, {"error": "maintenance"}))
    # When
    answer = notifier(sleeps).call(f"{crm.url}/hooks/hilo", PAYLOAD, KEY)
    # Then the second attempt answered, after one short jittered wait, with the same key and body
    assert answer.status == 200
    assert len(crm.received) == 2
    assert sleeps.waits == pytest.approx([0.1875])  # equal jitter of 0.25 s, jitter fixed at 0.5
    assert crm.received[0].headers["idempotency-key"] == crm.received[1].headers["idempotency-key"] == KEY
    assert crm.received[0].body == crm.received[1].body


def test_a_short_retry_after_is_honoured(crm: Crm, sleeps: Sleeps) -> None:
    crm.answer(Answer(429, {"error": "slow down"}, headers={"Retry-After": "4"}))
    assert notifier(sleeps).call(f"{crm.url}/hooks/hilo", PAYLOAD, KEY).status == 200
    assert sleeps.waits == [4.0]


def test_a_long_retry_after_goes_back_to_the_queue_at_once(crm: Crm, sleeps: Sleeps) -> None:
    crm.answer(Answer(429, {"error": "slow down"}, headers={"Retry-After": "30"}))
    with pytest.raises(RetryableError, match=rf"Webhook {crm.host} asked to wait 30 s \(HTTP 429\)"):
        notifier(sleeps).call(f"{crm.url}/hooks/hilo", PAYLOAD, KEY)
    assert len(crm.received) == 1
    assert sleeps.waits == []


def test_503_every_time_is_retryable_naming_host_and_status_never_url_or_secret(crm: Crm, sleeps: Sleeps) -> None:
    # Given a CRM down for longer than the retries here, and a URL carrying a token in its query
    crm.answer(*[Answer(503, {"error": "down"})] * 3)
    url = f"{crm.url}/hooks/hilo?token=crm-url-token-77"
    # When / Then: three attempts, then SQS's turn
    with pytest.raises(RetryableError) as raised:
        notifier(sleeps).call(url, PAYLOAD, KEY)
    assert len(crm.received) == 3
    assert len(sleeps.waits) == 2
    message = str(raised.value)
    assert message == f"Webhook {crm.host} answered HTTP 503 after 3 attempt(s); try again later."
    for secret_part in (SECRET, "crm-url-token-77", "token=", "/hooks/hilo", "Ana"):
        assert secret_part not in message
    assert raised.value.__cause__ is None


def test_a_receiver_that_does_not_answer_in_time_is_retryable(crm: Crm, sleeps: Sleeps) -> None:
    # Given a CRM that answers after 1 s, and a notifier that waits 0.2 s
    crm.answer(Answer(200, {"ok": True}, delay=1.0))
    started = time.monotonic()
    # When / Then: SQS redelivers the step (with the same key) rather than this call waiting on
    with pytest.raises(RetryableError, match=rf"^Webhook {crm.host} did not answer within 0.2 s") as raised:
        notifier(sleeps, timeout=0.2).call(f"{crm.url}/hooks/hilo?token=crm-url-token-77", PAYLOAD, KEY)
    assert time.monotonic() - started < 0.9
    assert len(crm.received) == 1
    assert SECRET not in str(raised.value)
    assert "crm-url-token-77" not in str(raised.value)


def test_a_receiver_nobody_listens_on_is_retried_then_retryable(sleeps: Sleeps) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RetryableError, match=rf"Could not reach Webhook 127.0.0.1:{port} \(ConnectionRefused"):
        notifier(sleeps).call(f"http://127.0.0.1:{port}/hooks?token=crm-url-token-77", PAYLOAD, KEY)
    assert len(sleeps.waits) == 2


# ------------------------------------------------------------------------------------- refusals


def test_a_400_is_refused_once_never_retried(crm: Crm, sleeps: Sleeps) -> None:
    crm.answer(Answer(400, {"error": "unknown field evento"}))
    with pytest.raises(WebhookRefused, match=rf"^Webhook {crm.host} refused the call \(HTTP 400\)\.$") as raised:
        notifier(sleeps).call(f"{crm.url}/hooks/hilo", PAYLOAD, KEY)
    assert raised.value.status == 400
    assert isinstance(raised.value, PermanentError)
    assert len(crm.received) == 1
    assert sleeps.waits == []


def test_a_redirect_is_refused_not_followed(crm: Crm, sleeps: Sleeps) -> None:
    crm.answer(Answer(301, None, headers={"Location": "https://elsewhere.example/steal"}))
    with pytest.raises(WebhookRefused, match="redirect") as raised:
        notifier(sleeps).call(f"{crm.url}/hooks/hilo", PAYLOAD, KEY)
    assert raised.value.status == 301
    assert len(crm.received) == 1


@pytest.mark.parametrize(
    "url",
    [
        "http://crm.tienda.co/hooks/hilo",  # plain http off this machine
        "https://user:pass@crm.tienda.co/hooks",  # credentials in the URL
        "ftp://crm.tienda.co/hooks",
        "/hooks/hilo",
    ],
)
def test_a_url_the_language_forbids_is_refused_before_calling(url: str, sleeps: Sleeps) -> None:
    with pytest.raises(WebhookRefused, match="Hilo does not call this webhook URL") as raised:
        notifier(sleeps).call(url, PAYLOAD, KEY)
    assert raised.value.status is None
    assert "pass" not in str(raised.value)
    assert sleeps.waits == []


def test_a_key_that_is_not_a_header_value_is_a_bug_not_a_call(crm: Crm, sleeps: Sleeps) -> None:
    with pytest.raises(InvalidInput, match="idempotency key"):
        notifier(sleeps).call(f"{crm.url}/hooks/hilo", PAYLOAD, "workflow:x\r\nX-Evil: 1")
    assert crm.received == []
