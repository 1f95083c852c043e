"""Schedule triggers: which runs are due, and the ``workflow.scheduled`` event of each customer a run enrols.

A ``schedule`` trigger fires at ``at`` on each of ``days`` in ``time_zone``. The schedule function
(``functions/workflow_schedule``) ticks every few minutes and asks ``due_runs`` which runs fell between the last
instant it covered and now; each due run then becomes one ``workflow.scheduled`` event per live customer whose profile
fits the audience, published to EventsQueue, where the events router enrols them as for any other trigger.

The rules, and why:

- **Local time, DST-correct.** A run is at ``at`` on the local calendar of ``time_zone`` (zoneinfo). A local time the
  clocks skip (spring forward) fires at the first instant after the jump, i.e. when the clocks read the end of the gap;
  a local time that happens twice (fall back) fires once, at its first occurrence.
- **Due means ``covered < scheduled_for <= now``.** ``covered`` is where the previous tick stopped looking, so a run is
  considered by exactly one tick; the run markers (``shared.adapters.schedule_store``) make that hold across
  concurrent or repeated ticks too. A deployment's very first tick looks back ``FIRST_LOOK_BACK`` (15 minutes): a
  stack deployed just before 09:00 still fires its 09:00 run, one deployed at 15:00 does not send that morning's.
- **Only the latest missed run of each workflow fires, and never one older than ``MAX_CATCH_UP`` (7 days).** After an
  outage (or ``hilo clock advance 3d``) a daily workflow fires once, for its most recent time, not three times in a
  row; the runs it replaces are counted (``DueRun.missed``) and logged. A run still unfinished ``MAX_CATCH_UP`` after
  its time is closed as ``expired`` rather than reaching customers days late.
- **One event per customer and run, with a seeded id** (``workflow_id:scheduled_for:customer_id``), occurring at the
  run's time: a page published again after a crash re-publishes the same ids, and the router's enrolment (seeded by
  the event id) is idempotent.
- **The audience is checked before publishing** with the router's own rule (``Workflow.triggered_by``), so only
  customers who fit get an event; the router checks again against the newest version when the event arrives.
  ``profile.channels`` needs the customer's identities, which are separate items: only an audience that reads it
  costs one more read per live customer (``reads_channels``).

``WorkflowSchedule`` is the use case over ports: the run book (markers and cursor), the profile pages and the event
publisher. It spends at most the invocation's time minus ``TIME_MARGIN_SECONDS``; a run whose scan is not finished
keeps its position and the next tick goes on from there.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from typing import Any, Final, Protocol
from zoneinfo import ZoneInfo

from shared.errors import PermanentError, RetryableError
from shared.ingest.ports import Clock
from shared.models.common import ensure_utc, sortable_timestamp
from shared.models.customer import CustomerProfile
from shared.models.events import DomainEvent
from shared.observability import logger
from shared.workflows.language import (
    SCHEDULED,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Facts,
    Not,
    Reference,
    ScheduleTrigger,
    Weekday,
    Workflow,
)
from shared.workflows.registry import WorkflowSource
from shared.workflows.steps import reachable

#: The oldest run a tick still fires: after a longer outage, runs older than this are gone for good.
MAX_CATCH_UP: Final = timedelta(days=7)
#: How far back a deployment's first tick looks (there is no cursor yet).
FIRST_LOOK_BACK: Final = timedelta(minutes=15)
#: The ``source`` of every ``workflow.scheduled`` event.
SOURCE: Final = "hilo.workflows"
#: Time left in the invocation below which no new page is read: a page (scan, audience, publish) fits well inside.
TIME_MARGIN_SECONDS: Final = 45.0
#: Items a scan page evaluates (DynamoDB's ``Limit``: items read before the filter; a page also stops at 1 MB).
DEFAULT_PAGE_SIZE: Final = 1000

_WEEKDAYS: Final = tuple(Weekday)  # Monday first, as ``date.weekday()`` counts
_CHANNELS: Final = "profile.channels"

# ------------------------------------------------------------------------------------------------ run times


def local_instant(day: date, at: time, zone: tzinfo) -> datetime:
    """The UTC instant when the clocks of ``zone`` read ``at`` on ``day``.

    A repeated local time (the clocks went back) is its first occurrence. A skipped one (the clocks jumped over it)
    is the instant of the jump, when the clocks read the end of the gap: the next valid instant.
    """
    wall = datetime.combine(day, at)
    later = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    if later.astimezone(zone).replace(tzinfo=None) == wall:
        return later  # it exists; fold=0 is the first of two
    # In a gap, fold=1 reads the wall time with the offset after the jump (an instant before it) and fold=0 with the
    # offset before (an instant after it): the jump lies between. Find it to the second.
    low = int(wall.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    high = int(later.timestamp())
    while low < high:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).replace(tzinfo=None) >= wall:
            high = middle
        else:
            low = middle + 1
    return datetime.fromtimestamp(low, UTC)


def run_times(trigger: ScheduleTrigger, after: datetime, until: datetime) -> tuple[datetime, ...]:
    """Every instant in ``(after, until]`` at which ``trigger`` fires, oldest first, in UTC.

    Parameters
    ----------
    trigger : ScheduleTrigger
        ``at`` on ``days`` in ``time_zone``.
    after, until : datetime
        Aware instants; meant for windows of days (``due_runs`` never asks for more than ``MAX_CATCH_UP``).

    Returns
    -------
    tuple of datetime
        Aware UTC instants; empty when ``until <= after``.
    """
    after, until = ensure_utc(after), ensure_utc(until)
    if until <= after:
        return ()
    zone = ZoneInfo(trigger.time_zone)
    weekdays = {_WEEKDAYS.index(day) for day in trigger.days}
    # A day early and late: the zone's offset moves the local calendar off UTC's, and a gap can push a run past
    # midnight.
    day = after.astimezone(zone).date() - timedelta(days=1)
    last = until.astimezone(zone).date() + timedelta(days=1)
    found = []
    while day <= last:
        if day.weekday() in weekdays:
            instant = local_instant(day, trigger.at, zone)
            if after < instant <= until:
                found.append(instant)
        day += timedelta(days=1)
    return tuple(sorted(found))


# ------------------------------------------------------------------------------------------------ due runs


@dataclass(frozen=True, order=True)
class ScheduledRun:
    """One run of a workflow's schedule: its time (aware, UTC) and the workflow. Ordered by time."""

    scheduled_for: datetime
    workflow_id: str

    @property
    def key(self) -> str:
        """``<workflow id>#<scheduled_for, fixed width>``: the run marker's key and its name in the cursor."""
        return f"{self.workflow_id}#{sortable_timestamp(self.scheduled_for)}"

    @classmethod
    def from_key(cls, key: str) -> ScheduledRun:
        """The run named by ``key``; ``ValueError`` when it is not one."""
        workflow_id, _, stamp = key.rpartition("#")
        if not workflow_id:
            raise ValueError(f"{key!r} is not a run key")
        return cls(ensure_utc(datetime.fromisoformat(stamp)), workflow_id)

    @property
    def correlation_id(self) -> str:
        """Carried by every event of the run, so its logs and enrolments can be followed back to it."""
        return f"schedule:{self.key}"

    def event_for(self, customer_id: str) -> DomainEvent:
        """The ``workflow.scheduled`` event that enrols ``customer_id``: the same id every time it is made."""
        scheduled_for = self.scheduled_for.isoformat()
        return DomainEvent.new(
            SCHEDULED,
            source=SOURCE,
            correlation_id=self.correlation_id,
            customer_id=customer_id,
            data={"workflow_id": self.workflow_id, "scheduled_for": scheduled_for},
            occurred_at=self.scheduled_for,
            id_seed=f"{self.workflow_id}:{scheduled_for}:{customer_id}",
        )


