"""The workflow language: a journey as data, checked when it is loaded, with every rule the engine runs it by.

A workflow is a YAML file in ``shared/catalog/workflows/`` (or the same document as JSON through the API): a
``trigger`` that enrols a customer, ``steps`` that run in order unless a ``next``, ``branch`` or ``split`` says
otherwise, a ``goal`` and ``exit_when`` rules that end an enrolment early, a ``reentry`` policy and a ``frequency``
cap. Like message templates it is written by the company's staff, so it is data that cannot run code: conditions are
a small declarative form (``{field: event.data.document_type, equals: brochure}``, ``all``/``any``/``not``,
``{replied: {since: recordatorio, text: ["1"]}}``), and values are literals or ``{from: <path>}``.

``load_workflow`` checks everything a file can get wrong before a customer meets it: the shape (pydantic, frozen,
``extra="forbid"``), durations (``30s``, ``15m``, ``24h``, ``3d``, ``2w``, ``1d12h``; at most 366 days), every path
(only ``event.*``, ``incoming.*``, ``profile.*``, ``enrolment.*`` and ``steps.*``, each where it means something), the
graph (step ids unique, every target exists, no loops, no unreachable step, so every path ends), and, given a
template catalog, that each ``send`` names a template that exists and can speak the channel. Errors name the
workflow, the step and the field: ``workflow 'documento_descargado' step 'recordatorio': field wait.duration: ...``.

The rest is the contract the engine runs on, pure and without I/O: ``Facts`` (what conditions read), ``Condition``
evaluation, ``WaitStep.due``, ``SplitStep.choose`` (deterministic per enrolment), ``SendStep.command`` (the
``OutboundCommand``), ``Workflow.triggered_by``, ``Workflow.ending``, ``Workflow.admits`` and
``Frequency.allows``. ``docs/workflows.md`` is the reference for people.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime, time, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal, Protocol, Self
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    FiniteFloat,
    JsonValue,
    PlainSerializer,
    StringConstraints,
    Tag,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from shared.catalog.files import as_document
from shared.errors import PermanentError, Unprocessable
from shared.models.common import Channel, UtcDatetime, ensure_utc
from shared.models.customer import AttributeKey, ConsentPurpose, CustomerProfile, TimeZoneName
from shared.models.events import DomainEvent, EventType
from shared.models.message import DeliveryStatus
from shared.models.outbound import Intent, OutboundCommand, Route, TemplateContent, TemplateId
from shared.models.timeline import Actor, ActorKind

if TYPE_CHECKING:
    from shared.outbound.rendering import MessageTemplate

#: The longest duration anything in a workflow may take (a wait, a timeout, a task's due time, a re-entry period).
MAX_DURATION: Final = timedelta(days=366)
#: Where a schedule trigger's clock runs when the file names no zone (Hilo's default region is Colombia).
DEFAULT_TIME_ZONE: Final = "America/Bogota"
#: Events Hilo publishes that the language gives a meaning to.
MESSAGE_RECEIVED: Final = "message.received"
CONSENT_CHANGED: Final = "consent.changed"
DELIVERY_EVENTS: Final = frozenset({"message.delivered", "message.read", "message.failed"})
#: Published by the bot when it recognises what a message asks for (``data.intent``); a later issue.
INTENT_DETECTED: Final = "intent.detected"
#: Published when a profile attribute changes (``data.attribute``, ``old_value``, ``new_value``); a later issue.
ATTRIBUTE_CHANGED: Final = "customer.attribute_changed"
#: The event the engine makes for each run of a schedule trigger (``data.workflow_id``, ``data.scheduled_for``).
SCHEDULED: Final = "workflow.scheduled"
#: Outcomes of an enrolment that no exit step names.
COMPLETED: Final = "completed"
HANDED_OFF: Final = "handed_off"

_ROOTS: Final = ("event", "incoming", "profile", "enrolment", "steps")
_EVENT_FIELDS: Final = frozenset({"id", "type", "source", "occurred_at", "customer_id", "data"})
_PROFILE_FIELDS: Final = frozenset({"attributes", "locale", "time_zone", "channels"})
_ENROLMENT_FIELDS: Final = frozenset({"id", "version", "started_at", "key"})
_STEP_FIELDS: Final = frozenset(
    {"at", "status", "channel", "message_id", "outcome", "event", "text", "variant", "task_id"}
)
_PATH_RE: Final = re.compile(r"[A-Za-z0-9_\-]+(?:\.[A-Za-z0-9_\-]+)*")
_ID_RE: Final = re.compile(r"[a-z0-9_]{1,64}")
_LABEL_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,63}")
_NAME_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_WORD_SEPARATORS_RE: Final = re.compile(r"[\W_]+")
_DURATION_RE: Final = re.compile(
    r"(?:(\d{1,6})w)?\s*(?:(\d{1,6})d)?\s*(?:(\d{1,7})h)?\s*(?:(\d{1,9})m)?\s*(?:(\d{1,9})s)?"
)
_UNITS: Final = (("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))
_DURATION_HINT: Final = "write it like 30s, 15m, 24h, 3d, 2w or 1d12h"
_YAML_BOOLEAN_HINT: Final = "YAML reads yes/no/on/off/true/false as true or false: put the word in quotes ('no')"
#: What ``Facts.lookup`` returns for a path with no value (a null counts as none).
MISSING: Final = object()


# ---------------------------------------------------------------------------------------------------- errors


class WorkflowInvalid(Unprocessable):
    """A workflow breaks the language's rules; ``details`` name the workflow, step and field of every problem.

    An ``InvalidInput`` (poison, never retried), and through the API a 422: well-formed, but against the rules.
    """

    code = "workflow_invalid"


class MissingData(PermanentError):
    """A running step needs a value its enrolment does not have (``event.data.starts_at`` missing or not a time).

    Permanent: the same data fails the same way, so the engine ends the enrolment with outcome ``failed`` and this
    message. It names the path, never the value (values can be personal data).
    """

    code = "workflow_data_missing"


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with a workflow: where (step id or None for the workflow itself, field) and what."""

    step: str | None
    field: str | None
    message: str


class _Problem(ValueError):
    """Raised inside validators so ``load_workflow`` can name a field the error location does not show."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class _Problems(ValueError):
    """Every problem of the whole-workflow checks (graph, paths, templates), raised once."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(problem.message for problem in problems))
        self.problems = tuple(problems)


# ------------------------------------------------------------------------------------------------- durations


def parse_duration(text: str) -> timedelta:
    """Read a duration as people write it: ``30s``, ``15m``, ``24h``, ``3d``, ``2w``, ``1d12h``, ``1d 12h``.

    Parameters
    ----------
    text : str
        Whole numbers with units ``w``, ``d``, ``h``, ``m``, ``s`` in that order, each at most once. Months and years
        are not units (they have no fixed length): write ``30d`` or ``52w``.

    Returns
    -------
    timedelta
        Between one second and ``MAX_DURATION`` (366 days).

    Raises
    ------
    ValueError
        If the text is not such a duration (``"3 days"``, ``"3D"``, ``"1.5h"``, ``"0s"``) or is longer than 366 days.
    """
    source = text.strip()
    match = _DURATION_RE.fullmatch(source)
    if not source or match is None or not any(match.groups()):
        raise ValueError(f"{text!r} is not a duration; {_DURATION_HINT}")
    seconds = sum(int(number) * size for number, (_, size) in zip(match.groups(), _UNITS, strict=True) if number)
    return _duration_in_range(timedelta(seconds=seconds))


def format_duration(value: timedelta) -> str:
    """The canonical text of a duration: ``2w``, ``10d``, ``1d12h``, ``1h30m``; ``parse_duration`` reads it back.

    Days are written as weeks only when they are whole weeks, so ``10d`` stays ``10d``, not ``1w3d``.
    """
    total = int(value.total_seconds())
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes, seconds = divmod(rest, 60)
    parts = []
    if days:
        parts.append(f"{days // 7}w" if days % 7 == 0 else f"{days}d")
    parts.extend(f"{number}{unit}" for number, unit in ((hours, "h"), (minutes, "m"), (seconds, "s")) if number)
    return "".join(parts) or "0s"


def _duration_in_range(value: timedelta) -> timedelta:
    if value.microseconds:
        raise ValueError("a duration is a whole number of seconds")
    if value <= timedelta(0):
        raise ValueError("a duration must be longer than zero; leave the step out instead")
    if value > MAX_DURATION:
        raise ValueError(f"{format_duration(value)} is longer than the 366 days a workflow may wait")
    return value


def _duration_input(value: Any) -> Any:
    if isinstance(value, timedelta):
        return _duration_in_range(value)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"a duration is text; {_DURATION_HINT}")


#: A duration in a workflow document: ``3d`` in YAML and JSON, a ``timedelta`` in Python.
Duration = Annotated[
    timedelta,
    BeforeValidator(_duration_input),
    PlainSerializer(format_duration, return_type=str, when_used="json"),
]


# ------------------------------------------------------------------------------------------- names and paths


