"""Sends envelopes to an SQS queue: batched, FIFO-aware, with a claim check in S3 for oversized bodies."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws
from shared.errors import RetryableError
from shared.models.inbound import ClaimCheck, InboundEnvelope, StatusEnvelope
from shared.observability import logger

# SQS takes 256 KiB per message (body + attributes); leave room for attributes and the batch's overhead.
MAX_INLINE_BYTES = 200 * 1024
_BATCH = 10

Envelope = InboundEnvelope | StatusEnvelope


def _dedup_id(envelope: Envelope) -> str:
    # FIFO dedup ids are at most 128 characters of [!-~]; provider ids can be longer (e-mail Message-IDs).
    raw = (
        envelope.dedup_id
        if isinstance(envelope, StatusEnvelope)
        else f"{envelope.provider}:{envelope.provider_message_id}"
    )
    return raw if len(raw) <= 128 else hashlib.sha256(raw.encode()).hexdigest()


def _group_id(envelope: Envelope) -> str:
    raw = envelope.group_id if isinstance(envelope, InboundEnvelope) else envelope.provider_message_id
    return raw if len(raw) <= 128 and raw.isascii() else hashlib.sha256(raw.encode()).hexdigest()


class QueuePublisher:
    """One queue (and the claim-check bucket) as a port: ``publish(envelopes)`` or raise RetryableError."""

    def __init__(
        self, queue_url: str, bucket: str | None = None, sqs: Any | None = None, s3: Any | None = None
    ) -> None:
        self.queue_url = queue_url
        self.bucket = bucket
        self.fifo = queue_url.endswith(".fifo")
        self._sqs = sqs
        self._s3 = s3

    def publish(self, envelopes: Sequence[Envelope]) -> None:
        """Enqueue every envelope, or raise RetryableError so the provider retries (nothing is half-acknowledged).

        Re-sending after a partial failure is safe: FIFO queues drop duplicates by dedup id within 5 minutes,
        and every consumer is idempotent on the provider message id.
        """
        entries = [self._entry(index, envelope) for index, envelope in enumerate(envelopes)]
        for start in range(0, len(entries), _BATCH):
            self._send_batch(entries[start : start + _BATCH])

    def _entry(self, index: int, envelope: Envelope) -> dict[str, Any]:
        body = envelope.model_dump_json()
        if len(body.encode()) > MAX_INLINE_BYTES:
            body = self._claim_check(envelope, body).model_dump_json()
        entry: dict[str, Any] = {"Id": str(index), "MessageBody": body}
        if self.fifo:
            entry["MessageGroupId"] = _group_id(envelope)
            entry["MessageDeduplicationId"] = _dedup_id(envelope)
        return entry

    def _claim_check(self, envelope: Envelope, body: str) -> ClaimCheck:
        if not self.bucket:
            raise RetryableError("An envelope is larger than a queue message and no claim-check bucket is set.")
        data = body.encode()
        digest = hashlib.sha256(data).hexdigest()
        key = f"claim-checks/{envelope.type}/{envelope.channel}/{digest}.json"
        self._s3 = self._s3 or aws.client("s3")
        try:
            self._s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")
        except (ClientError, BotoCoreError) as error:
            raise RetryableError("Could not store an oversized envelope.") from error
        logger.info("envelope stored as claim check", extra={"size_bytes": len(data), "key": key})
        return ClaimCheck(
            correlation_id=envelope.correlation_id, bucket=self.bucket, key=key, sha256=digest, size_bytes=len(data)
        )

    def _send_batch(self, entries: list[dict[str, Any]]) -> None:
        self._sqs = self._sqs or aws.client("sqs")
        pending = entries
        for _attempt in range(2):  # one immediate retry of the entries SQS refused
            try:
                response = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=pending)
            except (ClientError, BotoCoreError) as error:
                raise RetryableError("Could not enqueue; the provider should retry.") from error
            failed = {item["Id"] for item in response.get("Failed", [])}
            if not failed:
                return
            pending = [entry for entry in pending if entry["Id"] in failed]
        logger.error("enqueue failed", extra={"failed": len(pending), "queue": self.queue_url.rsplit("/", 1)[-1]})
        raise RetryableError("Could not enqueue; the provider should retry.")
