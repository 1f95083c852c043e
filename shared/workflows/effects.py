"""Carrying out what a workflow step decided: the engine's effects, each through its port, each once per key.

The step function runs ``advance`` and hands its effects here *before* it saves the enrolment. A crash or a version
conflict in between means the same input is applied again to the same stored state, which gives the same effects
with the same keys, so every effect must land once however often it is carried out:

- ``Send`` → OutboundQueue (FIFO dedup on the key; the planner's timeline item is keyed by it too).
- ``SetTimer``/``CancelTimer`` → durable timers named by the key; one key is one schedule.
- ``Record`` → a timeline entry whose id is seeded by the key (its conditional put is the dedup).
- ``CreateTask``/``Handoff`` → a task whose id is the key (a conditional put).
- ``UpdateProfile`` → setting the same values again changes nothing, so no second ``customer.attribute_changed``
  (nor a first, if the run that set them died before publishing: a known gap, see docs/workflows.md).
- ``Notify`` → a webhook call carrying the key as ``Idempotency-Key`` (the receiver deduplicates), or a bus event
  whose id is seeded by the key (consumers deduplicate on event ids).

A webhook that refuses the call (a 4xx) does not stop the journey: the refusal is recorded on the timeline and
counted, and the workflow goes on, as an integration's bad day should not strand a customer mid-flow. Timeouts and
5xx are retried by SQS, then parked in WorkflowDlq.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Protocol

from shared.errors import PermanentError
from shared.ingest.ports import AlreadyRecorded, Clock, EventPublisher, TimelineRecord
from shared.models.common import IdPrefix, Provider, new_id
from shared.models.customer import AttributeChange
from shared.models.events import DomainEvent
from shared.models.outbound import OutboundCommand
from shared.models.timeline import Actor, ActorKind, TimelineEntry, TimelineKind
from shared.tasks import Task, task_from_effect
from shared.workflows.engine import (
    CancelTimer,
    CreateTask,
    Effect,
    Enrolment,
    Handoff,
    Notify,
    Record,
    Send,
    SetTimer,
    StepWake,
    UpdateProfile,
)
from shared.workflows.language import ATTRIBUTE_CHANGED

#: ``source`` of the events the workflow functions publish.
SOURCE: Final = "hilo.workflows"
#: The event a handoff step publishes, for whoever routes people's work (the console, a contact centre).
HANDOFF_REQUESTED: Final = "conversation.handoff_requested"


class CommandSender(Protocol):
    """OutboundQueue."""

    def send(self, command: OutboundCommand) -> None: ...


class WakeTimers(Protocol):
    """Durable timers that put a ``StepWake`` on WorkflowQueue at their time."""

    def schedule(self, key: str, at: datetime, body: StepWake) -> None: ...

    def cancel(self, key: str) -> None: ...


class Timeline(Protocol):
    """The customer's timeline (``ProfileStore.record``)."""

    def record(self, record: TimelineRecord) -> AlreadyRecorded | None: ...


class TaskBook(Protocol):
    """Where tasks for people are kept (``TaskStore.create``: False when the id exists)."""

    def create(self, task: Task) -> bool: ...


class Profiles(Protocol):
    """The profile's attributes."""

    def set_attributes(self, customer_id: str, attributes: Mapping[str, Any], at: datetime) -> list[AttributeChange]:
        """Set (None removes) and say which changed; nothing when every value already was so."""
        ...


class Webhooks(Protocol):
    """Outbound HTTP calls to the company's systems (``WebhookNotifier``)."""

    def call(self, url: str, payload: Mapping[str, Any], key: str) -> Any: ...


@dataclass(frozen=True)
class Carried:
    """What carrying out a run's effects did, for the logs and metrics: counts by kind, and any refusal."""

    counts: Mapping[str, int]
    refused: tuple[str, ...] = ()


