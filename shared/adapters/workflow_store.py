"""Workflow versions and enabled overrides on ProfileTable, in one partition (docs/data-model.md, patterns 30-34).

A deployment has tens of workflows, not thousands, so they all live under ``pk=WORKFLOWS``:

- a **head** per workflow id, ``sk=WF#<id>``: the enabled override (who set it, when) and a copy of the newest
  version loaded through the API. ``states()`` is one Query of ``begins_with(sk, "WF#")``: every head, each one item
  however many versions pile up, which is what ``WorkflowRegistry.enabled()`` reads (about every 30 s per warm
  function);
- a **version** per id and version, ``sk=WFV#<id>#<version, 10 digits>``: the document as JSON text (the raw mapping
  as loaded, so it reads back exactly as it was sent), its fingerprint, ``source`` (``api`` or ``shipped``, a shipped
  version's copy kept by ``remember``), who loaded it and when. ``WFV#`` does not begin with ``WF#``, so the heads'
  Query never reads versions.

A version is written once: ``attribute_not_exists`` on every put. An API version and its head's copy are written in
one transaction whose head condition is "no newer version stored", so two concurrent ``PUT``s cannot leave the head
pointing at the older one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from shared.adapters.dynamodb import from_item, to_item
from shared.adapters.profile_store import ProfileStore, _instant
from shared.workflows.registry import API, SHIPPED, Source, StoredVersion, WorkflowState

PARTITION: Final = "WORKFLOWS"
HEAD: Final = "WORKFLOW"
VERSION: Final = "WORKFLOW_VERSION"
#: The version's attributes the head copies, each as ``newest_<name>``.
_COPIED: Final = ("version", "document", "fingerprint", "source", "loaded_by", "loaded_at")
_SWITCH_NAMES: Final = {"#type": "type", "#id": "workflow_id", "#enabled": "enabled", "#by": "enabled_by",
                        "#at": "enabled_at"}  # fmt: skip


def head_sk(workflow_id: str) -> str:
    """Sort key of a workflow's head (ids never hold ``#``: the language allows ``[a-z0-9_]``)."""
    return f"WF#{workflow_id}"


def version_sk(workflow_id: str, version: int) -> str:
    """Sort key of one version: zero-padded, so an id's versions sort by number."""
    return f"WFV#{workflow_id}#{version:010d}"


def _key(sk: str) -> dict[str, Any]:
    return to_item({"pk": PARTITION, "sk": sk})


def _version_item(stored: StoredVersion) -> dict[str, Any]:
    return {
        "pk": PARTITION,
        "sk": version_sk(stored.workflow_id, stored.version),
        "type": VERSION,
        "workflow_id": stored.workflow_id,
        "version": stored.version,
        "document": json.dumps(stored.document, ensure_ascii=False, separators=(",", ":")),
        "fingerprint": stored.fingerprint,
        "source": stored.source,
        "loaded_by": stored.loaded_by,
        "loaded_at": stored.loaded_at,
    }


def _source(value: Any) -> Source:
    return SHIPPED if value == SHIPPED else API


def _stored(values: Mapping[str, Any], prefix: str = "") -> StoredVersion:
    return StoredVersion(
        workflow_id=values["workflow_id"],
        version=int(values[f"{prefix}version"]),
        document=json.loads(values[f"{prefix}document"]),
        fingerprint=values[f"{prefix}fingerprint"],
        source=_source(values.get(f"{prefix}source")),
        loaded_by=values.get(f"{prefix}loaded_by"),
        loaded_at=_instant(values[f"{prefix}loaded_at"]),
    )


def _state(values: Mapping[str, Any]) -> WorkflowState:
    enabled_at = values.get("enabled_at")
    return WorkflowState(
        workflow_id=values["workflow_id"],
        enabled=values.get("enabled"),
        enabled_by=values.get("enabled_by"),
        enabled_at=_instant(enabled_at) if enabled_at else None,
        newest=_stored(values, "newest_") if "newest_version" in values else None,
    )


