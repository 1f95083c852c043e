"""The local twin: template.yaml running on an embedded moto server, with no Docker and no AWS account.

``LocalStack`` starts moto, creates the template's resources, serves the HTTP API, polls the queues and fires
rate schedules, each function running in its own Lambda-like worker processes. ``hilo dev`` and the tests use it
the same way.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Final, TextIO

import boto3
from botocore.config import Config

from hilo.local.apigw import Cors, HttpApi, HttpRequest, HttpResponse, serve
from hilo.local.event_sources import RateSchedule, SqsMapping, SqsPoller, rate_seconds, scheduled_event
from hilo.local.fake_providers import FakeProviders, StatusCallbacks
from hilo.local.logs import LogPrinter
from hilo.local.provision import ProvisionedStack, StackContext, provision
from hilo.local.runtime import FunctionPool, FunctionSpec, InvocationError
from hilo.local.template import TemplateError, load_template, parameter_values
from hilo.local.timers import OneTimeSchedules
from shared.clock import LOCAL_CLOCK_FILE_ENV
from shared.routes import DEFAULT_ROUTE
from shared.settings import CONFIG_KEYS, LOCAL_MODE_ENV

ACCOUNT_ID = "123456789012"  # moto's default account
CLOCK_ROUTE = "/_dev/clock"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for tests that run several stacks)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclass
class StackConfig:
    """How to run the twin. Defaults are ``hilo dev``'s."""

    template_path: Path
    stack_name: str = "hilo"
    host: str = "127.0.0.1"
    port: int = 3000
    aws_port: int = 4566
    region: str = "us-east-1"
    parameters: Mapping[str, str] = field(default_factory=dict)
    concurrency: int = 2
    state_dir: Path | None = None
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    output: TextIO = sys.stdout
    pretty_logs: bool = True
    #: Run the fake provider server (Twilio, Meta, Telegram on 127.0.0.1) and point the senders at it, unless the
    #: environment names a provider API URL of its own; so outbound messages leave without any account.
    fake_providers: bool = True


