"""Twilio Programmable Messaging: SMS/MMS, WhatsApp and RCS through ``POST /2010-04-01/Accounts/{sid}/Messages.json``.

One form-encoded request per message, HTTP basic auth ``AccountSid:AuthToken``:

- ``To``: ``+E164`` for SMS, ``whatsapp:+E164`` for WhatsApp, ``rcs:+E164`` for RCS (RCS only, no silent SMS
  fallback by Twilio: Hilo falls back itself, on a channel the customer allows, and the status callbacks then name the
  channel the message really went on).
- ``From`` or ``MessagingServiceSid``: the job's ``sender`` (the number the customer wrote to), else
  ``HILO_TWILIO_SMS_FROM`` / ``HILO_TWILIO_WHATSAPP_FROM`` / ``HILO_TWILIO_RCS_FROM``; a value ``MG…`` is a
  Messaging Service and goes as ``MessagingServiceSid``.
- ``Body``, ``MediaUrl`` (repeated; WhatsApp takes one per message, so extra media go first as messages of their own),
  ``StatusCallback`` = ``{HILO_PUBLIC_URL}/webhooks/twilio/status`` when the public URL is set.
- An approved WhatsApp template is a Content Template: ``ContentSid`` + ``ContentVariables`` (``{"1": …, "2": …}``).
  Its SID is the template name when the name is one (``hx`` + 32 hex digits: template names are lower-case, so the
  SID is written in lower case), else looked up in ``content_sids`` by ``name:language`` then ``name``.
- Buttons are not sent: Twilio needs a Content Template for them, so the text must stand on its own.

Twilio's synchronous answer is ``queued`` (``accepted`` with a Messaging Service): queued *at Twilio*, which for Hilo
is ``sent`` (out of Hilo's hands; ``queued`` is a message still waiting in Hilo), and the status callbacks move it on
to delivered and read. Errors are ``{code, message, more_info, status}``: a code that
``shared.outbound.failure_codes`` knows as permanent is a ``DeliveryRejected``; any other answer (bad credentials,
throttling, a sender or account problem, a code not known yet) is retried and then parked in SendDlq for a person.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any, Final

from shared.adapters.senders.base import SenderNotConfigured, media_kind, rejected_locally, require, secret
from shared.adapters.senders.http import HttpClient, HttpResponse
from shared.errors import PermanentError, RetryableError
from shared.models.common import Channel, Provider
from shared.models.message import DeliveryStatus, MediaPart
from shared.models.outbound import SendJob, WhatsAppTemplateMessage
from shared.outbound.delivery import Accepted, DeliveryRejected, Rejection
from shared.outbound.failure_codes import rejection_for
from shared.settings import Settings

PROVIDER: Final = "Twilio"
API_VERSION: Final = "2010-04-01"
STATUS_CALLBACK_PATH: Final = "/webhooks/twilio/status"

_MESSAGING_SERVICE_RE: Final = re.compile(r"MG[0-9a-fA-F]{32}")
_CONTENT_SID_RE: Final = re.compile(r"hx[0-9a-f]{32}", re.IGNORECASE)
_PREFIX_RE: Final = re.compile(r"^(?:whatsapp|rcs|sms):", re.IGNORECASE)
_FROM_SETTING: Final = {
    Channel.SMS: "HILO_TWILIO_SMS_FROM",
    Channel.WHATSAPP: "HILO_TWILIO_WHATSAPP_FROM",
    Channel.RCS: "HILO_TWILIO_RCS_FROM",
}
_ADDRESS_PREFIX: Final = {Channel.SMS: "", Channel.WHATSAPP: "whatsapp:", Channel.RCS: "rcs:"}


def describe(response: HttpResponse) -> str:
    """Twilio's error code, for messages and logs (its text may quote the customer's number)."""
    code = _error(response)[0]
    return f"Twilio error {code}" if code is not None else "no Twilio error code"


def http_client(**options: Any) -> HttpClient:
    """Twilio's ``HttpClient``; ``options`` (``sleep``, ``timeout``...) as ``HttpClient`` takes them."""
    return HttpClient(PROVIDER, describe=describe, **options)


