"""Schedule runs on ProfileTable, and the scan of live profiles each run reads (docs/data-model.md, patterns 40-42).

Next to the workflow heads and versions, under ``pk=WORKFLOWS``:

- **the cursor**, ``sk=SCHEDULE_CURSOR``: ``covered`` (the last instant a tick looked at) and ``open_runs`` (a string
  set of the runs not finished). One strongly consistent ``GetItem`` per tick tells what is due and what to go on
  with; one ``UpdateItem`` per tick moves ``covered`` forward (conditionally: never backwards).
- **a marker per run**, ``sk=RUN#<workflow id>#<scheduled_for, fixed width>``: created with ``attribute_not_exists``,
  so a run is opened once however many ticks see it due; its ``status`` (``open``, then ``done``, ``dropped`` or
  ``expired``), the scan's ``resume`` position (the last ``LastEvaluatedKey``), counts (``pages``, ``profiles``,
  ``published``, ``missed``) and a lease (``lease_owner``, ``lease_until``) so one invocation at a time scans it.
  ``expires_at`` removes it 30 days after its time; by then ``MAX_CATCH_UP`` has long ruled it out.

The profiles come from a paginated ``Scan`` of the whole table, filtered to ``type = PROFILE`` without
``merged_into``: there is no index of all profiles, so every item of the table is read (and billed) once per run; see
docs/workflows.md, "Schedules", for the cost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from shared.adapters.dynamodb import from_item, to_item
from shared.adapters.profile_store import _CONDITION_FAILED, ProfileStore, _code, _instant, _translated
from shared.adapters.workflow_store import PARTITION
from shared.errors import RetryableError
from shared.models.customer import CustomerProfile
from shared.observability import logger
from shared.workflows.schedule import (
    Claim,
    ClaimStatus,
    DueRun,
    PageCounts,
    Position,
    ProfilePage,
    RunOutcome,
    ScheduleCursor,
    ScheduledRun,
)

CURSOR_SK: Final = "SCHEDULE_CURSOR"
CURSOR: Final = "WORKFLOW_SCHEDULE_CURSOR"
RUN: Final = "WORKFLOW_RUN"
OPEN: Final = "open"
#: How long a run marker is kept after its time (TTL).
MARKER_DAYS: Final = 30
#: Every attribute name used in an expression, aliased: ``status``, ``type`` and others are reserved words.
_NAMES: Final = {
    "#type": "type", "#covered": "covered", "#open": "open_runs", "#updated": "updated_at", "#status": "status",
    "#owner": "lease_owner", "#until": "lease_until", "#resume": "resume", "#pages": "pages",
    "#profiles": "profiles", "#published": "published", "#finished": "finished_at", "#merged": "merged_into",
}  # fmt: skip
#: What ``CustomerProfile`` needs of a profile item for ``profile.attributes``, ``locale`` and ``time_zone``.
_PROFILE_FIELDS: Final = ("id", "locale", "time_zone", "attributes", "created_at", "updated_at")


def run_sk(run: ScheduledRun) -> str:
    """Sort key of a run marker."""
    return f"RUN#{run.key}"


def _key(sk: str) -> dict[str, Any]:
    return to_item({"pk": PARTITION, "sk": sk})


def _names(expression: str) -> dict[str, str]:
    return {alias: name for alias, name in _NAMES.items() if alias in expression}


def _marker_item(due: DueRun, at: datetime) -> dict[str, Any]:
    run = due.run
    return {
        "pk": PARTITION,
        "sk": run_sk(run),
        "type": RUN,
        "workflow_id": run.workflow_id,
        "workflow_version": due.version,
        "scheduled_for": run.scheduled_for,
        "status": OPEN,
        "missed": due.missed,
        "opened_at": at,
        "pages": 0,
        "profiles": 0,
        "published": 0,
        "expires_at": int((run.scheduled_for + timedelta(days=MARKER_DAYS)).timestamp()),
    }


def _runs(keys: Any) -> tuple[ScheduledRun, ...]:
    runs = []
    for key in keys or ():
        try:
            runs.append(ScheduledRun.from_key(str(key)))
        except ValueError:
            logger.error("schedule cursor holds a run key that is not one; ignored", extra={"run": str(key)[:120]})
    return tuple(sorted(runs))


class ScheduleStore(ProfileStore):
    """``shared.workflows.schedule.RunBook`` on ProfileTable."""

    def cursor(self) -> ScheduleCursor | None:
        """Pattern 40: the cursor, strongly consistent (a tick must see the previous one's writes)."""
        found = self._call("get_item", TableName=self.table_name, Key=_key(CURSOR_SK), ConsistentRead=True)
        if "Item" not in found:
            return None
        values = from_item(found["Item"])
        return ScheduleCursor(covered=_instant(values["covered"]), open=_runs(values.get("open_runs")))

    def open(self, due: Sequence[DueRun], covered: datetime, at: datetime) -> None:
        """Pattern 41's puts, then pattern 40's update: a marker per run unless there is one, the runs added to
        ``open_runs`` and ``covered`` moved forward (a cursor that is already further stays; the runs are added)."""
        for item in due:
            self._conditionally("put_item", Item=to_item(_marker_item(item, at)),
                                ConditionExpression="attribute_not_exists(pk)")  # fmt: skip
        keys = {item.run.key for item in due}
        values: dict[str, Any] = to_item({":type": CURSOR, ":covered": covered, ":at": at})
        expression = "SET #type = :type, #covered = :covered, #updated = :at"
        if keys:
            values[":keys"] = {"SS": sorted(keys)}
            expression += " ADD #open :keys"
        condition = "attribute_not_exists(#covered) OR #covered < :covered"
        moved = self._conditionally(
            "update_item",
            Key=_key(CURSOR_SK),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=_names(expression + condition),
            ExpressionAttributeValues=values,
        )
        if not moved and keys:  # another tick got further: keep its cursor, but these runs are still open
            self._update_cursor("ADD #open :keys", keys)

    def claim(self, run: ScheduledRun, owner: str, *, until: datetime, now: datetime) -> Claim:
        """Pattern 41's lease: an open run whose lease is free, ended, or already ``owner``'s (Lambda retries an
        invocation under the same request id). One ``UpdateItem``; a refusal says why (``ALL_OLD``)."""
        expression = "SET #owner = :owner, #until = :until"
        condition = "#status = :open AND (attribute_not_exists(#until) OR #until < :now OR #owner = :owner)"
        try:
            found = self.client.update_item(
                TableName=self.table_name,
                Key=_key(run_sk(run)),
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=_names(expression + condition),
                ExpressionAttributeValues=to_item({":owner": owner, ":until": until, ":now": now, ":open": OPEN}),
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _code(error) != _CONDITION_FAILED:
                raise _translated(error) from error
            old = error.response.get("Item")
            if not old:  # a missing item fails the condition too, and has nothing to return
                old = self._call("get_item", TableName=self.table_name, Key=_key(run_sk(run)),
                                 ConsistentRead=True).get("Item")  # fmt: skip
            if not old:
                return Claim(ClaimStatus.MISSING)
            return Claim(ClaimStatus.BUSY if from_item(old).get("status") == OPEN else ClaimStatus.CLOSED)
        except BotoCoreError as error:
            raise RetryableError("The profile table is unavailable; try again.") from error
        values = from_item(found["Attributes"])
        resume = values.get("resume")
        return Claim(ClaimStatus.CLAIMED, resume if isinstance(resume, Mapping) else None)

    def advance(self, run: ScheduledRun, owner: str, resume: Position, counts: PageCounts) -> bool:
        """Pattern 41's progress: where the scan goes on, and the page's counts; only while ``owner`` holds it."""
        expression = "SET #resume = :resume ADD #pages :one, #profiles :profiles, #published :published"
        condition = "#owner = :owner AND #status = :open"
        return self._conditionally(
            "update_item",
            Key=_key(run_sk(run)),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=_names(expression + condition),
            ExpressionAttributeValues=to_item({":resume": dict(resume), ":one": 1, ":profiles": counts.profiles,
                                               ":published": counts.published, ":owner": owner, ":open": OPEN}),
        )  # fmt: skip

    def close(self, run: ScheduledRun, owner: str, outcome: RunOutcome, counts: PageCounts, at: datetime) -> None:
        """Pattern 41's end: the outcome and the last page's counts on the marker (while ``owner`` holds it), then
        the run off the cursor's ``open_runs``."""
        pages = 1 if outcome == RunOutcome.DONE else 0
        expression = ("SET #status = :outcome, #finished = :at ADD #pages :pages, #profiles :profiles,"
                      " #published :published REMOVE #resume, #owner, #until")  # fmt: skip
        condition = "#owner = :owner AND #status = :open"
        closed = self._conditionally(
            "update_item",
            Key=_key(run_sk(run)),
            UpdateExpression=expression,
            ConditionExpression=condition,
            ExpressionAttributeNames=_names(expression + condition),
            ExpressionAttributeValues=to_item({":outcome": str(outcome), ":at": at, ":pages": pages,
                                               ":profiles": counts.profiles, ":published": counts.published,
                                               ":owner": owner, ":open": OPEN}),
        )  # fmt: skip
        if not closed:
            logger.warning("scheduled run not closed: its lease was taken over", extra={"run": run.key})
            return
        self.forget([run])

    def release(self, run: ScheduledRun, owner: str) -> None:
        """Pattern 41's release: the lease removed if ``owner`` still holds it."""
        condition = "#owner = :owner"
        self._conditionally("update_item", Key=_key(run_sk(run)), UpdateExpression="REMOVE #owner, #until",
                            ConditionExpression=condition, ExpressionAttributeNames=_names("#owner #until"),
                            ExpressionAttributeValues=to_item({":owner": owner}))  # fmt: skip

    def forget(self, runs: Sequence[ScheduledRun]) -> None:
        """Pattern 40's ``DELETE`` from ``open_runs`` (removing a key that is not there does nothing)."""
        if runs:
            self._update_cursor("DELETE #open :keys", {run.key for run in runs})

    def _update_cursor(self, expression: str, keys: set[str]) -> None:
        self._call(
            "update_item",
            TableName=self.table_name,
            Key=_key(CURSOR_SK),
            UpdateExpression=expression,
            ExpressionAttributeNames=_names(expression),
            ExpressionAttributeValues={":keys": {"SS": sorted(keys)}},
        )


class ProfileScan(ProfileStore):
    """``shared.workflows.schedule.Profiles`` on ProfileTable: live profiles page by page (pattern 42), and one
    customer with identities (pattern 3, ``get_profile``)."""

    def page(self, start: Position | None, limit: int) -> ProfilePage:
        """One ``Scan`` page: up to ``limit`` items evaluated (or 1 MB), the live profiles among them.

        Eventually consistent: a profile written in the last second may be missed by this run, which is as if it
        had been created just after the run reached its part of the table.
        """
        names = {f"#f{index}": name for index, name in enumerate(_PROFILE_FIELDS)}
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Limit": limit,
            "FilterExpression": "#type = :profile AND attribute_not_exists(#merged)",
            "ProjectionExpression": ", ".join(names),
            "ExpressionAttributeNames": {**names, **_names("#type #merged")},
            "ExpressionAttributeValues": {":profile": {"S": "PROFILE"}},
        }
        if start:
            request["ExclusiveStartKey"] = to_item(start)
        found = self._call("scan", **request)
        profiles = []
        for item in found.get("Items", []):
            values = {name: value for name, value in from_item(item).items() if value is not None}
            try:
                profiles.append(CustomerProfile.model_validate(values))
            except ValidationError:
                # One bad item must not stop a run for everyone else; its id (never its values) says which.
                logger.error(
                    "profile unreadable; left out of the scheduled run", extra={"customer_id": values.get("id")}
                )
        last = found.get("LastEvaluatedKey")
        return ProfilePage(tuple(profiles), from_item(last) if last else None)
