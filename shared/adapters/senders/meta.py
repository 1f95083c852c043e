"""Meta's Graph API: WhatsApp Cloud API messages, and the Messenger/Instagram Send API.

- **WhatsApp**: ``POST {graph}/{version}/{phone_number_id}/messages`` with ``Authorization: Bearer`` (a system-user
  token with ``whatsapp_business_messaging``), JSON ``{"messaging_product": "whatsapp", "recipient_type":
  "individual", "to": <digits>, "type": ...}``. ``to`` is the number without ``+``, as Meta's examples write it.
  Types: ``text`` (``preview_url`` when the text has a link), ``image``/``video``/``audio``/``document`` by ``link``
  (or a Cloud API media ``id``), ``interactive`` reply buttons (up to 3, the text as body), ``template``. The answer
  ``{"messages": [{"id": "wamid…"}]}`` names the message; its statuses arrive on the WhatsApp webhook.
- **Messenger / Instagram**: ``POST {graph}/{version}/me/messages`` with the Page access token, JSON
  ``{"recipient": {"id": <PSID or IGSID>}, "messaging_type": "RESPONSE", "message": {...}}``: ``text`` with
  ``quick_replies`` from the buttons, or one ``attachment`` by URL. The answer is ``{"recipient_id", "message_id"}``.
  The token goes in the ``Authorization`` header, which the Graph API accepts like the ``access_token`` query
  parameter of Meta's examples: a URL ends up in proxies' and tools' logs, a header does not.

Media go one per message (the text last, or as a lone medium's caption when it fits). Both APIs answer errors as
``{"error": {"message", "type", "code", "error_subcode", "error_data": {"details"}, "fbtrace_id"}}``. The code (with
its subcode, ``10/2018278``) is looked up in ``shared.outbound.failure_codes``: a known permanent refusal is a
``DeliveryRejected``; anything else (a token, permission, account or payment problem, a rate limit, a code not known
yet) is retried and then parked in SendDlq for a person. The ``type`` is never read: Meta calls nearly every error
``OAuthException``.

``MetaClient`` is the provider's one client (a sender function per provider): it hands WhatsApp jobs to
``WhatsAppCloudClient`` and Messenger/Instagram jobs to ``MetaPageClient``, each built on first use, so a deployment
without a Page token still sends WhatsApp.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from shared.adapters.senders.base import media_kind, rejected_locally, require, secret, with_captions
from shared.adapters.senders.http import HttpClient, HttpResponse
from shared.errors import PermanentError, RetryableError
from shared.models.common import Channel, Provider
from shared.models.message import DeliveryStatus, MediaPart
from shared.models.outbound import ReplyButton, SendJob, WhatsAppTemplateMessage
from shared.outbound.delivery import Accepted, DeliveryRejected, ProviderClient, Rejection
from shared.outbound.failure_codes import rejection_for
from shared.settings import Settings

WHATSAPP: Final = "WhatsApp Cloud API"
PAGES: Final = "Messenger Send API"
#: WhatsApp caps media captions and interactive bodies at 1,024 characters (a text message at 4,096).
WHATSAPP_CAPTION_LIMIT: Final = 1024
_CAPTIONED: Final = frozenset({"image", "video", "document"})
_LINK_RE: Final = re.compile(r"https?://\S", re.IGNORECASE)
_PAGE_ATTACHMENT: Final = {"image": "image", "video": "video", "audio": "audio", "document": "file"}


@dataclass(frozen=True)
class GraphError:
    """The ``error`` object of a Graph API answer."""

    code: int | None
    subcode: int | None
    message: str
    details: str
    fbtrace_id: str

    @classmethod
    def of(cls, response: HttpResponse) -> GraphError:
        """The error in ``response``; empty fields when the body is not Meta's error JSON."""
        body: Any = response.body if isinstance(response.body, dict) else {}
        error: Any = body.get("error") if isinstance(body.get("error"), dict) else {}
        data: Any = error.get("error_data") if isinstance(error.get("error_data"), dict) else {}
        return cls(
            code=_int(error.get("code")),
            subcode=_int(error.get("error_subcode")),
            message=_str(error.get("message")),
            details=_str(data.get("details")),
            fbtrace_id=_str(error.get("fbtrace_id")),
        )

    @property
    def table_code(self) -> str | None:
        """The code as ``shared.outbound.failure_codes`` writes it: ``131047``, or ``10/2018278`` with a subcode."""
        if self.code is None:
            return None
        return f"{self.code}/{self.subcode}" if self.subcode is not None else str(self.code)

    @property
    def label(self) -> str:
        """``Graph error 131047`` or ``Graph error 10/2018278``: safe for logs (no text, no recipient)."""
        if self.code is None:
            return "no Graph error code"
        return f"Graph error {self.code}" + (f"/{self.subcode}" if self.subcode is not None else "")


