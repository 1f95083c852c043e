"""Requests (and consumed capacity, where moto reports it) per inbound message, by ingest path.

Not a test: ``.venv/bin/python -m tests.benchmarks.ingest_requests``. Counts every DynamoDB, SQS and EventBridge
call the real adapters make on moto, through botocore event hooks, and asks DynamoDB for
``ReturnConsumedCapacity=TOTAL`` on every call (a hook adds it; the adapters do not send it).
"""

from __future__ import annotations

import os
from collections import Counter
from datetime import timedelta
from typing import Any

from moto import mock_aws


def main() -> None:
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1"})  # fmt: skip
    from tests.unit.ingest.conftest import _provision
    from tests.unit.ingest.support import T0, envelope, unique_phone

    calls: Counter[str] = Counter()
    capacity: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[f"{model.service_model.service_name}:{model.name}"] += 1

    def ask_capacity(params: dict[str, Any], **_: Any) -> None:
        params["ReturnConsumedCapacity"] = "TOTAL"

    def record_capacity(parsed: Any, model: Any, **_: Any) -> None:
        consumed = parsed.get("ConsumedCapacity") if isinstance(parsed, dict) else None
        for item in consumed if isinstance(consumed, list) else [consumed] if consumed else []:
            capacity["read"] += float(item.get("ReadCapacityUnits", 0) or 0)
            capacity["write"] += float(item.get("WriteCapacityUnits", 0) or 0)
            capacity["total"] += float(item.get("CapacityUnits", 0) or 0)
        consumed_error = parsed.get("Error") if isinstance(parsed, dict) else None
        if consumed_error:
            capacity["failed_conditions"] += 1

    with mock_aws():
        aws = _provision(None)
        for client in (aws.dynamodb, aws.sqs, aws.events):
            client.meta.events.register("before-call", count)
        aws.dynamodb.meta.events.register("before-parameter-build.dynamodb.*", ask_capacity)
        aws.dynamodb.meta.events.register("after-call.dynamodb.*", record_capacity)
        ingest = aws.ingest()
        phone = unique_phone()
        first = envelope(channel="whatsapp", provider="meta", sender=phone)
        scenarios = [
            ("new customer", first),
            ("returning, conversation continues", envelope(sender=phone, at=T0 + timedelta(hours=1))),
            ("same message again (redelivery)", first),
            ("returning on a new channel kind (SMS after WhatsApp)",
             envelope(channel="sms", provider="twilio", sender=phone, at=T0 + timedelta(hours=2))),
            ("returning, after the reopen window", envelope(sender=phone, at=T0 + timedelta(days=5))),
        ]  # fmt: skip
        rows = []
        for name, message in scenarios:
            calls.clear()
            capacity.clear()
            ingest(message)
            dynamodb = {k.split(":")[1]: v for k, v in calls.items() if k.startswith("dynamodb:")}
            others = {k: v for k, v in calls.items() if not k.startswith("dynamodb:")}
            rows.append((name, dynamodb, others, dict(capacity)))
    print(f"{'path':<55} {'DynamoDB requests':<58} {'other requests':<52} consumed capacity (moto)")
    for name, dynamodb, others, consumed in rows:
        ddb = ", ".join(f"{op} {n}" for op, n in dynamodb.items()) + f"  (= {sum(dynamodb.values())})"
        other = ", ".join(f"{op} {n}" for op, n in others.items())
        units = ", ".join(f"{k} {v:g}" for k, v in consumed.items()) or "not reported"
        print(f"{name:<55} {ddb:<58} {other:<52} {units}")


if __name__ == "__main__":
    main()
