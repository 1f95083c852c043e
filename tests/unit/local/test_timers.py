"""Durable timers: the Timers adapter on moto's EventBridge Scheduler, and the twin firing them by its movable clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from hilo.local.timers import OneTimeSchedules, at_instant
from shared.adapters.timers import Timers, fire_time, timer_name
from shared.errors import InvalidInput, PermanentError, RetryableError

ACCOUNT = "123456789012"
REGION = "us-east-1"
GROUP = "hilo-TimerGroup"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/hilo-TimerRole"
T0 = datetime(2026, 3, 2, 21, 30, tzinfo=UTC)
ZONE_BOGOTA = ZoneInfo("America/Bogota")


@dataclass
class MovableClock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


@dataclass
class Aws:
    scheduler: Any
    sqs: Any
    clock: MovableClock
    queues: dict[str, str] = field(default_factory=dict)  # name -> url
    lines: list[str] = field(default_factory=list)

    def arn(self, name: str) -> str:
        return f"arn:aws:sqs:{REGION}:{ACCOUNT}:{name}"

    def timers(self, *, dead_letter: bool = True) -> Timers:
        dlq = self.arn("timer-dlq") if dead_letter else None
        return Timers(GROUP, ROLE, dlq, scheduler=self.scheduler, sqs=self.sqs, clock=self.clock)

    def twin(self) -> OneTimeSchedules:
        return OneTimeSchedules(self.sqs, REGION, ACCOUNT, self.lines.append)

    def schedules(self) -> list[str]:
        return [s["Name"] for s in self.scheduler.list_schedules(GroupName=GROUP, MaxResults=100)["Schedules"]]

    def receive(self, queue: str) -> list[dict[str, Any]]:
        """Everything on ``queue`` now (drained)."""
        received: list[dict[str, Any]] = []
        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.queues[queue],
                MaxNumberOfMessages=10,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not messages:
                return received
            received.extend(messages)
            for message in messages:
                self.sqs.delete_message(QueueUrl=self.queues[queue], ReceiptHandle=message["ReceiptHandle"])


@pytest.fixture
def aws() -> Iterator[Aws]:
    with mock_aws():
        scheduler = boto3.client("scheduler", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        scheduler.create_schedule_group(Name=GROUP)
        env = Aws(scheduler, sqs, MovableClock())
        for name, attributes in {
            "workflow": {},
            "timer-dlq": {},
            "outbound.fifo": {"FifoQueue": "true", "ContentBasedDeduplication": "true"},
            "strict.fifo": {"FifoQueue": "true"},
        }.items():
            env.queues[name] = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        yield env


# ------------------------------------------------------------------------------------------ the adapter


def test_a_timer_is_a_one_time_schedule_that_deletes_itself_and_dead_letters(aws: Aws) -> None:
    # When a workflow waits three days
    aws.timers().schedule("workflow:run-1:step-2", T0 + timedelta(days=3), aws.arn("workflow"), '{"run": "run-1"}')
    # Then one schedule exists, named by the key's hash, at that minute in UTC, with its retries and DLQ
    schedule = aws.scheduler.get_schedule(Name=timer_name("workflow:run-1:step-2"), GroupName=GROUP)
    assert schedule["ScheduleExpression"] == "at(2026-03-05T21:30:00)"
    assert schedule["ScheduleExpressionTimezone"] == "UTC"
    assert schedule["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert schedule["ActionAfterCompletion"] == "DELETE"
    target = schedule["Target"]
    assert target["Arn"] == aws.arn("workflow")
    assert target["RoleArn"] == ROLE
    assert target["Input"] == '{"run": "run-1"}'
    assert target["DeadLetterConfig"] == {"Arn": aws.arn("timer-dlq")}
    assert target["RetryPolicy"] == {"MaximumEventAgeInSeconds": 86400, "MaximumRetryAttempts": 185}
    assert "SqsParameters" not in target
    assert len(timer_name("workflow:run-1:step-2")) == 64


def test_scheduling_the_same_timer_twice_is_one_schedule(aws: Aws) -> None:
    timers = aws.timers()
    for _ in range(2):
        timers.schedule("outbound:cmd-1", T0 + timedelta(hours=11), aws.arn("outbound.fifo"), "{}", group_id="cust-1")
    assert aws.schedules() == [timer_name("outbound:cmd-1")]
    target = aws.scheduler.get_schedule(Name=timer_name("outbound:cmd-1"), GroupName=GROUP)["Target"]
    assert target["SqsParameters"] == {"MessageGroupId": "cust-1"}


def test_cancel_deletes_the_schedule_and_an_unknown_or_fired_timer_is_fine(aws: Aws) -> None:
    timers = aws.timers()
    timers.schedule("workflow:run-1:step-2", T0 + timedelta(days=3), aws.arn("workflow"), "{}")
    timers.cancel("workflow:run-1:step-2")
    assert aws.schedules() == []
    timers.cancel("workflow:run-1:step-2")
    timers.cancel("never-scheduled")


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (T0 + timedelta(hours=10, minutes=30), datetime(2026, 3, 3, 8, 0, tzinfo=UTC)),  # 08:00 sharp stays
        (T0 + timedelta(hours=1, seconds=1), datetime(2026, 3, 2, 22, 31, tzinfo=UTC)),  # never before `at`
        (T0 + timedelta(seconds=5), datetime(2026, 3, 2, 21, 31, tzinfo=UTC)),  # at least 30 s ahead
        (T0 + timedelta(seconds=45), datetime(2026, 3, 2, 21, 31, tzinfo=UTC)),
    ],
)
def test_the_fire_time_is_a_whole_minute_never_before_the_instant(at: datetime, expected: datetime) -> None:
    assert fire_time(at, T0) == expected
    assert fire_time(at.astimezone(ZONE_BOGOTA), T0) == expected


def test_a_timer_already_due_goes_straight_to_its_queue_once(aws: Aws) -> None:
    # When a timer is set for an instant already reached (a standard queue, then a FIFO one, twice)
    timers = aws.timers()
    timers.schedule("workflow:late", T0 - timedelta(minutes=5), aws.arn("workflow"), '{"late": true}')
    for _ in range(2):
        timers.schedule("outbound:now", T0, aws.arn("outbound.fifo"), '{"now": true}', group_id="cust-1")
    # Then no schedule is made and each message is on its queue now, the FIFO one once, in its group
    assert aws.schedules() == []
    assert [m["Body"] for m in aws.receive("workflow")] == ['{"late": true}']
    fifo = aws.receive("outbound.fifo")
    assert [(m["Body"], m["Attributes"]["MessageGroupId"]) for m in fifo] == [('{"now": true}', "cust-1")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"key": ""}, "needs a key"),
        ({"at": datetime(2026, 3, 5, 8, 0)}, "timezone-aware"),  # naive: refused
        ({"body": ""}, "needs a body"),
        ({"target": "arn:aws:lambda:us-east-1:123456789012:function:f"}, "SQS queue"),
        ({"target": "not-an-arn"}, "SQS queue"),
        ({"target": f"arn:aws:sqs:{REGION}:{ACCOUNT}:outbound.fifo", "group_id": None}, "message group"),
    ],
)
def test_a_timer_that_cannot_be_delivered_is_refused_before_scheduling(
    aws: Aws, kwargs: dict[str, Any], message: str
) -> None:
    values: dict[str, Any] = {"key": "k", "at": T0 + timedelta(days=1), "target": aws.arn("workflow"), "body": "{}"}
    values.update(kwargs)
    with pytest.raises(InvalidInput, match=message):
        aws.timers().schedule(
            values["key"], values["at"], values["target"], values["body"], group_id=kwargs.get("group_id")
        )
    assert aws.schedules() == []


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("ValidationException", 400, PermanentError),
        ("ThrottlingException", 429, RetryableError),
        ("ServiceQuotaExceededException", 402, RetryableError),
        ("InternalServerException", 500, RetryableError),
    ],
)
def test_scheduler_errors_become_permanent_or_retryable(code: str, status: int, error: type[Exception]) -> None:
    # moto never throttles nor rejects these, so the scheduler's error answers are stubbed on a real client
    scheduler = boto3.client("scheduler", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    timers = Timers(GROUP, ROLE, scheduler=scheduler, clock=MovableClock())
    with Stubber(scheduler) as stub:
        stub.add_client_error("create_schedule", service_error_code=code, http_status_code=status)
        stub.add_client_error("delete_schedule", service_error_code=code, http_status_code=status)
        with pytest.raises(error, match=code) as raised:
            timers.schedule("k", T0 + timedelta(days=1), f"arn:aws:sqs:{REGION}:{ACCOUNT}:q", '{"secret": "x"}')
        assert "secret" not in str(raised.value)
        with pytest.raises(error, match=code):
            timers.cancel("k")


# ------------------------------------------------------------------------------------------ the twin


def test_the_twin_fires_a_timer_when_its_clock_reaches_it_then_deletes_it(aws: Aws) -> None:
    # Given a reminder in three days and a follow-up in five
    timers, twin = aws.timers(), aws.twin()
    timers.schedule("workflow:lead-7:reminder", T0 + timedelta(days=3), aws.arn("workflow"), '{"step": "reminder"}')
    timers.schedule("workflow:lead-7:task", T0 + timedelta(days=5), aws.arn("workflow"), '{"step": "task"}')
    # When the clock has not reached the first, nothing is sent
    assert twin.fire_due(aws.clock.advance(timedelta(days=2, hours=23))) == 0
    assert aws.receive("workflow") == []
    # When it has, the reminder is sent and its schedule deleted; the task waits
    assert twin.fire_due(aws.clock.advance(timedelta(hours=1))) == 1
    assert [m["Body"] for m in aws.receive("workflow")] == ['{"step": "reminder"}']
    assert aws.schedules() == [timer_name("workflow:lead-7:task")]
    assert twin.fire_due(aws.clock.now) == 0
    # And two days later the task follows
    assert twin.fire_due(aws.clock.advance(timedelta(days=2))) == 1
    assert [m["Body"] for m in aws.receive("workflow")] == ['{"step": "task"}']
    assert aws.schedules() == []
    assert aws.lines == [
        "timers: fired 1 one-time schedule(s) (workflow: 1)",
        "timers: fired 1 one-time schedule(s) (workflow: 1)",
    ]


@pytest.mark.parametrize("queue", ["outbound.fifo", "strict.fifo"])  # with and without content-based dedup
def test_a_fifo_target_gets_its_group_and_one_message_even_when_fired_twice(aws: Aws, queue: str) -> None:
    # Given a quiet-hours deferral to 08:00 on a FIFO queue
    at = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)
    aws.timers().schedule("outbound:cmd-9", at, aws.arn(queue), '{"command": "cmd-9"}', group_id="cust-9")
    schedule = aws.scheduler.get_schedule(Name=timer_name("outbound:cmd-9"), GroupName=GROUP)
    # When the twin fires it, and the same schedule fires again (as after a delete that did not happen)
    assert aws.twin().fire_due(at) == 1
    aws.scheduler.create_schedule(
        **{key: schedule[key] for key in ("Name", "GroupName", "ScheduleExpression", "FlexibleTimeWindow", "Target")},
        ActionAfterCompletion="DELETE",
    )
    assert aws.twin().fire_due(at + timedelta(seconds=30)) == 1
    # Then the queue holds it once, in the customer's group
    messages = aws.receive(queue)
    assert [(m["Body"], m["Attributes"]["MessageGroupId"]) for m in messages] == [('{"command": "cmd-9"}', "cust-9")]
    assert aws.schedules() == []


def test_an_undeliverable_timer_is_dead_lettered_with_schedulers_error_attributes(aws: Aws) -> None:
    # Given a timer whose queue is gone by the time it fires
    aws.timers().schedule("workflow:gone", T0 + timedelta(hours=1), aws.arn("deleted-queue"), '{"step": "x"}')
    # When the twin fires it
    assert aws.twin().fire_due(T0 + timedelta(hours=1)) == 1
    # Then its input is on the timer DLQ, with why, and the schedule has completed
    [parked] = aws.receive("timer-dlq")
    assert parked["Body"] == '{"step": "x"}'
    attributes = {name: value["StringValue"] for name, value in parked["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == "AWS.SimpleQueueService.NonExistentQueue"
    assert attributes["TARGET_ARN"] == aws.arn("deleted-queue")
    assert attributes["SCHEDULE_ARN"].endswith(f":schedule/{GROUP}/{timer_name('workflow:gone')}")
    assert aws.schedules() == []


def test_the_twin_warns_that_a_fifo_target_without_content_dedup_fails_in_aws(aws: Aws) -> None:
    timers, twin = aws.timers(), aws.twin()
    for key in ("a", "b"):
        timers.schedule(key, T0 + timedelta(hours=1), aws.arn("strict.fifo"), f'"{key}"', group_id="g")
    assert twin.fire_due(T0 + timedelta(hours=1)) == 2
    assert [m["Body"] for m in aws.receive("strict.fifo")] == ['"a"', '"b"']
    assert [line for line in aws.lines if "ContentBasedDeduplication" in line] == [
        "timers: strict.fifo has ContentBasedDeduplication off; EventBridge Scheduler cannot deliver to it in AWS "
        "(delivered here anyway)"
    ]


def test_the_twin_reads_at_in_the_schedules_time_zone_and_leaves_others_alone(aws: Aws) -> None:
    # Given schedules made by other means: 08:00 in Bogotá (13:00 UTC), kept after completion; a Lambda target; a
    # recurring one; a disabled one
    def create(name: str, expression: str, target: str, **extra: Any) -> None:
        aws.scheduler.create_schedule(
            Name=name, GroupName=GROUP, ScheduleExpression=expression, FlexibleTimeWindow={"Mode": "OFF"},
            Target={"Arn": target, "RoleArn": ROLE, "Input": json.dumps(name)}, **extra,
        )  # fmt: skip

    create("bogota", "at(2026-03-03T08:00:00)", aws.arn("workflow"), ScheduleExpressionTimezone="America/Bogota")
    create("lambda", "at(2026-03-03T08:00:00)", f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:f")
    create("daily", "rate(1 day)", aws.arn("workflow"))
    create("off", "at(2026-03-03T08:00:00)", aws.arn("workflow"), State="DISABLED")
    twin = aws.twin()
    # When the clock reaches 08:00 UTC, then 13:00 UTC, then later again
    assert twin.fire_due(datetime(2026, 3, 3, 12, 59, tzinfo=UTC)) == 0
    assert twin.fire_due(datetime(2026, 3, 3, 13, 0, tzinfo=UTC)) == 1
    assert twin.fire_due(datetime(2026, 3, 4, tzinfo=UTC)) == 0
    # Then Bogotá's fired once and stays (no ActionAfterCompletion), the others are untouched, the Lambda one reported
    assert [m["Body"] for m in aws.receive("workflow")] == ['"bogota"']
    assert sorted(aws.schedules()) == ["bogota", "daily", "lambda", "off"]
    assert [line for line in aws.lines if "lambda" in line] == [
        f"timers: schedule {GROUP}/lambda targets arn:aws:lambda:{REGION}:{ACCOUNT}:function:f; only SQS is run"
    ]


@pytest.mark.parametrize(
    ("expression", "zone", "expected"),
    [
        ("at(2026-03-03T08:00:00)", "UTC", datetime(2026, 3, 3, 8, 0, tzinfo=UTC)),
        ("at(2026-03-03T08:00:00)", None, datetime(2026, 3, 3, 8, 0, tzinfo=UTC)),
        ("at(2026-03-03T08:00:00)", "America/Mexico_City", datetime(2026, 3, 3, 14, 0, tzinfo=UTC)),
        ("rate(5 minutes)", "UTC", None),
    ],
)
def test_at_expressions(expression: str, zone: str | None, expected: datetime | None) -> None:
    assert at_instant(expression, zone) == expected


@pytest.mark.parametrize(("expression", "zone"), [("at(2026-13-03T08:00:00)", "UTC"), ("at(soon)", "UTC"),
                                                 ("at(2026-03-03T08:00:00)", "Mars/Olympus")])  # fmt: skip
def test_malformed_at_expressions_are_errors(expression: str, zone: str) -> None:
    with pytest.raises(ValueError, match=r"malformed|unknown time zone|month"):
        at_instant(expression, zone)
