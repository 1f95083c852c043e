"""Fixtures that start local twins of SAM templates (real moto server, real HTTP, real worker processes)."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from hilo.local.stack import LocalStack, StackConfig, free_port
from tests.helpers import QueueCollector

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _no_real_aws() -> None:
    # Nothing in the suite may reach a real account, whatever the developer's shell has.
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        os.environ.pop(name, None)
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    )


def start_stack(template: Path, name: str, tmp: Path, environ: dict[str, str] | None = None) -> LocalStack:
    config = StackConfig(
        template_path=template,
        stack_name=name,
        port=free_port(),
        aws_port=free_port(),
        state_dir=tmp,
        environ={**os.environ, **(environ or {})},
        output=io.StringIO(),
        pretty_logs=False,
    )
    stack = LocalStack(config)
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    return stack


# Provider secrets the local stack is configured with; tests sign requests with these, as the providers would.
TEST_CONFIG = {
    "HILO_TWILIO_AUTH_TOKEN": "twilio-test-token",
    "HILO_META_APP_SECRET": "meta-app-secret",
    "HILO_META_VERIFY_TOKEN": "meta-verify-token",
    "HILO_TELEGRAM_SECRET_TOKEN": "telegram-secret_token-1",
    "HILO_SENDGRID_USER": "parse",
    "HILO_SENDGRID_PASSWORD": "sendgrid-parse-password-1",
    "HILO_DEFAULT_REGION": "MX",
    "HILO_DEV_TOKEN": "dev-token-for-tests",
}


@pytest.fixture(scope="session")
def hilo_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The real template.yaml running locally."""
    stack = start_stack(
        ROOT / "template.yaml",
        "hilotest",
        tmp_path_factory.mktemp("hilo"),
        TEST_CONFIG,
    )
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def queue_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A fixture template whose recording function exercises the twin's SQS semantics."""
    stack = start_stack(FIXTURES / "queue_stack" / "template.yaml", "queuetest", tmp_path_factory.mktemp("queues"))
    yield stack
    stack.stop()


@pytest.fixture(scope="session")
def inbound_queue(hilo_stack: LocalStack) -> QueueCollector:
    """Everything webhooks put on InboundQueue during the session, as IngestFunction's poller receives it.

    IngestFunction consumes the queue, so the collector must not drain it: it listens to the poller instead.
    """
    poller = next((p for p in hilo_stack.pollers if p.mapping.function == "IngestFunction"), None)
    return QueueCollector(
        hilo_stack.client("sqs"),
        hilo_stack.physical_id("InboundQueue"),
        consumer_sqs=poller.sqs if poller is not None else None,
    )


@pytest.fixture(scope="session")
def status_queue(hilo_stack: LocalStack) -> QueueCollector:
    """Everything webhooks put on StatusQueue during the session, as StatusFunction's poller receives it."""
    poller = next((p for p in hilo_stack.pollers if p.mapping.function == "StatusFunction"), None)
    return QueueCollector(
        hilo_stack.client("sqs"),
        hilo_stack.physical_id("StatusQueue"),
        consumer_sqs=poller.sqs if poller is not None else None,
    )
