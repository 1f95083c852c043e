"""What every channel webhook shares: verify → normalise → enqueue → answer fast.

A provider module (``shared/providers/<name>.py``) verifies the request and normalises it into ``Normalized``;
``WebhookPorts.deliver`` enqueues the result. Nothing here talks HTTP to the provider or parses its payloads.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aws_lambda_powertools.metrics import MetricUnit
from pydantic import BaseModel, ValidationError

from shared.adapters.config_secret import SettingsLoader
from shared.adapters.queue_publisher import QueuePublisher
from shared.errors import InvalidInput
from shared.models.inbound import InboundEnvelope, StatusEnvelope
from shared.observability import logger, metrics
from shared.settings import Settings


def secrets_equal(given: str | bytes | None, expected: str | bytes | None) -> bool:
    """Constant-time comparison; a missing value on either side never matches."""
    if not given or not expected:
        return False
    given_bytes = given.encode() if isinstance(given, str) else given
    expected_bytes = expected.encode() if isinstance(expected, str) else expected
    return hmac.compare_digest(given_bytes, expected_bytes)


def public_request_url(settings: Settings, raw_path: str, raw_query: str) -> str | None:
    """The URL the provider called, as it sees it: HILO_PUBLIC_URL + path + query (providers sign this)."""
    if not settings.public_url:
        return None
    return f"{settings.public_url}{raw_path}{'?' + raw_query if raw_query else ''}"


ModelT = TypeVar("ModelT", bound=BaseModel)


def failed_fields(error: ValidationError) -> list[str]:
    """The dotted paths of the fields that failed (at most 10), never their values: those may be what the customer
    wrote, and these lists end up in logs and in 400 answers."""
    return sorted({".".join(str(part) for part in item["loc"]) for item in error.errors(include_input=False)})[:10]


def validated(model: type[ModelT], data: Any, message: str) -> ModelT:
    """``model.model_validate(data)``, or InvalidInput (a 400) with ``message`` and the failed fields."""
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise InvalidInput(message, details=[{"field": name} for name in failed_fields(error)]) from error


@dataclass(frozen=True)
class Normalized:
    """One webhook call, normalised: messages for ingest, statuses for the status step, and what was dropped."""

    inbound: tuple[InboundEnvelope, ...] = ()
    statuses: tuple[StatusEnvelope, ...] = ()
    ignored: tuple[str, ...] = field(default=())  # reasons, e.g. "unsupported update type", logged and counted
    rejected: tuple[str, ...] = field(default=())  # malformed items of a multi-item payload (the rest still go)


@dataclass
class WebhookPorts:
    """The adapters a webhook needs, built once per execution environment."""

    settings: SettingsLoader
    inbound: QueuePublisher
    status: QueuePublisher

    def deliver(self, normalized: Normalized, *, channel: str) -> None:
        """Enqueue everything; raises RetryableError (→ 5xx, the provider retries) if any enqueue fails."""
        if normalized.inbound:
            self.inbound.publish(normalized.inbound)
        if normalized.statuses:
            self.status.publish(normalized.statuses)
        counts = {
            "MessagesReceived": len(normalized.inbound),
            "StatusesReceived": len(normalized.statuses),
            "WebhookItemsIgnored": len(normalized.ignored),
            "WebhookItemsRejected": len(normalized.rejected),
        }
        for name, value in counts.items():
            if value:
                metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        logger.info(
            "webhook delivered",
            extra={
                "channel": channel,
                **counts,
                "ignored": list(normalized.ignored),
                "rejected": list(normalized.rejected),
            },
        )


def webhook_ports(environ: Mapping[str, str] | None = None) -> WebhookPorts:
    """Wire the real adapters from the function's environment (template.yaml sets these variables)."""
    env = os.environ if environ is None else environ
    bucket = env.get("PAYLOAD_BUCKET_NAME")
    return WebhookPorts(
        settings=SettingsLoader(env),
        inbound=QueuePublisher(env["INBOUND_QUEUE_URL"], bucket),
        status=QueuePublisher(env["STATUS_QUEUE_URL"], bucket),
    )
