"""The outbound side of ProfileTable: outbound messages on the timeline, their send state and provider-id pointers.

An outbound message is one timeline item (``TL#<requested_at>#<entry id>``, both derived from the command's key),
written once by the planner with its decision: ``queued`` with the send job, ``queued`` and ``deferred_until``, or
``canceled`` with a reason. The sender reads it before calling the provider (a duplicate job finds it sent) and
records the answer after, together with the ``MSG#<provider>#<provider id>`` pointer that status callbacks follow
(docs/data-model.md, pattern 11). Access patterns 26-29 in docs/data-model.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

from shared.adapters.dynamodb import from_item, to_item
from shared.adapters.profile_store import (
    ProfileStore,
    _instant,
    _timeline_item,
    customer_pk,
    timeline_sk,
)
from shared.ingest.ports import AlreadyRecorded, HeadState, TimelineRecord
from shared.models.common import Channel
from shared.models.customer import ConsentPurpose, CustomerProfile
from shared.models.message import DeliveryStatus
from shared.models.outbound import OutboundCommand, SendJob
from shared.outbound.delivery import Accepted, DeliveryRejected
from shared.outbound.planning import EmailThread, StoredOutbound

#: Status callbacks can come weeks later (a phone off for days, Meta's read receipts): the pointer outlives them.
POINTER_TTL: Final = timedelta(days=30)
#: How far back ``email_thread`` looks for the customer's last e-mail in a conversation.
_THREAD_SCAN: Final = 200
_COUNTED: Final = [str(status) for status in (DeliveryStatus.QUEUED, DeliveryStatus.SENT, DeliveryStatus.DELIVERED,
                                             DeliveryStatus.READ)]  # fmt: skip


class OutboundStore(ProfileStore):
    """``OutboundRepository`` for the planner and the send-state writes of the senders."""

    # ------------------------------------------------------------------ planner
    def card(self, customer_id: str) -> tuple[CustomerProfile, HeadState | None] | None:
        """Pattern 3: the profile (identities, consents) and head the decision needs, in one query."""
        found = self.get_card(customer_id)
        return None if found is None else (found.profile, found.head)

    def outbound(self, customer_id: str, occurred_at: datetime, entry_id: str) -> StoredOutbound | None:
        """Pattern 26: the message's item, strongly consistent (it may have been written a moment ago)."""
        values = self._item(customer_id, timeline_sk(occurred_at, entry_id))
        if values is None:
            return None
        return StoredOutbound(
            status=DeliveryStatus(values["status"]) if values.get("status") else None,
            channel=Channel(values["channel"]) if values.get("channel") else None,
            send_job=values.get("send_job"),
            deferred_until=_instant(values["deferred_until"]) if values.get("deferred_until") else None,
            reason=values.get("outcome_reason"),
        )

    def record_outbound(self, record: TimelineRecord) -> AlreadyRecorded | None:
        """The conditional put that makes a command one message (pattern 5's dedup, keyed by the command)."""
        return self.record(record)

    def release_deferred(
        self, customer_id: str, occurred_at: datetime, entry_id: str, until: datetime, record: TimelineRecord
    ) -> bool:
        """Pattern 27: replace a deferred message's item with its new decision, only if still deferred ``until``."""
        return self._conditionally(
            "put_item",
            Item=to_item(_timeline_item(record)),
            ConditionExpression="deferred_until = :until AND #status = :queued",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item({":until": until, ":queued": str(DeliveryStatus.QUEUED)}),
        )

    def marketing_sent_since(self, customer_id: str, since: datetime) -> int:
        """Pattern 28: the customer's marketing messages since ``since`` (a range of their timeline, counted)."""
        statuses = {f":s{index}": status for index, status in enumerate(_COUNTED)}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND sk BETWEEN :since AND :end",
            "FilterExpression": f"direction = :out AND purpose = :marketing AND #status IN ({', '.join(statuses)})",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_item(
                {
                    ":pk": customer_pk(customer_id),
                    ":since": timeline_sk(since, ""),
                    ":end": "TL#~",  # every timeline key sorts before it
                    ":out": "outbound",
                    ":marketing": str(ConsentPurpose.MARKETING),
                    **statuses,
                }
            ),
            "Select": "COUNT",
        }
        count = 0
        while True:
            page = self._call("query", **request)
            count += int(page.get("Count", 0))
            if not page.get("LastEvaluatedKey"):
                return count
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def email_thread(self, customer_id: str, conversation_id: str) -> EmailThread | None:
        """Pattern 29: the customer's last e-mail in the conversation, newest first within the last 200 entries."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :tl)",
            "FilterExpression": "conversation_id = :conv AND channel = :email AND direction = :in",
            "ExpressionAttributeValues": to_item(
                {
                    ":pk": customer_pk(customer_id),
                    ":tl": "TL#",
                    ":conv": conversation_id,
                    ":email": str(Channel.EMAIL),
                    ":in": "inbound",
                }
            ),
            "ScanIndexForward": False,
            "Limit": 50,
        }
        scanned = 0
        while scanned < _THREAD_SCAN:
            page = self._call("query", **request)
            scanned += int(page.get("ScannedCount", 0))
            for raw in page.get("Items", []):
                values = from_item(raw)
                if values.get("provider_message_id"):
                    return EmailThread(
                        message_id=values["provider_message_id"],
                        subject=values.get("subject"),
                        references=tuple(values.get("references") or ()),
                    )
            if not page.get("LastEvaluatedKey"):
                return None
            request["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return None

    # ------------------------------------------------------------------ senders
    def send_pending(self, job: SendJob) -> bool:
        """Pattern 26 again, for the sender: True while the message still waits to go (not sent, failed, canceled)."""
        values = self._item(job.customer_id, _job_sk(job))
        return values is not None and values.get("status") == str(DeliveryStatus.QUEUED)

    def record_sent(self, job: SendJob, accepted: Accepted, at: datetime) -> bool:
        """Pattern 11's writes: the provider-id pointer and the message's new status, in one transaction.

        False when the message had already left the ``queued`` state (a duplicate job that raced this one).
        """
        history = [{"status": str(DeliveryStatus.SENT), "at": at}]
        if accepted.status not in (DeliveryStatus.SENT, DeliveryStatus.QUEUED):
            history.append({"status": str(accepted.status), "at": at})
        pointer = {
            "pk": f"MSG#{job.provider}#{accepted.provider_message_id}",
            "sk": "MSG",
            "type": "MSG_POINTER",
            "customer_id": job.customer_id,
            "timeline_sk": _job_sk(job),
            "message_id": job.message_id,
            "channel": str(job.channel),
            "expires_at": int((at + POINTER_TTL).timestamp()),
        }
        update = {
            "TableName": self.table_name,
            "Key": to_item({"pk": customer_pk(job.customer_id), "sk": _job_sk(job)}),
            "UpdateExpression": "SET #status = :status, provider_message_id = :pid, sent_at = :at, "
            "status_history = list_append(if_not_exists(status_history, :empty), :history) REMOVE send_job",
            "ConditionExpression": "#status = :queued",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": to_item(
                {
                    ":status": history[-1]["status"],
                    ":pid": accepted.provider_message_id,
                    ":at": at,
                    ":empty": [],
                    ":history": history,
                    ":queued": str(DeliveryStatus.QUEUED),
                }
            ),
        }
        writes = [{"Put": {"TableName": self.table_name, "Item": to_item(pointer)}}, {"Update": update}]
        return self._transact_or_reasons(writes) is None

    def record_rejected(
        self, job: SendJob, rejected: DeliveryRejected, at: datetime, fallback: OutboundCommand | None
    ) -> bool:
        """The message failed for good before leaving, and what replaces it; False when it was no longer ``queued``."""
        entry = {"status": str(DeliveryStatus.FAILED), "at": at, "error_code": rejected.provider_code,
                 "error_reason": rejected.reason}  # fmt: skip
        values: dict[str, Any] = {":failed": str(DeliveryStatus.FAILED), ":why": str(rejected.rejection),
                                  ":empty": [], ":history": [entry], ":queued": str(DeliveryStatus.QUEUED)}  # fmt: skip
        replaced = ""
        if fallback is not None:
            # The same fields the status function writes after an asynchronous failure (docs/outbound.md).
            replaced = ", fallback_key = :fallback_key, fallback_message_id = :fallback_id"
            values.update({":fallback_key": fallback.key, ":fallback_id": fallback.message_id})
        return self._conditionally(
            "update_item",
            Key=to_item({"pk": customer_pk(job.customer_id), "sk": _job_sk(job)}),
            UpdateExpression="SET #status = :failed, outcome_reason = :why, "
            "status_history = list_append(if_not_exists(status_history, :empty), :history)"
            + replaced
            + " REMOVE send_job",
            ConditionExpression="#status = :queued",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=to_item(values),
        )

    # ------------------------------------------------------------------ helpers
    def _item(self, customer_id: str, sk: str) -> dict[str, Any] | None:
        found = self._call("get_item", TableName=self.table_name, ConsistentRead=True,
                           Key=to_item({"pk": customer_pk(customer_id), "sk": sk}))  # fmt: skip
        return from_item(found["Item"]) if "Item" in found else None


def _job_sk(job: SendJob) -> str:
    return timeline_sk(job.command.requested_at, job.command.entry_id)
