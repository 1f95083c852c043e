"""StatusQueue → status: provider delivery callbacks move each outbound message forward (``shared.delivery_status``);
``message.delivered`` / ``message.read`` / ``message.failed`` to EventsQueue and IntegrationBus, and, after a permanent
failure, the fallback command to OutboundQueue.

Partial batch responses (``BatchProcessor``, a standard queue: statuses race by nature and the monotonic status rule
restores order). A callback racing the sender's write (no pointer yet) fails its record so SQS redelivers it; an old
one without a pointer is acknowledged and counted (``StatusOrphans``). Poison (a body that is not a status envelope)
is logged by ids, counted (``StatusesPoisoned``) and failed, so after maxReceiveCount SQS parks it in StatusDlq.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.delivery_status import DeliveryStatuses, StatusResult, delivery_statuses_from_environment, parse_status
from shared.errors import PermanentError, RetryableError
from shared.observability import logger, metrics

processor = BatchProcessor(event_type=EventType.SQS)

_METRIC = {
    StatusResult.APPLIED: "StatusesApplied",
    StatusResult.RESUMED: "StatusesResumed",
    StatusResult.IGNORED: "StatusesIgnored",
    StatusResult.ORPHAN: "StatusOrphans",
    StatusResult.MISSING: "StatusesWithoutMessage",
}


@functools.cache
def statuses() -> DeliveryStatuses:
    return delivery_statuses_from_environment(os.environ)


def handle(event: dict[str, Any], context: Any, use_case: DeliveryStatuses) -> PartialItemFailureResponse:
    """Process one batch with the given use case (the function passes the real one; tests pass theirs)."""

    def record_handler(record: SQSRecord) -> None:
        ids = {"sqs_message_id": record.message_id}
        try:
            envelope = parse_status(record.body)
            ids.update(correlation_id=envelope.correlation_id, provider=str(envelope.provider),
                       channel=str(envelope.channel), status=str(envelope.status))  # fmt: skip
            receives = int(record.raw_event.get("attributes", {}).get("ApproximateReceiveCount") or 1)
            outcome = use_case(envelope, redelivered=receives > 1)
        except PermanentError as error:
            logger.error("status record cannot be processed", extra={**ids, "reason": error.message})
            metrics.add_metric(name="StatusesPoisoned", unit="Count", value=1)
            raise
        except RetryableError as error:
            logger.warning("status record will be retried", extra={**ids, "reason": error.message})
            raise
        logger.info(
            "status record processed",
            extra={**ids, "result": str(outcome.result), "customer_id": outcome.customer_id,
                   "message_id": outcome.message_id, "events": list(outcome.events),
                   "fallback_message_id": outcome.fallback_message_id, "note": outcome.note},
        )  # fmt: skip
        metrics.add_metric(name=_METRIC[outcome.result], unit="Count", value=1)
        if outcome.fallback_message_id is not None:
            metrics.add_metric(name="FallbacksQueued", unit="Count", value=1)

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return handle(event, context, statuses())
