"""The workflow engine's pure core: enrol a customer, then run their enrolment step by step, one input at a time.

An **enrolment** is one customer in one version of a workflow. ``enrol`` decides whether an event starts one (the
trigger, the key, re-entry, the frequency cap) and gives it an id seeded by the workflow, customer, key and event, so
a redelivered trigger makes the same enrolment. ``advance`` takes the enrolment as stored and what woke it (``Start``,
a ``TimerFired``, an ``EventArrived``) and runs steps until the flow pauses at a wait or ends. It returns the new
state and the **effects** the adapters carry out: ``Send`` an outbound command, ``SetTimer``/``CancelTimer``,
``UpdateProfile``, ``CreateTask``, ``Notify``, ``Handoff`` and a ``Record`` line for the timeline.

Nothing here reads a clock, draws a random number or calls AWS. Every instant a step records (its ``at``, a send's
``requested_at``, a wait's start) is the instant of the input, not of the processing: the enrolment's start, the
timer's due time, the event's time. So the same input on the same stored state gives the same effects however often
it is delivered, and every effect carries a key (``workflow:<enrolment>:<step>``) the adapters deduplicate by. Once
the new state is saved (``version`` + 1, optimistic locking), a repeat of the input is a no-op: a timer for a wait
that already ended is stale, an event already seen is skipped, a start of a started enrolment does nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from shared.models.common import Channel, CustomerId, IdPrefix, UtcDatetime, new_id
from shared.models.customer import CustomerProfile
from shared.models.events import DomainEvent, QueueEnvelope
from shared.models.message import DeliveryStatus, status_may_follow
from shared.models.outbound import OutboundCommand
from shared.workflows.language import (
    COMPLETED,
    HANDED_OFF,
    BranchStep,
    CreateTaskStep,
    EnrolmentInfo,
    EventTrigger,
    ExitStep,
    Facts,
    HandoffStep,
    MissingData,
    NotifyStep,
    Priority,
    Reference,
    Reply,
    SendStep,
    SplitStep,
    StepRecord,
    UpdateProfileStep,
    WaitOutcome,
    WaitStep,
    Workflow,
    message_text,
    send_key,
)

#: The outcome of an enrolment a step could not run for (``MissingData``).
FAILED: Final = "failed"
#: How many replies and event ids an enrolment keeps: enough for any branch, bounded for the DynamoDB item.
MAX_REPLIES: Final = 50
#: How much of a reply's text an enrolment keeps: enough for any answer a branch compares ("1", "sí, confirmo"),
#: while an enrolment item stays small whatever the customer writes (a long e-mail, a pasted document).
REPLY_TEXT_KEPT: Final = 1_000
MAX_SEEN_EVENTS: Final = 100
_DELIVERY_STATUS: Final = {
    "message.delivered": DeliveryStatus.DELIVERED,
    "message.read": DeliveryStatus.READ,
    "message.failed": DeliveryStatus.FAILED,
}


class EnrolmentStatus(StrEnum):
    """Where an enrolment stands. ``active`` and ``waiting`` are open; the others are ends."""

    ACTIVE = "active"  # enrolled, its first steps not run yet
    WAITING = "waiting"  # paused at a wait; a timer or an event moves it on
    COMPLETED = "completed"  # ran past its last step
    EXITED = "exited"  # an exit step, an exit rule or a handoff ended it (``outcome`` says which)
    CONVERTED = "converted"  # the goal was met
    FAILED = "failed"  # a step lacked its data (``error`` names the path)

    @property
    def open(self) -> bool:
        """Tell whether the enrolment can still run steps."""
        return self in (EnrolmentStatus.ACTIVE, EnrolmentStatus.WAITING)


def timer_key(enrolment_id: str, step_id: str) -> str:
    """The durable timer of a wait step: one per enrolment and step, so a redelivered step sets the same timer."""
    return f"workflow:{enrolment_id}:{step_id}"


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class WaitState(_Model):
    """The wait an enrolment is paused at: its step, when its timer is due, the event that may end it early."""

    step_id: str
    until: UtcDatetime
    event: str | None = None
    timer_key: str


class ReplyRecord(_Model):
    """A message from the customer during the enrolment, kept for ``replied`` conditions."""

    at: UtcDatetime
    text: str | None = None
    button: str | None = None
    channel: Channel | None = None

    def reply(self) -> Reply:
        """The language's view of it."""
        return Reply(at=self.at, text=self.text, button=self.button, channel=self.channel)


