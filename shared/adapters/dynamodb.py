"""DynamoDB's attribute values, to and from plain Python: one mapping for every table adapter.

boto3's ``TypeSerializer`` would do, but importing ``boto3.dynamodb`` imports boto3 (and s3transfer) at cold start;
the items Hilo stores are JSON-like values, datetimes and string sets, which this covers exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from shared.models.common import sortable_timestamp


def to_attribute(value: Any) -> dict[str, Any]:
    """One Python value as a DynamoDB attribute value (JSON-like values, plus sets of strings)."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | float):
        return {"N": repr(value) if isinstance(value, float) else str(value)}
    if value is None:
        return {"NULL": True}
    if isinstance(value, datetime):
        return {"S": sortable_timestamp(value)}
    if isinstance(value, frozenset | set):
        return {"SS": sorted(str(item) for item in value)}
    if isinstance(value, Mapping):
        return {"M": {str(key): to_attribute(item) for key, item in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(item) for item in value]}
    raise TypeError(f"cannot store a {type(value).__name__}")


def from_attribute(attribute: Mapping[str, Any]) -> Any:
    """The Python value of a DynamoDB attribute value (numbers come back as int or float)."""
    (kind, value), *_ = attribute.items()
    if kind == "S" or kind == "BOOL":
        return value
    if kind == "N":
        number = str(value)
        return int(number) if number.lstrip("-").isdigit() else float(number)
    if kind == "NULL":
        return None
    if kind == "M":
        return {key: from_attribute(item) for key, item in value.items()}
    if kind == "L":
        return [from_attribute(item) for item in value]
    if kind == "SS":
        return set(value)
    raise TypeError(f"unexpected attribute type {kind}")


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """A whole item; ``None`` values are left out (absent, not NULL), so a sparse index stays sparse."""
    return {name: to_attribute(value) for name, value in values.items() if value is not None}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item as plain Python values."""
    return {name: from_attribute(value) for name, value in item.items()}
