"""The fallback rule both senders and the status function use, the event a synchronous refusal publishes, and the
OutboundQueue adapter that carries the fallback."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.adapters.outbound_queue import OutboundQueue
from shared.delivery_status import failure_event
from shared.errors import RetryableError
from shared.models.common import Channel, IdPrefix, Provider, new_id
from shared.models.customer import ConsentPurpose
from shared.models.outbound import Route, SendJob, dedup_id
from shared.outbound.delivery import DeliveryRejected, Rejection
from shared.outbound.fallback import MAX_CHANNELS, plan_fallback
from tests.unit.ingest.conftest import Aws
from tests.unit.ingest.support import T0
from tests.unit.status.support import command

CUSTOMER = new_id(IdPrefix.CUSTOMER, at=T0, seed="status-tests")
FAILED_AT = T0 + timedelta(minutes=1)


@pytest.mark.parametrize("rejection", [r for r in Rejection if r not in (Rejection.CONTENT, Rejection.UNSUBSCRIBED)])
def test_a_refusal_of_the_address_or_channel_tries_the_best_other_channel(rejection: Rejection) -> None:
    original = command(CUSTOMER, channel=Channel.WHATSAPP, purpose=ConsentPurpose.MARKETING)
    fallback = plan_fallback(original, Channel.WHATSAPP, rejection, FAILED_AT)
    assert fallback is not None
    assert (fallback.key, fallback.route, fallback.channel) == (f"{original.key}#fb1", Route.BEST, None)
    assert (fallback.exclude_channels, fallback.fallback_of) == ((Channel.WHATSAPP,), original.message_id)
    assert fallback.requested_at == FAILED_AT
    # the same inputs plan the same command (a redelivery must not make a second message)
    assert plan_fallback(original, Channel.WHATSAPP, rejection, FAILED_AT) == fallback
    assert fallback.message_id != original.message_id


def test_refused_content_tries_nothing_else() -> None:
    assert plan_fallback(command(CUSTOMER), Channel.WHATSAPP, Rejection.CONTENT, FAILED_AT) is None


@pytest.mark.parametrize(("purpose", "falls_back"), [(ConsentPurpose.TRANSACTIONAL, True),
                                                     (ConsentPurpose.MARKETING, False)])  # fmt: skip
def test_an_unsubscribed_customer_gets_only_transactional_messages_elsewhere(
    purpose: ConsentPurpose, falls_back: bool
) -> None:
    fallback = plan_fallback(command(CUSTOMER, channel=Channel.SMS, purpose=purpose), Channel.SMS,
                             Rejection.UNSUBSCRIBED, FAILED_AT)  # fmt: skip
    assert (fallback is not None) == falls_back
    if fallback is not None:
        assert Channel.SMS in fallback.exclude_channels


def test_a_keyword_confirmation_answers_on_its_own_channel_or_not_at_all() -> None:
    reply = command(CUSTOMER, channel=Channel.SMS, keyword_reply=True)
    assert plan_fallback(reply, Channel.SMS, Rejection.INVALID_ADDRESS, FAILED_AT) is None


def test_a_message_tries_three_channels_at_most() -> None:
    first = command(CUSTOMER, channel=Channel.WHATSAPP)
    second = plan_fallback(first, Channel.WHATSAPP, Rejection.NOT_ON_CHANNEL, FAILED_AT)
    assert second is not None
    third = plan_fallback(second, Channel.SMS, Rejection.INVALID_ADDRESS, FAILED_AT + timedelta(minutes=1))
    assert third is not None
    assert third.exclude_channels == (Channel.WHATSAPP, Channel.SMS)
    assert third.key == f"{first.key}#fb1#fb2"
    assert plan_fallback(third, Channel.EMAIL, Rejection.OTHER, FAILED_AT + timedelta(minutes=2)) is None
    assert MAX_CHANNELS == 3


def test_a_synchronous_refusal_publishes_message_failed_in_the_status_functions_shape() -> None:
    original = command(CUSTOMER, channel=Channel.WHATSAPP)
    job = SendJob(correlation_id="req-9", key=original.key, message_id=original.message_id, customer_id=CUSTOMER,
                  channel=Channel.WHATSAPP, provider=Provider.META, to="+573001234567",
                  text="Hola", purpose=original.purpose, command=original)  # fmt: skip
    refused = DeliveryRejected("no WhatsApp", rejection=Rejection.NOT_ON_CHANNEL, provider_code="131026",
                               reason="Message undeliverable")  # fmt: skip
    fallback = plan_fallback(original, Channel.WHATSAPP, Rejection.NOT_ON_CHANNEL, FAILED_AT)
    assert fallback is not None
    event = failure_event(job, refused, FAILED_AT, fallback)
    assert (event.type, event.source, event.customer_id) == ("message.failed", "hilo.sender", CUSTOMER)
    assert event.data == {
        "message_id": original.message_id, "customer_id": CUSTOMER, "conversation_id": None, "channel": "whatsapp",
        "provider": "meta", "status": "failed", "purpose": "transactional", "template_id": "cita_confirmada",
        "error_code": "131026", "rejection": "not_on_channel",
        # the table's words, not the provider's (which may quote the number)
        "error_reason": "undeliverable: not on WhatsApp, old client, or terms not accepted",
        "fallback_message_id": fallback.message_id,
    }  # fmt: skip
    assert failure_event(job, refused, FAILED_AT, fallback).id == event.id
    assert "+573001234567" not in event.model_dump_json()


def test_the_outbound_queue_groups_by_customer_and_deduplicates_by_key(aws: Aws) -> None:
    url = aws.sqs.create_queue(QueueName="hilo-outbound-test.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    queue = OutboundQueue(url, aws.sqs)
    fallback = plan_fallback(command(CUSTOMER), Channel.WHATSAPP, Rejection.OTHER, FAILED_AT)
    assert fallback is not None
    queue.send(fallback)
    queue.send(fallback)
    messages = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"])["Messages"]
    (message,) = messages
    assert message["Attributes"]["MessageGroupId"] == CUSTOMER
    assert message["Attributes"]["MessageDeduplicationId"] == dedup_id(fallback.key)
    assert message["Body"] == fallback.model_dump_json()


def test_the_outbound_queue_turns_an_sqs_failure_into_a_retry(aws: Aws) -> None:
    missing = OutboundQueue("https://sqs.us-east-1.amazonaws.com/123456789012/nope.fifo", aws.sqs)
    fallback = plan_fallback(command(CUSTOMER), Channel.WHATSAPP, Rejection.OTHER, FAILED_AT)
    assert fallback is not None
    with pytest.raises(RetryableError):
        missing.send(fallback)