@dataclass(frozen=True)
class DueRun:
    """A run to fire now: which, the workflow version that made it due, and how many earlier runs it replaces."""

    run: ScheduledRun
    version: int
    missed: int = 0


def due_runs(
    workflows: Iterable[Workflow], covered: datetime, now: datetime, *, catch_up: timedelta = MAX_CATCH_UP
) -> tuple[DueRun, ...]:
    """The runs to fire now: for each workflow with a schedule trigger, its latest run in ``(covered, now]``.

    Parameters
    ----------
    workflows : iterable of Workflow
        The enabled workflows (others are ignored: their triggers are not schedules).
    covered : datetime
        The last instant a previous tick looked at; runs at or before it were considered then.
    now : datetime
        This tick's time.
    catch_up : timedelta
        How far back a run may still fire (``MAX_CATCH_UP``): the window starts no earlier than ``now - catch_up``.

    Returns
    -------
    tuple of DueRun
        At most one per workflow (its latest run in the window, with ``missed`` = the earlier ones it replaces),
        oldest first.
    """
    start = max(ensure_utc(covered), ensure_utc(now) - catch_up)
    due = []
    for workflow in workflows:
        trigger = workflow.trigger
        if not isinstance(trigger, ScheduleTrigger):
            continue
        times = run_times(trigger, start, now)
        if times:
            due.append(DueRun(ScheduledRun(times[-1], workflow.id), workflow.version, missed=len(times) - 1))
    return tuple(sorted(due, key=lambda item: item.run))


