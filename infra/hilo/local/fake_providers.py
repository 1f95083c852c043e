"""One fake provider server: Twilio's Messages API, Meta's Graph API and Telegram's Bot API on 127.0.0.1.

Tests point ``HILO_TWILIO_API_URL``, ``HILO_META_GRAPH_URL`` and ``HILO_TELEGRAM_API_URL`` at it (``environ()`` gives
all of them, with matching credentials), and a person running ``hilo dev`` can do the same to watch Hilo send. It
speaks each provider's wire format, written from their documentation and apart from ``shared/adapters/senders`` (so a
mistake on one side is not silently repeated on the other):

- ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``: a form, HTTP basic auth ``AccountSid:AuthToken``; 201 with
  the Message resource (``sid`` ``SM…``/``MM…``, ``status`` ``queued``, or ``accepted`` with a Messaging Service).
- ``POST /{version}/{phone_number_id}/messages``: WhatsApp Cloud API JSON, ``Authorization: Bearer``; 200 with
  ``contacts`` and ``messages[{"id": "wamid…"}]``.
- ``POST /{version}/me/messages``: the Messenger/Instagram Send API, the Page token as Bearer or ``access_token``;
  200 with ``recipient_id`` and ``message_id`` (``m_…``).
- ``POST /bot<token>/sendMessage|sendPhoto|sendDocument``: JSON or form; 200 with ``{"ok": true, "result": …}``
  (``message_id`` counted per chat).

Wrong credentials get the provider's own answer (Twilio 401 code 20003, Graph 401 code 190, Telegram 401
"Unauthorized"); malformed requests get the provider's validation errors. Every request is recorded (``requests``,
``wait_for``) with its parsed body and its headers minus ``Authorization``; Telegram's token is cut from the
recorded path.

**Failures on purpose.** ``fail(to, kind, ...)`` makes the next ``times`` messages to ``to`` fail as the provider
really fails them: synchronously (an error answer) or, where the provider reports it later (WhatsApp's window and
undeliverable numbers, Twilio WhatsApp's window), accepted and then a ``failed`` status callback, when callbacks
are on (without callbacks such failures are answered synchronously, so they are never silent). ``respond`` scripts
any raw answer, ``hang`` an answer that comes too late. **Magic recipients** always fail, so a failure can be seen on
``hilo dev`` without code (the last four digits of a phone, PSID or chat id):

======  ==================  ===========================================================================
ends    kind                Twilio / WhatsApp Cloud API / Messenger·Instagram / Telegram
======  ==================  ===========================================================================
0000    ``invalid_number``  21211 / 131026 (later) / 100·2018001 / 400 chat not found
0001    ``not_on_channel``  63003 (later) / 131026 (later) / 551·1545041 / 403 user is deactivated
0002    ``window_closed``   63016 (later) / 131047 (later) / 10·2018278 / (no window: accepted)
0003    ``blocked``         21610 / 131026 (later) / 551·1545041 / 403 bot was blocked by the user
0004    ``rate_limited``    429 20429 / 400 130429 / 400 613 / 429 retry_after
0005    ``server_error``    500 20500 / 500 131000 / 500 2 / 500
======  ==================  ===========================================================================

**Status callbacks** (off by default; ``callbacks=StatusCallbacks(public_url)``): after accepting a message the fake
posts what the provider posts, signed as it signs it (``hilo.local.providers``): Twilio's form to the request's
``StatusCallback`` URL (``sent``, ``delivered``, and ``read`` on WhatsApp), Meta's ``statuses`` notification to
``{public_url}/webhooks/whatsapp`` (``sent``, ``delivered``, ``read``), or the ``failed`` status of a later failure.
"""

from __future__ import annotations

import base64
import itertools
import json
import queue
import re
import secrets
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from hilo.local.providers import meta_json, twilio_form

LOCAL_TWILIO_ACCOUNT_SID: Final = "AC10ca1000000000000000000000000000"
LOCAL_TWILIO_AUTH_TOKEN: Final = "local-twilio-auth-token"  # noqa: S105 - well-known local value
LOCAL_META_ACCESS_TOKEN: Final = "local-meta-access-token"  # noqa: S105 - well-known local value
LOCAL_META_PAGE_ACCESS_TOKEN: Final = "local-meta-page-access-token"  # noqa: S105 - well-known local value
LOCAL_META_APP_SECRET: Final = "local-meta-app-secret"  # noqa: S105 - well-known local value
LOCAL_WHATSAPP_PHONE_NUMBER_ID: Final = "100000000000001"
LOCAL_TELEGRAM_BOT_TOKEN: Final = "1000000001:local-telegram-bot-token"  # noqa: S105 - well-known local value
LOCAL_SMS_FROM: Final = "+15005550006"
LOCAL_WHATSAPP_FROM: Final = "+14155238886"
LOCAL_RCS_FROM: Final = "rcs:hilo_local_agent"

