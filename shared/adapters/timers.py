"""Durable timers: put a message on an SQS queue at a given instant, seconds to months away.

In AWS a timer is an EventBridge Scheduler one-time schedule (``at()``) in the stack's ``TimerGroup``, whose target
is the queue; Scheduler sends ``body`` with the ``TimerRole``, retries for up to a day and then dead-letters it to
``TimerDlq``, and deletes the schedule once it has run. Locally ``hilo dev`` fires the same schedules by its movable
clock (``hilo.local.timers``).

- **Names.** A schedule's name is the SHA-256 of the caller's key (64 hex characters, Scheduler's maximum), so the
  same timer scheduled twice is one schedule (``ConflictException`` means it already exists) and no customer data
  appears in a name. A key names one instant: scheduling a key again with another time keeps the first one.
- **Times.** Scheduler fires within the minute of its ``at()`` time, and an ``at()`` already past is not a timer
  anyone can rely on. So an instant already reached is sent straight to the queue, and any other is rounded *up* to
  a whole minute at least :data:`MIN_LEAD` away: a timer never arrives before its instant, at most ~90 s after.
- **FIFO targets** need ``group_id`` (the message group). Scheduler requires the target FIFO queue to have
  content-based deduplication enabled; a message sent straight to the queue carries its own deduplication id.

Every ``ClientError`` becomes a ``PermanentError`` (``ValidationException``: retrying cannot help) or a
``RetryableError`` (throttling, quotas, outages); bodies never appear in errors or logs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from shared import clock as shared_clock
from shared.adapters import aws
from shared.errors import InvalidInput, PermanentError, RetryableError

#: The nearest future ``at()`` time a timer asks for: Scheduler must receive it before that minute starts.
MIN_LEAD: Final = timedelta(seconds=30)

#: Scheduler's retries before a timer is dead-lettered: its maxima, so a day-long SQS outage loses nothing.
RETRY_POLICY: Final = {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}

_PERMANENT_CODES: Final = frozenset({"ValidationException"})
_ALREADY_SCHEDULED: Final = "ConflictException"
_NOT_FOUND: Final = "ResourceNotFoundException"


def timer_name(key: str) -> str:
    """The schedule name of the timer ``key``: 64 characters of ``[0-9a-f]``, within Scheduler's name rules."""
    return hashlib.sha256(key.encode()).hexdigest()


def at_expression(instant: datetime) -> str:
    """``at(yyyy-mm-ddThh:mm:ss)`` of ``instant`` (timezone-aware), in UTC."""
    return f"at({instant.astimezone(UTC):%Y-%m-%dT%H:%M:%S})"


def fire_time(at: datetime, now: datetime) -> datetime:
    """The whole minute Scheduler is asked to fire at: never before ``at``, nor before ``now + MIN_LEAD``."""
    earliest = max(at, now + MIN_LEAD).astimezone(UTC)
    whole = earliest.replace(second=0, microsecond=0)
    return whole if whole == earliest else whole + timedelta(minutes=1)


def queue_url(queue_arn: str) -> str:
    """The URL of the SQS queue ``queue_arn`` (``arn:<partition>:sqs:<region>:<account>:<name>``)."""
    parts = queue_arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not all(parts[3:]):
        raise InvalidInput("A timer's target must be the ARN of an SQS queue.")
    partition, region, account, name = parts[1], parts[3], parts[4], parts[5]
    suffix = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{suffix}/{account}/{name}"


