"""Durable timers on the running twin: a schedule in the template's TimerGroup fires when the local clock reaches it."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

import pytest

from hilo.local.stack import LocalStack
from shared.adapters.timers import Timers, timer_name
from tests.helpers import http

pytestmark = pytest.mark.stack


def test_a_timer_fires_when_the_local_clock_is_advanced_past_it(hilo_stack: LocalStack) -> None:
    # Given a queue of this test's own (no function consumes it) and two timers on it, in 5 minutes and in 2 days
    sqs, run = hilo_stack.client("sqs"), uuid.uuid4().hex
    queue_url = sqs.create_queue(QueueName=f"timer-test-{run}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    timers = Timers(
        hilo_stack.physical_id("TimerGroup"),
        hilo_stack.attribute("TimerRole", "Arn"),
        hilo_stack.attribute("TimerDlq", "Arn"),
        scheduler=hilo_stack.client("scheduler"),
        sqs=sqs,
        clock=hilo_stack.clock.now,
    )
    soon, later = f"test:{run}:soon", f"test:{run}:later"
    timers.schedule(soon, hilo_stack.clock.now() + timedelta(minutes=5), queue_arn, json.dumps({"timer": "soon"}))
    timers.schedule(later, hilo_stack.clock.now() + timedelta(days=2), queue_arn, json.dumps({"timer": "later"}))
    try:
        assert sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1).get("Messages", []) == []
        # When the clock moves ten minutes
        moved = http("POST", f"{hilo_stack.api_url}/_dev/clock", json.dumps({"advance_seconds": 600}))
        assert moved.status == 200
        # Then, by the time the clock answers, the first timer is on the queue and its schedule gone; the second waits
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        assert [json.loads(message["Body"]) for message in messages] == [{"timer": "soon"}]
        scheduled = hilo_stack.client("scheduler").list_schedules(GroupName=hilo_stack.physical_id("TimerGroup"))
        names = {schedule["Name"] for schedule in scheduled["Schedules"]}
        assert timer_name(later) in names
        assert timer_name(soon) not in names
    finally:
        timers.cancel(later)
        sqs.delete_queue(QueueUrl=queue_url)
