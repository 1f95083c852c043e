"""The movable local clock and the `hilo` command's argument parsing."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hilo.cli import build_parser, parse_duration
from shared import clock


def test_outside_local_mode_the_clock_is_the_system_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(clock.LOCAL_CLOCK_FILE_ENV, raising=False)
    assert abs(clock.now() - datetime.now(UTC)) < timedelta(seconds=1)


def test_in_local_mode_the_clock_follows_the_twins_offset(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "clock.json"
    path.write_text(json.dumps({"offset_seconds": 3 * 86400}))
    monkeypatch.setenv(clock.LOCAL_CLOCK_FILE_ENV, str(path))
    assert clock.now() - datetime.now(UTC) > timedelta(days=3) - timedelta(seconds=1)
    assert clock.now().tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "seconds"), [("3d", 259200), ("1d12h", 129600), ("90m", 5400), ("45s", 45), ("1w", 604800), ("30", 30)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "3x", "d3", "1d 2h", "-1d"])
def test_bad_durations_are_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not a duration"):
        parse_duration(text)


def test_dev_defaults_match_the_contract() -> None:
    args = build_parser().parse_args(["dev"])
    assert (args.port, args.aws_port, args.host) == (3000, 4566, "127.0.0.1")