class Enrolment(_Model):
    """One customer in one version of a workflow: where they are, what each step did, and what woke them last.

    Stored one item per enrolment under the customer (``ENROL#<workflow id>#<id>``), written with optimistic locking
    on ``version``: the repository writes with ``version = :loaded`` and stores the version ``advance`` returns.
    """

    id: str
    workflow_id: str
    workflow_version: int = Field(ge=1)
    customer_id: CustomerId
    key: str | None = None
    #: The frequency group counted when this enrolment began (``Workflow.frequency_group``).
    frequency_group: str
    #: The event that enrolled the customer: ``event.*`` for the whole enrolment.
    trigger: DomainEvent
    status: EnrolmentStatus = EnrolmentStatus.ACTIVE
    outcome: str | None = None
    error: str | None = None
    current_step: str | None = None
    variant: str | None = None
    steps: dict[str, StepRecord] = Field(default_factory=dict)
    wait: WaitState | None = None
    replies: tuple[ReplyRecord, ...] = ()
    #: Ids of the events already applied, newest last: a redelivered event is a no-op.
    seen_events: tuple[str, ...] = ()
    version: int = Field(default=1, ge=1)
    started_at: UtcDatetime
    updated_at: UtcDatetime
    ended_at: UtcDatetime | None = None

    def info(self) -> EnrolmentInfo:
        """What ``enrolment.*`` reads."""
        return EnrolmentInfo(id=self.id, version=self.workflow_version, started_at=self.started_at, key=self.key)


# ---------------------------------------------------------------------------------------------------- wakes


class Start(_Model):
    """Run an enrolment's first steps (put on WorkflowQueue when it is enrolled)."""

    kind: Literal["start"] = "start"


class TimerFired(_Model):
    """A wait's timer: the wait at ``step_id`` due at ``due_at`` is over, unless it already ended (stale)."""

    kind: Literal["timer"] = "timer"
    step_id: str
    due_at: UtcDatetime


class EventArrived(_Model):
    """An event of the enrolled customer's that the workflow listens to (``Workflow.listens_to``)."""

    kind: Literal["event"] = "event"
    event: DomainEvent


#: What wakes an enrolment.
Wake = Annotated[Start | TimerFired | EventArrived, Field(discriminator="kind")]


class StepWake(QueueEnvelope):
    """The body of a WorkflowQueue message: which enrolment to advance, and why. Timers carry one; so do the event
    router and enrolment. The consumer loads the enrolment, calls ``advance`` and saves."""

    schema_version: Literal[1] = 1
    enrolment_id: str
    workflow_id: str
    workflow_version: int = Field(ge=1)
    customer_id: CustomerId
    wake: Wake

    @property
    def dedup_key(self) -> str:
        """What makes two messages the same wake: the enrolment and the start, the timer or the event."""
        wake = self.wake
        if isinstance(wake, Start):
            return f"{self.enrolment_id}:start"
        if isinstance(wake, TimerFired):
            return f"{self.enrolment_id}:timer:{wake.step_id}:{wake.due_at.isoformat()}"
        return f"{self.enrolment_id}:event:{wake.event.id}"

    @classmethod
    def of(cls, enrolment: Enrolment, wake: Start | TimerFired | EventArrived) -> StepWake:
        """The message that wakes ``enrolment``; the trace is the trigger's."""
        return cls(
            correlation_id=enrolment.trigger.correlation_id,
            enrolment_id=enrolment.id,
            workflow_id=enrolment.workflow_id,
            workflow_version=enrolment.workflow_version,
            customer_id=enrolment.customer_id,
            wake=wake,
        )


# -------------------------------------------------------------------------------------------------- effects


@dataclasses.dataclass(frozen=True)
class Send:
    """Put this command on OutboundQueue (its ``key`` makes a repeat one message)."""

    command: OutboundCommand


