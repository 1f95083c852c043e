"""Merges on ProfileTable: the audit record, copying a profile's items under another, and undoing it.

Items are copied as stored (raw attribute values, so nothing is lost in a round trip through a model), with
``pk``/``customer_id`` rewritten and ``merged_from = <merge id>`` added; the absorbed profile's own items stay in
place, which is what makes an unmerge exact. Every step is idempotent and can be re-run after a crash:

- copies are conditional puts (``attribute_not_exists(pk) OR merged_from = :merge``), never over the survivor's own;
- pointers move with ``customer_id = :from`` conditions, both ways;
- the plan for the survivor's head and the survivor's profile before/after are saved on the record once, before
  they are applied, so a re-run applies the same plan.

Items and access patterns: docs/data-model.md, "Merging".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from shared.adapters.dynamodb import from_attribute, from_item, to_attribute, to_item
from shared.adapters.profile_store import (
    ProfileStore,
    _code,
    _head,
    _head_item,
    _profile_item,
    _reasons,
    _translated,
    customer_pk,
)
from shared.errors import Conflict, RetryableError
from shared.ingest.ports import HeadState
from shared.merging import HeadPlan, MergeRecord, MergeStatus, ProfileFields, Refusal
from shared.models.common import IdPrefix, new_id, sortable_timestamp
from shared.models.conversation import ConversationStatus
from shared.models.customer import CustomerProfile
from shared.models.identity import IdentityKind
from shared.models.timeline import Actor, ActorKind

_CONDITION_FAILED: Final = "ConditionalCheckFailedException"
_CANCELLED: Final = "TransactionCanceledException"
#: The status a merged profile's head carries, so ingest's head update fails and follows ``merged_into``.
HEAD_MERGED: Final = "merged"
_INDEX_KEYS: Final = ("gsi1pk", "gsi1sk", "gsi2pk", "gsi2sk")

HeadPlanner = Callable[[HeadState | None, HeadState | None], HeadPlan]
Restorer = Callable[[CustomerProfile, datetime], CustomerProfile]


def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _record_item(record: MergeRecord) -> dict[str, Any]:
    values = record.model_dump(mode="json", exclude_none=True)
    return {"pk": customer_pk(record.survivor_id), "sk": f"MERGE#{record.merge_id}", "type": "MERGE", **values}


def _record(values: Mapping[str, Any]) -> MergeRecord:
    return MergeRecord.model_validate({name: values[name] for name in MergeRecord.model_fields if name in values})


class MergeStore(ProfileStore):
    """``MergeRepository`` on ProfileTable (shares the profile store's client, reads and error translation)."""

    # ------------------------------------------------------------------ records and rules
    def begin(self, record: MergeRecord) -> MergeRecord | Refusal:
        """The commit point: the record, both profiles marked, the absorbed head redirected, no rule against it."""
        survivor, absorbed = customer_pk(record.survivor_id), customer_pk(record.absorbed_id)
        free = "attribute_exists(pk) AND attribute_not_exists(merged_into) AND attribute_not_exists(merging)"
        writes = [
            {"Put": {"TableName": self.table_name, "Item": to_item(_record_item(record)),
                     "ConditionExpression": "attribute_not_exists(pk)"}},
            {"Update": {"TableName": self.table_name, "Key": to_item({"pk": absorbed, "sk": "PROFILE"}),
                        "UpdateExpression": "SET merged_into = :survivor, merge_id = :merge",
                        "ConditionExpression": free,
                        "ExpressionAttributeValues": {":survivor": _s(record.survivor_id),
                                                      ":merge": _s(record.merge_id)}}},
            {"Update": {"TableName": self.table_name, "Key": to_item({"pk": survivor, "sk": "PROFILE"}),
                        "UpdateExpression": "SET merging = :merge", "ConditionExpression": free,
                        "ExpressionAttributeValues": {":merge": _s(record.merge_id)}}},
            {"ConditionCheck": {"TableName": self.table_name,
                                "Key": to_item({"pk": survivor, "sk": f"NEVER#{record.absorbed_id}"}),
                                "ConditionExpression": "attribute_not_exists(pk)"}},
            {"ConditionCheck": {"TableName": self.table_name,
                                "Key": to_item({"pk": absorbed, "sk": f"NEVER#{record.survivor_id}"}),
                                "ConditionExpression": "attribute_not_exists(pk)"}},
            # Ingest's head update on the absorbed profile now fails and names the survivor (merged_into).
            {"Update": {"TableName": self.table_name, "Key": to_item({"pk": absorbed, "sk": "HEAD"}),
                        "UpdateExpression": "SET merged_into = :survivor, status_before_merge = conversation_status,"
                                            " conversation_status = :merged",
                        "ConditionExpression": "attribute_exists(pk) AND attribute_not_exists(merged_into)",
                        "ExpressionAttributeValues": {":survivor": _s(record.survivor_id),
                                                      ":merged": _s(HEAD_MERGED)}}}
            if self._has_head(record.absorbed_id)
            # A profile with no conversation yet (a lead from POST /v1/events) has no head to redirect: the check
            # keeps one from appearing unseen; a message that opens one meanwhile is carried over by the sweep.
            else {"ConditionCheck": {"TableName": self.table_name, "Key": to_item({"pk": absorbed, "sk": "HEAD"}),
                                     "ConditionExpression": "attribute_not_exists(pk)"}},
        ]  # fmt: skip
        try:
            self.client.transact_write_items(TransactItems=writes)
        except ClientError as error:
            if _code(error) != _CANCELLED:
                raise _translated(error) from error
            reasons = _reasons(error)
            if reasons[0] == "ConditionalCheckFailed":
                existing = self.get_record(record.survivor_id, record.merge_id)
                if existing is not None:
                    return existing  # asked again (ingest redelivery): resume the same merge
            if "ConditionalCheckFailed" in reasons[3:5]:
                return Refusal.NEVER_MERGE
            if "ConditionalCheckFailed" in reasons[1:3]:
                profiles = [self.get_profile(record.survivor_id), self.get_profile(record.absorbed_id)]
                if any(profile is None or profile.merged_into for profile in profiles):
                    return Refusal.ALREADY_MERGED
                return Refusal.BUSY
            raise RetryableError("The profile table is busy; try again.") from error
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return record

    def _has_head(self, customer_id: str) -> bool:
        found = self._call("get_item", TableName=self.table_name, ConsistentRead=True, ProjectionExpression="pk",
                           Key=to_item({"pk": customer_pk(customer_id), "sk": "HEAD"}))  # fmt: skip
        return "Item" in found

    def get_record(self, survivor_id: str, merge_id: str) -> MergeRecord | None:
        found = self._call(
            "get_item",
            TableName=self.table_name,
            Key=to_item({"pk": customer_pk(survivor_id), "sk": f"MERGE#{merge_id}"}),
            ConsistentRead=True,
        )
        return _record(from_item(found["Item"])) if "Item" in found else None

    def records(self, customer_id: str) -> tuple[MergeRecord, ...]:
        """Pattern 12: the merges this customer survived, newest first."""
        items = self._query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :merge)",
            ExpressionAttributeValues=to_item({":pk": customer_pk(customer_id), ":merge": "MERGE#"}),
            ScanIndexForward=False,
        )
        return tuple(_record(values) for values in items)

    def never_merge(self, a: str, b: str, actor: Actor, reason: str | None, at: datetime) -> None:
        """``NEVER#<other>`` under both profiles (either side's check then refuses); rewriting it is harmless."""
        rule = {"type": "NEVER_MERGE", "actor": actor.model_dump(mode="json", exclude_none=True), "at": at}
        if reason:
            rule["reason"] = reason
        self._call(
            "transact_write_items",
            TransactItems=[
                {"Put": {"TableName": self.table_name,
                         "Item": to_item({"pk": customer_pk(one), "sk": f"NEVER#{other}", "other_customer_id": other,
                                          **rule})}}
                for one, other in ((a, b), (b, a))
            ],
        )  # fmt: skip

    def never_merge_rules(self, customer_id: str) -> tuple[str, ...]:
        items = self._query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :never)",
            ExpressionAttributeValues=to_item({":pk": customer_pk(customer_id), ":never": "NEVER#"}),
            ProjectionExpression="other_customer_id",
        )
        return tuple(values["other_customer_id"] for values in items)

    # ------------------------------------------------------------------ merge
    def absorb(self, record: MergeRecord, plan_head: HeadPlanner) -> MergeRecord:
        """Carry out a begun merge; every step idempotent, so a redelivery or the late sweep just re-runs it."""
        survivor, absorbed, merge = record.survivor_id, record.absorbed_id, record.merge_id
        items = self._raw_partition(absorbed)
        absorbed_head = next((item for item in items if item["sk"]["S"] == "HEAD"), None)
        record, plan = self._head_plan(record, absorbed_head, plan_head)
        moved = [self._move_identity(record, item) for item in items if item["sk"]["S"].startswith("IDENT#")]
        for item in items:
            if item["sk"]["S"].startswith("CONV#"):
                self._copy_conversation(record, item)
        copied = self._copied_keys(survivor, merge, "TL#")
        entries = 0
        for item in items:
            sk = item["sk"]["S"]
            if sk.startswith("TL#"):
                entries += 1
                if sk not in copied:
                    self._put_copy(self._as_survivors(record, item), merge)
            elif sk.startswith(("SUGGEST#", "NEVER#")) and not sk.endswith(f"#{survivor}"):
                self._put_copy(self._as_survivors(record, item), merge)
        self._apply_head(record, plan)
        record = self._combine_profiles(record)
        self._note(
            survivor,
            merge,
            record.requested_at,
            f"Perfil {absorbed} unido a este cliente ({_why(record)}).",
            record.evidence.actor,
        )
        return self._finish_merge(record, tuple(key for key in moved if key), entries)

    def _head_plan(
        self, record: MergeRecord, absorbed_item: Mapping[str, Any] | None, plan_head: HeadPlanner
    ) -> tuple[MergeRecord, HeadPlan]:
        absorbed = _head(from_item(absorbed_item)) if absorbed_item else None
        survivor = self._head(record.survivor_id)
        if record.folded_conversation_id is not None:
            return record, HeadPlan(survivor, record.folded_conversation_id, record.into_conversation_id)
        if survivor is not None and absorbed is not None and survivor.conversation_id == absorbed.conversation_id:
            return record, HeadPlan(survivor)  # the absorbed head already became the survivor's (a re-run)
        plan = plan_head(survivor, absorbed)
        updates: dict[str, Any] = {}
        if plan.folded_conversation_id is not None:
            updates = {"folded_conversation_id": plan.folded_conversation_id,
                       "into_conversation_id": plan.into_conversation_id}  # fmt: skip
        record = self._save_once(record, "survivor_head_before", self._raw_head(record.survivor_id), **updates)
        return record, plan

    def _move_identity(self, record: MergeRecord, item: dict[str, Any]) -> str | None:
        """Copy the ``IDENT#`` entry under the survivor, then point its lookup key at the survivor."""
        self._put_copy(self._as_survivors(record, item), record.merge_id)
        values = from_item(item)
        kind = _lookup_kind(values["kind"])
        key = f"{kind}#{values['sk'].split('#', 2)[2]}"
        moved = self._conditional(
            Key=to_item({"pk": f"ID#{key}", "sk": "ID"}),
            UpdateExpression="SET customer_id = :survivor, moved_by = :merge",
            ConditionExpression="customer_id = :absorbed OR moved_by = :merge",
            ExpressionAttributeValues={":survivor": _s(record.survivor_id), ":absorbed": _s(record.absorbed_id),
                                       ":merge": _s(record.merge_id)},
        )  # fmt: skip
        return key if moved else None  # not moved: the pointer belongs to someone else now (never ours to move)

    def _copy_conversation(self, record: MergeRecord, item: dict[str, Any]) -> None:
        """The copy under the survivor takes the conversation's index entries; the original is parked without."""
        copy = self._as_survivors(record, item)
        if item["sk"]["S"] == f"CONV#{record.folded_conversation_id}":
            # Joined to the survivor's current conversation: kept for the record, out of the agents' queues.
            copy["status"] = _s(str(ConversationStatus.CLOSED))
            copy["folded_into"] = _s(str(record.into_conversation_id))
            for name in ("gsi2pk", "gsi2sk"):
                copy.pop(name, None)
        self._put_copy(copy, record.merge_id)
        self._call(
            "update_item",
            TableName=self.table_name,
            Key={"pk": item["pk"], "sk": item["sk"]},
            UpdateExpression="SET parked_by = :merge REMOVE " + ", ".join(_INDEX_KEYS),
            ExpressionAttributeValues={":merge": _s(record.merge_id)},
        )

    def _as_survivors(self, record: MergeRecord, item: Mapping[str, Any]) -> dict[str, Any]:
        copy = {name: value for name, value in item.items() if name not in ("parked_by",)}
        copy["pk"] = _s(customer_pk(record.survivor_id))
        copy["merged_from"] = _s(record.merge_id)
        if "customer_id" in copy:
            copy["customer_id"] = _s(record.survivor_id)
        is_conversation = item["sk"]["S"].startswith("CONV#")
        folded = record.folded_conversation_id
        if folded and not is_conversation and copy.get("conversation_id") == _s(folded):
            copy["conversation_id"] = _s(str(record.into_conversation_id))
        return _indexed(copy) if is_conversation and "gsi1pk" not in copy else copy

    def _put_copy(self, item: dict[str, Any], merge_id: str) -> None:
        # Refused when the survivor has its own item under this key (the same message ingested on both): keep it.
        self._conditionally(
            "put_item",
            Item=item,
            ConditionExpression="attribute_not_exists(pk) OR merged_from = :merge",
            ExpressionAttributeValues={":merge": _s(merge_id)},
        )

    def _apply_head(self, record: MergeRecord, plan: HeadPlan) -> None:
        """Write the survivor's head as planned, unless a message moved it meanwhile (then re-plan that much)."""
        for _attempt in range(4):
            current = self._head(record.survivor_id)
            target = plan.head
            if target is None:
                return
            if current is not None and current.conversation_id == target.conversation_id:
                if plan.folded_conversation_id is None:
                    return  # already the planned head (a re-run), or the same conversation all along
                # Joined conversations: widen the survivor's live fields, idempotently.
                target = _widened(current, target)
                if target == current:
                    return
            condition: dict[str, Any]
            if current is None:
                condition = {"ConditionExpression": "attribute_not_exists(pk)"}
            else:
                condition = {
                    "ConditionExpression": "conversation_id = :seen AND last_message_at = :seen_at",
                    "ExpressionAttributeValues": {":seen": _s(current.conversation_id),
                                                  ":seen_at": to_attribute(current.last_message_at)},
                }  # fmt: skip
            try:
                self.client.put_item(
                    TableName=self.table_name, Item=to_item(_head_item(record.survivor_id, target)), **condition
                )
                return
            except ClientError as error:
                if _code(error) != _CONDITION_FAILED:
                    raise _translated(error) from error
            except BotoCoreError as error:
                raise RetryableError("The profile table is unavailable; try again.") from error
        raise RetryableError("The survivor's conversation kept changing; try again.")

    def _combine_profiles(self, record: MergeRecord) -> MergeRecord:
        """The survivor's profile with the absorbed one's fields, saved once with the before/after on the record."""
        if record.survivor_after is not None:
            return record
        from shared.merging import combined_profile

        survivor = self.get_profile(record.survivor_id)
        absorbed = self.get_profile(record.absorbed_id)
        if survivor is None or absorbed is None:
            raise RetryableError("A merged profile cannot be read; try again.")
        combined = combined_profile(survivor, absorbed, record.requested_at)
        before, after = ProfileFields.of(survivor), ProfileFields.of(combined)
        self._save_profile(survivor, combined, record, survivor_before=before, survivor_after=after)
        return record.model_copy(update={"survivor_before": before, "survivor_after": after})

    def _save_profile(
        self, seen: CustomerProfile, profile: CustomerProfile, record: MergeRecord, **record_fields: Any
    ) -> None:
        values = _profile_item(profile.model_copy(update={"version": seen.version + 1}))
        fields = {name: value for name, value in values.items() if name not in ("pk", "sk")}
        present = {
            f"#f{index}": (name, value) for index, (name, value) in enumerate(fields.items()) if value is not None
        }
        absent = [f"#f{index}" for index, (name, value) in enumerate(fields.items()) if value is None]
        names = dict(zip((f"#f{i}" for i in range(len(fields))), fields, strict=True))
        expression = "SET " + ", ".join(f"{alias} = :{alias[1:]}" for alias in present)
        if absent:
            expression += " REMOVE " + ", ".join(absent)
        record_updates = {f":r_{name}": value.model_dump(mode="json") for name, value in record_fields.items()}
        writes = [
            {"Update": {"TableName": self.table_name, "Key": to_item({"pk": values["pk"], "sk": "PROFILE"}),
                        "UpdateExpression": expression,
                        "ConditionExpression": "version = :seen",
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": {
                            **to_item({f":{alias[1:]}": value for alias, (_, value) in present.items()}),
                            ":seen": {"N": str(seen.version)}}}},
        ]  # fmt: skip
        if record_updates:
            writes.append(
                {"Update": {"TableName": self.table_name,
                            "Key": to_item({"pk": customer_pk(record.survivor_id), "sk": f"MERGE#{record.merge_id}"}),
                            "UpdateExpression": "SET " + ", ".join(f"{name[3:]} = {name}" for name in record_updates),
                            "ExpressionAttributeValues": to_item(record_updates)}}
            )  # fmt: skip
        try:
            self.client.transact_write_items(TransactItems=writes)
        except ClientError as error:
            if _code(error) == _CANCELLED:
                raise RetryableError("The profile changed while merging; try again.") from error
            raise _translated(error) from error
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error

    def _finish_merge(self, record: MergeRecord, moved: tuple[str, ...], entries: int) -> MergeRecord:
        survivor, absorbed = customer_pk(record.survivor_id), customer_pk(record.absorbed_id)
        at = record.completed_at or record.requested_at
        if record.status == MergeStatus.MERGING:
            from shared.clock import now

            at = now()
        moved = tuple(dict.fromkeys((*record.moved_identities, *moved)))
        writes = [
            {"Update": {"TableName": self.table_name,
                        "Key": to_item({"pk": survivor, "sk": f"MERGE#{record.merge_id}"}),
                        "UpdateExpression": "SET #status = :merged, completed_at = :at, moved_identities = :moved,"
                                            " entries_copied = :entries",
                        "ConditionExpression": "#status IN (:merging, :merged)",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": to_item({":merged": "merged", ":merging": "merging", ":at": at,
                                                              ":moved": list(moved), ":entries": entries})}},
            {"Update": {"TableName": self.table_name, "Key": to_item({"pk": survivor, "sk": "PROFILE"}),
                        "UpdateExpression": "REMOVE merging",
                        "ConditionExpression": "merging = :merge OR attribute_not_exists(merging)",
                        "ExpressionAttributeValues": {":merge": _s(record.merge_id)}}},
            # The suggestions this merge answers.
            {"Delete": {"TableName": self.table_name,
                        "Key": to_item({"pk": survivor, "sk": f"SUGGEST#{record.absorbed_id}"})}},
            {"Delete": {"TableName": self.table_name,
                        "Key": to_item({"pk": absorbed, "sk": f"SUGGEST#{record.survivor_id}"})}},
        ]  # fmt: skip
        self._transact(writes, "The merge could not be completed; try again.")
        return record.model_copy(
            update={
                "status": MergeStatus.MERGED,
                "completed_at": at,
                "moved_identities": moved,
                "entries_copied": entries,
            }
        )

    # ------------------------------------------------------------------ unmerge
    def begin_unmerge(self, record: MergeRecord) -> MergeRecord:
        """Mark the merge ``unmerging`` and lock the survivor; Conflict when it cannot be undone now."""
        survivor = customer_pk(record.survivor_id)
        actor = record.unmerged_by.model_dump(mode="json", exclude_none=True) if record.unmerged_by else None
        record_values: dict[str, Any] = {":unmerging": "unmerging", ":merged": "merged", ":by": actor}
        reason = ""
        if record.unmerge_reason:
            reason = ", unmerge_reason = :reason"
            record_values[":reason"] = record.unmerge_reason
        writes = [
            {"Update": {"TableName": self.table_name,
                        "Key": to_item({"pk": survivor, "sk": f"MERGE#{record.merge_id}"}),
                        "UpdateExpression": f"SET #status = :unmerging, unmerged_by = :by{reason}",
                        "ConditionExpression": "#status = :merged",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": to_item(record_values)}},
            {"Update": {"TableName": self.table_name, "Key": to_item({"pk": survivor, "sk": "PROFILE"}),
                        "UpdateExpression": "SET merging = :merge",
                        "ConditionExpression": "attribute_not_exists(merging) AND attribute_not_exists(merged_into)",
                        "ExpressionAttributeValues": {":merge": _s(record.merge_id)}}},
        ]  # fmt: skip
        try:
            self.client.transact_write_items(TransactItems=writes)
        except ClientError as error:
            if _code(error) != _CANCELLED:
                raise _translated(error) from error
            current = self.get_record(record.survivor_id, record.merge_id)
            if current is not None and current.status in (MergeStatus.UNMERGING, MergeStatus.UNMERGED):
                return current
            if current is not None and current.status == MergeStatus.MERGING:
                raise Conflict("The merge is still being carried out; unmerge it once it is done.") from error
            survivor_profile = self.get_profile(record.survivor_id)
            if survivor_profile is not None and survivor_profile.merged_into:
                raise Conflict(
                    f"Customer {record.survivor_id} was itself merged into {survivor_profile.merged_into} since;"
                    " unmerge that merge first."
                ) from error
            raise Conflict("Another merge or unmerge of this customer is running; try again shortly.") from error
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return record.model_copy(update={"status": MergeStatus.UNMERGING})

    def separate(self, record: MergeRecord, restore: Restorer) -> MergeRecord:
        """Undo a merge: the absorbed profile live again, its pointers back, copies gone, later entries returned."""
        from shared.clock import now

        survivor, absorbed, merge = record.survivor_id, record.absorbed_id, record.merge_id
        at = record.unmerged_at or now()
        # 1. The absorbed profile stops redirecting, so what its identities bring from now on stays there.
        self._conditional(
            Key=to_item({"pk": customer_pk(absorbed), "sk": "HEAD"}),
            UpdateExpression="SET conversation_status = status_before_merge REMOVE merged_into, status_before_merge",
            ConditionExpression="merged_into = :survivor",
            ExpressionAttributeValues={":survivor": _s(survivor)},
        )
        self._conditional(
            Key=to_item({"pk": customer_pk(absorbed), "sk": "PROFILE"}),
            UpdateExpression="REMOVE merged_into, merge_id",
            ConditionExpression="merged_into = :survivor",
            ExpressionAttributeValues={":survivor": _s(survivor)},
        )
        # 2. Its pointers back.
        for key in record.moved_identities:
            self._conditional(
                Key=to_item({"pk": f"ID#{key}", "sk": "ID"}),
                UpdateExpression="SET customer_id = :absorbed REMOVE moved_by",
                ConditionExpression="customer_id = :survivor",
                ExpressionAttributeValues={":absorbed": _s(absorbed), ":survivor": _s(survivor)},
            )
        moved = set(record.moved_identities)
        absorbed_conversations = {
            item["sk"]["S"].removeprefix("CONV#") for item in self._raw_partition(absorbed, "CONV#")
        }
        home = record.folded_conversation_id or self._home_conversation(absorbed)
        # 3. Copies go; entries that came in through the absorbed profile's identities since the merge go back.
        returned = 0
        for item in self._raw_partition(survivor):
            sk = item["sk"]["S"]
            if item.get("merged_from") == _s(merge):
                if sk.startswith("CONV#"):
                    self._unpark(absorbed, sk)
                self._delete(item, merge)
            elif sk.startswith("TL#") and item.get("sender_key", {}).get("S") in moved:
                received = item.get("received_at", {}).get("S", "")
                if received >= sortable_timestamp(record.requested_at):
                    copy = dict(item)
                    copy["pk"] = _s(customer_pk(absorbed))
                    copy["customer_id"] = _s(absorbed)
                    conversation = item.get("conversation_id", {}).get("S")
                    if conversation not in absorbed_conversations and home:
                        copy["conversation_id"] = _s(home)
                    copy["returned_by"] = _s(merge)
                    self._put_copy(copy, merge)
                    self.client.delete_item(TableName=self.table_name, Key={"pk": item["pk"], "sk": item["sk"]})
                    returned += 1
        # 4. The survivor's head as it was, if the merge made it what it is and no message has moved it since.
        self._restore_head(record, absorbed_conversations)
        # 5. Fields the merge gave the survivor, unless changed since.
        current = self.get_profile(survivor)
        if current is not None:
            restored = restore(current, at)
            if restored != current.model_copy(update={"updated_at": restored.updated_at}):
                self._save_profile(current, restored, record)
        summary = f"Perfil {absorbed} separado de este cliente"
        actor = record.unmerged_by or Actor(kind=ActorKind.SYSTEM)
        self._note(survivor, merge + ":unmerge", at, summary + ".", actor)
        self._note(absorbed, merge + ":unmerge", at, f"Perfil separado de {survivor}.", actor)
        writes = [
            {"Update": {"TableName": self.table_name,
                        "Key": to_item({"pk": customer_pk(survivor), "sk": f"MERGE#{merge}"}),
                        "UpdateExpression": "SET #status = :unmerged, unmerged_at = :at",
                        "ConditionExpression": "#status IN (:unmerging, :unmerged)",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": to_item({":unmerged": "unmerged", ":unmerging": "unmerging",
                                                              ":at": at})}},
            {"Update": {"TableName": self.table_name, "Key": to_item({"pk": customer_pk(survivor), "sk": "PROFILE"}),
                        "UpdateExpression": "REMOVE merging",
                        "ConditionExpression": "merging = :merge OR attribute_not_exists(merging)",
                        "ExpressionAttributeValues": {":merge": _s(merge)}}},
        ]  # fmt: skip
        self._transact(writes, "The unmerge could not be completed; try again.")
        return record.model_copy(update={"status": MergeStatus.UNMERGED, "unmerged_at": at})

    def _restore_head(self, record: MergeRecord, absorbed_conversations: set[str]) -> None:
        head = self._head(record.survivor_id)
        before = self._raw_record_field(record.survivor_id, record.merge_id, "survivor_head_before")
        if head is None or not before:
            return
        was = _head(from_item(before))
        absorbed = self._head(record.absorbed_id)
        untouched = head.last_message_at <= max(
            was.last_message_at, absorbed.last_message_at if absorbed else was.last_message_at
        )
        made_by_merge = head.conversation_id in absorbed_conversations or (
            head.conversation_id == record.into_conversation_id and untouched
        )
        if made_by_merge and (head.conversation_id in absorbed_conversations or untouched):
            self._conditionally(
                "put_item",
                Item=before,
                ConditionExpression="conversation_id = :seen AND last_message_at = :seen_at",
                ExpressionAttributeValues={":seen": _s(head.conversation_id),
                                           ":seen_at": to_attribute(head.last_message_at)},
            )  # fmt: skip

    def _unpark(self, absorbed: str, sk: str) -> None:
        """Give the absorbed profile's conversation its index entries back."""
        found = self._call(
            "get_item", TableName=self.table_name, Key=to_item({"pk": customer_pk(absorbed), "sk": sk}),
            ConsistentRead=True,
        )  # fmt: skip
        item = found.get("Item")
        if not item or "parked_by" not in item:
            return
        restored = _indexed(item)
        restored.pop("parked_by", None)
        self.client.put_item(TableName=self.table_name, Item=restored)

    def _home_conversation(self, customer_id: str) -> str | None:
        found = self._call(
            "get_item", TableName=self.table_name, Key=to_item({"pk": customer_pk(customer_id), "sk": "HEAD"}),
            ProjectionExpression="conversation_id", ConsistentRead=True,
        )  # fmt: skip
        return from_item(found.get("Item") or {}).get("conversation_id")

    # ------------------------------------------------------------------ small helpers
    def _raw_partition(self, customer_id: str, prefix: str | None = None) -> list[dict[str, Any]]:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk" + (" AND begins_with(sk, :prefix)" if prefix else ""),
            "ExpressionAttributeValues": {":pk": _s(customer_pk(customer_id)),
                                          **({":prefix": _s(prefix)} if prefix else {})},
            "ConsistentRead": True,
        }  # fmt: skip
        return list(self._pages(request))

    def _pages(self, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
        start: Any = None
        while True:
            page = self._call("query", **request, **({"ExclusiveStartKey": start} if start else {}))
            yield from page.get("Items", [])
            start = page.get("LastEvaluatedKey")
            if not start:
                return

    def _copied_keys(self, customer_id: str, merge_id: str, prefix: str) -> set[str]:
        request = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "FilterExpression": "merged_from = :merge",
            "ProjectionExpression": "sk",
            "ExpressionAttributeValues": {":pk": _s(customer_pk(customer_id)), ":prefix": _s(prefix),
                                          ":merge": _s(merge_id)},
            "ConsistentRead": True,
        }  # fmt: skip
        return {item["sk"]["S"] for item in self._pages(request)}

    def _raw_head(self, customer_id: str) -> dict[str, Any] | None:
        found = self._call(
            "get_item", TableName=self.table_name, Key=to_item({"pk": customer_pk(customer_id), "sk": "HEAD"}),
            ConsistentRead=True,
        )  # fmt: skip
        item: dict[str, Any] | None = found.get("Item")
        return item

    def _raw_record_field(self, survivor_id: str, merge_id: str, name: str) -> Any:
        found = self._call(
            "get_item", TableName=self.table_name,
            Key=to_item({"pk": customer_pk(survivor_id), "sk": f"MERGE#{merge_id}"}),
            ProjectionExpression="#field", ExpressionAttributeNames={"#field": name}, ConsistentRead=True,
        )  # fmt: skip
        value = (found.get("Item") or {}).get(name)
        return value.get("M") if value else None

    def _save_once(self, record: MergeRecord, raw_name: str, raw: dict[str, Any] | None, **fields: Any) -> MergeRecord:
        """Save the plan on the record the first time only; a re-run reads back what was saved."""
        values: dict[str, Any] = {f":{name}": _s(value) for name, value in fields.items()}
        assignments = [f"{name} = :{name}" for name in fields]
        if raw is not None:
            values[":raw"] = {"M": raw}
            assignments.append(f"{raw_name} = :raw")
        if not assignments:
            return record
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key=to_item({"pk": customer_pk(record.survivor_id), "sk": f"MERGE#{record.merge_id}"}),
                UpdateExpression="SET " + ", ".join(assignments),
                ConditionExpression=f"attribute_not_exists({raw_name})",
                ExpressionAttributeValues=values,
            )
        except ClientError as error:
            if _code(error) != _CONDITION_FAILED:
                raise _translated(error) from error
            saved = self.get_record(record.survivor_id, record.merge_id)
            return saved or record
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        return record.model_copy(update=fields)

    def _note(self, customer_id: str, seed: str, at: datetime, summary: str, actor: Actor) -> None:
        entry_id = new_id(IdPrefix.TIMELINE, at=at, seed=seed)
        item = {
            "pk": customer_pk(customer_id),
            "sk": f"TL#{sortable_timestamp(at)}#{entry_id}",
            "type": "TIMELINE",
            "id": entry_id,
            "customer_id": customer_id,
            "occurred_at": at,
            "kind": "note",
            "summary": summary,
            "actor": actor.model_dump(mode="json", exclude_none=True),
        }
        self._conditionally("put_item", Item=to_item(item), ConditionExpression="attribute_not_exists(pk)")

    def _delete(self, item: Mapping[str, Any], merge_id: str) -> None:
        """Delete a copy this merge made (never the survivor's own item)."""
        self._conditionally(
            "delete_item",
            Key={"pk": item["pk"], "sk": item["sk"]},
            ConditionExpression="merged_from = :merge",
            ExpressionAttributeValues={":merge": _s(merge_id)},
        )

    def _conditional(self, **request: Any) -> bool:
        return self._conditionally("update_item", **request)

    def _transact(self, writes: list[dict[str, Any]], message: str) -> None:
        try:
            self.client.transact_write_items(TransactItems=writes)
        except ClientError as error:
            if _code(error) == _CANCELLED:
                raise RetryableError(message) from error
            raise _translated(error) from error
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error


