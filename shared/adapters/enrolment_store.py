"""Workflow enrolments on ProfileTable: one item per enrolment under its customer, plus a guard per workflow and key.

An enrolment is ``CUST#<customer id>`` / ``ENROL#<workflow id>#<enrolment id>`` (docs/data-model.md, patterns 13-14):
the ``Enrolment`` model as JSON-like attributes, ``version`` a number the writes are conditioned on. While it is open
it carries ``gsi2pk=WF#<workflow id>``, ``gsi2sk=<started_at>#<enrolment id>``, so "who is in this workflow" is one
query of a sparse index; it drops them when it ends, as closed conversations drop theirs.

The engine's re-entry rule (never two open enrolments per customer, workflow and key) is decided on a read, so two
different trigger events arriving together could both pass it. The guard item ``ENROLKEY#<workflow id>#<key>``
closes that race: ``create`` puts it in the same transaction as the enrolment, only if absent, and the ``save`` that
ends the enrolment deletes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from shared.adapters.dynamodb import from_item, to_item
from shared.adapters.profile_store import (
    ProfileStore,
    customer_pk,
)
from shared.errors import PermanentError
from shared.models.common import sortable_timestamp
from shared.workflows.engine import Enrolment

ENROLMENT: Final = "ENROLMENT"
ENROLMENT_KEY: Final = "ENROLMENT_KEY"
#: DynamoDB refuses items over 400 KB; refuse well before, with an error that names the enrolment.
MAX_ITEM_BYTES: Final = 350_000
_FAILED: Final = "ConditionalCheckFailed"  # a transaction's cancellation reason for a condition that did not hold


def enrolment_sk(workflow_id: str, enrolment_id: str) -> str:
    """Sort key of an enrolment under its customer."""
    return f"ENROL#{workflow_id}#{enrolment_id}"


def guard_sk(workflow_id: str, key: str | None) -> str:
    """Sort key of the guard that holds a workflow and key's open enrolment (an empty key for a keyless workflow).

    ``ENROLKEY#`` sorts after ``ENROL#…`` and does not begin with ``ENROL#``, so pattern 13 never reads guards."""
    return f"ENROLKEY#{workflow_id}#{key or ''}"


def workflow_pk(workflow_id: str) -> str:
    """gsi2 partition of a workflow's open enrolments (pattern 14)."""
    return f"WF#{workflow_id}"


@dataclass(frozen=True)
class EnrolmentPage:
    """One page of a workflow's open enrolments, newest first, and the cursor of the next (None on the last)."""

    enrolments: tuple[Enrolment, ...]
    cursor: str | None


