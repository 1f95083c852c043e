"""Send<Provider>Queue (SQS FIFO, group = customer) → sender: one provider's messages out (``shared.outbound.sending``).

The same code is deployed once per provider (``SENDER_PROVIDER``: twilio, meta, telegram, ses, hilo for web chat),
so each provider's credentials, rate limits and outages stay its own. A transient failure (429, 5xx, timeout, bad
credentials) fails the record so SQS retries it, and parks it in SendDlq after five tries; a permanent refusal is
recorded on the message and its fallback queued, and the record succeeds. A batch stops taking jobs when less than
``RESERVE_MS`` of the invocation remain (a slow provider must not make the function time out mid-call).
"""

from __future__ import annotations

import functools
import os
from typing import Any

from aws_lambda_powertools.utilities.batch import SqsFifoPartialProcessor, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from pydantic import ValidationError

from shared.errors import PermanentError, RetryableError
from shared.models.outbound import SendJob
from shared.observability import logger, metrics
from shared.outbound.sending import Sender

processor = SqsFifoPartialProcessor(skip_group_on_error=True)
#: The longest one job can take: three attempts of 5 s socket timeouts, their waits, and the two records around them.
RESERVE_MS = 20_000


@functools.cache
def sender() -> Sender:
    from shared.adapters.config_secret import SettingsLoader
    from shared.outbound.wiring import sender_from_environment

    return sender_from_environment(os.environ, SettingsLoader(os.environ).get())


def handle(event: dict[str, Any], context: Any, use_case: Sender) -> dict[str, Any]:
    """Process one batch with the given use case (the function passes the real one; tests pass theirs)."""

    def record_handler(record: SQSRecord) -> None:
        if context is not None and context.get_remaining_time_in_millis() < RESERVE_MS:
            # Not enough time for one more provider call with its retries: leave the job to the next invocation
            # rather than be cut off mid-call (which could send it twice).
            raise RetryableError("Too little time left in this invocation; the job goes back to the queue.")
        try:
            job = SendJob.model_validate_json(record.body)
        except ValidationError as error:
            logger.error("send job is not valid", extra={"sqs_message_id": record.message_id})
            metrics.add_metric(name="SendPoisoned", unit="Count", value=1)
            raise PermanentError("The queue body is not a send job.") from error
        done = use_case.run(job)
        logger.info("send job done", extra={"key": job.key, "message_id": job.message_id, "channel": str(job.channel),
                                            "provider": str(job.provider), "result": str(done)})  # fmt: skip
        metrics.add_metric(name=f"Send{str(done).capitalize()}", unit="Count", value=1)

    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, sender())
