"""Loads the process's Settings: the environment over the configuration secret, re-read every few minutes."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from shared.adapters import aws
from shared.errors import PermanentError, RetryableError
from shared.observability import logger
from shared.settings import SECRET_ARN_ENV, Settings, settings_from

DEFAULT_MAX_AGE_S = 300.0


class SettingsLoader:
    """Caches Settings per execution environment, so a warm function pays one Secrets Manager read per refresh.

    A rotated provider secret reaches every function within ``max_age_s``. When a refresh fails but an older
    copy exists, the older copy keeps serving (logged): a Secrets Manager hiccup must not reject every webhook.
    """

    def __init__(
        self,
        environ: Mapping[str, str] | None = None,
        client: Any | None = None,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._client = client
        self._max_age_s = max_age_s
        self._monotonic = monotonic
        self._cached: tuple[float, Settings] | None = None

    def get(self) -> Settings:
        """Current settings.

        Raises
        ------
        RetryableError
            The secret could not be read and no earlier copy exists.
        PermanentError
            The secret is not a JSON object, or a value in it is invalid.
        """
        now = self._monotonic()
        if self._cached and now - self._cached[0] < self._max_age_s:
            return self._cached[1]
        try:
            settings = settings_from(self._environ, self._read_secret())
        except RetryableError:
            if self._cached is None:
                raise
            logger.warning("configuration secret unreadable; serving the previous copy")
            return self._cached[1]
        except ValidationError as error:
            # Name the setting and the problem, never the value: it may be a secret.
            problems = "; ".join(
                f"{'.'.join(str(part) for part in item['loc'])}: {item['msg']}"
                for item in error.errors(include_input=False, include_url=False)
            )
            raise PermanentError(f"The configuration is invalid: {problems}") from error
        self._cached = (now, settings)
        return settings

    def _read_secret(self) -> dict[str, Any]:
        secret_id = self._environ.get(SECRET_ARN_ENV)
        if not secret_id:
            return {}
        if self._client is None:
            self._client = aws.client("secretsmanager")
        try:
            value = self._client.get_secret_value(SecretId=secret_id)["SecretString"]
        except (ClientError, BotoCoreError) as error:
            raise RetryableError("The configuration secret could not be read.") from error
        try:
            document = json.loads(value)
        except json.JSONDecodeError as error:
            raise PermanentError("The configuration secret is not a JSON object.") from error
        if not isinstance(document, dict):
            raise PermanentError("The configuration secret is not a JSON object.")
        return document
