"""Builds the merge use case from a function's environment: the one place its real adapters are wired."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta

from shared.merging import Merges
from shared.settings import Settings


def merges_from_environment(env: Mapping[str, str], settings: Settings | None = None) -> Merges:
    """``Merges`` on ProfileTable, MergeQueue, EventsQueue and the integration bus (names from template.yaml); the
    caller's ``settings`` when it read them already (the configuration secret is read once per process)."""
    from shared.adapters.command_queue import CommandQueue
    from shared.adapters.config_secret import SettingsLoader
    from shared.adapters.event_publisher import EventPublisher
    from shared.adapters.merge_store import MergeStore
    from shared.clock import now

    settings = settings or SettingsLoader(env).get()
    return Merges(
        MergeStore(env["PROFILE_TABLE_NAME"]),
        CommandQueue(env["MERGE_QUEUE_URL"]),
        EventPublisher(env["EVENTS_QUEUE_URL"], env["EVENT_BUS_NAME"]),
        now,
        reopen_window=timedelta(hours=settings.reopen_window_hours),
    )
