"""Status callbacks on ProfileTable: the provider-id pointer, the conditional status write, and following merges.

Per callback (docs/data-model.md, pattern 11): a strongly consistent ``GetItem`` of ``MSG#<provider>#<id>`` (the
sender wrote it a moment ago, maybe), one ``UpdateItem`` of the message's timeline item that ``SET``s ``status`` and
``list_append``s the report to ``status_history`` under ``#status IN (<statuses the new one may follow>)`` (a late
or repeated callback fails the condition, is billed, and changes nothing; ``ALL_OLD`` tells the caller what is
there), and a strongly consistent ``GetItem`` of the customer's ``HEAD``, projected on ``merged_into``.

Why the ``HEAD`` read: a merge copies the absorbed customer's timeline items under the survivor with the same sort
key and leaves the originals unmarked, so nothing on the item says it moved. The write goes to the pointer's item
first, and the ``HEAD`` is read after it: a merge that began earlier is seen and its copy is updated too; one that
begins later copies the item with this status already on it. While a merge has begun but not yet copied the item
the copy is missing, and the callback is retried (the merge function runs within seconds). The original keeps every
update as well, so an unmerge (which deletes the copies) leaves it right.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from shared.adapters.dynamodb import from_item, to_item
from shared.adapters.profile_store import _CONDITION_FAILED, ProfileStore, _code, _translated, customer_pk
from shared.delivery_status import MessagePointer, StatusWrite, StoredMessage
from shared.errors import PermanentError, RetryableError
from shared.models.common import Channel
from shared.models.message import DeliveryStatus, StatusUpdate
from shared.models.outbound import OutboundCommand
from shared.outbound.delivery import Rejection

#: A merged customer's survivor may itself have been merged since; a longer chain than this is a bug, not data.
_MAX_MERGE_HOPS: Final = 8


def pointer_key(provider: str, provider_message_id: str) -> dict[str, Any]:
    """Key of the provider-id pointer ``MSG#<provider>#<provider message id>`` / ``MSG`` (pattern 11)."""
    return to_item({"pk": f"MSG#{provider}#{provider_message_id}", "sk": "MSG"})


@dataclass(frozen=True)
class _Written:
    applied: bool
    message: StoredMessage | None


def _history(values: Any) -> tuple[StatusUpdate, ...]:
    entries: list[StatusUpdate] = []
    for raw in values if isinstance(values, list) else []:
        try:
            entries.append(StatusUpdate.model_validate(raw))
        except ValidationError:
            continue  # an entry some other writer shaped differently: not ours to judge, only to compare against
    return tuple(entries)


def _status(value: Any) -> DeliveryStatus | None:
    try:
        return DeliveryStatus(value)
    except ValueError:
        return None


def _stored(values: Mapping[str, Any], customer_id: str) -> StoredMessage:
    return StoredMessage(
        customer_id=customer_id,
        conversation_id=values.get("conversation_id"),
        status=_status(values.get("status")),
        history=_history(values.get("status_history")),
        outbound_command=values.get("outbound_command"),
        purpose=values.get("purpose"),
        template_id=values.get("template_id"),
    )


