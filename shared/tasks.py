"""Tasks for people: work a workflow (or, later, a bot or an agent) leaves for a team or an agent to do.

A task is for a ``queue`` (a team, e.g. ``ventas``) or an ``assignee`` (an agent's id), about one customer. It is
open until a person closes it ``done`` or ``canceled``, with an optional ``outcome`` in their words. Its id is the
creator's idempotency key (a workflow step's effect key, ``workflow:<enrolment id>:<step id>``), so a redelivered
step makes the same task, not a second one.

Pure domain: ``shared.adapters.task_store`` stores tasks; the agent API lists and closes them.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.errors import InvalidInput
from shared.models.common import CustomerId, ExternalId, UtcDatetime
from shared.workflows.engine import CreateTask, Handoff
from shared.workflows.language import Label, Priority

#: The JSON a task carries for the person (``data``) stays small: it is shown, not processed.
MAX_DATA_BYTES: Final = 8 * 1024
_TITLE_MAX: Final = 200

#: A task's id: its creator's idempotency key, e.g. ``workflow:enr_01J…:tarea_sin_respuesta``.
TaskId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9:_\-.#]{1,200}$")]
#: Who created a task, e.g. ``workflow:documento_descargado``.
TaskSource = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,200}$")]
Outcome = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
_QUEUE: Final = TypeAdapter(Label)


class TaskKind(StrEnum):
    """What the person is asked to do."""

    FOLLOW_UP = "follow_up"  # contact the customer about something (a lead that went quiet)
    HANDOFF = "handoff"  # take over a conversation automation handed to people
    CALL_BACK = "call_back"  # phone the customer


class TaskStatus(StrEnum):
    """``open`` until a person closes it; ``done`` and ``canceled`` are ends."""

    OPEN = "open"
    DONE = "done"
    CANCELED = "canceled"


class Task(BaseModel):
    """One task about one customer, for a queue or an agent (or both). ``version`` counts its writes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: TaskId
    customer_id: CustomerId
    kind: TaskKind = TaskKind.FOLLOW_UP
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=_TITLE_MAX)]
    description: Annotated[str, StringConstraints(max_length=2000)] | None = None
    queue: Label | None = None
    assignee: ExternalId | None = None
    priority: Priority = Priority.NORMAL
    status: TaskStatus = TaskStatus.OPEN
    due_at: UtcDatetime | None = None
    data: dict[str, JsonValue] = Field(default_factory=dict)
    source: TaskSource
    created_at: UtcDatetime
    closed_at: UtcDatetime | None = None
    closed_by: ExternalId | None = None
    outcome: Outcome | None = None
    version: int = Field(default=1, ge=1)

    @field_validator("data")
    @classmethod
    def _small_json(cls, data: dict[str, JsonValue]) -> dict[str, JsonValue]:
        try:
            size = len(json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode())
        except ValueError as error:  # NaN or infinity: not JSON, and DynamoDB refuses them
            raise ValueError("data must be JSON (no NaN or infinity)") from error
        if size > MAX_DATA_BYTES:
            raise ValueError(f"data is {size} bytes as JSON; a task carries at most {MAX_DATA_BYTES}")
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.queue is None and self.assignee is None:
            raise ValueError("a task needs a queue, an assignee, or both")
        if (self.status == TaskStatus.OPEN) != (self.closed_at is None):
            raise ValueError("closed_at is set when, and only when, the task is closed")
        return self

    @property
    def open(self) -> bool:
        """Whether a person still has to act on it."""
        return self.status == TaskStatus.OPEN

    def closed(self, status: TaskStatus, *, outcome: str | None, by: str, at: datetime) -> Task:
        """The task closed by agent ``by`` at ``at``, one version on.

        Raises
        ------
        ValueError
            ``status`` is ``open``, the task is not open, or ``outcome``/``by`` break the model's rules.
        """
        if status == TaskStatus.OPEN:
            raise ValueError("a task is closed as done or canceled")
        if not self.open:
            raise ValueError(f"task {self.id} is already {self.status}")
        changes = {"status": status, "outcome": outcome, "closed_by": by, "closed_at": at, "version": self.version + 1}
        return Task.model_validate({**self.model_dump(), **changes})

    def as_json(self) -> dict[str, Any]:
        """What the agent API answers: every field, instants in ISO-8601 UTC."""
        return self.model_dump(mode="json")


class CloseTaskBody(BaseModel):
    """``POST /v1/customers/{id}/tasks/{task_id}/close``: how it ended, and optionally what happened."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Literal[TaskStatus.DONE, TaskStatus.CANCELED]
    outcome: Outcome | None = None

    @field_validator("outcome", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        # A console sends the empty box as "": nothing to say is not a mistake.
        return None if isinstance(value, str) and not value.strip() else value


def task_from_effect(effect: CreateTask | Handoff, *, source: str) -> Task:
    """The task a workflow's ``CreateTask`` or ``Handoff`` effect asks for, with the effect's key as its id.

    Parameters
    ----------
    effect : CreateTask or Handoff
        From ``shared.workflows.engine.advance``.
    source : str
        Who asks, e.g. ``workflow:documento_descargado``.

    Returns
    -------
    Task
        Open. A ``Handoff`` is a ``handoff`` task for its queue titled by its reason (a reason over 200 characters
        is cut in the title and kept whole in ``description``); a ``CreateTask`` is a ``follow_up``.

    Raises
    ------
    pydantic.ValidationError
        The effect breaks a task's rules (``data`` over 8 KB as JSON, a key that is not a task id).
    """
    # Created at the step's own instant (its input's), so a redelivered step makes an identical task.
    common = {"id": effect.key, "customer_id": effect.customer_id, "priority": effect.priority, "source": source,
              "created_at": effect.at}  # fmt: skip
    if isinstance(effect, Handoff):
        reason = effect.reason.strip()
        cut = len(reason) > _TITLE_MAX
        title = reason[: _TITLE_MAX - 1].rstrip() + "…" if cut else reason
        return Task.model_validate({**common, "kind": TaskKind.HANDOFF, "title": title,
                                    "description": reason if cut else None, "queue": effect.queue})  # fmt: skip
    return Task.model_validate(
        {
            **common,
            "kind": TaskKind.FOLLOW_UP,
            "title": effect.title,
            "description": effect.description,
            "queue": effect.queue,
            "assignee": effect.assignee,
            "due_at": effect.due_at,
            "data": dict(effect.data),
        }
    )


def queue_param(raw: str | None) -> str:
    """The ``queue=`` of ``GET /v1/tasks``: required, and a queue name as workflows write them (``ventas``).

    Raises
    ------
    InvalidInput
        It is missing or is not a queue name (400, naming the field).
    """
    if not raw:
        raise InvalidInput("queue is required: GET /v1/tasks?queue=<queue>.", details=[{"field": "queue"}])
    try:
        return _QUEUE.validate_python(raw)
    except ValidationError as error:
        raise InvalidInput(
            "queue must be lower-case letters, digits and _, a letter first (e.g. ventas).",
            details=[{"field": "queue"}],
        ) from error
