"""The shared inbound path: envelopes, the queue publisher (FIFO, claim check, failures) and webhook helpers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from moto import mock_aws
from pydantic import ValidationError

from shared.adapters.config_secret import SettingsLoader
from shared.adapters.queue_publisher import QueuePublisher
from shared.errors import RetryableError
from shared.models import Address, DeliveryStatus, TextPart
from shared.models.common import Channel, Provider
from shared.models.inbound import ClaimCheck, InboundEnvelope, InboundKind, QueueMessage, StatusEnvelope
from shared.settings import settings_from
from shared.webhooks import Normalized, WebhookPorts, public_request_url, secrets_equal

AT = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)


def envelope(message_id: str = "SM1", *texts: str, sender: str = "+573001234567") -> InboundEnvelope:
    return InboundEnvelope(
        correlation_id="req-1",
        kind=InboundKind.MESSAGE,
        channel=Channel.WHATSAPP,
        provider=Provider.TWILIO,
        provider_message_id=message_id,
        occurred_at=AT,
        received_at=AT,
        sender=Address(value=sender, name="Ana"),
        recipient=Address(value="+13055550123"),
        parts=tuple(TextPart(text=text) for text in texts or ("Hola, ¿a qué hora abren?",)),
    )


def status(message_id: str = "SM9", value: DeliveryStatus = DeliveryStatus.DELIVERED) -> StatusEnvelope:
    return StatusEnvelope(
        correlation_id="req-2", channel=Channel.SMS, provider=Provider.TWILIO, provider_message_id=message_id,
        status=value, occurred_at=AT,
    )  # fmt: skip


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any, str, str, str]]:
    with mock_aws():
        sqs, s3 = boto3.client("sqs", region_name="us-east-1"), boto3.client("s3", region_name="us-east-1")
        fifo = sqs.create_queue(QueueName="in.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        plain = sqs.create_queue(QueueName="status")["QueueUrl"]
        s3.create_bucket(Bucket="payloads")
        yield sqs, s3, fifo, plain, "payloads"


def received(sqs: Any, url: str) -> list[dict[str, Any]]:
    return sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])


def test_envelopes_round_trip_through_the_queue_body_union() -> None:
    for item in (envelope(), status()):
        assert QueueMessage.parse(item.model_dump_json()) == item


def test_an_envelope_refuses_unknown_fields() -> None:
    document = json.loads(envelope().model_dump_json()) | {"surprise": 1}
    with pytest.raises(ValidationError, match="surprise"):
        QueueMessage.parse(json.dumps(document))


def test_fifo_messages_are_grouped_by_channel_and_sender_and_deduplicated_by_provider_id(aws: Any) -> None:
    sqs, s3, fifo, _, bucket = aws
    publisher = QueuePublisher(fifo, bucket, sqs, s3)
    publisher.publish([envelope("SM1"), envelope("SM1"), envelope("SM2")])
    messages = received(sqs, fifo)
    assert [json.loads(m["Body"])["provider_message_id"] for m in messages] == ["SM1", "SM2"]
    assert messages[0]["Attributes"]["MessageGroupId"] == "whatsapp:+573001234567"
    assert messages[0]["Attributes"]["MessageDeduplicationId"] == "twilio:SM1"


def test_long_provider_ids_are_hashed_into_a_valid_dedup_id(aws: Any) -> None:
    sqs, s3, fifo, _, bucket = aws
    long_id = "<" + "x" * 300 + "@mail.example.com>"
    QueuePublisher(fifo, bucket, sqs, s3).publish([envelope(long_id)])
    attributes = received(sqs, fifo)[0]["Attributes"]
    assert attributes["MessageDeduplicationId"] == hashlib.sha256(f"twilio:{long_id}".encode()).hexdigest()


def test_more_than_ten_envelopes_go_in_several_batches(aws: Any) -> None:
    sqs, s3, _, plain, bucket = aws
    QueuePublisher(plain, bucket, sqs, s3).publish([status(f"SM{n}") for n in range(23)])
    count = int(
        sqs.get_queue_attributes(QueueUrl=plain, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"][
            "ApproximateNumberOfMessages"
        ]
    )
    assert count == 23


def test_an_oversized_envelope_travels_as_a_claim_check_in_s3(aws: Any) -> None:
    sqs, s3, fifo, _, bucket = aws
    big = envelope("SM-big", "ñ" * 60_000, "ñ" * 60_000)  # 240 KB of UTF-8: more than a queue message holds
    QueuePublisher(fifo, bucket, sqs, s3).publish([big])
    body = QueueMessage.parse(received(sqs, fifo)[0]["Body"])
    assert isinstance(body, ClaimCheck)
    stored = s3.get_object(Bucket=body.bucket, Key=body.key)["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == body.sha256
    assert QueueMessage.parse(stored) == big


def test_a_failed_enqueue_is_retryable_so_the_provider_retries(aws: Any) -> None:
    sqs, s3, _, _, bucket = aws
    publisher = QueuePublisher("https://sqs.us-east-1.amazonaws.com/123456789012/missing", bucket, sqs, s3)
    with pytest.raises(RetryableError, match="provider should retry"):
        publisher.publish([status()])


def test_an_oversized_envelope_without_a_bucket_is_retryable_not_lost(aws: Any) -> None:
    sqs, _, fifo, _, _ = aws
    with pytest.raises(RetryableError, match="claim-check bucket"):
        QueuePublisher(fifo, None, sqs).publish(
            [envelope("SM-big", "x" * 60_000, "x" * 60_000, "x" * 60_000, "x" * 60_000)]
        )


def test_deliver_sends_messages_and_statuses_to_their_queues(aws: Any) -> None:
    sqs, s3, fifo, plain, bucket = aws
    ports = WebhookPorts(
        SettingsLoader({}), QueuePublisher(fifo, bucket, sqs, s3), QueuePublisher(plain, bucket, sqs, s3)
    )
    ports.deliver(
        Normalized(inbound=(envelope(),), statuses=(status(),), ignored=("reaction removed",)), channel="whatsapp"
    )
    assert len(received(sqs, fifo)) == 1
    assert json.loads(received(sqs, plain)[0]["Body"])["status"] == "delivered"


@pytest.mark.parametrize(
    ("given", "expected", "equal"),
    [
        ("abc", "abc", True),
        (b"abc", "abc", True),
        ("abc", "abd", False),
        ("", "", False),
        (None, "x", False),
        ("x", None, False),
    ],
)
def test_secrets_equal(given: Any, expected: Any, equal: bool) -> None:
    assert secrets_equal(given, expected) is equal


def test_the_public_request_url_is_what_the_provider_called() -> None:
    settings = settings_from({"HILO_PUBLIC_URL": "https://hilo.example.com/"})
    assert (
        public_request_url(settings, "/webhooks/twilio/voice", "step=id")
        == "https://hilo.example.com/webhooks/twilio/voice?step=id"
    )
    assert public_request_url(settings, "/webhooks/x", "") == "https://hilo.example.com/webhooks/x"
    assert public_request_url(settings_from({}), "/x", "") is None
