"""Wiring of the ingest function: the one place real adapters are built, and the per-record step.

Tests build ``IngestPorts`` themselves (fakes, or adapters on moto clients) and pass them in; the function calls
``ingest_ports()`` once per execution environment.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from pydantic import ValidationError

from shared.clock import now
from shared.errors import PermanentError, RetryableError
from shared.ingest.rules import Unattributable
from shared.ingest.service import Ingest, IngestResult
from shared.models.inbound import ClaimCheck, InboundEnvelope, QueueMessage, StatusEnvelope
from shared.observability import logger, metrics


class PayloadReader(Protocol):
    """Port: the bytes of an object in the payload bucket (``RawEmailStore`` is one)."""

    def get(self, bucket: str, key: str) -> bytes:
        """The object's bytes; PermanentError when it is gone, RetryableError otherwise."""
        ...


@dataclass(frozen=True)
class IngestPorts:
    """What one ingest function process holds."""

    ingest: Ingest
    payloads: PayloadReader
    #: The only bucket a claim check may point into (least privilege is also enforced by IAM).
    payload_bucket: str | None


def ingest_ports(environ: Mapping[str, str] | None = None) -> IngestPorts:
    """Build the real adapters from the function's environment (template.yaml sets the variables)."""
    # Imported here: the adapters pull botocore in, and tests that wire fakes should not need it.
    from shared.adapters.config_secret import SettingsLoader
    from shared.adapters.event_publisher import EventPublisher
    from shared.adapters.outbound_queue import OutboundQueue
    from shared.adapters.profile_store import ProfileStore
    from shared.adapters.raw_email_store import RawEmailStore
    from shared.identity.normaliser import Normaliser
    from shared.merge_wiring import merges_from_environment

    env = os.environ if environ is None else environ
    settings = SettingsLoader(env).get()
    ingest = Ingest(
        repository=ProfileStore(env["PROFILE_TABLE_NAME"]),
        publisher=EventPublisher(env["EVENTS_QUEUE_URL"], env["EVENT_BUS_NAME"]),
        normaliser=Normaliser(settings.default_region),
        clock=now,
        reopen_window=timedelta(hours=settings.reopen_window_hours),
        default_region=settings.default_region,
        merges=merges_from_environment(env, settings) if env.get("MERGE_QUEUE_URL") else None,
        auto_merge=settings.auto_merge,
        outbound=OutboundQueue(env["OUTBOUND_QUEUE_URL"]) if env.get("OUTBOUND_QUEUE_URL") else None,
    )
    bucket = env.get("PAYLOAD_BUCKET_NAME") or None
    return IngestPorts(ingest=ingest, payloads=RawEmailStore(bucket), payload_bucket=bucket)


def envelope_of(body: str, ports: IngestPorts) -> InboundEnvelope:
    """The inbound envelope a queue body carries, fetching it from S3 when the body is a claim check.

    Raises
    ------
    PermanentError
        The body (or the claimed object) is not an inbound envelope, or the object does not match its checksum.
    RetryableError
        S3 could not be read.
    """
    parsed = _parse(body)
    if isinstance(parsed, ClaimCheck):
        if ports.payload_bucket is not None and parsed.bucket != ports.payload_bucket:
            raise PermanentError("The claim check points outside the payload bucket.")
        data = ports.payloads.get(parsed.bucket, parsed.key)
        if hashlib.sha256(data).hexdigest() != parsed.sha256:
            raise PermanentError("The claimed envelope does not match its checksum.")
        parsed = _parse(data)
    if isinstance(parsed, StatusEnvelope | ClaimCheck):
        raise PermanentError(f"A {parsed.type} body does not belong on the inbound queue.")
    return parsed


def _parse(body: str | bytes) -> InboundEnvelope | StatusEnvelope | ClaimCheck:
    try:
        return QueueMessage.parse(body)
    except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as error:
        # Never the error's text: pydantic's includes the input, which is personal data.
        raise PermanentError("The queue body is not a valid envelope.") from error


def process_record(body: str, ports: IngestPorts, message_id: str | None = None) -> IngestResult | None:
    """Ingest one InboundQueue record; logs ids and kinds only, never content or addresses.

    Returns
    -------
    IngestResult or None
        None for genuine traffic that names no customer (``Unattributable``): acknowledged, never retried.

    Raises
    ------
    PermanentError
        Poison: counted (``InboundPoisoned``) and re-raised, so the record fails and is parked in the DLQ.
    RetryableError
        Transient: re-raised, so SQS redelivers it.
    """
    try:
        envelope = envelope_of(body, ports)
        try:
            result = ports.ingest(envelope)
        except ValidationError as error:
            raise PermanentError("The envelope does not map to a timeline entry.") from error
    except Unattributable as error:
        logger.info("inbound record names no customer", extra={"sqs_message_id": message_id, "reason": error.message})
        metrics.add_metric(name="InboundUnattributable", unit="Count", value=1)
        return None
    except PermanentError as error:
        logger.error("inbound record cannot be ingested", extra={"sqs_message_id": message_id, "reason": error.message})
        metrics.add_metric(name="InboundPoisoned", unit="Count", value=1)
        raise
    except RetryableError as error:
        logger.warning("inbound record will be retried", extra={"sqs_message_id": message_id, "reason": error.message})
        raise
    logger.info(
        "inbound record ingested",
        extra={
            "sqs_message_id": message_id,
            "correlation_id": envelope.correlation_id,
            "channel": str(envelope.channel),
            "kind": str(envelope.kind),
            "customer_id": result.customer_id,
            "conversation_id": result.conversation_id,
            "timeline_entry_id": result.entry_id,
            "duplicate": result.duplicate,
            "events": list(result.event_types),
        },
    )
    metrics.add_metric(name="InboundDuplicates" if result.duplicate else "MessagesIngested", unit="Count", value=1)
    return result