@dataclasses.dataclass(frozen=True)
class SetTimer:
    """Schedule ``body`` onto WorkflowQueue at ``at`` (``Timers.schedule(key, at, ...)``; same key, one timer)."""

    key: str
    at: datetime
    body: StepWake


@dataclasses.dataclass(frozen=True)
class CancelTimer:
    """Cancel the timer ``key`` (already fired or unknown is fine)."""

    key: str


@dataclasses.dataclass(frozen=True)
class UpdateProfile:
    """Set these profile attributes (None removes one); the profile write publishes ``customer.attribute_changed``."""

    key: str
    customer_id: str
    attributes: Mapping[str, Any]
    #: The step's instant (its input's): what the change is stamped with, so a repeat publishes the same event.
    at: datetime


@dataclasses.dataclass(frozen=True)
class CreateTask:
    """A task for a person; ``key`` is its id and idempotency key."""

    key: str
    customer_id: str
    title: str
    description: str | None
    queue: str | None
    assignee: str | None
    priority: Priority
    due_at: datetime | None
    data: Mapping[str, Any]
    at: datetime


@dataclasses.dataclass(frozen=True)
class Notify:
    """A webhook call (``url``, ``payload``) or an integration-bus event (``event_type``, ``payload``)."""

    key: str
    payload: Mapping[str, Any]
    at: datetime
    url: str | None = None
    event_type: str | None = None


@dataclasses.dataclass(frozen=True)
class Handoff:
    """Hand the customer's conversation to people in ``queue``; automation stops talking in it."""

    key: str
    customer_id: str
    queue: str
    reason: str
    priority: Priority
    at: datetime


@dataclasses.dataclass(frozen=True)
class Record:
    """A timeline line (actor: the workflow): a step taken, a wait ended, or the enrolment's end (``step_id`` None).

    ``summary`` is built from the workflow's own labels, never from customer data."""

    key: str
    step_id: str | None
    type: str
    outcome: str
    summary: str
    at: datetime


Effect = Send | SetTimer | CancelTimer | UpdateProfile | CreateTask | Notify | Handoff | Record


# --------------------------------------------------------------------------------------------------- enrol


class Refusal(StrEnum):
    """Why an event enrolled nobody."""

    DISABLED = "disabled"
    NOT_TRIGGERED = "not_triggered"
    NO_CUSTOMER = "no_customer"
    NO_KEY = "no_key"
    REENTRY = "reentry"
    FREQUENCY = "frequency"


@dataclasses.dataclass(frozen=True)
class NotEnrolled:
    """The event enrols nobody: ``reason``, and a sentence for the logs (ids and labels only)."""

    reason: Refusal
    detail: str


@dataclasses.dataclass(frozen=True)
class Enrolled:
    """A new enrolment to save, then ``Start``; ``duplicate`` when ``previous`` already holds it (a redelivered
    trigger): save nothing, but put its ``Start`` again in case the first delivery stopped before doing so."""

    enrolment: Enrolment
    duplicate: bool = False

    @property
    def start(self) -> StepWake:
        """The WorkflowQueue message that runs its first steps."""
        return StepWake.of(self.enrolment, Start())


