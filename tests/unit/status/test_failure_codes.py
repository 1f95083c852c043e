"""The one table of provider error codes: what each known code means, and that anything else means "not known"."""

from __future__ import annotations

from collections import Counter

import pytest

from shared.models.common import Provider
from shared.outbound.delivery import Rejection
from shared.outbound.failure_codes import FAILURE_CODES, failure_code, rejection_for, telegram_code

INVALID, NOT_ON, WINDOW = Rejection.INVALID_ADDRESS, Rejection.NOT_ON_CHANNEL, Rejection.WINDOW_CLOSED
UNSUB, CONTENT, OTHER = Rejection.UNSUBSCRIBED, Rejection.CONTENT, Rejection.OTHER


@pytest.mark.parametrize(
    ("provider", "code", "rejection"),
    [
        ("twilio", "30003", OTHER),  # unreachable handset: this message is over, another channel may work
        ("twilio", "30004", UNSUB),
        ("twilio", "30005", INVALID),
        ("twilio", "30006", NOT_ON),  # a landline
        ("twilio", "30007", OTHER),  # the SMS carrier's filter, not a refusal of the content everywhere
        ("twilio", "30008", OTHER),
        ("twilio", "21610", UNSUB),
        ("twilio", 21211, INVALID),  # an int, as a JSON error body has it
        ("twilio", "63016", WINDOW),
        ("twilio", "63003", INVALID),
        ("twilio", "63024", NOT_ON),
        ("meta", "131026", NOT_ON),
        ("meta", "131047", WINDOW),
        ("meta", "131049", OTHER),
        ("meta", "131050", UNSUB),
        ("meta", "131051", CONTENT),
        ("meta", "132000", CONTENT),
        ("meta", "132001", CONTENT),
        ("meta", "132012", CONTENT),
        ("meta", "130472", OTHER),
        ("meta", "10/2018278", WINDOW),
        ("meta", "551", UNSUB),
        ("meta", "551/1545041", UNSUB),  # a subcode not listed is looked up by its code
        (Provider.TELEGRAM, telegram_code(403, "Forbidden: bot was blocked by the user"), UNSUB),
        (Provider.TELEGRAM, telegram_code(400, "Bad Request: chat not found"), INVALID),
        (Provider.TELEGRAM, telegram_code(400, "Bad Request: can't parse entities: Can't find end of entity"), CONTENT),
        (Provider.TELEGRAM, telegram_code(403, "Forbidden: bot was kicked from the group chat"), UNSUB),
    ],
)
def test_known_codes_say_why_the_message_failed(provider: str, code: str | int, rejection: Rejection) -> None:
    assert rejection_for(provider, code) == rejection


@pytest.mark.parametrize(
    ("provider", "code"),
    [
        ("twilio", "30001"),  # queue overflow: transient
        ("twilio", "21408"),  # region not enabled: the account's problem, a human fixes it
        ("meta", "131000"),  # something went wrong
        ("meta", "131048"),  # spam rate limit: transient
        ("meta", "131056"),  # pair rate limit: transient
        ("meta", "10"),  # a permission error says nothing without its subcode
        ("meta", "10/20182789"),  # a subcode is matched whole, not by its beginning
        ("telegram", telegram_code(400, "Bad Request: not enough rights")),  # a 400 alone says nothing
        ("telegram", "429"),
        ("ses", "30003"),  # codes belong to their provider
        ("nobody", "30003"),
        ("twilio", None),
        ("twilio", ""),
        ("twilio", " "),
    ],
)
def test_anything_else_is_not_a_known_permanent_failure(provider: str, code: str | None) -> None:
    assert rejection_for(provider, code) is None


def test_the_table_has_one_row_per_code_and_a_reason_for_each() -> None:
    keys = Counter((entry.provider, entry.code) for entry in FAILURE_CODES)
    assert [key for key, count in keys.items() if count > 1] == []
    assert all(entry.meaning and entry.code == entry.code.strip() for entry in FAILURE_CODES)
    # Telegram rows are written as telegram_code writes them, or they could never match
    assert all(entry.code == entry.code.lower() for entry in FAILURE_CODES if entry.provider == Provider.TELEGRAM)


def test_telegram_codes_are_the_number_and_the_plain_description() -> None:
    assert telegram_code(403, "Forbidden: bot was blocked by the user") == "403/bot was blocked by the user"
    assert telegram_code("400", "  Bad Request: CHAT NOT FOUND ") == "400/chat not found"
    assert telegram_code(403, None) == "403"
    found = failure_code("telegram", "403/user is deactivated")
    assert found is not None
    assert (found.rejection, found.meaning) == (INVALID, "the user's account is deleted")