class TwilioClient:
    """Sends SMS, WhatsApp and RCS jobs through Twilio's Messages API."""

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        api_url: str = "https://api.twilio.com",
        senders: Mapping[Channel, str | None] | None = None,
        public_url: str | None = None,
        content_sids: Mapping[str, str] | None = None,
        http: HttpClient | None = None,
    ) -> None:
        self._url = f"{api_url.rstrip('/')}/{API_VERSION}/Accounts/{account_sid}/Messages.json"
        credentials = base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()
        self._headers = {"Authorization": f"Basic {credentials}"}
        self._senders = dict(senders or {})
        self._status_callback = f"{public_url.rstrip('/')}{STATUS_CALLBACK_PATH}" if public_url else None
        self._content_sids = dict(content_sids or {})
        self._http = http or http_client()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, http: HttpClient | None = None, content_sids: Mapping[str, str] | None = None
    ) -> TwilioClient:
        """The client for the configured account.

        Raises
        ------
        SenderNotConfigured
            ``HILO_TWILIO_ACCOUNT_SID`` or ``HILO_TWILIO_AUTH_TOKEN`` is missing.
        """
        require(
            "Sending through Twilio",
            HILO_TWILIO_ACCOUNT_SID=settings.twilio_account_sid,
            HILO_TWILIO_AUTH_TOKEN=settings.twilio_auth_token,
        )
        return cls(
            account_sid=settings.twilio_account_sid or "",
            auth_token=secret(settings.twilio_auth_token),
            api_url=settings.twilio_api_url,
            senders={
                Channel.SMS: settings.twilio_sms_from,
                Channel.WHATSAPP: settings.twilio_whatsapp_from,
                Channel.RCS: settings.twilio_rcs_from,
            },
            public_url=settings.public_url,
            content_sids=content_sids,
            http=http,
        )

    def send(self, job: SendJob) -> Accepted:
        """Send ``job``; the last request's Message SID is the message's provider id.

        Raises
        ------
        DeliveryRejected
            Twilio refused the message for good (a code ``failure_codes`` knows), or it has media without a URL.
        RetryableError
            Throttled, unavailable, bad credentials, no sender configured for the channel, or an unknown code.
        """
        if job.channel not in _ADDRESS_PREFIX:
            raise PermanentError(f"Twilio does not send {job.channel} messages.")
        sender = self._sender(job)
        to = _ADDRESS_PREFIX[job.channel] + _PREFIX_RE.sub("", job.to.strip())
        accepted: Accepted | None = None
        for content in self._contents(job):
            accepted = self._post([("To", to), sender, *content])
        assert accepted is not None  # a job always has text, media or a template
        return accepted

    def _sender(self, job: SendJob) -> tuple[str, str]:
        value = (job.sender or self._senders.get(job.channel) or "").strip()
        if not value:
            raise SenderNotConfigured(f"Sending {job.channel} through Twilio", (_FROM_SETTING[job.channel],))
        if _MESSAGING_SERVICE_RE.fullmatch(value):
            return ("MessagingServiceSid", value)
        return ("From", _ADDRESS_PREFIX[job.channel] + _PREFIX_RE.sub("", value))

    def _contents(self, job: SendJob) -> list[list[tuple[str, str]]]:
        """The content fields of each request, in order."""
        if job.whatsapp_template is not None and job.channel == Channel.WHATSAPP:
            return [self._template(job.whatsapp_template)]
        urls = [_media_url(media) for media in job.media]
        body = [("Body", job.text)] if job.text else []
        if not body and not urls:
            raise rejected_locally(
                PROVIDER, Rejection.CONTENT, f"A WhatsApp template alone cannot go on {job.channel}."
            )
        if job.channel != Channel.WHATSAPP or len(urls) <= 1:
            return [[*body, *(("MediaUrl", url) for url in urls)]]
        # WhatsApp carries one medium per message: the others go first, each with its own caption.
        extra = [
            [*([("Body", media.caption)] if media.caption else []), ("MediaUrl", url)]
            for media, url in zip(job.media[:-1], urls[:-1], strict=True)
        ]
        return [*extra, [*body, ("MediaUrl", urls[-1])]]

    def _template(self, template: WhatsAppTemplateMessage) -> list[tuple[str, str]]:
        sid = self._content_sid(template)
        fields = [("ContentSid", sid)]
        if template.parameters:
            variables = {str(index): value for index, value in enumerate(template.parameters, start=1)}
            fields.append(("ContentVariables", json.dumps(variables, ensure_ascii=False)))
        return fields

    def _content_sid(self, template: WhatsAppTemplateMessage) -> str:
        if _CONTENT_SID_RE.fullmatch(template.name):
            return "HX" + template.name[2:]
        sid = self._content_sids.get(f"{template.name}:{template.language}") or self._content_sids.get(template.name)
        if not sid:
            raise RetryableError(
                f"No Twilio Content SID for the WhatsApp template {template.name!r} ({template.language}): name the "
                "template by its Content SID (hx…) or map it (see docs/outbound.md, 'Twilio Content Templates')."
            )
        return sid

    def _post(self, fields: list[tuple[str, str]]) -> Accepted:
        if self._status_callback:
            fields = [*fields, ("StatusCallback", self._status_callback)]
        response = self._http.post_form(self._url, fields, headers=self._headers)
        if response.ok:
            return _accepted(response)
        raise _refusal(response)


def _media_url(media: MediaPart) -> str:
    if media.url is None:
        raise rejected_locally(
            PROVIDER, Rejection.CONTENT, f"Twilio sends media by URL; this {media_kind(media)} has only a media id."
        )
    return media.url


def _accepted(response: HttpResponse) -> Accepted:
    body = response.body if isinstance(response.body, dict) else {}
    sid = body.get("sid")
    if not isinstance(sid, str) or not sid:
        raise RetryableError(f"Twilio answered HTTP {response.status} without a Message SID.")
    # Twilio answers "queued" ("accepted" with a Messaging Service): queued at Twilio, which for Hilo is "sent", out
    # of Hilo's hands. Twilio's own queued/sending callbacks then change nothing; sent, delivered, read move it on.
    return Accepted(provider_message_id=sid, status=DeliveryStatus.SENT)


def _refusal(response: HttpResponse) -> Exception:
    code, message = _error(response)
    label = f"Twilio error {code}" if code is not None else f"HTTP {response.status}"
    rejection = rejection_for(Provider.TWILIO, code) if response.status not in (401, 403) else None
    if rejection is None:
        hint = " (check HILO_TWILIO_ACCOUNT_SID and HILO_TWILIO_AUTH_TOKEN)" if response.status in (401, 403) else ""
        return RetryableError(f"Twilio did not take the message: {label}{hint}, not a known permanent refusal.")
    return DeliveryRejected(
        f"Twilio refused the message: {label} ({rejection})",
        rejection=rejection,
        provider_code=str(code),
        reason=message or label,
    )


def _error(response: HttpResponse) -> tuple[int | None, str]:
    body: Any = response.body if isinstance(response.body, dict) else {}
    code = body.get("code")
    message = body.get("message")
    return (code if isinstance(code, int) and not isinstance(code, bool) else None), (
        message if isinstance(message, str) else ""
    )
