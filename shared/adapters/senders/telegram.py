"""Telegram Bot API: ``POST {api}/bot<token>/sendMessage`` (and ``sendPhoto``, ``sendDocument`` for media), JSON.

- ``sendMessage {"chat_id", "text"}``; buttons become an inline keyboard (``reply_markup``), one button per row, with
  ``callback_data`` = the button id, which comes back in the ``callback_query`` the webhook reads.
- Media by URL (or a Telegram ``file_id``): images with ``sendPhoto``, anything else with ``sendDocument``; a lone
  medium takes the text as its caption when it fits (1,024 characters).
- The answer ``{"ok": true, "result": {"message_id", "chat": {"id"}}}`` names the message ``<chat id>:<message id>``,
  the form the Telegram webhook gives inbound messages (message ids are unique per chat only).

The bot token is part of every URL, so no URL ever reaches an exception or a log line (``http.HttpClient``
guarantees it). Errors are ``{"ok": false, "error_code", "description", "parameters": {"retry_after"}}``. Telegram
has no sub-codes: ``shared.outbound.failure_codes`` reads ``<error_code>/<description>`` (``telegram_code``), and a
known permanent refusal is a ``DeliveryRejected``; anything else (a wrong token, flood control, a description not
known yet) is retried and then parked in SendDlq for a person.
"""

from __future__ import annotations

from typing import Any, Final

from shared.adapters.senders.base import media_kind, rejected_locally, require, secret, with_captions
from shared.adapters.senders.http import HttpClient, HttpResponse
from shared.errors import PermanentError, RetryableError
from shared.models.common import Channel, Provider
from shared.models.message import DeliveryStatus, MediaPart
from shared.models.outbound import ReplyButton, SendJob
from shared.outbound.delivery import Accepted, DeliveryRejected, Rejection
from shared.outbound.failure_codes import rejection_for, telegram_code
from shared.settings import Settings

PROVIDER: Final = "Telegram"
CAPTION_LIMIT: Final = 1024
CALLBACK_DATA_LIMIT: Final = 64  # bytes
_CAPTIONED: Final = frozenset({"image", "video", "audio", "document"})


def retry_after(response: HttpResponse) -> float | None:
    """Telegram's ``parameters.retry_after`` (seconds), else the ``Retry-After`` header."""
    body: Any = response.body if isinstance(response.body, dict) else {}
    parameters: Any = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    value = parameters.get("retry_after")
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    header = response.headers.get("retry-after", "")
    return float(header) if header.strip().isdigit() else None


def describe(response: HttpResponse) -> str:
    """Telegram's error code, for messages and logs."""
    body: Any = response.body if isinstance(response.body, dict) else {}
    code = body.get("error_code")
    return f"Telegram error {code}" if isinstance(code, int) else "no Telegram error code"


def http_client(**options: Any) -> HttpClient:
    """Telegram's ``HttpClient`` (``retry_after`` from the body); ``options`` as ``HttpClient`` takes them."""
    return HttpClient(PROVIDER, retry_after=retry_after, describe=describe, **options)


