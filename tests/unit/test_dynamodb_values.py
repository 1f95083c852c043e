"""Plain values survive the trip through DynamoDB's attribute format (the one mapping every table adapter uses)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.adapters.dynamodb import from_attribute, from_item, to_attribute, to_item

json_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**15), 10**15) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300)
@given(json_like)
def test_json_like_values_round_trip(value: Any) -> None:
    assert from_attribute(to_attribute(value)) == value


def test_items_leave_out_none_so_sparse_indexes_stay_sparse_and_times_sort_as_text() -> None:
    at = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    item = to_item({"pk": "CUST#1", "gsi2pk": None, "at": at, "channels": {"sms", "whatsapp"}, "n": 1.5})
    assert "gsi2pk" not in item
    assert item["at"] == {"S": "2026-11-23T12:00:00.000000Z"}
    assert item["channels"] == {"SS": ["sms", "whatsapp"]}
    assert from_item(item) == {"pk": "CUST#1", "at": "2026-11-23T12:00:00.000000Z", "channels": {"sms", "whatsapp"},
                               "n": 1.5}  # fmt: skip


def test_values_dynamodb_cannot_hold_are_refused() -> None:
    with pytest.raises(TypeError):
        to_attribute(object())
