"""The workflow engine's core: the shipped journeys driven input by input with a fake clock, and what a redelivered,
stale or repeated input does (nothing)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.models.common import Channel, new_id
from shared.models.events import DomainEvent
from shared.models.message import DeliveryStatus
from shared.workflows.catalog import shipped_workflows
from shared.workflows.engine import (
    Advanced,
    CancelTimer,
    CreateTask,
    Customer,
    Effect,
    Enrolled,
    Enrolment,
    EnrolmentStatus,
    EventArrived,
    NotEnrolled,
    Notify,
    Record,
    Refusal,
    Send,
    SetTimer,
    Start,
    StepWake,
    TimerFired,
    UpdateProfile,
    advance,
    enrol,
)
from shared.workflows.language import Workflow

T0 = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
CUSTOMER = new_id("cus", at=T0, seed="engine-tests")
NOBODY = Customer()


def event(event_type: str, data: dict[str, Any] | None = None, *, at: datetime, seed: str | None = None) -> DomainEvent:
    return DomainEvent.new(
        event_type,
        source="crm",
        correlation_id="corr-1",
        customer_id=CUSTOMER,
        occurred_at=at,
        data=data,
        id_seed=seed or f"{event_type}:{at.isoformat()}",
    )


def reply(text: str, *, at: datetime) -> DomainEvent:
    data = {"direction": "inbound", "channel": "whatsapp", "parts": [{"type": "text", "text": text}]}
    return event("message.received", data, at=at, seed=f"reply:{text}:{at.isoformat()}")


def downloaded(at: datetime = T0) -> DomainEvent:
    return event("document.downloaded", {"document_title": "Guía de crédito", "document_type": "brochure"}, at=at)


def booked(starts_at: datetime, *, at: datetime = T0, appointment: str = "A-77") -> DomainEvent:
    data = {"appointment_id": appointment, "starts_at": starts_at.isoformat(), "store": "Unicentro"}
    return event("appointment.booked", data, at=at, seed=f"booked:{appointment}")


class Journey:
    """One enrolment driven like the WorkflowQueue consumer will: load, advance, save; effects collected."""

    def __init__(self, workflow_id: str, trigger: DomainEvent, previous: Sequence[Enrolment] = ()) -> None:
        self.workflow: Workflow = shipped_workflows().get(workflow_id)
        result = enrol(self.workflow, trigger, None, previous, trigger.occurred_at)
        assert isinstance(result, Enrolled), result
        self.enrolment = result.enrolment
        self.effects: list[Effect] = []
        self.step(Start(), trigger.occurred_at)

    def step(self, wake: Start | TimerFired | EventArrived, now: datetime) -> Advanced:
        result = advance(self.enrolment, self.workflow, NOBODY, now, wake)
        if result.changed:
            assert result.enrolment.version == self.enrolment.version + 1
        self.enrolment = result.enrolment
        self.effects.extend(result.effects)
        return result

    def fire(self) -> Advanced:
        """The pending timer arrives (a little late, as Scheduler's are)."""
        timer = self.pending_timer()
        return self.step(timer.body.wake, timer.at + timedelta(seconds=40))

    def feed(self, incoming: DomainEvent) -> Advanced:
        return self.step(EventArrived(event=incoming), incoming.occurred_at + timedelta(seconds=1))

    def pending_timer(self) -> SetTimer:
        timers = [effect for effect in self.effects if isinstance(effect, SetTimer)]
        assert timers
        assert self.enrolment.wait is not None
        assert timers[-1].key == self.enrolment.wait.timer_key
        return timers[-1]

    def of(self, kind: type[Any]) -> list[Any]:
        return [effect for effect in self.effects if isinstance(effect, kind)]

    def sends(self) -> list[str]:
        return [f"{send.command.key.rsplit(':', 1)[1]}" for send in self.of(Send)]


# --------------------------------------------------------------------------------------------- story 3 paths


def test_a_reply_after_the_email_exits_before_the_whatsapp() -> None:
    # Given: enrolled; the e-mail went and the 3-day wait began
    journey = Journey("documento_descargado", downloaded())
    assert journey.sends() == ["email_inicial"]
    assert journey.enrolment.status == EnrolmentStatus.WAITING
    timer = journey.pending_timer()
    assert timer.at == T0 + timedelta(days=3)
    assert timer.key == f"workflow:{journey.enrolment.id}:esperar_3_dias"

    # When: the customer answers on day 1
    journey.feed(reply("me interesa", at=T0 + timedelta(days=1)))

    # Then: ended (any_reply), the timer cancelled, no WhatsApp
    assert journey.enrolment.status == EnrolmentStatus.EXITED
    assert journey.enrolment.outcome == "replied"
    assert CancelTimer(timer.key) in journey.effects
    assert journey.sends() == ["email_inicial"]
    # and the timer that still arrives finds nothing to do
    late = journey.step(timer.body.wake, timer.at)
    assert not late.changed
    assert late.effects == ()


def test_a_long_reply_is_kept_short_on_the_enrolment() -> None:
    journey = Journey("documento_descargado", downloaded())

    journey.feed(reply("Hola, les cuento mi caso. " * 400, at=T0 + timedelta(days=1)))

    [kept] = journey.enrolment.replies
    assert kept.text is not None
    assert len(kept.text) == 1_000
    assert journey.enrolment.outcome == "replied"


def test_no_reply_for_three_days_sends_the_whatsapp_and_a_reply_then_exits() -> None:
    # Given
    journey = Journey("documento_descargado", downloaded())

    # When: three days of silence
    journey.fire()

    # Then: the WhatsApp went, keyed by enrolment and step, and the 2-day wait began
    assert journey.sends() == ["email_inicial", "recordatorio_whatsapp"]
    whatsapp = journey.of(Send)[1].command
    assert whatsapp.channel == Channel.WHATSAPP
    assert whatsapp.requested_at == T0 + timedelta(days=3)  # the timer's instant, not the consumer's clock
    record = journey.enrolment.steps["recordatorio_whatsapp"]
    assert record.status == DeliveryStatus.QUEUED
    assert record.message_id == whatsapp.message_id
    assert journey.pending_timer().at == T0 + timedelta(days=5)

    # When: they answer
    journey.feed(reply("llámenme", at=T0 + timedelta(days=4)))

    # Then
    assert (journey.enrolment.status, journey.enrolment.outcome) == (EnrolmentStatus.EXITED, "replied")
    assert not journey.of(CreateTask)


@pytest.mark.parametrize(("read", "task_title"), [(True, "Leyó el recordatorio"), (False, "Lead sin respuesta")])
def test_silence_ends_in_a_task_that_depends_on_whether_the_whatsapp_was_read(read: bool, task_title: str) -> None:
    # Given: day 3, the WhatsApp went
    journey = Journey("documento_descargado", downloaded())
    journey.fire()
    whatsapp = journey.of(Send)[1].command
    if read:
        # When: its read receipt arrives while the enrolment waits
        receipt = event(
            "message.read",
            {"message_id": whatsapp.message_id, "channel": "whatsapp"},
            at=T0 + timedelta(days=3, hours=2),
        )
        result = journey.feed(receipt)
        # Then: the step's status moved; nothing else happened
        assert journey.enrolment.steps["recordatorio_whatsapp"].status == DeliveryStatus.READ
        assert journey.enrolment.status == EnrolmentStatus.WAITING
        assert result.effects == ()

    # When: two more days of silence
    journey.fire()

    # Then: the right task, and the journey ends at its exit step
    (task,) = journey.of(CreateTask)
    assert task.title.startswith(task_title)
    assert task.queue == "ventas"
    assert task.data == {"document_title": "Guía de crédito"}
    assert task.key == f"workflow:{journey.enrolment.id}:{'tarea_leyo' if read else 'tarea_sin_respuesta'}"
    assert (journey.enrolment.status, journey.enrolment.outcome) == (EnrolmentStatus.EXITED, "tarea_ventas")
    assert journey.enrolment.wait is None
    assert journey.of(Record)[-1].step_id is None
    assert journey.of(Record)[-1].outcome == "tarea_ventas"


def test_an_opt_out_mid_flow_ends_everything_and_cancels_the_pending_timer() -> None:
    # Given: waiting for the 2-day timer after the WhatsApp
    journey = Journey("documento_descargado", downloaded())
    journey.fire()
    timer = journey.pending_timer()

    # When: BAJA
    opt_out = event(
        "consent.changed", {"kind": "opt_out", "channel": "whatsapp", "keyword": "baja"}, at=T0 + timedelta(days=4)
    )
    journey.feed(opt_out)

    # Then
    assert (journey.enrolment.status, journey.enrolment.outcome) == (EnrolmentStatus.EXITED, "opted_out")
    assert CancelTimer(timer.key) in journey.effects
    assert journey.step(timer.body.wake, timer.at).changed is False
    assert not journey.of(CreateTask)


def test_the_goal_converts() -> None:
    journey = Journey("documento_descargado", downloaded())
    journey.feed(event("lead.converted", {"stage": "opportunity"}, at=T0 + timedelta(hours=5)))
    assert (journey.enrolment.status, journey.enrolment.outcome) == (EnrolmentStatus.CONVERTED, "converted")


# ------------------------------------------------------------------------------------------------ idempotency


def test_the_same_input_on_the_same_stored_state_gives_the_same_effects_and_after_saving_nothing() -> None:
    # Given: the stored state as the 3-day timer arrives
    journey = Journey("documento_descargado", downloaded())
    stored, wake = journey.enrolment, journey.pending_timer().body.wake

    # When: two deliveries race on the same stored state (different consumers' clocks)
    first = advance(stored, journey.workflow, NOBODY, T0 + timedelta(days=3, seconds=30), wake)
    second = advance(stored, journey.workflow, NOBODY, T0 + timedelta(days=3, minutes=9), wake)

    # Then: the same effects (the adapters dedupe by their keys) and the same steps
    assert first.effects == second.effects
    assert first.effects
    assert first.enrolment.steps == second.enrolment.steps
    # and once the first is saved, a third delivery does nothing
    again = advance(first.enrolment, journey.workflow, NOBODY, T0 + timedelta(days=3, minutes=10), wake)
    assert not again.changed
    assert again.effects == ()
    assert again.enrolment == first.enrolment


def test_the_same_event_twice_is_applied_once() -> None:
    # Given: the appointment journey waiting for the 24-hour reminder; the customer already said "1"
    journey = Journey("confirmacion_cita", booked(T0 + timedelta(days=3)))
    answer = reply("1", at=T0 + timedelta(hours=1))
    journey.feed(answer)
    saved = journey.enrolment

    # When: the same event is delivered again
    repeat = journey.feed(answer)

    # Then
    assert not repeat.changed
    assert repeat.effects == ()
    assert len(saved.replies) == 1


def test_a_start_of_a_started_enrolment_and_a_timer_of_another_step_do_nothing() -> None:
    journey = Journey("documento_descargado", downloaded())
    timer = journey.pending_timer()
    assert journey.step(Start(), T0 + timedelta(minutes=1)).changed is False
    other = TimerFired(step_id="esperar_2_dias", due_at=timer.at)
    assert journey.step(other, timer.at).changed is False
    moved = TimerFired(step_id="esperar_3_dias", due_at=timer.at - timedelta(hours=1))  # a timer set for another time
    assert journey.step(moved, timer.at).changed is False


def test_a_step_wake_crosses_the_queue_intact() -> None:
    journey = Journey("documento_descargado", downloaded())
    body = journey.pending_timer().body
    assert StepWake.model_validate_json(body.model_dump_json()) == body
    assert body.customer_id == CUSTOMER
    assert body.enrolment_id == journey.enrolment.id
    incoming = StepWake.of(journey.enrolment, EventArrived(event=reply("hola", at=T0)))
    assert StepWake.model_validate_json(incoming.model_dump_json()) == incoming
    # the stored enrolment round-trips too (DynamoDB keeps its JSON)
    assert Enrolment.model_validate_json(journey.enrolment.model_dump_json()) == journey.enrolment


# ----------------------------------------------------------------------------------------- enrolment rules


def test_a_redelivered_trigger_makes_the_same_enrolment() -> None:
    workflow = shipped_workflows().get("documento_descargado")
    first = enrol(workflow, downloaded(), None, (), T0)
    assert isinstance(first, Enrolled)
    assert not first.duplicate
    again = enrol(workflow, downloaded(), None, [first.enrolment], T0 + timedelta(seconds=5))
    assert isinstance(again, Enrolled)
    assert again.duplicate
    assert again.enrolment == first.enrolment
    assert again.start == first.start


def test_reentry_and_frequency_refuse_a_second_enrolment() -> None:
    workflow = shipped_workflows().get("documento_descargado")  # reentry after 30d, frequency 2 per 30d (group)
    journey = Journey("documento_descargado", downloaded())

    # While the first runs: re-entry
    second = enrol(workflow, downloaded(T0 + timedelta(days=1)), None, [journey.enrolment], T0 + timedelta(days=1))
    assert isinstance(second, NotEnrolled)
    assert second.reason == Refusal.REENTRY

    # Ended, but within 30 days of its start: re-entry still
    journey.feed(reply("gracias", at=T0 + timedelta(days=2)))
    third = enrol(workflow, downloaded(T0 + timedelta(days=10)), None, [journey.enrolment], T0 + timedelta(days=10))
    assert isinstance(third, NotEnrolled)
    assert third.reason == Refusal.REENTRY

    # After 30 days re-entry allows it, but the group's cap (two in 30 days) counts the other workflow's enrolments
    later = T0 + timedelta(days=31)
    others = [
        journey.enrolment.model_copy(
            update={"id": f"enr-{n}", "workflow_id": "otro", "started_at": later - timedelta(days=n)}
        )
        for n in (1, 2)
    ]
    capped = enrol(workflow, downloaded(later), None, [journey.enrolment, *others], later)
    assert isinstance(capped, NotEnrolled)
    assert capped.reason == Refusal.FREQUENCY
    allowed = enrol(workflow, downloaded(later), None, [journey.enrolment, others[0]], later)
    assert isinstance(allowed, Enrolled)


def test_an_event_that_does_not_fit_the_trigger_enrols_nobody() -> None:
    workflow = shipped_workflows().get("documento_descargado")
    untitled = event("document.downloaded", {"document_type": "brochure"}, at=T0)
    result = enrol(workflow, untitled, None, (), T0)
    assert isinstance(result, NotEnrolled)
    assert result.reason == Refusal.NOT_TRIGGERED


# ------------------------------------------------------------------------------------------------ appointment


def test_the_appointment_reminder_waits_until_24_hours_before_and_a_1_confirms() -> None:
    # Given: booked three days ahead; the confirmation went
    starts_at = T0 + timedelta(days=3)
    journey = Journey("confirmacion_cita", booked(starts_at))
    assert journey.sends() == ["confirmacion"]
    assert journey.pending_timer().at == starts_at - timedelta(hours=24)

    # When: the customer replies "1." (the reply is kept; no exit rule ends on a reply) and the day comes
    journey.feed(reply("1.", at=T0 + timedelta(hours=2)))
    assert journey.enrolment.status == EnrolmentStatus.WAITING
    journey.fire()

    # Then: no reminder; confirmed in the profile and on the bus
    assert journey.sends() == ["confirmacion"]
    (update,) = journey.of(UpdateProfile)
    assert update.attributes == {"ultima_cita_confirmada": "A-77"}
    (notify,) = journey.of(Notify)
    assert notify.event_type == "appointment.confirmed_by_customer"
    assert notify.payload == {"appointment_id": "A-77"}
    assert (journey.enrolment.status, journey.enrolment.outcome) == (EnrolmentStatus.EXITED, "confirmada")


def test_without_an_answer_the_reminder_goes_and_a_2_makes_a_rescheduling_task() -> None:
    # Given
    starts_at = T0 + timedelta(days=3)
    journey = Journey("confirmacion_cita", booked(starts_at))

    # When: the reminder's day comes; then they answer "2"
    journey.fire()
    assert journey.sends() == ["confirmacion", "recordatorio"]
    assert journey.pending_timer().at == starts_at - timedelta(hours=2)
    timer = journey.pending_timer()
    journey.feed(reply("2", at=starts_at - timedelta(hours=20)))

    # Then: the wait ended with the event, the timer is cancelled, and the task is made
    wait = journey.enrolment.steps["esperar_respuesta"]
    assert wait.outcome == "event"
    assert wait.text == "2"
    assert CancelTimer(timer.key) in journey.effects
    (task,) = journey.of(CreateTask)
    assert task.queue == "agendamiento"
    assert task.due_at == starts_at - timedelta(hours=20) + timedelta(hours=4)
    assert (journey.enrolment.status, journey.enrolment.outcome) == (EnrolmentStatus.EXITED, "reagendar")


def test_booked_less_than_a_day_ahead_goes_straight_to_waiting_for_the_answer() -> None:
    starts_at = T0 + timedelta(hours=10)
    journey = Journey("confirmacion_cita", booked(starts_at))
    assert journey.sends() == ["confirmacion"]
    assert journey.enrolment.wait is not None
    assert journey.enrolment.wait.step_id == "esperar_respuesta"
    journey.fire()  # no answer by two hours before
    assert (journey.enrolment.status, journey.enrolment.outcome) == (EnrolmentStatus.EXITED, "sin_respuesta")
    assert journey.enrolment.steps["esperar_respuesta"].outcome == "timeout"


def test_a_cancelled_appointment_ends_its_journey_only() -> None:
    journey = Journey("confirmacion_cita", booked(T0 + timedelta(days=3)))
    other = event("appointment.canceled", {"appointment_id": "B-1"}, at=T0 + timedelta(hours=1))
    assert journey.feed(other).enrolment.status == EnrolmentStatus.WAITING
    mine = event("appointment.canceled", {"appointment_id": "A-77"}, at=T0 + timedelta(hours=2))
    journey.feed(mine)
    assert (journey.enrolment.status, journey.enrolment.outcome) == (EnrolmentStatus.EXITED, "cancelada")


def test_a_missing_value_fails_the_enrolment_naming_the_path() -> None:
    # Given: a starts_at that is not a time (the trigger only checks it exists)
    data = {"appointment_id": "A-9", "starts_at": "mañana", "store": "Unicentro"}
    journey = Journey("confirmacion_cita", event("appointment.booked", data, at=T0))
    assert journey.enrolment.status == EnrolmentStatus.FAILED
    assert journey.enrolment.error is not None
    assert "event.data.starts_at" in journey.enrolment.error
    assert "mañana" not in journey.enrolment.error


# ------------------------------------------------------------------------------------------------------ split


def test_the_split_records_the_same_variant_every_time_and_spreads_enrolments() -> None:
    workflow = shipped_workflows().get("producto_disponible")
    seen: dict[str, int] = {}
    for n in range(40):
        data = {"sku": f"SKU-{n}", "product_name": "Camisa", "size": "M", "url": "https://t.example/p", "stock": 3}
        trigger = event("product.back_in_stock", data, at=T0, seed=f"stock:{n}")
        enrolled = enrol(workflow, trigger, None, (), T0)
        assert isinstance(enrolled, Enrolled)
        runs = [advance(enrolled.enrolment, workflow, NOBODY, T0 + timedelta(minutes=m), Start()) for m in (0, 7)]
        assert runs[0].effects == runs[1].effects
        variant = runs[0].enrolment.variant
        assert variant is not None
        assert runs[0].enrolment.steps["canal"].variant == variant
        (send,) = [effect for effect in runs[0].effects if isinstance(effect, Send)]
        assert (send.command.channel == Channel.SMS) == (variant == "sms")
        seen[variant] = seen.get(variant, 0) + 1
    assert set(seen) == {"mejor_canal", "sms"}
