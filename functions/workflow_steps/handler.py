"""WorkflowQueue (SQS FIFO, group = enrolment) → workflow steps: each message (``StepWake``: a start, a wait's timer,
an event the enrolment listens to) moves one enrolment on, carrying out its steps' effects (``shared.workflows.steps``).

A body that is not a ``StepWake``, or names a workflow version nobody knows, is logged by ids, counted
(``WorkflowStepsPoisoned``) and failed until SQS parks it in WorkflowDlq; ``skip_group_on_error`` holds that
enrolment's later wakes back with it, so none runs out of order.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from shared.errors import PermanentError, RetryableError
from shared.observability import logger, metrics
from shared.workflows.engine import StepWake
from shared.workflows.steps import WorkflowSteps

processor = SqsFifoPartialProcessor(skip_group_on_error=True)


@functools.cache
def steps() -> WorkflowSteps:
    from shared.workflows.wiring import steps_from_environment

    return steps_from_environment(os.environ)


def handle(event: dict[str, Any], context: Any, use_case: WorkflowSteps) -> PartialItemFailureResponse:
    """Process one batch with the given use case (the function passes the real one; tests pass theirs)."""

    def record_handler(record: SQSRecord) -> None:
        try:
            wake = StepWake.model_validate_json(record.body)
        except ValidationError as error:
            logger.error("workflow queue body is not a step wake", extra={"sqs_message_id": record.message_id})
            metrics.add_metric(name="WorkflowStepsPoisoned", unit="Count", value=1)
            raise PermanentError("The queue body is not a workflow step.") from error
        ids = {"enrolment_id": wake.enrolment_id, "workflow_id": wake.workflow_id, "wake": wake.wake.kind,
               "correlation_id": wake.correlation_id}  # fmt: skip
        try:
            woken = use_case.wake(wake)
        except PermanentError as error:
            logger.error("workflow step cannot run", extra={**ids, "error": error.code, "reason": error.message})
            metrics.add_metric(name="WorkflowStepsPoisoned", unit="Count", value=1)
            raise
        except RetryableError as error:
            logger.warning("workflow step will be retried", extra={**ids, "reason": error.message})
            raise
        carried = woken.carried
        logger.info("workflow step ran",
                    extra={**ids, "outcome": str(woken.outcome), "status": woken.status, "step": woken.step,
                           "effects": dict(carried.counts) if carried else {},
                           "refused": list(carried.refused) if carried else []})  # fmt: skip
        metrics.add_metric(name=f"WorkflowWakes{str(woken.outcome).capitalize()}", unit="Count", value=1)
        if carried is not None and carried.refused:
            metrics.add_metric(name="WorkflowWebhooksRefused", unit="Count", value=len(carried.refused))

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return handle(event, context, steps())
