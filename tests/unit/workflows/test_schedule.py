"""Schedule triggers: which runs are due (weekdays, time zones, DST gaps and repeats, the catch-up limit, never twice),
and the schedule function on moto: one ``workflow.scheduled`` event per live customer who fits the audience, on
EventsQueue and the integration bus, that the events router enrols; nothing on the next tick; a scan cut short by the
invocation's time going on where it stopped."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.workflow_schedule import handler
from shared.adapters.dynamodb import to_item
from shared.adapters.enrolment_store import EnrolmentStore
from shared.adapters.event_publisher import BUS_SOURCE, EventPublisher
from shared.adapters.merge_store import MergeStore
from shared.adapters.profile_store import ProfileStore
from shared.adapters.schedule_store import ProfileScan, ScheduleStore
from shared.adapters.workflow_queue import WakeQueue
from shared.adapters.workflow_store import WorkflowStore
from shared.identity import Normaliser
from shared.ingest.service import Ingest
from shared.merging import MergeCommand, MergeEvidence, Merges
from shared.models.customer import CustomerProfile
from shared.models.events import DomainEvent
from shared.models.timeline import Actor, ActorKind
from shared.workflows.catalog import WorkflowCatalog
from shared.workflows.language import ScheduleTrigger, Workflow, load_workflow
from shared.workflows.registry import WorkflowRegistry
from shared.workflows.router import WorkflowEvents
from shared.workflows.schedule import (
    MAX_CATCH_UP,
    DueRun,
    RunStatus,
    ScheduledRun,
    WorkflowSchedule,
    due_runs,
    event_if_fits,
    run_times,
)
from tests.unit.ingest.support import FakePublisher, Faults, aws_client, envelope, unique_phone
from tests.unit.workflows.conftest import Table

BOGOTA_NINE = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)  # Monday 09:00 in Bogotá (UTC-5 all year)
VIP = {"field": "profile.attributes.segmento", "equals": "vip"}
BUS = "hilo-integrations"


def trigger(at: str = "09:00", days: list[str] | None = None, time_zone: str = "America/Bogota") -> ScheduleTrigger:
    values: dict[str, Any] = {"at": at, "time_zone": time_zone, "audience": VIP}
    if days is not None:
        values["days"] = days
    return ScheduleTrigger.model_validate(values)


def document(workflow_id: str = "saludo_vip", audience: Mapping[str, Any] = VIP, **schedule: Any) -> dict[str, Any]:
    """A small scheduled workflow: at 09:00 in Bogotá every day, a message to the VIP customers."""
    return {
        "id": workflow_id,
        "version": 1,
        "name": "Saludo a los VIP",
        "reentry": "always",
        "trigger": {"type": "schedule", "at": "09:00", "time_zone": "America/Bogota", "audience": dict(audience),
                    **schedule},
        "steps": [{"id": "saludo", "type": "send", "template": "documento_descargado"}],
    }  # fmt: skip


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


# ------------------------------------------------------------------------------------------------ run times


def test_a_schedule_fires_at_its_local_time_on_its_days_only() -> None:
    # Given 09:00 on Monday, Wednesday and Friday in Bogotá
    mon_wed_fri = trigger(days=["mon", "wed", "fri"])
    # When a whole week is asked for
    times = run_times(mon_wed_fri, BOGOTA_NINE - timedelta(seconds=1), BOGOTA_NINE + timedelta(days=7))
    # Then it fires three times, at 14:00 UTC, and on the next Monday again
    assert times == (
        utc("2026-03-02T09:00:00-05:00"),
        utc("2026-03-04T09:00:00-05:00"),
        utc("2026-03-06T09:00:00-05:00"),
        utc("2026-03-09T09:00:00-05:00"),
    )
    assert all(time.tzinfo is UTC for time in times)


def test_the_window_is_open_at_its_start_and_closed_at_its_end() -> None:
    daily = trigger()
    assert run_times(daily, BOGOTA_NINE, BOGOTA_NINE + timedelta(hours=1)) == ()
    assert run_times(daily, BOGOTA_NINE - timedelta(hours=1), BOGOTA_NINE) == (BOGOTA_NINE,)
    assert run_times(daily, BOGOTA_NINE, BOGOTA_NINE) == ()


def test_the_local_calendar_decides_the_day_not_utcs() -> None:
    # 21:00 on Monday in Bogotá is 02:00 on Tuesday in UTC
    monday_night = trigger(at="21:00", days=["mon"])
    times = run_times(monday_night, utc("2026-03-01T00:00:00+00:00"), utc("2026-03-08T00:00:00+00:00"))
    assert times == (utc("2026-03-03T02:00:00+00:00"),)


@pytest.mark.parametrize(
    ("zone", "at", "day", "expected"),
    [
        # Mexico City, 3 April 2022: 02:00 became 03:00 (its last spring forward); 02:30 never happened
        ("America/Mexico_City", "02:30", "2022-04-03", "2022-04-03T08:00:00+00:00"),
        # Santiago, 8 September 2024: midnight became 01:00
        ("America/Santiago", "00:30", "2024-09-08", "2024-09-08T04:00:00+00:00"),
        ("America/Santiago", "00:00", "2024-09-08", "2024-09-08T04:00:00+00:00"),
    ],
)
def test_a_local_time_the_clocks_skip_fires_when_they_jump(zone: str, at: str, day: str, expected: str) -> None:
    start = utc(f"{day}T00:00:00+00:00") - timedelta(days=1)
    times = run_times(trigger(at=at, time_zone=zone), start, start + timedelta(days=2))
    assert utc(expected) in times
    assert len([time for time in times if time.date() == utc(expected).date()]) == 1


@pytest.mark.parametrize(
    ("zone", "at", "day", "first"),
    [
        # Mexico City, 30 October 2022: 02:00 became 01:00 again, so 01:30 happened at 06:30 and at 07:30 UTC
        ("America/Mexico_City", "01:30", "2022-10-30", "2022-10-30T06:30:00+00:00"),
        # Santiago, 6-7 April 2024: midnight became 23:00 again, so 23:30 happened at 02:30 and at 03:30 UTC
        ("America/Santiago", "23:30", "2024-04-06", "2024-04-07T02:30:00+00:00"),
    ],
)
def test_a_local_time_that_happens_twice_fires_once_at_the_first(zone: str, at: str, day: str, first: str) -> None:
    times = run_times(trigger(at=at, time_zone=zone), utc(first) - timedelta(hours=3), utc(first) + timedelta(hours=3))
    assert times == (utc(first),)


def test_mexico_city_without_daylight_saving_time_since_2023() -> None:
    times = run_times(trigger(at="02:30", time_zone="America/Mexico_City"), utc("2023-04-02T00:00:00+00:00"),
                      utc("2023-04-03T00:00:00+00:00"))  # fmt: skip
    assert times == (utc("2023-04-02T08:30:00+00:00"),)


# ------------------------------------------------------------------------------------------------ due runs


def workflow(**schedule: Any) -> Workflow:
    return load_workflow(document(**schedule))


def test_a_run_is_due_once_between_the_last_tick_and_now() -> None:
    daily = workflow()
    # The tick just before 09:00 sees nothing; the next one sees the run; the one after does not see it again
    assert due_runs([daily], BOGOTA_NINE - timedelta(minutes=10), BOGOTA_NINE - timedelta(minutes=5)) == ()
    first = due_runs([daily], BOGOTA_NINE - timedelta(minutes=5), BOGOTA_NINE + timedelta(seconds=7))
    assert first == (DueRun(ScheduledRun(BOGOTA_NINE, "saludo_vip"), version=1, missed=0),)
    assert due_runs([daily], BOGOTA_NINE + timedelta(seconds=7), BOGOTA_NINE + timedelta(minutes=5)) == ()


def test_after_an_outage_only_the_latest_missed_run_fires() -> None:
    # Given a daily workflow and a last tick three days and a bit ago
    covered = BOGOTA_NINE - timedelta(days=3, minutes=5)
    # When the schedule ticks again
    [due] = due_runs([workflow()], covered, BOGOTA_NINE + timedelta(hours=2))
    # Then today's run fires, standing for the three it replaces
    assert due.run.scheduled_for == BOGOTA_NINE
    assert due.missed == 3


def test_a_run_older_than_the_catch_up_limit_never_fires() -> None:
    # Given a last tick ten days ago
    now = BOGOTA_NINE + timedelta(hours=2)
    covered = now - timedelta(days=10)
    # A daily workflow fires today's run, standing for the six before it: the window reaches back seven days only
    [daily] = due_runs([workflow()], covered, now)
    assert (daily.run.scheduled_for, daily.missed) == (BOGOTA_NINE, 6)
    assert timedelta(days=7) == MAX_CATCH_UP
    # A weekly run (Sunday 09:00, 29 hours ago) fires within the limit, and not when the limit is shorter
    sunday = workflow(days=["sun"])
    [weekly] = due_runs([sunday], covered, now)
    assert (weekly.run.scheduled_for, weekly.missed) == (utc("2026-03-01T09:00:00-05:00"), 0)
    assert due_runs([sunday], covered, now, catch_up=timedelta(hours=12)) == ()


def test_only_schedule_triggers_have_runs() -> None:
    other = load_workflow(document() | {"id": "otro", "trigger": {"type": "event", "event": "lead.converted"}})
    assert due_runs([other], BOGOTA_NINE - timedelta(days=1), BOGOTA_NINE) == ()


def test_the_event_of_a_run_is_the_same_every_time_and_the_router_takes_it() -> None:
    run = ScheduledRun(BOGOTA_NINE, "saludo_vip")
    first, again = run.event_for("cus_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2"), run.event_for("cus_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2")
    assert first == again
    assert first.id != run.event_for("cus_01J9Z3K4Q8W5V6X7Y8Z9A0B1C3").id
    assert (first.type, first.source, first.occurred_at) == ("workflow.scheduled", "hilo.workflows", BOGOTA_NINE)
    assert first.data == {"workflow_id": "saludo_vip", "scheduled_for": "2026-03-02T14:00:00+00:00"}
    assert ScheduledRun.from_key(run.key) == run


# -------------------------------------------------------------------------------------------- on moto


@dataclass
class Budget:
    """The Lambda context's remaining time: plenty for the first ``calls`` questions, then none."""

    calls: int = 1_000

    def __call__(self) -> float:
        self.calls -= 1
        return 300.0 if self.calls >= 0 else 0.0


