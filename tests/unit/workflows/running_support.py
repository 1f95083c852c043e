"""The workflow functions' use cases wired to their real adapters on moto, and what the tests read back.

``Rig`` builds, inside the ``table`` fixture's ``mock_aws``, what template.yaml declares for the two workflow
functions: WorkflowQueue and OutboundQueue (FIFO, content-based dedup on), EventsQueue, the integration bus (with a
rule that copies the workflows' events to a tap queue, so a test sees what the company's systems would), a schedule
group for the timers. The router and the step runner are built as ``shared.workflows.wiring`` builds them, each with
a registry of its own (two functions, two processes), but on the test's clients and clock; the timers are fired by
the twin's ``OneTimeSchedules``, which delivers a due schedule's input to WorkflowQueue as Scheduler does.

A test drives them as the Lambdas would: ``route`` an event (or everything on EventsQueue), then ``run`` every
message on WorkflowQueue through ``wake``. Webhooks go to ``tests.fake_crm.Crm``, a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import functools
import json
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from hilo.local.timers import OneTimeSchedules
from shared.adapters.enrolment_store import EnrolmentStore
from shared.adapters.event_publisher import BUS_SOURCE, EventPublisher
from shared.adapters.outbound_queue import OutboundQueue
from shared.adapters.task_store import TaskStore
from shared.adapters.timers import Timers, timer_name
from shared.adapters.webhook_notifier import WebhookNotifier
from shared.adapters.workflow_queue import WakeQueue, WorkflowTimers
from shared.adapters.workflow_store import WorkflowStore
from shared.identity import Normaliser
from shared.ingest.service import Ingest
from shared.models.events import DomainEvent
from shared.models.outbound import OutboundCommand
from shared.models.timeline import TimelineKind
from shared.outbound.catalog import shipped_catalog
from shared.tasks import Task
from shared.workflows.catalog import shipped_workflows
from shared.workflows.effects import SOURCE, Effects
from shared.workflows.engine import Enrolment, StepWake
from shared.workflows.registry import WorkflowRegistry
from shared.workflows.router import Routed, WorkflowEvents
from shared.workflows.steps import Woken, WorkflowSteps
from tests.fake_crm import Crm
from tests.unit.ingest.support import envelope, unique_phone
from tests.unit.workflows.conftest import Table

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
ACCOUNT = "123456789012"
REGION = "us-east-1"
TIMER_GROUP = "hilo-TimerGroup"
TIMER_ROLE = f"arn:aws:iam::{ACCOUNT}:role/hilo-TimerRole"
TIMER_DLQ = f"arn:aws:sqs:{REGION}:{ACCOUNT}:hilo-TimerDlq"  # where Scheduler parks what it cannot deliver
BUS = "hilo-integrations"
WEBHOOK_SECRET = "whsec-tests-9f2c"
_FIFO = {"FifoQueue": "true", "ContentBasedDeduplication": "true", "DeduplicationScope": "messageGroup",
         "FifoThroughputLimit": "perMessageGroupId"}  # fmt: skip


@functools.cache
def client(service: str) -> Any:
    """One client per service for the whole run, as ``tests.unit.ingest.support.aws_client`` makes them: building
    one costs ~0.3 s, and moto's mock intercepts every client, whenever it was built."""
    session = botocore.session.get_session()
    return session.create_client(service, region_name=REGION, aws_access_key_id="testing",
                                 aws_secret_access_key="testing",
                                 config=Config(retries={"mode": "standard", "max_attempts": 3}))  # fmt: skip


@dataclass
class Clock:
    """The time every use case and adapter reads, moved by hand."""

    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


# ------------------------------------------------------------------------------------------------- the rig


@dataclass(frozen=True)
class Person:
    """A customer made by ingest from their first WhatsApp message."""

    id: str
    phone: str


