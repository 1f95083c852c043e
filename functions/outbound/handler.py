"""OutboundQueue (SQS FIFO, group = customer) → outbound: decide, render and record each send command, then hand
its job to the sender of the chosen channel's provider (``shared.outbound.planning``).

Commands come from workflows, bots, ingest (keyword confirmations), senders and the status function (fallbacks), and
timers (deferred messages whose time came). Agents' messages do not pass here: the agent API submits them directly,
so the agent sees the decision at once. A body that is not a command, a customer that does not exist or a template
that does not render is logged by ids, counted (``OutboundPoisoned``) and failed until SQS parks it in OutboundDlq.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from shared.errors import PermanentError
from shared.models.outbound import OutboundCommand
from shared.observability import logger, metrics
from shared.outbound.planning import Outbound

processor = SqsFifoPartialProcessor(skip_group_on_error=True)


@functools.cache
def outbound() -> Outbound:
    from shared.adapters.config_secret import SettingsLoader
    from shared.outbound.wiring import outbound_from_environment

    return outbound_from_environment(os.environ, SettingsLoader(os.environ).get())


def handle(event: dict[str, Any], context: Any, use_case: Outbound) -> dict[str, Any]:
    """Process one batch with the given use case (the function passes the real one; tests pass theirs)."""

    def record_handler(record: SQSRecord) -> None:
        try:
            command = OutboundCommand.model_validate_json(record.body)
        except ValidationError as error:
            logger.error("outbound command is not valid", extra={"sqs_message_id": record.message_id})
            metrics.add_metric(name="OutboundPoisoned", unit="Count", value=1)
            raise PermanentError("The queue body is not a send command.") from error
        try:
            submitted = use_case.submit(command)
        except PermanentError as error:
            logger.error("outbound command cannot be carried out",
                         extra={"sqs_message_id": record.message_id, "key": command.key, "error": error.code,
                                "reason": error.message})  # fmt: skip
            metrics.add_metric(name="OutboundPoisoned", unit="Count", value=1)
            raise
        logger.info("outbound command decided",
                    extra={"key": command.key, "message_id": submitted.message_id, "outcome": str(submitted.outcome),
                           "channel": str(submitted.channel), "reason": str(submitted.reason),
                           "duplicate": submitted.duplicate})  # fmt: skip
        metrics.add_metric(name=f"Outbound{str(submitted.outcome).capitalize()}", unit="Count", value=1)

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, outbound())
