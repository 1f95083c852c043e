"""Issue #4, Reliability, "Order": 1,000 messages for 50 customers go through the real webhooks of a running twin
while faults are injected into the functions' AWS calls. Afterwards every customer's timeline (read through the agent
API, page by page) holds each message exactly once, in the order the customer sent them. A poison message holds back
only its own message group. An opt-in test also waits the ~15 minutes it takes to reach InboundDlq.

How the faults reach the functions: the twin runs every function in a worker process of its own, so this process
cannot hook their clients. botocore imports the modules listed in ``BOTOCORE_EXPERIMENTAL__PLUGINS`` and calls
``initialize_client_plugin`` with each client a process creates. This module's stack gives its workers that variable
naming this module. The hook then registers event hooks on the clients of the functions listed in ``FAULTS`` and
leaves every other client alone. No Hilo code is patched. If botocore dropped the variable (it is experimental), the
test would fail on "no fault was injected"; it would not pass without faults.

The order is meaningful. Each customer's messages go out one after another, while 50 threads interleave the
customers. The provider timestamps (Meta ``timestamp``, Telegram ``date``, whole seconds) move forward with every
message and never run ahead of the clock. So a WhatsApp message that follows an SMS has a later instant than the SMS's
receipt time, which is what Twilio messages carry. FIFO groups are per channel, so a customer who mixes WhatsApp and
SMS has two groups that ingest may process in either order.
"""

from __future__ import annotations

import json
import math
import os
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ReadTimeoutError
from botocore.httpsession import URLLib3Session

from hilo.local import providers
from hilo.local.stack import LocalStack
from tests.conftest import ROOT, TEST_CONFIG, start_stack
from tests.helpers import HttpResult, http

CUSTOMERS = 50
MESSAGES = 1_000
PHONE_CUSTOMERS = 35  # WhatsApp (Meta) and SMS (Twilio) mixed on one number; the others write on Telegram
PAGE = 8  # timeline page size: 20 entries take 3 pages, so the cursor is exercised
IN_FLIGHT = 4  # concurrent webhook requests (the twin's HTTP server listens with a backlog of 5)
AGENT = {"authorization": f"Bearer {TEST_CONFIG['HILO_DEV_TOKEN']}"}

# ------------------------------------------------------------------------------------------ faults (worker side)

FAULT_LOG_ENV = "ORDER_TEST_FAULT_LOG"
FAULT_SEED_ENV = "ORDER_TEST_FAULT_SEED"
#: The request does not reach DynamoDB: a ThrottlingException answer. botocore retries it with its own backoff.
THROTTLED = "throttled"
#: The request reaches the service and takes effect, but its answer is lost (a read timeout). botocore sends it again.
#: A conditional write then meets its own earlier write.
ANSWER_LOST = "answer_lost"
#: Every attempt of the webhook's SendMessageBatch is enqueued and its answer is lost, so the webhook answers 5xx and
#: the provider delivers again. SQS FIFO deduplication must keep one copy.
ENQUEUED_THEN_TIMED_OUT = "enqueued_then_timed_out"
WEBHOOKS = ("WhatsappWebhookFunction", "TwilioWebhookFunction", "TelegramWebhookFunction")
#: (function logical id, service) -> {fault: share of that client's calls}. A fault other than
#: ENQUEUED_THEN_TIMED_OUT hits only a call's first attempt, so botocore's retry always gets through and no record
#: fails. An SQS redelivery takes InboundQueue's VisibilityTimeout (180 s), which is too slow for this test; see the
#: opt-in test below. Each fault costs botocore's backoff (about 0.5 s) on ingest's single poller, so these rates are
#: what a one-minute-or-so test can afford.
FAULTS: dict[tuple[str, str], dict[str, float]] = {
    ("IngestFunction", "dynamodb"): {THROTTLED: 0.01, ANSWER_LOST: 0.01},
    **{(function, "sqs"): {ENQUEUED_THEN_TIMED_OUT: 0.02} for function in WEBHOOKS},
}


def initialize_client_plugin(client: Any) -> None:
    """botocore's plugin entry point, called in the order stack's workers for every client they create."""
    log = os.environ.get(FAULT_LOG_ENV)
    function = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "").removeprefix("local/")  # set by the twin
    rates = FAULTS.get((function, client.meta.service_model.service_name))
    if log and rates:
        _FaultInjector(function, rates, Path(log)).attach(client)