class WorkflowStore(ProfileStore):
    """The registry's store (``shared.workflows.registry.WorkflowStore``) on ProfileTable."""

    def states(self) -> tuple[WorkflowState, ...]:
        """Pattern 30: every head, one Query (eventually consistent: the registry caches it for 30 s anyway)."""
        items = self._query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :head)",
            ExpressionAttributeValues=to_item({":pk": PARTITION, ":head": "WF#"}),
        )
        return tuple(_state(values) for values in items)

    def state(self, workflow_id: str) -> WorkflowState | None:
        """Pattern 31: one head, strongly consistent (the API reads its own writes); None when there is none."""
        found = self._call("get_item", TableName=self.table_name, Key=_key(head_sk(workflow_id)), ConsistentRead=True)
        return _state(from_item(found["Item"])) if "Item" in found else None

    def stored_version(self, workflow_id: str, version: int) -> StoredVersion | None:
        """Pattern 32: one version, strongly consistent; None when it is not stored."""
        found = self._call(
            "get_item", TableName=self.table_name, Key=_key(version_sk(workflow_id, version)), ConsistentRead=True
        )
        return _stored(from_item(found["Item"])) if "Item" in found else None

    def versions(self, workflow_id: str) -> tuple[StoredVersion, ...]:
        """Pattern 33: every stored version of one id, oldest first."""
        items = self._query_all(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :versions)",
            ExpressionAttributeValues=to_item({":pk": PARTITION, ":versions": f"WFV#{workflow_id}#"}),
            ConsistentRead=True,
        )
        return tuple(_stored(values) for values in items)

    def add_newest(self, stored: StoredVersion) -> bool:
        """Pattern 34: put the version (if absent) and copy it to the head (if no newer is stored), atomically.

        Returns
        -------
        bool
            False when either condition failed: nothing was written. The registry reads why.
        """
        item = _version_item(stored)
        version = {"Put": {"TableName": self.table_name, "Item": to_item(item),
                           "ConditionExpression": "attribute_not_exists(pk)"}}  # fmt: skip
        newest = {f"newest_{name}": item[name] for name in _COPIED}
        kept = {name: value for name, value in newest.items() if value is not None}
        removed = [name for name, value in newest.items() if value is None]
        expression = "SET #type = :type, workflow_id = :id, " + ", ".join(f"{name} = :{name}" for name in kept)
        head = {
            "Update": {
                "TableName": self.table_name,
                "Key": _key(head_sk(stored.workflow_id)),
                "UpdateExpression": expression + (f" REMOVE {', '.join(removed)}" if removed else ""),
                "ConditionExpression": "attribute_not_exists(newest_version) OR newest_version < :newest_version",
                "ExpressionAttributeNames": {"#type": "type"},
                "ExpressionAttributeValues": to_item(
                    {":type": HEAD, ":id": stored.workflow_id, **{f":{name}": value for name, value in kept.items()}}
                ),
            }
        }
        return self._transact_or_reasons([version, head]) is None

    def keep(self, stored: StoredVersion) -> bool:
        """Pattern 32's put: a shipped version's copy, unless the version is stored; False when it was."""
        return self._conditionally(
            "put_item", Item=to_item(_version_item(stored)), ConditionExpression="attribute_not_exists(pk)"
        )

    def set_enabled(self, workflow_id: str, enabled: bool, by: str, at: datetime) -> WorkflowState:
        """Pattern 31's write: the override, who and when (an ``UpdateItem`` that creates the head if need be)."""
        found = self._call(
            "update_item",
            TableName=self.table_name,
            Key=_key(head_sk(workflow_id)),
            # Every name aliased: ``type`` is a reserved word, and so are many short ones.
            UpdateExpression="SET #type = :type, #id = :id, #enabled = :enabled, #by = :by, #at = :at",
            ExpressionAttributeNames=_SWITCH_NAMES,
            ExpressionAttributeValues=to_item(
                {":type": HEAD, ":id": workflow_id, ":enabled": enabled, ":by": by, ":at": at}
            ),
            ReturnValues="ALL_NEW",
        )
        return _state(from_item(found["Attributes"]))