class Timers:
    """One-time schedules in one schedule group, each delivering a message to an SQS queue."""

    def __init__(
        self,
        group_name: str,
        role_arn: str,
        dead_letter_arn: str | None = None,
        *,
        scheduler: Any | None = None,
        sqs: Any | None = None,
        clock: Callable[[], datetime] = shared_clock.now,
    ) -> None:
        self.group_name = group_name
        self.role_arn = role_arn
        self.dead_letter_arn = dead_letter_arn
        self._scheduler = scheduler
        self._sqs = sqs
        self._clock = clock

    def schedule(self, key: str, at: datetime, target_arn: str, body: str, *, group_id: str | None = None) -> None:
        """Put ``body`` on the queue ``target_arn`` at ``at``; idempotent on ``key``.

        Parameters
        ----------
        key
            Names the timer (e.g. ``outbound:<command key>``); hashed into the schedule name.
        at
            Timezone-aware instant. Already reached: the message is sent now. Otherwise it arrives at or after ``at``
            (rounded up to the minute, see :func:`fire_time`).
        target_arn
            ARN of the SQS queue that receives ``body``.
        body
            The message body, as the queue's consumer reads it.
        group_id
            The message group, required for a FIFO queue (ignored for a standard one).

        Raises
        ------
        InvalidInput
            A naive ``at``, an empty key or body, a target that is not an SQS queue, a FIFO target without group.
        PermanentError
            Scheduler refused the schedule as invalid.
        RetryableError
            Scheduler or SQS throttled, failed or could not be reached; scheduling again is safe.
        """
        if not key:
            raise InvalidInput("A timer needs a key.")
        if at.tzinfo is None or at.utcoffset() is None:
            raise InvalidInput("A timer's instant must be timezone-aware.")
        if not body:
            raise InvalidInput("A timer needs a body.")
        url = queue_url(target_arn)
        fifo = target_arn.endswith(".fifo")
        if fifo and not group_id:
            raise InvalidInput("A timer on a FIFO queue needs a message group id.")
        now = self._clock()
        if at <= now:
            self._send_now(key, at, url, body, group_id if fifo else None)
            return
        target: dict[str, Any] = {
            "Arn": target_arn,
            "RoleArn": self.role_arn,
            "Input": body,
            "RetryPolicy": RETRY_POLICY,
        }
        if fifo:
            target["SqsParameters"] = {"MessageGroupId": group_id}
        if self.dead_letter_arn:
            target["DeadLetterConfig"] = {"Arn": self.dead_letter_arn}
        self._scheduler = self._scheduler or aws.client("scheduler")
        try:
            self._scheduler.create_schedule(
                Name=timer_name(key),
                GroupName=self.group_name,
                ScheduleExpression=at_expression(fire_time(at, now)),
                ScheduleExpressionTimezone="UTC",
                FlexibleTimeWindow={"Mode": "OFF"},
                ActionAfterCompletion="DELETE",
                Target=target,
            )
        except ClientError as error:
            if _code(error) != _ALREADY_SCHEDULED:
                raise _translated(error, "schedule") from error
        except BotoCoreError as error:
            raise RetryableError("Could not reach the scheduler to set a timer; try again.") from error

    def cancel(self, key: str) -> None:
        """Forget the timer ``key``; a timer that already fired, was cancelled or never existed is fine.

        Raises
        ------
        PermanentError, RetryableError
            As :meth:`schedule`.
        """
        self._scheduler = self._scheduler or aws.client("scheduler")
        try:
            self._scheduler.delete_schedule(Name=timer_name(key), GroupName=self.group_name)
        except ClientError as error:
            if _code(error) != _NOT_FOUND:
                raise _translated(error, "cancel") from error
        except BotoCoreError as error:
            raise RetryableError("Could not reach the scheduler to cancel a timer; try again.") from error

    def _send_now(self, key: str, at: datetime, url: str, body: str, group_id: str | None) -> None:
        request: dict[str, Any] = {"QueueUrl": url, "MessageBody": body}
        if group_id is not None:
            # One message per timer and instant: a retried call within SQS's five minutes is dropped as a duplicate.
            request["MessageGroupId"] = group_id
            request["MessageDeduplicationId"] = timer_name(f"{key}@{at.isoformat()}")
        self._sqs = self._sqs or aws.client("sqs")
        try:
            self._sqs.send_message(**request)
        except (ClientError, BotoCoreError) as error:
            raise RetryableError("Could not queue a timer that is already due; try again.") from error


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _translated(error: ClientError, action: str) -> PermanentError | RetryableError:
    code = _code(error)
    if code in _PERMANENT_CODES:
        return PermanentError(f"The scheduler refused to {action} a timer ({code}).")
    return RetryableError(f"The scheduler failed to {action} a timer ({code or 'unknown error'}); try again.")