class LocalClock:
    """The twin's movable clock, shared with every worker through a small JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._write(0.0)

    def _write(self, offset: float) -> None:
        temporary = self.path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"offset_seconds": offset}), encoding="utf-8")
        temporary.replace(self.path)
        self.offset = offset

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.offset)

    def advance(self, seconds: float) -> datetime:
        if seconds < 0:
            raise ValueError("the local clock only moves forward")
        with self._lock:
            self._write(self.offset + seconds)
        return self.now()


class LocalStack:
    """One running twin of template.yaml. Use as a context manager, or ``start()``/``stop()``."""

    timers: OneTimeSchedules | None = None  # EventBridge Scheduler's at() schedules, once event sources start
    fake_providers: FakeProviders | None = None  # the provider APIs the senders call, unless real ones are set

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.template_dir = config.template_path.resolve().parent
        self.printer = LogPrinter(config.output, pretty=config.pretty_logs)
        self.pools: dict[str, FunctionPool] = {}
        self.routes: dict[str, str] = {}  # route key -> function logical id
        self.pollers: list[SqsPoller] = []
        self.schedules: list[RateSchedule] = []
        self.notices: list[str] = []
        self.provisioned: ProvisionedStack | None = None
        self._moto: Any = None
        self._http: Any = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------ public surface
    @property
    def api_url(self) -> str:
        return f"http://{self.config.host}:{self.config.port}"

    @property
    def aws_endpoint(self) -> str:
        return f"http://{self.config.host}:{self.config.aws_port}"

    def client(self, service: str) -> Any:
        """A boto3 client bound to the embedded moto server (never to a real account)."""
        return boto3.client(
            service,
            endpoint_url=self.aws_endpoint,
            region_name=self.config.region,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
            config=Config(retries={"max_attempts": 2, "mode": "standard"}),
        )

    def physical_id(self, logical_id: str) -> str:
        """What ``!Ref logical_id`` resolves to locally (queue URL, table name, topic ARN...)."""
        assert self.provisioned is not None
        return self.provisioned.physical[logical_id].ref

    def attribute(self, logical_id: str, name: str) -> str:
        """What ``!GetAtt logical_id.name`` resolves to locally."""
        assert self.provisioned is not None
        return self.provisioned.physical[logical_id].attributes[name]

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # ------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start moto, create the resources, start the function runtimes, pollers and the HTTP API."""
        template = load_template(self.config.template_path)
        parameters = parameter_values(template, self.config.parameters)
        state_dir = self.config.state_dir or self.template_dir / ".hilo" / self.config.stack_name
        state_dir.mkdir(parents=True, exist_ok=True)
        self.clock = LocalClock(state_dir / "clock.json")
        for port, flag in ((self.config.port, "--port"), (self.config.aws_port, "--aws-port")):
            _ensure_free(self.config.host, port, flag)
        self._start_moto()
        context = StackContext(self.config.stack_name, self.config.region, ACCOUNT_ID, self.client)
        # Unset provider secrets get well-known local values, so a fresh `hilo dev` accepts requests signed by
        # `hilo demo` or a developer's curl; the ConfigSecret holds what is in force (`hilo demo` reads it there).
        given = {key: self.config.environ[key] for key in CONFIG_KEYS if self.config.environ.get(key)}
        overlay = {**LOCAL_SECRETS, "HILO_PUBLIC_URL": self.api_url, **given}
        overlay = {**overlay, **self._start_fake_providers(overlay, given)}
        self.provisioned = provision(template, context, parameters, secret_overlay=overlay)
        for logical_id, reason in self.provisioned.skipped.items():
            self.notices.append(f"{logical_id}: {reason}")
        self._build_functions(template)
        self._start_http(template)
        self._start_event_sources()

    def _start_fake_providers(self, overlay: Mapping[str, str], given: Mapping[str, str]) -> dict[str, str]:
        """Start the fake provider server unless disabled or a real provider URL is configured; its settings."""
        if not self.config.fake_providers or any(key in given for key in PROVIDER_URL_KEYS):
            return {}
        fake = FakeProviders(
            twilio_auth_token=overlay["HILO_TWILIO_AUTH_TOKEN"],
            callbacks=StatusCallbacks(overlay["HILO_PUBLIC_URL"], meta_app_secret=overlay["HILO_META_APP_SECRET"]),
        )
        self.fake_providers = fake.start()
        # E-mail goes through SES on moto, which accepts only verified identities, as SES does.
        settings = {**fake.environ(), "HILO_EMAIL_FROM": LOCAL_EMAIL_FROM}
        sender = given.get("HILO_EMAIL_FROM", LOCAL_EMAIL_FROM)
        self.client("sesv2").create_email_identity(EmailIdentity=parseaddr(sender)[1])
        # What the operator configured wins; the fake fills in the rest (its URL and the credentials it accepts).
        return {key: value for key, value in settings.items() if key not in given}

    def stop(self) -> None:
        """Stop accepting work, let in-flight work end, then stop every process and server."""
        self._stopping.set()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        for poller in self.pollers:
            poller.stop()
        for poller in self.pollers:
            poller.join(timeout=5)
        for thread in self._threads:
            thread.join(timeout=5)
        for pool in self.pools.values():
            pool.close()
        if self.fake_providers is not None:
            self.fake_providers.stop()
        if self._moto is not None:
            self._moto.stop()

    def _start_moto(self) -> None:
        from moto.server import ThreadedMotoServer

        from hilo.local import moto_fidelity

        moto_fidelity.apply()
        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
        self._moto = ThreadedMotoServer(ip_address=self.config.host, port=self.config.aws_port, verbose=False)
        self._moto.start()

    # ------------------------------------------------------------ functions
    def worker_environment(self) -> dict[str, str]:
        """The environment every function process starts from (its own variables are added on top)."""
        # Real AWS credentials and profiles never reach a local function: everything goes to moto.
        env = {k: v for k, v in self.config.environ.items() if not k.startswith(("AWS_", "HILO_LOCAL"))}
        env.update(
            {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_SESSION_TOKEN": "testing",
                "AWS_DEFAULT_REGION": self.config.region,
                "AWS_REGION": self.config.region,
                "AWS_ENDPOINT_URL": self.aws_endpoint,
                "AWS_EXECUTION_ENV": "AWS_Lambda_python_local_twin",
                LOCAL_MODE_ENV: "true",
                LOCAL_CLOCK_FILE_ENV: str(self.clock.path),
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        return env

    def _build_functions(self, template: Mapping[str, Any]) -> None:
        assert self.provisioned is not None
        base_env = self.worker_environment()
        for logical_id, props in self.provisioned.run_by_twin.items():
            if template["Resources"][logical_id]["Type"] != "AWS::Serverless::Function":
                continue
            name = self.physical_id(logical_id)
            variables = (props.get("Environment") or {}).get("Variables") or {}
            code_uri = props.get("CodeUri")
            if not isinstance(code_uri, str):
                raise TemplateError(f"{logical_id}: the local twin needs CodeUri to be a local folder")
            spec = FunctionSpec(
                logical_id=logical_id,
                name=name,
                arn=self.attribute(logical_id, "Arn"),
                code_dir=(self.template_dir / code_uri).resolve(),
                handler=props.get("Handler", "handler.lambda_handler"),
                timeout_s=float(props.get("Timeout", 3)),
                memory_mb=int(props.get("MemorySize", 128)),
                environment={
                    **{
                        key: str(value).lower() if isinstance(value, bool) else str(value)
                        for key, value in variables.items()
                    },
                    "AWS_LAMBDA_FUNCTION_NAME": name,
                    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
                    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(props.get("MemorySize", 128)),
                    "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
                    "AWS_LAMBDA_LOG_STREAM_NAME": f"local/{logical_id}",
                    "HILO_LOCAL_FUNCTION_ARN": self.attribute(logical_id, "Arn"),
                    "_HANDLER": props.get("Handler", "handler.lambda_handler"),
                },
                events=props.get("Events") or {},
            )
            if not (spec.code_dir / (spec.handler.rpartition(".")[0].replace(".", "/") + ".py")).exists():
                raise TemplateError(f"{logical_id}: handler {spec.handler} not found in {code_uri}")
            self.pools[logical_id] = FunctionPool(spec, base_env, self.printer.function_line, self.config.concurrency)

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Invoke a function directly, as ``aws lambda invoke`` would (raises InvocationError on failure)."""
        return self.pools[logical_id].invoke(event)

    # ------------------------------------------------------------ HTTP API
    def _start_http(self, template: Mapping[str, Any]) -> None:
        apis = [lid for lid, res in template["Resources"].items() if res["Type"] == "AWS::Serverless::HttpApi"]
        assert self.provisioned is not None
        apis = [api for api in apis if api in self.provisioned.run_by_twin]
        if len(apis) > 1:
            raise TemplateError("the local twin serves one AWS::Serverless::HttpApi; the template declares several")
        api_id = self.physical_id(apis[0]) if apis else "local"
        routes: dict[str, FunctionPool] = {}
        api_auth = (self.provisioned.run_by_twin[apis[0]].get("Auth") or {}) if apis else {}
        jwt_authorizers = {
            name for name, config in (api_auth.get("Authorizers") or {}).items() if "JwtConfiguration" in config
        }
        bearer_routes: set[str] = set()
        for name in sorted(jwt_authorizers):
            self.notices.append(
                f"{name}: JWT authorizer asks for a bearer token but does not verify it locally; "
                "the functions accept HILO_DEV_TOKEN (local mode only)"
            )
        for logical_id, pool in self.pools.items():
            for event_name, event in pool.spec.events.items():
                if event.get("Type") != "HttpApi":
                    continue
                props = event.get("Properties") or {}
                path, method = props.get("Path"), str(props.get("Method", "ANY")).upper()
                key = (
                    DEFAULT_ROUTE
                    if path in (None, DEFAULT_ROUTE)
                    else f"{'ANY' if method == 'X-AMAZON-APIGATEWAY-ANY-METHOD' else method} {path}"
                )
                if key in routes:
                    raise TemplateError(f"route {key} is declared twice ({logical_id}.{event_name})")
                routes[key] = pool
                self.routes[key] = logical_id
                authorizer = (props.get("Auth") or {}).get("Authorizer", api_auth.get("DefaultAuthorizer"))
                if authorizer in jwt_authorizers:
                    bearer_routes.add(key)
        if apis:
            gateway = self.client("apigatewayv2")
            for key in routes:
                gateway.create_route(ApiId=api_id, RouteKey=key)
        cors = None
        if apis:
            config = self.provisioned.run_by_twin[apis[0]].get("CorsConfiguration")
            if isinstance(config, dict):
                cors = Cors(
                    allow_origins=tuple(config.get("AllowOrigins", [])),
                    allow_methods=tuple(config.get("AllowMethods", [])),
                    allow_headers=tuple(config.get("AllowHeaders", [])),
                    max_age=config.get("MaxAge"),
                )
        api = HttpApi(
            routes, api_id, ACCOUNT_ID, cors, local_routes={CLOCK_ROUTE: self._clock_route}, bearer_routes=bearer_routes
        )
        self._http = serve(api, self.config.host, self.config.port)
        self._spawn(self._http.serve_forever, "http-api")

    def _clock_route(self, request: HttpRequest) -> HttpResponse:
        """GET/POST /_dev/clock: read or move the local clock (local mode only, not part of template.yaml)."""

        def answer(status: int, body: dict[str, Any]) -> HttpResponse:
            return HttpResponse(status, [("content-type", "application/json")], json.dumps(body).encode())

        if request.method == "POST":
            try:
                document = json.loads(request.body or b"{}")
                seconds = float(document["advance_seconds"])
                self.clock.advance(seconds)
            except (ValueError, KeyError, TypeError) as error:
                reason = "a non-negative number" if isinstance(error, ValueError) else "required"
                return answer(400, {"error": "invalid_input", "message": f"advance_seconds is {reason}."})
            self._fire_due_schedules()
        elif request.method != "GET":
            return HttpResponse(
                405,
                [("content-type", "application/json"), ("allow", "GET, POST")],
                b'{"error": "method_not_allowed", "message": "Use GET or POST."}',
            )
        return answer(200, {"now": self.clock.now().isoformat(), "offset_seconds": self.clock.offset})

    # ------------------------------------------------------------ event sources
    def _start_event_sources(self) -> None:
        assert self.provisioned is not None
        queues_by_arn = {
            physical.attributes["Arn"]: physical.ref
            for logical_id, physical in self.provisioned.physical.items()
            if self.provisioned.created.get(logical_id) == "AWS::SQS::Queue"
        }
        now = self.clock.now().timestamp()
        for logical_id, pool in self.pools.items():
            for event_name, event in pool.spec.events.items():
                kind, props = event.get("Type"), event.get("Properties") or {}
                if kind == "SQS":
                    arn = props["Queue"]
                    if arn not in queues_by_arn:
                        raise TemplateError(f"{logical_id}.{event_name}: queue {arn} is not declared in the template")
                    mapping = SqsMapping(
                        function=logical_id,
                        queue_arn=arn,
                        queue_url=queues_by_arn[arn],
                        batch_size=int(props.get("BatchSize", 10)),
                        batching_window_s=float(props.get("MaximumBatchingWindowInSeconds", 0)),
                        report_batch_item_failures="ReportBatchItemFailures"
                        in (props.get("FunctionResponseTypes") or []),
                        enabled=str(props.get("Enabled", True)).lower() != "false",
                    )
                    if mapping.enabled:
                        self.pollers.append(
                            SqsPoller(mapping, pool, self.client("sqs"), self.config.region, self.printer.stack_line)
                        )
                elif kind in ("Schedule", "ScheduleV2"):
                    expression = props.get("Schedule") or props.get("ScheduleExpression") or ""
                    every = rate_seconds(expression)
                    if every is None:
                        self.notices.append(
                            f"{logical_id}.{event_name}: schedule {expression!r} is not run locally (rate() only)"
                        )
                        continue
                    raw_input = props.get("Input")
                    self.schedules.append(
                        RateSchedule(
                            logical_id,
                            f"{logical_id}-{event_name}",
                            every,
                            json.loads(raw_input) if raw_input else None,
                            now + every,
                        )
                    )
                elif kind != "HttpApi":
                    self.notices.append(f"{logical_id}.{event_name}: {kind} events are not emulated locally")
        for poller in self.pollers:
            poller.start()
        # One-time schedules (durable timers) may be created by any function at any time, so the loop always runs.
        self.timers = OneTimeSchedules(self.client("sqs"), self.config.region, ACCOUNT_ID, self.printer.stack_line)
        self._spawn(self._schedule_loop, "schedules")

    def _fire_due_schedules(self) -> None:
        now = self.clock.now()
        for schedule in self.schedules:
            if now.timestamp() < schedule.next_at:
                continue
            while schedule.next_at <= now.timestamp():  # like EventBridge, missed runs are not replayed
                schedule.next_at += schedule.every_s
            try:
                self.pools[schedule.function].invoke(scheduled_event(schedule, ACCOUNT_ID, self.config.region, now))
            except InvocationError as error:
                self.printer.stack_line(f"schedule {schedule.name} failed: {error}")
        if self.timers is not None:
            self.timers.fire_due(now)

    def _schedule_loop(self) -> None:
        while not self._stopping.wait(0.5):
            self._fire_due_schedules()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, daemon=True, name=name)
        thread.start()
        self._threads.append(thread)

    # ------------------------------------------------------------ banner
    def _dev_token(self) -> str:
        return self.config.environ.get("HILO_DEV_TOKEN") or LOCAL_SECRETS["HILO_DEV_TOKEN"]

    def banner(self) -> str:
        """What ``hilo dev`` prints once everything is up."""
        assert self.provisioned is not None
        width = max((len(key) for key in self.routes), default=10)
        lines = [
            f"Hilo local stack '{self.config.stack_name}' from {self.config.template_path}",
            f"  HTTP API     {self.api_url}",
            f"  AWS (moto)   {self.aws_endpoint}    e.g. aws --endpoint-url {self.aws_endpoint} sqs list-queues",
            f"  Local clock  {self.clock.now().isoformat(timespec='seconds')}    move it: hilo clock advance 3d",
            f"  Agent API    Authorization: Bearer {self._dev_token()}    try: hilo demo broken-tv",
            *(
                [
                    f"  Providers    {self.fake_providers.url}    (fake Twilio, Meta, Telegram: sends land here; "
                    "a number ending 0000-0005 fails on purpose)"
                ]
                if self.fake_providers is not None
                else []
            ),
            "",
            "  Routes:",
            *(
                f"    {key:<{width}}  -> {fn}"
                for key, fn in sorted(
                    self.routes.items(), key=lambda kv: (kv[0] == DEFAULT_ROUTE, kv[0].split(" ")[-1], kv[0])
                )
            ),
            "",
            "  Queues -> functions:",
            *(
                f"    {p.mapping.queue_url.rsplit('/', 1)[-1]} -> {p.mapping.function} (batch {p.mapping.batch_size}"
                f"{', partial failures' if p.mapping.report_batch_item_failures else ''})"
                for p in self.pollers
            ),
            *([] if self.pollers else ["    (none yet)"]),
            "",
            "  Resources: "
            + ", ".join(
                f"{count} {kind.split('::')[-1]}"
                for kind, count in sorted(_count(self.provisioned.created.values()).items())
            ),
        ]
        if self.notices:
            lines += ["", "  Not emulated locally:", *(f"    {notice}" for notice in self.notices)]
        lines += ["", "Press Ctrl-C to stop."]
        return "\n".join(lines)


#: The local twin's provider secrets when the environment sets none. Local only: AWS reads the real ones from the
#: configuration secret, and the dev token is refused there whatever its value.
#: The local sender of e-mail (verified in moto's SES at start).
LOCAL_EMAIL_FROM: Final = "Hilo local <hola@hilo.example>"
#: Settings that point the senders at a provider's real (or another) API: when one is set, no fake server runs.
PROVIDER_URL_KEYS: Final = ("HILO_TWILIO_API_URL", "HILO_META_GRAPH_URL", "HILO_TELEGRAM_API_URL")

LOCAL_SECRETS: Final = {
    "HILO_TWILIO_AUTH_TOKEN": "local-twilio-auth-token",
    "HILO_META_APP_SECRET": "local-meta-app-secret",
    "HILO_META_VERIFY_TOKEN": "local-meta-verify-token",
    "HILO_TELEGRAM_SECRET_TOKEN": "local-telegram-secret-token",
    "HILO_SENDGRID_USER": "parse",
    "HILO_SENDGRID_PASSWORD": "local-sendgrid-password",
    "HILO_DEV_TOKEN": "local-dev-token",
}


def config_secret_name(stack_name: str) -> str:
    """Where the twin keeps the configuration in force (the template's ConfigSecret)."""
    return f"{stack_name}-ConfigSecret"


def _ensure_free(host: str, port: int, flag: str) -> None:
    """Fail fast and clearly on a busy port (moto's server would otherwise wait forever for its own start)."""
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as error:
            raise OSError(f"{host}:{port} is already in use; stop what holds it or choose another {flag}") from error


def _count(values: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for value in values:
        counts[value] = counts.get(value, 0) + 1
    return counts


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy (for scripts and tests watching the stack)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(interval)
