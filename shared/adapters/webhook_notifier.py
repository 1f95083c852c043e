"""Workflow ``notify`` webhooks: a signed JSON POST to a CRM (or any system) that may be called twice.

The engine emits ``Notify(key, payload, url=...)``; this adapter delivers it. The wire contract (docs/workflows.md):

- ``POST <url>``, body = the payload as compact UTF-8 JSON; headers ``Content-Type: application/json``,
  ``User-Agent: Hilo-Workflows/1``, ``Idempotency-Key: <key>`` and ``X-Hilo-Timestamp: <unix seconds>``.
- **Idempotency.** The key names the enrolment's step (``workflow:<enrolment>:<step>``). SQS redelivers a step whose
  call failed, and the call comes again with the same key, so the receiver must treat a key it has seen as done.
- **Signature** (when ``HILO_WEBHOOK_SECRET`` is set), as Stripe signs: ``X-Hilo-Signature: v1=<hex>``, the
  HMAC-SHA256 of ``"<timestamp>.<raw body>"`` with the secret. The receiver recomputes it over the raw bytes it got,
  compares in constant time and rejects a timestamp more than :data:`SIGNATURE_TOLERANCE` seconds from its own clock
  (so a captured request cannot be replayed later). The timestamp is the real wall clock, never the local twin's
  movable one: the receiver compares it with its own.
- **Answers.** 2xx: done. 429, 5xx or no connection: retried here (``shared.adapters.senders.http.HttpClient``:
  jittered backoff, a ``Retry-After`` up to :data:`MAX_RETRY_AFTER` s honoured), then ``RetryableError`` and SQS
  redelivers the step. A timeout after the request went out is not retried here (the receiver may be slow, not
  down): SQS redelivers it, with the same key. Any other 3xx or 4xx: ``WebhookRefused`` (permanent; redirects are
  never followed).

Errors and logs name the host and the status only: never the URL's path or query (which may carry a token), the
secret, a header or a body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

from pydantic import SecretStr

from shared.adapters.senders.http import HttpClient, ProviderUnavailable
from shared.errors import InvalidInput, PermanentError, RetryableError
from shared.workflows.language import _check_webhook_url

USER_AGENT: Final = "Hilo-Workflows/1"
SIGNATURE_VERSION: Final = "v1"
#: Seconds a receiver accepts between ``X-Hilo-Timestamp`` and its own clock (the documented verification recipe).
SIGNATURE_TOLERANCE: Final = 300
#: The longest ``Retry-After`` waited for here; a longer one goes back to SQS at once.
MAX_RETRY_AFTER: Final = 5.0
#: Idempotency keys are header values: visible ASCII, and short enough for any receiver's key column.
_KEY: Final = re.compile(r"^[\x21-\x7e]{1,255}$")


@dataclass(frozen=True)
class WebhookAnswer:
    """A 2xx answer: its status and its JSON body (None when empty or not JSON). Bodies are never logged."""

    status: int
    body: Any = None


class WebhookRefused(PermanentError):
    """The webhook cannot take this call, and calling again would not change that.

    ``status`` is the receiver's 3xx/4xx answer, or None when Hilo refused to call the URL at all (not https, or
    credentials in it). The caller records it on the step and goes on.
    """

    code = "webhook_refused"

    def __init__(self, message: str, *, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def encode_payload(payload: Mapping[str, Any]) -> bytes:
    """The request body: compact UTF-8 JSON, exactly as ``HttpClient.post_json`` encodes it (the bytes signed)."""
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """``v1=<hex HMAC-SHA256 of "<timestamp>.<body>">``, the value of ``X-Hilo-Signature``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


class WebhookNotifier:
    """Calls workflow webhooks, signed with ``secret`` when one is configured.

    Parameters
    ----------
    secret : str, SecretStr or None
        ``HILO_WEBHOOK_SECRET`` (the setting itself may be passed); None or empty sends unsigned calls (no
        ``X-Hilo-Signature``).
    timeout : float
        Seconds each socket operation may take.
    attempts : int
        Tries in all for 429, 5xx and failures to connect, before ``RetryableError``.
    sleep, jitter : callables
        ``time.sleep`` and ``random.random``, replaceable in tests.
    """

    def __init__(
        self,
        secret: str | SecretStr | None,
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        clear = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
        self._secret = SecretStr(clear) if clear else None  # kept wrapped: it never prints in a repr or a log
        self.timeout = timeout
        self.attempts = attempts
        self._sleep = sleep
        self._jitter = jitter

    def call(self, url: str, payload: Mapping[str, Any], key: str) -> WebhookAnswer:
        """POST ``payload`` to ``url`` with the idempotency ``key``.

        Parameters
        ----------
        url : str
            ``https://`` (plain ``http://`` only to ``localhost``/``127.0.0.1``), without credentials.
        payload : Mapping
            JSON-serialisable; sent as compact UTF-8 JSON.
        key : str
            The step's key (``Notify.key``): the same on every redelivery of the step.

        Returns
        -------
        WebhookAnswer
            The 2xx answer.

        Raises
        ------
        WebhookRefused
            The URL may not be called, or the receiver answered a 3xx or a 4xx other than 429.
        RetryableError
            429, 5xx, no connection or no answer in time, after the retries here: SQS redelivers the step.
        InvalidInput
            ``key`` is not a usable header value (a bug in the caller, not the webhook's fault).
        """
        host = _host(url)
        if not _KEY.match(key):
            raise InvalidInput("A webhook's idempotency key is 1-255 visible ASCII characters.")
        body = encode_payload(payload)
        timestamp = str(int(time.time()))
        headers = {"User-Agent": USER_AGENT, "Idempotency-Key": key, "X-Hilo-Timestamp": timestamp}
        if self._secret is not None:
            headers["X-Hilo-Signature"] = signature(self._secret.get_secret_value(), timestamp, body)
        client = HttpClient(
            f"Webhook {host}",
            timeout=self.timeout,
            attempts=self.attempts,
            max_retry_after=MAX_RETRY_AFTER,
            sleep=self._sleep,
            jitter=self._jitter,
        )
        try:
            # post_json encodes ``payload`` as encode_payload does, so the signature covers the bytes sent.
            response = client.post_json(url, payload, headers=headers)
        except ProviderUnavailable as error:
            if error.status is not None and 300 <= error.status < 400:
                raise WebhookRefused(
                    f"Webhook {host} answered a redirect (HTTP {error.status}), which is not followed; "
                    "point the workflow at the final URL.",
                    status=error.status,
                ) from None
            raise
        except RetryableError:
            # Sent, then no answer in time or a dropped connection: the receiver may have acted; the redelivery
            # carries the same Idempotency-Key.
            raise RetryableError(
                f"Webhook {host} did not answer within {self.timeout:g} s or dropped the connection; try again later."
            ) from None
        if not response.ok:
            raise WebhookRefused(f"Webhook {host} refused the call (HTTP {response.status}).", status=response.status)
        return WebhookAnswer(status=response.status, body=response.body)


def _host(url: str) -> str:
    """The host (and port) to name in messages, after the same check the workflow language makes."""
    try:
        _check_webhook_url(url)
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError as error:
        raise WebhookRefused(f"Hilo does not call this webhook URL: {error}.", status=None) from None
    if not host:
        raise WebhookRefused("Hilo does not call this webhook URL: it names no host.", status=None)
    return f"{host}:{port}" if port is not None else host