def enrol(
    workflow: Workflow,
    event: DomainEvent,
    profile: CustomerProfile | None,
    previous: Sequence[Enrolment],
    now: datetime,
    *,
    channels: Sequence[Channel] = (),
) -> Enrolled | NotEnrolled:
    """Decide whether ``event`` enrols its customer in ``workflow``.

    Parameters
    ----------
    workflow : Workflow
        The newest enabled version.
    event : DomainEvent
        The candidate trigger (for a schedule trigger, its ``workflow.scheduled`` event, once per customer).
    profile : CustomerProfile, optional
        The customer, for ``profile.*`` in ``when``; their id is the enrolment's when the event names none.
    previous : sequence of Enrolment
        The customer's enrolments (every workflow): re-entry reads this workflow's, frequency its group's.
    now : datetime
        When the decision is made: re-entry and frequency count back from it, and the enrolment begins then.
    channels : sequence of Channel
        Where the customer can be reached (``profile.channels``).

    Returns
    -------
    Enrolled or NotEnrolled
        The enrolment (``duplicate`` for a redelivered trigger), or why there is none.
    """
    if not workflow.enabled:
        return NotEnrolled(Refusal.DISABLED, f"workflow {workflow.id!r} is disabled")
    customer_id = event.customer_id or (profile.id if profile is not None else None)
    if customer_id is None:
        return NotEnrolled(Refusal.NO_CUSTOMER, f"event {event.id} names no customer")
    facts = Facts.of(event, profile=profile, channels=channels)
    if not workflow.triggered_by(facts):
        return NotEnrolled(Refusal.NOT_TRIGGERED, f"event {event.type} does not trigger {workflow.id!r}")
    key = None
    if isinstance(workflow.trigger, EventTrigger):
        try:
            key = workflow.trigger.enrolment_key(facts)
        except MissingData as exc:
            return NotEnrolled(Refusal.NO_KEY, str(exc))
    enrolment_id = new_id(
        IdPrefix.ENROLMENT, at=event.occurred_at, seed=f"{workflow.id}:{customer_id}:{key or ''}:{event.id}"
    )
    for earlier in previous:
        if earlier.id == enrolment_id:
            return Enrolled(earlier, duplicate=True)
    mine = [earlier for earlier in previous if earlier.workflow_id == workflow.id and earlier.key == key]
    last_started = max((earlier.started_at for earlier in mine), default=None)
    if not workflow.admits(last_started, active=any(earlier.status.open for earlier in mine), now=now):
        return NotEnrolled(Refusal.REENTRY, f"re-entry ({_reentry_text(workflow)}) refuses another enrolment")
    group = workflow.frequency_group
    if workflow.frequency is not None:
        starts = [earlier.started_at for earlier in previous if earlier.frequency_group == group]
        if not workflow.frequency.allows(starts, now):
            return NotEnrolled(Refusal.FREQUENCY, f"frequency cap of group {group!r} reached")
    enrolment = Enrolment(
        id=enrolment_id,
        workflow_id=workflow.id,
        workflow_version=workflow.version,
        customer_id=customer_id,
        key=key,
        frequency_group=group,
        trigger=event,
        current_step=workflow.first.id,
        started_at=now,
        updated_at=now,
    )
    return Enrolled(enrolment)


def _reentry_text(workflow: Workflow) -> str:
    reentry = workflow.reentry
    return reentry if isinstance(reentry, str) else f"after {reentry.model_dump(mode='json')['after']}"


# ------------------------------------------------------------------------------------------------- advance


@dataclasses.dataclass(frozen=True)
class Advanced:
    """What ``advance`` did: the state to save (when ``changed``) and the effects to carry out, in order."""

    enrolment: Enrolment
    effects: tuple[Effect, ...]
    changed: bool


@dataclasses.dataclass(frozen=True)
class Customer:
    """What the engine reads about the customer when it evaluates: the profile and where they can be reached."""

    profile: CustomerProfile | None = None
    channels: tuple[Channel, ...] = ()


@dataclasses.dataclass
class _Run:
    """The enrolment being changed during one ``advance``, and the effects so far."""

    workflow: Workflow
    customer: Customer
    state: dict[str, Any]
    effects: list[Effect] = dataclasses.field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.state["id"])

    def facts(self, incoming: DomainEvent | None = None) -> Facts:
        info = EnrolmentInfo(
            id=self.id,
            version=self.workflow.version,
            started_at=self.state["started_at"],
            key=self.state["key"],
        )
        return Facts.of(
            self.state["trigger"],
            profile=self.customer.profile,
            channels=self.customer.channels,
            enrolment=info,
            steps=self.state["steps"],
            replies=[reply.reply() for reply in self.state["replies"]],
            incoming=incoming,
        )

    def record_step(self, step_id: str, record: StepRecord) -> None:
        self.state["steps"] = {**self.state["steps"], step_id: record}

    def line(self, step_id: str | None, kind: str, outcome: str, summary: str, at: datetime, suffix: str = "") -> None:
        name = step_id if step_id is not None else "end"
        self.effects.append(Record(f"{timer_key(self.id, name)}{suffix}", step_id, kind, outcome, summary, at))

    def end(self, outcome: str, at: datetime, *, status: EnrolmentStatus, error: str | None = None) -> None:
        wait = self.state["wait"]
        if wait is not None:
            self.effects.append(CancelTimer(wait.timer_key))
        self.state.update(status=status, outcome=outcome, error=error, wait=None, ended_at=at)
        self.line(None, "end", outcome, f"ended: {outcome}" + (f" ({error})" if error else ""), at)


