"""`hilo dev` as a newcomer runs it: a real process that prints its routes, serves them and stops on Ctrl-C."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hilo.local.stack import free_port
from tests.conftest import ROOT
from tests.helpers import http

pytestmark = pytest.mark.stack

HILO = Path(sys.executable).parent / "hilo"


def test_hilo_dev_serves_prints_routes_moves_its_clock_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    # Given `hilo dev` started on free ports
    port, aws_port = free_port(), free_port()
    env = {**os.environ, "HILO_PUBLIC_URL": "https://example.ngrok.app"}
    process = subprocess.Popen(
        [str(HILO), "dev", "--port", str(port), "--aws-port", str(aws_port), "--stack-name", "clitest", "--json-logs"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            output.append(line)
            if "Press Ctrl-C to stop." in line or not line:
                break
        banner = "".join(output)
        # Then it printed the routes and the AWS endpoint
        assert "GET /health" in banner
        assert "POST /webhooks/twilio/messages" in banner
        assert f"http://127.0.0.1:{aws_port}" in banner
        # And it serves them
        assert http("GET", f"http://127.0.0.1:{port}/health").status == 200
        # And `hilo clock advance` moves its clock
        advanced = subprocess.run(
            [str(HILO), "clock", "advance", "1d12h", "--url", f"http://127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert advanced.returncode == 0, advanced.stderr
        assert "offset 129600 s" in advanced.stdout
    finally:
        # When Ctrl-C arrives
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=30)
    # Then it stops cleanly, saying so
    assert process.returncode == 0, rest
    assert "Stopped." in rest
    assert "Traceback" not in rest


def test_hilo_clock_says_clearly_when_no_stack_is_running() -> None:
    result = subprocess.run(
        [str(HILO), "clock", "show", "--url", f"http://127.0.0.1:{free_port()}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert "is `hilo dev` running" in result.stderr


def test_hilo_dev_refuses_a_busy_port_clearly_instead_of_hanging() -> None:
    # Given something already listening on the AWS port
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        aws_port = busy.getsockname()[1]
        # When hilo dev starts on it
        result = subprocess.run(
            [str(HILO), "dev", "--port", str(free_port()), "--aws-port", str(aws_port)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    # Then it says which port and which option, and exits
    assert result.returncode == 2
    assert f"127.0.0.1:{aws_port} is already in use" in result.stderr
    assert "--aws-port" in result.stderr
