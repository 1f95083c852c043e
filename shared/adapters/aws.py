"""AWS clients for every adapter: one botocore session per process, one client per service, explicit timeouts.

botocore, not boto3: ``boto3.client(...)`` returns this very botocore client, but importing boto3 also imports
s3transfer (through ``boto3.compat``), about 30 ms of a webhook's cold start for code no function uses.
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.session
from botocore.config import Config

#: Webhooks answer providers that give up after 10-15 s, and SQS consumers have their own timeouts: a stuck call
#: must fail fast and be retried (standard mode: backoff with jitter, throttling retried) rather than hang.
_CONFIG = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})


@functools.cache
def _session() -> Any:
    return botocore.session.get_session()


@functools.cache
def client(service: str) -> Any:
    """The process's client for ``service`` (region and endpoint from the environment, as boto3 would)."""
    return _session().create_client(service, config=_CONFIG)
