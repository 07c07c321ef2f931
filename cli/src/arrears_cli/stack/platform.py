"""The whole platform on the embedded stack: broker, PostgreSQL, provider emulators and every service.

`arrears up`, the end-to-end tests and the benchmarks all start it through `Platform`, and every service's
environment comes from `service_env`, so they run exactly the same configuration.
"""

from __future__ import annotations

import base64
import concurrent.futures
import importlib
import importlib.util
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from arrears_shared import channels, topology

from arrears_cli.stack.broker import EmbeddedBroker
from arrears_cli.stack.ports import free_port
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_cli.stack.processes import (
    LogSink,
    ManagedProcess,
    ProcessExitedError,
    Supervisor,
    call_in_fresh_thread,
    http_ok,
    run_coro_sync,
)
from arrears_cli.stack.topics import ensure_topics

HOST = "127.0.0.1"
EMULATORS: tuple[str, ...] = ("quo", "gmail", "sheets", "whatsapp", "twilio", "checkout")
# emulator -> the variable that points the services at the provider (set it to use the real one)
EMULATOR_ENV: dict[str, str] = {
    "quo": "ARREARS_QUO_BASE_URL",
    "gmail": "ARREARS_GMAIL_API_ENDPOINT",
    "sheets": "ARREARS_SHEETS_API_ENDPOINT",
    "whatsapp": "ARREARS_WHATSAPP_BASE_URL",
    "twilio": "ARREARS_TWILIO_BASE_URL",
    "checkout": "ARREARS_PORTAL_CHECKOUT_BASE_URL",  # the payment gateway's Checkout Sessions API (portal)
}
QUO_FROM_NUMBER = "+14155550100"
TWILIO_FROM_NUMBER = "+14155550199"  # our number at the Twilio emulator (the second SMS provider)
TWILIO_ACCOUNT_SID = "ACarrearsDemo000000000000000000001"
WHATSAPP_PHONE_NUMBER_ID = "106540352242922"  # our number's id in the WhatsApp emulator
GMAIL_SENDER = "collections@example.com"
# `arrears up`'s pool of sending mailboxes on the Gmail emulator (docs/dispatch.md "Sending mailboxes"): the
# first is the single sender of earlier runs, so accounts it wrote to stay with it
DEMO_MAILBOXES: tuple[str, ...] = (GMAIL_SENDER, "accounts@example.com")
SPREADSHEET_ID = "demo-pme"
WORKSHEET = "Accounts"
PASS_THROUGH_ENV = ("ARREARS_LOG_LEVEL",)


def service_module(svc: str) -> str:
    """`dispatcher-sms` -> `arrears_dispatcher_sms` (run as `python -m <module>`), from its topology."""
    return topology.service(svc).package


@dataclass(frozen=True)
class StackInfo:
    """Where the shared infrastructure and the providers are, as the services see them."""

    bootstrap_servers: str
    database_url: str
    quo_base_url: str
    gmail_api_endpoint: str
    sheets_api_endpoint: str
    quo_api_key: str
    quo_webhook_signing_key: str  # base64, shared with the QUO emulator
    gmail_token: str | None = None  # static bearer token for the Gmail emulator (None: real credentials)
    whatsapp_base_url: str = ""
    whatsapp_access_token: str = ""
    whatsapp_app_secret: str = ""  # shared with the WhatsApp emulator (signs its webhooks)
    whatsapp_verify_token: str = ""
    twilio_base_url: str = ""  # the second SMS provider (docs/dispatch.md "SMS down"); "" = not configured
    twilio_auth_token: str = ""
    topic_partitions: int = 6
    # service -> its own credential (runtime role, arrears_shared.db.roles); services not listed use database_url
    database_urls: Mapping[str, str] = field(default_factory=dict)
    audit_hmac_key: str = ""  # seals the audit chains (never stored in the database)
    vault_master_key: str = ""  # wraps each account's data key (never stored in the database)
    vault_index_key: str = ""  # keys the blind indexes of phones, emails and names
    quo_from_number: str = QUO_FROM_NUMBER
    gmail_sender: str = GMAIL_SENDER
    gmail_mailboxes: str = (
        ""  # ARREARS_GMAIL_MAILBOXES (JSON) when the stack runs a pool of sending mailboxes
    )
    sheets_spreadsheet_id: str = SPREADSHEET_ID
    sheets_worksheet: str = WORKSHEET