def describe(response: HttpResponse) -> str:
    """The Graph error code and subcode, for messages and logs."""
    return GraphError.of(response).label


def http_client(provider: str = WHATSAPP, **options: Any) -> HttpClient:
    """The Graph API's ``HttpClient``; ``options`` (``sleep``, ``timeout``...) as ``HttpClient`` takes them."""
    return HttpClient(provider, describe=describe, **options)


class WhatsAppCloudClient:
    """Sends WhatsApp jobs through Meta's Cloud API."""

    def __init__(
        self,
        *,
        access_token: str,
        phone_number_id: str,
        graph_url: str = "https://graph.facebook.com",
        version: str = "v21.0",
        http: HttpClient | None = None,
    ) -> None:
        self._url = f"{graph_url.rstrip('/')}/{version}/{phone_number_id}/messages"
        self._headers = {"Authorization": f"Bearer {access_token}"}
        self._http = http or http_client(WHATSAPP)

    @classmethod
    def from_settings(cls, settings: Settings, *, http: HttpClient | None = None) -> WhatsAppCloudClient:
        """The client for the configured business number.

        Raises
        ------
        SenderNotConfigured
            ``HILO_META_ACCESS_TOKEN`` or ``HILO_WHATSAPP_PHONE_NUMBER_ID`` is missing.
        """
        require(
            "Sending WhatsApp through Meta",
            HILO_META_ACCESS_TOKEN=settings.meta_access_token,
            HILO_WHATSAPP_PHONE_NUMBER_ID=settings.whatsapp_phone_number_id,
        )
        return cls(
            access_token=secret(settings.meta_access_token),
            phone_number_id=settings.whatsapp_phone_number_id or "",
            graph_url=settings.meta_graph_url,
            version=settings.meta_graph_version,
            http=http,
        )

    def send(self, job: SendJob) -> Accepted:
        """Send ``job``: the template when it has one (the window is closed), else its media and text.

        Raises
        ------
        DeliveryRejected
            Meta refused the message for good (a code ``failure_codes`` knows), or buttons come without a text.
        RetryableError
            Throttled, unavailable, a token, permission or account problem a person must fix, or an unknown code.
        """
        if job.channel != Channel.WHATSAPP:
            raise PermanentError(f"The WhatsApp Cloud API does not send {job.channel} messages.")
        base = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": job.to.strip().lstrip("+")}
        accepted: Accepted | None = None
        for message in _whatsapp_messages(job):
            accepted = self._post({**base, **message})
        assert accepted is not None  # a job always has text, media or a template
        return accepted

    def _post(self, document: dict[str, Any]) -> Accepted:
        response = self._http.post_json(self._url, document, headers=self._headers)
        if not response.ok:
            raise _refusal(WHATSAPP, response)
        body: Any = response.body if isinstance(response.body, dict) else {}
        messages = body.get("messages")
        first: Any = messages[0] if isinstance(messages, list) and messages else {}
        wamid = first.get("id") if isinstance(first, dict) else None
        if not isinstance(wamid, str) or not wamid:
            raise RetryableError(f"The WhatsApp Cloud API answered HTTP {response.status} without a message id.")
        # Even a template Meta holds for a quality check ("held_for_quality_assessment") has left Hilo: sent.
        return Accepted(provider_message_id=wamid, status=DeliveryStatus.SENT)


