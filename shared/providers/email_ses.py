"""Amazon SES inbound: the receipt-rule notification (via SNS → SQS) → raw MIME → ``InboundEnvelope``.

Each EmailInboundQueue record is an SNS envelope (``{"Type": "Notification", "MessageId", "Message", ...}``, raw
delivery off) whose ``Message`` is SES's JSON: ``notificationType: "Received"``, ``receipt`` (recipients,
verdicts, the action) and ``mail`` (SES ``messageId``, envelope ``source``, timestamps). The raw MIME is in S3 for
the S3 action (the one template.yaml declares) or inline in ``content`` for an SNS action (UTF-8 or Base64).

Decisions:

- **Dedup key**: SES's ``mail.messageId`` (unique per received mail and stable across redeliveries) is the
  ``provider_message_id``; the MIME ``Message-ID`` travels in ``metadata["message_id"]`` for threading. The
  envelope is a pure function of the notification and the stored mail (``received_at`` is SES's receipt time), so
  a redelivered record produces the same envelope, which the FIFO queue and ingest collapse.
- **Quarantine**: a spam or virus verdict of ``FAIL`` is not enqueued. It is logged (ids only) and counted
  (``EmailsQuarantined``); the raw mail stays in the payload bucket under ``inbound-email/`` until the bucket's
  lifecycle (PayloadRetentionDays) expires it, so an operator can still inspect or re-inject it.
- **Transient failures** (S3, SQS) raise ``RetryableError``: the record fails, SQS redelivers it and, after
  ``maxReceiveCount``, parks it in EmailInboundDlq.
- **A record that is not an SES notification** (not JSON, not SNS, not SES's shape, an action Hilo cannot read)
  raises ``InvalidInput`` and fails too: five attempts later it is parked in EmailInboundDlq, whose alarm fires.
  Acknowledging it would hide an SES format change or a stranger publishing to the topic, and drop mail silently.
- **Genuine notifications Hilo does not turn into a message** (other notification types, auto-replies, bounces, a
  mail without a usable address) are acknowledged, logged with a reason and counted.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.adapters.raw_email_store import RawEmailStore, s3_ref
from shared.errors import InvalidInput, PermanentError, RetryableError
from shared.models.common import Provider, UtcDatetime
from shared.observability import logger, metrics
from shared.providers.email import Delivery, parse_mime, to_envelope
from shared.webhooks import Normalized, WebhookPorts, validated, webhook_ports

#: Where Hilo stores mail that arrived inline (SNS action), next to what the S3 action writes.
INLINE_PREFIX: Final = "inbound-email/sns/"
QUARANTINE_VERDICT: Final = "FAIL"


class _Wire(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class SnsEnvelope(_Wire):
    """The body SNS puts on an SQS queue (raw message delivery off)."""

    type: str = Field(alias="Type")
    message_id: str = Field(alias="MessageId")
    message: str = Field(alias="Message")


class Verdict(_Wire):
    status: str = "PROCESSING_FAILED"


class Action(_Wire):
    type: str
    bucket_name: str | None = Field(None, alias="bucketName")
    object_key: str | None = Field(None, alias="objectKey")
    encoding: str | None = None


class Receipt(_Wire):
    timestamp: UtcDatetime
    recipients: list[str] = Field(default_factory=list)
    spam_verdict: Verdict | None = Field(None, alias="spamVerdict")
    virus_verdict: Verdict | None = Field(None, alias="virusVerdict")
    spf_verdict: Verdict | None = Field(None, alias="spfVerdict")
    dkim_verdict: Verdict | None = Field(None, alias="dkimVerdict")
    dmarc_verdict: Verdict | None = Field(None, alias="dmarcVerdict")
    action: Action


class Mail(_Wire):
    timestamp: UtcDatetime
    source: str = ""
    message_id: str = Field(alias="messageId", pattern=r"^[\x21-\x7e]{1,128}$")
    destination: list[str] = Field(default_factory=list)


class Received(_Wire):
    """SES's ``Received`` notification (docs: receiving-email-notifications-contents)."""

    notification_type: str = Field(alias="notificationType")
    receipt: Receipt
    mail: Mail
    content: str | None = None


@dataclass
class SesPorts:
    """The SES consumer's adapters: the webhook delivery (InboundQueue, metrics, log line) and the raw mail store."""

    delivery: WebhookPorts
    store: RawEmailStore


def ses_ports(environ: Mapping[str, str] | None = None) -> SesPorts:
    """Wire the real adapters from the function's environment."""
    env = os.environ if environ is None else environ
    return SesPorts(delivery=webhook_ports(env), store=RawEmailStore.from_environ(env))


def parse_record(body: str) -> Received | str:
    """Read one queue record: the SES notification, or the reason a genuine but unhandled notification is ignored.

    Raises
    ------
    InvalidInput
        The body is not an SNS notification carrying SES JSON.
    """
    try:
        envelope = SnsEnvelope.model_validate_json(body)
    except ValidationError as error:
        raise InvalidInput("The record is not an SNS notification.") from error
    if envelope.type != "Notification":
        return f"SNS {envelope.type[:40]} message"
    try:
        document: Any = json.loads(envelope.message)
    except (json.JSONDecodeError, RecursionError) as error:
        raise InvalidInput("The SNS message is not JSON.") from error
    if not isinstance(document, dict) or "notificationType" not in document:
        raise InvalidInput("The SNS message is not an SES notification.")
    if document.get("notificationType") != "Received":
        return f"SES notification type {str(document.get('notificationType'))[:40]}"
    return validated(Received, document, "The SES notification is not well formed.")