class TelegramClient:
    """Sends Telegram jobs through the bot's Bot API."""

    def __init__(
        self, *, bot_token: str, api_url: str = "https://api.telegram.org", http: HttpClient | None = None
    ) -> None:
        self._base = f"{api_url.rstrip('/')}/bot{bot_token}"
        self._http = http or http_client()

    @classmethod
    def from_settings(cls, settings: Settings, *, http: HttpClient | None = None) -> TelegramClient:
        """The client for the configured bot.

        Raises
        ------
        SenderNotConfigured
            ``HILO_TELEGRAM_BOT_TOKEN`` is missing.
        """
        require("Sending Telegram", HILO_TELEGRAM_BOT_TOKEN=settings.telegram_bot_token)
        return cls(bot_token=secret(settings.telegram_bot_token), api_url=settings.telegram_api_url, http=http)

    def send(self, job: SendJob) -> Accepted:
        """Send ``job``: media first (a lone one may carry the text), then the text; the keyboard on the last one.

        Raises
        ------
        DeliveryRejected
            Telegram refused the message for good (a code ``failure_codes`` knows), or a button id is over 64 bytes.
        RetryableError
            Flood control, Telegram unavailable, a wrong bot token, or an unknown error.
        """
        if job.channel != Channel.TELEGRAM:
            raise PermanentError(f"The Telegram Bot API does not send {job.channel} messages.")
        chat_id = _chat_id(job.to)
        media, text = with_captions(job.media, job.text, caption_limit=CAPTION_LIMIT, kinds=_CAPTIONED)
        calls = [_media_call(chat_id, item, caption) for item, caption in media]
        if text:
            calls.append(("sendMessage", {"chat_id": chat_id, "text": text}))
        if not calls:
            raise rejected_locally(PROVIDER, Rejection.CONTENT, "A WhatsApp template alone cannot go on Telegram.")
        if job.buttons:
            calls[-1][1]["reply_markup"] = _keyboard(job.buttons)
        accepted: Accepted | None = None
        for method, payload in calls:
            accepted = self._call(method, payload)
        assert accepted is not None  # calls is not empty
        return accepted

    def _call(self, method: str, payload: dict[str, Any]) -> Accepted:
        response = self._http.post_json(f"{self._base}/{method}", payload)
        body: Any = response.body if isinstance(response.body, dict) else {}
        if response.ok and body.get("ok") is True:
            return _accepted(method, response.status, body)
        code = body.get("error_code")
        description = body.get("description") if isinstance(body.get("description"), str) else ""
        status = code if isinstance(code, int) and not isinstance(code, bool) else response.status
        table_code = telegram_code(status, description)
        rejection = rejection_for(Provider.TELEGRAM, table_code) if status not in (401, 404) else None
        if rejection is None:
            hint = " (check HILO_TELEGRAM_BOT_TOKEN)" if status in (401, 404) else ""
            raise RetryableError(
                f"Telegram did not take the message: {method} error {status}{hint}, not a known permanent refusal."
            )
        raise DeliveryRejected(
            f"Telegram refused the message: {method} error {status} ({rejection})",
            rejection=rejection,
            provider_code=table_code,
            reason=description or f"HTTP {response.status}",
        )


def _chat_id(to: str) -> int | str:
    value = to.strip()
    return int(value) if value.lstrip("-").isdigit() else value


def _media_call(chat_id: int | str, media: MediaPart, caption: str | None) -> tuple[str, dict[str, Any]]:
    method, field = ("sendPhoto", "photo") if media_kind(media) == "image" else ("sendDocument", "document")
    payload: dict[str, Any] = {"chat_id": chat_id, field: media.url or media.provider_media_id}
    if caption:
        payload["caption"] = caption
    return method, payload


def _keyboard(buttons: tuple[ReplyButton, ...]) -> dict[str, Any]:
    for button in buttons:
        if len(button.id.encode()) > CALLBACK_DATA_LIMIT:
            raise rejected_locally(
                PROVIDER,
                Rejection.CONTENT,
                f"A Telegram button id (callback_data) takes at most {CALLBACK_DATA_LIMIT} bytes.",
            )
    return {"inline_keyboard": [[{"text": button.title, "callback_data": button.id}] for button in buttons]}


def _accepted(method: str, status: int, body: dict[str, Any]) -> Accepted:
    result: Any = body.get("result") if isinstance(body.get("result"), dict) else {}
    chat: Any = result.get("chat") if isinstance(result.get("chat"), dict) else {}
    message_id, chat_id = result.get("message_id"), chat.get("id")
    if not isinstance(message_id, int) or not isinstance(chat_id, int | str):
        raise RetryableError(f"Telegram answered {method} (HTTP {status}) without a message id.")
    return Accepted(provider_message_id=f"{chat_id}:{message_id}", status=DeliveryStatus.SENT)