# ---------------------------------------------------------------------------------------------- the audience


def reads_channels(condition: Condition) -> bool:
    """Tell whether ``condition`` reads ``profile.channels`` (which needs the customer's identities)."""
    if isinstance(condition, AllOf | AnyOf):
        return any(
            reads_channels(inner) for inner in (condition.all if isinstance(condition, AllOf) else condition.any)
        )
    if isinstance(condition, Not):
        return reads_channels(condition.not_)
    if isinstance(condition, Compare):
        _, operand = condition.operator
        sources = [condition.field, operand.source if isinstance(operand, Reference) else ""]
        return any(source.startswith(_CHANNELS) for source in sources)
    return False


def event_if_fits(workflow: Workflow, run: ScheduledRun, profile: CustomerProfile) -> DomainEvent | None:
    """The run's event for this customer when their profile fits the audience (the router's own rule), else None.

    ``profile`` carries identities when the audience reads ``profile.channels``; otherwise they are not needed.
    """
    event = run.event_for(profile.id)
    facts = Facts.of(event, profile=profile, channels=reachable(profile))
    return event if workflow.triggered_by(facts) else None


# ---------------------------------------------------------------------------------------------------- ports

#: Where a scan stopped (DynamoDB's ``LastEvaluatedKey``, opaque to the use case).
Position = Mapping[str, Any]


@dataclass(frozen=True)
class ScheduleCursor:
    """What the schedule has done so far: the last instant looked at, and the runs not finished yet."""

    covered: datetime
    open: tuple[ScheduledRun, ...] = ()


class ClaimStatus(StrEnum):
    """What claiming a run for this invocation found."""

    CLAIMED = "claimed"
    CLOSED = "closed"  # finished already (another tick, or this one before a crash)
    BUSY = "busy"  # another invocation holds it
    MISSING = "missing"  # no marker (expired by TTL): nothing to do


@dataclass(frozen=True)
class Claim:
    """The run is this invocation's until its lease ends; ``resume`` is where its scan goes on (None: the start)."""

    status: ClaimStatus
    resume: Position | None = None


class RunOutcome(StrEnum):
    """How a run ended."""

    DONE = "done"  # every live profile was looked at
    DROPPED = "dropped"  # the workflow was disabled (or no longer a schedule) before the run finished
    EXPIRED = "expired"  # not finished within MAX_CATCH_UP of its time


@dataclass(frozen=True)
class PageCounts:
    """What one page did: live profiles read, events published."""

    profiles: int = 0
    published: int = 0


