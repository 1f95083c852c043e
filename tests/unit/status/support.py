"""Builders of the status tests: an outbound message recorded and sent as the planner and the sender do (the contract
of docs/data-model.md, pattern 11), status envelopes as the webhooks make them, and the status function wired on
moto with the real adapters."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from functions.status import handler
from shared.adapters.dynamodb import from_item, to_item
from shared.adapters.event_publisher import EventPublisher
from shared.adapters.outbound_queue import OutboundQueue
from shared.adapters.profile_store import customer_pk, timeline_sk
from shared.adapters.status_store import StatusStore
from shared.delivery_status import DeliveryStatuses
from shared.ingest.ports import TimelineRecord
from shared.models.common import Channel, Provider
from shared.models.customer import ConsentPurpose
from shared.models.inbound import StatusEnvelope
from shared.models.message import Address, DeliveryStatus, Direction, Message, StatusUpdate, TextPart
from shared.models.outbound import OutboundCommand, TemplateContent
from shared.models.timeline import Actor, ActorKind, TimelineEntry, TimelineKind
from tests.unit.ingest.conftest import Aws
from tests.unit.ingest.support import T0, envelope, unique_phone

WORKFLOW = Actor(kind=ActorKind.WORKFLOW, id="wf-citas")


class Context:
    function_name = "StatusFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:StatusFunction"
    aws_request_id = "req-1"


@dataclass(frozen=True)
class Customer:
    id: str
    conversation_id: str
    phone: str


@dataclass(frozen=True)
class Sent:
    """An outbound message the provider accepted: where it is, and the id the provider's callbacks will name."""

    customer_id: str
    command: OutboundCommand
    channel: Channel
    provider: Provider
    provider_message_id: str
    timeline_sk: str


@dataclass
class Wired:
    aws: Aws
    statuses: DeliveryStatuses
    outbound_queue: str

    def run(self, *bodies: StatusEnvelope | str, receives: int = 1) -> list[str]:
        """One batch through the function's handler; the SQS message ids of the records that failed (all of them when
        Powertools raises because the whole batch failed, which Lambda treats the same way)."""
        records = [sqs_record(index, body, receives) for index, body in enumerate(bodies)]
        try:
            response = handler.handle({"Records": records}, Context(), self.statuses)
        except BatchProcessingError:
            return [record["messageId"] for record in records]
        return [str(failure["itemIdentifier"]) for failure in response["batchItemFailures"]]

    def events(self) -> list[dict[str, Any]]:
        """The status function's events on EventsQueue (which is drained: a merge's are dropped), oldest first."""
        events = [json.loads(body) for body in drain(self.aws, self.aws.queue_url)]
        return [event for event in events if event["source"] == "hilo.status"]

    def fallbacks(self) -> list[tuple[OutboundCommand, str]]:
        """Every command on OutboundQueue.fifo (drained), with its message group."""
        found: list[tuple[OutboundCommand, str]] = []
        while True:
            messages = self.aws.sqs.receive_message(
                QueueUrl=self.outbound_queue, MaxNumberOfMessages=10, AttributeNames=["MessageGroupId"]
            ).get("Messages", [])
            if not messages:
                return found
            for message in messages:
                found.append(
                    (OutboundCommand.model_validate_json(message["Body"]), message["Attributes"]["MessageGroupId"])
                )
                self.aws.sqs.delete_message(QueueUrl=self.outbound_queue, ReceiptHandle=message["ReceiptHandle"])

    def item(self, customer_id: str, sk: str) -> dict[str, Any] | None:
        found = self.aws.dynamodb.get_item(
            TableName=self.aws.table, Key=to_item({"pk": customer_pk(customer_id), "sk": sk}), ConsistentRead=True
        )
        return from_item(found["Item"]) if "Item" in found else None

    def statuses_of(self, sent: Sent, customer_id: str | None = None) -> list[str]:
        values = self.item(customer_id or sent.customer_id, sent.timeline_sk)
        assert values is not None
        return [entry["status"] for entry in values["status_history"]]


def wire(aws: Aws, *, dynamodb: Any | None = None, events_sqs: Any | None = None) -> Wired:
    """The status function's use case on moto: the real store, event publisher and OutboundQueue.fifo. Both queues
    start empty (what ingest or a merge published before is not the test's). The store and the publisher use
    ``dynamodb`` and ``events_sqs`` when given: clients with a ``Faults`` hook."""
    queue = aws.sqs.create_queue(
        QueueName="hilo-outbound.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"}
    )["QueueUrl"]
    drain(aws, queue)
    drain(aws, aws.queue_url)
    statuses = DeliveryStatuses(
        StatusStore(aws.table, dynamodb or aws.dynamodb),
        EventPublisher(aws.queue_url, aws.bus, events_sqs or aws.sqs, aws.events),
        OutboundQueue(queue, aws.sqs),
        aws.clock,
    )
    return Wired(aws, statuses, queue)


