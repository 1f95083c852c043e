"""E-mail through Amazon SES v2 ``SendEmail`` with ``Content.Raw``: a MIME message built here with the stdlib.

The message: ``From`` (the job's sender, else ``HILO_EMAIL_FROM``), ``To``, ``Subject``, ``In-Reply-To`` and
``References`` from the job (so the customer's mail client threads our answer under their message), and the body as
``text/plain``, or ``multipart/alternative`` text + HTML. Media travel as links at the end of the body: Hilo does not
fetch URLs to attach them. ``ConfigurationSetName`` is set when ``HILO_SES_CONFIGURATION_SET`` is, so delivery, bounce
and complaint events can be published (Hilo does not consume them yet); the tag ``hilo_message_id`` rides along.

**Message-ID.** The MIME carries ``<{message id}@{sender's domain}>``, stable across retries, but SES replaces any
Message-ID with its own ``<{SES MessageId}@{region}.amazonses.com>``. What threads the customer's reply back is
therefore SES's ``MessageId``, which is the provider message id returned here: the reply's ``In-Reply-To`` names it.
"""

from __future__ import annotations

import re
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate, parseaddr
from html import escape
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.senders.base import SenderNotConfigured, media_kind, rejected_locally
from shared.errors import PermanentError, RetryableError
from shared.models.common import Channel
from shared.models.message import DeliveryStatus, MediaPart
from shared.models.outbound import SendJob
from shared.outbound.delivery import Accepted, DeliveryRejected, Rejection
from shared.settings import Settings

PROVIDER: Final = "Amazon SES"
MESSAGE_ID_TAG: Final = "hilo_message_id"
_LOCAL_RE: Final = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}")
_DOMAIN_RE: Final = re.compile(r"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}")
_MSG_ID_RE: Final = re.compile(r"[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+")
_TAG_VALUE_RE: Final = re.compile(r"[A-Za-z0-9_.\-]{1,256}")

#: SES v2 errors a person fixes (identity, account, quotas) or that pass with time: retry, then the DLQ.
RETRYABLE: Final = frozenset(
    {
        "TooManyRequestsException",
        "LimitExceededException",
        "Throttling",
        "ThrottlingException",
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "NotFoundException",  # the configuration set does not exist
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "InternalFailure",
        "ServiceUnavailable",
    }
)


def classify(code: str, status: int, message: str = "") -> Rejection | None:
    """What an SES v2 error means for the message: a ``Rejection``, or None when it should be tried again.

    ``MessageRejected`` is both "this content is refused" (a virus, too large) and, in the sandbox or with an
    unverified sender, "this identity is not verified"; only its message tells them apart, and the second is a
    configuration a person fixes (verify, or leave the sandbox), so it is retried. Anything not known to be the
    message's own fault is retried too, then parked in SendDlq for a person (as ``shared.outbound.failure_codes``
    does for the other providers).
    """
    text = message.lower()
    if code in RETRYABLE or status >= 500 or status == 429:
        return None
    if code == "MessageRejected":
        return None if ("not verified" in text or "did not have authority" in text) else Rejection.CONTENT
    if code in ("BadRequestException", "InvalidParameterValue") and ("address" in text or "recipient" in text):
        return Rejection.INVALID_ADDRESS
    return None


class SesEmailClient:
    """Sends e-mail jobs through SES v2 (``sesv2`` botocore client; the process's own unless one is passed)."""

    def __init__(
        self, *, email_from: str | None, configuration_set: str | None = None, sesv2: Any | None = None
    ) -> None:
        self._email_from = email_from
        self._configuration_set = configuration_set
        self._sesv2 = sesv2

    @classmethod
    def from_settings(cls, settings: Settings, *, sesv2: Any | None = None) -> SesEmailClient:
        """The client for the configured identity; ``HILO_EMAIL_FROM`` is checked when a job needs it."""
        return cls(email_from=settings.email_from, configuration_set=settings.ses_configuration_set, sesv2=sesv2)

    def _client(self) -> Any:
        if self._sesv2 is None:
            from shared.adapters import aws  # botocore, only for the function that sends e-mail

            self._sesv2 = aws.client("sesv2")
        return self._sesv2

    def send(self, job: SendJob) -> Accepted:
        """Send ``job`` as one e-mail; SES's ``MessageId`` is the provider message id.

        Raises
        ------
        DeliveryRejected
            The address is not one SES can send to, the content was refused, or media have no URL to link.
        RetryableError
            Throttled, a quota, an unverified identity, a suspended account, SES unavailable, or no sender set.
        """
        if job.channel != Channel.EMAIL:
            raise PermanentError(f"SES does not send {job.channel} messages.")
        sender = (job.sender or self._email_from or "").strip()
        if not sender:
            raise SenderNotConfigured("Sending e-mail", ("HILO_EMAIL_FROM",))
        from_address = parseaddr(sender)[1]
        to = _recipient(job.to)
        raw = build_mime(job, sender=sender, to=to)
        request: dict[str, Any] = {
            "FromEmailAddress": from_address,
            "Destination": {"ToAddresses": [to]},
            "Content": {"Raw": {"Data": raw}},
        }
        if _TAG_VALUE_RE.fullmatch(job.message_id):
            request["EmailTags"] = [{"Name": MESSAGE_ID_TAG, "Value": job.message_id}]
        if self._configuration_set:
            request["ConfigurationSetName"] = self._configuration_set
        try:
            response = self._client().send_email(**request)
        except ClientError as error:
            raise _refusal(error) from None
        except BotoCoreError as error:
            raise RetryableError(f"Could not reach {PROVIDER} ({type(error).__name__}).") from None
        message_id = response.get("MessageId")
        if not isinstance(message_id, str) or not message_id:
            raise RetryableError(f"{PROVIDER} answered without a MessageId.")
        return Accepted(provider_message_id=message_id, status=DeliveryStatus.SENT)


