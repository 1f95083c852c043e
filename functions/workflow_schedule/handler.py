"""EventBridge schedule (every 5 minutes) → workflow schedule: opens the runs of ``schedule`` triggers that fell due
since the last tick, then scans the live profiles for each open run and publishes one ``workflow.scheduled`` event per
customer who fits its audience to EventsQueue and the integration bus (``shared.workflows.schedule``).

A scan stops ``TIME_MARGIN_SECONDS`` before the invocation's end and the next tick goes on where it stopped. An
error (the table, queue or bus failing) fails the invocation; what it did stays done, and the next tick resumes.
"""

from __future__ import annotations

import functools
import os
from typing import Any

from shared.observability import logger, metrics
from shared.workflows.schedule import RunStatus, WorkflowSchedule


@functools.cache
def schedule() -> WorkflowSchedule:
    from shared.adapters.event_publisher import EventPublisher
    from shared.adapters.schedule_store import ProfileScan, ScheduleStore
    from shared.clock import now
    from shared.workflows.wiring import workflow_source

    table = os.environ["PROFILE_TABLE_NAME"]
    return WorkflowSchedule(
        workflows=workflow_source(table),
        runs=ScheduleStore(table),
        profiles=ProfileScan(table),
        events=EventPublisher(os.environ["EVENTS_QUEUE_URL"], os.environ["EVENT_BUS_NAME"]),
        clock=now,
    )


def handle(event: dict[str, Any], context: Any, use_case: WorkflowSchedule) -> dict[str, Any]:
    """Run one tick with the given use case (the function passes the real one; tests pass theirs)."""
    tick = use_case.tick(remaining=lambda: context.get_remaining_time_in_millis() / 1000, owner=context.aws_request_id)
    summary = tick.summary()
    if tick.due or tick.runs:
        logger.info("workflow schedule ticked", extra=summary)
    metrics.add_metric(name="ScheduledRunsDue", unit="Count", value=len(tick.due))
    metrics.add_metric(name="ScheduledEventsPublished", unit="Count", value=tick.published)
    finished = sum(report.status == RunStatus.DONE for report in tick.runs)
    metrics.add_metric(name="ScheduledRunsFinished", unit="Count", value=finished)
    return summary


@metrics.log_metrics
@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return handle(event, context, schedule())
