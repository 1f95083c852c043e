"""Small helpers shared by the tests: real HTTP calls to a running local stack."""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(method: str, url: str, body: bytes | str | None = None, headers: dict[str, str] | None = None) -> HttpResult:
    """Send one request over real HTTP and return status, lower-cased headers and body (errors included)."""
    data = body.encode() if isinstance(body, str) else body
    request = urllib.request.Request(url, data=data, method=method, headers=headers or {})  # noqa: S310 - tests
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - local stack only
            return HttpResult(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return HttpResult(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


class QueueCollector:
    """Drains one queue of a running stack and keeps every body, so tests sharing the queue never steal each other's
    messages: each test waits for the bodies that match what it sent."""

    def __init__(self, sqs: Any, queue_url: str, consumer_sqs: Any | None = None) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.bodies: list[dict[str, Any]] = []
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        # A queue that a function of the stack consumes is not ours to drain: we would steal its messages. Then the
        # collector listens to what the consumer's poller receives instead (a botocore hook on its SQS client), so
        # tests still see every body exactly as it was enqueued, once per SQS message however often it is delivered.
        self.consumer_sqs = consumer_sqs
        if consumer_sqs is not None:
            consumer_sqs.meta.events.register("after-call.sqs.ReceiveMessage", self._received)

    def _received(self, parsed: Any, **_: Any) -> None:
        for message in parsed.get("Messages", []) if isinstance(parsed, dict) else []:
            self._keep(message)

    def _keep(self, message: dict[str, Any]) -> None:
        with self._lock:
            if message["MessageId"] in self._seen:
                return
            self._seen.add(message["MessageId"])
            body = json.loads(message["Body"])
            body["_attributes"] = message.get("Attributes", {})
            self.bodies.append(body)

    def drain(self) -> None:
        if self.consumer_sqs is not None:
            return  # the consumer receives; _received keeps what it gets
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0, AttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return
            for message in messages:
                self._keep(message)
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )

    def matching(self, **fields: Any) -> list[dict[str, Any]]:
        """Drain, then return the bodies whose top-level fields equal ``fields``."""
        self.drain()
        with self._lock:
            bodies = list(self.bodies)
        return [body for body in bodies if all(body.get(k) == v for k, v in fields.items())]

    def wait_for(self, count: int = 1, timeout: float = 10.0, **fields: Any) -> list[dict[str, Any]]:
        """Wait until at least ``count`` matching bodies arrived; return them all."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(**fields)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)


def whatsapp_text(api_url: str, app_secret: str, wa_id: str, text: str, at: int, name: str = "Ana María") -> None:
    """POST one WhatsApp text to a running stack's webhook, signed as Meta signs it (``at``: Meta's timestamp)."""
    from hilo.local import providers

    message = {"from": wa_id, "id": "wamid." + secrets.token_hex(12), "timestamp": str(at), "type": "text",
               "text": {"body": text}}  # fmt: skip
    value = {"messaging_product": "whatsapp", "metadata": {"display_phone_number": "5716017000",
             "phone_number_id": "1122334455"}, "contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
             "messages": [message]}  # fmt: skip
    document = {"object": "whatsapp_business_account",
                "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]}  # fmt: skip
    body, headers = providers.meta_json(document, app_secret)
    response = http("POST", f"{api_url}/webhooks/whatsapp", body, headers)
    assert response.status == 200, response.body


def poll_json(url: str, headers: dict[str, str], done: Callable[[Any], Any], timeout: float = 20.0) -> Any:
    """GET ``url`` until it answers 200 with a body for which ``done`` holds (asynchronous steps: ingest, merges)."""
    deadline = time.monotonic() + timeout
    while True:
        response = http("GET", url, headers=headers)
        if response.status == 200 and done(response.json()):
            return response.json()
        if time.monotonic() > deadline:
            raise AssertionError(f"GET {url} never got there: {response.status} {response.body[:300]!r}")
        time.sleep(0.3)
