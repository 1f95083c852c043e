"""Reading pydantic errors in assertions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError


def error_summary(excinfo: pytest.ExceptionInfo[ValidationError]) -> list[tuple[tuple[int | str, ...], str]]:
    """Return ``(location, message)`` for each error, for assertions that do not depend on pydantic's URLs."""
    return [(tuple(error["loc"]), error["msg"]) for error in excinfo.value.errors()]
