"""EmailInboundQueue (SQS; SES receipt notifications via SNS): raw MIME from S3 → InboundEnvelope on InboundQueue.

Partial batch responses: a record that fails (S3 or SQS hiccup, or not an SES notification) is reported in
``batchItemFailures`` and redelivered alone; after maxReceiveCount it is parked in EmailInboundDlq.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from shared.observability import logger, metrics
from shared.providers import email_ses

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@functools.cache
def ports() -> email_ses.SesPorts:
    return email_ses.ses_ports()


def record_handler(record: SQSRecord) -> str:
    return email_ses.process_record(record.body, ports())


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
