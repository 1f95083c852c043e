"""Picking a provider's client: the right class, clear configuration errors, and nothing imported that is not used."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from shared.adapters.senders import NoSender, SenderNotConfigured, client_for
from shared.adapters.senders.meta import MetaClient
from shared.adapters.senders.ses import SesEmailClient
from shared.adapters.senders.telegram import TelegramClient
from shared.adapters.senders.twilio import TwilioClient
from shared.models.common import Provider
from shared.settings import Settings, settings_from

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("provider", "kind"),
    [
        (Provider.TWILIO, TwilioClient),
        (Provider.META, MetaClient),
        ("telegram", TelegramClient),
        (Provider.SES, SesEmailClient),
    ],
)
def test_each_provider_has_its_client(settings: Settings, provider: Provider | str, kind: type) -> None:
    assert isinstance(client_for(provider, settings), kind)


@pytest.mark.parametrize("provider", [Provider.SENDGRID, Provider.HILO, "fax"])
def test_a_provider_hilo_does_not_send_through_is_a_clear_permanent_error(settings: Settings, provider: str) -> None:
    with pytest.raises(NoSender, match=f"does not send messages through {provider}"):
        client_for(provider, settings)


def test_missing_settings_are_named_never_their_values() -> None:
    settings = settings_from({"HILO_TWILIO_AUTH_TOKEN": "tok-very-secret"})
    with pytest.raises(SenderNotConfigured) as error:
        client_for(Provider.TWILIO, settings)
    assert error.value.settings == ("HILO_TWILIO_ACCOUNT_SID",)
    assert str(error.value) == "Sending through Twilio is not configured: set HILO_TWILIO_ACCOUNT_SID."
    with pytest.raises(SenderNotConfigured, match="set HILO_TELEGRAM_BOT_TOKEN"):
        client_for(Provider.TELEGRAM, settings)


def test_a_telegram_sender_imports_neither_the_other_clients_nor_botocore() -> None:
    # A fresh interpreter: what a Telegram sender function pays for at cold start.
    script = textwrap.dedent(
        """
        import sys
        import shared.adapters.senders as senders
        assert "shared.adapters.senders.clients" not in sys.modules, "the package imports nothing by itself"
        from shared.settings import settings_from
        senders.client_for("telegram", settings_from({"HILO_TELEGRAM_BOT_TOKEN": "1:x"}))
        loaded = {name for name in sys.modules if name.startswith(("shared.adapters.senders.", "botocore"))}
        print(sorted(loaded))
        others = {"shared.adapters.senders.ses", "shared.adapters.senders.meta", "shared.adapters.senders.twilio"}
        assert not others & loaded, others & loaded
        # Powertools imports the bare botocore package (a few attributes); the SDK itself must not load.
        assert not {"botocore.session", "botocore.client"} & loaded
        """
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