@dataclass
class Context:
    """What the handler reads of Lambda's context."""

    aws_request_id: str
    budget: Budget

    def get_remaining_time_in_millis(self) -> int:
        return int(self.budget() * 1000)


@dataclass
class Clock:
    now: datetime = BOGOTA_NINE + timedelta(minutes=2)

    def __call__(self) -> datetime:
        return self.now


class MergeQueueNotUsed:
    def send(self, command: Any, delay_seconds: int = 0) -> None: ...


class Stack:
    """ProfileTable, EventsQueue, the bus (with a tap queue), WorkflowQueue; ingest to make customers; the schedule
    function's use case and the events router on them."""

    def __init__(self, table: Table) -> None:
        self.table = table
        self.clock = Clock()
        self.sqs, self.events = aws_client("sqs"), aws_client("events")
        self.events_queue = self.sqs.create_queue(QueueName="hilo-EventsQueue")["QueueUrl"]
        self.tap = self.sqs.create_queue(QueueName="hilo-BusTap")["QueueUrl"]
        self.workflow_queue = self.sqs.create_queue(
            QueueName="hilo-WorkflowQueue.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
        )["QueueUrl"]
        self.events.create_event_bus(Name=BUS)
        self.events.put_rule(Name="all", EventBusName=BUS, EventPattern=json.dumps({"source": [BUS_SOURCE]}))
        tap_arn = "arn:aws:sqs:us-east-1:123456789012:hilo-BusTap"
        self.events.put_targets(Rule="all", EventBusName=BUS, Targets=[{"Id": "tap", "Arn": tap_arn}])
        self.profiles = ProfileStore(table.name, table.dynamodb)
        self.runs = ScheduleStore(table.name, table.dynamodb)
        self._ingest = Ingest(self.profiles, FakePublisher(), Normaliser("CO"), self.clock)
        self.documents: list[dict[str, Any]] = []

    def registry(self) -> WorkflowRegistry:
        shipped = WorkflowCatalog({data["id"]: load_workflow(data) for data in self.documents})
        return WorkflowRegistry(WorkflowStore(self.table.name, self.table.dynamodb), shipped, clock=self.clock)

    def schedule(self, page_size: int = 1000) -> WorkflowSchedule:
        """The function's use case, as its bootstrap builds it (a fresh process: a fresh registry)."""
        return WorkflowSchedule(
            workflows=self.registry(),
            runs=self.runs,
            profiles=ProfileScan(self.table.name, self.table.dynamodb),
            events=EventPublisher(self.events_queue, BUS, self.sqs, self.events),
            clock=self.clock,
            page_size=page_size,
        )

    def tick(self, request: str = "req-1") -> dict[str, Any]:
        """The function's handler on one scheduled invocation, with plenty of time."""
        return handler.handle({"source": "aws.scheduler"}, Context(request, Budget()), self.schedule())

    def customer(self, segment: str | None, *, channel: str = "whatsapp") -> str:
        """A customer made by ingest from a first message, with ``segmento`` set."""
        if channel == "email":
            sender, provider = f"cliente.{unique_phone()[-7:]}@correo.co", "ses"
        else:
            sender, provider = unique_phone(), "meta"
        customer_id = self._ingest(
            envelope(channel=channel, provider=provider, sender=sender, at=self.clock())
        ).customer_id
        if segment is not None:
            # Stored as a profile write stores it. (ProfileStore.set_attributes would, but it raises TypeError today:
            # it passes TableName to _conditionally twice; see test_running's xfail.)
            self.table.dynamodb.update_item(
                TableName=self.table.name, Key=to_item({"pk": f"CUST#{customer_id}", "sk": "PROFILE"}),
                UpdateExpression="SET #attributes = :attributes",
                ExpressionAttributeNames={"#attributes": "attributes"},
                ExpressionAttributeValues=to_item({":attributes": {"segmento": segment}}),
            )  # fmt: skip
        return customer_id

    def merge(self, survivor: str, absorbed: str) -> None:
        """An agent merges two profiles (the older survives), carried out as the merge function does."""
        merges = Merges(MergeStore(self.table.name, self.table.dynamodb), MergeQueueNotUsed(), FakePublisher(),
                        self.clock)  # fmt: skip
        evidence = MergeEvidence(source="agent", actor=Actor(kind=ActorKind.AGENT, id="a-1"), reason="misma",
                                 at=self.clock())  # fmt: skip
        record = merges.request(survivor, absorbed, evidence)
        assert (record.survivor_id, record.absorbed_id) == (survivor, absorbed)
        merges.run(MergeCommand(merge_id=record.merge_id, survivor_id=survivor, action="merge"))

    def published(self) -> list[DomainEvent]:
        return [DomainEvent.model_validate_json(message["Body"]) for message in self.take(self.events_queue)]

    def on_bus(self) -> list[DomainEvent]:
        return [DomainEvent.model_validate(json.loads(message["Body"])["detail"]) for message in self.take(self.tap)]

    def take(self, url: str) -> list[dict[str, Any]]:
        taken: list[dict[str, Any]] = []
        while messages := self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            taken.extend(messages)
            for message in messages:
                self.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return taken

    def marker(self, run: ScheduledRun) -> dict[str, Any]:
        [item] = [item for item in self.table.items("WORKFLOW_RUN") if item["sk"] == f"RUN#{run.key}"]
        return item


