"""Real concurrency against a moto server: parallel deliveries and parallel first messages.

moto itself is not atomic under concurrent requests (a condition is checked, then the write happens, and a failed
transaction restores a copy of the whole table taken before it began), so the server runs with
``atomic_dynamodb``: one DynamoDB request at a time, the guarantee DynamoDB gives. The races exercised here are
between our own requests: two reads that both miss, two transactions for one pointer, two conditional puts.
"""

from __future__ import annotations

import pytest

from shared.models.inbound import InboundEnvelope
from tests.unit.ingest.conftest import Aws
from tests.unit.ingest.support import envelope, every_kind, run_together, unique_phone


@pytest.mark.parametrize("message", every_kind(), ids=lambda e: f"{e.channel}-{e.kind}")
def test_every_inbound_kind_delivered_three_times_at_once_is_one_entry(
    threaded_aws: Aws, message: InboundEnvelope
) -> None:
    # Given three workers holding the same record (SQS redelivery, a provider retry)
    ingests = [threaded_aws.ingest() for _ in range(3)]
    # When they run at the same instant
    results = run_together([lambda ingest=ingest: ingest(message) for ingest in ingests])
    # Then
    assert not [result for result in results if isinstance(result, Exception)]
    assert len(threaded_aws.items("TIMELINE")) == 1
    assert len(threaded_aws.items("PROFILE")) == 1
    assert sorted(result.duplicate for result in results) == [False, True, True]
    assert len({result.customer_id for result in results}) == 1
    assert len(set(threaded_aws.event_ids())) == 3


@pytest.mark.parametrize("attempt", range(5))
def test_first_sms_and_first_whatsapp_from_one_number_at_the_same_instant_make_one_profile(
    threaded_aws: Aws, attempt: int
) -> None:
    phone = unique_phone()
    sms = envelope(channel="sms", provider="twilio", sender=phone)
    whatsapp = envelope(channel="whatsapp", provider="meta", sender=phone)
    one, two = threaded_aws.ingest(), threaded_aws.ingest()
    results = run_together([lambda: one(sms), lambda: two(whatsapp), lambda: one(sms), lambda: two(whatsapp)])
    assert not [result for result in results if isinstance(result, Exception)]
    assert len({result.customer_id for result in results}) == 1
    assert len(threaded_aws.items("PROFILE")) == 1
    assert len(threaded_aws.items("IDENTITY_POINTER")) == 1
    assert len(threaded_aws.items("TIMELINE")) == 2
    assert len(threaded_aws.items("CONVERSATION")) == 1
    # the profile lists the phone under both kinds it was seen as
    assert {item["kind"]["S"] for item in threaded_aws.items("IDENTITY")} == {"phone", "whatsapp"}
