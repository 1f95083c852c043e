"""The one place that picks a provider's client, importing only that client's module.

There is one sender function per provider (its credentials, rate limits and outages stay its own), so
``client_for(provider, settings)`` returns the client for every channel the provider carries: Twilio's for SMS,
WhatsApp and RCS, Meta's for WhatsApp, Messenger and Instagram. The Telegram sender never imports the SES code or
botocore; the SES sender never imports the Graph payloads.
"""

from __future__ import annotations

import importlib
from typing import Final

from shared.errors import PermanentError
from shared.models.common import Provider
from shared.outbound.delivery import ProviderClient
from shared.settings import Settings

#: Provider → (module, class); each class has ``from_settings(settings)``.
CLIENTS: Final = {
    Provider.TWILIO: ("shared.adapters.senders.twilio", "TwilioClient"),
    Provider.META: ("shared.adapters.senders.meta", "MetaClient"),
    Provider.TELEGRAM: ("shared.adapters.senders.telegram", "TelegramClient"),
    Provider.SES: ("shared.adapters.senders.ses", "SesEmailClient"),
}


class NoSender(PermanentError):
    """Hilo has no client for this provider (SendGrid takes inbound mail only; Hilo itself delivers web chat)."""

    code = "no_sender"


def client_for(provider: Provider | str, settings: Settings) -> ProviderClient:
    """The client that sends through ``provider``, configured from ``settings``.

    Parameters
    ----------
    provider : Provider or str
        ``twilio``, ``meta``, ``telegram`` or ``ses``.
    settings : Settings
        Hilo's settings; each client reads the ``HILO_*`` names it needs.

    Returns
    -------
    ProviderClient
        Its ``send(job)`` takes a job on any channel the provider carries.

    Raises
    ------
    SenderNotConfigured
        A setting every send needs is missing (a ``RetryableError`` naming the settings, never their values).
        Settings of one channel only (a sender number, Meta's Page token) are checked when a job needs them.
    NoSender
        Hilo has no sending client for ``provider``.
    """
    try:
        route = CLIENTS.get(Provider(provider))
    except ValueError:
        route = None
    if route is None:
        raise NoSender(f"Hilo does not send messages through {provider!s}.")
    module, name = route
    client: ProviderClient = getattr(importlib.import_module(module), name).from_settings(settings)
    return client