@dataclass
class Queue:
    """One SQS queue of the stack."""

    sqs: Any
    name: str
    url: str = ""
    arn: str = ""

    def create(self, attributes: Mapping[str, str] | None = None) -> Queue:
        self.url = self.sqs.create_queue(QueueName=self.name, Attributes=dict(attributes or {}))["QueueUrl"]
        self.arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{self.name}"
        return self

    def take(self) -> list[dict[str, Any]]:
        """Every message on the queue now, with its attributes, deleted as a consumer does after success."""
        taken: list[dict[str, Any]] = []
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return taken
            taken.extend(messages)
            entries = [{"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(messages)]
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)


class Rig:
    """The workflow functions over moto, one per test (see the module's docstring)."""

    def __init__(self, table: Table, receiver: Crm) -> None:
        self.table = table
        self.receiver = receiver
        self.hook_url = f"{receiver.url}/hooks/crm"  # where the test workflows' webhook steps call
        self.clock = Clock()
        self.sqs = client("sqs")
        self.events = client("events")
        self.scheduler = client("scheduler")
        self.workflow_queue = Queue(self.sqs, "hilo-WorkflowQueue.fifo").create(_FIFO)
        self.outbound_queue = Queue(self.sqs, "hilo-OutboundQueue.fifo").create(_FIFO)
        self.events_queue = Queue(self.sqs, "hilo-EventsQueue").create()
        self.bus_tap = Queue(self.sqs, "hilo-BusTap").create()
        self.events.create_event_bus(Name=BUS)
        # What a company's rule for Hilo's workflow events would match (ingest's events are not the tap's business).
        pattern = {"source": [BUS_SOURCE], "detail": {"source": [SOURCE]}}
        self.events.put_rule(Name="workflow-events", EventBusName=BUS, EventPattern=json.dumps(pattern))
        self.events.put_targets(Rule="workflow-events", EventBusName=BUS,
                                Targets=[{"Id": "tap", "Arn": self.bus_tap.arn}])  # fmt: skip
        self.scheduler.create_schedule_group(Name=TIMER_GROUP)
        self.store = EnrolmentStore(table.name, table.dynamodb)
        self.tasks = TaskStore(table.name, table.dynamodb)
        self.registry = self.workflow_source()  # the workflows API's: loads versions
        self.publisher = EventPublisher(self.events_queue.url, BUS, self.sqs, self.events)
        self.timers = Timers(TIMER_GROUP, TIMER_ROLE, TIMER_DLQ, scheduler=self.scheduler, sqs=self.sqs,
                             clock=self.clock)  # fmt: skip
        self.notifier = WebhookNotifier(WEBHOOK_SECRET, timeout=2.0, sleep=lambda _seconds: None, jitter=lambda: 0.0)
        self.router = WorkflowEvents(
            enrolments=self.store,
            workflows=self.workflow_source(),
            profiles=self.store,
            wakes=WakeQueue(self.workflow_queue.url, self.sqs),
            clock=self.clock,
        )
        self.effects = Effects(
            outbound=OutboundQueue(self.outbound_queue.url, self.sqs),
            timers=WorkflowTimers(self.timers, self.workflow_queue.arn),
            timeline=self.store,
            tasks=self.tasks,
            profiles=self.store,
            webhooks=self.notifier,
            events=self.publisher,
            clock=self.clock,
        )
        self.steps = WorkflowSteps(
            enrolments=self.store,
            workflows=self.workflow_source(),
            profiles=self.store,
            effects=self.effects,
            clock=self.clock,
        )
        self.scheduler_twin = OneTimeSchedules(self.sqs, REGION, ACCOUNT, lambda _line: None)
        self._ingest = Ingest(self.store, self.publisher, Normaliser("CO"), self.clock)

    def workflow_source(self) -> WorkflowRegistry:
        """A registry as ``wiring.workflow_source`` makes one: the shipped files and ProfileTable."""
        store = WorkflowStore(self.table.name, self.table.dynamodb)
        return WorkflowRegistry(store, shipped_workflows(), templates=shipped_catalog(), clock=self.clock)

    def router_beside(self) -> WorkflowEvents:
        """Another instance of the events function (its own client and registry), for a delivery racing this one."""
        dynamodb = client("dynamodb")
        store = EnrolmentStore(self.table.name, dynamodb)
        registry = WorkflowRegistry(WorkflowStore(self.table.name, dynamodb), shipped_workflows(),
                                    templates=shipped_catalog(), clock=self.clock)  # fmt: skip
        wakes = WakeQueue(self.workflow_queue.url, self.sqs)
        return WorkflowEvents(enrolments=store, workflows=registry, profiles=store, wakes=wakes, clock=self.clock)

    # ------------------------------------------------------------------------------------------- givens

    def load(self, document: Mapping[str, Any]) -> None:
        """Store a workflow version through the registry (``PUT /v1/workflows/{id}``)."""
        loaded = self.registry.put(str(document["id"]), dict(document), by="tests")
        assert loaded.created

    def customer(self) -> Person:
        """A new customer who wrote once on WhatsApp; what ingest published is drained (no workflow takes it)."""
        phone = unique_phone()
        result = self._ingest(envelope(channel="whatsapp", provider="meta", sender=phone, at=self.clock()))
        self.events_queue.take()
        return Person(result.customer_id, phone)

    def writes(self, person: Person, text: str) -> None:
        """The customer writes again on WhatsApp: ingest publishes ``message.received`` on EventsQueue."""
        self._ingest(envelope(channel="whatsapp", provider="meta", sender=person.phone, at=self.clock(), text=text))

    # --------------------------------------------------------------------------------- the functions

    def route(self, event: DomainEvent) -> Routed:
        """The events function on one event."""
        return self.router.route(event)

    def route_published(self) -> list[Routed]:
        """The events function on everything EventsQueue holds."""
        return [self.route(event) for event in self.published()]

    def wakes(self) -> list[StepWake]:
        """What WorkflowQueue holds, taken off it in order."""
        return [StepWake.model_validate_json(message["Body"]) for message in self.workflow_queue.take()]

    def run(self) -> list[Woken]:
        """The steps function until WorkflowQueue is empty (each message once, as after a successful batch)."""
        woken: list[Woken] = []
        while wakes := self.wakes():
            woken.extend(self.steps.wake(wake) for wake in wakes)
        return woken

    def fire_timers(self, after: timedelta) -> int:
        """Move the clock on, and let Scheduler deliver every timer now due to WorkflowQueue."""
        return int(self.scheduler_twin.fire_due(self.clock.advance(after)))

    # ------------------------------------------------------------------------------------- read back

    def published(self) -> list[DomainEvent]:
        """The events on EventsQueue (taken off it)."""
        return [DomainEvent.model_validate_json(message["Body"]) for message in self.events_queue.take()]

    def on_bus(self) -> list[DomainEvent]:
        """The events the integration bus delivered to the tap (taken off it)."""
        return [DomainEvent.model_validate(json.loads(message["Body"])["detail"]) for message in self.bus_tap.take()]

    def outbound(self) -> list[tuple[OutboundCommand, dict[str, str]]]:
        """The commands on OutboundQueue with their SQS attributes (taken off it)."""
        return [(OutboundCommand.model_validate_json(m["Body"]), m["Attributes"]) for m in self.outbound_queue.take()]

    def schedules(self) -> list[dict[str, Any]]:
        """Every pending timer, as Scheduler holds it (``GetSchedule``)."""
        listed = self.scheduler.list_schedules(GroupName=TIMER_GROUP, MaxResults=100)["Schedules"]
        return [self.scheduler.get_schedule(Name=item["Name"], GroupName=TIMER_GROUP) for item in listed]

    def schedule(self, key: str) -> dict[str, Any] | None:
        """The timer ``key``, or None."""
        found = [schedule for schedule in self.schedules() if schedule["Name"] == timer_name(key)]
        return found[0] if found else None

    def enrolment(self, person: Person, workflow_id: str) -> Enrolment:
        """The customer's one enrolment in ``workflow_id``."""
        [enrolment] = [e for e in self.store.enrolments(person.id, consistent=True) if e.workflow_id == workflow_id]
        return enrolment

    def lines(self, person: Person) -> list[tuple[str, str | None, str, str]]:
        """The workflow lines of the customer's timeline, oldest first: (summary, step id, step type, outcome)."""
        entries = self.store.timeline(person.id, limit=100).entries
        return [
            (stored.entry.summary, stored.extras.get("step_id"), stored.extras["step_type"], stored.extras["outcome"])
            for stored in reversed(entries)
            if stored.entry.kind == TimelineKind.AUTOMATION_STEP
        ]

    def automation_items(self) -> list[dict[str, Any]]:
        """The stored timeline items of workflows, as DynamoDB holds them."""
        return [item for item in self.table.items("TIMELINE") if item.get("kind") == TimelineKind.AUTOMATION_STEP]

    def queued_tasks(self, queue: str) -> tuple[Task, ...]:
        """The open tasks of a queue, as the agents' listing shows them."""
        return self.tasks.open_in_queue(queue).tasks


class EnrolmentSaves:
    """Botocore hooks on the table's client, around the step runner's save of an enrolment (its conditional
    ``PutItem``): they can fail the next saves before they reach DynamoDB (the function died after carrying out the
    effects), or have another writer bump the stored version first (a merge copying the item), so the save meets a
    version it did not load."""

    def __init__(self, table: Table) -> None:
        self.fail_next = 0
        self.interfere_next = 0
        self.attempts = 0
        self._other_writer = client("dynamodb")
        events = table.dynamodb.meta.events
        for operation in ("PutItem", "TransactWriteItems"):  # an open enrolment's save, an ended one's
            events.register(f"before-parameter-build.dynamodb.{operation}", self._before_parameters)
            events.register(f"before-call.dynamodb.{operation}", self._before_call)

    def _before_parameters(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        puts = [params] if "Item" in params else [write["Put"] for write in params.get("TransactItems", [])
                                                   if "Put" in write]  # fmt: skip
        saves = [put for put in puts if put["Item"]["sk"].get("S", "").startswith("ENROL#")
                 and "version = :expected" in put.get("ConditionExpression", "")]  # fmt: skip
        if not saves:
            return
        self.attempts += 1
        if self.interfere_next:
            self.interfere_next -= 1
            item = saves[0]["Item"]
            self._other_writer.update_item(
                TableName=saves[0]["TableName"] if "TableName" in saves[0] else params["TableName"],
                Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET version = version + :one",
                ExpressionAttributeValues={":one": {"N": "1"}},
            )
        elif self.fail_next:
            self.fail_next -= 1
            context["fail_enrolment_save"] = True

    def _before_call(self, context: dict[str, Any], **_: Any) -> Any:
        if not context.get("fail_enrolment_save"):
            return None
        error = {"Error": {"Code": "InternalServerError", "Message": "injected"},
                 "ResponseMetadata": {"HTTPStatusCode": 500}}  # fmt: skip
        return AWSResponse("https://injected", 500, {}, None), error


class BeforeEnrolling:
    """Runs ``action`` once, right before the next enrolment is created through the table's client (its
    ``TransactWriteItems``): what another delivery does between this one's read of the enrolments and its write."""

    def __init__(self, table: Table, action: Callable[[], Any]) -> None:
        self._action: Callable[[], Any] | None = action
        table.dynamodb.meta.events.register("before-parameter-build.dynamodb.TransactWriteItems", self._before)

    def _before(self, params: dict[str, Any], **_: Any) -> None:
        creates = [write["Put"] for write in params.get("TransactItems", []) if "Put" in write
                   and write["Put"]["Item"]["sk"].get("S", "").startswith("ENROL#")
                   and write["Put"].get("ConditionExpression") == "attribute_not_exists(pk)"]  # fmt: skip
        if creates and self._action is not None:
            action, self._action = self._action, None
            action()


def lambda_record(message: Mapping[str, Any] | None, queue: Queue, *, body: str | None = None,
                  group: str | None = None) -> dict[str, Any]:  # fmt: skip
    """An SQS record as Lambda hands it to a function: a message received from ``queue``, or a made-up ``body``."""
    if message is None:
        message = {"MessageId": f"poison-{secrets.token_hex(4)}", "ReceiptHandle": "rh-poison", "Body": body,
                   "Attributes": {"MessageGroupId": group or "poison", "ApproximateReceiveCount": "1",
                                  "SentTimestamp": str(int(time.time() * 1000))}}  # fmt: skip
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {},
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue.arn,
        "awsRegion": REGION,
    }


@dataclass
class LambdaContext:
    """What the handlers' batch processor reads of Lambda's context."""

    function_name: str = "WorkflowFunction"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:WorkflowFunction"
    aws_request_id: str = field(default_factory=lambda: secrets.token_hex(8))
