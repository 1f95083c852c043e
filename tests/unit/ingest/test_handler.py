"""The ingest function's handler on moto: partial batch failures, redelivery, crashes and injected faults.

Faults are injected with botocore event hooks on the real clients (``Faults``): a request that fails before it
reaches the service, or HTTP answers of throttling that botocore's own retries then handle.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from functions.ingest import handler
from shared.adapters.raw_email_store import RawEmailStore
from shared.ingest.bootstrap import IngestPorts
from shared.models.inbound import ClaimCheck, InboundEnvelope
from tests.unit.ingest.conftest import Aws
from tests.unit.ingest.support import Faults, envelope


class Context:
    function_name = "IngestFunction"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:IngestFunction"
    aws_request_id = "req-1"


def ports(aws: Aws) -> IngestPorts:
    return IngestPorts(ingest=aws.ingest(), payloads=RawEmailStore(aws.bucket, aws.s3), payload_bucket=aws.bucket)


def record(index: int, message: InboundEnvelope | None = None, body: str | None = None) -> dict[str, Any]:
    return {
        "messageId": f"sqs-{index}",
        "receiptHandle": f"rh-{index}",
        "body": body if body is not None else (message or envelope()).model_dump_json(),
        "attributes": {"MessageGroupId": message.group_id if message else f"group-{index}",
                       "MessageDeduplicationId": f"dedup-{index}", "ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:InboundQueue.fifo",
        "awsRegion": "us-east-1",
    }  # fmt: skip


def batch(size: int = 10) -> list[dict[str, Any]]:
    return [record(index, envelope()) for index in range(size)]


def run(aws: Aws, records: list[dict[str, Any]]) -> list[str]:
    response = handler.handle({"Records": records}, Context(), ports(aws))
    return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]


def assert_each_took_effect_once(aws: Aws, count: int = 10) -> None:
    assert len(aws.items("TIMELINE")) == count
    assert len(aws.items("PROFILE")) == count
    events = aws.event_ids()
    assert len(set(events)) == 3 * count  # customer.created, conversation.opened, message.received each


# Each record of a new customer makes three DynamoDB requests: GetItem pointer, TransactWriteItems, PutItem entry.
@pytest.mark.parametrize("k", [0, 4, 9])
@pytest.mark.parametrize(("step", "name"), [(2, "transaction"), (3, "timeline put")])
def test_a_failed_request_fails_exactly_its_record_and_redelivery_completes_the_batch(
    aws: Aws, k: int, step: int, name: str
) -> None:
    # Given a batch of ten, and the Nth DynamoDB request (record k's transaction or entry put) fails
    records = batch()
    Faults(fail_on={3 * k + step}).attach(aws.dynamodb)
    # When
    failed = run(aws, records)
    # Then exactly that record is reported
    assert failed == [f"sqs-{k}"]
    # And when SQS redelivers it, every record has taken effect once
    assert run(aws, [r for r in records if r["messageId"] in failed]) == []
    assert_each_took_effect_once(aws)


def test_dying_after_the_writes_but_before_returning_redoes_nothing(aws: Aws) -> None:
    # Given a batch fully processed whose response never reached Lambda (timeout, crash)
    records = batch()
    assert run(aws, records) == []
    # When the whole batch comes back
    assert run(aws, records) == []
    # Then nothing is doubled; the events went twice under the same ids
    assert_each_took_effect_once(aws)


# Throttling is answered over HTTP, so botocore's own retries run. These use the moto server: in-process, moto's
# hook executes every request even when an earlier hook answers it, so a "throttled" write would still land.
def test_throttling_is_retried_by_botocore_and_nothing_is_lost_or_doubled(threaded_aws: Aws) -> None:
    faults = Faults(throttle_on={2, 15, 30}, throttles=1).attach(threaded_aws.dynamodb)
    records = batch()
    assert run(threaded_aws, records) == []
    assert faults.count() == 30  # one request per call, however many HTTP attempts
    assert_each_took_effect_once(threaded_aws)


def test_throttling_beyond_the_retries_fails_the_record_until_redelivery(threaded_aws: Aws) -> None:
    Faults(throttle_on={6}, throttles=10).attach(threaded_aws.dynamodb)  # record 1's entry put, every attempt
    records = batch()
    assert run(threaded_aws, records) == ["sqs-1"]
    assert run(threaded_aws, [records[1]]) == []
    assert_each_took_effect_once(threaded_aws)


def test_a_failed_event_send_fails_the_record_and_the_retry_sends_the_same_events(aws: Aws) -> None:
    Faults(fail_on={3}).attach(aws.sqs, "sqs")  # the third record's SendMessageBatch
    records = batch()
    assert run(aws, records) == ["sqs-2"]
    assert run(aws, [records[2]]) == []
    assert_each_took_effect_once(aws)


def test_a_failure_holds_back_its_group_but_not_other_customers(aws: Aws) -> None:
    phone = "+573001112233"
    first, second = (envelope(channel="sms", provider="twilio", sender=phone) for _ in range(2))
    records = [record(0, envelope()), record(1, first), record(2, second), record(3, envelope())]
    Faults(fail_on={5}).attach(aws.dynamodb)  # record 1's transaction
    assert run(aws, records) == ["sqs-1", "sqs-2"]  # record 2 must not overtake record 1
    assert run(aws, records[1:3]) == []
    assert len(aws.items("TIMELINE")) == 4


def test_poison_fails_alone_and_is_counted(aws: Aws) -> None:
    no_such_country = envelope(channel="sms", provider="twilio", sender="+999123456789")
    records = [record(0, envelope()), record(1, body="{not json"), record(2, body='{"type": "inbound"}'),
               record(3, no_such_country)]  # fmt: skip
    assert run(aws, records) == ["sqs-1", "sqs-2", "sqs-3"]
    assert len(aws.items("TIMELINE")) == 1


def test_a_call_with_its_caller_id_withheld_is_acknowledged_not_parked(aws: Aws) -> None:
    # A real call that names nobody: retrying it five times and parking it in the DLQ would page someone for nothing
    records = [record(0, envelope(channel="voice", provider="twilio", sender="anonymous", kind="call")),
               record(1, envelope())]  # fmt: skip
    assert run(aws, records) == []
    assert len(aws.items("TIMELINE")) == 1


def test_a_number_from_a_range_newer_than_our_numbering_plan_still_lands(aws: Aws) -> None:
    # Given an SMS from a Colombian number in a range the bundled phonenumbers metadata does not know yet
    message = envelope(channel="sms", provider="twilio", sender="+572001234567")
    # Then the carrier's word is enough: it becomes a customer, not a DLQ entry
    assert run(aws, [record(0, message)]) == []
    assert len(aws.items("TIMELINE")) == 1


def test_a_claim_checked_envelope_is_fetched_from_the_payload_bucket(aws: Aws) -> None:
    message = envelope(channel="email", provider="ses", sender="grande@example.com", text="x" * 1000)
    data = message.model_dump_json().encode()
    aws.s3.put_object(Bucket=aws.bucket, Key="claim-checks/inbound/email/abc.json", Body=data)
    claim = ClaimCheck(correlation_id="req-1", bucket=aws.bucket, key="claim-checks/inbound/email/abc.json",
                       sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))  # fmt: skip
    tampered = claim.model_copy(update={"sha256": "0" * 64})
    elsewhere = claim.model_copy(update={"bucket": "someone-elses"})
    records = [record(0, body=claim.model_dump_json()), record(1, body=tampered.model_dump_json()),
               record(2, body=elsewhere.model_dump_json())]  # fmt: skip
    assert run(aws, records) == ["sqs-1", "sqs-2"]
    (item,) = aws.items("TIMELINE")
    assert item["provider_message_id"]["S"] == message.provider_message_id
    assert json.loads(json.dumps(item["parts"]))["L"][0]["M"]["text"]["S"] == "x" * 1000