class RunBook(Protocol):
    """Run markers and the cursor (``shared.adapters.schedule_store.ScheduleStore``)."""

    def cursor(self) -> ScheduleCursor | None:
        """The cursor, read strongly consistent; None before the first tick."""
        ...

    def open(self, due: Sequence[DueRun], covered: datetime, at: datetime) -> None:
        """Create a marker per due run unless it exists, add them to the open runs, and move ``covered`` forward."""
        ...

    def claim(self, run: ScheduledRun, owner: str, *, until: datetime, now: datetime) -> Claim:
        """Lease an open run to ``owner`` until ``until``, unless another owner's lease runs past ``now``."""
        ...

    def advance(self, run: ScheduledRun, owner: str, resume: Position, counts: PageCounts) -> bool:
        """Record a page done and where the scan goes on; False when ``owner`` no longer holds the run."""
        ...

    def close(self, run: ScheduledRun, owner: str, outcome: RunOutcome, counts: PageCounts, at: datetime) -> None:
        """End the run (with the last page's counts) and take it off the open runs."""
        ...

    def release(self, run: ScheduledRun, owner: str) -> None:
        """Give the lease up, so the next tick goes on at once."""
        ...

    def forget(self, runs: Sequence[ScheduledRun]) -> None:
        """Take runs that are closed or gone off the open runs."""
        ...


@dataclass(frozen=True)
class ProfilePage:
    """Live (not merged) profiles, without identities, and where the next page starts (None: the scan is done)."""

    profiles: tuple[CustomerProfile, ...]
    next: Position | None


class Profiles(Protocol):
    """Pages of every live profile (``shared.adapters.schedule_store.ProfileScan``), and one with identities."""

    def page(self, start: Position | None, limit: int) -> ProfilePage: ...

    def get_profile(self, customer_id: str) -> CustomerProfile | None: ...


class Publisher(Protocol):
    """EventsQueue and the integration bus (``EventPublisher``)."""

    def publish(self, events: Sequence[DomainEvent]) -> None: ...


# -------------------------------------------------------------------------------------------------- use case


class RunStatus(StrEnum):
    """What a tick did with one open run."""

    DONE = "done"
    DROPPED = "dropped"
    EXPIRED = "expired"
    PAUSED = "paused"  # out of time: the next tick goes on where it stopped
    BUSY = "busy"  # another invocation holds it
    LOST = "lost"  # the lease ended under us (another invocation took over)
    CLOSED = "closed"  # it was finished already
    NOT_REACHED = "not_reached"  # out of time before it was claimed


@dataclass(frozen=True)
class RunReport:
    """One run in one tick: ids and counts only (logs)."""

    run: ScheduledRun
    status: RunStatus
    pages: int = 0
    profiles: int = 0
    published: int = 0


@dataclass(frozen=True)
class Tick:
    """What one tick did."""

    now: datetime
    due: tuple[DueRun, ...]
    runs: tuple[RunReport, ...]

    @property
    def published(self) -> int:
        """Events published in this tick."""
        return sum(report.published for report in self.runs)

    def summary(self) -> dict[str, Any]:
        """The tick for the logs and the function's answer."""
        return {
            "now": self.now.isoformat(),
            "due": [{"run": due.run.key, "version": due.version, "missed": due.missed} for due in self.due],
            "runs": [{"run": report.run.key, "status": str(report.status), "pages": report.pages,
                      "profiles": report.profiles, "published": report.published} for report in self.runs],
        }  # fmt: skip


