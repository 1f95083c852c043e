"""A thousand enrolments waiting at once on the twin: every wait fires once when the clock passes it.

A workflow loaded through ``PUT /v1/workflows`` (a core event enrols, a one-hour wait, then an event on the
integration bus); a thousand customers' core events arrive on EventsQueue, where ``POST /v1/events`` puts them (its
HTTP side, lead creation included, is tests/stack/test_core_events.py's); the clock moves an hour; the bus then
carries exactly one ``load.fired`` per enrolment, none twice, and nobody is left waiting.
"""

from __future__ import annotations

import json
import secrets
import time
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest

from hilo.local.stack import LocalStack, wait_until
from shared.models.common import new_id
from shared.models.events import DomainEvent
from tests.stack.test_one_thread import agent, twin_now
from tests.stack.test_workflows import advance_clock, drained

pytestmark = pytest.mark.stack

ENROLMENTS = 1_000


class FiredListener:
    """A queue of the test's own behind an IntegrationBus rule for ``load.fired`` of this run."""

    def __init__(self, stack: LocalStack, run: str) -> None:
        self.sqs, self.events = stack.client("sqs"), stack.client("events")
        self.name, self.bus = f"fired-{run}", stack.physical_id("IntegrationBus")
        self.url = self.sqs.create_queue(QueueName=self.name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        pattern = {"source": ["hilo"], "detail-type": ["load.fired"], "detail": {"data": {"run": [run]}}}
        self.events.put_rule(Name=self.name, EventBusName=self.bus, EventPattern=json.dumps(pattern))
        self.events.put_targets(Rule=self.name, EventBusName=self.bus, Targets=[{"Id": "t", "Arn": arn}])
        self.fired: list[dict[str, Any]] = []

    def drain(self) -> int:
        while messages := self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get("Messages", []):
            self.fired.extend(json.loads(message["Body"])["detail"] for message in messages)
            entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
        return len(self.fired)

    def close(self) -> None:
        self.events.remove_targets(Rule=self.name, EventBusName=self.bus, Ids=["t"])
        self.events.delete_rule(Name=self.name, EventBusName=self.bus)
        self.sqs.delete_queue(QueueUrl=self.url)


def test_a_thousand_waits_each_fire_once(hilo_stack: LocalStack) -> None:
    run = secrets.token_hex(4)
    workflow_id = f"carga_{run}"
    document = {
        "id": workflow_id, "version": 1, "name": "Prueba de carga", "enabled": True,
        "trigger": {"type": "event", "event": "load.tested", "when": {"field": "event.data.run", "equals": run}},
        "steps": [{"id": "esperar", "type": "wait", "duration": "1h"},
                  {"id": "avisar", "type": "notify", "event": {"type": "load.fired", "data": {"run": run}}}],
    }  # fmt: skip
    loaded = agent(hilo_stack, "PUT", f"/v1/workflows/{workflow_id}", document)
    assert loaded.status == 201, loaded.body
    listener = FiredListener(hilo_stack, run)
    try:
        at = datetime.fromtimestamp(twin_now(hilo_stack), UTC)
        sqs, events_queue = hilo_stack.client("sqs"), hilo_stack.physical_id("EventsQueue")

        def post(indexes: range) -> None:
            """Core events for these leads, as ``POST /v1/events`` queues them (its HTTP side is tested apart)."""
            for start in range(indexes.start, indexes.stop, 10):
                batch = [DomainEvent.new("load.tested", source="core.load", correlation_id=f"load-{run}",
                                         customer_id=new_id("cus", at=at, seed=f"{run}:{index}"), occurred_at=at,
                                         data={"run": run}, id_seed=f"{run}:{index}")
                         for index in range(start, min(start + 10, indexes.stop))]  # fmt: skip
                entries = [{"Id": str(i), "MessageBody": event.model_dump_json()} for i, event in enumerate(batch)]
                assert not sqs.send_message_batch(QueueUrl=events_queue, Entries=entries).get("Failed")

        # The events function sees a new workflow within its registry cache's 30 s: the first lead's event is sent
        # again (a new id each time) until it enrols someone.
        def enrolled() -> int:
            page = agent(hilo_stack, "GET", f"/v1/workflows/{workflow_id}/enrolments?limit=100")
            return len(page.json()["enrolments"])

        started = time.monotonic()
        probe = 0
        while not enrolled():
            probe += 1
            post(range(ENROLMENTS + probe, ENROLMENTS + probe + 1))
            wait_until(lambda: drained(hilo_stack, "EventsQueue"), timeout=10)
            assert time.monotonic() - started < 60, "the new workflow never enrolled anyone"
        post(range(ENROLMENTS - 1))
        wait_until(lambda: drained(hilo_stack, "EventsQueue") and drained(hilo_stack, "WorkflowQueue"), timeout=300)
        assert enrolled() == 100  # a full page of them waiting
        advance_clock(hilo_stack, 3_660)

        wait_until(lambda: listener.drain() >= ENROLMENTS and drained(hilo_stack, "WorkflowQueue"), timeout=300)
        time.sleep(1)
        listener.drain()
        by_enrolment = Counter(str(fired["data"]["enrolment_id"]) for fired in listener.fired)
        assert len(by_enrolment) == ENROLMENTS
        assert set(by_enrolment.values()) == {1}
        assert enrolled() == 0  # everyone completed
    finally:
        listener.close()
        agent(hilo_stack, "POST", f"/v1/workflows/{workflow_id}/disable")