def advance(
    enrolment: Enrolment,
    workflow: Workflow,
    customer: Customer,
    now: datetime,
    wake: Start | TimerFired | EventArrived,
) -> Advanced:
    """Apply one input to an enrolment and run its steps until it waits or ends.

    Parameters
    ----------
    enrolment : Enrolment
        As stored.
    workflow : Workflow
        The version it runs (``enrolment.workflow_version``).
    customer : Customer
        The profile and reachable channels, for ``profile.*``.
    now : datetime
        When this runs; only ``updated_at`` takes it. Steps record the input's own instant (the start, the timer's
        due time, the event's time), so a redelivery makes the same records and effects.
    wake : Start, TimerFired or EventArrived
        What woke it.

    Returns
    -------
    Advanced
        The new state (``version`` + 1 when ``changed``) and the effects. Unchanged, with no effects, for an input
        that does not apply: an ended enrolment, a start of a started one, a stale or repeated timer, an event already
        seen or of another customer.

    Raises
    ------
    ValueError
        If ``workflow`` is not the enrolment's workflow and version.
    """
    if (workflow.id, workflow.version) != (enrolment.workflow_id, enrolment.workflow_version):
        raise ValueError(
            f"enrolment {enrolment.id} runs {enrolment.workflow_id} v{enrolment.workflow_version},"
            f" not {workflow.id} v{workflow.version}"
        )
    unchanged = Advanced(enrolment, (), changed=False)
    if not enrolment.status.open:
        return unchanged
    run = _Run(workflow, customer, dict(enrolment))
    if isinstance(wake, Start):
        if enrolment.status != EnrolmentStatus.ACTIVE or enrolment.current_step is None:
            return unchanged
        _run_from(run, enrolment.current_step, enrolment.started_at)
    elif isinstance(wake, TimerFired):
        wait = enrolment.wait
        if wait is None or wait.step_id != wake.step_id or wait.until != wake.due_at:
            return unchanged  # stale: the wait ended, or it is another one
        _end_wait(run, wait, wake.due_at, WaitOutcome.TIMEOUT)
    else:
        event = wake.event
        if event.customer_id != enrolment.customer_id or event.id in enrolment.seen_events:
            return unchanged
        _apply_event(run, event)
    new = enrolment.model_copy(update={**run.state, "version": enrolment.version + 1, "updated_at": now})
    return Advanced(new, tuple(run.effects), changed=True)


def _apply_event(run: _Run, event: DomainEvent) -> None:
    state = run.state
    state["seen_events"] = (*state["seen_events"], event.id)[-MAX_SEEN_EVENTS:]
    at = max(event.occurred_at, _last_at(run))
    delivered = _DELIVERY_STATUS.get(event.type)
    if delivered is not None:
        _update_delivery(run, event, delivered)
    reply = Reply.from_event(event)
    if reply is not None:
        text = reply.text[:REPLY_TEXT_KEPT] if reply.text else None  # answers are short; an e-mail can be huge
        record = ReplyRecord(at=reply.at, text=text, button=reply.button, channel=reply.channel)
        state["replies"] = (*state["replies"], record)[-MAX_REPLIES:]
    outcome = run.workflow.ending(run.facts(incoming=event))
    if outcome is not None:
        run.end(outcome, at, status=_status_of(run.workflow, outcome))
        return
    wait: WaitState | None = state["wait"]
    if wait is None:
        return
    step = run.workflow.step(wait.step_id)
    if isinstance(step, WaitStep) and step.until is not None and step.until.met(run.facts(incoming=event)):
        _end_wait(run, wait, at, WaitOutcome.EVENT, event)


def _update_delivery(run: _Run, event: DomainEvent, status: DeliveryStatus) -> None:
    message_id = event.data.get("message_id")
    for step_id, record in run.state["steps"].items():
        if record.message_id is not None and record.message_id == message_id:
            if status_may_follow(record.status, status):
                run.record_step(step_id, record.model_copy(update={"status": status}))
            return


