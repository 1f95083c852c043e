"""Consent keywords on inbound text: what matches, what it changes, and the send decisions that follow."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.models.common import Channel, IdPrefix, new_id
from shared.models.customer import Consent, ConsentPurpose, ConsentStatus, CustomerProfile
from shared.outbound.consent import (
    CARRIER_OPT_OUT_KEYWORDS,
    HELP_KEYWORDS,
    OPT_IN_KEYWORDS,
    OPT_OUT_KEYWORDS,
    KeywordKind,
    merge_consents,
    read_keyword,
)
from shared.outbound.policy import Action, Reason, decide

# A Tuesday at 15:00 in Bogotá: outside quiet hours, so only consent decides.
T0 = datetime(2024, 5, 7, 20, 0, tzinfo=UTC)
CHAT_CHANNELS = [Channel.WHATSAPP, Channel.MESSENGER, Channel.INSTAGRAM, Channel.TELEGRAM, Channel.WEBCHAT]


def profile(*consents: Consent, locale: str = "es") -> CustomerProfile:
    return CustomerProfile(
        id=new_id(IdPrefix.CUSTOMER, at=T0 - timedelta(days=30)),
        locale=locale,
        consents=consents,
        created_at=T0 - timedelta(days=30),
        updated_at=T0 - timedelta(days=30),
    )


def opted_in(channel: Channel, at: datetime = T0 - timedelta(days=10)) -> Consent:
    return Consent(
        channel=channel, purpose=ConsentPurpose.MARKETING, status=ConsentStatus.OPTED_IN, source="web_form", at=at
    )


def after_keyword(customer: CustomerProfile, text: str, channel: Channel, at: datetime) -> CustomerProfile:
    intent = read_keyword(text, channel=channel, at=at, locale=customer.locale)
    assert intent is not None, text
    return customer.model_copy(update={"consents": merge_consents(customer.consents, intent.consents)})


def send_decision(customer: CustomerProfile, channel: Channel, purpose: ConsentPurpose, now: datetime) -> Action:
    # The customer wrote on every channel a minute ago: the WhatsApp window is open and quiet hours are not at play.
    inbound = {str(c): now - timedelta(minutes=1) for c in Channel}
    return decide(customer, channel, purpose, now, last_inbound_at=inbound).action


# --- matching -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keyword", sorted(OPT_OUT_KEYWORDS))
@pytest.mark.parametrize("channel", [Channel.SMS, Channel.WHATSAPP, Channel.EMAIL])
def test_every_opt_out_keyword_opts_out_on_every_text_channel(keyword: str, channel: Channel) -> None:
    intent = read_keyword(keyword.lower(), channel=channel, at=T0)
    assert intent is not None
    assert (intent.kind, intent.keyword, intent.channel) == (KeywordKind.OPT_OUT, keyword, channel)
    assert {c.status for c in intent.consents} == {ConsentStatus.OPTED_OUT}


@pytest.mark.parametrize("keyword", sorted(OPT_IN_KEYWORDS))
@pytest.mark.parametrize("channel", [Channel.SMS, Channel.WHATSAPP])
def test_every_opt_in_keyword_opts_in_to_both_purposes_on_its_channel(keyword: str, channel: Channel) -> None:
    intent = read_keyword(keyword.title(), channel=channel, at=T0)
    assert intent is not None
    assert intent.kind == KeywordKind.OPT_IN
    assert {(c.channel, c.purpose, c.status) for c in intent.consents} == {
        (channel, ConsentPurpose.MARKETING, ConsentStatus.OPTED_IN),
        (channel, ConsentPurpose.TRANSACTIONAL, ConsentStatus.OPTED_IN),
    }


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("BAJA", "BAJA"),
        ("  baja  ", "BAJA"),
        ("Baja.", "BAJA"),
        ("baja 🙏", "BAJA"),
        ("¡Baja!", "BAJA"),
        ("STOP!", "STOP"),
        ("stop 👍🏽", "STOP"),  # skin-tone modifier
        ("Stop\u200d", "STOP"),  # a stray zero-width joiner
        ("Ｓｔｏｐ", "STOP"),  # full-width letters
        ("No más", "NO MAS"),
        ("NO MAS!!!", "NO MAS"),
        ("no  más   mensajes", "NO MAS MENSAJES"),
        ("Opt-Out", "OPT OUT"),
        ("Darme de baja", "DARME DE BAJA"),
        ("Detener.", "DETENER"),
        ("UNSUBSCRIBE", "UNSUBSCRIBE"),
    ],
)
def test_a_message_that_is_the_keyword_matches_whatever_its_case_accents_punctuation_or_emoji(
    text: str, keyword: str
) -> None:
    intent = read_keyword(text, channel=Channel.WHATSAPP, at=T0)
    assert intent is not None
    assert (intent.kind, intent.keyword) == (KeywordKind.OPT_OUT, keyword)


@pytest.mark.parametrize(
    "text",
    [
        "quiero cancelar mi pedido",  # a cancelled order is not an unsubscribe
        "no me den de baja",
        "stop please",
        "BAJA BAJA",
        "por favor baja el precio",
        "no, más tarde",
        "alto ahí",
        "/start",  # Telegram's bot command, sent when a chat is opened
        "/stop",
        "sí",
        "yes",
        "inicio",  # back to the bot's menu
        "cancelar",  # an answer to "¿confirmas o cancelas tu cita?" on a chat channel
        "ayuda",  # on chat channels a request for the bot or an agent
        "👍",
        "",
        "   ",
    ],
)
def test_a_sentence_or_an_everyday_answer_on_a_chat_channel_changes_nothing(text: str) -> None:
    assert read_keyword(text, channel=Channel.WHATSAPP, at=T0) is None


@pytest.mark.parametrize("keyword", sorted(CARRIER_OPT_OUT_KEYWORDS))
def test_carrier_words_like_cancelar_opt_out_on_sms_only(keyword: str) -> None:
    sms = read_keyword(keyword, channel=Channel.SMS, at=T0)
    assert sms is not None
    assert sms.kind == KeywordKind.OPT_OUT
    for channel in CHAT_CHANNELS:
        assert read_keyword(keyword, channel=channel, at=T0) is None


@pytest.mark.parametrize("keyword", sorted(HELP_KEYWORDS))
def test_help_on_sms_answers_without_changing_consent(keyword: str) -> None:
    intent = read_keyword(keyword, channel=Channel.SMS, at=T0)
    assert intent is not None
    assert (intent.kind, intent.consents) == (KeywordKind.HELP, ())
    assert "BAJA" in intent.reply
    assert "ALTA" in intent.reply


@pytest.mark.parametrize("channel", [Channel.VOICE, Channel.IN_STORE])
def test_channels_without_customer_text_never_match(channel: Channel) -> None:
    assert read_keyword("STOP", channel=channel, at=T0) is None


def test_the_records_say_which_keyword_and_when() -> None:
    at = T0 + timedelta(seconds=7)
    intent = read_keyword("¡Baja!", channel=Channel.SMS, at=at)
    assert intent is not None
    assert {(c.source, c.at) for c in intent.consents} == {("keyword:BAJA", at)}


# --- scope and the decisions that follow -----------------------------------------------------------------------------


def test_baja_on_whatsapp_blocks_marketing_while_transactional_still_goes() -> None:
    # Given a customer who opted in to WhatsApp promotions on a web form
    customer = profile(opted_in(Channel.WHATSAPP))
    assert send_decision(customer, Channel.WHATSAPP, ConsentPurpose.MARKETING, T0) == Action.SEND
    # When they answer a promotion with "BAJA"
    customer = after_keyword(customer, "BAJA", Channel.WHATSAPP, T0)
    later = T0 + timedelta(minutes=5)
    # Then the next promotion is blocked, with a reason, and their order update still goes
    blocked = decide(customer, Channel.WHATSAPP, ConsentPurpose.MARKETING, later, last_inbound_at={"whatsapp": T0})
    assert (blocked.action, blocked.reason) == (Action.BLOCK, Reason.OPTED_OUT)
    assert "keyword:BAJA" in blocked.detail
    assert send_decision(customer, Channel.WHATSAPP, ConsentPurpose.TRANSACTIONAL, later) == Action.SEND
    # and other channels are untouched
    assert send_decision(customer, Channel.SMS, ConsentPurpose.TRANSACTIONAL, later) == Action.SEND


def test_baja_on_sms_stops_everything_on_sms_only() -> None:
    customer = after_keyword(profile(opted_in(Channel.SMS), opted_in(Channel.EMAIL)), "Baja.", Channel.SMS, T0)
    later = T0 + timedelta(minutes=5)
    assert send_decision(customer, Channel.SMS, ConsentPurpose.MARKETING, later) == Action.BLOCK
    assert send_decision(customer, Channel.SMS, ConsentPurpose.TRANSACTIONAL, later) == Action.BLOCK
    assert send_decision(customer, Channel.EMAIL, ConsentPurpose.MARKETING, later) == Action.SEND


def test_the_confirmation_goes_out_right_after_the_opt_out() -> None:
    # Given a customer who just wrote BAJA on SMS (everything on SMS is now blocked)
    intent = read_keyword("BAJA", channel=Channel.SMS, at=T0)
    assert intent is not None
    customer = profile().model_copy(update={"consents": intent.consents})
    # When the confirmation is decided at once, even in the middle of the night
    night = datetime(2024, 5, 8, 4, 0, tzinfo=UTC)  # 23:00 in Bogotá
    decision = decide(
        customer, Channel.SMS, ConsentPurpose.TRANSACTIONAL, night, last_inbound_at={}, keyword_reply=True
    )
    # Then it goes, and Hilo sends it itself (Twilio does not know BAJA)
    assert decision.action == Action.SEND
    assert not intent.provider_replies


@pytest.mark.parametrize(
    ("text", "channel", "provider_replies"),
    [
        ("STOP", Channel.SMS, True),  # Twilio answers and blocks the number itself
        (" stop ", Channel.SMS, True),
        ("Start", Channel.SMS, True),
        ("STOP!", Channel.SMS, False),  # not Twilio's bare word: the confirmation is ours
        ("BAJA", Channel.SMS, False),
        ("STOP", Channel.WHATSAPP, False),
    ],
)
def test_hilo_does_not_repeat_the_reply_twilio_already_sent(
    text: str, channel: Channel, provider_replies: bool
) -> None:
    intent = read_keyword(text, channel=channel, at=T0)
    assert intent is not None
    assert intent.provider_replies is provider_replies


def test_alta_opts_back_in_to_both_purposes() -> None:
    customer = after_keyword(profile(), "BAJA", Channel.SMS, T0)
    later = T0 + timedelta(hours=1)
    customer = after_keyword(customer, "ALTA", Channel.SMS, later)
    assert send_decision(customer, Channel.SMS, ConsentPurpose.TRANSACTIONAL, later) == Action.SEND
    assert send_decision(customer, Channel.SMS, ConsentPurpose.MARKETING, later) == Action.SEND
    assert {c.source for c in customer.consents} == {"keyword:ALTA"}


def test_a_late_keyword_never_undoes_a_newer_choice() -> None:
    # Given the customer wrote ALTA after BAJA, and the BAJA is delivered (again) afterwards
    alta = read_keyword("ALTA", channel=Channel.SMS, at=T0 + timedelta(minutes=2))
    baja = read_keyword("BAJA", channel=Channel.SMS, at=T0)
    assert alta is not None
    assert baja is not None
    consents = merge_consents(merge_consents((), alta.consents), baja.consents)
    # Then ALTA stands
    assert {c.status for c in consents} == {ConsentStatus.OPTED_IN}
    # and applying the same records twice changes nothing
    assert merge_consents(consents, alta.consents) == consents


def test_merge_keeps_one_record_per_channel_and_purpose() -> None:
    current = (opted_in(Channel.EMAIL), opted_in(Channel.WHATSAPP))
    intent = read_keyword("STOP", channel=Channel.WHATSAPP, at=T0)
    assert intent is not None
    merged = merge_consents(current, intent.consents)
    assert merged[0] == current[0]
    assert merged[1].status == ConsentStatus.OPTED_OUT
    assert len(merged) == 2
    profile(*merged)  # the profile's own rule: one per (channel, purpose)


def test_opting_in_to_all_on_a_channel_after_a_stop_needs_the_newer_marketing_opt_in() -> None:
    # STOP on SMS (both purposes out), then a newer web-form opt-in to SMS promotions: the latest word wins
    stopped = after_keyword(profile(), "STOP", Channel.SMS, T0)
    renewed = stopped.model_copy(
        update={"consents": merge_consents(stopped.consents, [opted_in(Channel.SMS, at=T0 + timedelta(days=1))])}
    )
    now = T0 + timedelta(days=2)
    assert send_decision(stopped, Channel.SMS, ConsentPurpose.MARKETING, now) == Action.BLOCK
    assert send_decision(renewed, Channel.SMS, ConsentPurpose.MARKETING, now) == Action.SEND


ES_STOPPED = "Listo, no te enviaremos más mensajes por este canal. Responde ALTA para volver a recibirlos."
EN_STOPPED = "Done, you won't get any more messages from us on this channel. Reply START to receive them again."


@pytest.mark.parametrize(
    ("locale", "text", "expected"),
    [
        ("es", "BAJA", ES_STOPPED),
        ("es-CO", "STOP", ES_STOPPED),
        ("en-US", "STOP", EN_STOPPED),
        ("pt-BR", "BAJA", ES_STOPPED),
    ],
)
def test_the_sms_confirmation_is_in_the_customers_language_spanish_by_default(
    locale: str, text: str, expected: str
) -> None:
    intent = read_keyword(text, channel=Channel.SMS, at=T0, locale=locale)
    assert intent is not None
    assert intent.reply == expected


def test_the_chat_confirmation_says_that_order_updates_continue() -> None:
    intent = read_keyword("BAJA", channel=Channel.WHATSAPP, at=T0)
    assert intent is not None
    assert "promociones" in intent.reply
    assert "pedidos" in intent.reply
    assert [c.purpose for c in intent.consents] == [ConsentPurpose.MARKETING]


def test_a_newer_opt_out_of_everything_on_a_channel_outranks_an_older_marketing_opt_in() -> None:
    # Given promotions accepted on a form, then an agent records "nothing at all on SMS" (transactional opt-out)
    nothing = Consent(
        channel=Channel.SMS, purpose=ConsentPurpose.TRANSACTIONAL, status=ConsentStatus.OPTED_OUT, source="agent", at=T0
    )
    customer = profile(opted_in(Channel.SMS), nothing)
    # Then promotions stop too
    decision = decide(customer, Channel.SMS, ConsentPurpose.MARKETING, T0, last_inbound_at={})
    assert (decision.action, decision.reason) == (Action.BLOCK, Reason.OPTED_OUT)
    assert "agent" in decision.detail
