"""A company's webhook receiver (a CRM) on 127.0.0.1, for the tests of workflow webhooks.

It speaks plain HTTP: every request is recorded as it arrived, and answered from a script the test sets, so a test
can see exactly what Hilo sent (headers, signature, raw body) and how it reacts to refusals, outages and slowness.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request the CRM got, and the status it answered."""

    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: bytes
    at: float
    status: int

    @property
    def payload(self) -> Any:
        """The body as JSON (what Hilo sent is always JSON)."""
        return json.loads(self.body)


@dataclass
class Answer:
    """What the CRM answers to one request: ``body`` is sent as JSON (none if None), after ``delay`` seconds."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Crm:
    """Records every request; answers with the scripted answers in order, then 200 ``{"ok": true}``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._script: list[Answer] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        """The base URL, without a path: tests append the hook's."""
        return f"http://{self.host}"

    @property
    def host(self) -> str:
        """``127.0.0.1:port``, as Hilo's errors name a receiver."""
        return f"127.0.0.1:{self._server.server_address[1]}"

    def answer(self, *answers: Answer | int) -> None:
        """Script the next answers; a plain status answers ``{"ok": status < 300}``."""
        scripted = [item if isinstance(item, Answer) else Answer(item, {"ok": item < 300}) for item in answers]
        with self._lock:
            self._script.extend(scripted)

    def take(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        """Record a request with the answer it gets next."""
        at = time.time()
        with self._lock:
            answer = self._script.pop(0) if self._script else Answer(200, {"ok": True})
            self.received.append(Received(method, path, headers, body, at, answer.status))
            return answer

    def succeeded(self) -> list[Received]:
        """The requests answered with a 2xx."""
        return [request for request in self.received if 200 <= request.status < 300]

    def clear(self) -> None:
        """Forget the requests and the script (between tests sharing one server)."""
        with self._lock:
            self.received.clear()
            self._script.clear()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Crm:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def running_crm() -> Iterator[Crm]:
    """A started CRM, stopped afterwards: the body of a fixture (``yield from running_crm()``)."""
    with Crm() as crm:
        yield crm


def _handler(crm: Crm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            headers = {name.lower(): value for name, value in self.headers.items()}
            answer = crm.take("POST", self.path, headers, body)
            time.sleep(answer.delay)
            payload = b"" if answer.body is None else json.dumps(answer.body).encode()
            try:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
            except OSError:
                pass  # the client gave up waiting (a timeout test)

        def log_message(self, *_: Any) -> None:
            pass

    return Handler
