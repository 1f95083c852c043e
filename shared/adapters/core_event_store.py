"""The ``POST /v1/events`` side of ProfileTable: the sender-id markers and new leads.

- ``EVT#<source>#<sender's id>`` / ``EVT`` (docs/data-model.md, pattern 15): one conditional ``PutItem`` claims a
  sender's id, ``attribute_not_exists(pk) OR expires_at < :now`` because TTL deletes late (a marker past its
  ``expires_at`` may still be there, and must not refuse a new claim). ``ALL_OLD`` on failure hands a repeat the
  event id the first request was given. One ``UpdateItem`` marks it published.
- A lead is pattern 2 without a conversation: pointer, profile and identity entry in one ``TransactWriteItems``,
  the pointer's ``attribute_not_exists(pk)`` deciding a race with ingest or a twin event. The event's consents
  are in that profile already.
- An event's consents for a known customer: ``ProfileStore.apply_consents``, as for ingest's keywords.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.dynamodb import from_item, to_item
from shared.adapters.profile_store import (
    _CONDITION_FAILED,
    ProfileStore,
    _code,
    _identity_item,
    _instant,
    _pointer_item,
    _profile_item,
    _translated,
)
from shared.core_events import EventMarker, NewLead
from shared.errors import RetryableError

_MARKER_SK: Final = "EVT"
#: Conditional writes lost to a concurrent profile save before giving up (503: the sender retries).
_CONSENT_ATTEMPTS: Final = 4


def marker_key(source: str, sender_id: str) -> dict[str, Any]:
    """Key of the marker ``EVT#<source>#<sender's id>`` (sources never hold ``#``: ``core_events.event_source``)."""
    return to_item({"pk": f"EVT#{source}#{sender_id}", "sk": _MARKER_SK})


def _epoch(at: datetime) -> int:
    return int(at.timestamp())


def _marker_item(marker: EventMarker) -> dict[str, Any]:
    return {
        "pk": f"EVT#{marker.source}#{marker.sender_id}",
        "sk": _MARKER_SK,
        "type": "EVENT_MARKER",
        "event_id": marker.event_id,
        "event_type": marker.event_type,
        "received_at": marker.received_at,
        # TTL attribute: a Number of epoch seconds.
        "expires_at": _epoch(marker.expires_at),
    }


def _marker(values: Mapping[str, Any]) -> EventMarker:
    _, source, sender_id = str(values["pk"]).split("#", 2)
    return EventMarker(
        source=source,
        sender_id=sender_id,
        event_id=values["event_id"],
        event_type=values["event_type"],
        received_at=_instant(values["received_at"]),
        expires_at=datetime.fromtimestamp(int(values["expires_at"]), tz=UTC),
        published_at=_instant(values["published_at"]) if values.get("published_at") else None,
        customer_id=values.get("customer_id"),
    )


class CoreEventStore(ProfileStore):
    """``shared.core_events.CoreEventRepository`` on ProfileTable (the profile store's client, reads and errors)."""

    def claim_event(self, marker: EventMarker, now: datetime) -> EventMarker | None:
        """Pattern 15: claim the sender's id unless a live marker holds it; None when claimed, else the live marker."""
        item = to_item(_marker_item(marker))
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=item,
                ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
                ExpressionAttributeValues={":now": {"N": str(_epoch(now))}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _code(error) != _CONDITION_FAILED:
                raise _translated(error) from error
            old: dict[str, Any] | None = error.response.get("Item")
            if not old:
                key = marker_key(marker.source, marker.sender_id)
                found = self._call("get_item", TableName=self.table_name, Key=key, ConsistentRead=True)
                old = found.get("Item")
            if not old:
                raise RetryableError("The event's id is taken but cannot be read yet; try again.") from error
            return _marker(from_item(old))
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return None

    def mark_published(self, marker: EventMarker, customer_id: str, at: datetime) -> None:
        """Set ``published_at`` and ``customer_id`` on the marker, if it still names this event (a marker that
        expired and was claimed again meanwhile is someone else's now)."""
        self._conditionally(
            "update_item",
            Key=marker_key(marker.source, marker.sender_id),
            UpdateExpression="SET published_at = if_not_exists(published_at, :at), customer_id = :customer",
            ConditionExpression="event_id = :event",
            ExpressionAttributeValues=to_item({":at": at, ":customer": customer_id, ":event": marker.event_id}),
        )

    def create_lead(self, lead: NewLead) -> bool:
        """Pattern 2 without a conversation: pointer, profile and identity entry in one transaction.

        Returns False when the pointer is taken (someone is, or just became, this customer); the caller re-reads it.
        """
        customer_id = lead.profile.id
        return self._put_all_new([
            _pointer_item(customer_id, lead.identity, lead.profile.created_at),
            _profile_item(lead.profile),
            _identity_item(customer_id, lead.identity),
        ])  # fmt: skip