class Effects:
    """Carries out a run's effects in the order ``advance`` gave them."""

    def __init__(
        self,
        *,
        outbound: CommandSender,
        timers: WakeTimers,
        timeline: Timeline,
        tasks: TaskBook,
        profiles: Profiles,
        webhooks: Webhooks,
        events: EventPublisher,
        clock: Clock,
    ) -> None:
        self._outbound = outbound
        self._timers = timers
        self._timeline = timeline
        self._tasks = tasks
        self._profiles = profiles
        self._webhooks = webhooks
        self._events = events
        self._clock = clock

    def carry_out(self, enrolment: Enrolment, effects: Sequence[Effect]) -> Carried:
        """Carry out ``effects`` of ``enrolment``'s run; raises what an adapter raises (RetryableError: SQS retries).

        Records come last, after what they describe happened, and a refused webhook adds one of its own."""
        counts: dict[str, int] = {}
        records = [effect for effect in effects if isinstance(effect, Record)]
        lines = {record.key: record for record in records}
        refusals: dict[str, tuple[str, Record]] = {}  # by the key of the notify step whose line they follow
        events: list[DomainEvent] = []
        for effect in effects:
            counts[type(effect).__name__] = counts.get(type(effect).__name__, 0) + 1
            if isinstance(effect, Send):
                self._outbound.send(effect.command)
            elif isinstance(effect, SetTimer):
                self._timers.schedule(effect.key, effect.at, effect.body)
            elif isinstance(effect, CancelTimer):
                self._timers.cancel(effect.key)
            elif isinstance(effect, UpdateProfile):
                changes = self._profiles.set_attributes(effect.customer_id, effect.attributes, effect.at)
                events.extend(attribute_events(enrolment, effect.key, changes, effect.at))
            elif isinstance(effect, CreateTask | Handoff):
                self._tasks.create(task_from_effect(effect, source=f"workflow:{enrolment.workflow_id}"))
                if isinstance(effect, Handoff):
                    events.append(handoff_event(enrolment, effect))
            elif isinstance(effect, Notify) and effect.url is not None:
                refusal = self._call(effect)
                if refusal is not None:
                    refusals[effect.key] = (refusal, _refusal_record(effect, refusal, lines.get(effect.key)))
            elif isinstance(effect, Notify):
                events.append(bus_event(enrolment, effect))
        if events:
            self._events.publish(events)
        in_order: list[Record] = []
        for record in records:
            in_order.append(record)
            if record.key in refusals:
                in_order.append(refusals[record.key][1])
        in_order += [line for key, (_, line) in refusals.items() if key not in lines]
        for order, record in enumerate(in_order):
            self._timeline.record(timeline_record(enrolment, record, self._clock(), order=order))
        refused = [message for message, _ in refusals.values()]
        return Carried(counts, tuple(refused))

    def _call(self, effect: Notify) -> str | None:
        assert effect.url is not None
        try:
            self._webhooks.call(effect.url, effect.payload, effect.key)
        except PermanentError as refusal:  # the receiver said no (4xx): recorded, and the journey goes on
            return refusal.message
        return None


def _refusal_record(effect: Notify, refusal: str, step_line: Record | None) -> Record:
    """A timeline line right after the notify step's own (same instant, the next in order) saying it was refused."""
    step_id = step_line.step_id if step_line is not None else None
    return Record(f"{effect.key}:refused", step_id, "notify", "refused", f"webhook refused: {refusal}", effect.at)


def timeline_record(enrolment: Enrolment, record: Record, received_at: datetime, *, order: int = 0) -> TimelineRecord:
    """The timeline entry of a workflow line: an automation step, by the workflow, on no channel or case.

    The lines of one run share their input's instant; ``order`` microseconds after it keep them in the order they
    happened (the timeline sorts by instant, then by id), and the same run gives the same instants again."""
    occurred_at = record.at + timedelta(microseconds=order)
    entry = TimelineEntry(
        id=new_id(IdPrefix.TIMELINE, at=occurred_at, seed=record.key),
        customer_id=enrolment.customer_id,
        occurred_at=occurred_at,
        kind=TimelineKind.AUTOMATION_STEP,
        summary=record.summary[:500],
        actor=Actor(kind=ActorKind.WORKFLOW, id=enrolment.workflow_id),
    )
    extras = {
        "workflow_id": enrolment.workflow_id,
        "workflow_version": enrolment.workflow_version,
        "enrolment_id": enrolment.id,
        "step_id": record.step_id,
        "step_type": record.type,
        "outcome": record.outcome,
    }
    return TimelineRecord(entry, None, None, str(Provider.HILO), None, received_at, extras)


def _event(enrolment: Enrolment, type_: str, key: str, data: Mapping[str, Any], at: datetime) -> DomainEvent:
    """An event of the step ``key``, stamped with the step's instant: the same step gives the same id again."""
    return DomainEvent.new(
        type_,
        source=SOURCE,
        correlation_id=enrolment.trigger.correlation_id,
        customer_id=enrolment.customer_id,
        data=data,
        occurred_at=at,
        id_seed=key,
    )


def handoff_event(enrolment: Enrolment, effect: Handoff) -> DomainEvent:
    """``conversation.handoff_requested``: ids and the workflow's labels, no customer data."""
    data = {"queue": effect.queue, "reason": effect.reason, "priority": str(effect.priority), "task_id": effect.key,
            "workflow_id": enrolment.workflow_id, "enrolment_id": enrolment.id}  # fmt: skip
    return _event(enrolment, HANDOFF_REQUESTED, effect.key, data, effect.at)


def bus_event(enrolment: Enrolment, effect: Notify) -> DomainEvent:
    """A ``notify`` step's event for the integration bus (and Hilo's own consumers), with the enrolment's ids."""
    assert effect.event_type is not None
    data = {**effect.payload, "workflow_id": enrolment.workflow_id, "enrolment_id": enrolment.id}
    return _event(enrolment, effect.event_type, effect.key, data, effect.at)


def attribute_events(
    enrolment: Enrolment, key: str, changes: Sequence[AttributeChange], at: datetime
) -> list[DomainEvent]:
    """One ``customer.attribute_changed`` per attribute the step changed (the shape ``profile_changed`` reads)."""
    source = f"workflow:{enrolment.workflow_id}"
    events = []
    for change in changes:
        data = {"attribute": change.name, "old_value": change.old_value, "new_value": change.new_value}
        data["source"] = source
        events.append(_event(enrolment, ATTRIBUTE_CHANGED, f"{key}:{change.name}", data, at))
    return events
