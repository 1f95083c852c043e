"""The one HTTP helper every provider client uses: a POST with timeouts and a few careful retries.

Standard library only (``urllib.request``): no new runtime dependency, and nothing imported that a sender does not
use. What it guarantees:

- **Timeouts.** Every socket operation (connect, each read) waits at most ``timeout`` seconds (5 by default).
- **Retries only where nothing was sent twice.** Up to ``attempts`` tries (3) with exponential backoff and jitter,
  and only after an answer that says "not now" (429, 5xx) or a failure to connect (the request never reached the
  provider). A timeout or a dropped connection *after* the request went out is not retried here: the provider may
  have sent the message, so the error goes to SQS (``RetryableError``) instead of doubling the message at once.
- **Bounded waits.** A ``Retry-After`` (or the provider's own hint, e.g. Telegram's ``parameters.retry_after``) up to
  ``max_retry_after`` seconds is honoured; a longer one stops retrying at once, so the queue waits, not the Lambda.
- **4xx other than 429 are never retried**: they are returned for the client to classify.
- **No secrets in errors or logs.** URLs (Telegram's carries the bot token), headers and bodies never appear in an
  exception message or a log line; redirects are not followed (a redirect would carry the Authorization header
  elsewhere).

``sleep`` and ``jitter`` are injectable so tests never sleep for real.
"""

from __future__ import annotations

import http.client
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, Final
from urllib.parse import urlencode

from shared.errors import RetryableError
from shared.observability import logger

DEFAULT_TIMEOUT: Final = 5.0
DEFAULT_ATTEMPTS: Final = 3
DEFAULT_BACKOFF: Final = 0.25
#: A provider asking to wait longer than this is left to SQS's visibility timeout rather than a sleeping Lambda.
DEFAULT_MAX_RETRY_AFTER: Final = 3.0
#: Provider answers are small JSON documents; anything larger is read up to here and not parsed.
MAX_RESPONSE_BYTES: Final = 1024 * 1024
USER_AGENT: Final = "hilo-sender/1"


@dataclass(frozen=True)
class HttpResponse:
    """A provider's answer: the status, the parsed JSON body (None when empty or not JSON), lower-cased headers."""

    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """A 2xx answer."""
        return 200 <= self.status < 300


class ProviderUnavailable(RetryableError):
    """The provider said "not now" (429, 5xx, a long ``Retry-After``) or could not be reached: try again later."""

    code = "provider_unavailable"

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


#: Reads how long the provider asked us to wait, in seconds, from a 429/503 answer.
RetryAfter = Callable[[HttpResponse], float | None]
#: A short, secret-free summary of a provider's error body for exception messages (its error code, never its URL).
Describe = Callable[[HttpResponse], str]


