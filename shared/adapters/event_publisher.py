"""Domain events out: to EventsQueue (Hilo's own consumers) and to the IntegrationBus (the company's systems).

Both or the record fails: a partial send raises ``RetryableError``, the record is redelivered, and the events go
again under the same ids (they are seeded by the input), which consumers deduplicate on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters import aws
from shared.errors import RetryableError
from shared.models.events import DomainEvent
from shared.observability import logger

#: Both SendMessageBatch and PutEvents take at most ten entries per call.
_BATCH: Final = 10
#: ``Source`` of every event Hilo puts on the bus; rules match ``detail-type`` (the event type).
BUS_SOURCE: Final = "hilo"


class EventPublisher:
    """``shared.ingest.ports.EventPublisher`` on SQS and EventBridge."""

    def __init__(self, queue_url: str, bus_name: str, sqs: Any | None = None, events: Any | None = None) -> None:
        self.queue_url = queue_url
        self.bus_name = bus_name
        self._sqs = sqs
        self._events = events

    def publish(self, events: Sequence[DomainEvent]) -> None:
        """Send every event to the queue, then to the bus.

        Raises
        ------
        RetryableError
            Any event could not be sent after one immediate retry of the entries refused.
        """
        bodies = [event.model_dump_json() for event in events]
        for start in range(0, len(events), _BATCH):
            chunk = range(start, min(start + _BATCH, len(events)))
            self._send_to_queue([self._queue_entry(index, events[index], bodies[index]) for index in chunk])
            self._put_on_bus([self._bus_entry(events[index], bodies[index]) for index in chunk])

    @staticmethod
    def _queue_entry(index: int, event: DomainEvent, body: str) -> dict[str, Any]:
        return {
            "Id": str(index),
            "MessageBody": body,
            "MessageAttributes": {"event_type": {"DataType": "String", "StringValue": event.type}},
        }

    def _bus_entry(self, event: DomainEvent, body: str) -> dict[str, Any]:
        return {
            "Source": BUS_SOURCE,
            "DetailType": event.type,
            "Detail": body,
            "EventBusName": self.bus_name,
            "Time": event.occurred_at,
        }

    def _send_to_queue(self, entries: list[dict[str, Any]]) -> None:
        self._sqs = self._sqs or aws.client("sqs")
        pending = entries
        for _attempt in range(2):
            try:
                response = self._sqs.send_message_batch(QueueUrl=self.queue_url, Entries=pending)
            except (ClientError, BotoCoreError) as error:
                raise RetryableError("Could not send the events to the events queue.") from error
            failed = {item["Id"] for item in response.get("Failed", [])}
            if not failed:
                return
            pending = [entry for entry in pending if entry["Id"] in failed]
        logger.error("events not queued", extra={"failed": len(pending)})
        raise RetryableError("Could not send the events to the events queue.")

    def _put_on_bus(self, entries: list[dict[str, Any]]) -> None:
        self._events = self._events or aws.client("events")
        pending = entries
        for _attempt in range(2):
            try:
                response = self._events.put_events(Entries=pending)
            except (ClientError, BotoCoreError) as error:
                raise RetryableError("Could not put the events on the integration bus.") from error
            if not response.get("FailedEntryCount"):
                return
            # PutEvents answers entry by entry, in order; an entry with an ErrorCode was not accepted.
            results = response.get("Entries", [])
            pending = [entry for entry, result in zip(pending, results, strict=False) if result.get("ErrorCode")]
            if not pending:
                return
        logger.error("events not put on the bus", extra={"failed": len(pending)})
        raise RetryableError("Could not put the events on the integration bus.")