def drain(aws: Aws, queue_url: str) -> list[str]:
    bodies: list[str] = []
    while messages := aws.sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            bodies.append(message["Body"])
            aws.sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def sqs_record(index: int, body: StatusEnvelope | str, receives: int = 1) -> dict[str, Any]:
    return {
        "messageId": f"sqs-{index}",
        "receiptHandle": f"rh-{index}",
        "body": body if isinstance(body, str) else body.model_dump_json(),
        "attributes": {"ApproximateReceiveCount": str(receives), "SentTimestamp": "1772463600000"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:StatusQueue",
        "awsRegion": "us-east-1",
    }


def customer(aws: Aws, at: datetime = T0) -> Customer:
    """A customer who wrote on WhatsApp (so they have a profile, a head and an open case); ingest's events are
    drained, so a test sees only the status function's."""
    phone = unique_phone()
    result = aws.ingest()(envelope(sender=phone, at=at, text="¿Me confirman la cita?"))
    assert result.conversation_id is not None
    drain(aws, aws.queue_url)
    return Customer(result.customer_id, result.conversation_id, phone)


def command(
    customer_id: str,
    *,
    channel: Channel = Channel.WHATSAPP,
    conversation_id: str | None = None,
    purpose: ConsentPurpose = ConsentPurpose.TRANSACTIONAL,
    keyword_reply: bool = False,
    at: datetime = T0,
) -> OutboundCommand:
    return OutboundCommand(
        correlation_id="req-" + secrets.token_hex(4),
        key=f"wf-citas:{secrets.token_hex(6)}:confirmar",
        customer_id=customer_id,
        conversation_id=conversation_id,
        channel=channel,
        purpose=purpose,
        keyword_reply=keyword_reply,
        content=TemplateContent(template_id="cita_confirmada", vars={"hora": "10:00"}),
        actor=WORKFLOW,
        requested_at=at,
    )


def send(
    aws: Aws,
    who: Customer,
    *,
    channel: Channel = Channel.WHATSAPP,
    provider: Provider = Provider.META,
    outbound: OutboundCommand | None = None,
    at: datetime = T0,
    provider_id: str | None = None,
) -> Sent:
    """Record the message ``queued`` (as the planner does), then accepted (as the sender does: the pointer and the
    status in one transaction)."""
    outbound = outbound or command(who.id, channel=channel, conversation_id=who.conversation_id, at=at)
    message = Message(
        id=outbound.message_id,
        direction=Direction.OUTBOUND,
        channel=channel,
        provider=provider,
        customer_id=who.id,
        conversation_id=outbound.conversation_id,
        sender=Address(value="+5716000000"),
        recipient=Address(value=who.phone),
        parts=(TextPart(text="Su cita quedó confirmada para el sábado a las 10:00."),),
        status_history=(StatusUpdate(status=DeliveryStatus.QUEUED, at=at),),
    )
    entry = TimelineEntry(
        id=outbound.entry_id,
        customer_id=who.id,
        conversation_id=outbound.conversation_id,
        occurred_at=outbound.requested_at,
        channel=channel,
        kind=TimelineKind.MESSAGE,
        summary="Cita confirmada",
        message_id=outbound.message_id,
        actor=outbound.actor,
    )
    extras = {"purpose": str(outbound.purpose), "outbound_key": outbound.key, "template_id": "cita_confirmada",
              "outbound_command": outbound.model_dump_json()}  # fmt: skip
    record = TimelineRecord(entry=entry, message=message, inbound_kind=None, provider=str(provider),
                            provider_message_id=None, received_at=at, extras=extras)  # fmt: skip
    assert aws.store().record(record) is None
    sk = timeline_sk(outbound.requested_at, outbound.entry_id)
    provider_id = provider_id or provider_message_id(provider)
    pointer = {"pk": f"MSG#{provider}#{provider_id}", "sk": "MSG", "type": "MSG_POINTER", "customer_id": who.id,
               "timeline_sk": sk, "message_id": outbound.message_id, "channel": str(channel),
               "expires_at": int(at.timestamp()) + 30 * 86400}  # fmt: skip
    aws.dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": aws.table, "Item": to_item(pointer)}},
            {"Update": {"TableName": aws.table, "Key": to_item({"pk": customer_pk(who.id), "sk": sk}),
                        "UpdateExpression": "SET #status = :sent, provider_message_id = :pid, provider = :provider,"
                                            " status_history = list_append(status_history, :entry)",
                        "ConditionExpression": "#status = :queued",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": to_item({
                            ":sent": "sent", ":queued": "queued", ":pid": provider_id, ":provider": str(provider),
                            ":entry": [{"status": "sent", "at": at}]})}},
        ]
    )  # fmt: skip
    return Sent(who.id, outbound, channel, provider, provider_id, sk)


def provider_message_id(provider: Provider) -> str:
    return f"SM{secrets.token_hex(16)}" if provider == Provider.TWILIO else f"wamid.{secrets.token_hex(24)}"


def unsent(who: Customer, channel: Channel = Channel.WHATSAPP, provider: Provider = Provider.META) -> Sent:
    """A message the provider names but Hilo has not recorded (yet): nothing is written."""
    outbound = command(who.id, channel=channel, conversation_id=who.conversation_id)
    sk = timeline_sk(outbound.requested_at, outbound.entry_id)
    return Sent(who.id, outbound, channel, provider, provider_message_id(provider), sk)


def callback(
    sent: Sent,
    status: DeliveryStatus,
    at: datetime,
    *,
    error_code: str | None = None,
    error_reason: str | None = None,
) -> StatusEnvelope:
    """A status envelope as the provider's webhook puts it on StatusQueue."""
    return StatusEnvelope(
        correlation_id="req-" + secrets.token_hex(4),
        channel=sent.channel,
        provider=sent.provider,
        provider_message_id=sent.provider_message_id,
        status=status,
        occurred_at=at,
        error_code=error_code,
        error_reason=error_reason,
    )
