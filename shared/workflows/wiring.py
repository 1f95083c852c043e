"""Builds the workflow use cases from a function's environment: the one place their real adapters are wired.

Environment (template.yaml sets it): ``PROFILE_TABLE_NAME``; for the events router ``WORKFLOW_QUEUE_URL``; for the
steps ``OUTBOUND_QUEUE_URL``, ``EVENTS_QUEUE_URL``, ``EVENT_BUS_NAME``, ``WORKFLOW_QUEUE_ARN`` (the timers' target),
``TIMER_GROUP_NAME``, ``TIMER_ROLE_ARN``, ``TIMER_DLQ_ARN``; the configuration secret for ``HILO_WEBHOOK_SECRET``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.workflows.router import WorkflowEvents
from shared.workflows.steps import WorkflowSteps

if TYPE_CHECKING:
    from shared.workflows.registry import WorkflowRegistry


def workflow_source(table_name: str) -> WorkflowRegistry:
    """The shipped workflows, merged with those loaded or switched through the API (cached briefly)."""
    from shared.adapters.workflow_store import WorkflowStore
    from shared.clock import now
    from shared.workflows.catalog import shipped_workflows
    from shared.workflows.registry import WorkflowRegistry

    return WorkflowRegistry(WorkflowStore(table_name), shipped_workflows(), clock=now)


def router_from_environment(env: Mapping[str, str]) -> WorkflowEvents:
    """``WorkflowEvents`` on ProfileTable and WorkflowQueue."""
    from shared.adapters.enrolment_store import EnrolmentStore
    from shared.adapters.workflow_queue import WakeQueue
    from shared.clock import now

    table = env["PROFILE_TABLE_NAME"]
    store = EnrolmentStore(table)
    return WorkflowEvents(
        enrolments=store,
        workflows=workflow_source(table),
        profiles=store,
        wakes=WakeQueue(env["WORKFLOW_QUEUE_URL"]),
        clock=now,
    )


class _SignedWebhooks:
    """Webhook calls signed with the configuration's current ``HILO_WEBHOOK_SECRET`` (a rotation reaches warm
    functions with the settings' refresh)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        from shared.adapters.config_secret import SettingsLoader

        self._settings = SettingsLoader(env)

    def call(self, url: str, payload: Mapping[str, Any], key: str) -> Any:
        from shared.adapters.webhook_notifier import WebhookNotifier

        secret = self._settings.get().webhook_secret
        return WebhookNotifier(secret.get_secret_value() if secret else None).call(url, payload, key)


def steps_from_environment(env: Mapping[str, str]) -> WorkflowSteps:
    """``WorkflowSteps`` on ProfileTable, OutboundQueue, the timers, EventsQueue + IntegrationBus and webhooks."""
    from shared.adapters.enrolment_store import EnrolmentStore
    from shared.adapters.event_publisher import EventPublisher
    from shared.adapters.outbound_queue import OutboundQueue
    from shared.adapters.task_store import TaskStore
    from shared.adapters.timers import Timers
    from shared.adapters.workflow_queue import WorkflowTimers
    from shared.clock import now
    from shared.workflows.effects import Effects

    table = env["PROFILE_TABLE_NAME"]
    store = EnrolmentStore(table)
    timers = Timers(env["TIMER_GROUP_NAME"], env["TIMER_ROLE_ARN"], env.get("TIMER_DLQ_ARN"))
    effects = Effects(
        outbound=OutboundQueue(env["OUTBOUND_QUEUE_URL"]),
        timers=WorkflowTimers(timers, env["WORKFLOW_QUEUE_ARN"]),
        timeline=store,
        tasks=TaskStore(table),
        profiles=store,
        webhooks=_SignedWebhooks(env),
        events=EventPublisher(env["EVENTS_QUEUE_URL"], env["EVENT_BUS_NAME"]),
        clock=now,
    )
    return WorkflowSteps(enrolments=store, workflows=workflow_source(table), profiles=store, effects=effects, clock=now)