TWILIO, WHATSAPP, PAGES, TELEGRAM = "twilio", "whatsapp", "pages", "telegram"
PROVIDERS: Final = (TWILIO, WHATSAPP, PAGES, TELEGRAM)
KINDS: Final = ("invalid_number", "not_on_channel", "window_closed", "blocked", "rate_limited", "server_error")
#: The last four digits of a recipient that always fails, and how.
MAGIC_SUFFIXES: Final = {
    "0000": "invalid_number",
    "0001": "not_on_channel",
    "0002": "window_closed",
    "0003": "blocked",
    "0004": "rate_limited",
    "0005": "server_error",
}
_ALIASES: Final = {"not_on_whatsapp": "not_on_channel", "unsubscribed": "blocked"}

_TWILIO_PATH = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
_GRAPH_PATH = re.compile(r"^/(v[0-9]{1,3}\.[0-9])/([^/]+)/messages$")
_TELEGRAM_PATH = re.compile(r"^/bot([^/]+)/([A-Za-z]+)$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_MAX_BODY = 5 * 1024 * 1024


@dataclass(frozen=True)
class Recorded:
    """One request the fake received, and what it answered."""

    provider: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    #: A form as ``{name: [values]}`` (Twilio repeats ``MediaUrl``), a JSON body as the document.
    body: Any
    #: The credentials matched (basic, bearer or the token in the path).
    authorized: bool
    #: The basic-auth user name (Twilio's Account SID): not a secret, and what a test checks the client used.
    auth_user: str | None
    #: The recipient as the request names it (``whatsapp:+57…``, ``573…``, a PSID, a chat id).
    to: str | None
    status: int
    response: Any


@dataclass(frozen=True)
class StatusCallbacks:
    """Where and how the fake posts status callbacks after it accepts a message."""

    #: Hilo's public base URL (``HILO_PUBLIC_URL``): Meta's notifications go to ``{public_url}/webhooks/whatsapp``.
    public_url: str
    meta_app_secret: str = LOCAL_META_APP_SECRET
    #: The progress posted for an accepted message (Twilio adds ``read`` only on WhatsApp, as Twilio does).
    statuses: tuple[str, ...] = ("sent", "delivered", "read")
    #: Seconds before the first callback (the provider answers before it reports).
    delay: float = 0.05


@dataclass
class _Script:
    provider: str | None
    to: str
    remaining: int  # < 0: forever
    kind: str | None = None
    sync: bool | None = None
    retry_after: int = 1
    status: int | None = None
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class _Outcome:
    #: An error answer to send instead of accepting.
    answer: _Answer | None = None
    #: Accept, then report a ``failed`` status with this code.
    later: int | None = None
    #: Seconds to hold the answer back.
    delay: float = 0.0


@dataclass
class _Answer:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    #: Run after the answer is sent (status callbacks).
    after: Callable[[], None] | None = None


class FakeProviders:
    """The fake server. ``start()``/``stop()`` or ``with FakeProviders() as fake:``; ``fake.url`` is its base URL.

    Parameters
    ----------
    host, port : str, int
        Where to listen; port 0 picks a free one.
    twilio_account_sid, twilio_auth_token, meta_access_token, meta_page_access_token, whatsapp_phone_number_id,
    telegram_bot_token : str
        The credentials (and Cloud API phone number id) the fake accepts; local defaults otherwise.
    magic_recipients : bool
        Whether recipients ending 0000-0005 always fail (``MAGIC_SUFFIXES``).
    callbacks : StatusCallbacks, optional
        Post status callbacks after accepting messages; off when None.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        twilio_account_sid: str = LOCAL_TWILIO_ACCOUNT_SID,
        twilio_auth_token: str = LOCAL_TWILIO_AUTH_TOKEN,
        meta_access_token: str = LOCAL_META_ACCESS_TOKEN,
        meta_page_access_token: str = LOCAL_META_PAGE_ACCESS_TOKEN,
        whatsapp_phone_number_id: str = LOCAL_WHATSAPP_PHONE_NUMBER_ID,
        telegram_bot_token: str = LOCAL_TELEGRAM_BOT_TOKEN,
        magic_recipients: bool = True,
        callbacks: StatusCallbacks | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.twilio_account_sid = twilio_account_sid
        self.twilio_auth_token = twilio_auth_token
        self.meta_access_token = meta_access_token
        self.meta_page_access_token = meta_page_access_token
        self.whatsapp_phone_number_id = whatsapp_phone_number_id
        self.telegram_bot_token = telegram_bot_token
        self.magic_recipients = magic_recipients
        self.callbacks = callbacks
        self._lock = threading.Condition()
        self._requests: list[Recorded] = []
        self._scripts: list[_Script] = []
        self._chat_counters: dict[str, Iterator[int]] = {}
        self._callback_log: list[tuple[str, int | str]] = []
        self._callbacks: queue.Queue[tuple[str, bytes, dict[str, str]] | None] = queue.Queue()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []

    # ----------------------------------------------------------------------------------------- lifecycle

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the base URL of all three APIs."""
        if self._server is None:
            raise RuntimeError("the fake provider server is not started")
        return f"http://{self.host}:{self._server.server_address[1]}"

    def start(self) -> FakeProviders:
        """Listen and serve in background threads."""
        handler = _handler_for(self)
        self._server = ThreadingHTTPServer((self.host, self.port), handler)
        self._server.daemon_threads = True
        self._stopping.clear()
        self._threads = [
            threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-providers", daemon=True
            ),
            threading.Thread(target=self._post_callbacks, name="fake-providers-callbacks", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; answers still waiting (``hang``) are cut short."""
        self._stopping.set()
        self._callbacks.put(None)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._server = None

    def __enter__(self) -> FakeProviders:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def environ(self) -> dict[str, str]:
        """``HILO_*`` settings that point Hilo's senders at this fake, with the credentials it accepts."""
        return {
            "HILO_TWILIO_API_URL": self.url,
            "HILO_META_GRAPH_URL": self.url,
            "HILO_TELEGRAM_API_URL": self.url,
            "HILO_TWILIO_ACCOUNT_SID": self.twilio_account_sid,
            "HILO_TWILIO_AUTH_TOKEN": self.twilio_auth_token,
            "HILO_TWILIO_SMS_FROM": LOCAL_SMS_FROM,
            "HILO_TWILIO_WHATSAPP_FROM": LOCAL_WHATSAPP_FROM,
            "HILO_TWILIO_RCS_FROM": LOCAL_RCS_FROM,
            "HILO_META_ACCESS_TOKEN": self.meta_access_token,
            "HILO_WHATSAPP_PHONE_NUMBER_ID": self.whatsapp_phone_number_id,
            "HILO_META_PAGE_ACCESS_TOKEN": self.meta_page_access_token,
            "HILO_TELEGRAM_BOT_TOKEN": self.telegram_bot_token,
        }

    # ----------------------------------------------------------------------------------------- scripting

    def fail(
        self,
        to: str,
        kind: str,
        *,
        provider: str | None = None,
        times: int = 1,
        sync: bool | None = None,
        retry_after: int = 1,
    ) -> None:
        """Make the next ``times`` messages to ``to`` fail as ``provider`` (any, when None) fails them.

        Parameters
        ----------
        to : str
            The recipient, in any of its forms (``+573001234567``, ``whatsapp:+57…``, ``57…``, a PSID, a chat id).
        kind : str
            One of ``KINDS`` (``not_on_whatsapp`` and ``unsubscribed`` are accepted as aliases).
        provider : str, optional
            ``twilio``, ``whatsapp``, ``pages`` or ``telegram``.
        times : int
            How many messages fail; a negative number means every one.
        sync : bool, optional
            Force an error answer (True) or an accepted message and a later ``failed`` callback (False); by default
            as the provider does it.
        retry_after : int
            Seconds a ``rate_limited`` answer asks to wait (Telegram's ``retry_after``, Twilio's ``Retry-After``).
        """
        kind = _ALIASES.get(kind, kind)
        if kind not in KINDS:
            raise ValueError(f"unknown failure kind {kind!r}; one of {', '.join(KINDS)}")
        if provider is not None and provider not in PROVIDERS:
            raise ValueError(f"unknown provider {provider!r}; one of {', '.join(PROVIDERS)}")
        self._add(_Script(provider, _key(to), times, kind=kind, sync=sync, retry_after=retry_after))

    def respond(
        self,
        to: str,
        status: int,
        body: Any,
        *,
        provider: str | None = None,
        times: int = 1,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` messages to ``to`` with exactly ``status`` and ``body`` (JSON)."""
        self._add(_Script(provider, _key(to), times, status=status, body=body, headers=dict(headers or {})))

    def hang(self, to: str, seconds: float, *, provider: str | None = None, times: int = 1) -> None:
        """Answer the next ``times`` messages to ``to`` only after ``seconds`` (a provider that does not answer)."""
        self._add(_Script(provider, _key(to), times, delay=seconds))

    def clear(self) -> None:
        """Forget the recorded requests, callbacks and scripts."""
        with self._lock:
            self._requests.clear()
            self._scripts.clear()
            self._callback_log.clear()

    def _add(self, script: _Script) -> None:
        with self._lock:
            self._scripts.append(script)

    def _script_for(self, provider: str, to: str | None) -> _Script | None:
        if to is None:
            return None
        key = _key(to)
        with self._lock:
            for script in self._scripts:
                if script.to == key and script.provider in (None, provider) and script.remaining != 0:
                    script.remaining -= 1 if script.remaining > 0 else 0
                    return script
        if self.magic_recipients:
            kind = MAGIC_SUFFIXES.get(re.sub(r"[^0-9]", "", key)[-4:])
            if kind is not None:
                return _Script(provider, key, 1, kind=kind)
        return None

    # ----------------------------------------------------------------------------------------- records

    @property
    def requests(self) -> list[Recorded]:
        """Every request so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def wait_for(self, count: int, timeout: float = 5.0, provider: str | None = None) -> list[Recorded]:
        """Wait until ``count`` requests (of ``provider``, if given) arrived; return them, oldest first."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [item for item in self._requests if provider in (None, item.provider)]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(found)} of {count} requests arrived in {timeout} s")
                self._lock.wait(left)

    @property
    def callbacks_posted(self) -> list[tuple[str, int | str]]:
        """``(url, HTTP status or error name)`` of every status callback posted so far."""
        with self._lock:
            return list(self._callback_log)

    def wait_for_callbacks(self, count: int, timeout: float = 5.0) -> list[tuple[str, int | str]]:
        """Wait until ``count`` status callbacks were posted."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._callback_log) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._callback_log)} of {count} callbacks posted in {timeout} s")
                self._lock.wait(left)
            return list(self._callback_log)

    def _record(self, item: Recorded) -> None:
        with self._lock:
            self._requests.append(item)
            self._lock.notify_all()

    # ----------------------------------------------------------------------------------------- dispatch

    def handle(self, method: str, target: str, headers: Mapping[str, str], raw: bytes) -> _Answer:
        """Answer one request (the HTTP handler's only call)."""
        parts = urlsplit(target)
        path, query = parts.path, parse_qs(parts.query, keep_blank_values=True)
        twilio, graph, telegram = _TWILIO_PATH.match(path), _GRAPH_PATH.match(path), _TELEGRAM_PATH.match(path)
        if twilio is None and graph is None and telegram is None:
            return _Answer(404, {"message": f"No fake provider API at {path}"})
        if method != "POST":
            return _Answer(405, {"message": "The fake provider APIs take POST only"})
        body = _parse_body(raw, headers.get("content-type", ""))
        if twilio is not None:
            provider = TWILIO
            answer, recorded = self._twilio(twilio.group(1), headers, body)
        elif graph is not None:
            provider = PAGES if graph.group(2) == "me" else WHATSAPP
            answer, recorded = self._graph(provider, graph.group(2), headers, query, body)
        else:
            assert telegram is not None
            provider, path = TELEGRAM, f"/bot<token>/{telegram.group(2)}"
            answer, recorded = self._telegram(telegram.group(1), telegram.group(2), query, body)
        self._record(
            Recorded(
                provider=provider,
                method=method,
                path=path,
                query={k: v for k, v in query.items() if k != "access_token"},
                headers={k: v for k, v in headers.items() if k != "authorization"},
                body=body,
                authorized=recorded.authorized,
                auth_user=recorded.auth_user,
                to=recorded.to,
                status=answer.status,
                response=answer.body,
            )
        )
        return answer

    # ----------------------------------------------------------------------------------------- Twilio

    def _twilio(self, path_sid: str, headers: Mapping[str, str], body: Any) -> tuple[_Answer, _Auth]:
        user, password = _basic(headers.get("authorization"))
        to = _first(body, "To")
        auth = _Auth(user == self.twilio_account_sid and password == self.twilio_auth_token, user, to)
        if not auth.authorized:
            answer = _Answer(401, _twilio_error(20003, "Authenticate", 401))
            answer.headers["WWW-Authenticate"] = 'Basic realm="Twilio API"'
            return answer, auth
        if path_sid != self.twilio_account_sid:
            return _Answer(404, _twilio_error(20404, "The requested resource was not found", 404)), auth
        sender, service = _first(body, "From"), _first(body, "MessagingServiceSid")
        text, media, content = _first(body, "Body") or "", _all(body, "MediaUrl"), _first(body, "ContentSid")
        if not to:
            return _Answer(400, _twilio_error(21604, "A 'To' phone number is required.", 400)), auth
        if not sender and not service:
            return _Answer(400, _twilio_error(21603, "A 'From' phone number is required.", 400)), auth
        if not text and not media and not content:
            message = "A text message body or media urls must be specified."
            return _Answer(400, _twilio_error(21619, message, 400)), auth
        if len(text) > 1600:
            message = "The concatenated message body exceeds the 1600 character limit."
            return _Answer(400, _twilio_error(21617, message, 400)), auth
        channel, number = _twilio_address(to)
        if not _E164.match(number):
            return _Answer(400, _twilio_error(21211, f"The 'To' number {to} is not a valid phone number.", 400)), auth
        if sender and _twilio_address(sender)[0] != channel:
            message = "Invalid From and To pair. From and To should be of the same channel"
            return _Answer(400, _twilio_error(21910, message, 400)), auth
        outcome = self._outcome(TWILIO, to, channel)
        if outcome.answer is not None:
            return outcome.answer, auth
        if outcome.later is not None:
            progress: list[tuple[str, int | None]] = [("failed", outcome.later)]
        else:
            progress = [(status, None) for status in self._progress() if status != "read" or channel == "whatsapp"]
        sid = ("MM" if media else "SM") + secrets.token_hex(16)
        answer = self._twilio_accepted(sid, body, progress)
        answer.delay = outcome.delay
        return answer, auth

    def _twilio_accepted(self, sid: str, body: Any, progress: list[tuple[str, int | None]]) -> _Answer:
        to, sender, service = _first(body, "To") or "", _first(body, "From"), _first(body, "MessagingServiceSid")
        now = formatdate(usegmt=True)
        resource = {
            "account_sid": self.twilio_account_sid,
            "api_version": "2010-04-01",
            "body": _first(body, "Body") or "",
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender,
            "messaging_service_sid": service,
            "num_media": str(len(_all(body, "MediaUrl"))),
            "num_segments": "1",
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service and not sender else "queued",
            "subresource_uris": {"media": f"/2010-04-01/Accounts/{self.twilio_account_sid}/Messages/{sid}/Media.json"},
            "to": to,
            "uri": f"/2010-04-01/Accounts/{self.twilio_account_sid}/Messages/{sid}.json",
        }
        callback_url = _first(body, "StatusCallback")
        after = None
        if self.callbacks is not None and callback_url and progress:
            fields = {"to": to, "from": sender or LOCAL_SMS_FROM, "service": service}
            after = lambda: self._queue_twilio(callback_url, sid, fields, progress)  # noqa: E731
        return _Answer(201, resource, after=after)

    def _queue_twilio(
        self, url: str, sid: str, fields: Mapping[str, str | None], progress: list[tuple[str, int | None]]
    ) -> None:
        for status, error_code in progress:
            params = [
                ("SmsSid", sid),
                ("SmsStatus", status),
                ("MessageStatus", status),
                ("To", fields["to"] or ""),
                ("MessageSid", sid),
                ("AccountSid", self.twilio_account_sid),
                ("From", fields["from"] or ""),
                ("ApiVersion", "2010-04-01"),
            ]
            if fields["service"]:
                params.append(("MessagingServiceSid", fields["service"] or ""))
            if error_code is not None:
                params.append(("ErrorCode", str(error_code)))
            body, headers = twilio_form(url, params, self.twilio_auth_token)
            self._callbacks.put((url, body, headers))

    # ----------------------------------------------------------------------------------------- Graph

    def _graph(
        self, provider: str, node: str, headers: Mapping[str, str], query: Mapping[str, list[str]], body: Any
    ) -> tuple[_Answer, _Auth]:
        token = _bearer(headers.get("authorization")) or next(iter(query.get("access_token", [])), None)
        expected = self.meta_page_access_token if provider == PAGES else self.meta_access_token
        document = body if isinstance(body, dict) else {}
        to = _whatsapp_to(document) if provider == WHATSAPP else _page_to(document)
        auth = _Auth(token == expected, None, to)
        if not token:
            message = "An active access token must be used to query information about the current user."
            return _Answer(400, _graph_error(2500, message)), auth
        if not auth.authorized:
            return _Answer(401, _graph_error(190, "Invalid OAuth access token - Cannot parse access token")), auth
        if provider == WHATSAPP and node != self.whatsapp_phone_number_id:
            message = (
                f"Unsupported post request. Object with ID '{node}' does not exist, cannot be loaded due to missing "
                "permissions, or does not support this operation."
            )
            return _Answer(400, _graph_error(100, message, subcode=33)), auth
        invalid = _whatsapp_invalid(document) if provider == WHATSAPP else _page_invalid(document)
        if invalid is not None:
            return _Answer(400, _graph_error(100, invalid)), auth
        outcome = self._outcome(provider, to, "whatsapp" if provider == WHATSAPP else "messenger")
        if outcome.answer is not None:
            return outcome.answer, auth
        if provider == WHATSAPP:
            wamid = "wamid." + base64.urlsafe_b64encode(b"HBgM" + secrets.token_bytes(30)).decode().rstrip("=")
            progress: list[tuple[str, int | None]] = (
                [("failed", outcome.later)] if outcome.later is not None else self._ok_progress()
            )
            answer = self._whatsapp_accepted(wamid, document, progress)
        else:
            mid = "m_" + base64.urlsafe_b64encode(secrets.token_bytes(48)).decode().rstrip("=")
            answer = _Answer(200, {"recipient_id": to, "message_id": mid})
        answer.delay = outcome.delay
        return answer, auth

    def _whatsapp_accepted(
        self, wamid: str, document: Mapping[str, Any], progress: list[tuple[str, int | None]]
    ) -> _Answer:
        to = str(document.get("to", ""))
        wa_id = re.sub(r"[^0-9]", "", to)
        message: dict[str, Any] = {"id": wamid}
        if document.get("type") == "template":
            message["message_status"] = "accepted"
        body = {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": wa_id}], "messages": [message]}
        after = None
        if self.callbacks is not None and progress:
            callbacks = self.callbacks
            after = lambda: self._queue_meta(callbacks, wamid, wa_id, progress)  # noqa: E731
        return _Answer(200, body, after=after)

    def _queue_meta(
        self, callbacks: StatusCallbacks, wamid: str, wa_id: str, progress: list[tuple[str, int | None]]
    ) -> None:
        url = f"{callbacks.public_url.rstrip('/')}/webhooks/whatsapp"
        for status, error_code in progress:
            item: dict[str, Any] = {
                "id": wamid,
                "status": status,
                "timestamp": str(int(time.time())),
                "recipient_id": wa_id,
            }
            if error_code is not None:
                title, details = _META_ERRORS[error_code]
                item["errors"] = [
                    {"code": error_code, "title": title, "message": title, "error_data": {"details": details}}
                ]
            else:
                item["conversation"] = {"id": secrets.token_hex(16), "origin": {"type": "service"}}
                item["pricing"] = {"billable": True, "pricing_model": "CBP", "category": "service"}
            value = {
                "messaging_product": "whatsapp",
                "metadata": {"display_phone_number": "15550000000", "phone_number_id": self.whatsapp_phone_number_id},
                "statuses": [item],
            }
            document = {
                "object": "whatsapp_business_account",
                "entry": [{"id": "100000000000000", "changes": [{"value": value, "field": "messages"}]}],
            }
            body, headers = meta_json(document, callbacks.meta_app_secret)
            self._callbacks.put((url, body, headers))

    # ----------------------------------------------------------------------------------------- Telegram

    def _telegram(self, token: str, method: str, query: Mapping[str, list[str]], body: Any) -> tuple[_Answer, _Auth]:
        fields: dict[str, Any] = {name: values[0] for name, values in query.items()}
        if isinstance(body, dict):
            fields.update({name: value[0] if isinstance(value, list) else value for name, value in body.items()})
        chat = fields.get("chat_id")
        auth = _Auth(token == self.telegram_bot_token, None, str(chat) if chat is not None else None)
        if not auth.authorized:
            return _Answer(401, _telegram_error(401, "Unauthorized")), auth
        if method not in ("sendMessage", "sendPhoto", "sendDocument"):
            return _Answer(404, _telegram_error(404, "Not Found")), auth
        if chat is None or str(chat).strip() == "":
            return _Answer(400, _telegram_error(400, "Bad Request: chat_id is empty")), auth
        chat_text = str(chat).strip()
        if not re.fullmatch(r"-?[0-9]{1,20}|@[A-Za-z0-9_]{5,32}", chat_text):
            return _Answer(400, _telegram_error(400, "Bad Request: chat not found")), auth
        invalid = _telegram_invalid(method, fields)
        if invalid is not None:
            return _Answer(400, _telegram_error(400, invalid)), auth
        outcome = self._outcome(TELEGRAM, chat_text, "telegram")
        if outcome.answer is not None:
            return outcome.answer, auth
        with self._lock:
            counter = self._chat_counters.setdefault(chat_text, itertools.count(1))
            message_id = next(counter)
        chat_id: int | str = int(chat_text) if chat_text.lstrip("-").isdigit() else chat_text
        result: dict[str, Any] = {
            "message_id": message_id,
            "from": {
                "id": int(token.split(":", 1)[0]) if token.split(":", 1)[0].isdigit() else 1,
                "is_bot": True,
                "first_name": "Hilo",
                "username": "hilo_local_bot",
            },
            "chat": {"id": chat_id, "first_name": "Cliente", "type": "private"},
            "date": int(time.time()),
        }
        if method == "sendMessage":
            result["text"] = fields.get("text")
        elif method == "sendPhoto":
            result["photo"] = [{"file_id": "AgAC" + secrets.token_urlsafe(24), "width": 800, "height": 600}]
        else:
            result["document"] = {"file_id": "BQAC" + secrets.token_urlsafe(24), "file_name": "document"}
        if fields.get("caption"):
            result["caption"] = fields["caption"]
        if fields.get("reply_markup"):
            result["reply_markup"] = _json_field(fields["reply_markup"])
        return _Answer(200, {"ok": True, "result": result}, delay=outcome.delay), auth

    # ----------------------------------------------------------------------------------------- failures

    def _outcome(self, provider: str, to: str | None, channel: str) -> _Outcome:
        """What a scripted or magic recipient does to this message (nothing, for everyone else)."""
        script = self._script_for(provider, to)
        if script is None:
            return _Outcome()
        if script.status is not None:
            return _Outcome(answer=_Answer(script.status, script.body, dict(script.headers)), delay=script.delay)
        if script.kind is None:
            return _Outcome(delay=script.delay)
        later = _LATER.get((provider, script.kind)) if channel == "whatsapp" else None
        sync = script.sync if script.sync is not None else self.callbacks is None
        if later is not None and not sync:
            return _Outcome(later=later)
        build = _FAILURES[provider].get(script.kind)
        return _Outcome(answer=build(script)) if build is not None else _Outcome()

    def _progress(self) -> tuple[str, ...]:
        return self.callbacks.statuses if self.callbacks is not None else ()

    def _ok_progress(self) -> list[tuple[str, int | None]]:
        return [(status, None) for status in self._progress()]

    # ----------------------------------------------------------------------------------------- callbacks

    def _post_callbacks(self) -> None:
        while True:
            item = self._callbacks.get()
            if item is None or self._stopping.is_set():
                return
            url, body, headers = item
            if self.callbacks is not None and self._stopping.wait(self.callbacks.delay):
                return
            request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
            outcome: int | str
            try:
                with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - a URL we were given
                    outcome = response.status
            except urllib.error.HTTPError as error:
                outcome = error.code
            except (OSError, ValueError) as error:
                outcome = type(error).__name__
            with self._lock:
                self._callback_log.append((url, outcome))
                self._lock.notify_all()

    def _after(self, answer: _Answer) -> None:
        if answer.after is not None:
            answer.after()


# --------------------------------------------------------------------------------------------- failure bodies


def _twilio_error(code: int, message: str, status: int) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def _graph_error(code: int, message: str, *, subcode: int | None = None, details: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": code}
    if subcode is not None:
        error["error_subcode"] = subcode
    if details is not None:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    error["fbtrace_id"] = "A" + secrets.token_urlsafe(16)
    return {"error": error}


def _telegram_error(code: int, description: str, retry_after: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return body


#: Titles and details of the WhatsApp errors the fake reports, as Meta words them.
_META_ERRORS: Final = {
    131026: (
        "Message undeliverable",
        "Unable to deliver message. Reasons can include: the recipient phone number is "
        "not a WhatsApp phone number; the recipient has not accepted our new Terms of Service and Privacy "
        "Policy; the recipient is using an old WhatsApp version.",
    ),
    131047: (
        "Re-engagement message",
        "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
    ),
    130429: ("Rate limit hit", "Cloud API message throughput has been reached."),
    131000: ("Something went wrong", "Message failed to send due to an unknown error."),
}


def _meta_failure(code: int, status: int = 400) -> Callable[[_Script], _Answer]:
    title, details = _META_ERRORS[code]
    return lambda _script: _Answer(status, _graph_error(code, f"({'#'}{code}) {title}", details=details))


def _sync(
    status: int, body: Callable[[_Script], Any], headers: Callable[[_Script], dict[str, str]] | None = None
) -> Callable[[_Script], _Answer]:
    return lambda script: _Answer(status, body(script), headers(script) if headers is not None else {})


_FAILURES: Final[Mapping[str, Mapping[str, Callable[[_Script], _Answer]]]] = {
    TWILIO: {
        "invalid_number": _sync(
            400, lambda s: _twilio_error(21211, f"The 'To' number {_plus(s.to)} is not a valid phone number.", 400)
        ),
        "not_on_channel": _sync(400, lambda s: _twilio_error(63003, "Channel could not find To address", 400)),
        "window_closed": _sync(
            400,
            lambda s: _twilio_error(
                63016,
                "Failed to send freeform message because you are outside the allowed window. If you are using "
                "WhatsApp, please use a Message Template.",
                400,
            ),
        ),
        "blocked": _sync(400, lambda s: _twilio_error(21610, "Attempt to send to unsubscribed recipient", 400)),
        "rate_limited": _sync(
            429, lambda s: _twilio_error(20429, "Too Many Requests", 429), lambda s: {"Retry-After": str(s.retry_after)}
        ),
        "server_error": _sync(500, lambda s: _twilio_error(20500, "An internal server error has occurred", 500)),
    },
    WHATSAPP: {
        "invalid_number": _meta_failure(131026),
        "not_on_channel": _meta_failure(131026),
        "window_closed": _meta_failure(131047),
        "blocked": _meta_failure(131026),
        "rate_limited": _meta_failure(130429),
        "server_error": _meta_failure(131000, 500),
    },
    PAGES: {
        "invalid_number": _sync(400, lambda s: _graph_error(100, "(#100) No matching user found", subcode=2018001)),
        "not_on_channel": _sync(
            400, lambda s: _graph_error(551, "This person isn't available right now.", subcode=1545041)
        ),
        "window_closed": _sync(
            400,
            lambda s: _graph_error(
                10,
                "(#10) This message is sent outside of allowed window. Learn more about the new policy here: "
                "https://developers.facebook.com/docs/messenger-platform/policy-overview",
                subcode=2018278,
            ),
        ),
        "blocked": _sync(400, lambda s: _graph_error(551, "This person isn't available right now.", subcode=1545041)),
        "rate_limited": _sync(
            400, lambda s: _graph_error(613, "(#613) Calls to this api have exceeded the rate limit.")
        ),
        "server_error": _sync(
            500, lambda s: _graph_error(2, "An unexpected error has occurred. Please retry your request later.")
        ),
    },
    TELEGRAM: {
        "invalid_number": _sync(400, lambda s: _telegram_error(400, "Bad Request: chat not found")),
        "not_on_channel": _sync(403, lambda s: _telegram_error(403, "Forbidden: user is deactivated")),
        "blocked": _sync(403, lambda s: _telegram_error(403, "Forbidden: bot was blocked by the user")),
        "rate_limited": _sync(
            429, lambda s: _telegram_error(429, f"Too Many Requests: retry after {s.retry_after}", s.retry_after)
        ),
        "server_error": _sync(500, lambda s: _telegram_error(500, "Internal Server Error")),
    },
}
#: Failures the provider reports in a status callback rather than in its answer (WhatsApp on either provider).
_LATER: Final = {
    (TWILIO, "not_on_channel"): 63003,
    (TWILIO, "window_closed"): 63016,
    (WHATSAPP, "invalid_number"): 131026,
    (WHATSAPP, "not_on_channel"): 131026,
    (WHATSAPP, "window_closed"): 131047,
    (WHATSAPP, "blocked"): 131026,
}


# --------------------------------------------------------------------------------------------- request parsing


@dataclass(frozen=True)
class _Auth:
    authorized: bool
    auth_user: str | None
    to: str | None


def _parse_body(raw: bytes, content_type: str) -> Any:
    mime = content_type.split(";")[0].strip().lower()
    text = raw.decode("utf-8", errors="replace")
    if mime == "application/json":
        try:
            return json.loads(text) if text else None
        except ValueError:
            return None
    return parse_qs(text, keep_blank_values=True)


def _first(body: Any, name: str) -> str | None:
    values = body.get(name) if isinstance(body, dict) else None
    return values[0] if isinstance(values, list) and values else None


def _all(body: Any, name: str) -> list[str]:
    values = body.get(name) if isinstance(body, dict) else None
    return list(values) if isinstance(values, list) else []


def _plus(key: str) -> str:
    return f"+{key}" if key.isdigit() else key


def _key(to: str) -> str:
    """A recipient in comparable form: no channel prefix, no ``+``, no spaces."""
    return re.sub(r"^(?:whatsapp|rcs|sms):", "", to.strip(), flags=re.I).replace("+", "").replace(" ", "")


def _twilio_address(value: str) -> tuple[str, str]:
    prefix, _, rest = value.strip().partition(":")
    return (prefix.lower(), rest) if rest and prefix.lower() in ("whatsapp", "rcs") else ("sms", value.strip())


def _basic(header: str | None) -> tuple[str | None, str | None]:
    if not header or not header.lower().startswith("basic "):
        return None, None
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None, None
    return user, password


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def _whatsapp_to(document: Mapping[str, Any]) -> str | None:
    to = document.get("to")
    return str(to) if isinstance(to, str | int) else None


def _page_to(document: Mapping[str, Any]) -> str | None:
    recipient = document.get("recipient")
    value = recipient.get("id") if isinstance(recipient, dict) else None
    return str(value) if isinstance(value, str | int) else None


_WA_TYPES: Final = (
    "text",
    "image",
    "audio",
    "video",
    "document",
    "sticker",
    "interactive",
    "template",
    "location",
    "contacts",
    "reaction",
)


def _whatsapp_invalid(document: Mapping[str, Any]) -> str | None:
    if document.get("messaging_product") != "whatsapp":
        return "(#100) The parameter messaging_product is required."
    if not document.get("to"):
        return "(#100) The parameter to is required."
    kind = document.get("type", "text")
    if kind not in _WA_TYPES:
        return f'(#100) Param type must be one of {{{", ".join(_WA_TYPES).upper()}}} - got "{kind}".'
    content = document.get(kind)
    if not isinstance(content, dict):
        return f"(#100) The parameter {kind} is required."
    if kind == "text" and not content.get("body"):
        return "(#100) The parameter text['body'] is required."
    if kind in ("image", "audio", "video", "document", "sticker") and not (content.get("link") or content.get("id")):
        return f"(#100) Param {kind} must contain either 'id' or 'link'."
    if kind == "template" and not (content.get("name") and isinstance(content.get("language"), dict)):
        return "(#100) The parameter template['name'] and template['language'] are required."
    if kind == "interactive":
        buttons = (content.get("action") or {}).get("buttons") if isinstance(content.get("action"), dict) else None
        if not (content.get("body") or {}).get("text") or not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
            return "(#100) Invalid parameter: interactive button messages need a body text and 1 to 3 buttons."
    return None


def _page_invalid(document: Mapping[str, Any]) -> str | None:
    if _page_to(document) is None:
        return "(#100) The parameter recipient is required"
    message = document.get("message")
    if not isinstance(message, dict) and not document.get("sender_action"):
        return "(#100) Must send either message or state"
    if isinstance(message, dict) and not (message.get("text") or message.get("attachment")):
        return "(#100) Message cannot be empty, must provide valid attachment or text"
    return None


def _telegram_invalid(method: str, fields: Mapping[str, Any]) -> str | None:
    if method == "sendMessage":
        text = str(fields.get("text") or "")
        if not text.strip():
            return "Bad Request: message text is empty"
        if len(text) > 4096:
            return "Bad Request: message is too long"
    if method == "sendPhoto" and not fields.get("photo"):
        return "Bad Request: there is no photo in the request"
    if method == "sendDocument" and not fields.get("document"):
        return "Bad Request: there is no document in the request"
    if len(str(fields.get("caption") or "")) > 1024:
        return "Bad Request: message caption is too long"
    markup = _json_field(fields.get("reply_markup")) if fields.get("reply_markup") else None
    if markup is not None:
        rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
        if not isinstance(rows, list):
            return "Bad Request: can't parse reply keyboard markup JSON object"
        for row in rows:
            for button in row if isinstance(row, list) else []:
                data = button.get("callback_data") if isinstance(button, dict) else None
                if isinstance(data, str) and not 1 <= len(data.encode()) <= 64:
                    return "Bad Request: BUTTON_DATA_INVALID"
    return None


def _json_field(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


# --------------------------------------------------------------------------------------------- HTTP


def _handler_for(fake: FakeProviders) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeProviders/1"

        def _serve(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(min(length, _MAX_BODY)) if length > 0 else b""
            headers = {name.lower(): value for name, value in self.headers.items()}
            answer = fake.handle(self.command, self.path, headers, raw)
            if answer.delay > 0 and fake._stopping.wait(answer.delay):
                return
            payload = json.dumps(answer.body).encode() if answer.body is not None else b""
            try:
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
            except (BrokenPipeError, ConnectionResetError):
                return  # the client gave up (a timeout test)
            fake._after(answer)

        do_POST = do_GET = do_PUT = do_DELETE = _serve

        def log_message(self, format: str, *args: Any) -> None:
            return  # requests are recorded, not printed

    return Handler