class MetaPageClient:
    """Sends Messenger and Instagram jobs through the Send API with the Page access token."""

    def __init__(
        self,
        *,
        page_access_token: str,
        graph_url: str = "https://graph.facebook.com",
        version: str = "v21.0",
        http: HttpClient | None = None,
    ) -> None:
        self._url = f"{graph_url.rstrip('/')}/{version}/me/messages"
        self._headers = {"Authorization": f"Bearer {page_access_token}"}
        self._http = http or http_client(PAGES)

    @classmethod
    def from_settings(cls, settings: Settings, *, http: HttpClient | None = None) -> MetaPageClient:
        """The client for the configured Page (and the Instagram account linked to it).

        Raises
        ------
        SenderNotConfigured
            ``HILO_META_PAGE_ACCESS_TOKEN`` is missing.
        """
        require("Sending Messenger and Instagram", HILO_META_PAGE_ACCESS_TOKEN=settings.meta_page_access_token)
        return cls(
            page_access_token=secret(settings.meta_page_access_token),
            graph_url=settings.meta_graph_url,
            version=settings.meta_graph_version,
            http=http,
        )

    def send(self, job: SendJob) -> Accepted:
        """Send ``job``: each medium as an attachment (its caption after it), then the text; quick replies on the last.

        Raises
        ------
        DeliveryRejected
            Meta refused the message for good (a code ``failure_codes`` knows).
        RetryableError
            Throttled, unavailable, a token or permission problem a person must fix, or an unknown code.
        """
        if job.channel not in (Channel.MESSENGER, Channel.INSTAGRAM):
            raise PermanentError(f"The Send API does not send {job.channel} messages.")
        messages: list[dict[str, Any]] = []
        for media in job.media:
            messages.append({"attachment": _page_attachment(media)})
            if media.caption:
                messages.append({"text": media.caption})
        if job.text:
            messages.append({"text": job.text})
        if not messages:
            raise rejected_locally(PAGES, Rejection.CONTENT, f"A WhatsApp template alone cannot go on {job.channel}.")
        if job.buttons:
            messages[-1]["quick_replies"] = [
                {"content_type": "text", "title": button.title, "payload": button.id} for button in job.buttons
            ]
        accepted: Accepted | None = None
        for message in messages:
            accepted = self._post({"recipient": {"id": job.to}, "messaging_type": "RESPONSE", "message": message})
        assert accepted is not None  # messages is not empty
        return accepted

    def _post(self, document: dict[str, Any]) -> Accepted:
        response = self._http.post_json(self._url, document, headers=self._headers)
        if not response.ok:
            raise _refusal(PAGES, response)
        body: Any = response.body if isinstance(response.body, dict) else {}
        mid = body.get("message_id")
        if not isinstance(mid, str) or not mid:
            raise RetryableError(f"The Send API answered HTTP {response.status} without a message id.")
        return Accepted(provider_message_id=mid, status=DeliveryStatus.SENT)


class MetaClient:
    """Meta's one client: WhatsApp through the Cloud API, Messenger and Instagram through the Send API."""

    def __init__(self, settings: Settings, *, http: HttpClient | None = None) -> None:
        self._settings = settings
        self._http = http
        self._clients: dict[Channel, ProviderClient] = {}

    @classmethod
    def from_settings(cls, settings: Settings, *, http: HttpClient | None = None) -> MetaClient:
        """The client for every Meta channel; each channel's settings are checked when it first sends."""
        return cls(settings, http=http)

    def send(self, job: SendJob) -> Accepted:
        """Send ``job`` through the API of its channel.

        Raises
        ------
        SenderNotConfigured
            The settings of the job's channel are missing (``HILO_META_ACCESS_TOKEN``...).
        DeliveryRejected, RetryableError
            As ``WhatsAppCloudClient.send`` and ``MetaPageClient.send``.
        """
        client = self._clients.get(job.channel)
        if client is None:
            if job.channel == Channel.WHATSAPP:
                client = WhatsAppCloudClient.from_settings(self._settings, http=self._http)
            elif job.channel in (Channel.MESSENGER, Channel.INSTAGRAM):
                client = MetaPageClient.from_settings(self._settings, http=self._http)
            else:
                raise PermanentError(f"Meta does not send {job.channel} messages.")
            self._clients[job.channel] = client
        return client.send(job)