class _FaultInjector:
    """Event hooks on one client: draw a fault for each call (before-call), apply it per attempt (before-send)."""

    def __init__(self, function: str, rates: dict[str, float], log: Path) -> None:
        self.function = function
        self.rates = rates
        self.log = log
        self.random = random.Random(f"{os.environ.get(FAULT_SEED_ENV)}:{function}:{os.getpid()}")
        self.http = URLLib3Session()
        self.lock = threading.Lock()

    def attach(self, client: Any) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        client.meta.events.register(f"before-call.{service}", self._draw)
        # First, ahead of any other before-send hook, so a throttled attempt never reaches the service.
        client.meta.events.register_first(f"before-send.{service}", self._inject)

    def _draw(self, context: dict[str, Any], **_: Any) -> None:
        with self.lock:
            draw = self.random.random()
        context["order_test_fault"] = None
        for fault, rate in self.rates.items():
            if draw < rate:
                context["order_test_fault"] = fault
                return
            draw -= rate

    def _inject(self, request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        fault = request.context.get("order_test_fault")
        if fault is None:
            return None
        if fault != ENQUEUED_THEN_TIMED_OUT:
            request.context["order_test_fault"] = None  # the first attempt only
        with self.lock, self.log.open("a", encoding="utf-8") as log:
            log.write(json.dumps({"function": self.function, "operation": event_name.rsplit(".", 1)[-1],
                                  "fault": fault}) + "\n")  # fmt: skip
        if fault == THROTTLED:
            body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "injected"})
            return AWSResponse(request.url, 400, {"x-amzn-ErrorType": "ThrottlingException"}, _Raw(body.encode()))
        self.http.send(request)  # it takes effect...
        raise ReadTimeoutError(endpoint_url=request.url)  # ...and its answer never arrives


class _Raw:
    """The part of urllib3's response that AWSResponse reads."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self._data


# ------------------------------------------------------------------------------------------ order checks


def count_inversions(ranks: Sequence[int]) -> int:
    """How many pairs are in the opposite order from the one they were sent in (0 = in send order)."""
    return sum(1 for i, earlier in enumerate(ranks) for later in ranks[i + 1 :] if earlier > later)


@dataclass(frozen=True)
class OrderReport:
    """A timeline compared with what was sent: everything once, in send order, and nothing else."""

    inversions: int
    duplicates: tuple[str, ...]
    lost: tuple[str, ...]
    unexpected: tuple[str, ...]

    @property
    def exact(self) -> bool:
        return not (self.inversions or self.duplicates or self.lost or self.unexpected)


def order_report(sent: Sequence[str], seen: Sequence[str]) -> OrderReport:
    """Compare provider message ids in send order with those on the timeline, oldest first."""
    rank = {provider_id: index for index, provider_id in enumerate(sent)}
    counts = Counter(seen)
    return OrderReport(
        inversions=count_inversions([rank[provider_id] for provider_id in seen if provider_id in rank]),
        duplicates=tuple(provider_id for provider_id, n in counts.items() if n > 1),
        lost=tuple(provider_id for provider_id in sent if provider_id not in counts),
        unexpected=tuple(provider_id for provider_id in counts if provider_id not in rank),
    )


def test_the_inversion_counter_sees_every_pair_out_of_order() -> None:
    assert count_inversions([0, 1, 2, 3]) == 0
    assert count_inversions([0, 2, 1, 3]) == 1
    assert count_inversions([3, 2, 1, 0]) == 6
    assert count_inversions([1, 2, 3, 0]) == 3


def test_the_order_report_catches_swaps_duplicates_losses_and_strangers() -> None:
    sent = ["a", "b", "c", "d"]
    assert order_report(sent, ["a", "b", "c", "d"]).exact
    assert order_report(sent, ["a", "c", "b", "d"]) == OrderReport(1, (), (), ())
    assert order_report(sent, ["a", "b", "b", "c", "d"]) == OrderReport(0, ("b",), (), ())
    assert order_report(sent, ["a", "b", "d"]) == OrderReport(0, (), ("c",), ())
    assert order_report(sent, ["a", "b", "c", "d", "x"]) == OrderReport(0, (), (), ("x",))
    assert not order_report(sent, ["d", "c", "b", "a"]).exact


# ------------------------------------------------------------------------------------------ the stack


class InboundWatch:
    """What IngestFunction's poller receives from InboundQueue and deletes, seen through hooks on its SQS client."""

    def __init__(self, sqs: Any) -> None:
        self.lock = threading.Lock()
        self.receive_counts: dict[str, int] = {}  # SQS message id -> highest ApproximateReceiveCount seen
        self.handles: dict[str, str] = {}  # receipt handle -> SQS message id
        self.acknowledged: set[str] = set()
        sqs.meta.events.register("after-call.sqs.ReceiveMessage", self._received)
        sqs.meta.events.register("before-parameter-build.sqs.DeleteMessageBatch", self._deleting)

    def _received(self, parsed: Any, **_: Any) -> None:
        with self.lock:
            for message in parsed.get("Messages", []) if isinstance(parsed, dict) else []:
                count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
                self.receive_counts[message["MessageId"]] = max(count, self.receive_counts.get(message["MessageId"], 0))
                self.handles[message["ReceiptHandle"]] = message["MessageId"]

    def _deleting(self, params: dict[str, Any], **_: Any) -> None:
        with self.lock:
            self.acknowledged.update(self.handles[entry["ReceiptHandle"]] for entry in params.get("Entries", []))

    def redelivered(self) -> dict[str, int]:
        with self.lock:
            return {message_id: n for message_id, n in self.receive_counts.items() if n > 1}