def _last_at(run: _Run) -> datetime:
    started: datetime = run.state["started_at"]
    return max((record.at for record in run.state["steps"].values()), default=started)


def _end_wait(run: _Run, wait: WaitState, at: datetime, outcome: WaitOutcome, event: DomainEvent | None = None) -> None:
    step = run.workflow.step(wait.step_id)
    record = run.state["steps"].get(wait.step_id) or StepRecord(at=at)
    if isinstance(step, WaitStep) and step.until is not None:
        update: dict[str, Any] = {"outcome": outcome}
        if event is not None:
            update.update(event=event.model_dump(mode="json"), text=message_text(event.data)[0])
        record = record.model_copy(update=update)
    run.record_step(wait.step_id, record)
    if event is not None:
        run.effects.append(CancelTimer(wait.timer_key))
    run.state.update(wait=None, status=EnrolmentStatus.ACTIVE)
    run.line(wait.step_id, "wait", outcome, f"wait {wait.step_id} ended ({outcome})", at, ":done")
    _run_from(run, run.workflow.next_after(wait.step_id), at)


def _status_of(workflow: Workflow, outcome: str) -> EnrolmentStatus:
    converted = workflow.goal is not None and workflow.goal.outcome == outcome
    return EnrolmentStatus.CONVERTED if converted else EnrolmentStatus.EXITED


def _run_from(run: _Run, step_id: str | None, at: datetime) -> None:
    """Run steps from ``step_id`` until a wait pauses the enrolment or it ends; every step records ``at``."""
    for _ in range(len(run.workflow.steps) + 1):  # workflows cannot loop: each step at most once
        if step_id is None:
            run.end(COMPLETED, at, status=EnrolmentStatus.COMPLETED)
            return
        run.state["current_step"] = step_id
        outcome = run.workflow.ending(run.facts())
        if outcome is not None:
            run.end(outcome, at, status=_status_of(run.workflow, outcome))
            return
        try:
            step_id = _run_step(run, run.workflow.step(step_id), at)
        except MissingData as exc:
            run.end(FAILED, at, status=EnrolmentStatus.FAILED, error=str(exc))
            return
        if not run.state["status"].open or run.state["wait"] is not None:
            return
    raise AssertionError("a workflow cannot loop")  # pragma: no cover - the language refuses loops


