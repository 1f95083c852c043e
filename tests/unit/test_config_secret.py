"""Settings come from the environment over the configuration secret, cached and refreshed (moto)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from shared.adapters.config_secret import SettingsLoader
from shared.errors import PermanentError, RetryableError


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def secretsmanager() -> Iterator[Any]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def reads_of(client: Any) -> list[str]:
    calls: list[str] = []
    client.meta.events.register("before-call.secrets-manager.GetSecretValue", lambda **_: calls.append("read"))
    return calls


def test_settings_come_from_the_secret_and_the_environment_wins(secretsmanager: Any) -> None:
    # Given a secret and an environment that overrides one key
    arn = secretsmanager.create_secret(
        Name="cfg", SecretString=json.dumps({"HILO_TWILIO_AUTH_TOKEN": "from-secret", "HILO_DEFAULT_REGION": "AR"})
    )["ARN"]
    loader = SettingsLoader({"HILO_SECRET_ARN": arn, "HILO_DEFAULT_REGION": "VE"}, secretsmanager)
    # When
    settings = loader.get()
    # Then
    assert settings.twilio_auth_token is not None
    assert settings.twilio_auth_token.get_secret_value() == "from-secret"
    assert settings.default_region == "VE"


def test_the_secret_is_read_once_per_refresh_period(secretsmanager: Any) -> None:
    arn = secretsmanager.create_secret(Name="cfg", SecretString=json.dumps({"HILO_DEFAULT_REGION": "MX"}))["ARN"]
    clock, reads = Clock(), reads_of(secretsmanager)
    loader = SettingsLoader({"HILO_SECRET_ARN": arn}, secretsmanager, max_age_s=300, monotonic=clock)
    loader.get()
    loader.get()
    assert len(reads) == 1
    # When the secret is rotated and the refresh period passes
    secretsmanager.put_secret_value(SecretId=arn, SecretString=json.dumps({"HILO_DEFAULT_REGION": "CL"}))
    clock.now = 301
    # Then the new value is served
    assert loader.get().default_region == "CL"
    assert len(reads) == 2


def test_a_failed_refresh_keeps_serving_the_previous_copy(secretsmanager: Any) -> None:
    arn = secretsmanager.create_secret(Name="cfg", SecretString=json.dumps({"HILO_DEFAULT_REGION": "MX"}))["ARN"]
    clock = Clock()
    loader = SettingsLoader({"HILO_SECRET_ARN": arn}, secretsmanager, max_age_s=300, monotonic=clock)
    assert loader.get().default_region == "MX"
    secretsmanager.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
    clock.now = 1000
    assert loader.get().default_region == "MX"


def test_an_unreadable_secret_with_no_copy_is_retryable(secretsmanager: Any) -> None:
    loader = SettingsLoader(
        {"HILO_SECRET_ARN": "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope"}, secretsmanager
    )
    with pytest.raises(RetryableError, match="could not be read"):
        loader.get()


@pytest.mark.parametrize("value", ["not json", "[1, 2]"])
def test_a_secret_that_is_not_a_json_object_is_a_permanent_error(secretsmanager: Any, value: str) -> None:
    arn = secretsmanager.create_secret(Name="cfg", SecretString=value)["ARN"]
    with pytest.raises(PermanentError, match="not a JSON object"):
        SettingsLoader({"HILO_SECRET_ARN": arn}, secretsmanager).get()


def test_an_invalid_value_names_the_setting_but_never_echoes_the_value(secretsmanager: Any) -> None:
    secret = {"HILO_TWILIO_API_URL": "ftp://user:hunter2@twilio.example"}
    arn = secretsmanager.create_secret(Name="cfg", SecretString=json.dumps(secret))["ARN"]
    with pytest.raises(PermanentError) as caught:
        SettingsLoader({"HILO_SECRET_ARN": arn}, secretsmanager).get()
    assert "HILO_TWILIO_API_URL" in caught.value.message
    assert "hunter2" not in caught.value.message


def test_without_a_secret_the_environment_alone_is_used() -> None:
    assert SettingsLoader({"HILO_DEFAULT_REGION": "PE"}).get().default_region == "PE"