@dataclass
class OrderStack:
    stack: LocalStack
    fault_log: Path
    seed: str
    inbound: InboundWatch

    def faults(self) -> Counter[tuple[str, str, str]]:
        lines = self.fault_log.read_text(encoding="utf-8").splitlines()
        return Counter((f["function"], f["operation"], f["fault"]) for f in map(json.loads, lines))


@pytest.fixture(scope="module")
def order_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrderStack]:
    """template.yaml on a twin of its own, whose workers load the fault hooks of this module."""
    state = tmp_path_factory.mktemp("order")
    fault_log = state / "faults.jsonl"
    fault_log.touch()
    seed = os.environ.get(FAULT_SEED_ENV) or secrets.token_hex(4)
    python_path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    environ = {
        **TEST_CONFIG,
        "PYTHONPATH": python_path,
        "BOTOCORE_EXPERIMENTAL__PLUGINS": f"hilo_order_faults={__name__}",
        FAULT_LOG_ENV: str(fault_log),
        FAULT_SEED_ENV: seed,
    }
    stack = start_stack(ROOT / "template.yaml", "hiloorder", state, environ)
    try:
        poller = next(p for p in stack.pollers if p.mapping.function == "IngestFunction")
        yield OrderStack(stack, fault_log, seed, InboundWatch(poller.sqs))
    finally:
        stack.stop()


# ------------------------------------------------------------------------------------------ providers' side


