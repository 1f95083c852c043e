"""Runs functions the way Lambda does: one process per execution environment, created on demand, reused warm.

Each function has a pool of up to ``concurrency`` workers. A worker has the function's own environment variables,
imports its handler once (cold start) and serves one invocation at a time. An invocation past the function's
Timeout kills the worker, as Lambda ends the sandbox, and is reported as a timeout error.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LogSink = Callable[[str, str], None]  # (function logical id, one line the function wrote)


@dataclass(frozen=True)
class FunctionSpec:
    """What the twin needs to run one function, already resolved from the template."""

    logical_id: str
    name: str
    arn: str
    code_dir: Path
    handler: str
    timeout_s: float
    memory_mb: int
    environment: Mapping[str, str]
    events: Mapping[str, Mapping[str, Any]]


class InvocationError(Exception):
    """The function raised, timed out or could not start; ``payload`` is Lambda's error shape."""

    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__(f"{payload.get('errorType')}: {payload.get('errorMessage')}")
        self.payload = payload


class _Worker:
    def __init__(self, spec: FunctionSpec, base_env: Mapping[str, str], log: LogSink) -> None:
        self.spec = spec
        read_fd, write_fd = os.pipe()
        env = {**base_env, **spec.environment}
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-m", "hilo.local.worker", str(spec.code_dir), spec.handler, str(write_fd)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=(write_fd,),
            text=True,
            cwd=str(spec.code_dir),
        )
        os.close(write_fd)
        self.results = os.fdopen(read_fd, encoding="utf-8")
        self._ids = itertools.count()
        threading.Thread(target=self._forward_logs, args=(log,), daemon=True, name=f"log-{spec.logical_id}").start()
        ready = self._read(deadline=time.monotonic() + max(30.0, spec.timeout_s))
        self.init_ms = float(ready.get("init_ms", 0.0)) if ready else 0.0
        if ready is None:
            self.kill()
            raise InvocationError({"errorType": "Runtime.InitError", "errorMessage": "worker did not start"})

    def _forward_logs(self, log: LogSink) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            log(self.spec.logical_id, line.rstrip("\n"))

    def _read(self, deadline: float) -> dict[str, Any] | None:
        result: list[dict[str, Any]] = []

        def read() -> None:
            line = self.results.readline()
            if line:
                result.append(json.loads(line))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        reader.join(max(0.0, deadline - time.monotonic()))
        return result[0] if result else None

    def invoke(self, event: Any) -> Any:
        request_id = str(uuid.uuid4())
        deadline = time.time() + self.spec.timeout_s
        request = {"id": next(self._ids), "request_id": request_id, "deadline_ms": int(deadline * 1000), "event": event}
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise InvocationError({"errorType": "Runtime.ExitError", "errorMessage": str(error)}) from error
        reply = self._read(deadline=time.monotonic() + self.spec.timeout_s)
        if reply is None:
            alive = self.process.poll() is None
            self.kill()
            message = (
                f"Task timed out after {self.spec.timeout_s:.2f} seconds"
                if alive
                else f"Runtime exited with code {self.process.returncode}"
            )
            raise InvocationError(
                {"errorType": "Sandbox.Timedout" if alive else "Runtime.ExitError", "errorMessage": message}
            )
        if "error" in reply:
            raise InvocationError(reply["error"])
        return reply.get("result")

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


class FunctionPool:
    """Up to ``concurrency`` warm workers of one function; invocations beyond that wait their turn."""

    def __init__(self, spec: FunctionSpec, base_env: Mapping[str, str], log: LogSink, concurrency: int = 2) -> None:
        self.spec = spec
        self._base_env = base_env
        self._log = log
        self._idle: list[_Worker] = []
        self._count = 0
        self._concurrency = concurrency
        self._lock = threading.Condition()
        self._closed = False
        self.cold_starts = 0
        self.invocations = 0

    def _acquire(self) -> _Worker | None:
        with self._lock:
            while True:
                if self._closed:
                    raise InvocationError(
                        {"errorType": "Runtime.Shutdown", "errorMessage": "the local stack is stopping"}
                    )
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive:
                        return worker
                    self._count -= 1
                if self._count < self._concurrency:
                    self._count += 1
                    return None  # caller starts a new worker outside the lock
                self._lock.wait()

    def _release(self, worker: _Worker | None) -> None:
        with self._lock:
            if worker is not None and worker.alive and not self._closed:
                self._idle.append(worker)
            else:
                self._count -= 1
                if worker is not None:
                    worker.kill()
            self._lock.notify()

    def invoke(self, event: Any) -> Any:
        """Run the function on ``event`` and return its result, or raise InvocationError."""
        worker = self._acquire()
        try:
            if worker is None:
                worker = _Worker(self.spec, self._base_env, self._log)
                self.cold_starts += 1
            self.invocations += 1
            return worker.invoke(event)
        finally:
            self._release(worker)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._idle = self._idle, []
            self._lock.notify_all()
        for worker in workers:
            worker.kill()