@pytest.fixture
def stack(table: Table) -> Stack:
    return Stack(table)


def test_a_run_publishes_one_event_per_live_customer_who_fits_and_the_router_enrols_them(stack: Stack) -> None:
    # Given two VIP customers, one basic one, and a VIP whose profile was merged into another
    stack.clock.now = BOGOTA_NINE - timedelta(hours=1)
    ana, beto, carla = stack.customer("vip"), stack.customer("vip"), stack.customer("basico")
    stack.clock.now += timedelta(seconds=1)
    dario = stack.customer("vip")
    stack.merge(ana, dario)
    stack.documents.append(document())
    # When the schedule ticks after 09:00
    stack.clock.now = BOGOTA_NINE + timedelta(minutes=2)
    summary = stack.tick()
    # Then the two live VIPs get one event each, on EventsQueue and on the bus, for the 09:00 run
    events = stack.published()
    assert sorted(event.customer_id or "" for event in events) == sorted([ana, beto])
    assert {event.data["scheduled_for"] for event in events} == {"2026-03-02T14:00:00+00:00"}
    assert {event.id for event in stack.on_bus()} == {event.id for event in events}
    run = ScheduledRun(BOGOTA_NINE, "saludo_vip")
    marker = stack.marker(run)
    assert (marker["status"], marker["published"], marker["profiles"]) == ("done", 2, 3)  # ana, beto, carla
    assert "lease_owner" not in marker
    assert "resume" not in marker
    assert summary["due"] == [{"run": run.key, "version": 1, "missed": 0}]
    assert summary["runs"] == [{"run": run.key, "status": "done", "pages": 1, "profiles": 3, "published": 2}]
    # And the events router enrols exactly those two
    enrolments = EnrolmentStore(stack.table.name, stack.table.dynamodb)
    router = WorkflowEvents(enrolments=enrolments, workflows=stack.registry(), profiles=enrolments,
                            wakes=WakeQueue(stack.workflow_queue, stack.sqs), clock=stack.clock)  # fmt: skip
    started = [router.route(event).started for event in events]
    assert all(len(ids) == 1 for ids in started)
    enrolled = {c for c in (ana, beto, carla, dario) if enrolments.enrolments(c, consistent=True)}
    assert enrolled == {ana, beto}
    assert carla not in enrolled


