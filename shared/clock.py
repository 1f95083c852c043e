"""The one place Hilo reads the time, so the local twin can move it forward for everyone.

In AWS this is the system clock. Under ``hilo dev`` every function process is given the path of a small JSON file
holding an offset in seconds (``hilo clock advance 3d`` writes it), so a three-day wait can be watched in seconds.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

LOCAL_CLOCK_FILE_ENV = "HILO_LOCAL_CLOCK_FILE"

_cache: tuple[int, float] = (-1, 0.0)


def offset_seconds() -> float:
    """The local twin's clock offset, 0 outside local mode. Re-read only when the file changes."""
    global _cache
    path = os.environ.get(LOCAL_CLOCK_FILE_ENV)
    if not path:
        return 0.0
    try:
        stamp = os.stat(path).st_mtime_ns
        if stamp != _cache[0]:
            with open(path, encoding="utf-8") as handle:
                _cache = (stamp, float(json.load(handle)["offset_seconds"]))
    except (OSError, ValueError, KeyError, TypeError):
        return _cache[1]
    return _cache[1]


def now() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC) + timedelta(seconds=offset_seconds())