class EnrolmentStore(ProfileStore):
    """The enrolment repository of the workflow engine and the API's enrolment reads."""

    def enrolments(self, customer_id: str, *, consistent: bool = False) -> tuple[Enrolment, ...]:
        """Pattern 13: every enrolment of the customer (any workflow, open or ended), what ``enrol`` takes as
        ``previous``. ``consistent`` for the re-read after a refused ``create``."""
        items = self._query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :enrol)",
            ExpressionAttributeValues=to_item({":pk": customer_pk(customer_id), ":enrol": "ENROL#"}),
            ConsistentRead=consistent,
        )
        return tuple(_enrolment(values) for values in items)

    def get(self, customer_id: str, workflow_id: str, enrolment_id: str) -> Enrolment | None:
        """One enrolment, strongly consistent (the consumer reads it right before advancing it); None if unknown."""
        found = self._call(
            "get_item",
            TableName=self.table_name,
            Key=to_item({"pk": customer_pk(customer_id), "sk": enrolment_sk(workflow_id, enrolment_id)}),
            ConsistentRead=True,
        )
        return _enrolment(from_item(found["Item"])) if "Item" in found else None

    def create(self, enrolment: Enrolment) -> bool:
        """Put a new enrolment, and (when open) claim its workflow and key, in one ``TransactWriteItems``.

        Returns
        -------
        bool
            False when the enrolment exists (a redelivered trigger) or another enrolment of this workflow and key is
            open (a concurrent trigger): nothing was written. The caller re-reads (``consistent=True``) and lets
            ``enrol`` tell which.
        """
        writes = [_put(self.table_name, _item(enrolment), "attribute_not_exists(pk)")]
        if enrolment.status.open:
            guard = {
                "pk": customer_pk(enrolment.customer_id),
                "sk": guard_sk(enrolment.workflow_id, enrolment.key),
                "type": ENROLMENT_KEY,
                "workflow_id": enrolment.workflow_id,
                "key": enrolment.key,
                "open_enrolment": enrolment.id,
                "since": enrolment.started_at,
            }
            writes.append(_put(self.table_name, guard, "attribute_not_exists(pk)"))
        return self._transact_or_reasons(writes) is None

    def save(self, enrolment: Enrolment, expected_version: int) -> bool:
        """Store the state ``advance`` returned, if the stored one is still ``expected_version`` (optimistic locking).

        ``enrolment.version`` must be ``expected_version + 1``, as ``advance`` makes it. When the enrolment has ended,
        the same transaction releases its workflow and key's guard.

        Returns
        -------
        bool
            False on a version conflict (another consumer saved first, or the enrolment is gone): nothing changed; the
            caller reloads and runs ``advance`` again.

        Raises
        ------
        ValueError
            If ``enrolment.version`` is not ``expected_version + 1``.
        """
        if enrolment.version != expected_version + 1:
            raise ValueError(
                f"enrolment {enrolment.id} is version {enrolment.version}; saving over {expected_version} needs"
                f" {expected_version + 1}"
            )
        put = _put(self.table_name, _item(enrolment), "version = :expected", {":expected": expected_version})
        if enrolment.status.open:
            return self._put_alone(put)
        release = {
            "Delete": {
                "TableName": self.table_name,
                "Key": to_item(
                    {"pk": customer_pk(enrolment.customer_id), "sk": guard_sk(enrolment.workflow_id, enrolment.key)}
                ),
                "ConditionExpression": "open_enrolment = :id",
                "ExpressionAttributeValues": to_item({":id": enrolment.id}),
            }
        }
        failed = self._transact_or_reasons([put, release])
        if failed is None:
            return True
        if failed[0] == _FAILED:
            return False
        # The version matched but the guard is not this enrolment's (gone, or from before guards existed): it holds
        # nothing to release, so the state is saved alone rather than refused for ever.
        return self._put_alone(put)

    def enrolled_in(self, workflow_id: str, *, limit: int = 50, cursor: str | None = None) -> EnrolmentPage:
        """Pattern 14: one page of the workflow's open enrolments (every version), newest first, through gsi2.

        Parameters
        ----------
        workflow_id : str
            Which workflow.
        limit : int
            Enrolments per page (1-100).
        cursor : str, optional
            The ``cursor`` of the previous page.

        Returns
        -------
        EnrolmentPage
            The enrolments and the cursor of the next page.

        Raises
        ------
        InvalidInput
            The cursor is not one this method returned for this workflow, or the limit is out of range.
        """
        items, next_cursor = self._index_page("gsi2", workflow_pk(workflow_id), item_prefix="ENROL#", forward=False,
                                              limit=limit, cursor=cursor, what="workflow")  # fmt: skip
        return EnrolmentPage(enrolments=tuple(_enrolment(item) for item in items), cursor=next_cursor)

    def _put_alone(self, put: dict[str, Any]) -> bool:
        """One conditional ``PutItem``: half the write units of a one-item transaction."""
        request = {name: value for name, value in put["Put"].items() if name != "TableName"}
        return self._conditionally("put_item", **request)


def _put(
    table: str, values: Mapping[str, Any], condition: str, placeholders: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    put: dict[str, Any] = {"TableName": table, "Item": to_item(values), "ConditionExpression": condition}
    if placeholders:
        put["ExpressionAttributeValues"] = to_item(placeholders)
    return {"Put": put}


def _item(enrolment: Enrolment) -> dict[str, Any]:
    values = enrolment.model_dump(mode="json")
    size = len(json.dumps(values, separators=(",", ":")).encode())
    if size > MAX_ITEM_BYTES:
        raise PermanentError(f"Enrolment {enrolment.id} is too large to store ({size} bytes).")
    index = {}
    if enrolment.status.open:
        index = {
            "gsi2pk": workflow_pk(enrolment.workflow_id),
            "gsi2sk": f"{sortable_timestamp(enrolment.started_at)}#{enrolment.id}",
        }
    return {
        "pk": customer_pk(enrolment.customer_id),
        "sk": enrolment_sk(enrolment.workflow_id, enrolment.id),
        "type": ENROLMENT,
        **values,
        **index,
    }


def _enrolment(values: Mapping[str, Any]) -> Enrolment:
    # The model's fields only: the keys, and what others add to any item they copy (a merge's ``merged_from``), stay.
    return Enrolment.model_validate({name: value for name, value in values.items() if name in Enrolment.model_fields})