class StatusStore(ProfileStore):
    """``shared.delivery_status.StatusStore`` on ProfileTable."""

    def find_pointer(self, provider: str, provider_message_id: str) -> MessagePointer | None:
        """Pattern 11's read: who and which item a provider's id names; None when no pointer (yet)."""
        found = self._call(
            "get_item",
            TableName=self.table_name,
            Key=pointer_key(provider, provider_message_id),
            ConsistentRead=True,
            ProjectionExpression="customer_id, timeline_sk, message_id, channel",
        )
        if "Item" not in found:
            return None
        values = from_item(found["Item"])
        try:
            return MessagePointer(
                customer_id=values["customer_id"],
                timeline_sk=values["timeline_sk"],
                message_id=values["message_id"],
                channel=Channel(values["channel"]),
            )
        except (KeyError, ValueError) as error:
            raise PermanentError("The message pointer is incomplete.") from error

    def apply(
        self,
        pointer: MessagePointer,
        update: StatusUpdate,
        may_follow: Sequence[DeliveryStatus],
        *,
        reason: Rejection | None = None,
    ) -> StatusWrite:
        """Write the report on the pointer's item, then on the copy in each customer it was merged into since.

        Raises
        ------
        RetryableError
            The customer is merged but the merge has not copied the item yet; or DynamoDB is unavailable.
        PermanentError
            A chain of merges longer than any real one (a loop).
        """
        customers = [pointer.customer_id]
        written = self._write(pointer.customer_id, pointer.timeline_sk, update, may_follow, reason)
        if written.message is None:
            return StatusWrite(False, None, tuple(customers))
        for _hop in range(_MAX_MERGE_HOPS):
            survivor = self._merged_into(customers[-1])
            if survivor is None:
                return StatusWrite(written.applied, written.message, tuple(customers))
            written = self._write(survivor, pointer.timeline_sk, update, may_follow, reason)
            if written.message is None:
                raise RetryableError("The customer was merged and the merge has not copied this message yet.")
            customers.append(survivor)
        raise PermanentError("The customer's merges form a chain too long to follow.")

    def record_fallback(self, write: StatusWrite, timeline_sk: str, fallback: OutboundCommand) -> None:
        """``SET fallback_key, fallback_message_id`` on each copy of the failed message (never creating one)."""
        for customer_id in write.customers:
            self._conditionally(
                "update_item",
                Key=to_item({"pk": customer_pk(customer_id), "sk": timeline_sk}),
                UpdateExpression="SET fallback_key = :key, fallback_message_id = :message",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues=to_item({":key": fallback.key, ":message": fallback.message_id}),
            )

    # ------------------------------------------------------------------ helpers
    def _write(
        self,
        customer_id: str,
        timeline_sk: str,
        update: StatusUpdate,
        may_follow: Sequence[DeliveryStatus],
        reason: Rejection | None,
    ) -> _Written:
        """The conditional ``UpdateItem``: applied with ``ALL_NEW``, or refused with the item as it is (None when
        there is no item; the condition on ``status`` also keeps the write from creating one)."""
        key = to_item({"pk": customer_pk(customer_id), "sk": timeline_sk})
        # ``at`` stays a datetime: stored in the fixed-width ISO-8601 UTC form every timestamp of the table has.
        entry: dict[str, Any] = {"status": str(update.status), "at": update.at}
        if update.error_code is not None:
            entry["error_code"] = update.error_code
        if update.error_reason is not None:
            entry["error_reason"] = update.error_reason
        allowed = {f":may{index}": str(status) for index, status in enumerate(may_follow)}
        assignments = [
            "#status = :status",
            "status_history = list_append(if_not_exists(status_history, :empty), :entry)",
        ]
        values: dict[str, Any] = {":status": str(update.status), ":entry": [entry], ":empty": [], **allowed}
        if reason is not None:
            assignments.append("outcome_reason = :reason")
            values[":reason"] = str(reason)
        try:
            done = self.client.update_item(
                TableName=self.table_name,
                Key=key,
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression=f"#status IN ({', '.join(allowed)})",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=to_item(values),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _code(error) != _CONDITION_FAILED:
                raise _translated(error) from error
            old = error.response.get("Item")
            if not old:  # DynamoDB returns the item when there is one; read it in case it did not
                old = self._call("get_item", TableName=self.table_name, Key=key, ConsistentRead=True).get("Item")
            return _Written(False, _stored(from_item(old), customer_id) if old else None)
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return _Written(True, _stored(from_item(done["Attributes"]), customer_id))

    def _merged_into(self, customer_id: str) -> str | None:
        found = self._call(
            "get_item",
            TableName=self.table_name,
            Key=to_item({"pk": customer_pk(customer_id), "sk": "HEAD"}),
            ConsistentRead=True,
            ProjectionExpression="merged_into",
        )
        survivor = from_item(found.get("Item") or {}).get("merged_into")
        return str(survivor) if survivor else None
