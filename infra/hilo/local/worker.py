"""A Lambda-like execution environment for one function, run as its own process by the local twin.

Like Lambda it imports the handler once (the init phase), then serves invocations one at a time. Requests arrive
as JSON lines on stdin; results leave on a separate pipe so the function's own prints and logs (stdout/stderr)
stay logs. Run as ``python -m hilo.local.worker <code dir> <module.function> <result fd>``.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any


class LambdaContext:
    """The attributes and method of the context object Lambda passes to a Python handler."""

    def __init__(self, request_id: str, deadline_ms: int) -> None:
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = os.environ["HILO_LOCAL_FUNCTION_ARN"]
        self.memory_limit_in_mb = int(os.environ["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"])
        self.aws_request_id = request_id
        self.log_group_name = os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]
        self.log_stream_name = os.environ["AWS_LAMBDA_LOG_STREAM_NAME"]
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(error: BaseException) -> dict[str, Any]:
    return {
        "errorType": type(error).__name__,
        "errorMessage": str(error),
        "stackTrace": traceback.format_exception(error),
    }


def main() -> None:
    code_dir, handler_path, result_fd = sys.argv[1], sys.argv[2], int(sys.argv[3])
    results = os.fdopen(result_fd, "w", encoding="utf-8", buffering=1)
    sys.path.insert(0, code_dir)
    module_name, _, function_name = handler_path.rpartition(".")
    init_error: dict[str, Any] | None = None
    started = time.perf_counter()
    try:
        handler = getattr(importlib.import_module(module_name), function_name)
    except Exception as error:
        init_error = {**_error(error), "errorType": f"Runtime.ImportModuleError: {type(error).__name__}"}
    results.write(json.dumps({"ready": True, "init_ms": round((time.perf_counter() - started) * 1000, 1)}) + "\n")

    for line in sys.stdin:
        request = json.loads(line)
        reply: dict[str, Any] = {"id": request["id"]}
        if init_error is not None:
            reply["error"] = init_error
        else:
            try:
                context = LambdaContext(request["request_id"], request["deadline_ms"])
                reply["result"] = handler(request["event"], context)
                json.dumps(reply)  # an unserialisable result is the function's error, as in Lambda
            except Exception as error:
                reply = {"id": request["id"], "error": _error(error)}
        sys.stdout.flush()
        sys.stderr.flush()
        results.write(json.dumps(reply, default=str) + "\n")


if __name__ == "__main__":
    main()
