"""EventBridge Scheduler's one-time schedules (``at()``), fired by the twin's movable clock.

moto stores schedules but never runs them. ``OneTimeSchedules.fire_due(now)`` finds every enabled ``at()`` schedule
whose time the twin's clock has reached and does what Scheduler does with an SQS target: sends the target's
``Input`` to the queue (a FIFO queue gets the schedule's ``SqsParameters.MessageGroupId`` and a deduplication id
derived from the schedule and its time, so a schedule fired twice is one message), then deletes the schedule
(``ActionAfterCompletion: DELETE``) or remembers that it ran (``NONE``). A delivery that cannot succeed (no such
queue, a FIFO target without a group, a refused message) goes to the target's ``DeadLetterConfig`` queue with
Scheduler's error attributes and the schedule completes; a transient failure is retried on the next sweep.

Schedules are read from moto's backend in this process (the twin's moto server runs in it), not through
``ListSchedules``: its summaries carry neither the expression nor the input, so the API costs a ``GetSchedule`` and
a ``DeleteSchedule`` per timer, ~3.5 ms each on moto (10,000 due timers: ~80 s). Read in place, an idle sweep over
10,000 pending timers takes ~10 ms and a sweep of 10,000 due ones is bounded by the SQS sends (batches of ten).

Not emulated: targets other than SQS queues, ``cron()``/``rate()`` expressions of Scheduler (the template's
``rate()`` events are ``hilo.local.event_sources``'), flexible time windows (a schedule fires at the window's start),
the default notification of a schedule without ``Input``, IAM (``RoleArn`` is not checked).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from botocore.exceptions import BotoCoreError, ClientError

LogLine = Callable[[str], None]

_AT: Final = re.compile(r"^at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)$")
_NO_QUEUE: Final = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_BATCH_COUNT: Final = 10
_BATCH_BYTES: Final = 256 * 1024


def at_instant(expression: str, timezone: str | None) -> datetime | None:
    """The UTC instant of ``at(yyyy-mm-ddThh:mm:ss)`` read in ``timezone``; None for other expressions.

    Raises
    ------
    ValueError
        A malformed ``at()`` date or an unknown time zone.
    """
    if not expression.startswith("at("):
        return None
    match = _AT.match(expression.strip())
    if not match:
        raise ValueError(f"malformed one-time expression {expression!r}")
    try:
        zone = ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"unknown time zone {timezone!r}") from error
    return datetime.fromisoformat(match.group(1)).replace(tzinfo=zone).astimezone(UTC)


@dataclass(frozen=True)
class DueSchedule:
    """One schedule whose time has come, as moto holds it."""

    record: Any  # moto's Schedule: deleting checks it is still this very object
    at: datetime

    @property
    def arn(self) -> str:
        return str(self.record.arn)

    @property
    def target(self) -> dict[str, Any]:
        return dict(self.record.target)

    def dedup_id(self) -> str:
        """One message per schedule and time, however often it fires; a later schedule of the same name is new."""
        return hashlib.sha256(f"{self.arn}@{self.at.isoformat()}".encode()).hexdigest()


class OneTimeSchedules:
    """Fires the one-time schedules of one account and region of the twin's moto by the twin's clock."""

    def __init__(self, sqs: Any, region: str, account_id: str, log: LogLine) -> None:
        self.sqs = sqs
        self.region = region
        self.account_id = account_id
        self.log = log
        self._lock = threading.Lock()
        self._instants: dict[tuple[str, str | None], datetime | None] = {}
        self._completed: set[tuple[str, float]] = set()  # ActionAfterCompletion NONE: (arn, last modified)
        self._queue_urls: dict[str, str | None] = {}
        self._content_dedup: dict[str, bool] = {}
        self._reported: set[str] = set()

    # ------------------------------------------------------------ sweep
    def fire_due(self, now: datetime) -> int:
        """Deliver every enabled one-time schedule due at ``now``; return how many completed.

        Sweeps never overlap (the schedule loop and ``POST /_dev/clock`` both call this), so a schedule is sent once
        per sweep that finds it, and a FIFO queue drops a repeat within SQS's five minutes.
        """
        with self._lock:
            due = self._due(now)
            if not due:
                return 0
            completed: Counter[str] = Counter()
            for target_arn, schedules in _by_target(due).items():
                for schedule in self._deliver(target_arn, schedules):
                    self._complete(schedule)
                    completed[target_arn.rsplit(":", 1)[-1]] += 1
            if completed:
                counts = ", ".join(f"{queue}: {count}" for queue, count in sorted(completed.items()))
                self.log(f"timers: fired {sum(completed.values())} one-time schedule(s) ({counts})")
            return sum(completed.values())

    def _due(self, now: datetime) -> list[DueSchedule]:
        from moto.scheduler.models import scheduler_backends

        backend = scheduler_backends[self.account_id][self.region]
        instants: dict[tuple[str, str | None], datetime | None] = {}
        due: list[DueSchedule] = []
        for group in list(backend.schedule_groups.values()):
            for record in list(group.schedules.values()):
                if record.state != "ENABLED" or not record.schedule_expression.startswith("at("):
                    continue
                key = (record.schedule_expression, record.schedule_expression_timezone)
                if key not in instants:
                    instants[key] = self._instant(record, key)
                at = instants[key]
                if at is None or at > now or (record.arn, record.last_modified_date) in self._completed:
                    continue
                due.append(DueSchedule(record, at))
        self._instants = instants  # parsed once per distinct expression, kept while a schedule uses it
        # Same instant: in the order they were created (Scheduler promises none; this one is the least surprising).
        return sorted(due, key=lambda schedule: (schedule.at, schedule.record.creation_date, schedule.arn))

    def _instant(self, record: Any, key: tuple[str, str | None]) -> datetime | None:
        if key in self._instants:
            return self._instants[key]
        try:
            return at_instant(*key)
        except ValueError as error:
            self._report_once(record.arn, f"timers: {record.group_name}/{record.name} never fires here: {error}")
            return None

    # ------------------------------------------------------------ delivery
    def _deliver(self, target_arn: str, schedules: list[DueSchedule]) -> list[DueSchedule]:
        """Send to one target; return the schedules that are done (delivered or dead-lettered)."""
        if target_arn.split(":")[2:3] != ["sqs"]:
            for schedule in schedules:
                self._report_once(schedule.arn, f"timers: {_label(schedule)} targets {target_arn}; only SQS is run")
            return []
        url = self._queue_url(target_arn)
        if url is None:
            for schedule in schedules:
                self._dead_letter(schedule, "AWS.SimpleQueueService.NonExistentQueue", "The queue does not exist.")
            return schedules
        fifo = target_arn.endswith(".fifo")
        if fifo:
            self._check_content_dedup(target_arn, url)
        done: list[DueSchedule] = []
        sendable: list[tuple[DueSchedule, dict[str, Any]]] = []
        for schedule in schedules:
            target = schedule.target
            entry: dict[str, Any] = {"MessageBody": target.get("Input")}
            if not entry["MessageBody"]:
                self._report_once(schedule.arn, f"timers: {_label(schedule)} has no Input (not emulated); not fired")
                continue
            if fifo:
                entry["MessageGroupId"] = (target.get("SqsParameters") or {}).get("MessageGroupId")
                entry["MessageDeduplicationId"] = schedule.dedup_id()
                if not entry["MessageGroupId"]:
                    self._dead_letter(schedule, "ValidationException", "A FIFO queue target needs a MessageGroupId.")
                    done.append(schedule)
                    continue
            sendable.append((schedule, entry))
        for chunk in _chunks(sendable):
            done.extend(self._send_batch(url, chunk))
        return done

    def _send_batch(self, url: str, chunk: list[tuple[DueSchedule, dict[str, Any]]]) -> list[DueSchedule]:
        entries = [{"Id": str(index), **entry} for index, (_, entry) in enumerate(chunk)]
        try:
            response = self.sqs.send_message_batch(QueueUrl=url, Entries=entries)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code in _NO_QUEUE:
                for schedule, _ in chunk:
                    self._dead_letter(schedule, code, "The queue does not exist.")
                return [schedule for schedule, _ in chunk]
            self.log(f"timers: sending to {url.rsplit('/', 1)[-1]} failed ({code}); retried on the next sweep")
            return []
        except BotoCoreError as error:
            self.log(f"timers: sending to {url.rsplit('/', 1)[-1]} failed ({error}); retried on the next sweep")
            return []
        done = [chunk[int(item["Id"])][0] for item in response.get("Successful", [])]
        for failure in response.get("Failed", []):
            schedule = chunk[int(failure["Id"])][0]
            if failure.get("SenderFault"):
                self._dead_letter(schedule, str(failure.get("Code")), str(failure.get("Message", "")))
                done.append(schedule)
            else:
                self.log(f"timers: {_label(schedule)} not delivered ({failure.get('Code')}); retried on the next sweep")
        return done

    def _dead_letter(self, schedule: DueSchedule, code: str, message: str) -> None:
        """Park the undeliverable timer as Scheduler does: its input on the DLQ, the error in message attributes."""
        target = schedule.target
        dlq_arn = (target.get("DeadLetterConfig") or {}).get("Arn")
        dlq_url = self._queue_url(dlq_arn) if dlq_arn else None
        if dlq_url is None:
            self.log(f"timers: {_label(schedule)} could not be delivered ({code}) and has no dead-letter queue: lost")
            return
        attributes = {
            "ERROR_CODE": code,
            "ERROR_MESSAGE": message or code,
            "SCHEDULE_ARN": schedule.arn,
            "TARGET_ARN": str(target.get("Arn", "")),
        }
        try:
            self.sqs.send_message(
                QueueUrl=dlq_url,
                MessageBody=target.get("Input") or "{}",
                MessageAttributes={
                    name: {"DataType": "String", "StringValue": text} for name, text in attributes.items()
                },
            )
        except (ClientError, BotoCoreError) as error:
            self.log(f"timers: {_label(schedule)} could not be dead-lettered ({error}): lost")
            return
        self.log(
            f"timers: {_label(schedule)} could not be delivered ({code}); dead-lettered to {dlq_arn.split(':')[-1]}"
        )

    def _complete(self, schedule: DueSchedule) -> None:
        record = schedule.record
        if record.action_after_completion != "DELETE":
            self._completed.add((record.arn, record.last_modified_date))
            return
        from moto.scheduler.models import scheduler_backends

        group = scheduler_backends[self.account_id][self.region].schedule_groups.get(record.group_name)
        if group is not None and group.schedules.get(record.name) is record:  # not one re-created meanwhile
            group.schedules.pop(record.name, None)

    # ------------------------------------------------------------ queues
    def _queue_url(self, queue_arn: str) -> str | None:
        if queue_arn not in self._queue_urls:
            parts = queue_arn.split(":")
            try:
                url = self.sqs.get_queue_url(QueueName=parts[-1], QueueOwnerAWSAccountId=parts[4])["QueueUrl"]
            except (ClientError, BotoCoreError, IndexError):
                return None  # not cached: the queue may be created later
            self._queue_urls[queue_arn] = url
        return self._queue_urls[queue_arn]

    def _check_content_dedup(self, queue_arn: str, url: str) -> None:
        """Scheduler delivers to a FIFO queue only if it deduplicates by content: say so here, once per queue."""
        if queue_arn in self._content_dedup:
            return
        try:
            attributes = self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ContentBasedDeduplication"])
        except (ClientError, BotoCoreError):
            return  # the send that follows reports what is wrong with the queue
        enabled = attributes.get("Attributes", {}).get("ContentBasedDeduplication") == "true"
        self._content_dedup[queue_arn] = enabled
        if not enabled:
            self.log(
                f"timers: {queue_arn.split(':')[-1]} has ContentBasedDeduplication off; EventBridge Scheduler cannot "
                "deliver to it in AWS (delivered here anyway)"
            )

    def _report_once(self, key: str, line: str) -> None:
        if key not in self._reported:
            self._reported.add(key)
            self.log(line)


def _label(schedule: DueSchedule) -> str:
    return f"schedule {schedule.record.group_name}/{schedule.record.name}"


def _by_target(due: Iterable[DueSchedule]) -> dict[str, list[DueSchedule]]:
    grouped: dict[str, list[DueSchedule]] = {}
    for schedule in due:
        grouped.setdefault(str(schedule.target.get("Arn", "")), []).append(schedule)
    return grouped


def _chunks(
    entries: list[tuple[DueSchedule, dict[str, Any]]],
) -> Iterable[list[tuple[DueSchedule, dict[str, Any]]]]:
    """SendMessageBatch's limits: ten entries and 256 KiB of bodies a request."""
    chunk: list[tuple[DueSchedule, dict[str, Any]]] = []
    size = 0
    for item in entries:
        length = len(item[1]["MessageBody"].encode())
        if chunk and (len(chunk) == _BATCH_COUNT or size + length > _BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += length
    if chunk:
        yield chunk