def test_the_next_tick_publishes_nothing_and_a_repeated_run_publishes_the_same_ids(stack: Stack) -> None:
    ana = stack.customer("vip")
    stack.documents.append(document())
    stack.tick()
    [first] = stack.published()
    assert first.customer_id == ana
    # When the schedule ticks again, five minutes later, and again with another invocation
    stack.clock.now += timedelta(minutes=5)
    stack.tick(request="req-2")
    stack.tick(request="req-3")
    # Then nothing more is published
    assert stack.published() == []
    # And the event is the one a repeat of the run would make
    assert first == ScheduledRun(BOGOTA_NINE, "saludo_vip").event_for(ana)


def test_a_scan_cut_short_by_the_time_left_goes_on_where_it_stopped(stack: Stack) -> None:
    customers = [stack.customer("vip") for _ in range(4)]
    stack.documents.append(document())
    run = ScheduledRun(BOGOTA_NINE, "saludo_vip")
    # When the first tick has time for three small pages only (tick loop, claim, then one question per page)
    first = stack.schedule(page_size=5).tick(remaining=Budget(calls=2 + 3), owner="req-1")
    # Then it stops with the run paused, its position kept and its lease given up
    [paused] = first.runs
    assert (paused.status, paused.pages) == (RunStatus.PAUSED, 3)
    marker = stack.marker(run)
    assert marker["status"] == "open"
    assert marker["resume"]
    assert "lease_owner" not in marker
    published_first = stack.published()
    assert len(published_first) == paused.published < 4
    # When the next tick comes
    stack.clock.now += timedelta(minutes=5)
    second = stack.schedule(page_size=5).tick(remaining=Budget(), owner="req-2")
    # Then it finishes the same run from there: every customer once, none twice
    assert second.due == ()
    [done] = second.runs
    assert done.status == RunStatus.DONE
    published = published_first + stack.published()
    assert sorted(event.customer_id or "" for event in published) == sorted(customers)
    assert paused.profiles + done.profiles == 4
    assert stack.marker(run)["pages"] == paused.pages + done.pages


