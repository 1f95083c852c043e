"""Ids, UTC instants and sortable timestamps."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.models import PROVIDERS_BY_CHANNEL, Channel, CustomerId, UtcDatetime, id_time, new_id, sortable_timestamp
from tests.unit.models.helpers import error_summary

ULID_BODY = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
INSTANTS = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC))


class Stamped(BaseModel):
    at: UtcDatetime


class Owned(BaseModel):
    customer_id: CustomerId


def test_new_id_has_prefix_and_ulid_body() -> None:
    # Given / When
    identifier = new_id("cus")

    # Then
    prefix, _, body = identifier.partition("_")
    assert prefix == "cus"
    assert ULID_BODY.fullmatch(body)


def _to_millis(value: datetime) -> datetime:
    return value.replace(microsecond=value.microsecond // 1000 * 1000)


@given(first=INSTANTS, second=INSTANTS)
def test_ids_encode_and_sort_like_their_instants(first: datetime, second: datetime) -> None:
    # Given / When
    early, late = new_id("msg", at=first), new_id("msg", at=second)

    # Then the id carries its millisecond, and ids of different milliseconds sort like them
    assert id_time(early) == _to_millis(first)
    if _to_millis(first) != _to_millis(second):
        assert (early < late) == (first < second)


def test_ids_minted_later_sort_later() -> None:
    # Given
    t0 = datetime(2024, 5, 1, tzinfo=UTC)

    # When
    ids = [new_id("tl", at=t0 + timedelta(milliseconds=step)) for step in (5, 0, 3, 1)]

    # Then
    assert sorted(ids) == [ids[1], ids[3], ids[2], ids[0]]


def test_seeded_ids_are_stable_and_unseeded_ids_are_not() -> None:
    # Given
    at = datetime(2024, 5, 1, tzinfo=UTC)

    # When / Then
    assert new_id("msg", at=at, seed="meta:wamid.1") == new_id("msg", at=at, seed="meta:wamid.1")
    assert new_id("msg", at=at, seed="meta:wamid.1") != new_id("msg", at=at, seed="meta:wamid.2")
    assert new_id("msg", at=at) != new_id("msg", at=at)


@pytest.mark.parametrize("prefix", ["", "c", "CUS", "cus_", "toolong"])
def test_new_id_rejects_malformed_prefix(prefix: str) -> None:
    # Given / When / Then
    with pytest.raises(ValueError, match="prefix"):
        new_id(prefix)


def test_new_id_rejects_naive_instant() -> None:
    # Given / When / Then
    with pytest.raises(ValueError, match="naive datetime"):
        new_id("cus", at=datetime(2024, 5, 1))


@pytest.mark.parametrize("value", ["cus", "cus_", "cus_01J9Z3K4Q8W5V6X7Y8Z9A0B1C", "cus_81J9Z3K4Q8W5V6X7Y8Z9A0B1C2"])
def test_id_time_rejects_non_ids(value: str) -> None:
    # Given / When / Then
    with pytest.raises(ValueError, match="not a Hilo id"):
        id_time(value)


def test_typed_id_rejects_an_id_of_another_kind() -> None:
    # Given
    conversation_id = new_id("conv")

    # When
    with pytest.raises(ValidationError) as excinfo:
        Owned(customer_id=conversation_id)

    # Then
    assert error_summary(excinfo) == [
        (("customer_id",), "Value error, expected 'cus_' + 26 Crockford base32 characters (customer id)")
    ]


def test_aware_datetimes_are_normalised_to_utc() -> None:
    # Given a Bogotá local time
    bogota = timezone(timedelta(hours=-5))

    # When
    stamped = Stamped(at=datetime(2024, 5, 1, 10, 30, tzinfo=bogota))

    # Then
    assert stamped.at == datetime(2024, 5, 1, 15, 30, tzinfo=UTC)
    assert stamped.at.utcoffset() == timedelta(0)
    assert stamped.model_dump_json() == '{"at":"2024-05-01T15:30:00Z"}'


@pytest.mark.parametrize("value", ["2024-05-01T10:30:00", datetime(2024, 5, 1, 10, 30)])
def test_naive_datetimes_are_rejected_with_a_clear_message(value: object) -> None:
    # Given / When
    with pytest.raises(ValidationError) as excinfo:
        Stamped.model_validate({"at": value})

    # Then
    [(location, message)] = error_summary(excinfo)
    assert location == ("at",)
    assert "naive datetime (no time zone)" in message
    assert "2024-05-01T12:00:00Z" in message


def test_sortable_timestamp_is_fixed_width() -> None:
    # Given an instant without microseconds, where pydantic's JSON form would be shorter
    at = datetime(2024, 5, 1, 12, tzinfo=UTC)

    # When / Then
    assert sortable_timestamp(at) == "2024-05-01T12:00:00.000000Z"
    assert sortable_timestamp(at.astimezone(timezone(timedelta(hours=-3)))) == "2024-05-01T12:00:00.000000Z"


@given(first=INSTANTS, second=INSTANTS)
def test_sortable_timestamps_sort_like_instants(first: datetime, second: datetime) -> None:
    # Given / When
    a, b = sortable_timestamp(first), sortable_timestamp(second)

    # Then
    assert len(a) == len(b) == 27
    assert (a < b) == (first < second)


def test_every_channel_has_a_provider() -> None:
    # Given / When / Then
    assert set(PROVIDERS_BY_CHANNEL) == set(Channel)
    assert all(PROVIDERS_BY_CHANNEL.values())
