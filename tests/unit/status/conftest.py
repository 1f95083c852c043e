"""The status tests run on the ingest tests' AWS account (moto, the table from template.yaml), provisioned once per
module: every test makes its own customers and provider ids, so they share it safely, and the clock and the queues
are reset before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from tests.unit.ingest.conftest import Aws, _provision
from tests.unit.ingest.support import T0
from tests.unit.status.support import drain


@pytest.fixture(scope="module")
def account() -> Iterator[Aws]:
    with mock_aws():
        yield _provision(None)


@pytest.fixture
def aws(account: Aws) -> Aws:
    account.clock.at = T0
    drain(account, account.queue_url)
    return account