def _pattern(regex: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not regex.fullmatch(value):
            raise ValueError(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


#: A step's id: what ``next``, branches, ``steps.<id>`` paths, timers and idempotency keys name it by.
StepId = Annotated[str, _pattern(_ID_RE, "a step id: lower-case letters, digits and _ (e.g. email_inicial)")]
#: A workflow's id, the name of its file.
WorkflowId = Annotated[str, _pattern(_LABEL_RE, "a workflow id: lower-case letters, digits and _, a letter first")]
#: Outcomes, variant names, queues, intents: short machine names analytics group by.
Label = Annotated[str, _pattern(_LABEL_RE, "a name of lower-case letters, digits and _, a letter first")]
#: Keys of ``vars``, webhook payloads, task data and bus event data.
DataKey = Annotated[str, _pattern(_NAME_RE, "a key of letters, digits and _, a letter first")]
ShortText = Annotated[str, StringConstraints(min_length=1, max_length=200)]
LongText = Annotated[str, StringConstraints(min_length=1, max_length=2000)]


def _check_path(value: str) -> str:
    if len(value) > 200 or not _PATH_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a path; a path is dot-separated names, e.g. event.data.document_type")
    root, *rest = value.split(".")
    if root not in _ROOTS:
        raise ValueError(f"a path starts with {', '.join(_ROOTS[:-1])} or steps; {root!r} is none of them")
    if not rest:
        raise ValueError(f"{root} alone is not a value; name one of its fields, e.g. {root}.{_example_field(root)}")
    head = rest[0]
    if root in ("event", "incoming"):
        if head not in _EVENT_FIELDS:
            raise ValueError(f"an event has {', '.join(sorted(_EVENT_FIELDS))}; not {head!r}")
        if head != "data" and len(rest) > 1:
            raise ValueError(f"{root}.{head} has no fields; only {root}.data does")
    elif root == "profile":
        if head not in _PROFILE_FIELDS:
            raise ValueError(
                f"a workflow reads profile.attributes.<name>, profile.locale, profile.time_zone and profile.channels;"
                f" not profile.{head}"
            )
        if (head == "attributes") != (len(rest) > 1):
            raise ValueError("profile.attributes is read one attribute at a time: profile.attributes.<name>")
    elif root == "enrolment":
        if head not in _ENROLMENT_FIELDS or len(rest) > 1:
            raise ValueError(f"an enrolment has {', '.join(sorted(_ENROLMENT_FIELDS))}; not {'.'.join(rest)!r}")
    else:
        if len(rest) < 2 or not _ID_RE.fullmatch(head):
            raise ValueError("a step's record is read as steps.<step id>.<field>, e.g. steps.email_inicial.status")
        if rest[1] not in _STEP_FIELDS:
            raise ValueError(f"a step records {', '.join(sorted(_STEP_FIELDS))}; not {rest[1]!r}")
        if rest[1] != "event" and len(rest) > 2:
            raise ValueError(f"steps.{head}.{rest[1]} has no fields; only steps.{head}.event does")
    return value


def _example_field(root: str) -> str:
    return {"event": "data.x", "incoming": "data.x", "profile": "attributes.x", "enrolment": "started_at"}.get(
        root, "<step id>.status"
    )


#: Where a value is read from: ``event.data.x``, ``incoming.data.x``, ``profile.attributes.x``, ``enrolment.id``,
#: ``steps.<id>.status``. Which roots a place allows is checked with the whole workflow.
FieldPath = Annotated[str, AfterValidator(_check_path)]


def _scalar(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    raise ValueError(f"expected text, a number, true or false; got {type(value).__name__}")


def _number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number")
    return value


#: A literal in a document: text, a whole or finite number, or a boolean.
Scalar = Annotated[str | bool | int | FiniteFloat, BeforeValidator(_scalar)]
Number = Annotated[int | FiniteFloat, BeforeValidator(_number)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True, serialize_by_alias=True)


class Reference(_Model):
    """``{from: <path>}``: a value taken from the data when the step runs; ``default`` when it is missing."""

    source: FieldPath = Field(alias="from")
    default: Scalar | None = None

    def resolve(self, facts: Facts) -> Any:
        """The value at ``from`` (or ``default``); ``MissingData`` naming the path when there is neither."""
        value = facts.lookup(self.source)
        if value is MISSING:
            if self.default is None:
                raise MissingData(f"{self.source} is missing and has no default")
            return self.default
        return value


def _value_tag(value: Any) -> str:
    return "~from" if isinstance(value, Mapping | Reference) else "~literal"


#: A value a step uses: a literal, or ``{from: <path>}``.
Value = Annotated[
    Annotated[Reference, Tag("~from")] | Annotated[Scalar | None, Tag("~literal")], Discriminator(_value_tag)
]
#: What a comparison compares with: a literal (never null: use ``exists``) or ``{from: <path>}``.
Operand = Annotated[Annotated[Reference, Tag("~from")] | Annotated[Scalar, Tag("~literal")], Discriminator(_value_tag)]


def words(text: str) -> str:
    """``text`` as replies are compared: accents, case, punctuation and extra spaces gone ("¡Sí, 1!" → "si 1")."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(char for char in decomposed if not unicodedata.combining(char)).casefold()
    return " ".join(_WORD_SEPARATORS_RE.sub(" ", plain).split())


def _reply_option(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError(_YAML_BOOLEAN_HINT)
    if isinstance(value, int | float):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError("expected text")
    normalised = words(value)
    if not normalised:
        raise ValueError(f"{value!r} has no letters or digits to compare a reply with")
    return normalised


#: A reply or keyword as written in the file, kept as ``words`` gives it so "Sí" matches "si" and "SI!".
ReplyText = Annotated[str, BeforeValidator(_reply_option), StringConstraints(max_length=200)]


# ---------------------------------------------------------------------------------------------------- facts


class WaitOutcome(StrEnum):
    """How a wait ``until`` an event ended."""

    EVENT = "event"
    TIMEOUT = "timeout"


class StepRecord(BaseModel):
    """What the engine records when a step runs, and what ``steps.<id>.<field>`` reads.

    ``at`` for every step; ``status`` (kept up to date by delivery events), ``channel`` and ``message_id`` for a send;
    ``outcome``, ``event`` (the event that ended it) and ``text`` (that event's message text) for a wait ``until``;
    ``variant`` for a split; ``task_id`` for a task.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    at: UtcDatetime
    status: DeliveryStatus | None = None
    channel: Channel | None = None
    message_id: str | None = None
    outcome: WaitOutcome | None = None
    event: dict[str, JsonValue] | None = None
    text: str | None = None
    variant: str | None = None
    task_id: str | None = None


@dataclasses.dataclass(frozen=True)
class Reply:
    """A message from the customer during the enrolment: its text (a tapped button's title) and button id."""

    at: datetime
    text: str | None = None
    button: str | None = None
    channel: Channel | None = None

    @classmethod
    def from_event(cls, event: DomainEvent) -> Reply | None:
        """The reply in a ``message.received`` event; None for any other event or an echo of our own message."""
        if event.type != MESSAGE_RECEIVED or event.data.get("direction") == "outbound":
            return None
        text, button = message_text(event.data)
        channel = event.data.get("channel")
        known = channel if isinstance(channel, str) and channel in Channel.__members__.values() else None
        return cls(at=event.occurred_at, text=text, button=button, channel=Channel(known) if known else None)


def message_text(data: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """The text of a ``message.received`` event's ``data`` (text parts joined; a tapped button's title) and the
    button's id."""
    texts: list[str] = []
    button = None
    parts = data.get("parts")
    for part in parts if isinstance(parts, list) else ():
        if not isinstance(part, Mapping):
            continue
        if part.get("type") == "text" and isinstance(part.get("text"), str):
            texts.append(part["text"])
        elif part.get("type") == "interactive_reply":
            if isinstance(part.get("title"), str):
                texts.append(part["title"])
            if isinstance(part.get("reply_id"), str):
                button = part["reply_id"]
    return ("\n".join(texts) if texts else None), button


@dataclasses.dataclass(frozen=True)
class EnrolmentInfo:
    """What ``enrolment.*`` reads: the enrolment's id, the workflow version it runs, when it began, its key."""

    id: str
    version: int
    started_at: datetime
    key: str | None = None


@dataclasses.dataclass(frozen=True)
class Facts:
    """Everything a condition or value may read, gathered by the engine for one evaluation.

    ``event`` is the enrolment's trigger (``DomainEvent`` as JSON), ``incoming`` the event being matched by a wait,
    goal or exit rule (None before a step), ``profile`` the customer as ``profile.*`` reads it, ``steps`` the records
    of the steps that ran, and ``replies`` the customer's messages since the enrolment began, oldest first.
    """

    event: Mapping[str, Any]
    profile: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    enrolment: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    steps: Mapping[str, StepRecord] = dataclasses.field(default_factory=dict)
    replies: Sequence[Reply] = ()
    incoming: Mapping[str, Any] | None = None

    @classmethod
    def of(
        cls,
        event: DomainEvent,
        *,
        profile: CustomerProfile | None = None,
        channels: Iterable[Channel] = (),
        enrolment: EnrolmentInfo | None = None,
        steps: Mapping[str, StepRecord] | None = None,
        replies: Sequence[Reply] = (),
        incoming: DomainEvent | None = None,
    ) -> Facts:
        """Gather facts from domain objects.

        Parameters
        ----------
        event : DomainEvent
            The enrolment's trigger (or, when deciding whether to enrol, the candidate event).
        profile : CustomerProfile, optional
            The customer; ``profile.*`` sees its attributes, locale and time zone.
        channels : iterable of Channel
            The channels the customer can be reached on (``profile.channels``); the outbound routing's
            ``address_on`` tells.
        enrolment : EnrolmentInfo, optional
            The enrolment, once there is one.
        steps : mapping of step id to StepRecord, optional
            The records of the steps that ran.
        replies : sequence of Reply
            The customer's messages since the enrolment began, oldest first.
        incoming : DomainEvent, optional
            The event a wait, goal or exit rule is being matched against.

        Returns
        -------
        Facts
            The facts.
        """
        profile_facts: dict[str, Any] = {"channels": sorted(str(channel) for channel in channels)}
        if profile is not None:
            profile_facts.update(
                attributes=dict(profile.attributes), locale=profile.locale, time_zone=profile.time_zone
            )
        enrolment_facts: dict[str, Any] = {}
        if enrolment is not None:
            enrolment_facts = {
                "id": enrolment.id,
                "version": enrolment.version,
                "started_at": ensure_utc(enrolment.started_at).isoformat(),
                "key": enrolment.key,
            }
        return cls(
            event=event.model_dump(mode="json"),
            profile=profile_facts,
            enrolment=enrolment_facts,
            steps=dict(steps or {}),
            replies=tuple(replies),
            incoming=incoming.model_dump(mode="json") if incoming is not None else None,
        )

    def lookup(self, path: str) -> Any:
        """The value at ``path``, or ``MISSING``; a null counts as missing."""
        root, *rest = path.split(".")
        node: Any
        if root == "steps":
            record = self.steps.get(rest[0]) if rest else None
            if record is None:
                return MISSING
            node, rest = record.model_dump(mode="json", exclude_none=True), rest[1:]
        else:
            node = {"event": self.event, "incoming": self.incoming, "profile": self.profile}.get(root, self.enrolment)
        for index, segment in enumerate(rest):
            if root == "profile" and segment == "attributes" and index == 0 and isinstance(node, Mapping):
                # An attribute key may contain dots ("crm.tier"): the rest of the path is one key.
                node = node.get("attributes", {})
                attribute = ".".join(rest[1:])
                node = node.get(attribute, MISSING) if isinstance(node, Mapping) else MISSING
                break
            if isinstance(node, Mapping):
                node = node.get(segment, MISSING)
            elif isinstance(node, list | tuple) and segment.isdigit() and int(segment) < len(node):
                node = node[int(segment)]
            else:
                return MISSING
        return MISSING if node is None else node


def _same(left: Any, right: Any) -> bool:
    # true == 1 in Python; in a workflow a boolean equals only a boolean.
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool) and left == right
    return bool(left == right)


# ----------------------------------------------------------------------------------------------- conditions

_OPERATORS: Final = ("equals", "not_equals", "in", "not_in", "exists", "gt", "gte", "lt", "lte", "contains")


class Compare(_Model):
    """``{field: <path>, <operator>: <value>}``: one value of the data compared with a literal or another value.

    A missing value (or null) makes ``equals``, ``in``, ``gt``... false and ``not_equals``, ``not_in`` true; ``exists``
    tells it apart. Types matter: ``1`` is not ``"1"``, and ``gt``/``gte``/``lt``/``lte`` compare numbers only.
    """

    field: FieldPath
    equals: Operand | None = None
    not_equals: Operand | None = None
    in_: tuple[Scalar, ...] | None = Field(default=None, alias="in", min_length=1, max_length=100)
    not_in: tuple[Scalar, ...] | None = Field(default=None, min_length=1, max_length=100)
    exists: bool | None = None
    gt: Number | None = None
    gte: Number | None = None
    lt: Number | None = None
    lte: Number | None = None
    contains: Scalar | None = None

    @model_validator(mode="after")
    def _one_operator(self) -> Self:
        given = [name for name in _OPERATORS if self._operand(name) is not None]
        if len(given) != 1:
            also = f"; this one has {', '.join(given)}" if given else ""
            raise ValueError(f"a comparison has exactly one operator: {', '.join(_OPERATORS)}{also}")
        return self

    def _operand(self, name: str) -> Any:
        return getattr(self, "in_" if name == "in" else name)

    @property
    def operator(self) -> tuple[str, Any]:
        """The operator's name and its operand."""
        name = next(name for name in _OPERATORS if self._operand(name) is not None)
        return name, self._operand(name)

    def holds(self, facts: Facts) -> bool:
        """Tell whether the comparison is true of ``facts``."""
        name, operand = self.operator
        value = facts.lookup(self.field)
        present = value is not MISSING
        if isinstance(operand, Reference):
            operand = facts.lookup(operand.source)
            if operand is MISSING:
                return name == "not_equals"
        match name:
            case "equals":
                return present and _same(value, operand)
            case "not_equals":
                return not (present and _same(value, operand))
            case "in":
                return present and any(_same(value, item) for item in operand)
            case "not_in":
                return not (present and any(_same(value, item) for item in operand))
            case "exists":
                return present is operand
            case "contains":
                if isinstance(value, str) and isinstance(operand, str):
                    return operand in value
                return isinstance(value, list | tuple) and any(_same(item, operand) for item in value)
        if not present or isinstance(value, bool) or not isinstance(value, int | float):
            return False
        limit: float = operand
        if name == "gt":
            return value > limit
        if name == "gte":
            return value >= limit
        return value < limit if name == "lt" else value <= limit


class AllOf(_Model):
    """``{all: [...]}``: every condition holds."""

    all: tuple[Condition, ...] = Field(min_length=1, max_length=50)

    def holds(self, facts: Facts) -> bool:
        """Tell whether every condition holds."""
        return all(condition.holds(facts) for condition in self.all)


class AnyOf(_Model):
    """``{any: [...]}``: at least one condition holds."""

    any: tuple[Condition, ...] = Field(min_length=1, max_length=50)

    def holds(self, facts: Facts) -> bool:
        """Tell whether at least one condition holds."""
        return any(condition.holds(facts) for condition in self.any)


class Not(_Model):
    """``{not: ...}``: the condition does not hold."""

    not_: Condition = Field(alias="not")

    def holds(self, facts: Facts) -> bool:
        """Tell whether the condition does not hold."""
        return not self.not_.holds(facts)


class ReplyMatch(_Model):
    """What ``replied`` looks for: a message from the customer after a step ran (``since``; default: since the
    enrolment began) whose text is one of ``text`` or whose tapped button is one of ``button`` (either, when given).

    Texts are compared as ``words`` gives them: "Sí", "si", "SI!" and "sí." are one answer; "1" matches "1." and
    " 1 ". A tapped button's title counts as its text, so ``text: [confirmar]`` also matches a "Confirmar" button.
    """

    since: StepId | None = None
    text: tuple[ReplyText, ...] = Field(default=(), max_length=50)
    button: tuple[Annotated[str, StringConstraints(min_length=1, max_length=256)], ...] = Field(
        default=(), max_length=50
    )


class Replied(_Model):
    """``{replied: {since: <step>, text: [...], button: [...]}}``: the customer answered (with one of these)."""

    replied: ReplyMatch

    def holds(self, facts: Facts) -> bool:
        """Tell whether a reply in ``facts.replies`` fits."""
        match = self.replied
        since: datetime | None = None
        if match.since is not None:
            record = facts.steps.get(match.since)
            if record is None:
                return False
            since = record.at
        for reply in facts.replies:
            if since is not None and reply.at <= since:
                continue
            if not match.text and not match.button:
                return True
            if reply.text is not None and words(reply.text) in match.text:
                return True
            if reply.button is not None and reply.button in match.button:
                return True
        return False


_CONDITION_FORMS: Final = ("field", "all", "any", "not", "replied")


def _condition_shape(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value
    if not isinstance(value, Mapping):
        raise _Problem(_condition_help("a condition is a mapping"))
    forms = [form for form in _CONDITION_FORMS if form in value]
    if len(forms) != 1:
        found = f"; this one has {' and '.join(forms)}" if forms else ""
        raise _Problem(_condition_help("a condition has exactly one form") + found)
    return value


def _condition_help(start: str) -> str:
    return (
        f"{start}: {{field: <path>, <operator>: <value>}}, {{all: [...]}}, {{any: [...]}}, {{not: ...}} "
        "or {replied: {...}}"
    )


def _condition_tag(value: Any) -> str | None:
    if isinstance(value, Mapping):
        return next((f"~{form}" for form in _CONDITION_FORMS if form in value), None)
    forms: tuple[tuple[type[BaseModel], str], ...] = (
        (Compare, "~field"),
        (AllOf, "~all"),
        (AnyOf, "~any"),
        (Not, "~not"),
        (Replied, "~replied"),
    )
    return next((tag for model, tag in forms if isinstance(value, model)), None)


#: A condition: a comparison, ``all``, ``any``, ``not`` or ``replied``.
Condition = Annotated[
    Annotated[Compare, Tag("~field")]
    | Annotated[AllOf, Tag("~all")]
    | Annotated[AnyOf, Tag("~any")]
    | Annotated[Not, Tag("~not")]
    | Annotated[Replied, Tag("~replied")],
    Discriminator(_condition_tag),
    BeforeValidator(_condition_shape),
]

AllOf.model_rebuild()
AnyOf.model_rebuild()
Not.model_rebuild()


def _nodes(condition: Condition, at: str) -> Iterator[tuple[str, Condition]]:
    """Every condition inside ``condition`` (itself included), with its location."""
    yield at, condition
    if isinstance(condition, AllOf | AnyOf):
        name = "all" if isinstance(condition, AllOf) else "any"
        for index, inner in enumerate(condition.all if isinstance(condition, AllOf) else condition.any):
            yield from _nodes(inner, f"{at}.{name}.{index}")
    elif isinstance(condition, Not):
        yield from _nodes(condition.not_, f"{at}.not")


# -------------------------------------------------------------------------------------------------- triggers


def _event_of(facts: Facts) -> Any:
    return facts.event.get("type")


class EventTrigger(_Model):
    """``type: event``: enrol on a domain event of this ``event`` type whose data fits ``when``.

    ``key`` (a path into ``event.*``) makes enrolments per customer *and* key: each appointment its own journey, and
    ``reentry`` applies per key. An event without the key does not enrol (``enrolment_key`` raises).
    """

    type: Literal["event"] = "event"
    event: EventType
    when: Condition | None = None
    key: FieldPath | None = None

    @property
    def event_types(self) -> frozenset[str]:
        """The event types that may enrol."""
        return frozenset({self.event})

    def matches(self, facts: Facts) -> bool:
        """Tell whether the event in ``facts.event`` enrols."""
        return _event_of(facts) == self.event and (self.when is None or self.when.holds(facts))

    def enrolment_key(self, facts: Facts) -> str | None:
        """The enrolment's key (None without ``key``); ``MissingData`` when the event lacks it."""
        if self.key is None:
            return None
        value = facts.lookup(self.key)
        if value is MISSING or isinstance(value, Mapping | list):
            raise MissingData(f"{self.key} (the enrolment key) is missing or not a single value")
        return json.dumps(value) if isinstance(value, bool) else str(value)


class IntentTrigger(_Model):
    """``type: intent``: enrol when a customer's message asks for ``intent``.

    Either the bot says so (an ``intent.detected`` event with ``data.intent``; the bot lands with a later issue) or,
    without a bot, a ``message.received`` whose text contains one of ``keywords`` as whole words ("quiero hablar
    con un asesor" contains "asesor"), compared as ``words`` gives them.
    """

    type: Literal["intent"] = "intent"
    intent: Label
    keywords: tuple[ReplyText, ...] = Field(default=(), max_length=50)
    when: Condition | None = None

    @property
    def event_types(self) -> frozenset[str]:
        """The event types that may enrol."""
        return frozenset({INTENT_DETECTED, MESSAGE_RECEIVED} if self.keywords else {INTENT_DETECTED})

    def matches(self, facts: Facts) -> bool:
        """Tell whether the event in ``facts.event`` enrols."""
        data = facts.event.get("data") or {}
        if _event_of(facts) == INTENT_DETECTED:
            asked = data.get("intent") == self.intent
        elif _event_of(facts) == MESSAGE_RECEIVED and self.keywords and data.get("direction") != "outbound":
            text = f" {words(message_text(data)[0] or '')} "
            asked = any(f" {keyword} " in text for keyword in self.keywords)
        else:
            asked = False
        return asked and (self.when is None or self.when.holds(facts))


class ProfileChangedTrigger(_Model):
    """``type: profile_changed``: enrol when the profile attribute ``attribute`` changes (a
    ``customer.attribute_changed`` event: ``data.attribute``, ``data.old_value``, ``data.new_value``)."""

    type: Literal["profile_changed"] = "profile_changed"
    attribute: AttributeKey
    when: Condition | None = None

    @property
    def event_types(self) -> frozenset[str]:
        """The event types that may enrol."""
        return frozenset({ATTRIBUTE_CHANGED})

    def matches(self, facts: Facts) -> bool:
        """Tell whether the event in ``facts.event`` enrols."""
        data = facts.event.get("data") or {}
        changed = _event_of(facts) == ATTRIBUTE_CHANGED and data.get("attribute") == self.attribute
        return changed and (self.when is None or self.when.holds(facts))


class Weekday(StrEnum):
    """A day of the week, as schedules name them."""

    MON = "mon"
    TUE = "tue"
    WED = "wed"
    THU = "thu"
    FRI = "fri"
    SAT = "sat"
    SUN = "sun"


def _clock_time(value: Any) -> Any:
    if isinstance(value, time):
        return value
    if isinstance(value, int):
        # YAML 1.1 reads 21:00 unquoted as the base-60 number 1260.
        raise ValueError("write the time in quotes, e.g. '21:00' (YAML reads 21:00 unquoted as a number)")
    if not isinstance(value, str) or not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", value.strip()):
        raise ValueError("a time of day is written HH:MM, e.g. '09:00'")
    hours, minutes = value.strip().split(":")
    return time(int(hours), int(minutes))


ClockTime = Annotated[
    time,
    BeforeValidator(_clock_time),
    PlainSerializer(lambda value: value.strftime("%H:%M"), return_type=str, when_used="json"),
]


class ScheduleTrigger(_Model):
    """``type: schedule``: at ``at`` on ``days`` in ``time_zone``, enrol every customer whose profile fits
    ``audience`` (a condition on ``profile.*`` only). Each run is a ``workflow.scheduled`` event."""

    type: Literal["schedule"] = "schedule"
    at: ClockTime
    days: tuple[Weekday, ...] = Field(default=tuple(Weekday), min_length=1, max_length=7)
    time_zone: TimeZoneName = DEFAULT_TIME_ZONE
    audience: Condition

    @property
    def event_types(self) -> frozenset[str]:
        """The event types that may enrol."""
        return frozenset({SCHEDULED})


_TRIGGER_TYPES: Final = ("event", "intent", "profile_changed", "schedule")


def _known_trigger(value: Any) -> Any:
    if isinstance(value, Mapping) and value.get("type") not in _TRIGGER_TYPES:
        given = value.get("type")
        start = "a trigger needs a type" if given is None else f"unknown trigger type {given!r}"
        raise _Problem(f"{start}; a trigger is one of: {', '.join(_TRIGGER_TYPES)}", field="type")
    return value


def _type_tag(value: Any) -> Any:
    return value.get("type") if isinstance(value, Mapping) else getattr(value, "type", None)


def _hidden_type_tag(value: Any) -> Any:
    kind = _type_tag(value)
    return f"~{kind}" if kind is not None else None


#: What enrols a customer, by ``type``.
Trigger = Annotated[
    Annotated[EventTrigger, Tag("~event")]
    | Annotated[IntentTrigger, Tag("~intent")]
    | Annotated[ProfileChangedTrigger, Tag("~profile_changed")]
    | Annotated[ScheduleTrigger, Tag("~schedule")],
    Discriminator(_hidden_type_tag),
    BeforeValidator(_known_trigger),
]


# ---------------------------------------------------------------------------------------- ending an enrolment


def _incoming_is(facts: Facts, event_type: str) -> bool:
    return facts.incoming is not None and facts.incoming.get("type") == event_type


class Goal(_Model):
    """What counts as converted: an ``event`` (with ``when`` about it, ``incoming.*``) or a ``when`` alone.

    Met by an arriving event, or by the condition before any step; the enrolment then ends with ``outcome``.
    """

    event: EventType | None = None
    when: Condition | None = None
    outcome: Label = "converted"

    @model_validator(mode="after")
    def _something(self) -> Self:
        if self.event is None and self.when is None:
            raise ValueError("a goal needs an event, a when, or both")
        return self

    def met(self, facts: Facts) -> bool:
        """Tell whether ``facts`` (with ``incoming`` for an arriving event) meet the goal."""
        if self.event is not None and not _incoming_is(facts, self.event):
            return False
        return self.when is None or self.when.holds(facts)


_EXIT_KINDS: Final = {"any_reply": "replied", "opt_out": "opted_out"}


class ExitRule(_Model):
    """One of ``exit_when``: ``any_reply`` (any message from the customer), ``opt_out`` (a ``consent.changed`` opt-out,
    on any channel), ``{event: <type>, when: ...}`` (``incoming.*`` is that event) or ``{when: ...}`` (checked before
    every step). ``outcome`` labels the end: ``replied``, ``opted_out`` or ``exited`` unless given."""

    kind: Literal["any_reply", "opt_out"] | None = None
    event: EventType | None = None
    when: Condition | None = None
    outcome: Label

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            if data not in _EXIT_KINDS:
                raise ValueError(
                    f"{data!r} is not an exit rule; write any_reply, opt_out, {{event: ...}} or {{when: ...}}"
                )
            data = {"kind": data}
        if isinstance(data, Mapping) and "outcome" not in data:
            kind = data.get("kind")
            data = {**data, "outcome": _EXIT_KINDS.get(kind, "exited") if isinstance(kind, str) else "exited"}
        return data

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        if self.kind is not None and (self.event is not None or self.when is not None):
            raise ValueError(f"{self.kind} stands alone; give an event or a when in a rule of its own")
        if self.kind is None and self.event is None and self.when is None:
            raise ValueError("an exit rule needs any_reply, opt_out, an event or a when")
        return self

    @property
    def event_types(self) -> frozenset[str]:
        """The event types that can meet this rule."""
        if self.kind == "any_reply":
            return frozenset({MESSAGE_RECEIVED})
        if self.kind == "opt_out":
            return frozenset({CONSENT_CHANGED})
        return frozenset({self.event} if self.event else ())

    def met(self, facts: Facts) -> bool:
        """Tell whether ``facts`` (with ``incoming`` for an arriving event) meet the rule."""
        incoming = facts.incoming or {}
        data = incoming.get("data") or {}
        if self.kind == "any_reply":
            return _incoming_is(facts, MESSAGE_RECEIVED) and data.get("direction") != "outbound"
        if self.kind == "opt_out":
            return _incoming_is(facts, CONSENT_CHANGED) and data.get("kind") == "opt_out"
        if self.event is not None and not _incoming_is(facts, self.event):
            return False
        return self.when is None or self.when.holds(facts)


class ReentryAfter(_Model):
    """``reentry: {after: 30d}``: again only once ``after`` has passed since the last enrolment began."""

    after: Duration


def _reentry_tag(value: Any) -> str | None:
    if isinstance(value, str):
        return "~policy"
    return "~after" if isinstance(value, Mapping | ReentryAfter) else None


#: ``never`` (once per customer and key, ever), ``always``, or ``{after: <duration>}``.
Reentry = Annotated[
    Annotated[Literal["never", "always"], Tag("~policy")] | Annotated[ReentryAfter, Tag("~after")],
    Discriminator(
        _reentry_tag,
        custom_error_type="reentry",
        custom_error_message="reentry is never, always or {after: <duration>}",
    ),
]


class Frequency(_Model):
    """A cap on enrolments: at most ``max`` in any ``per`` for one customer, counting this workflow and every other
    workflow with the same ``group`` (default: this workflow alone). Sends are capped by outbound on their own."""

    max: int = Field(ge=1, le=1000)
    per: Duration
    group: Label | None = None

    def allows(self, started: Iterable[datetime], now: datetime) -> bool:
        """Tell whether one more enrolment may begin at ``now``, given when the group's earlier ones began."""
        since = now - self.per
        return sum(1 for moment in started if since < moment <= now) < self.max


# ------------------------------------------------------------------------------------------------------ steps


class Priority(StrEnum):
    """How soon a person should act on a task or handoff."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class _Step(_Model):
    id: StepId


class _Linear(_Step):
    #: The step after this one; default: the next in the list (or the end, after the last).
    next: StepId | None = None


def send_key(enrolment_id: str, step_id: str) -> str:
    """The idempotency key of a send step's ``OutboundCommand``: one message per enrolment and step, however often
    the step is delivered (workflows do not loop, so a step runs at most once per enrolment)."""
    return f"workflow:{enrolment_id}:{step_id}"


class SendStep(_Linear):
    """Send a message template: on ``channel``, or by ``route`` (``best`` for the ``intent``, the default; ``reply``:
    where the customer last wrote). Consent, quiet hours, WhatsApp's window and the marketing cap are the outbound
    path's, as for any send; the template's ``purpose`` decides which consent it needs."""

    type: Literal["send"] = "send"
    template: TemplateId
    #: ``vars.*`` of the template; ``event.*`` is the trigger's data, always.
    vars: dict[DataKey, Value] = Field(default_factory=dict, max_length=50)
    channel: Channel | None = None
    route: Literal["best", "reply"] | None = None
    intent: Intent | None = None
    #: Transactional only: quiet hours do not hold it.
    urgent: bool = False

    @model_validator(mode="after")
    def _where(self) -> Self:
        if self.channel in (Channel.VOICE, Channel.IN_STORE):
            raise _Problem(f"channel {self.channel!s} carries no written messages", field="channel")
        if self.channel is not None and self.route is not None:
            raise _Problem("give a channel or a route, not both", field="route")
        if self.channel is not None and self.intent is not None:
            raise _Problem("an intent chooses the channel; with a channel named, leave it out", field="intent")
        return self

    def command(
        self,
        facts: Facts,
        *,
        workflow_id: str,
        enrolment_id: str,
        customer_id: str,
        correlation_id: str,
        requested_at: datetime,
    ) -> OutboundCommand:
        """The send command for this step.

        Parameters
        ----------
        facts : Facts
            The enrolment's facts: ``vars`` are resolved from them, and the trigger's data is the template's ``event``.
        workflow_id, enrolment_id, customer_id, correlation_id : str
            Who sends (the actor is the workflow), the key's seed, the recipient and the trace.
        requested_at : datetime
            When the step began, as recorded: the same on every delivery of the step, so a repeat is one message.

        Returns
        -------
        OutboundCommand
            Keyed ``send_key(enrolment_id, step id)``. Its purpose is left to the template (a marketing template's
            purpose wins in the outbound path).

        Raises
        ------
        MissingData
            If a ``{from: ...}`` value is missing and has no default.
        """
        resolved = {
            name: value.resolve(facts) if isinstance(value, Reference) else value for name, value in self.vars.items()
        }
        content = TemplateContent(
            template_id=self.template,
            vars={name: value for name, value in resolved.items() if value is not None},
            event=dict(facts.event.get("data") or {}),
        )
        route = Route.EXPLICIT if self.channel is not None else Route(self.route or Route.BEST)
        return OutboundCommand(
            correlation_id=correlation_id,
            key=send_key(enrolment_id, self.id),
            customer_id=customer_id,
            channel=self.channel,
            route=route,
            intent=self.intent,
            content=content,
            urgent=self.urgent,
            actor=Actor(kind=ActorKind.WORKFLOW, id=workflow_id),
            requested_at=requested_at,
        )


class At(_Model):
    """An instant taken from the data, moved ``before`` or ``after`` by a duration: ``{from: event.data.starts_at,
    before: 24h}``. The value must be an ISO-8601 time with an offset or ``Z``."""

    source: FieldPath = Field(alias="from")
    before: Duration | None = None
    after: Duration | None = None

    @model_validator(mode="after")
    def _one_shift(self) -> Self:
        if self.before is not None and self.after is not None:
            raise ValueError("give before or after, not both")
        return self

    def instant(self, facts: Facts) -> datetime:
        """The instant; ``MissingData`` naming the path when it is missing or not a time with a zone."""
        value = facts.lookup(self.source)
        try:
            moment = datetime.fromisoformat(value) if isinstance(value, str) else None
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None or moment.utcoffset() is None:
            raise MissingData(f"{self.source} is missing or not an ISO-8601 time with an offset")
        return ensure_utc(moment) - (self.before or timedelta(0)) + (self.after or timedelta(0))


class WaitFor(_Model):
    """``until: {event: <type>, when: ...}``: the event that ends a wait early (``incoming.*`` is that event). Only
    the enrolled customer's events count."""

    event: EventType
    when: Condition | None = None

    def met(self, facts: Facts) -> bool:
        """Tell whether ``facts.incoming`` ends the wait."""
        return _incoming_is(facts, self.event) and (self.when is None or self.when.holds(facts))


def _timeout_tag(value: Any) -> str:
    return "~at" if isinstance(value, Mapping | At) else "~duration"


#: A wait's ``timeout``: a duration, or an instant from the data.
Timeout = Annotated[Annotated[Duration, Tag("~duration")] | Annotated[At, Tag("~at")], Discriminator(_timeout_tag)]


class WaitStep(_Linear):
    """Pause the enrolment: for a ``duration``, until an instant ``at`` (with ``if_past``: where to go when it has
    already passed), or ``until`` an event, at most ``timeout``. Waits are the only steps that take time."""

    type: Literal["wait"] = "wait"
    duration: Duration | None = None
    at: At | None = None
    until: WaitFor | None = None
    timeout: Timeout | None = None
    if_past: StepId | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Self:
        forms = [name for name in ("duration", "at", "until") if getattr(self, name) is not None]
        if len(forms) != 1:
            also = f"; this one has {' and '.join(forms)}" if forms else ""
            raise ValueError(f"a wait has one of duration, at, or until with a timeout{also}")
        if self.until is not None and self.timeout is None:
            raise _Problem(
                "a wait until an event needs a timeout (a duration or {from: ..., before: ...})", field="timeout"
            )
        if self.until is None and self.timeout is not None:
            raise _Problem("a timeout goes with until", field="timeout")
        if self.if_past is not None and self.at is None:
            raise _Problem("if_past goes with at", field="if_past")
        return self

    def due(self, started_at: datetime, facts: Facts) -> datetime:
        """When the wait ends if no event ends it first (a timeout's instant for ``until``).

        ``started_at`` is when the step began, as recorded. An instant already past means "at once" (or ``if_past``
        for ``at``). ``MissingData`` when an ``at`` reads a missing or unreadable time.
        """
        start = ensure_utc(started_at)
        if self.duration is not None:
            return start + self.duration
        if self.at is not None:
            return self.at.instant(facts)
        timeout = self.timeout
        return timeout.instant(facts) if isinstance(timeout, At) else start + (timeout or timedelta(0))


class BranchCase(_Model):
    """``{when: <condition>, next: <step>}``."""

    when: Condition
    next: StepId


class BranchStep(_Step):
    """Go to the ``next`` of the first case whose ``when`` holds, else to ``default`` (required: a branch always
    knows where to go)."""

    type: Literal["branch"] = "branch"
    cases: tuple[BranchCase, ...] = Field(min_length=1, max_length=20)
    default: StepId

    def choose(self, facts: Facts) -> str:
        """The step to go to."""
        return next((case.next for case in self.cases if case.when.holds(facts)), self.default)


class SplitVariant(_Model):
    """One arm of an A/B split: its ``name`` (recorded on the enrolment), ``weight`` in percent, and ``next``."""

    name: Label
    weight: int = Field(ge=0, le=100)
    next: StepId


class SplitStep(_Step):
    """An A/B test: each enrolment goes to one variant, by weight, the same one every time it is asked."""

    type: Literal["split"] = "split"
    variants: tuple[SplitVariant, ...] = Field(min_length=2, max_length=10)

    @model_validator(mode="after")
    def _weights(self) -> Self:
        total = sum(variant.weight for variant in self.variants)
        if total != 100:
            raise _Problem(f"the weights add up to {total}; they must add up to 100", field="variants")
        names = [variant.name for variant in self.variants]
        if len(set(names)) != len(names):
            raise _Problem("two variants have the same name", field="variants")
        return self

    def choose(self, enrolment_id: str) -> SplitVariant:
        """The enrolment's variant: a hash of the enrolment and step ids, so a redelivered step picks the same one,
        and enrolments spread over the variants by weight."""
        digest = hashlib.sha256(f"{enrolment_id}:{self.id}".encode()).digest()
        bucket = int.from_bytes(digest[:8], "big") % 100
        for variant in self.variants:
            if bucket < variant.weight:
                return variant
            bucket -= variant.weight
        raise AssertionError("weights add up to 100")  # pragma: no cover - guaranteed by the validator


class UpdateProfileStep(_Linear):
    """Set profile attributes: ``set: {tier: gold, last_document: {from: event.data.document_id}}``; null removes."""

    type: Literal["update_profile"] = "update_profile"
    set: dict[AttributeKey, Value] = Field(min_length=1, max_length=20)


class CreateTaskStep(_Linear):
    """A task for a person: for a ``queue`` (team) or an ``assignee`` (an agent's id), with a ``title``, optional
    ``description``, ``due_in`` and ``priority``, and ``data`` the person sees with it (values or ``{from: ...}``)."""

    type: Literal["create_task"] = "create_task"
    title: ShortText
    description: LongText | None = None
    queue: Label | None = None
    assignee: Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,128}$")] | None = None
    due_in: Duration | None = None
    priority: Priority = Priority.NORMAL
    data: dict[DataKey, Value] = Field(default_factory=dict, max_length=20)

    @model_validator(mode="after")
    def _for_someone(self) -> Self:
        if self.queue is None and self.assignee is None:
            raise ValueError("a task needs a queue, an assignee, or both")
        return self


def _check_webhook_url(value: str) -> str:
    parts = urlsplit(value)
    local = parts.hostname in ("localhost", "127.0.0.1")
    if any(char.isspace() for char in value) or not parts.netloc or parts.scheme not in ("https", "http"):
        raise ValueError("a webhook is an absolute https:// URL")
    if parts.scheme == "http" and not local:
        raise ValueError("a webhook must use https (plain http only to localhost, for tests)")
    if parts.username is not None or parts.password is not None:
        raise ValueError("a webhook URL must not carry credentials; they belong in the configuration secret")
    return value


class Webhook(_Model):
    """``webhook: {url, payload}``: POST JSON to a CRM or any system. The body is ``payload`` with the enrolment's
    ids (workflow, version, enrolment, customer, step) added by the engine."""

    url: Annotated[str, StringConstraints(max_length=2048), AfterValidator(_check_webhook_url)]
    payload: dict[DataKey, Value] = Field(default_factory=dict, max_length=50)


class BusEvent(_Model):
    """``event: {type, data}``: an event on the integration bus (EventBridge), where the CRM's rules pick it up."""

    type: EventType
    data: dict[DataKey, Value] = Field(default_factory=dict, max_length=50)


class NotifyStep(_Linear):
    """Tell another system: a ``webhook`` call or an ``event`` on the integration bus (one of them)."""

    type: Literal["notify"] = "notify"
    webhook: Webhook | None = None
    event: BusEvent | None = None

    @model_validator(mode="after")
    def _one_target(self) -> Self:
        if (self.webhook is None) == (self.event is None):
            raise ValueError("a notify step has a webhook or an event (one of them)")
        return self


class HandoffStep(_Step):
    """Hand the customer's conversation to people (a ``queue``) with a ``reason``; ends the enrolment with outcome
    ``handed_off``, because once a person owns the conversation automation stops talking in it."""

    type: Literal["handoff"] = "handoff"
    queue: Label
    reason: Annotated[str, StringConstraints(min_length=1, max_length=500)]
    priority: Priority = Priority.NORMAL


class ExitStep(_Step):
    """End the enrolment with an ``outcome`` label (what analytics count)."""

    type: Literal["exit"] = "exit"
    outcome: Label


_STEP_TYPES: Final = ("send", "wait", "branch", "split", "update_profile", "create_task", "notify", "handoff", "exit")


def _known_step(value: Any) -> Any:
    if isinstance(value, Mapping) and value.get("type") not in _STEP_TYPES:
        given = value.get("type")
        start = "a step needs a type" if given is None else f"unknown step type {given!r}"
        raise _Problem(f"{start}; a step is one of: {', '.join(_STEP_TYPES)}", field="type")
    if not isinstance(value, Mapping | BaseModel):
        raise _Problem("a step is a mapping with an id and a type")
    return value


#: A step, by ``type``.
Step = Annotated[
    Annotated[SendStep, Tag("send")]
    | Annotated[WaitStep, Tag("wait")]
    | Annotated[BranchStep, Tag("branch")]
    | Annotated[SplitStep, Tag("split")]
    | Annotated[UpdateProfileStep, Tag("update_profile")]
    | Annotated[CreateTaskStep, Tag("create_task")]
    | Annotated[NotifyStep, Tag("notify")]
    | Annotated[HandoffStep, Tag("handoff")]
    | Annotated[ExitStep, Tag("exit")],
    Discriminator(_type_tag),
    BeforeValidator(_known_step),
]


# --------------------------------------------------------------------------------------------------- workflow


class TemplateLookup(Protocol):
    """What ``load_workflow`` checks ``send`` steps against: ``shared.outbound.catalog.TemplateCatalog`` fits."""

    def ids(self) -> tuple[str, ...]: ...

    def get(self, template_id: str) -> MessageTemplate: ...


class Workflow(_Model):
    """A journey: what enrols a customer, the steps, and what ends it early. Frozen; checked whole when built.

    ``version`` is bumped on every change: an enrolment keeps running the version it began with, so the engine keeps
    every version it has enrolled anyone on (``fingerprint`` tells a changed file that kept its version).
    """

    id: WorkflowId
    version: int = Field(ge=1)
    name: ShortText
    description: LongText | None = None
    enabled: bool = True
    trigger: Trigger
    goal: Goal | None = None
    exit_when: tuple[ExitRule, ...] = Field(default=(), max_length=20)
    reentry: Reentry = "never"
    frequency: Frequency | None = None
    steps: tuple[Step, ...] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _whole(self, info: ValidationInfo) -> Self:
        context = info.context if isinstance(info.context, Mapping) else {}
        problems = _Checker(self, context.get("templates"), context.get("expected_id")).problems()
        if problems:
            raise _Problems(problems)
        return self

    # -------------------------------------------------------------------------------------------- navigation

    def step(self, step_id: str) -> Step:
        """The step ``step_id``; ``KeyError`` if there is none."""
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def first(self) -> Step:
        """Where every enrolment begins."""
        return self.steps[0]

    def next_after(self, step_id: str) -> str | None:
        """The step that follows ``step_id`` once it is done: its ``next``, else the next in the list; None at the end.

        For a send, wait, update_profile, create_task or notify step. A branch or split chooses (``choose``); an exit
        or handoff ends the enrolment.
        """
        position = next(index for index, step in enumerate(self.steps) if step.id == step_id)
        step = self.steps[position]
        if not isinstance(step, _Linear):
            raise ValueError(f"step {step_id!r} is a {step.type} step; it has no single next step")
        if step.next is not None:
            return step.next
        return self.steps[position + 1].id if position + 1 < len(self.steps) else None

    # ---------------------------------------------------------------------------------------------- semantics

    @property
    def listens_to(self) -> frozenset[str]:
        """Every event type that can enrol a customer or move or end one of this workflow's enrolments."""
        types = set(self.trigger.event_types)
        for rule in self.exit_when:
            types |= rule.event_types
        if self.goal is not None and self.goal.event is not None:
            types.add(self.goal.event)
        for step in self.steps:
            if isinstance(step, WaitStep) and step.until is not None:
                types.add(step.until.event)
        checker = _Checker(self, None, None)
        paths = [path for _, _, path in checker.references()]
        if any(path.split(".")[2:3] == ["status"] for path in paths if path.startswith("steps.")):
            types |= DELIVERY_EVENTS
        nodes = (node for _, at, condition in checker.conditions() for _, node in _nodes(condition, at))
        if any(isinstance(node, Replied) for node in nodes):
            types.add(MESSAGE_RECEIVED)
        return frozenset(types)

    def triggered_by(self, facts: Facts) -> bool:
        """Tell whether the event in ``facts.event`` (with the candidate's profile) enrols them. Says nothing of
        ``enabled``, ``reentry`` or ``frequency``, which the engine checks against its records."""
        trigger = self.trigger
        if isinstance(trigger, ScheduleTrigger):
            data = facts.event.get("data") or {}
            return (
                _event_of(facts) == SCHEDULED and data.get("workflow_id") == self.id and trigger.audience.holds(facts)
            )
        return trigger.matches(facts)

    def ending(self, facts: Facts) -> str | None:
        """The outcome that ends the enrolment now, or None: the goal first, then each exit rule in order.

        Asked with ``facts.incoming`` set when an event for the customer arrives (which cancels a pending wait),
        and without it before every step (only ``when`` rules can hold then).
        """
        if self.goal is not None and self.goal.met(facts):
            return self.goal.outcome
        return next((rule.outcome for rule in self.exit_when if rule.met(facts)), None)

    def admits(self, last_started_at: datetime | None, *, active: bool, now: datetime) -> bool:
        """The re-entry policy: may a customer (per key) with these records enrol now?

        Never while an enrolment of theirs (any version) is active. ``never``: only if there was none before;
        ``always``: yes; ``after``: if the last one began at least ``after`` ago.
        """
        if active:
            return False
        if last_started_at is None or self.reentry == "always":
            return True
        if isinstance(self.reentry, ReentryAfter):
            return now - last_started_at >= self.reentry.after
        return False

    @property
    def frequency_group(self) -> str:
        """The group whose enrolments ``frequency`` counts: its ``group``, else this workflow's id."""
        return self.frequency.group if self.frequency is not None and self.frequency.group else self.id

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the workflow's canonical JSON: two documents with one meaning have one fingerprint.

        ``enabled`` is left out: it says whether new customers enrol, not what the journey is, so turning a workflow
        off and on needs no new version.
        """
        document = self.model_dump(mode="json", exclude_none=True, exclude={"enabled"})
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()


# --------------------------------------------------------------------------------------------- whole checks

#: Roots each place may read. ``incoming`` only where an event is being matched; nothing but the event and the
#: profile before an enrolment exists.
_FLOW: Final = frozenset({"event", "profile", "enrolment", "steps"})
_FILTER: Final = _FLOW | {"incoming"}
_TRIGGER: Final = frozenset({"event", "profile"})
_ROOT_HELP: Final = {
    "trigger": "a trigger reads only event.* and profile.* (no enrolment exists yet)",
    "key": "the enrolment key comes from the event: event.*",
    "audience": "a schedule's audience reads only profile.*",
    "flow": "incoming.* is the event a wait, goal or exit rule is matching; there is none here",
}
_LITERALS: Final = {
    "status": frozenset(DeliveryStatus),
    "outcome": frozenset(WaitOutcome),
    "channel": frozenset(Channel),
}


@dataclasses.dataclass(frozen=True)
class _Place:
    """Where a path or condition sits: its step (None for the workflow), what it may read, and which steps run
    before it (None: any step may have run)."""

    step: str | None
    roots: frozenset[str]
    help: str
    before: frozenset[str] | None


class _Checker:
    """The checks that need the whole workflow: ids, graph, paths in context, literals, templates."""

    def __init__(self, workflow: Workflow, templates: TemplateLookup | None, expected_id: str | None) -> None:
        self.workflow = workflow
        self.templates = templates
        self.expected_id = expected_id
        self.by_id = {step.id: step for step in workflow.steps}
        self.position = {step.id: index for index, step in reversed(list(enumerate(workflow.steps)))}
        self.edges = {step.id: list(self._edges(index, step)) for index, step in enumerate(workflow.steps)}
        self._ancestors: dict[str, frozenset[str]] = {}

    def problems(self) -> list[Problem]:
        found: list[Problem] = []
        if self.expected_id is not None and self.workflow.id != self.expected_id:
            found.append(Problem(None, "id", f"must be {self.expected_id!r}, the name of its file"))
        seen: set[str] = set()
        for step in self.workflow.steps:
            if step.id in seen:
                found.append(Problem(step.id, "id", "two steps have this id"))
            seen.add(step.id)
        if len(seen) < len(self.workflow.steps):
            return found  # the graph is not even defined
        found += self._graph()
        if not found:  # paths are judged against a sound graph
            found += self._paths()
            found += self._condition_problems()
            found += self._templates()
        return found

    # ---------------------------------------------------------------------------------------------- graph

    def _edges(self, index: int, step: Step) -> Iterator[tuple[str | None, str | None]]:
        """``(field, target)`` for each way out of ``step``; field None for the implicit next, target None = end."""
        following = self.workflow.steps[index + 1].id if index + 1 < len(self.workflow.steps) else None
        if isinstance(step, BranchStep):
            yield from ((f"branch.cases.{i}.next", case.next) for i, case in enumerate(step.cases))
            yield "branch.default", step.default
        elif isinstance(step, SplitStep):
            yield from ((f"split.variants.{i}.next", variant.next) for i, variant in enumerate(step.variants))
        elif isinstance(step, _Linear):
            yield (f"{step.type}.next", step.next) if step.next is not None else (None, following)
            if isinstance(step, WaitStep) and step.if_past is not None:
                yield "wait.if_past", step.if_past

    def _graph(self) -> list[Problem]:
        found: list[Problem] = []
        known = ", ".join(self.by_id)
        for source, edges in self.edges.items():
            for field, target in edges:
                if target is not None and target not in self.by_id:
                    found.append(Problem(source, field, f"there is no step {target!r} (steps: {known})"))
        if found:
            return found
        # Implicit edges only go forward in the list, so every loop has an explicit edge going back: blame that one.
        for source, edges in self.edges.items():
            for field, target in edges:
                backwards = target is not None and self.position[target] <= self.position[source]
                if backwards and target is not None and source in self._reach(target):
                    message = (
                        f"goes back to step {target!r}, which leads here: a workflow cannot loop "
                        "(every path must end at an exit or after the last step)"
                    )
                    found.append(Problem(source, field, message))
        reached = self._reach(self.workflow.first.id)
        for step in self.workflow.steps:
            if step.id not in reached:
                message = "no step leads here (unreachable): point a next, branch or split at it, or remove it"
                found.append(Problem(step.id, None, message))
        return found

    def _reach(self, start: str) -> set[str]:
        reached, stack = {start}, [start]
        while stack:
            for _, target in self.edges[stack.pop()]:
                if target is not None and target not in reached:
                    reached.add(target)
                    stack.append(target)
        return reached

    def ancestors(self, step_id: str) -> frozenset[str]:
        """Every step that can run before ``step_id`` in some enrolment."""
        if step_id not in self._ancestors:
            self._ancestors[step_id] = frozenset(
                source for source in self.by_id if source != step_id and step_id in self._reach(source)
            )
        return self._ancestors[step_id]

    # ---------------------------------------------------------------------------------------------- paths

    def conditions(self) -> Iterator[tuple[_Place, str, Condition]]:
        """Every top-level condition: its place, its location, and itself."""
        workflow, trigger = self.workflow, self.workflow.trigger
        anywhere = _Place(None, _FLOW, _ROOT_HELP["flow"], None)
        if isinstance(trigger, ScheduleTrigger):
            yield (
                _Place(None, frozenset({"profile"}), _ROOT_HELP["audience"], None),
                "trigger.audience",
                trigger.audience,
            )
        elif trigger.when is not None:
            yield _Place(None, _TRIGGER, _ROOT_HELP["trigger"], None), "trigger.when", trigger.when
        if workflow.goal is not None and workflow.goal.when is not None:
            place = dataclasses.replace(anywhere, roots=_FILTER) if workflow.goal.event else anywhere
            yield place, "goal.when", workflow.goal.when
        for index, rule in enumerate(workflow.exit_when):
            if rule.when is not None:
                place = dataclasses.replace(anywhere, roots=_FILTER) if rule.event else anywhere
                yield place, f"exit_when.{index}.when", rule.when
        for step in workflow.steps:
            here = _Place(step.id, _FLOW, _ROOT_HELP["flow"], self.ancestors(step.id))
            if isinstance(step, WaitStep) and step.until is not None and step.until.when is not None:
                yield dataclasses.replace(here, roots=_FILTER), "wait.until.when", step.until.when
            if isinstance(step, BranchStep):
                for index, case in enumerate(step.cases):
                    yield here, f"branch.cases.{index}.when", case.when

    def references(self) -> Iterator[tuple[_Place, str, str]]:
        """Every path the workflow reads: its place, its location, and the path (``replied.since: x`` reads
        ``steps.x.at``)."""
        for place, at, condition in self.conditions():
            for where, node in _nodes(condition, at):
                if isinstance(node, Compare):
                    yield place, f"{where}.field", node.field
                    name, operand = node.operator
                    if isinstance(operand, Reference):
                        yield place, f"{where}.{name}.from", operand.source
                elif isinstance(node, Replied) and node.replied.since is not None:
                    yield place, f"{where}.replied.since", f"steps.{node.replied.since}.at"
        trigger = self.workflow.trigger
        if isinstance(trigger, EventTrigger) and trigger.key is not None:
            yield _Place(None, frozenset({"event"}), _ROOT_HELP["key"], None), "trigger.key", trigger.key
        for step in self.workflow.steps:
            here = _Place(step.id, _FLOW, _ROOT_HELP["flow"], self.ancestors(step.id))
            for at, value in self._step_values(step):
                if isinstance(value, Reference | At):
                    yield here, f"{at}.from", value.source

    @staticmethod
    def _step_values(step: Step) -> Iterator[tuple[str, Any]]:
        values: dict[str, Mapping[str, Any]] = {}
        if isinstance(step, SendStep):
            values["send.vars"] = step.vars
        elif isinstance(step, UpdateProfileStep):
            values["update_profile.set"] = step.set
        elif isinstance(step, CreateTaskStep):
            values["create_task.data"] = step.data
        elif isinstance(step, NotifyStep):
            if step.webhook is not None:
                values["notify.webhook.payload"] = step.webhook.payload
            if step.event is not None:
                values["notify.event.data"] = step.event.data
        elif isinstance(step, WaitStep):
            yield "wait.at", step.at
            yield "wait.timeout", step.timeout
        for at, mapping in values.items():
            for name, value in mapping.items():
                yield f"{at}.{name}", value

    def _paths(self) -> list[Problem]:
        found: list[Problem] = []
        for place, at, path in self.references():
            root, *rest = path.split(".")
            if root not in place.roots:
                found.append(Problem(place.step, at, f"{path}: {place.help}"))
            elif root == "steps":
                message = self._step_reference(rest[0], rest[1], place)
                if message:
                    found.append(Problem(place.step, at, message))
        return found

    def _step_reference(self, target: str, attribute: str, place: _Place) -> str | None:
        step = self.by_id.get(target)
        if step is None:
            return f"there is no step {target!r} (steps: {', '.join(self.by_id)})"
        if place.before is not None and target not in place.before:
            return f"step {target!r} never runs before this one"
        records = {"at"}
        if isinstance(step, SendStep):
            records |= {"status", "channel", "message_id"}
        elif isinstance(step, WaitStep) and step.until is not None:
            records |= {"outcome", "event", "text"}
        elif isinstance(step, SplitStep):
            records.add("variant")
        elif isinstance(step, CreateTaskStep):
            records.add("task_id")
        if attribute not in records:
            return f"step {target!r} is a {step.type} step; it records {', '.join(sorted(records))}, not {attribute}"
        return None

    def _condition_problems(self) -> list[Problem]:
        found: list[Problem] = []
        for place, at, condition in self.conditions():
            for where, node in _nodes(condition, at):
                if isinstance(node, Replied) and "steps" not in place.roots:
                    found.append(Problem(place.step, f"{where}.replied", "there are no replies before an enrolment"))
                if not isinstance(node, Compare) or not node.field.startswith("steps."):
                    continue
                allowed = _LITERALS.get(node.field.split(".")[2])
                name, operand = node.operator
                if allowed is None or name not in ("equals", "not_equals", "in", "not_in"):
                    continue
                for value in operand if isinstance(operand, tuple) else (operand,):
                    if not isinstance(value, Reference) and value not in allowed:
                        kind = node.field.split(".")[2]
                        message = f"{value!r} is never a step's {kind}; it is one of {', '.join(sorted(allowed))}"
                        found.append(Problem(place.step, f"{where}.{name}", message))
        return found

    def _templates(self) -> list[Problem]:
        if self.templates is None:
            return []
        found: list[Problem] = []
        known = self.templates.ids()
        for step in self.workflow.steps:
            if not isinstance(step, SendStep):
                continue
            if step.template not in known:
                message = f"there is no message template {step.template!r} (templates: {', '.join(known) or 'none'})"
                found.append(Problem(step.id, "send.template", message))
                continue
            template = self.templates.get(step.template)
            if step.channel is not None and not template.supports(step.channel):
                variants = ", ".join(template.variants.by_key())
                message = f"template {step.template!r} has no variant for {step.channel!s} (it has: {variants})"
                found.append(Problem(step.id, "send.channel", message))
            if step.urgent and template.purpose == ConsentPurpose.MARKETING:
                message = f"template {step.template!r} is marketing, and a marketing message is never urgent"
                found.append(Problem(step.id, "send.urgent", message))
        return found


# ------------------------------------------------------------------------------------------------------ load


def _detail(workflow_id: str, raw_steps: Any, error: Any) -> list[dict[str, Any]]:
    cause = error.get("ctx", {}).get("error")
    if isinstance(cause, _Problems):
        return [
            {"workflow": workflow_id, "step": p.step, "field": p.field, "message": p.message} for p in cause.problems
        ]
    location = [part for part in error["loc"] if not (isinstance(part, str) and part.startswith("~"))]
    step = None
    if location[:1] == ["steps"] and len(location) > 1 and isinstance(location[1], int):
        index = location[1]
        raw = raw_steps[index] if isinstance(raw_steps, list) and index < len(raw_steps) else None
        raw_id = raw.get("id") if isinstance(raw, Mapping) else None
        step = raw_id if isinstance(raw_id, str) and raw_id else f"#{index + 1}"
        location = location[2:]
    if isinstance(cause, _Problem) and cause.field:
        location.append(cause.field)
    message = {"extra_forbidden": "unknown field", "missing": "required"}.get(error["type"], str(error["msg"]))
    message = message.removeprefix("Value error, ")
    field = ".".join(str(part) for part in location) or None
    return [{"workflow": workflow_id, "step": step, "field": field, "message": message}]


def _sentence(detail: Mapping[str, Any]) -> str:
    where = f"workflow {detail['workflow']!r}"
    if detail["step"]:
        where += f" step {detail['step']!r}"
    field = f"field {detail['field']}: " if detail["field"] else ""
    return f"{where}: {field}{detail['message']}"


def load_workflow(
    data: Mapping[str, Any] | str | bytes,
    *,
    templates: TemplateLookup | None = None,
    expected_id: str | None = None,
) -> Workflow:
    """Build a workflow from its file or API form, with errors its author can act on.

    Parameters
    ----------
    data : mapping, str or bytes
        The workflow as a mapping (parsed YAML or JSON) or as JSON text.
    templates : TemplateLookup, optional
        The message templates to check ``send`` steps against (``shared.outbound.catalog.shipped_catalog()``): each
        must name one that exists, on a channel it has a variant for. Without it, templates are not checked.
    expected_id : str, optional
        The id the workflow must have: its file's name, or the id in the API path.

    Returns
    -------
    Workflow
        The checked workflow.

    Raises
    ------
    WorkflowInvalid
        If anything is wrong. The message names the workflow, the step and the field of every problem, e.g.
        ``workflow 'documento_descargado' step 'recordatorio': field wait.duration: '3 days' is not a duration; ...``;
        ``details`` holds the same as ``{"workflow", "step", "field", "message"}`` entries.
    """
    data = as_document(data, WorkflowInvalid, kind="workflow", expected="id, version, name, trigger and steps")
    workflow_id = str(data.get("id") or "?")
    try:
        return Workflow.model_validate(data, context={"templates": templates, "expected_id": expected_id})
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        # A list whose item failed also reports itself as too short (the bad item is not counted): noise.
        errors = [
            error
            for error in errors
            if error["type"] != "too_short"
            or not any(other["loc"][: len(error["loc"])] == error["loc"] and other is not error for other in errors)
        ]
        details = [d for error in errors for d in _detail(workflow_id, data.get("steps"), error)]
        raise WorkflowInvalid("; ".join(_sentence(d) for d in details), details=details) from None