class Provider:
    """Plays Meta, Twilio and Telegram: signed deliveries, sent again after a 5xx, as the providers do."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.gate = threading.Semaphore(IN_FLIGHT)
        self.lock = threading.Lock()
        self.server_errors = 0

    def deliver(self, path: str, body: bytes, headers: dict[str, str]) -> None:
        for _attempt in range(6):
            with self.gate:
                response = http("POST", f"{self.stack.api_url}{path}", body, headers)
            if response.status < 500:
                assert response.status == 200, (path, response.status, response.body[:300])
                return
            with self.lock:
                self.server_errors += 1
        raise AssertionError(f"{path} answered 5xx six times in a row")

    def whatsapp(self, wa_id: str, timestamp: int, text: str) -> str:
        wamid = "wamid." + secrets.token_hex(16)
        message = {"from": wa_id, "id": wamid, "timestamp": str(timestamp), "type": "text", "text": {"body": text}}
        value = {"messaging_product": "whatsapp",
                 "metadata": {"display_phone_number": "5716017000", "phone_number_id": "1122334455"},
                 "contacts": [{"profile": {"name": "Cliente"}, "wa_id": wa_id}], "messages": [message]}  # fmt: skip
        document = {"object": "whatsapp_business_account",
                    "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]}  # fmt: skip
        self.deliver("/webhooks/whatsapp", *providers.meta_json(document, TEST_CONFIG["HILO_META_APP_SECRET"]))
        return wamid

    def sms(self, phone: str, text: str) -> str:
        sid = "SM" + secrets.token_hex(16)
        url = f"{self.stack.api_url}/webhooks/twilio/messages"
        params = {"MessageSid": sid, "SmsMessageSid": sid, "SmsSid": sid, "AccountSid": "AC" + "0" * 32,
                  "From": phone, "To": "+5716017000", "Body": text, "NumMedia": "0", "NumSegments": "1",
                  "SmsStatus": "received", "ApiVersion": "2010-04-01"}  # fmt: skip
        self.deliver(
            "/webhooks/twilio/messages", *providers.twilio_form(url, params, TEST_CONFIG["HILO_TWILIO_AUTH_TOKEN"])
        )
        return sid

    def telegram(self, chat_id: int, message_id: int, date: int, text: str) -> str:
        user = {"id": chat_id, "is_bot": False, "first_name": "Cliente", "language_code": "es"}
        message = {"message_id": message_id, "from": user, "chat": {"id": chat_id, "type": "private"}, "date": date,
                   "text": text}  # fmt: skip
        update = {"update_id": secrets.randbelow(2**31), "message": message}
        self.deliver("/webhooks/telegram", *providers.telegram_json(update, TEST_CONFIG["HILO_TELEGRAM_SECRET_TOKEN"]))
        return f"{chat_id}:{message_id}"


@dataclass
class Customer:
    """One customer's side: what they sent, in order (provider message ids), and when the last one was sent."""

    index: int
    phone: str | None = None  # E.164; its WhatsApp id is the same digits without '+'
    chat_id: int | None = None  # Telegram
    sent: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    last: float = 0.0  # an instant not before the last message's occurred_at

    @property
    def lookup(self) -> str:
        return f"phone={quote(self.phone)}" if self.phone else f"identity=telegram:{self.chat_id}"

    def next_second(self) -> int:
        """A provider timestamp (whole seconds) after the previous message, and not ahead of the clock."""
        second = max(math.floor(time.time()), math.floor(self.last) + 1)
        time.sleep(max(0.0, second - time.time()))
        self.last = second
        return second

    def write(self, provider: Provider, text: str, channel: str) -> None:
        if channel == "telegram":
            assert self.chat_id is not None
            self.sent.append(provider.telegram(self.chat_id, len(self.sent) + 1, self.next_second(), text))
        elif channel == "whatsapp":
            assert self.phone is not None
            self.sent.append(provider.whatsapp(self.phone.removeprefix("+"), self.next_second(), text))
        else:  # Twilio sends no timestamp: occurred_at is the webhook's receipt time
            assert self.phone is not None
            while time.time() <= self.last:
                time.sleep(0.01)
            self.sent.append(provider.sms(self.phone, text))
            self.last = time.time()
        self.channels.append(channel)


def unique_phones(count: int) -> list[str]:
    numbers = random.sample(range(10**7), count)
    return [f"+57300{number:07d}" for number in numbers]


def run_threads(calls: Sequence[Callable[[], None]]) -> None:
    errors: list[BaseException] = []

    def run(call: Callable[[], None]) -> None:
        try:
            call()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


# ------------------------------------------------------------------------------------------ agent's side


def agent_get(stack: LocalStack, path: str) -> HttpResult:
    return http("GET", f"{stack.api_url}{path}", headers=AGENT)


def timeline(stack: LocalStack, customer: Customer) -> tuple[list[dict[str, Any]], int] | None:
    """The customer's whole timeline, oldest first, read page by page; None while the customer is unknown."""
    found = agent_get(stack, f"/v1/customers?{customer.lookup}")
    if found.status == 404:
        return None
    assert found.status == 200, found.body[:300]
    customer_id = found.json()["customer"]["id"]
    entries: list[dict[str, Any]] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = f"limit={PAGE}" + (f"&cursor={quote(cursor)}" if cursor else "")
        page = agent_get(stack, f"/v1/customers/{customer_id}/timeline?{query}")
        assert page.status == 200, page.body[:300]
        body = page.json()
        entries += body["entries"]
        pages += 1
        cursor = body.get("next_cursor")
        if not cursor:
            return entries[::-1], pages


