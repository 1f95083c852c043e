"""MergeQueue → merge: carry out a recorded merge or unmerge of two profiles (``shared.merging``).

The agent API and ingest record a merge (the commit point) and queue a ``MergeCommand``; this function copies the
absorbed profile's items under the survivor, moves its identity pointers and combines the two profiles, or undoes
all that. Every step is idempotent, so a redelivery (or the late sweep each run queues) re-runs it harmlessly.
A command that is not a MergeCommand fails until SQS parks it in MergeDlq.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from shared.errors import PermanentError
from shared.merging import MergeCommand, Merges
from shared.observability import logger, metrics

processor = BatchProcessor(event_type=EventType.SQS)


@functools.cache
def merges() -> Merges:
    from shared.merge_wiring import merges_from_environment

    return merges_from_environment(os.environ)


def handle(event: dict[str, Any], context: Any, use_case: Merges) -> dict[str, Any]:
    """Process one batch with the given use case (the function passes the real one; tests pass theirs)."""

    def record_handler(record: SQSRecord) -> None:
        try:
            command = MergeCommand.model_validate_json(record.body)
        except ValidationError as error:
            logger.error("merge command is not valid", extra={"sqs_message_id": record.message_id})
            metrics.add_metric(name="MergeCommandsPoisoned", unit="Count", value=1)
            raise PermanentError("The queue body is not a merge command.") from error
        done = use_case.run(command)
        logger.info(
            "merge command carried out",
            extra={"sqs_message_id": record.message_id, "merge_id": command.merge_id, "action": command.action,
                   "sweep": command.sweep, "status": str(done.status) if done else "unknown"},
        )  # fmt: skip
        metrics.add_metric(name="MergeCommands", unit="Count", value=1)

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, merges())
