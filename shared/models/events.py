"""Envelopes: domain events fanned out to consumers, and the base of every message body that crosses SQS."""

from __future__ import annotations

import builtins
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, Final, Literal, Self, TypeVar, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue

from shared.models.common import CorrelationId, CustomerId, EventId, IdPrefix, UtcDatetime, new_id, utc_now

_EVENT_TYPE_RE: Final = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
_EVENT_SOURCE_RE: Final = re.compile(r"[a-z][a-z0-9_\-]*(\.[a-z][a-z0-9_\-]*)*")

PayloadT = TypeVar("PayloadT", bound=BaseModel)


def _check_event_type(value: str) -> str:
    if len(value) > 128 or not _EVENT_TYPE_RE.fullmatch(value):
        raise ValueError("event type must be dotted lower-case words, e.g. 'message.received'")
    return value


def _check_event_source(value: str) -> str:
    if len(value) > 64 or not _EVENT_SOURCE_RE.fullmatch(value):
        raise ValueError("event source must be lower-case words joined by dots, e.g. 'hilo.ingest' or 'crm'")
    return value


#: ``<entity>.<past-tense verb>`` in lower case: ``message.received``, ``document.downloaded``.
EventType = Annotated[str, AfterValidator(_check_event_type)]
#: Who emitted it: ``hilo.<function>`` for Hilo, the integration's name for core systems (``crm``).
EventSource = Annotated[str, AfterValidator(_check_event_source)]


class DomainEvent(BaseModel):
    """Something that happened; frozen and strict, and not stripped, so ``data`` travels exactly as sent."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: EventId
    type: EventType
    occurred_at: UtcDatetime
    correlation_id: CorrelationId
    #: Version of this event *type's* ``data`` schema; the envelope's own shape is fixed. Types evolve apart.
    schema_version: int = Field(default=1, ge=1)
    customer_id: CustomerId | None = None
    source: EventSource
    data: dict[str, JsonValue] = Field(default_factory=dict)

    @classmethod
    def new(
        cls,
        type: str,
        *,
        source: str,
        correlation_id: str,
        data: BaseModel | Mapping[str, Any] | None = None,
        customer_id: str | None = None,
        occurred_at: datetime | None = None,
        schema_version: int = 1,
        id_seed: str | None = None,
    ) -> Self:
        """Build a validated event with a fresh id.

        Parameters
        ----------
        type : str
            Dotted event type, e.g. ``message.received``.
        source : str
            Emitter, e.g. ``hilo.ingest``.
        correlation_id : str
            Carried over from the input that caused the event.
        data : BaseModel or mapping, optional
            The payload; a model is dumped in JSON mode.
        customer_id : str, optional
            The customer concerned, when there is one.
        occurred_at : datetime, optional
            When it happened; now when omitted.
        schema_version : int
            Version of this type's payload schema.
        id_seed : str, optional
            With ``occurred_at``, makes the id deterministic (see ``new_id``): a redelivered input re-emits the
            *same* event, and consumers deduplicate on ``id``.

        Returns
        -------
        DomainEvent
            The event.

        Raises
        ------
        ValueError
            If ``occurred_at`` is naive (``pydantic.ValidationError`` is a subclass).
        pydantic.ValidationError
            If any other field is invalid.
        """
        when = utc_now() if occurred_at is None else occurred_at
        payload = data.model_dump(mode="json") if isinstance(data, BaseModel) else dict(data or {})
        return cls.model_validate(
            {
                "id": new_id(IdPrefix.EVENT, at=when, seed=id_seed),
                "type": type,
                "occurred_at": when,
                "correlation_id": correlation_id,
                "schema_version": schema_version,
                "customer_id": customer_id,
                "source": source,
                "data": payload,
            }
        )

    def payload(self, model: builtins.type[PayloadT]) -> PayloadT:
        """Validate ``data`` into the typed payload model of this event type.

        Parameters
        ----------
        model : type of BaseModel
            The payload model for ``(type, schema_version)``.

        Returns
        -------
        BaseModel
            An instance of ``model``.

        Raises
        ------
        pydantic.ValidationError
            If ``data`` does not fit ``model``.
        """
        # The annotation says ``builtins.type`` because, in this class body, ``type`` is the event-type field.
        return model.model_validate(self.data)


class QueueEnvelope(BaseModel):
    """Base of every SQS message body: ``extra="forbid"`` so producer/consumer drift fails loudly, not silently.

    Subclasses must pin ``schema_version`` to a ``Literal`` (``schema_version: Literal[1] = 1``). A change of
    shape is a new version: deploy consumers that accept both (a discriminated union on ``schema_version``)
    before producers that send the new one. Not stripped: the body is what the producer validated.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int
    correlation_id: CorrelationId

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        """Refuse, at import time, a subclass whose ``schema_version`` is not pinned to a literal."""
        super().__pydantic_init_subclass__(**kwargs)
        field = cls.model_fields["schema_version"]
        if get_origin(field.annotation) is not Literal or field.is_required():
            raise TypeError(f"{cls.__name__}.schema_version must be pinned, e.g. `schema_version: Literal[1] = 1`")