async def issue_admin_key(database_url: str, audit_hmac_key: str) -> str:
    """The stack's first admin key (arrears_shared.auth.keys.issue_first_admin), audited in the console's
    log (sealed with the stack's audit key, as the services seal theirs); returns the plaintext. A revoked
    key is never brought back: each start issues a new one."""
    from arrears_shared.auth.keys import issue_first_admin
    from arrears_shared.db.engine import make_engine

    os.environ.setdefault("ARREARS_AUDIT_HMAC_KEY", audit_hmac_key)

    engine = make_engine(database_url)
    try:
        async with engine.begin() as conn:
            _, plaintext = await issue_first_admin(conn, audit_schema="console")
        return plaintext
    finally:
        await engine.dispose()


async def create_service_roles(admin_url: str) -> dict[str, str]:
    """Each service's own roles (arrears_shared.db.roles) with a new random password; returns service ->
    the URL of its runtime role. The passwords live only in the services' environments."""
    from arrears_shared.db.engine import make_engine
    from arrears_shared.db.roles import ensure_roles, new_passwords, role_url, runtime_role

    services = topology.services()
    passwords = new_passwords(services)
    engine = make_engine(admin_url, pool_size=1)
    try:
        await ensure_roles(engine, services, passwords)
    finally:
        await engine.dispose()
    return {svc: role_url(admin_url, runtime_role(svc), passwords[svc]) for svc in services}


def service_env(stack: StackInfo, svc: str, ports: Mapping[str, int]) -> dict[str, str]:
    """The `ARREARS_*` environment of service `svc`; `ports` maps service name -> its HTTP port."""
    env = {
        "ARREARS_SERVICE_NAME": svc,
        "ARREARS_KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers,
        "ARREARS_TOPIC_PARTITIONS": str(stack.topic_partitions),
        "ARREARS_DATABASE_URL": stack.database_urls.get(svc, stack.database_url),
        "ARREARS_HTTP_HOST": HOST,
        "ARREARS_HTTP_PORT": str(ports[svc]),
        "ARREARS_QUO_BASE_URL": stack.quo_base_url,
        "ARREARS_QUO_API_KEY": stack.quo_api_key,
        "ARREARS_QUO_FROM_NUMBER": stack.quo_from_number,
        "ARREARS_QUO_WEBHOOK_SIGNING_KEY": stack.quo_webhook_signing_key,
        "ARREARS_GMAIL_API_ENDPOINT": stack.gmail_api_endpoint,
        "ARREARS_GMAIL_SENDER": stack.gmail_sender,
        "ARREARS_SHEETS_API_ENDPOINT": stack.sheets_api_endpoint,
        "ARREARS_SHEETS_SPREADSHEET_ID": stack.sheets_spreadsheet_id,
        "ARREARS_SHEETS_WORKSHEET": stack.sheets_worksheet,
        "ARREARS_LOG_FORMAT": "json",
        # Platform.stop gives services ~5 s of its 8 s budget: finish the batch in hand well within that
        "ARREARS_SHUTDOWN_GRACE_S": "4",
    }
    if stack.gmail_token is not None:
        env["ARREARS_GMAIL_TOKEN"] = stack.gmail_token
    if stack.gmail_mailboxes:
        env["ARREARS_GMAIL_MAILBOXES"] = stack.gmail_mailboxes
    if stack.audit_hmac_key:
        env["ARREARS_AUDIT_HMAC_KEY"] = stack.audit_hmac_key
    if stack.vault_master_key:
        env["ARREARS_VAULT_MASTER_KEY"] = stack.vault_master_key
    if stack.vault_index_key:
        env["ARREARS_VAULT_INDEX_KEY"] = stack.vault_index_key
    if stack.whatsapp_base_url:
        env["ARREARS_WHATSAPP_BASE_URL"] = stack.whatsapp_base_url
        env["ARREARS_WHATSAPP_PHONE_NUMBER_ID"] = WHATSAPP_PHONE_NUMBER_ID
        env["ARREARS_WHATSAPP_ACCESS_TOKEN"] = stack.whatsapp_access_token
        env["ARREARS_WHATSAPP_APP_SECRET"] = stack.whatsapp_app_secret
        env["ARREARS_WHATSAPP_VERIFY_TOKEN"] = stack.whatsapp_verify_token
    if stack.twilio_base_url:
        env["ARREARS_TWILIO_BASE_URL"] = stack.twilio_base_url
        env["ARREARS_TWILIO_ACCOUNT_SID"] = os.environ.get("ARREARS_TWILIO_ACCOUNT_SID", TWILIO_ACCOUNT_SID)
        env["ARREARS_TWILIO_AUTH_TOKEN"] = stack.twilio_auth_token
        env["ARREARS_TWILIO_FROM_NUMBER"] = os.environ.get("ARREARS_TWILIO_FROM_NUMBER", TWILIO_FROM_NUMBER)
    for name in PASS_THROUGH_ENV:
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _optional_attr(module: str, attr: str) -> Callable[..., Any] | None:
    """`module.attr` if both exist, else None (modules other engineers may not have written yet)."""
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except ModuleNotFoundError:
        return None
    fn = getattr(importlib.import_module(module), attr, None)
    return fn if callable(fn) else None


