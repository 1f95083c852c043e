"""The agent API's send use case on moto: answers an agent can act on, and no message left stranded."""

from __future__ import annotations

import secrets
from typing import Any

import pytest

from shared.adapters.outbound_store import OutboundStore
from shared.agent_writes import AgentRequest
from shared.errors import Conflict, NotFound, RetryableError, Unprocessable
from shared.models.outbound import OutboundCommand, SendJob
from shared.outbound.catalog import shipped_catalog
from shared.outbound.planning import Outbound
from shared.outbound.replies import AgentSends, SendBody
from tests.unit.ingest.conftest import Aws
from tests.unit.ingest.support import envelope, unique_phone
from tests.unit.outbound.test_planning import ALL


class FlakyJobs:
    """A send queue that is throttled ``failures`` times, then takes jobs."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.sent: list[SendJob] = []

    def send(self, job: SendJob) -> None:
        if self.failures:
            self.failures -= 1
            raise RetryableError("throttled")
        self.sent.append(job)


class Commands:
    def __init__(self) -> None:
        self.sent: list[OutboundCommand] = []

    def send(self, command: OutboundCommand) -> None:
        self.sent.append(command)


def sends(aws: Aws, jobs: FlakyJobs, queue: Commands) -> AgentSends:
    store = OutboundStore(aws.table, aws.dynamodb)
    planner = Outbound(store, jobs, timers=None, catalog=shipped_catalog(), providers=ALL, clock=aws.clock)  # type: ignore[arg-type]
    return AgentSends(store, planner, queue, aws.clock)


def conversation(aws: Aws, text: str = "Hola") -> str:
    return aws.ingest()(envelope(sender=unique_phone(), at=aws.clock(), text=text)).conversation_id


def request(key: str | None = None) -> AgentRequest:
    """An agent's request; each has its own request id (API Gateway's), the key only when the agent sends one."""
    return AgentRequest("agente-7", f"req-{secrets.token_hex(4)}", key)


def body(**fields: Any) -> SendBody:
    return SendBody.model_validate(fields)


def test_a_reply_is_queued_at_once_and_a_repeat_of_its_key_answers_the_same(aws: Aws) -> None:
    jobs = FlakyJobs()
    agent = sends(aws, jobs, Commands())
    conversation_id = conversation(aws)

    first = agent.reply(conversation_id, body(text="Ya va en camino"), request("k-1"))
    again = agent.reply(conversation_id, body(text="Ya va en camino"), request("k-1"))

    assert (first.status, first.body["status"], first.body["channel"]) == (202, "queued", "whatsapp")
    assert (again.status, again.body["message_id"]) == (200, first.body["message_id"])


def test_a_message_that_cannot_be_handed_on_goes_to_the_queue_not_nowhere(aws: Aws) -> None:
    jobs, queue = FlakyJobs(failures=1), Commands()
    agent = sends(aws, jobs, queue)

    answer = agent.reply(conversation(aws), body(text="Ya va en camino"), request())

    assert (answer.status, answer.body["reason"]) == (202, "pending")
    [command] = queue.sent
    assert command.message_id == answer.body["message_id"]


def test_answers_say_what_is_wrong(aws: Aws) -> None:
    agent = sends(aws, FlakyJobs(), Commands())
    conversation_id = conversation(aws)

    with pytest.raises(NotFound):
        agent.reply("conv_01KJQH0CC0FYMDEZSJ6W2NHD7Z", body(text="Hola"), request())
    with pytest.raises(Unprocessable, match=r"vars\.starts_at"):
        agent.reply(conversation_id, body(template_id="cita_confirmada", vars={"store": "Unicentro"}), request())
    with pytest.raises(Conflict, match=r"opt-in") as refused:
        agent.reply(conversation_id, body(text="¡Promo!", purpose="marketing", channel="whatsapp"), request())
    assert refused.value.details[0]["reason"] == "no_marketing_opt_in"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({}, "either text"),
        ({"text": "Hola", "template_id": "cita_confirmada"}, "either text"),
        ({"vars": {"a": 1}, "text": "Hola"}, "vars go with"),
        ({"text": "Hola", "buttons": [{"id": "1", "title": "Un título demasiado largo para WhatsApp"}]}, "20"),
    ],
)
def test_a_body_that_breaks_the_rules_is_refused_naming_the_rule(fields: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        SendBody.model_validate(fields)
