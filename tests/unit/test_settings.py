"""Configuration: the fixed HILO_* names, environment over secret over defaults, secrets never printed."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.settings import CONFIG_KEYS, settings_from


def test_environment_wins_over_the_secret_and_defaults_fill_the_rest() -> None:
    settings = settings_from(
        {"HILO_DEFAULT_REGION": "mx", "HILO_PUBLIC_URL": "https://hilo.example/", "PATH": "/bin"},
        {"HILO_DEFAULT_REGION": "AR", "HILO_TWILIO_AUTH_TOKEN": "tok"},
    )
    assert settings.default_region == "MX"
    assert settings.public_url == "https://hilo.example"
    assert settings.twilio_auth_token is not None
    assert settings.twilio_auth_token.get_secret_value() == "tok"
    assert settings.meta_graph_url == "https://graph.facebook.com"


def test_secrets_never_appear_when_printed_or_dumped() -> None:
    settings = settings_from({"HILO_META_APP_SECRET": "s3cr3t", "HILO_DEV_TOKEN": "dev"})
    assert "s3cr3t" not in repr(settings)
    assert "s3cr3t" not in settings.model_dump_json()


def test_the_dev_token_only_counts_in_local_mode() -> None:
    assert settings_from({"HILO_DEV_TOKEN": "dev"}).accepts_dev_token is False
    assert settings_from({"HILO_DEV_TOKEN": "dev", "HILO_LOCAL_MODE": "true"}).accepts_dev_token is True


def test_empty_values_count_as_unset() -> None:
    assert settings_from({"HILO_DEFAULT_REGION": ""}).default_region == "CO"


@pytest.mark.parametrize(
    ("key", "value"),
    [("HILO_DEFAULT_REGION", "Colombia"), ("HILO_TWILIO_API_URL", "ftp://x"), ("HILO_AUTO_MERGE", "always")],
)
def test_invalid_values_are_refused_naming_the_setting(key: str, value: str) -> None:
    with pytest.raises(ValidationError, match=key):
        settings_from({key: value})


def test_the_contract_names_are_all_known() -> None:
    assert set(CONFIG_KEYS) == {
        "HILO_TWILIO_AUTH_TOKEN", "HILO_META_APP_SECRET", "HILO_META_VERIFY_TOKEN", "HILO_TELEGRAM_SECRET_TOKEN",
        "HILO_SENDGRID_USER", "HILO_SENDGRID_PASSWORD", "HILO_PUBLIC_URL", "HILO_DEV_TOKEN", "HILO_DEFAULT_REGION",
        "HILO_TWILIO_API_URL", "HILO_META_GRAPH_URL", "HILO_TELEGRAM_API_URL", "HILO_SENDGRID_API_URL",
        "HILO_REOPEN_WINDOW_HOURS", "HILO_AUTO_MERGE",
        # sending (issue #5)
        "HILO_TWILIO_ACCOUNT_SID", "HILO_TWILIO_SMS_FROM", "HILO_TWILIO_WHATSAPP_FROM", "HILO_TWILIO_RCS_FROM",
        "HILO_WHATSAPP_PROVIDER", "HILO_META_ACCESS_TOKEN", "HILO_WHATSAPP_PHONE_NUMBER_ID",
        "HILO_META_PAGE_ACCESS_TOKEN", "HILO_META_GRAPH_VERSION", "HILO_TELEGRAM_BOT_TOKEN", "HILO_EMAIL_FROM",
        "HILO_SES_CONFIGURATION_SET",
        # workflows (issue #6)
        "HILO_WEBHOOK_SECRET",
    }  # fmt: skip