class PlatformStartError(RuntimeError):
    """Some part of the platform did not come up."""


class Platform:
    """Broker + PostgreSQL + emulators + services, all child processes of this one.

    ```
    with Platform(tmp_path, fast=True).start(demo_accounts=100) as p:
        httpx.get(p.service_url("console") + "/healthz")
    ```
    Pass `broker` / `postgres` to reuse running ones (they are then not stopped by `stop`).
    """

    def __init__(
        self,
        data_dir: Path = Path(".arrears"),
        *,
        partitions: int = 6,
        fast: bool = False,
        log_dir: Path | None = None,
        broker: EmbeddedBroker | None = None,
        postgres: EmbeddedPostgres | None = None,
        database: str = "arrears",
        extra_env: Mapping[str, str] | None = None,
        service_overrides: Mapping[str, Mapping[str, str]] | None = None,
        auto_restart: bool = True,
        sink: LogSink | None = None,
        gmail_pool: Sequence[str] = (),
    ) -> None:
        self.data_dir = Path(data_dir).expanduser().resolve()
        # sending mailboxes to run on the Gmail emulator (not used with a real Gmail or ARREARS_GMAIL_MAILBOXES)
        self.gmail_pool = tuple(gmail_pool)
        self.partitions = partitions
        self.fast = fast
        self.database = database
        self.extra_env = dict(extra_env or {})
        self.service_overrides = {k: dict(v) for k, v in (service_overrides or {}).items()}
        self.auto_restart = auto_restart
        self.supervisor = Supervisor(log_dir=log_dir, sink=sink)
        self._own_broker = broker is None
        self._own_postgres = postgres is None
        self.broker = broker or EmbeddedBroker(supervisor=self.supervisor)
        self.postgres = postgres or EmbeddedPostgres(
            self.data_dir / "pg", fast=fast, supervisor=self.supervisor
        )
        self.ports: dict[str, int] = {svc: free_port(HOST) for svc in topology.services()}
        self.emulator_ports: dict[str, int] = {}
        self.emulator_urls: dict[str, str] = {}  # emulator -> root URL (ours or the user's provider URL)
        self.services: list[str] = []
        self.unhealthy: list[str] = []  # services not healthy when start() returned (strict=False)
        self.quo_api_key = os.environ.get("ARREARS_QUO_API_KEY") or "dev-" + secrets.token_urlsafe(18)
        self.quo_signing_key = (
            os.environ.get("ARREARS_QUO_WEBHOOK_SIGNING_KEY")
            or base64.b64encode(secrets.token_bytes(32)).decode()
        )
        self.whatsapp_access_token = os.environ.get(
            "ARREARS_WHATSAPP_ACCESS_TOKEN"
        ) or "dev-" + secrets.token_urlsafe(18)
        self.whatsapp_app_secret = os.environ.get("ARREARS_WHATSAPP_APP_SECRET") or secrets.token_urlsafe(24)
        self.whatsapp_verify_token = os.environ.get("ARREARS_WHATSAPP_VERIFY_TOKEN") or secrets.token_urlsafe(
            12
        )
        self.twilio_auth_token = os.environ.get("ARREARS_TWILIO_AUTH_TOKEN") or secrets.token_hex(16)
        # the checkout emulator's API key (the portal's) and the secret its payment webhooks are signed with
        # (ingest's); docs/portal.md "Paying"
        self.checkout_secret_key = os.environ.get(
            "ARREARS_PORTAL_CHECKOUT_SECRET_KEY"
        ) or "sk_test_" + secrets.token_urlsafe(18)
        self.stripe_webhook_secret = os.environ.get(
            "ARREARS_PAYMENTS_STRIPE_WEBHOOK_SECRET"
        ) or "whsec_" + secrets.token_urlsafe(24)
        # the first admin API key of this stack, issued after migrations (a new one each start); written to
        # <data_dir>/admin-api-key (mode 0600), never logged
        self.admin_api_key = ""
        self._stack: StackInfo | None = None
        self._database_url = ""
        self._database_urls: dict[str, str] = {}  # service -> URL of its runtime role
        self._stopped = False
        self.timings: dict[str, float] = {}

    # -- info -------------------------------------------------------------------------------------------------

    def log(self, message: str) -> None:
        self.supervisor.sink.write("arrears", message)

    @property
    def stack(self) -> StackInfo:
        if self._stack is None:
            raise RuntimeError("platform not started")
        return self._stack

    @property
    def database_url(self) -> str:
        return self.stack.database_url

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    def service_url(self, svc: str) -> str:
        return f"http://{HOST}:{self.ports[svc]}"

    def metrics_url(self, svc: str) -> str:
        return self.service_url(svc) + "/metrics"

    def emulator_url(self, name: str) -> str:
        """Root URL of emulator `name` (`quo`, `gmail`, `sheets`); the QUO API itself is under `/v1`."""
        return self.emulator_urls[name]

    def service_process(self, svc: str) -> ManagedProcess:
        return self.supervisor[svc]

    def env_for(self, svc: str) -> dict[str, str]:
        env = service_env(self.stack, svc, self.ports)
        if svc == "responses" and "gmail" in self.emulator_ports:
            # read customers' email replies from the emulator's mailbox (real Gmail: opt in via the env var)
            env["ARREARS_RESPONSES_GMAIL_ENABLED"] = "true"
            env["ARREARS_RESPONSES_GMAIL_POLL_S"] = "2"
        # the dev console is plain HTTP on 127.0.0.1: a Secure cookie would never be sent back
        env.setdefault("ARREARS_AUTH_COOKIE_SECURE", "false")
        if svc == "escalation":  # SLA-breach notification emails from the Gmail emulator's mailbox
            env["ARREARS_ESCALATION_CONSOLE_URL"] = self.service_url("console")
            if "gmail" in self.emulator_ports and self.stack.gmail_token is not None:
                env["ARREARS_ESCALATION_NOTIFY_EMAIL"] = "true"
                env["ARREARS_ESCALATION_NOTIFY_SENDER"] = self.stack.gmail_sender
                env["ARREARS_ESCALATION_NOTIFY_GMAIL_API_ENDPOINT"] = self.stack.gmail_api_endpoint
                env["ARREARS_ESCALATION_NOTIFY_GMAIL_TOKEN"] = self.stack.gmail_token
        if svc == "responses":  # acknowledge replies that arrive while the collectors are closed
            env.setdefault("ARREARS_RESPONSES_OUT_OF_HOURS_ACK", "true")
        if svc == "portal" or svc.startswith("dispatcher-"):  # the debtors' payment links (docs/portal.md)
            env["ARREARS_LINK_KEY"] = self._stack_secret(
                "ARREARS_LINK_KEY", "link-key", lambda: secrets.token_urlsafe(48)
            )
            env["ARREARS_LINK_PUBLIC_URL"] = f"{self.service_url('portal')}/p/"
        if svc == "portal":  # plain HTTP on 127.0.0.1: a Secure cookie would never be sent back
            env.setdefault("ARREARS_PORTAL_COOKIE_SECURE", "false")
            if self.emulator_urls.get("checkout"):  # pay in full or in part at the checkout (emulator)
                env.setdefault("ARREARS_PORTAL_CHECKOUT_BASE_URL", self.emulator_urls["checkout"])
                env.setdefault("ARREARS_PORTAL_CHECKOUT_SECRET_KEY", self.checkout_secret_key)
        if svc == "scoring":  # no history yet: a demo model on simulated customers (docs/scoring.md "Demo")
            env.setdefault("ARREARS_SCORING_DEMO_MODEL", "true")
            env.setdefault("ARREARS_SCORING_DEMO_ACCOUNTS", "3000")
            env.setdefault("ARREARS_SCORING_RUN_HOUR_UTC", "0")  # today's run as soon as the sheet is in
            env.setdefault("ARREARS_SCORING_START_DELAY_S", "60")
        if svc == "ingest":  # the checkout's payment webhooks (Stripe-Signature)
            env.setdefault("ARREARS_PAYMENTS_STRIPE_WEBHOOK_SECRET", self.stripe_webhook_secret)
        if svc == "console":  # the pages call the owning services as the signed-in person
            for other in ("segmenter", "escalation", "ingest", "responses"):
                env[f"ARREARS_CONSOLE_{other.upper()}_URL"] = self.service_url(other)
            env["ARREARS_CONSOLE_DISPATCHER_URLS"] = json.dumps(  # the Providers page
                {
                    spec.dispatcher: self.service_url(spec.dispatcher)
                    for spec in channels.registered().values()
                }
            )
        return {**env, **self.extra_env, **self.service_overrides.get(svc, {})}

    def write_admin_key(self) -> Path:
        """Save the dev stack's admin API key (mode 0600) for the operator; returns the file."""
        path = self.data_dir / "admin-api-key"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.admin_api_key + "\n")
        return path

    # -- start ------------------------------------------------------------------------------------------------

    def _timed(self, label: str, started: float) -> None:
        self.timings[label] = round(time.monotonic() - started, 3)

    def start(
        self,
        services: Iterable[str] = topology.services(),
        demo_accounts: int | None = None,
        *,
        emulators: bool = True,
        timeout: float = 60.0,
        strict: bool = True,
    ) -> Self:
        """Start everything and wait for each service's `/healthz`.

        `demo_accounts` generates and loads a demo sheet into the Sheets emulator first. With `strict`, a
        service that exits or stays unhealthy raises `PlatformStartError` (and everything is stopped);
        otherwise it is reported and left to the restart-with-backoff supervisor.
        """
        t0 = time.monotonic()
        services = list(services)
        unknown = set(services) - set(topology.services())
        if unknown:
            raise ValueError(f"unknown services: {sorted(unknown)}")
        try:
            if emulators:
                self._spawn_emulators()
            self._start_infra()
            if emulators:
                self._wait_emulators(timeout, strict=strict)
            self._stack = StackInfo(
                bootstrap_servers=self.broker.bootstrap_servers,
                database_url=self._database_url,
                quo_base_url=os.environ.get("ARREARS_QUO_BASE_URL")
                or self.emulator_urls.get("quo", "") + "/v1",
                gmail_api_endpoint=os.environ.get("ARREARS_GMAIL_API_ENDPOINT")
                or self.emulator_urls.get("gmail", ""),
                sheets_api_endpoint=os.environ.get("ARREARS_SHEETS_API_ENDPOINT")
                or self.emulator_urls.get("sheets", ""),
                quo_api_key=self.quo_api_key,
                quo_webhook_signing_key=self.quo_signing_key,
                gmail_token=self._gmail_token(),
                gmail_mailboxes=self._gmail_mailboxes(),
                topic_partitions=self.partitions,
                database_urls=self._database_urls,
                audit_hmac_key=self._audit_hmac_key(),
                vault_master_key=self._stack_secret(
                    "ARREARS_VAULT_MASTER_KEY",
                    "vault-master-key",
                    lambda: base64.b64encode(secrets.token_bytes(32)).decode(),
                ),
                vault_index_key=self._stack_secret(
                    "ARREARS_VAULT_INDEX_KEY", "vault-index-key", lambda: secrets.token_urlsafe(48)
                ),
                whatsapp_base_url=os.environ.get("ARREARS_WHATSAPP_BASE_URL")
                or self.emulator_urls.get("whatsapp", ""),
                whatsapp_access_token=self.whatsapp_access_token,
                whatsapp_app_secret=self.whatsapp_app_secret,
                whatsapp_verify_token=self.whatsapp_verify_token,
                twilio_base_url=os.environ.get("ARREARS_TWILIO_BASE_URL")
                or self.emulator_urls.get("twilio", ""),
                twilio_auth_token=self.twilio_auth_token,
            )
            if demo_accounts:
                self._load_demo(demo_accounts)
            t = time.monotonic()
            for svc in services:
                self.start_service(svc)
            self.services = services
            healthy = self.wait_healthy(services, timeout, strict=strict)
            self._timed("services", t)
            bad = [svc for svc, ok in healthy.items() if not ok]
            self.unhealthy = bad
            if demo_accounts and "escalation" in services:
                self._load_demo_teams()
            if bad:
                self.log(f"not healthy (will keep restarting with backoff): {', '.join(bad)}")
        except BaseException:
            self.stop()
            raise
        self._timed("total", t0)
        return self

    def _audit_hmac_key(self) -> str:
        """The user's ARREARS_AUDIT_HMAC_KEY, else the stack's own (so the chains of earlier runs still verify)."""
        return self._stack_secret(
            "ARREARS_AUDIT_HMAC_KEY", "audit-hmac-key", lambda: secrets.token_urlsafe(48)
        )

    def _stack_secret(self, variable: str, name: str, make: Callable[[], str]) -> str:
        """The user's `variable`, else the stack's own secret: made once per data dir and kept beside the
        database in <data_dir>/<name> (mode 0600), so what earlier runs sealed with it stays readable."""
        if os.environ.get(variable):
            return os.environ[variable]
        path = self.data_dir / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(make() + "\n")
        return path.read_text().strip()

    def _gmail_mailboxes(self) -> str:
        """The demo pool of sending mailboxes (JSON), when the Gmail API is our emulator and the user has not
        configured a pool of their own; each mailbox uses the stack's Gmail token."""
        if (
            not self.gmail_pool
            or os.environ.get("ARREARS_GMAIL_MAILBOXES")
            or "gmail" not in self.emulator_ports
        ):
            return ""
        return json.dumps([{"address": a} for a in self.gmail_pool])

    def _gmail_token(self) -> str | None:
        """The user's ARREARS_GMAIL_TOKEN, else a dev token when the Gmail API is our emulator."""
        if os.environ.get("ARREARS_GMAIL_TOKEN"):
            return os.environ["ARREARS_GMAIL_TOKEN"]
        if "gmail" in self.emulator_ports and not os.environ.get("ARREARS_GMAIL_CREDENTIALS_FILE"):
            return "dev-" + secrets.token_urlsafe(18)
        return None

    def _start_infra(self) -> None:
        t = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures: list[concurrent.futures.Future[Any]] = []
            if self._own_broker:
                futures.append(pool.submit(self.broker.start))
            if self._own_postgres:
                futures.append(pool.submit(self.postgres.start))
            for fut in futures:
                fut.result()
        self._timed("broker+postgres", t)
        t = time.monotonic()
        run_coro_sync(lambda: ensure_topics(self.broker.bootstrap_servers, self.partitions))
        self._timed("topics", t)
        self._database_url = self.postgres.create_database(self.database)
        t = time.monotonic()
        self._database_urls = run_coro_sync(lambda: create_service_roles(self._database_url))
        self._timed("roles", t)
        t = time.monotonic()
        upgrade_all = _optional_attr("arrears_shared.db.migrate", "upgrade_all")
        if upgrade_all is None:
            self.log("arrears_shared.db.migrate.upgrade_all not found: skipping migrations")
        else:
            call_in_fresh_thread(lambda: upgrade_all(self._database_url))
            self._timed("migrations", t)
            self.admin_api_key = run_coro_sync(
                lambda: issue_admin_key(self._database_url, self._audit_hmac_key())
            )

    def _spawn_emulators(self) -> None:
        for name in EMULATORS:
            user_url = os.environ.get(EMULATOR_ENV[name])
            if user_url:
                self.emulator_urls[name] = user_url.removesuffix("/v1") if name == "quo" else user_url
                self.log(f"{EMULATOR_ENV[name]} is set: using {user_url} instead of the {name} emulator")
                continue
            port = free_port(HOST)
            argv = [sys.executable, "-m", "arrears_emulators", name, "--host", HOST, "--port", str(port)]
            if name == "quo":
                webhook = f"http://{HOST}:{self.ports['responses']}/webhooks/quo"
                argv += ["--webhook-url", webhook, "--webhook-signing-key", self.quo_signing_key]
                # our number in the workspace (GET /phone-numbers gives its PN id to the dispatcher)
                argv += ["--phone-number", f"{QUO_FROM_NUMBER}=PNarrearsDemo01"]
            if name == "whatsapp":
                webhook = f"http://{HOST}:{self.ports['responses']}/webhooks/whatsapp"
                argv += [
                    "--set",
                    f'webhook_url="{webhook}"',
                    "--set",
                    f'app_secret="{self.whatsapp_app_secret}"',
                ]
                argv += ["--set", f'access_token="{self.whatsapp_access_token}"']
                argv += ["--set", f'phone_number_id="{WHATSAPP_PHONE_NUMBER_ID}"']
            if name == "twilio":
                argv += [
                    "--set",
                    f'account_sid="{TWILIO_ACCOUNT_SID}"',
                    "--set",
                    f'auth_token="{self.twilio_auth_token}"',
                ]
                argv += ["--set", f'from_numbers=["{TWILIO_FROM_NUMBER}"]']
            if name == "checkout":  # pays into ingest's Stripe webhook, as the real gateway would
                webhook = f"http://{HOST}:{self.ports['ingest']}/ingest/payments/stripe"
                argv += [
                    "--set",
                    f'webhook_url="{webhook}"',
                    "--set",
                    f'webhook_secret="{self.stripe_webhook_secret}"',
                ]
                argv += ["--set", f'secret_key="{self.checkout_secret_key}"']
            self.supervisor.start(
                f"emulator-{name}", argv, env=self.extra_env, auto_restart=self.auto_restart
            )
            self.emulator_ports[name] = port
            self.emulator_urls[name] = f"http://{HOST}:{port}"

    def _wait_emulators(self, timeout: float, *, strict: bool) -> None:
        t = time.monotonic()
        for name, port in self.emulator_ports.items():
            proc = self.supervisor[f"emulator-{name}"]
            try:
                proc.wait_tcp(HOST, port, timeout)
                proc.wait_http_ok(f"http://{HOST}:{port}/_emulator/health", timeout)
            except (ProcessExitedError, TimeoutError) as exc:
                if strict:
                    raise PlatformStartError(f"emulator {name} did not start: {exc}") from exc
                self.log(f"emulator {name} did not start (will keep restarting with backoff): {exc}")
        self._timed("emulators", t)

    def _load_demo_teams(self) -> None:
        """Working calendars for the demo teams (arrears_cli.demo_teams), through escalation's API."""
        load = _optional_attr("arrears_cli.demo_teams", "load_demo_teams")
        if load is None or not self.admin_api_key:
            return
        try:
            teams = load(self.service_url("escalation"), self.admin_api_key, date.today())
        except Exception as exc:  # the demo runs without them: SLAs then count wall-clock time
            self.log(f"demo teams not set: {exc}")
            return
        if teams:
            self.log(f"demo team calendars set: {', '.join(teams)} (console: Teams)")

    def _load_demo(self, accounts: int) -> None:
        if "sheets" not in self.emulator_ports:
            self.log("not loading demo data: the Sheets API is not our emulator")
            return
        generate = _optional_attr("arrears_cli.demo_sheet", "generate_pme_rows")
        load = _optional_attr("arrears_cli.demo_sheet", "load_into_emulator")
        if generate is None or load is None:
            self.log("arrears_cli.demo_sheet not found: skipping the demo sheet")
            return
        t = time.monotonic()
        rows = generate(accounts, today=date.today())
        call_in_fresh_thread(lambda: load(self.emulator_urls["sheets"], SPREADSHEET_ID, rows))
        self._timed("demo sheet", t)
        self.log(f"loaded {accounts} demo accounts into spreadsheet {SPREADSHEET_ID!r}")

    def start_service(self, svc: str) -> ManagedProcess:
        return self.supervisor.start(
            svc,
            [sys.executable, "-m", service_module(svc)],
            env=self.env_for(svc),
            auto_restart=self.auto_restart,
        )

    def wait_healthy(
        self, services: Sequence[str], timeout: float = 60.0, *, strict: bool = True
    ) -> dict[str, bool]:
        """Poll every service's `/healthz` until all answer 200 or `timeout`; returns svc -> healthy."""
        deadline = time.monotonic() + timeout
        pending = list(services)
        healthy = dict.fromkeys(services, False)
        while pending:
            for svc in list(pending):
                proc = self.supervisor[svc]
                if http_ok(self.service_url(svc) + "/healthz", timeout=0.5):
                    healthy[svc] = True
                    pending.remove(svc)
                elif strict and not proc.is_alive():
                    raise PlatformStartError(str(proc._exited_error(f"{svc} /healthz")))
            if not pending:
                break
            if time.monotonic() >= deadline:
                if strict:
                    raise PlatformStartError(f"not healthy after {timeout}s: {', '.join(pending)}")
                break
            time.sleep(0.05)
        return healthy

    # -- faults -----------------------------------------------------------------------------------------------

    def kill_service(self, svc: str, sig: int = signal.SIGKILL) -> None:
        """Signal a service's process group; after a fatal signal it stays down until `restart_service`."""
        self.supervisor.kill(svc, sig, hold=True)

    def restart_service(
        self, svc: str, timeout: float = 60.0, *, env: Mapping[str, str] | None = None
    ) -> None:
        """(Re)start a service on the same port and wait for its `/healthz`.

        `env` adds to / replaces the service's overrides first (e.g. a shifted clock for time travel);
        without it the service restarts with exactly the environment it had.
        """
        if env is None:
            proc = self.supervisor.restart(svc)
        else:
            self.service_overrides.setdefault(svc, {}).update(env)
            if svc in self.supervisor and self.supervisor[svc].is_alive():
                self.supervisor.stop(svc)
            proc = self.start_service(svc)
        proc.wait_http_ok(self.service_url(svc) + "/healthz", timeout)

    def restart_broker(self) -> None:
        """Restart the (memory-only) broker on the same port and create the topics again."""
        self.broker.restart()
        run_coro_sync(lambda: ensure_topics(self.broker.bootstrap_servers, self.partitions))

    # -- stop -------------------------------------------------------------------------------------------------

    def stop(self, timeout: float = 8.0) -> None:
        """Services first (graceful), then emulators, broker and PostgreSQL. Idempotent; within `timeout`."""
        if self._stopped:
            return
        self._stopped = True
        deadline = time.monotonic() + timeout
        names = self.supervisor.processes
        services = [n for n in names if n in topology.services()]
        self.supervisor.stop_many(services, max(0.5, (deadline - time.monotonic()) * 0.6))
        emulators = [n for n in names if n.startswith("emulator-")]
        self.supervisor.stop_many(emulators, max(0.5, (deadline - time.monotonic()) * 0.4))
        if self._own_broker:
            self.broker.stop(max(0.5, (deadline - time.monotonic()) * 0.3))
        if self._own_postgres:
            self.postgres.stop(max(0.5, deadline - time.monotonic() - 0.3))
        self.supervisor.stop_all(max(0.2, deadline - time.monotonic()))

    # -- summary ----------------------------------------------------------------------------------------------

    def summary(self) -> str:
        lines = ["", "Arrears is running."]
        if "console" in self.services:
            lines.append(f"  Console          {self.service_url('console')}/")
        if "portal" in self.services:
            lines.append(
                f"  Debtor portal    {self.service_url('portal')}/p/<token> (the link in each notice)"
            )
        lines.append("  Services         (API, metrics)")
        for svc in self.services:
            note = "   (not healthy yet: restarting with backoff)" if svc in self.unhealthy else ""
            lines.append(f"    {svc:<16} {self.service_url(svc)}   {self.metrics_url(svc)}{note}")
        lines.append("  Providers")
        for name in EMULATORS:
            if name in self.emulator_urls:
                kind = "emulator" if name in self.emulator_ports else "external"
                url = self.stack.quo_base_url if name == "quo" else self.emulator_urls[name]
                lines.append(f"    {name:<16} {url}   ({kind})")
                if name == "gmail" and self.stack.gmail_mailboxes:
                    boxes = ", ".join(m["address"] for m in json.loads(self.stack.gmail_mailboxes))
                    lines.append(f"    {'':<16} sending mailboxes: {boxes}")
        lines.append(f"  Kafka            {self.bootstrap_servers}")
        lines.append(f"  PostgreSQL       {self.database_url}")
        lines.append(f"  Data dir         {self.data_dir}")
        if self.admin_api_key:
            lines.append(
                f"  Admin API key    in {self.write_admin_key()}  (shown nowhere else; a new one each start)"
            )
            if "console" in self.services:
                lines.append(f"  Sign in          {self.service_url('console')}/login with that key")
            lines.append(
                "                   APIs: send it as 'Authorization: Bearer <key>'; more: arrears keys create"
            )
        took = ", ".join(f"{k} {v:.2f}s" for k, v in self.timings.items())
        lines.append(f"  Start-up         {took}")
        lines.append("Press Ctrl-C to stop.")
        return "\n".join(lines)

    # -- context managers -------------------------------------------------------------------------------------

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def astart(
        self, services: Iterable[str] = topology.services(), demo_accounts: int | None = None, **kw: Any
    ) -> Self:
        import asyncio

        return await asyncio.to_thread(self.start, services, demo_accounts, **kw)

    async def astop(self) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)


__all__ = [
    "EMULATORS",
    "Platform",
    "PlatformStartError",
    "ProcessExitedError",
    "StackInfo",
    "service_env",
    "service_module",
]