def provider_ids(entries: Sequence[dict[str, Any]]) -> list[str]:
    return [entry["message"]["provider_message_id"] for entry in entries]


def poison(stack: LocalStack, group: str) -> str:
    """Put a body ingest can never parse (PermanentError) on InboundQueue, in ``group``; its SQS message id."""
    sent = stack.client("sqs").send_message(
        QueueUrl=stack.physical_id("InboundQueue"),
        MessageBody='{"schema_version": 1, "type": "message", "this is": "not an envelope"',
        MessageGroupId=group,
        MessageDeduplicationId="poison-" + secrets.token_hex(8),
    )
    return str(sent["MessageId"])


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.5)


# ------------------------------------------------------------------------------------------ the tests


@pytest.mark.stack
@pytest.mark.timeout(600)
def test_a_thousand_messages_from_fifty_customers_land_once_each_in_send_order(order_stack: OrderStack) -> None:
    stack, inbound = order_stack.stack, order_stack.inbound
    rng = random.Random(order_stack.seed)
    phones = unique_phones(PHONE_CUSTOMERS + 1)
    customers = [
        Customer(index, phone=phones[index])
        if index < PHONE_CUSTOMERS
        else Customer(index, chat_id=7_000_000_000 + rng.randrange(10**9))
        for index in range(CUSTOMERS)
    ]
    plans = {c.index: [rng.choice(("whatsapp", "sms")) if c.phone else "telegram" for _ in range(MESSAGES // CUSTOMERS)]
             for c in customers}  # fmt: skip
    provider = Provider(stack)
    started = time.monotonic()

    # Given a poison message at the head of one customer's SMS group, and that customer's next SMS behind it
    blocked = Customer(CUSTOMERS, phone=phones[-1])
    poison_id = poison(stack, f"sms:{blocked.phone}")
    blocked.write(provider, "¿Hola? ¿Me leen?", "sms")

    # When 50 customers each send 20 messages, one after another, all customers at once, while the functions' calls
    # are throttled, lose their answers or (webhooks) time out after enqueueing
    def send(customer: Customer) -> Callable[[], None]:
        def write_all() -> None:
            for n, channel in enumerate(plans[customer.index]):
                customer.write(provider, f"Mensaje {n + 1}", channel)

        return write_all

    run_threads([send(customer) for customer in customers])
    sent_in = time.monotonic() - started
    wait_until(
        lambda: len(inbound.acknowledged) >= MESSAGES, timeout=300, what=f"ingest to acknowledge {MESSAGES} records"
    )
    ingested_in = time.monotonic() - started

    # Then every customer's timeline holds each message once, in send order, in one conversation
    reports: dict[int, OrderReport] = {}
    cases: dict[int, int] = {}
    pages: list[int] = []
    deadline = time.monotonic() + 30  # a late record, if any, gets a little longer before it counts as lost

    def check(customer: Customer) -> Callable[[], None]:
        def read() -> None:
            while True:
                found = timeline(stack, customer)
                entries, read_pages = found if found is not None else ([], 0)
                report = order_report(customer.sent, provider_ids(entries))
                if not report.lost or time.monotonic() > deadline:
                    break
                time.sleep(1)
            reports[customer.index] = report
            cases[customer.index] = len({entry["conversation_id"] for entry in entries})
            pages.append(read_pages)

        return read

    for start in range(0, CUSTOMERS, IN_FLIGHT):
        run_threads([check(customer) for customer in customers[start : start + IN_FLIGHT]])
    read_in = time.monotonic() - started

    faults = order_stack.faults()
    summary = (
        f"seed {order_stack.seed}: sent in {sent_in:.1f} s, all acknowledged after {ingested_in:.1f} s, "
        f"{sum(pages)} timeline pages read by {read_in:.1f} s; faults {dict(faults)}; "
        f"provider re-deliveries after a 5xx {provider.server_errors}; SQS redeliveries {inbound.redelivered()}"
    )
    print(summary)
    wrong = {index: report for index, report in reports.items() if not report.exact}
    assert not wrong, f"{summary}\n" + "\n".join(f"customer {i}: {r}" for i, r in wrong.items())
    assert sum(len(c.sent) for c in customers) == MESSAGES
    assert set(cases.values()) == {1}, f"customers with several cases: { {i: n for i, n in cases.items() if n != 1} }"
    # And the faults really happened: on ingest's DynamoDB client (both kinds) and on the webhooks' enqueue
    assert {fault for (function, _op, fault) in faults if function == "IngestFunction"} == {THROTTLED, ANSWER_LOST}, (
        summary
    )
    assert any(fault == ENQUEUED_THEN_TIMED_OUT for (_fn, _op, fault) in faults), summary
    assert provider.server_errors > 0, summary
    # And no record failed: every injected fault was absorbed by a retry, none needed an SQS redelivery
    assert set(inbound.redelivered()) <= {poison_id}, summary

    # And the poison was received, failed and kept (not acknowledged); its group waits behind it (FIFO), so the
    # message sent after it is not ingested yet, while every other customer went on
    assert inbound.receive_counts.get(poison_id, 0) >= 1, "ingest never received the poison message"
    assert poison_id not in inbound.acknowledged
    assert timeline(stack, blocked) is None, "a message overtook the poison message of its own group"


@pytest.mark.stack
@pytest.mark.timeout(1800)
@pytest.mark.skipif(
    not os.environ.get("HILO_SLOW_TESTS"),
    reason="about 15 minutes (InboundQueue VisibilityTimeout 180 s x maxReceiveCount 5); set HILO_SLOW_TESTS=1",
)
def test_a_poison_message_reaches_the_dlq_after_max_receive_count_and_its_group_resumes(
    order_stack: OrderStack,
) -> None:
    stack, inbound = order_stack.stack, order_stack.inbound
    sqs, dlq = stack.client("sqs"), stack.physical_id("InboundDlq")
    provider = Provider(stack)
    blocked_phone, other_phone = unique_phones(2)
    blocked, other = Customer(0, phone=blocked_phone), Customer(1, phone=other_phone)
    # Given a poison message that ingest has received once, and two SMS of the same customer sent after that
    poison_id = poison(stack, f"sms:{blocked.phone}")
    started = time.monotonic()
    wait_until(lambda: inbound.receive_counts.get(poison_id), timeout=30, what="the first receive of the poison")
    for text in ("¿Hola?", "¿Siguen ahí?"):
        blocked.write(provider, text, "sms")

    # When the poison fails maxReceiveCount (5) times, while another customer writes every minute
    def parked() -> dict[str, Any] | None:
        messages = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                       AttributeNames=["All"]).get("Messages", [])  # fmt: skip
        return next((m for m in messages if m["MessageId"] == poison_id), None)

    def all_in(customer: Customer) -> bool:
        found = timeline(stack, customer)
        return found is not None and order_report(customer.sent, provider_ids(found[0])).exact

    last_write = -math.inf
    while (message := parked()) is None:
        assert time.monotonic() - started < 1500, "the poison message never reached InboundDlq"
        if time.monotonic() - last_write > 60:
            other.write(provider, f"Mensaje {len(other.sent) + 1}", "sms")
            last_write = time.monotonic()
            # Then the other customer's message goes through while the poison waits for its next attempt
            wait_until(lambda: all_in(other), timeout=30, what="another customer's message during the retries")
        time.sleep(2)
    parked_after = time.monotonic() - started

    # Then the poison is in InboundDlq, intact, after ingest received it maxReceiveCount times
    assert inbound.receive_counts[poison_id] == 5
    assert poison_id not in inbound.acknowledged
    assert message["Body"].endswith('"not an envelope"')
    assert message["Attributes"]["MessageGroupId"] == f"sms:{blocked.phone}"
    # And the blocked customer's messages follow once the poison is parked, once each and in order
    wait_until(lambda: all_in(blocked), timeout=60, what="the blocked group to resume")
    assert len(other.sent) >= 10
    receives = inbound.receive_counts[poison_id]
    print(
        f"poison parked in InboundDlq after {parked_after:.0f} s, ingest received it {receives} times; "
        f"{len(other.sent)} messages of another customer went through meanwhile; the blocked group resumed"
    )
