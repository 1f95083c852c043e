"""EventsQueue → workflow events: every domain event (Hilo's and the core systems') is checked against the workflows:
where it is a trigger the customer is enrolled and their first steps queued; enrolments that listen to it (a reply,
a delivery status, an opt-out, a goal) are woken on WorkflowQueue (``shared.workflows.router``).

Partial batch responses on a standard queue: events of one customer may be routed in any order, and the step
function's FIFO group (the enrolment) orders what follows. A body that is not a domain event is logged by ids,
counted (``WorkflowEventsPoisoned``) and failed until SQS parks it in EventsDlq.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from shared.errors import PermanentError, RetryableError
from shared.models.events import DomainEvent
from shared.observability import logger, metrics
from shared.workflows.router import WorkflowEvents

processor = BatchProcessor(event_type=EventType.SQS)


@functools.cache
def router() -> WorkflowEvents:
    from shared.workflows.wiring import router_from_environment

    return router_from_environment(os.environ)


def handle(event: dict[str, Any], context: Any, use_case: WorkflowEvents) -> PartialItemFailureResponse:
    """Process one batch with the given use case (the function passes the real one; tests pass theirs)."""

    def record_handler(record: SQSRecord) -> None:
        try:
            domain_event = DomainEvent.model_validate_json(record.body)
        except ValidationError as error:
            logger.error("events queue body is not a domain event", extra={"sqs_message_id": record.message_id})
            metrics.add_metric(name="WorkflowEventsPoisoned", unit="Count", value=1)
            raise PermanentError("The queue body is not a domain event.") from error
        ids = {"event_id": domain_event.id, "event_type": domain_event.type, "customer_id": domain_event.customer_id,
               "correlation_id": domain_event.correlation_id}  # fmt: skip
        try:
            routed = use_case.route(domain_event)
        except PermanentError as error:
            logger.error("event cannot be routed", extra={**ids, "error": error.code, "reason": error.message})
            metrics.add_metric(name="WorkflowEventsPoisoned", unit="Count", value=1)
            raise
        except RetryableError as error:
            logger.warning("event will be routed again", extra={**ids, "reason": error.message})
            raise
        if routed.started or routed.woken or routed.refused:
            logger.info("event routed to workflows",
                        extra={**ids, "started": list(routed.started), "woken": list(routed.woken),
                               "refused": [f"{workflow}:{reason}" for workflow, reason in routed.refused]})  # fmt: skip
        metrics.add_metric(name="EnrolmentsStarted", unit="Count", value=len(routed.started))
        metrics.add_metric(name="EnrolmentsWoken", unit="Count", value=len(routed.woken))

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return handle(event, context, router())