def quarantine_reason(notification: Received) -> str | None:
    """``"spam"`` / ``"virus"`` when SES's verdict is FAIL; None otherwise (PASS, GRAY, PROCESSING_FAILED)."""
    receipt = notification.receipt
    for name, verdict in (("virus", receipt.virus_verdict), ("spam", receipt.spam_verdict)):
        if verdict is not None and verdict.status.upper() == QUARANTINE_VERDICT:
            return name
    return None


def inline_content(notification: Received) -> bytes:
    """The raw MIME an SNS action carries in ``content`` (``encoding`` UTF8, the default, or BASE64).

    Raises
    ------
    InvalidInput
        No content, or Base64 that does not decode.
    """
    if notification.content is None:
        raise InvalidInput("An SNS-action notification without content.")
    encoding = (notification.receipt.action.encoding or "UTF8").upper().replace("-", "")
    if encoding == "BASE64":
        try:
            return base64.b64decode(notification.content, validate=False)
        except (binascii.Error, ValueError) as error:
            raise InvalidInput("The notification's Base64 content does not decode.") from error
    return notification.content.encode("utf-8", errors="surrogatepass")


def fetch_raw(notification: Received, store: RawEmailStore) -> tuple[bytes, str]:
    """The raw MIME and its ``s3://`` ref: read from S3 (S3 action) or stored there first (SNS action)."""
    action = notification.receipt.action
    if action.type.upper() == "S3":
        if not action.bucket_name or not action.object_key:
            raise InvalidInput("An S3-action notification without bucketName/objectKey.")
        return store.get(action.bucket_name, action.object_key), s3_ref(action.bucket_name, action.object_key)
    if action.type.upper() == "SNS":
        raw = inline_content(notification)
        ref = store.put(f"{INLINE_PREFIX}{notification.mail.message_id}", raw, "message/rfc822")
        return raw, ref
    raise InvalidInput(f"SES action {action.type[:20]!r} carries no mail Hilo can read.")


def _verdicts(receipt: Receipt) -> dict[str, str | None]:
    pairs = (
        ("spam_verdict", receipt.spam_verdict),
        ("virus_verdict", receipt.virus_verdict),
        ("spf_verdict", receipt.spf_verdict),
        ("dkim_verdict", receipt.dkim_verdict),
        ("dmarc_verdict", receipt.dmarc_verdict),
    )
    return {name: verdict.status[:32] if verdict else None for name, verdict in pairs}


def normalize(notification: Received, raw: bytes, raw_ref: str) -> Normalized:
    """Parse the raw mail and build its envelope; correlation id and dedup key are SES's ``mail.messageId``."""
    mail = notification.mail
    received_at: datetime = notification.receipt.timestamp
    delivery = Delivery(
        provider=Provider.SES,
        provider_message_id=mail.message_id,
        envelope_from=mail.source,
        recipients=tuple(notification.receipt.recipients or mail.destination),
        received_at=received_at,
        correlation_id=mail.message_id,
        raw_ref=raw_ref,
        metadata=_verdicts(notification.receipt),
    )
    return to_envelope(parse_mime(raw), delivery)


def process_record(body: str, ports: SesPorts) -> str:
    """Handle one EmailInboundQueue record; returns what happened (``enqueued``, ``ignored``, ``quarantined``...).

    Raises
    ------
    RetryableError
        S3 or SQS failed: fail the record so SQS redelivers it.
    PermanentError
        The record is not an SES notification, or its stored mail is gone: fail it, it ends in the DLQ.
    """
    logger.set_correlation_id(None)  # the previous record's id must not leak into this one's log lines
    try:
        parsed = parse_record(body)
        if isinstance(parsed, str):
            ports.delivery.deliver(Normalized(ignored=(parsed,)), channel="email")
            return "ignored"
        logger.set_correlation_id(parsed.mail.message_id)
        log_keys = {"ses_message_id": parsed.mail.message_id, "action": parsed.receipt.action.type[:20]}
        reason = quarantine_reason(parsed)
        if reason is not None:
            metrics.add_metric(name="EmailsQuarantined", unit=MetricUnit.Count, value=1)
            logger.warning("mail quarantined; kept in the payload bucket", extra={**log_keys, "verdict": reason})
            return "quarantined"
        raw, raw_ref = fetch_raw(parsed, ports.store)
        normalized = normalize(parsed, raw, raw_ref)
        logger.info("mail parsed", extra={**log_keys, "size_bytes": len(raw)})
        ports.delivery.deliver(normalized, channel="email")
    except RetryableError as error:
        logger.warning("mail record will be retried", extra={"error_code": error.code, "reason": error.message})
        raise
    except PermanentError as error:
        metrics.add_metric(name="EmailRecordsFailed", unit=MetricUnit.Count, value=1)
        logger.error("mail record cannot be processed; it goes to the DLQ after maxReceiveCount",
                     extra={"error_code": error.code, "reason": error.message})  # fmt: skip
        raise
    return "enqueued" if normalized.inbound else "ignored" if normalized.ignored else "rejected"