def _run_step(run: _Run, step: Any, at: datetime) -> str | None:
    """Run one step; the id of the step that follows (None: the end). A wait, exit or handoff stops the run."""
    key = timer_key(run.id, step.id)
    customer_id = run.state["customer_id"]
    if isinstance(step, SendStep):
        command = step.command(
            run.facts(),
            workflow_id=run.workflow.id,
            enrolment_id=run.id,
            customer_id=customer_id,
            correlation_id=run.state["trigger"].correlation_id,
            requested_at=at,
        )
        assert command.key == send_key(run.id, step.id)
        run.effects.append(Send(command))
        record = StepRecord(at=at, status=DeliveryStatus.QUEUED, channel=command.channel, message_id=command.message_id)
        run.record_step(step.id, record)
        where = str(command.channel) if command.channel is not None else f"{command.route} route"
        run.line(step.id, "send", "queued", f"sent {step.template} ({where})", at)
        return run.workflow.next_after(step.id)
    if isinstance(step, WaitStep):
        return _start_wait(run, step, at)
    if isinstance(step, BranchStep):
        target = step.choose(run.facts())
        run.record_step(step.id, StepRecord(at=at))
        run.line(step.id, "branch", target, f"branch {step.id} → {target}", at)
        return target
    if isinstance(step, SplitStep):
        variant = step.choose(run.id)
        run.record_step(step.id, StepRecord(at=at, variant=variant.name))
        run.state["variant"] = variant.name
        run.line(step.id, "split", variant.name, f"split {step.id}: variant {variant.name}", at)
        return variant.next
    if isinstance(step, UpdateProfileStep):
        attributes = _values(step.set, run.facts())
        run.effects.append(UpdateProfile(key, customer_id, attributes, at))
        run.record_step(step.id, StepRecord(at=at))
        run.line(step.id, "update_profile", "done", f"profile: set {', '.join(sorted(attributes))}", at)
        return run.workflow.next_after(step.id)
    if isinstance(step, CreateTaskStep):
        data = _values(step.data, run.facts())
        due_at = at + step.due_in if step.due_in is not None else None
        task = CreateTask(
            key, customer_id, step.title, step.description, step.queue, step.assignee, step.priority, due_at, data, at
        )
        run.effects.append(task)
        run.record_step(step.id, StepRecord(at=at, task_id=key))
        run.line(step.id, "create_task", "created", f"task for {step.queue or step.assignee}: {step.title}", at)
        return run.workflow.next_after(step.id)
    if isinstance(step, NotifyStep):
        facts = run.facts()
        if step.webhook is not None:
            payload = {**_values(step.webhook.payload, facts), **_ids(run, step.id)}
            run.effects.append(Notify(key, payload, at, url=step.webhook.url))
            summary = "webhook called"
        else:
            assert step.event is not None
            run.effects.append(Notify(key, _values(step.event.data, facts), at, event_type=step.event.type))
            summary = f"event {step.event.type} published"
        run.record_step(step.id, StepRecord(at=at))
        run.line(step.id, "notify", "done", summary, at)
        return run.workflow.next_after(step.id)
    if isinstance(step, HandoffStep):
        run.effects.append(Handoff(key, customer_id, step.queue, step.reason, step.priority, at))
        run.record_step(step.id, StepRecord(at=at))
        run.line(step.id, "handoff", HANDED_OFF, f"handed to {step.queue}", at)
        run.end(HANDED_OFF, at, status=EnrolmentStatus.EXITED)
        return None
    assert isinstance(step, ExitStep)
    run.record_step(step.id, StepRecord(at=at))
    run.end(step.outcome, at, status=EnrolmentStatus.EXITED)
    return None


def _start_wait(run: _Run, step: WaitStep, at: datetime) -> str | None:
    due = step.due(at, run.facts())
    run.record_step(step.id, StepRecord(at=at))
    if due <= at:  # an instant already past: go on at once (to if_past when given)
        record = StepRecord(at=at, outcome=WaitOutcome.TIMEOUT) if step.until is not None else StepRecord(at=at)
        run.record_step(step.id, record)
        target = step.if_past or run.workflow.next_after(step.id)
        run.line(step.id, "wait", "past", f"wait {step.id}: already past, on to {target or 'the end'}", at)
        return target
    key = timer_key(run.id, step.id)
    wait = WaitState(step_id=step.id, until=due, event=step.until.event if step.until else None, timer_key=key)
    run.state.update(wait=wait, status=EnrolmentStatus.WAITING)
    body = StepWake(
        correlation_id=run.state["trigger"].correlation_id,
        enrolment_id=run.id,
        workflow_id=run.workflow.id,
        workflow_version=run.workflow.version,
        customer_id=run.state["customer_id"],
        wake=TimerFired(step_id=step.id, due_at=due),
    )
    run.effects.append(SetTimer(key, due, body))
    until = f" or {wait.event}" if wait.event else ""
    run.line(step.id, "wait", "waiting", f"waiting until {due.isoformat()}{until}", at)
    return None


def _values(values: Mapping[str, Any], facts: Facts) -> dict[str, JsonValue]:
    return {name: value.resolve(facts) if isinstance(value, Reference) else value for name, value in values.items()}


def _ids(run: _Run, step_id: str) -> dict[str, JsonValue]:
    return {
        "workflow_id": run.workflow.id,
        "workflow_version": run.workflow.version,
        "enrolment_id": run.id,
        "customer_id": run.state["customer_id"],
        "step_id": step_id,
    }


def listens(enrolment: Enrolment, event: DomainEvent, workflow: Workflow) -> bool:
    """Tell whether the event router should wake ``enrolment`` with ``event``: open, same customer, a type the
    workflow listens to, and not the very event that enrolled it (a redelivered trigger). ``advance`` checks again;
    this saves a queue message."""
    return (
        enrolment.status.open
        and event.customer_id == enrolment.customer_id
        and event.id != enrolment.trigger.id
        and event.type in workflow.listens_to
    )
