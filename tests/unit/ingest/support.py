"""Builders shared by the ingest tests: envelopes of every inbound kind, the table as template.yaml declares it,
in-memory fakes of the ports, and a botocore hook that counts or breaks requests."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.session
from botocore.awsrequest import AWSResponse
from botocore.config import Config

from hilo.local import moto_fidelity
from hilo.local.template import load_template
from shared.errors import RetryableError
from shared.ingest.ports import (
    AlreadyRecorded,
    Continued,
    ContinueOutcome,
    HeadChanged,
    HeadState,
    HeadTouch,
    KnownIdentity,
    MergeSuggestion,
    NewCustomer,
    NotContinued,
    Opened,
    OpenOutcome,
    TimelineRecord,
)
from shared.ingest.rules import CONTINUABLE, name_key
from shared.models.conversation import Conversation
from shared.models.customer import AppliedConsents, Consent, CustomerProfile
from shared.models.events import DomainEvent
from shared.models.identity import Identity, IdentityKind
from shared.models.inbound import CallDetails, InboundEnvelope, InboundKind
from shared.models.message import Address, MediaPart, ReactionPart, TextPart
from shared.outbound.consent import merge_consents

ROOT = Path(__file__).resolve().parents[3]
T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
REGION = "us-east-1"


def unique_phone() -> str:
    return f"+57300{secrets.randbelow(10**7):07d}"


def envelope(
    kind: InboundKind = InboundKind.MESSAGE,
    *,
    channel: str = "whatsapp",
    provider: str = "meta",
    sender: str | None = None,
    at: datetime = T0,
    provider_message_id: str | None = None,
    text: str = "Hola, el televisor llegó roto",
    name: str | None = "Mateo",
    **fields: Any,
) -> InboundEnvelope:
    """A valid envelope; the sender is a fresh phone unless given. The default name is one word, so the many
    customers tests create do not share a full name (which would make merge suggestions, ``rules.name_key``)."""
    values: dict[str, Any] = {
        "correlation_id": "req-" + secrets.token_hex(4),
        "kind": kind,
        "channel": channel,
        "provider": provider,
        "provider_message_id": provider_message_id or f"pm-{secrets.token_hex(8)}",
        "occurred_at": at,
        "received_at": at + timedelta(seconds=1),
        "sender": Address(value=sender or unique_phone(), name=name),
        "recipient": Address(value="+5716000000"),
    }
    if kind in (InboundKind.CALL, InboundKind.CALL_ENDED):
        values["call"] = CallDetails(status="completed" if kind == InboundKind.CALL_ENDED else "ringing")
    else:
        values["parts"] = (TextPart(text=text),)
    values.update(fields)
    return InboundEnvelope.model_validate(values)


def every_kind(sender: str | None = None, at: datetime = T0) -> list[InboundEnvelope]:
    """One envelope of each inbound type Hilo ingests, on its usual channel, all from distinct senders."""
    chat = str(7_000_000_000 + secrets.randbelow(10**9))
    psid = str(10**15 + secrets.randbelow(10**15))
    return [
        envelope(sender=sender, at=at),  # WhatsApp (Meta) text
        envelope(channel="sms", provider="twilio", sender=sender, at=at),
        envelope(channel="whatsapp", provider="twilio", sender=sender, at=at,
                 parts=(MediaPart(url="https://api.twilio.com/m/1", mime_type="image/jpeg", caption="foto"),)),
        envelope(channel="rcs", provider="twilio", sender=sender, at=at),
        envelope(InboundKind.CALL, channel="voice", provider="twilio", sender=sender, at=at),
        envelope(InboundKind.CALL_ENDED, channel="voice", provider="twilio", sender=sender, at=at),
        envelope(channel="email", provider="ses", sender=f"mateo.{secrets.token_hex(3)}@Example.com", at=at,
                 subject="Factura perdida"),
        envelope(channel="telegram", provider="telegram", sender=chat, at=at),
        envelope(InboundKind.MESSAGE_EDITED, channel="telegram", provider="telegram", sender=chat, at=at),
        envelope(channel="messenger", provider="meta", sender=psid, at=at),
        envelope(InboundKind.ECHO, channel="instagram", provider="meta", sender=psid, at=at),
        envelope(channel="instagram", provider="meta", sender=psid, at=at,
                 parts=(ReactionPart(emoji="👍", target_message_id="mid.1"),)),
        envelope(channel="webchat", provider="hilo", sender=f"chs_{secrets.token_hex(8)}", at=at),
    ]  # fmt: skip


# ------------------------------------------------------------------------------------------ AWS


def profile_table_definition(name: str = "ProfileTable") -> dict[str, Any]:
    """CreateTable arguments read from template.yaml, so the tests use the keys and indexes the stack declares."""
    props = load_template(ROOT / "template.yaml")["Resources"]["ProfileTable"]["Properties"]
    return {
        "TableName": name,
        "BillingMode": props["BillingMode"],
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "GlobalSecondaryIndexes": props["GlobalSecondaryIndexes"],
    }


def aws_client(service: str, endpoint_url: str | None = None) -> Any:
    """A botocore client like ``shared.adapters.aws.client`` makes (same retry mode), optionally on a moto server."""
    session = botocore.session.get_session()
    return session.create_client(
        service,
        region_name=REGION,
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "max_attempts": 3}, max_pool_connections=50),
    )


@dataclass
class Faults:
    """A botocore hook on a real client: counts requests per operation and breaks the ones it is told to.

    ``fail_on`` holds request numbers (1-based, counted over the operations matched) that fail with
    ``error_code`` *before* they reach the service; ``throttle_on`` holds request numbers whose HTTP attempts
    are answered with a throttling error, ``throttles`` times in a row (botocore's retries then run for real).
    """

    fail_on: set[int] = field(default_factory=set)
    error_code: str = "InternalServerError"
    throttle_on: set[int] = field(default_factory=set)
    throttles: int = 1
    operations: list[str] = field(default_factory=list)
    consumed: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _sends: dict[int, int] = field(default_factory=dict)

    def attach(self, client: Any, service: str = "dynamodb") -> Faults:
        client.meta.events.register(f"before-call.{service}.*", self._before_call)
        # First, ahead of moto's own before-send hook, so a throttled attempt never reaches the service.
        client.meta.events.register_first(f"before-send.{service}.*", self._before_send)
        client.meta.events.register(f"after-call.{service}.*", self._after_call)
        return self

    def _before_call(self, model: Any, context: dict[str, Any], **_: Any) -> Any:
        with self._lock:
            self.operations.append(model.name)
            number = len(self.operations)
        context["hilo_request_number"] = number
        if number in self.fail_on:
            error = {"Error": {"Code": self.error_code, "Message": "injected"},
                     "ResponseMetadata": {"HTTPStatusCode": 500}}  # fmt: skip
            return AWSResponse("https://injected", 500, {}, None), error
        return None

    def _before_send(self, request: Any, **_: Any) -> Any:
        number = request.context.get("hilo_request_number")
        if number not in self.throttle_on:
            return None
        with self._lock:
            sent = self._sends.get(number, 0)
            self._sends[number] = sent + 1
        if sent >= self.throttles:
            return None
        body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException", "message": "slow down"})
        return AWSResponse(request.url, 400, {"x-amzn-ErrorType": "ThrottlingException"}, _Raw(body.encode()))

    def _after_call(self, parsed: Any, **_: Any) -> None:
        capacity = parsed.get("ConsumedCapacity") if isinstance(parsed, dict) else None
        for item in capacity if isinstance(capacity, list) else [capacity] if capacity else []:
            with self._lock:
                self.consumed.append(float(item.get("CapacityUnits", 0)))

    def count(self, operation: str | None = None) -> int:
        return len(self.operations) if operation is None else self.operations.count(operation)


class _Raw:
    """The bit of urllib3's response that AWSResponse reads."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self._data


# ------------------------------------------------------------------------------------------ fakes


class FakeRepository:
    """In-memory ``IngestRepository`` that follows the same rules as the DynamoDB one, under a lock."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.pointers: dict[tuple[str, str], KnownIdentity] = {}
        self.profiles: dict[str, CustomerProfile] = {}
        self.identities: dict[str, dict[tuple[str, str], Identity]] = {}
        self.conversations: dict[str, Conversation] = {}
        self.heads: dict[str, HeadState] = {}
        self.timeline: dict[str, dict[str, TimelineRecord]] = {}
        self.suggestions: dict[tuple[str, str], MergeSuggestion] = {}
        self.stale_reads = 0  # how many eventually consistent pointer reads still miss a fresh pointer
        self.stale_lookups: set[str] = set()  # lookup values whose next eventually consistent read misses

    def find_customer(self, lookup_kind: IdentityKind, lookup_value: str, *, consistent: bool = False) -> Any:
        with self.lock:
            if not consistent and self.stale_reads > 0:
                self.stale_reads -= 1
                return None
            if not consistent and lookup_value in self.stale_lookups:
                self.stale_lookups.discard(lookup_value)
                return None
            return self.pointers.get((str(lookup_kind), lookup_value))

    def create_customer(self, new: NewCustomer) -> bool:
        key = (str(new.identity.lookup_kind), new.identity.lookup_value)
        with self.lock:
            if key in self.pointers:
                return False
            customer = new.profile.id
            self.pointers[key] = KnownIdentity(customer, frozenset({new.identity.kind}))
            self.profiles[customer] = new.profile
            self.identities[customer] = {(str(new.identity.kind), new.identity.lookup_value): new.identity}
            self.conversations[new.conversation.id] = new.conversation
            self.heads[customer] = new.head
            return True

    def add_identity(self, customer_id: str, identity: Identity) -> None:
        with self.lock:
            self.identities[customer_id].setdefault((str(identity.kind), identity.lookup_value), identity)
            key = (str(identity.lookup_kind), identity.lookup_value)
            known = self.pointers[key]
            self.pointers[key] = replace(known, kinds=known.kinds | {identity.kind})

    def link_identity(self, customer_id: str, identity: Identity, linked_by: str) -> bool:
        key = (str(identity.lookup_kind), identity.lookup_value)
        with self.lock:
            if key in self.pointers:
                return False
            self.pointers[key] = KnownIdentity(customer_id, frozenset({identity.kind}), linked_by=linked_by)
            self.identities[customer_id][(str(identity.kind), identity.lookup_value)] = identity
            return True

    def suggest_merge(self, suggestion: MergeSuggestion) -> bool:
        key = (suggestion.customer_id, suggestion.other_customer_id)
        with self.lock:
            kept = self.suggestions.get(key)
            if kept is not None and kept.evidence.seed != suggestion.evidence.seed:
                return False
            self.suggestions[key] = suggestion
            return True

    def apply_consents(self, customer_id: str, consents: Sequence[Consent]) -> AppliedConsents:
        with self.lock:
            profile = self.profiles[customer_id]
            merged = merge_consents(profile.consents, consents)
            self.profiles[customer_id] = profile.model_copy(update={"consents": merged, "version": profile.version + 1})
            return AppliedConsents(before=tuple(profile.consents), locale=profile.locale)

    def customers_named(self, key: str, *, limit: int = 6) -> tuple[str, ...]:
        with self.lock:
            named = [c for c, p in self.profiles.items() if name_key(p.display_name) == key and not p.merged_into]
            return tuple(named[:limit])

    def continue_conversation(self, customer_id: str, touch: HeadTouch) -> ContinueOutcome:
        with self.lock:
            head = self.heads.get(customer_id)
            if head is None or head.status not in CONTINUABLE or head.last_message_at < touch.window_start:
                return NotContinued(head)
            if head.last_message_at <= touch.at:
                inbound = (
                    {**head.last_inbound_at, str(touch.channel): touch.at} if touch.inbound else head.last_inbound_at
                )
                head = replace(head, last_message_at=touch.at, last_channel=touch.channel, last_inbound_at=inbound,
                               last_message_id=touch.message_id or head.last_message_id)  # fmt: skip
            self.heads[customer_id] = replace(head, channels=head.channels | {touch.channel})
            return Continued(head.conversation_id)

    def open_conversation(
        self, conversation: Conversation, head: HeadState, seen: HeadState | None, record: TimelineRecord
    ) -> OpenOutcome:
        customer = conversation.customer_id
        with self.lock:
            existing = self._entry(record)
            if existing is not None:
                return AlreadyRecorded(existing.entry.conversation_id)
            if self.heads.get(customer) != seen:
                return HeadChanged()
            self.conversations[conversation.id] = conversation
            self.heads[customer] = head
            self.timeline.setdefault(customer, {})[record.entry.id] = record
            return Opened()

    def record(self, record: TimelineRecord) -> AlreadyRecorded | None:
        with self.lock:
            existing = self._entry(record)
            if existing is not None:
                return AlreadyRecorded(existing.entry.conversation_id)
            self.timeline.setdefault(record.entry.customer_id, {})[record.entry.id] = record
            return None

    def _entry(self, record: TimelineRecord) -> TimelineRecord | None:
        return self.timeline.get(record.entry.customer_id, {}).get(record.entry.id)

    def entries(self) -> list[TimelineRecord]:
        return [record for entries in self.timeline.values() for record in entries.values()]


class FakePublisher:
    """Records what was published; ``fail_next`` makes the next calls raise RetryableError."""

    def __init__(self) -> None:
        self.events: list[DomainEvent] = []
        self.fail_next = 0
        self.lock = threading.Lock()

    def publish(self, events: Sequence[DomainEvent]) -> None:
        with self.lock:
            if self.fail_next:
                self.fail_next -= 1
                raise RetryableError("bus down")
            self.events.extend(events)

    def types(self) -> list[str]:
        return [event.type for event in self.events]


class FakeClock:
    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, delta: timedelta) -> None:
        self.at += delta


def run_together(calls: Sequence[Callable[[], Any]]) -> list[Any]:
    """Run callables on threads released at the same instant; return results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        barrier.wait()
        try:
            results[index] = calls[index]()
        except Exception as error:
            results[index] = error

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@contextmanager
def atomic_dynamodb() -> Iterator[None]:
    """Make moto's DynamoDB execute one request at a time, as DynamoDB's own conditions and transactions are atomic.

    The local twin's correction (``hilo.local.moto_fidelity.serialise_dynamodb``, which says why), for as long as
    the block runs: the races under test are then between OUR requests.
    """
    undo = moto_fidelity.serialise_dynamodb()
    try:
        yield
    finally:
        undo()