def build_mime(job: SendJob, *, sender: str, to: str) -> bytes:
    """The raw message for ``job``: headers, text (and HTML) body, media as links; CRLF line ends as SMTP wants.

    Raises
    ------
    DeliveryRejected
        A header value cannot be written (a line break in the subject), or a medium has no URL to link.
    """
    message = EmailMessage(policy=SMTP)
    domain = parseaddr(sender)[1].rpartition("@")[2] or "hilo.invalid"
    thread = _thread(job)
    try:
        message["From"] = sender
        message["To"] = to
        message["Subject"] = job.subject or ""
        message["Date"] = formatdate(usegmt=True)
        message["Message-ID"] = f"<{job.message_id}@{domain}>"
        if thread:
            message["In-Reply-To"] = f"<{thread[-1]}>"
            message["References"] = " ".join(f"<{msg_id}>" for msg_id in thread)
    except (ValueError, TypeError) as error:
        raise rejected_locally(PROVIDER, Rejection.CONTENT, f"A header cannot be written: {error}") from None
    links = [_link(media) for media in job.media]
    text = job.text or ""
    if links:
        text += "\n\n" + "\n".join(f"{name}: {url}" for name, url in links)
    message.set_content(text, cte="quoted-printable")
    if job.html:
        html = job.html
        if links:
            html += "".join(f'<p><a href="{escape(url)}">{escape(name)}</a></p>' for name, url in links)
        message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message.as_bytes()


def _thread(job: SendJob) -> list[str]:
    """References then the message answered, each once, without angle brackets, malformed ids dropped."""
    ids: list[str] = []
    for value in (*job.references, *((job.in_reply_to,) if job.in_reply_to else ())):
        msg_id = value.strip().removeprefix("<").removesuffix(">")
        if _MSG_ID_RE.fullmatch(msg_id):
            if msg_id in ids:
                ids.remove(msg_id)
            ids.append(msg_id)
    return ids[-64:]


def _link(media: MediaPart) -> tuple[str, str]:
    if media.url is None:
        raise rejected_locally(
            PROVIDER, Rejection.CONTENT, f"E-mail links media by URL; this {media_kind(media)} has only a media id."
        )
    return (media.filename or media.caption or media_kind(media)).strip().replace("\n", " "), media.url


def _recipient(to: str) -> str:
    """The bare address, its domain in IDNA form (SES takes no non-ASCII domain); DeliveryRejected when invalid."""
    address = parseaddr(to.strip())[1]
    local, _, domain = address.rpartition("@")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
        valid = bool(_LOCAL_RE.fullmatch(local)) and bool(_DOMAIN_RE.fullmatch(ascii_domain))
        if valid:
            Address(username=local, domain=ascii_domain)
    except (UnicodeError, ValueError):
        valid = False
    if not valid:
        raise rejected_locally(PROVIDER, Rejection.INVALID_ADDRESS, "The recipient is not an address SES sends to.")
    return f"{local}@{ascii_domain}"


def _refusal(error: ClientError) -> Exception:
    details: Any = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    message = str(details.get("Message", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    rejection = classify(code, status, message)
    if rejection is None:
        return RetryableError(f"{PROVIDER} did not take the message: {code or status}, not a known permanent refusal.")
    return DeliveryRejected(
        f"{PROVIDER} refused the message: {code or status} ({rejection})",
        rejection=rejection,
        provider_code=code or f"http_{status}",
        reason=message or code,
    )