# --------------------------------------------------------------------------------------------- WhatsApp payloads


def _whatsapp_messages(job: SendJob) -> list[dict[str, Any]]:
    if job.whatsapp_template is not None:
        return [_template(job.whatsapp_template)]
    if job.buttons and not job.text:
        raise rejected_locally(WHATSAPP, Rejection.CONTENT, "WhatsApp reply buttons need a text to go with them.")
    # Buttons ride on an interactive text message, so a captioned medium cannot carry the text then.
    media, text = (
        ([(item, item.caption) for item in job.media], job.text)
        if job.buttons
        else with_captions(job.media, job.text, caption_limit=WHATSAPP_CAPTION_LIMIT, kinds=_CAPTIONED)
    )
    messages = [_whatsapp_media(item, caption) for item, caption in media]
    if text and job.buttons:
        messages.append(_interactive(text, job.buttons))
    elif text:
        messages.append({"type": "text", "text": {"body": text, "preview_url": bool(_LINK_RE.search(text))}})
    return messages


def _template(template: WhatsAppTemplateMessage) -> dict[str, Any]:
    body: dict[str, Any] = {"name": template.name, "language": {"code": template.language}}
    if template.parameters:
        parameters = [{"type": "text", "text": value} for value in template.parameters]
        body["components"] = [{"type": "body", "parameters": parameters}]
    return {"type": "template", "template": body}


def _whatsapp_media(media: MediaPart, caption: str | None) -> dict[str, Any]:
    kind = media_kind(media)
    source: dict[str, Any] = {"link": media.url} if media.url else {"id": media.provider_media_id}
    if caption and kind in _CAPTIONED:
        source["caption"] = caption
    if kind == "document" and media.filename:
        source["filename"] = media.filename
    return {"type": kind, kind: source}


def _interactive(text: str, buttons: tuple[ReplyButton, ...]) -> dict[str, Any]:
    if len(text) > WHATSAPP_CAPTION_LIMIT:
        raise rejected_locally(
            WHATSAPP,
            Rejection.CONTENT,
            f"A WhatsApp message with reply buttons takes at most {WHATSAPP_CAPTION_LIMIT} characters of text.",
        )
    return {
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": text},
            "action": {
                "buttons": [{"type": "reply", "reply": {"id": button.id, "title": button.title}} for button in buttons]
            },
        },
    }


# --------------------------------------------------------------------------------------------- Send API payloads


def _page_attachment(media: MediaPart) -> dict[str, Any]:
    payload: dict[str, Any] = (
        {"url": media.url, "is_reusable": True} if media.url else {"attachment_id": media.provider_media_id}
    )
    return {"type": _PAGE_ATTACHMENT[media_kind(media)], "payload": payload}


# --------------------------------------------------------------------------------------------- errors


def _refusal(provider: str, response: HttpResponse) -> Exception:
    error = GraphError.of(response)
    rejection = rejection_for(Provider.META, error.table_code) if response.status != 401 else None
    if rejection is None:
        return RetryableError(
            f"{provider} did not take the message: {error.label} (HTTP {response.status}), not a known permanent "
            "refusal."
        )
    return DeliveryRejected(
        f"{provider} refused the message: {error.label} ({rejection})",
        rejection=rejection,
        provider_code=error.table_code or "",
        reason=": ".join(part for part in (error.message, error.details) if part) or error.label,
    )


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""
