"""Hilo's configuration: the fixed ``HILO_*`` names, read once per process.

The same names are environment variables locally and the keys of the one Secrets Manager secret in AWS.
Precedence: process environment, then the secret, then the defaults below. Secrets are ``SecretStr`` so they
never print, log or serialise in clear.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

LOCAL_MODE_ENV = "HILO_LOCAL_MODE"
SECRET_ARN_ENV = "HILO_SECRET_ARN"  # noqa: S105 - the name of a variable, not a secret


class Settings(BaseModel):
    """Every ``HILO_*`` setting. Field aliases are the environment/secret key names."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    twilio_auth_token: SecretStr | None = Field(None, alias="HILO_TWILIO_AUTH_TOKEN")
    meta_app_secret: SecretStr | None = Field(None, alias="HILO_META_APP_SECRET")
    meta_verify_token: SecretStr | None = Field(None, alias="HILO_META_VERIFY_TOKEN")
    telegram_secret_token: SecretStr | None = Field(None, alias="HILO_TELEGRAM_SECRET_TOKEN")
    sendgrid_user: str | None = Field(None, alias="HILO_SENDGRID_USER")
    sendgrid_password: SecretStr | None = Field(None, alias="HILO_SENDGRID_PASSWORD")
    public_url: str | None = Field(None, alias="HILO_PUBLIC_URL")
    dev_token: SecretStr | None = Field(None, alias="HILO_DEV_TOKEN")
    default_region: str = Field("CO", alias="HILO_DEFAULT_REGION", pattern=r"^[A-Z]{2}$")
    twilio_api_url: str = Field("https://api.twilio.com", alias="HILO_TWILIO_API_URL")
    meta_graph_url: str = Field("https://graph.facebook.com", alias="HILO_META_GRAPH_URL")
    telegram_api_url: str = Field("https://api.telegram.org", alias="HILO_TELEGRAM_API_URL")
    sendgrid_api_url: str = Field("https://api.sendgrid.com", alias="HILO_SENDGRID_API_URL")
    # Sending (issue #5). Credentials are SecretStr; addresses and ids are not secret.
    twilio_account_sid: str | None = Field(None, alias="HILO_TWILIO_ACCOUNT_SID", pattern=r"^AC[0-9a-fA-F]{32}$")
    #: Our SMS sender: an E.164 number or alphanumeric sender id (``From``), used when the customer wrote to no
    #: particular number. A Messaging Service SID (``MG…``) is accepted too.
    twilio_sms_from: str | None = Field(None, alias="HILO_TWILIO_SMS_FROM")
    #: Our WhatsApp number on Twilio (``+1415…``, sent as ``whatsapp:+1415…``); set it to send WhatsApp via Twilio.
    twilio_whatsapp_from: str | None = Field(None, alias="HILO_TWILIO_WHATSAPP_FROM")
    #: Our RCS agent on Twilio (``rcs:brand_agent`` or a Messaging Service SID).
    twilio_rcs_from: str | None = Field(None, alias="HILO_TWILIO_RCS_FROM")
    #: Who carries WhatsApp: Meta's Cloud API (``meta``) or Twilio (``twilio``).
    whatsapp_provider: Literal["meta", "twilio"] = Field("meta", alias="HILO_WHATSAPP_PROVIDER")
    #: A system-user access token with ``whatsapp_business_messaging`` (Cloud API).
    meta_access_token: SecretStr | None = Field(None, alias="HILO_META_ACCESS_TOKEN")
    whatsapp_phone_number_id: str | None = Field(None, alias="HILO_WHATSAPP_PHONE_NUMBER_ID", pattern=r"^[0-9]{1,32}$")
    #: The Page access token for Messenger and Instagram (Send API, ``/me/messages``).
    meta_page_access_token: SecretStr | None = Field(None, alias="HILO_META_PAGE_ACCESS_TOKEN")
    meta_graph_version: str = Field("v21.0", alias="HILO_META_GRAPH_VERSION", pattern=r"^v[0-9]{1,3}\.[0-9]$")
    telegram_bot_token: SecretStr | None = Field(None, alias="HILO_TELEGRAM_BOT_TOKEN")
    #: The verified SES identity e-mail leaves from: ``Tienda <ayuda@tienda.co>`` or ``ayuda@tienda.co``.
    email_from: str | None = Field(None, alias="HILO_EMAIL_FROM")
    ses_configuration_set: str | None = Field(None, alias="HILO_SES_CONFIGURATION_SET")
    #: Hours after a conversation's last message during which a new message, on any channel, continues it.
    reopen_window_hours: int = Field(72, alias="HILO_REOPEN_WINDOW_HOURS", ge=1, le=24 * 90)
    #: When a customer gives an identifier another profile holds, merge the two: for any strong identifier
    #: (``strong``), only for ones the provider verified (``verified``), or never, leaving a suggestion (``off``).
    auto_merge: Literal["strong", "verified", "off"] = Field("strong", alias="HILO_AUTO_MERGE")
    #: Signs the calls of workflows' ``notify`` webhooks (``X-Hilo-Signature``); unset, they go unsigned.
    webhook_secret: SecretStr | None = Field(None, alias="HILO_WEBHOOK_SECRET")
    local_mode: bool = Field(False, alias=LOCAL_MODE_ENV)

    @field_validator("public_url", "twilio_api_url", "meta_graph_url", "telegram_api_url", "sendgrid_api_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @field_validator("default_region", mode="before")
    @classmethod
    def _upper_region(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @property
    def accepts_dev_token(self) -> bool:
        """The dev token is a local convenience; in AWS it is ignored even if someone stores it."""
        return self.local_mode and self.dev_token is not None


CONFIG_KEYS: tuple[str, ...] = tuple(
    field.alias for field in Settings.model_fields.values() if field.alias and field.alias != LOCAL_MODE_ENV
)


def settings_from(environ: Mapping[str, str], secret: Mapping[str, Any] | None = None) -> Settings:
    """Merge the secret's values under the environment's and validate them.

    Empty strings count as unset, so a template default of "" never hides a real value.
    """
    merged: dict[str, Any] = {}
    for source in (secret or {}, environ):
        merged.update({key: value for key, value in source.items() if key.startswith("HILO_") and value != ""})
    return Settings.model_validate(merged)
