"""Prints what functions log: Powertools' JSON lines as readable one-liners in a terminal, or raw JSON."""

from __future__ import annotations

import json
import threading
from datetime import datetime
from typing import Any, TextIO

_STANDARD_KEYS = {"level", "location", "message", "timestamp", "service", "xray_trace_id", "sampling_rate"}
_COLORS = {"DEBUG": "\033[90m", "INFO": "\033[36m", "WARNING": "\033[33m", "ERROR": "\033[31m", "CRITICAL": "\033[41m"}


class LogPrinter:
    """Serialises lines from many worker processes onto one stream."""

    def __init__(self, stream: TextIO, *, pretty: bool) -> None:
        self.stream = stream
        self.pretty = pretty
        self.color = pretty and stream.isatty()
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text + "\n")
            self.stream.flush()

    def stack_line(self, text: str) -> None:
        """A line from the twin itself."""
        self._write(f"{datetime.now():%H:%M:%S} [hilo-dev] {text}")

    def function_line(self, function: str, line: str) -> None:
        """A line a function wrote to stdout/stderr."""
        if not self.pretty:
            self._write(line)
            return
        try:
            record: Any = json.loads(line)
        except ValueError:
            record = None
        if not isinstance(record, dict) or "message" not in record:
            self._write(f"{datetime.now():%H:%M:%S} [{function}] {line}")
            return
        level = str(record.get("level", "INFO"))
        extras = " ".join(
            f"{key}={json.dumps(value, ensure_ascii=False, default=str)}"
            for key, value in record.items()
            if key not in _STANDARD_KEYS and key != "exception"
        )
        painted = f"{_COLORS.get(level, '')}{level:<7}\033[0m" if self.color else f"{level:<7}"
        self._write(f"{datetime.now():%H:%M:%S} [{function}] {painted} {record['message']} {extras}".rstrip())
        if record.get("exception"):
            self._write(str(record["exception"]))
