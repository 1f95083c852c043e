"""Provider clients that send outbound messages: one ``ProviderClient`` (``shared.outbound.delivery``) per provider.

``client_for(provider, settings)`` (``clients``) builds one and imports only its module, so a Telegram sender never
imports the SES code (or botocore). Every HTTP client goes through ``http.HttpClient`` (stdlib ``urllib``, explicit
timeouts, bounded retries); see docs/outbound.md, "Provider clients". Importing this package imports nothing else.
"""

from __future__ import annotations

from shared.lazy import lazy_getattr

__all__ = ["NoSender", "SenderNotConfigured", "client_for"]

_SUBMODULE = {
    "client_for": "shared.adapters.senders.clients",
    "NoSender": "shared.adapters.senders.clients",
    "SenderNotConfigured": "shared.adapters.senders.base",
}

__getattr__ = lazy_getattr(__name__, globals(), _SUBMODULE)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