class WorkflowSchedule:
    """The schedule function's use case: open the due runs, then work through the open ones while time lasts."""

    def __init__(
        self,
        *,
        workflows: WorkflowSource,
        runs: RunBook,
        profiles: Profiles,
        events: Publisher,
        clock: Clock,
        page_size: int = DEFAULT_PAGE_SIZE,
        margin_seconds: float = TIME_MARGIN_SECONDS,
    ) -> None:
        self._workflows = workflows
        self._runs = runs
        self._profiles = profiles
        self._events = events
        self._clock = clock
        self._page_size = page_size
        self._margin = margin_seconds

    def tick(self, *, remaining: Callable[[], float], owner: str) -> Tick:
        """One tick.

        Parameters
        ----------
        remaining : callable returning float
            Seconds left in this invocation (Lambda's ``get_remaining_time_in_millis() / 1000``).
        owner : str
            This invocation's id (Lambda's request id): the holder of the leases it takes.

        Returns
        -------
        Tick
            The runs that became due and what happened to each open run.

        Raises
        ------
        RetryableError
            The table, queue or bus failed; what was done stays done, and the next tick goes on from there.
        """
        now = self._clock()
        cursor = self._runs.cursor()
        schedules = {w.id: w for w in self._workflows.enabled() if isinstance(w.trigger, ScheduleTrigger)}
        covered = cursor.covered if cursor is not None else now - FIRST_LOOK_BACK
        due = due_runs(schedules.values(), covered, now)
        # Markers before the cursor moves: a crash in between leaves the runs due for the next tick to open again.
        self._runs.open(due, covered=now, at=now)
        for item in due:
            if item.missed:
                logger.warning("scheduled runs missed; only the latest fires",
                               extra={"workflow_id": item.run.workflow_id, "missed": item.missed,
                                      "scheduled_for": item.run.scheduled_for.isoformat()})  # fmt: skip
        pending = sorted({*(cursor.open if cursor is not None else ()), *(item.run for item in due)})
        reports = []
        for run in pending:
            if remaining() < self._margin:
                reports.append(RunReport(run, RunStatus.NOT_REACHED))
                continue
            reports.append(self._work(run, schedules.get(run.workflow_id), owner, remaining))
        return Tick(now, due, tuple(reports))

    def _work(
        self, run: ScheduledRun, workflow: Workflow | None, owner: str, remaining: Callable[[], float]
    ) -> RunReport:
        now = self._clock()
        claim = self._runs.claim(run, owner, until=now + timedelta(seconds=remaining()), now=now)
        if claim.status in (ClaimStatus.CLOSED, ClaimStatus.MISSING):
            self._runs.forget([run])
            return RunReport(run, RunStatus.CLOSED)
        if claim.status == ClaimStatus.BUSY:
            return RunReport(run, RunStatus.BUSY)
        try:
            if now - run.scheduled_for > MAX_CATCH_UP:
                self._runs.close(run, owner, RunOutcome.EXPIRED, PageCounts(), now)
                logger.warning("scheduled run expired unfinished", extra={"run": run.key})
                return RunReport(run, RunStatus.EXPIRED)
            if workflow is None:
                self._runs.close(run, owner, RunOutcome.DROPPED, PageCounts(), now)
                logger.info("scheduled run dropped: its workflow is not an enabled schedule", extra={"run": run.key})
                return RunReport(run, RunStatus.DROPPED)
            return self._scan(run, workflow, claim.resume, owner, remaining)
        except Exception:
            # Let the next tick go on at once; the error itself is what the caller must see.
            with contextlib.suppress(RetryableError, PermanentError):
                self._runs.release(run, owner)
            raise

    def _scan(
        self,
        run: ScheduledRun,
        workflow: Workflow,
        position: Position | None,
        owner: str,
        remaining: Callable[[], float],
    ) -> RunReport:
        assert isinstance(workflow.trigger, ScheduleTrigger)
        with_identities = reads_channels(workflow.trigger.audience)
        pages = profiles = published = 0
        while True:
            if remaining() < self._margin:
                self._runs.release(run, owner)
                return RunReport(run, RunStatus.PAUSED, pages, profiles, published)
            page = self._profiles.page(position, self._page_size)
            events = []
            for profile in page.profiles:
                customer: CustomerProfile | None = profile
                if with_identities:
                    customer = self._profiles.get_profile(profile.id)
                if customer is None or customer.is_merged:  # merged or gone since the scan read it
                    continue
                event = event_if_fits(workflow, run, customer)
                if event is not None:
                    events.append(event)
            if events:
                self._events.publish(events)
            counts = PageCounts(len(page.profiles), len(events))
            pages, profiles, published = pages + 1, profiles + counts.profiles, published + counts.published
            if page.next is None:
                self._runs.close(run, owner, RunOutcome.DONE, counts, self._clock())
                return RunReport(run, RunStatus.DONE, pages, profiles, published)
            if not self._runs.advance(run, owner, page.next, counts):
                logger.warning("scheduled run taken over by another invocation", extra={"run": run.key})
                return RunReport(run, RunStatus.LOST, pages, profiles, published)
            position = page.next