def retry_after_header(response: HttpResponse) -> float | None:
    """The ``Retry-After`` header in seconds (RFC 9110 also allows an HTTP date; providers send seconds)."""
    value = response.headers.get("retry-after", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A provider API never redirects a POST; following one would replay the credentials to another URL.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class HttpClient:
    """POSTs forms or JSON to one provider, with the timeouts and retries described in the module docstring.

    Parameters
    ----------
    provider : str
        The provider's name, for error messages and logs ("Twilio", "WhatsApp Cloud API"...).
    timeout : float
        Seconds each socket operation may take.
    attempts : int
        Tries in all, for answers and failures that may be retried.
    backoff : float
        The first retry's wait before jitter; doubled for each further retry.
    max_retry_after : float
        The longest wait a provider may ask for and still be retried here.
    retry_after : RetryAfter
        How this provider says how long to wait (the ``Retry-After`` header by default).
    describe : Describe, optional
        A secret-free summary of an error body, added to ``ProviderUnavailable`` messages.
    sleep, jitter : callables
        ``time.sleep`` and ``random.random``, replaceable in tests.
    """

    def __init__(
        self,
        provider: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        attempts: int = DEFAULT_ATTEMPTS,
        backoff: float = DEFAULT_BACKOFF,
        max_retry_after: float = DEFAULT_MAX_RETRY_AFTER,
        retry_after: RetryAfter = retry_after_header,
        describe: Describe | None = None,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.provider = provider
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self.max_retry_after = max_retry_after
        self._retry_after = retry_after
        self._describe = describe
        self._sleep = sleep
        self._jitter = jitter
        self._opener = urllib.request.build_opener(_NoRedirects())

    def post_form(
        self, url: str, fields: Sequence[tuple[str, str]], *, headers: Mapping[str, str] | None = None
    ) -> HttpResponse:
        """POST ``application/x-www-form-urlencoded`` (a name may repeat, as Twilio's ``MediaUrl`` does)."""
        body = urlencode(list(fields)).encode()
        return self._post(url, body, "application/x-www-form-urlencoded", headers)

    def post_json(self, url: str, document: Any, *, headers: Mapping[str, str] | None = None) -> HttpResponse:
        """POST ``application/json`` (UTF-8, non-ASCII kept as is)."""
        body = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        return self._post(url, body, "application/json", headers)

    def _post(self, url: str, body: bytes, content_type: str, headers: Mapping[str, str] | None) -> HttpResponse:
        """Returns every 2xx and every 4xx but 429; raises ``RetryableError`` for the rest."""
        all_headers = {"Content-Type": content_type, "Accept": "application/json", "User-Agent": USER_AGENT}
        all_headers.update(headers or {})
        for attempt in range(1, self.attempts + 1):
            response = self._once(url, body, all_headers, attempt)
            if response is not None and 300 <= response.status < 400:
                raise ProviderUnavailable(
                    f"{self.provider} answered a redirect (HTTP {response.status}); check its API base URL setting.",
                    status=response.status,
                )
            if response is not None and not _transient(response.status):
                return response
            wait = self._wait(response, attempt)
            if attempt == self.attempts or wait is None:
                raise self._unavailable(response, attempt)
            logger.warning(
                "Provider not available; retrying",
                extra={
                    "provider": self.provider,
                    "status": response.status if response is not None else None,
                    "attempt": attempt,
                    "wait_s": round(wait, 3),
                },
            )
            self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _once(self, url: str, body: bytes, headers: Mapping[str, str], attempt: int) -> HttpResponse | None:
        """One request: its response, or None when the connection could not be made (nothing reached the provider)."""
        request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")  # noqa: S310
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                return _response(answer.status, answer.headers, answer.read(MAX_RESPONSE_BYTES))
        except urllib.error.HTTPError as error:
            with error:
                try:
                    payload = error.read(MAX_RESPONSE_BYTES)
                except OSError:
                    payload = b""
                return _response(error.code, error.headers, payload)
        except urllib.error.URLError as error:
            # urllib wraps failures to connect or to send the request in URLError: the provider got nothing.
            # ``from None``: the chained error would carry the request (and Telegram's token in its URL).
            if attempt == self.attempts:
                raise ProviderUnavailable(
                    f"Could not reach {self.provider} ({type(error.reason).__name__}) after {attempt} attempt(s)."
                ) from None
            return None
        except (OSError, http.client.HTTPException, ValueError) as error:
            # After the request went out (a read timeout, a reset, a malformed answer): the provider may have taken
            # the message, so it is not sent again from here.
            raise RetryableError(
                f"{self.provider} did not answer in time or dropped the connection ({type(error).__name__}); "
                "the message may or may not have been sent."
            ) from None

    def _wait(self, response: HttpResponse | None, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when the provider asked for longer than we wait here."""
        if response is not None:
            asked = self._retry_after(response)
            if asked is not None:
                return asked if asked <= self.max_retry_after else None
        exponential = self.backoff * 2.0 ** (attempt - 1)
        return exponential / 2 + self._jitter() * exponential / 2  # "equal jitter": never zero, never all at once

    def _unavailable(self, response: HttpResponse | None, attempt: int) -> RetryableError:
        if response is None:  # pragma: no cover - _once raises on the last failed connection itself
            return RetryableError(f"Could not reach {self.provider} after {attempt} attempt(s).")
        retry_after = self._retry_after(response)
        detail = f": {self._describe(response)}" if self._describe is not None else ""
        if retry_after is not None and retry_after > self.max_retry_after:
            message = f"{self.provider} asked to wait {retry_after:g} s (HTTP {response.status}{detail})"
        else:
            message = f"{self.provider} answered HTTP {response.status}{detail} after {attempt} attempt(s)"
        return ProviderUnavailable(f"{message}; try again later.", status=response.status, retry_after=retry_after)


def _transient(status: int) -> bool:
    return status == 429 or status >= 500


def _response(status: int, headers: Message | None, payload: bytes) -> HttpResponse:
    lowered = {name.lower(): value for name, value in (headers.items() if headers is not None else [])}
    return HttpResponse(status=status, body=_json(payload), headers=lowered)


def _json(payload: bytes) -> Any:
    if not payload or len(payload) >= MAX_RESPONSE_BYTES:
        return None
    try:
        return json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
