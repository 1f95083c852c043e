"""InboundQueue (SQS FIFO) → ingest: profile, conversation and timeline entry in ProfileTable; domain events to
EventsQueue and IntegrationBus.

Partial batch responses (``SqsFifoPartialProcessor(skip_group_on_error=True)``): a failed record is listed in
``batchItemFailures`` together with the later records of its message group (one customer on one channel), which
must not overtake it; other customers' records in the batch go ahead.

Poison (``PermanentError``: a body that is not an inbound envelope, a sender that is no identity) is logged by ids,
counted (``InboundPoisoned``) and failed like a transient error, not acknowledged: after maxReceiveCount (5) SQS
parks it in InboundDlq, whose alarm tells a human. Nothing a customer wrote is dropped silently; the price is that
the customer's later messages on that channel wait behind it for those attempts (FIFO order).
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.ingest.bootstrap import IngestPorts, ingest_ports, process_record
from shared.observability import logger, metrics

processor = SqsFifoPartialProcessor(skip_group_on_error=True)


@functools.cache
def ports() -> IngestPorts:
    return ingest_ports()


def handle(event: dict[str, Any], context: Any, wired: IngestPorts) -> dict[str, Any]:
    """Process one batch with the given ports (the function passes the real ones; tests pass theirs)."""

    def record_handler(record: SQSRecord) -> None:
        process_record(record.body, wired, message_id=record.message_id)

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, ports())