def test_an_audience_on_channels_reads_each_customers_identities(stack: Stack) -> None:
    on_whatsapp = stack.customer(None)
    by_email = stack.customer(None, channel="email")
    stack.documents.append(document(audience={"field": "profile.channels", "contains": "whatsapp"}))
    stack.tick()
    assert [event.customer_id for event in stack.published()] == [on_whatsapp]
    assert by_email != on_whatsapp


def test_a_run_whose_workflow_was_disabled_is_dropped(stack: Stack) -> None:
    stack.customer("vip")
    stack.documents.append(document())
    registry = stack.registry()
    # Given a run opened and paused before its first page
    stack.schedule().tick(remaining=Budget(calls=1), owner="req-1")
    run = ScheduledRun(BOGOTA_NINE, "saludo_vip")
    assert stack.marker(run)["status"] == "open"
    # When the workflow is disabled, and the schedule ticks again
    registry.set_enabled("saludo_vip", False, by="ana")
    stack.clock.now += timedelta(minutes=5)
    tick = stack.schedule().tick(remaining=Budget(), owner="req-2")
    # Then the run ends without publishing
    assert [report.status for report in tick.runs] == [RunStatus.DROPPED]
    assert stack.marker(run)["status"] == "dropped"
    assert stack.published() == []


def test_the_first_tick_of_a_deployment_looks_back_a_few_minutes_only(stack: Stack) -> None:
    stack.customer("vip")
    stack.documents.append(document())
    stack.clock.now = BOGOTA_NINE + timedelta(hours=6)  # deployed at 15:00 Bogotá: this morning's run is not sent
    assert stack.schedule().tick(remaining=Budget(), owner="req-1").due == ()
    stack.clock.now = BOGOTA_NINE + timedelta(days=1, minutes=3)  # the next morning it is
    [due] = stack.schedule().tick(remaining=Budget(), owner="req-2").due
    assert due.run.scheduled_for == BOGOTA_NINE + timedelta(days=1)
    assert len(stack.published()) == 1