def _indexed(item: Mapping[str, Any]) -> dict[str, Any]:
    """A conversation item with its index keys (conversation by id; agent queue while not closed) put back."""
    copy = dict(item)
    conversation_id = item["sk"]["S"].removeprefix("CONV#")
    copy.update(gsi1pk=_s(f"CONV#{conversation_id}"), gsi1sk=_s("CONV"))
    status = from_attribute(copy.get("status", _s("closed")))
    if status != ConversationStatus.CLOSED:
        opened = sortable_timestamp(datetime.fromisoformat(from_attribute(copy["opened_at"])))
        copy.update(gsi2pk=_s(f"STATUS#{status}"), gsi2sk=_s(f"{opened}#{conversation_id}"))
    return copy


def _widened(current: HeadState, planned: HeadState) -> HeadState:
    """The survivor's head widened by the joined conversation's live fields (never narrowed: re-runs are no-ops)."""
    later = planned if planned.last_message_at > current.last_message_at else current
    inbound = dict(current.last_inbound_at)
    for channel, at in planned.last_inbound_at.items():
        inbound[channel] = max(at, inbound.get(channel, at))
    return HeadState(
        conversation_id=current.conversation_id,
        status=current.status,
        opened_at=min(current.opened_at, planned.opened_at),
        last_message_at=later.last_message_at,
        last_channel=later.last_channel,
        channels=current.channels | planned.channels,
        last_inbound_at=inbound,
        last_message_id=later.last_message_id,
    )


def _lookup_kind(kind: str) -> str:
    return str(IdentityKind.PHONE) if kind == IdentityKind.WHATSAPP else kind


def _why(record: MergeRecord) -> str:
    evidence = record.evidence
    kinds = ", ".join(str(kind) for kind in evidence.identity_kinds)
    origin = {
        "ivr_digits": "documento digitado en el IVR",
        "webchat_email": "correo dado en el chat web",
        "webchat_phone": "teléfono dado en el chat web",
        "telegram_contact": "contacto compartido en Telegram",
        "agent": "unión hecha por un agente",
    }.get(evidence.source, evidence.source)
    return f"{origin}: {kinds}" if kinds else origin
