"""One fake provider server for the whole module, its records and scripts cleared before each test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hilo.local.fake_providers import FakeProviders
from shared.settings import Settings, settings_from
from tests.unit.senders.support import Sleeps


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeProviders]:
    with FakeProviders() as fake:
        yield fake


@pytest.fixture
def fake(fake_server: FakeProviders) -> FakeProviders:
    fake_server.clear()
    return fake_server


@pytest.fixture
def settings(fake: FakeProviders) -> Settings:
    """Hilo's settings pointing at the fake, with the credentials it accepts and a public URL for callbacks."""
    return settings_from({**fake.environ(), "HILO_PUBLIC_URL": "https://hilo.example.co"})


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()
