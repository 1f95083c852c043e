"""Enrolments on ProfileTable (moto): read back as written, one per trigger, one open per workflow and key, saved
with optimistic locking, listed per workflow while open, and a whole story-3 journey persisted step by step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.adapters.enrolment_store import EnrolmentStore
from shared.errors import InvalidInput, PermanentError
from shared.models.common import new_id
from shared.models.events import DomainEvent
from shared.workflows.catalog import shipped_workflows
from shared.workflows.engine import (
    MAX_REPLIES,
    MAX_SEEN_EVENTS,
    CreateTask,
    Customer,
    Enrolled,
    Enrolment,
    EnrolmentStatus,
    NotEnrolled,
    Refusal,
    ReplyRecord,
    SetTimer,
    Start,
    advance,
    enrol,
)
from shared.workflows.language import Workflow
from tests.unit.workflows.conftest import Table

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
STORY_3 = "documento_descargado"


def customer(seed: str = "ana") -> str:
    return new_id("cus", at=T0, seed=f"enrolment-store:{seed}")


def downloaded(customer_id: str, at: datetime = T0, **data: Any) -> DomainEvent:
    return DomainEvent.new(
        "document.downloaded",
        source="web",
        correlation_id="corr-1",
        customer_id=customer_id,
        occurred_at=at,
        data={"document_title": "Guía de crédito", **data},
        id_seed=f"downloaded:{customer_id}:{at.isoformat()}",
    )


def workflow(workflow_id: str = STORY_3) -> Workflow:
    return shipped_workflows().get(workflow_id)


def enrolled(customer_id: str, at: datetime = T0, previous: tuple[Enrolment, ...] = (), **data: Any) -> Enrolment:
    result = enrol(workflow(), downloaded(customer_id, at, **data), None, previous, at)
    assert isinstance(result, Enrolled), result
    return result.enrolment


@pytest.fixture
def store(table: Table) -> EnrolmentStore:
    return EnrolmentStore(table.name, table.dynamodb)


def ended(enrolment: Enrolment, outcome: str = "replied") -> Enrolment:
    """The enrolment as the engine ends it (an exit), one version on."""
    return enrolment.model_copy(
        update={
            "status": EnrolmentStatus.EXITED,
            "outcome": outcome,
            "wait": None,
            "ended_at": T0,
            "version": enrolment.version + 1,
        }
    )


def test_a_created_enrolment_reads_back_equal_with_its_keys(table: Table, store: EnrolmentStore) -> None:
    # Given
    ana = customer()
    enrolment = enrolled(ana)

    # When
    created = store.create(enrolment)

    # Then
    assert created
    assert store.get(ana, STORY_3, enrolment.id) == enrolment
    assert store.enrolments(ana) == (enrolment,)
    (item,) = table.raw_items("ENROLMENT")
    assert item["sk"] == {"S": f"ENROL#{STORY_3}#{enrolment.id}"}
    assert item["version"] == {"N": "1"}  # a number: the locking condition compares it
    assert item["gsi2pk"] == {"S": f"WF#{STORY_3}"}
    (guard,) = table.items("ENROLMENT_KEY")
    assert (guard["sk"], guard["open_enrolment"]) == (f"ENROLKEY#{STORY_3}#", enrolment.id)
    assert store.get(ana, STORY_3, "enr_unknown") is None


def test_attributes_other_writers_add_do_not_break_the_read(table: Table, store: EnrolmentStore) -> None:
    # Given: the item as a merge copies it (``merged_from`` added)
    ana = customer()
    enrolment = enrolled(ana)
    store.create(enrolment)
    (item,) = table.raw_items("ENROLMENT")
    table.dynamodb.put_item(TableName=table.name, Item={**item, "merged_from": {"S": "mrg_1"}})

    # When / Then
    assert store.enrolments(ana) == (enrolment,)


def test_the_same_enrolment_twice_is_written_once(table: Table, store: EnrolmentStore) -> None:
    # Given: a trigger was enrolled
    ana = customer()
    enrolment = enrolled(ana)
    assert store.create(enrolment)

    # When: its redelivery races the first write (enrol saw no previous enrolment)
    again = store.create(enrolled(ana))

    # Then: refused; the re-read makes it a duplicate
    assert not again
    assert len(table.raw_items("ENROLMENT")) == 1
    result = enrol(workflow(), downloaded(ana), None, store.enrolments(ana, consistent=True), T0)
    assert isinstance(result, Enrolled)
    assert result.duplicate


def test_a_second_trigger_for_the_same_workflow_and_key_waits_for_the_first_to_end(
    table: Table, store: EnrolmentStore
) -> None:
    # Given: two different downloads, both enrolled by enrol() before either was stored (they arrived together)
    ana = customer()
    first = enrolled(ana, T0)
    second = enrolled(ana, T0 + timedelta(minutes=1))
    assert first.id != second.id

    # When
    results = (store.create(first), store.create(second))

    # Then: only the first; the re-read refuses the second (re-entry while active)
    assert results == (True, False)
    assert [item["id"] for item in table.items("ENROLMENT")] == [first.id]
    refused = enrol(workflow(), downloaded(ana, T0 + timedelta(minutes=1)), None, store.enrolments(ana), T0)
    assert isinstance(refused, NotEnrolled)
    assert refused.reason == Refusal.REENTRY

    # When: the first ends
    assert store.save(ended(first), expected_version=1)

    # Then: its guard is gone, so another enrolment of the key may begin
    assert table.items("ENROLMENT_KEY") == []
    assert store.create(second)
    assert {item["id"] for item in table.items("ENROLMENT")} == {first.id, second.id}


def test_a_save_over_a_stale_version_changes_nothing(table: Table, store: EnrolmentStore) -> None:
    # Given: started and saved once (version 2)
    ana = customer()
    enrolment = enrolled(ana)
    store.create(enrolment)
    started = advance(enrolment, workflow(), Customer(), T0, Start()).enrolment
    assert store.save(started, expected_version=1)
    before = table.raw_items("ENROLMENT")

    # When: a consumer that loaded version 1 saves its own (ending) result
    stale = store.save(ended(enrolment), expected_version=1)

    # Then: refused, the item and the guard as they were
    assert not stale
    assert table.raw_items("ENROLMENT") == before
    assert len(table.raw_items("ENROLMENT_KEY")) == 1
    assert store.get(ana, STORY_3, enrolment.id) == started
    with pytest.raises(ValueError, match="needs 3"):
        store.save(started, expected_version=2)


def test_ending_an_enrolment_whose_guard_is_not_its_own_still_saves(table: Table, store: EnrolmentStore) -> None:
    # Given: an open enrolment whose guard is gone (written before guards existed, say)
    ana = customer()
    enrolment = enrolled(ana)
    store.create(enrolment)
    (guard,) = table.raw_items("ENROLMENT_KEY")
    table.dynamodb.delete_item(TableName=table.name, Key={"pk": guard["pk"], "sk": guard["sk"]})

    # When
    saved = store.save(ended(enrolment), expected_version=1)

    # Then
    assert saved
    assert store.get(ana, STORY_3, enrolment.id) == ended(enrolment)


def test_story_3_persisted_step_by_step_ends_with_the_task(table: Table, store: EnrolmentStore) -> None:
    # Given: the download enrols the customer (previous enrolments read from the table)
    ana = customer()
    flow = workflow()
    trigger = downloaded(ana)
    result = enrol(flow, trigger, None, store.enrolments(ana), T0)
    assert isinstance(result, Enrolled)
    assert store.create(result.enrolment)
    key = result.enrolment.id
    effects: list[Any] = []

    def wake(wake: Any, now: datetime) -> Enrolment:
        loaded = store.get(ana, STORY_3, key)
        assert loaded is not None
        advanced = advance(loaded, flow, Customer(), now, wake)
        assert advanced.changed
        assert store.save(advanced.enrolment, expected_version=loaded.version)
        effects.extend(advanced.effects)
        return advanced.enrolment

    # When: started, then three days and two more of silence (the timers fire)
    wake(Start(), T0)
    assert store.enrolled_in(STORY_3).enrolments[0].status == EnrolmentStatus.WAITING
    for _ in range(2):
        timer = [effect for effect in effects if isinstance(effect, SetTimer)][-1]
        last = wake(timer.body.wake, timer.at + timedelta(seconds=40))

    # Then: the final item is the ended journey, out of the workflow's index, its guard released
    (item,) = table.items("ENROLMENT")
    assert (item["status"], item["outcome"], item["version"]) == ("exited", "tarea_ventas", 4)
    assert "wait" not in item  # None attributes are left out of the item
    assert set(item["steps"]) >= {"email_inicial", "esperar_3_dias", "recordatorio_whatsapp"}
    assert "gsi2pk" not in item
    assert "gsi2sk" not in item
    assert store.get(ana, STORY_3, key) == last
    assert [effect.queue for effect in effects if isinstance(effect, CreateTask)] == ["ventas"]
    assert table.items("ENROLMENT_KEY") == []
    assert store.enrolled_in(STORY_3).enrolments == ()
    # and the redelivered trigger is still a duplicate, not a new journey
    again = enrol(flow, trigger, None, store.enrolments(ana), T0 + timedelta(days=6))
    assert isinstance(again, Enrolled)
    assert again.duplicate


def test_enrolled_in_pages_through_the_open_enrolments_newest_first(store: EnrolmentStore) -> None:
    # Given: five customers enrolled a minute apart, and one whose enrolment ended
    enrolments = [enrolled(customer(str(n)), T0 + timedelta(minutes=n)) for n in range(5)]
    for enrolment in enrolments:
        store.create(enrolment)
    gone = enrolled(customer("gone"), T0 + timedelta(hours=1))
    store.create(gone)
    store.save(ended(gone), expected_version=1)

    # When
    pages = [store.enrolled_in(STORY_3, limit=2)]
    while pages[-1].cursor is not None:
        pages.append(store.enrolled_in(STORY_3, limit=2, cursor=pages[-1].cursor))

    # Then
    seen = [enrolment.id for page in pages for enrolment in page.enrolments]
    assert seen == [enrolment.id for enrolment in reversed(enrolments)]
    assert [len(page.enrolments) for page in pages][:3] == [2, 2, 1]
    assert store.enrolled_in("otro_flujo").enrolments == ()


@pytest.mark.parametrize("cursor", ["not-base64!", "eyJwayI6IDF9", "another workflow's"])
def test_a_cursor_not_from_this_workflow_is_invalid(store: EnrolmentStore, cursor: str) -> None:
    # Given: a page of story 3 with a next page
    for n in range(2):
        store.create(enrolled(customer(str(n)), T0 + timedelta(minutes=n)))
    if cursor == "another workflow's":
        cursor = store.enrolled_in(STORY_3, limit=1).cursor or ""
        assert cursor

    # When / Then
    with pytest.raises(InvalidInput):
        store.enrolled_in("confirmacion_cita", cursor=cursor)


def test_a_page_limit_out_of_range_is_invalid(store: EnrolmentStore) -> None:
    with pytest.raises(InvalidInput, match="limit"):
        store.enrolled_in(STORY_3, limit=0)


def test_a_full_enrolment_stays_far_under_the_item_limit(table: Table, store: EnrolmentStore) -> None:
    # Given: as many seen events and WhatsApp-sized replies as the engine keeps
    ana = customer()
    enrolment = enrolled(ana)
    replies = tuple(ReplyRecord(at=T0, text="x" * 1_000) for _ in range(MAX_REPLIES))
    seen = tuple(new_id("evt", at=T0, seed=str(n)) for n in range(MAX_SEEN_EVENTS))
    full = enrolment.model_copy(update={"replies": replies, "seen_events": seen})

    # When
    assert store.create(full)

    # Then
    assert store.get(ana, STORY_3, full.id) == full
    size = len(str(table.raw_items("ENROLMENT")[0]))
    assert size < 100_000


def test_an_enrolment_too_large_for_an_item_is_refused_with_a_clear_error(table: Table, store: EnrolmentStore) -> None:
    # Given: a trigger carrying ~400 KB of data
    enrolment = enrolled(customer(), blob="x" * 400_000)

    # When / Then
    with pytest.raises(PermanentError, match=f"Enrolment {enrolment.id} is too large"):
        store.create(enrolment)
    assert table.raw_items("ENROLMENT") == []
