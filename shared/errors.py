"""The error tree every function speaks.

Handlers never match error strings: an HTTP function maps these classes to status codes in one place
(``shared.http``), and a queue consumer decides between "retry" and "park" from the branch alone.
"""

from __future__ import annotations

from typing import Any


class HiloError(Exception):
    """Base of every error Hilo raises on purpose."""

    code = "error"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class DomainError(HiloError):
    """A rule of the domain was broken."""


class PermanentError(DomainError):
    """Retrying cannot help (poison input): log it, count it, acknowledge or park it."""


class RetryableError(DomainError):
    """Transient failure (throttling, a provider's 5xx): fail the record so SQS redelivers it."""

    code = "temporarily_unavailable"


class InvalidInput(PermanentError):
    """The caller sent something we cannot accept as it is."""

    code = "invalid_input"


class PayloadTooLarge(InvalidInput):
    """The body is larger than this endpoint accepts."""

    code = "payload_too_large"


class UnsupportedMediaType(InvalidInput):
    """The body is not in a format this endpoint reads."""

    code = "unsupported_media_type"


class Unauthorized(PermanentError):
    """Missing or wrong credentials or signature; ``challenge`` is the ``WWW-Authenticate`` value, if any."""

    code = "unauthorized"

    def __init__(
        self, message: str, *, details: list[dict[str, Any]] | None = None, challenge: str | None = None
    ) -> None:
        super().__init__(message, details=details)
        self.challenge = challenge


class Forbidden(PermanentError):
    """Valid credentials that may not do this."""

    code = "forbidden"


class NotFound(PermanentError):
    """The thing asked for does not exist."""

    code = "not_found"


class MethodNotAllowed(PermanentError):
    """The path exists, the method does not."""

    code = "method_not_allowed"

    def __init__(self, message: str, *, allowed: list[str]) -> None:
        super().__init__(message, details=[{"allowed_methods": allowed}])
        self.allowed = allowed


class Conflict(PermanentError):
    """The request clashes with the current state (optimistic lock, duplicate)."""

    code = "conflict"


class Unprocessable(InvalidInput):
    """Well-formed, but semantically invalid (an identifier that fails its check digit)."""

    code = "unprocessable"


class NotImplementedYet(PermanentError):
    """Part of Hilo's contract, not built yet."""

    code = "not_implemented"
