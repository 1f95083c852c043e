"""Helpers behind the twin's SQS and schedule emulation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hilo.local.event_sources import RateSchedule, failed_item_ids, rate_seconds, scheduled_event, sqs_record

IDS = {"m1", "m2", "m3"}


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (None, set()),
        ({}, set()),
        ({"batchItemFailures": []}, set()),
        ({"batchItemFailures": [{"itemIdentifier": "m2"}]}, {"m2"}),
        ({"batchItemFailures": [{"itemIdentifier": "m9"}]}, None),  # unknown id: the whole batch failed
        ({"batchItemFailures": [{"itemIdentifier": ""}]}, None),
        ({"batchItemFailures": [{}]}, None),
        ({"batchItemFailures": "m1"}, None),
    ],
)
def test_partial_batch_reports_are_read_as_lambda_reads_them(result: object, expected: set[str] | None) -> None:
    assert failed_item_ids(result, IDS) == expected


def test_an_sqs_record_has_lambdas_shape() -> None:
    record = sqs_record(
        {
            "MessageId": "m1",
            "ReceiptHandle": "rh",
            "Body": "{}",
            "Attributes": {"ApproximateReceiveCount": "1", "MessageGroupId": "g"},
            "MessageAttributes": {"k": {"StringValue": "v", "DataType": "String"}},
        },
        "arn:aws:sqs:us-east-1:123456789012:q.fifo",
        "us-east-1",
    )
    assert record["eventSource"] == "aws:sqs"
    assert record["attributes"]["MessageGroupId"] == "g"
    assert record["messageAttributes"]["k"]["stringValue"] == "v"
    assert record["md5OfBody"] == "99914b932bd37a50b983c5e7c90ae93b"


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(5 minutes)", 300), ("rate(1 hour)", 3600), ("rate(2 days)", 172800), ("cron(0 12 * * ? *)", None)],
)
def test_rate_expressions(expression: str, seconds: int | None) -> None:
    assert rate_seconds(expression) == seconds


def test_a_scheduled_event_is_eventbridges_unless_input_is_given() -> None:
    at = datetime(2026, 11, 22, 8, 0, tzinfo=UTC)
    plain = scheduled_event(RateSchedule("Fn", "Fn-Daily", 86400, None, 0), "123456789012", "us-east-1", at)
    assert plain["detail-type"] == "Scheduled Event"
    assert plain["time"] == "2026-11-22T08:00:00Z"
    custom = scheduled_event(RateSchedule("Fn", "Fn-Daily", 86400, {"job": "digest"}, 0), "1", "us-east-1", at)
    assert custom == {"job": "digest"}