def test_the_audience_is_the_routers_rule() -> None:
    vip = workflow()
    run = ScheduledRun(BOGOTA_NINE, vip.id)
    profile = CustomerProfile(id="cus_01J9Z3K4Q8W5V6X7Y8Z9A0B1C2", attributes={"segmento": "vip"},
                              created_at=BOGOTA_NINE, updated_at=BOGOTA_NINE)  # fmt: skip
    assert event_if_fits(vip, run, profile) == run.event_for(profile.id)
    basic = profile.model_copy(update={"attributes": {"segmento": "basico"}})
    assert event_if_fits(vip, run, basic) is None
    other = ScheduledRun(BOGOTA_NINE, "otro_flujo")
    assert event_if_fits(vip, other, profile) is None  # an event for another workflow never enrols here


def test_what_a_tick_costs_in_requests(stack: Stack) -> None:
    # Given two fitting customers and a warm function (its registry has read the workflows)
    stack.customer("vip")
    stack.customer("vip")
    stack.documents.append(document())
    schedule = stack.schedule()
    requests = Faults().attach(stack.table.dynamodb)
    sends, puts = Faults().attach(stack.sqs, "sqs"), Faults().attach(stack.events, "events")
    # When the tick after 09:00 fires the run, and the next one has nothing to do
    schedule.tick(remaining=Budget(), owner="req-1")
    run_tick = list(requests.operations)
    stack.clock.now += timedelta(minutes=5)
    schedule.tick(remaining=Budget(), owner="req-2")
    idle_tick = requests.operations[len(run_tick) :]
    # Then
    assert run_tick == [
        "GetItem",  # the cursor
        "Query",  # the workflows' heads (the registry's cache: at most every 30 s per process)
        "PutItem",  # the run's marker
        "UpdateItem",  # the cursor moves, the run is open
        "UpdateItem",  # the lease
        "Scan",  # one page of the table
        "UpdateItem",  # the run done
        "UpdateItem",  # off the open runs
    ]
    assert (sends.operations, puts.operations) == (["SendMessageBatch"], ["PutEvents"])  # two events, one batch
    assert idle_tick == ["GetItem", "UpdateItem"]  # the cursor, read and moved; the heads come from the cache
