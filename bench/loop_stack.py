"""The whole platform as a customer runs it, for `bench/loop.py`, `bench/chaos_loop.py` and `bench/soak.py`:
the embedded broker and PostgreSQL (durable), the provider emulators, and every service its own OS process
(`arrears_cli.stack.platform.Platform`, exactly what `arrears up` starts), plus what a load run needs around
it: a generated sheet of N accounts that may lawfully be messaged now, signed payment webhooks, customers'
STOP replies through the QUO emulator, a live tail of the providers' ledgers, stop times read from the
dispatchers' own tables, and CPU / memory / connection sampling of every process.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import phonenumbers
import psutil
from arrears_cli.demo_sheet import PME_COLUMNS, load_into_emulator
from arrears_cli.stack.platform import SPREADSHEET_ID, Platform
from arrears_cli.stack.processes import call_in_fresh_thread
from arrears_shared import topology
from stripe import WebhookSignature

DISPATCHER_SCHEMAS = {"dispatcher-sms": "dispatcher_sms", "dispatcher-email": "dispatcher_email"}


# --------------------------------------------------------------------------------------------- the sheet


@dataclass(frozen=True)
class Locale:
    """A place whose debtors may be messaged now; `phone(i)` is a distinct valid number for every i < 10^6."""

    country: str
    state: str
    zone: str
    currency: str
    phone: Callable[[int], str]


def _nanp(areas: tuple[int, ...]) -> Callable[[int], str]:
    def make(i: int) -> str:
        area = areas[i % len(areas)]
        k = i // len(areas)
        return f"+1{area}{200 + (k // 10_000) % 700}{k % 10_000:04d}"

    return make


LOCALES = (
    Locale("US", "NY", "America/New_York", "USD", _nanp((212, 315, 516, 718, 917, 646))),
    Locale("US", "IL", "America/Chicago", "USD", _nanp((312, 773, 847, 630))),
    Locale("US", "CA", "America/Los_Angeles", "USD", _nanp((213, 310, 415, 510, 619, 714))),
    Locale("US", "HI", "Pacific/Honolulu", "USD", _nanp((808,))),
    Locale("GB", "", "Europe/London", "GBP", lambda i: f"+447911{i:06d}"),
    Locale(
        "IN",
        "",
        "Asia/Kolkata",
        "INR",
        lambda i: f"+9198200{i:05d}" if i < 100_000 else f"+9199670{i - 100_000:05d}",
    ),
    Locale("AU", "", "Australia/Sydney", "AUD", lambda i: f"+614{12_000_000 + i:08d}"),
)


def local_hour(zone: str, at: datetime | None = None) -> float:
    local = (at or datetime.now(UTC)).astimezone(ZoneInfo(zone))
    return local.hour + local.minute / 60 + (24 if local.weekday() >= 5 else 0)


def daytime_locale(run_minutes: float = 20.0) -> Locale:
    """The locale whose local time is closest to 13:00 on a weekday over the next `run_minutes`."""
    mid = datetime.now(UTC) + timedelta(minutes=run_minutes / 2)
    return min(LOCALES, key=lambda loc: abs(local_hour(loc.zone, mid) - 13.0))


def night_locale() -> Locale:
    """The locale deepest in its quiet hours now (nothing may be sent there)."""
    return min(LOCALES, key=lambda loc: abs((local_hour(loc.zone) % 24) - 3.0))


@dataclass
class SheetAccount:
    id: str
    row: int  # 1-based sheet row (header = 1)
    phone: str
    email: str
    balance_minor: int
    currency: str
    zone: str
    night: bool = False


def loop_sheet(
    n: int, loc: Locale, *, today: date, seed: int = 17, night: Locale | None = None, night_every: int = 0
) -> tuple[list[list[str]], list[SheetAccount]]:
    """Header + `n` accounts, all past due (5-80 days), both channels consented, in `loc` (every
    `night_every`-th account in `night`, deep in its quiet hours, when given)."""
    rng = random.Random(seed)
    rows: list[list[str]] = [list(PME_COLUMNS)]
    accounts: list[SheetAccount] = []
    for i in range(n):
        where = night if night is not None and night_every and i % night_every == night_every - 1 else loc
        phone = where.phone(i)
        assert phonenumbers.is_valid_number(phonenumbers.parse(phone)), phone
        cents = rng.randrange(5_000, 250_000)
        acct = SheetAccount(
            id=f"LP-{i:07d}",
            row=i + 2,
            phone=phone,
            email=f"debtor{i}@loop.example",
            balance_minor=cents,
            currency=where.currency,
            zone=where.zone,
            night=where is not loc,
        )
        accounts.append(acct)
        due = today - timedelta(days=rng.randrange(5, 80))
        rows.append(
            [
                acct.id,
                f"Customer {i}",
                phone,
                acct.email,
                f"{cents / 100:.2f}",
                where.currency,
                due.isoformat(),
                "",
                "",
                where.zone,
                where.state,
                where.country,
                "Y",
                "Y",
                "Open",
                "",
                "",
                "",
            ]
        )
    return rows, accounts


# ---------------------------------------------------------------------------------------- the ledgers


class LedgerTail:
    """Every send a provider emulator accepted, pulled incrementally (`since_seq`) by a background thread."""

    def __init__(self, url: str, interval_s: float = 0.5) -> None:
        self.url = url
        self.interval_s = interval_s
        self.entries: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._http = httpx.Client(timeout=60)  # one connection, not one client (and TLS context) per poll
        self.errors = 0

    def start(self) -> LedgerTail:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.poll()
        self._http.close()

    def poll(self) -> None:
        with self._lock:
            since = self.entries[-1]["seq"] if self.entries else 0
            try:
                r = self._http.get(f"{self.url}/_emulator/ledger", params={"since_seq": since})
                r.raise_for_status()
            except httpx.HTTPError:
                self.errors += 1
                return
            self.entries.extend(e for e in r.json()["entries"] if e["seq"] > since)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.poll()

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.entries)

    def since(self, i: int) -> list[dict[str, Any]]:
        """The entries from the `i`-th on (what a reader has not seen yet)."""
        with self._lock:
            return self.entries[i:]


def at(entry: Mapping[str, Any]) -> float:
    return datetime.fromisoformat(entry["at"]).timestamp()


# ------------------------------------------------------------------------------------ process sampling


@dataclass
class ProcStats:
    peak_rss: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[tuple[float, int, int]]] = field(default_factory=lambda: defaultdict(list))
    cpu_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))  # of finished incarnations


class Sampler:
    """Every second: RSS, CPU time and open connections of each named process (with its children:
    PostgreSQL's backends count to `postgres`, each as one connection). CPU of a process that died (SIGKILL) is kept up to its
    last sample."""

    def __init__(
        self,
        pids: Callable[[], Mapping[str, int | None]],
        interval_s: float = 1.0,
        *,
        connections: bool = False,
    ) -> None:
        self.pids = pids
        self.interval_s = interval_s
        self.connections = connections  # reading every process's sockets costs a benchmark real CPU
        self.stats = ProcStats()
        self._last_cpu: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.sample()

    def baseline(self) -> None:
        """Count CPU from now on (not the start-up's imports and migrations)."""
        self.sample()
        self.stats.cpu_s.clear()

    def _tree(self, pid: int) -> list[psutil.Process]:
        try:
            p = psutil.Process(pid)
            return [p, *p.children(recursive=True)]
        except psutil.Error:
            return []

    def sample(self) -> None:
        now = time.time()
        for name, pid in self.pids().items():
            if not pid:
                continue
            rss = cpu = conns = 0
            rss_main = 0
            for k, proc in enumerate(self._tree(pid)):
                try:
                    with proc.oneshot():
                        mem = proc.memory_info().rss
                        t = proc.cpu_times()
                        c = t.user + t.system
                        if k == 0:
                            rss_main = mem
                        else:
                            conns += 1  # a child: PostgreSQL's backends are its connections
                        if self.connections:
                            conns += len(proc.net_connections(kind="inet"))
                        rss += mem
                        key = (name, proc.pid)
                        self.stats.cpu_s[name] += c - self._last_cpu.get(key, 0.0)
                        self._last_cpu[key] = c
                        cpu += c
                except psutil.Error:
                    continue
            self.stats.peak_rss[name] = max(self.stats.peak_rss.get(name, 0), rss)
            self.stats.samples[name].append((now, rss_main or rss, conns))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def cpu_total(self, names: Callable[[str], bool]) -> float:
        return sum(v for k, v in self.stats.cpu_s.items() if names(k))


# ---------------------------------------------------------------------------------------- the platform


def service_overrides(stripe_secret: str) -> dict[str, dict[str, str]]:
    """Production defaults, but: the sheet runs when the script says (not on a start-up poll), providers'
    rates and Gmail's daily quota lifted to what the emulators then accept (the emulators' limits are lifted
    too), and a Stripe webhook secret shared with this script."""
    dispatch = {
        "ARREARS_DISPATCH_IDLE_POLL_S": "0.2",
        "ARREARS_DISPATCH_MAX_ATTEMPTS": "12",
        "ARREARS_DISPATCH_BACKOFF_BASE_S": "0.5",
        "ARREARS_DISPATCH_BACKOFF_MAX_S": "5",
        "ARREARS_DISPATCH_IN_DOUBT_AFTER_S": "10",
        "ARREARS_DISPATCH_RECONCILE_INTERVAL_S": "2",
        "ARREARS_DISPATCH_SEND_TIMEOUT_S": "5",
        "ARREARS_DISPATCH_BREAKER_COOLDOWN_S": "2",
    }
    return {
        "ingest": {
            "ARREARS_INGEST_POLL_INTERVAL_S": "86400",
            "ARREARS_PAYMENTS_STRIPE_WEBHOOK_SECRET": stripe_secret,
        },
        "dispatcher-sms": {
            **dispatch,
            "ARREARS_QUO_RATE_PER_S": "5000",
            "ARREARS_QUO_TIMEOUT_S": "4",
            # SMS by QUO only: these runs count SMS at QUO's ledger (the Twilio emulator still runs;
            # bench/chaos_sms_outage.py measures the second provider and the email failover)
            "ARREARS_TWILIO_ACCOUNT_SID": "",
        },
        "dispatcher-email": {
            **dispatch,
            "ARREARS_GMAIL_RATE_PER_S": "5000",
            "ARREARS_GMAIL_DAILY_QUOTA": "100000000",
            "ARREARS_GMAIL_TIMEOUT_S": "4",
        },
    }


class LoopStack:
    """`with LoopStack(folder) as s:` the platform started; `s.p` is the `Platform`."""

    def __init__(
        self,
        folder: Path,
        *,
        partitions: int = 6,
        log_level: str = "WARNING",
        extra_overrides: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.folder = folder
        self.stripe_secret = f"whsec_{uuid.uuid4().hex}"
        overrides = service_overrides(self.stripe_secret)
        for svc, env in (extra_overrides or {}).items():
            overrides.setdefault(svc, {}).update(env)
        os.environ["ARREARS_LOG_LEVEL"] = log_level  # passed through to every service
        self.p = Platform(
            folder / "data",
            partitions=partitions,
            log_dir=folder / "logs",
            service_overrides=overrides,
        )
        self.http = httpx.Client(timeout=120)
        self.service_key = ""

    def __enter__(self) -> LoopStack:
        self.p.start(timeout=180)
        from auth_support import issue_key  # tests/auth_support.py: a key in the platform's `iam`

        self.service_key = issue_key(self.p.database_url, "service", migrate=False)
        for name, lift in (
            ("quo", {"enabled": False}),
            ("gmail", {"enabled": False}),
            ("sheets", {"lifted": True}),
        ):
            r = self.http.put(self.p.emulator_url(name) + "/_emulator/limits", json=lift)
            r.raise_for_status()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.close()
        self.p.stop(timeout=20)

    # -- names ----------------------------------------------------------------------------------------

    def pids(self) -> dict[str, int | None]:
        """Every process of the platform by name (services, emulators, broker, PostgreSQL)."""
        return self.p.supervisor.pids()

    @staticmethod
    def is_platform(name: str) -> bool:
        """Ours (services, broker, database), not a provider's emulator."""
        return not name.startswith("emulator-")

    # -- inputs ---------------------------------------------------------------------------------------

    def load_sheet(self, rows: list[list[str]]) -> None:
        call_in_fresh_thread(lambda: load_into_emulator(self.p.emulator_url("sheets"), SPREADSHEET_ID, rows))

    def edit_cells(self, edits: list[tuple[int, str, str]]) -> None:
        """A person's edit of the sheet, (row, column name, value) each, saved at once (one batchUpdate)."""
        data = [
            {"range": f"Accounts!{chr(ord('A') + PME_COLUMNS.index(col))}{row}", "values": [[value]]}
            for row, col, value in edits
        ]
        r = self.http.post(
            f"{self.p.emulator_url('sheets')}/v4/spreadsheets/{SPREADSHEET_ID}/values:batchUpdate",
            json={"valueInputOption": "RAW", "data": data},
            headers={"Authorization": "Bearer loop"},
        )
        r.raise_for_status()

    def run_sheet(self, timeout_s: float = 900.0) -> dict[str, Any]:
        """`POST /ingest/sheet` as the scheduler would; waits out a run already going (409) or a restart."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                r = self.http.post(
                    self.p.service_url("ingest") + "/ingest/sheet",
                    headers={"Authorization": f"Bearer {self.service_key}"},
                    timeout=timeout_s,
                )
                if r.status_code not in (409, 503):
                    r.raise_for_status()
                    return dict(r.json())
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("the sheet run did not start")
            time.sleep(1)

    def pay(self, acct: SheetAccount, amount_minor: int | None = None) -> httpx.Response:
        """A Stripe `payment_intent.succeeded` for the account (in full unless `amount_minor`), signed."""
        intent = {
            "id": f"pi_{uuid.uuid4().hex[:20]}",
            "object": "payment_intent",
            "amount": amount_minor or acct.balance_minor,
            "amount_received": amount_minor or acct.balance_minor,
            "currency": acct.currency.lower(),
            "created": int(time.time()),
            "metadata": {"account_id": acct.id},
        }
        body = json.dumps(
            {"id": f"evt_{uuid.uuid4().hex}", "type": "payment_intent.succeeded", "data": {"object": intent}}
        )
        sig = WebhookSignature.generate_signature_header(body, self.stripe_secret)
        return self.http.post(
            self.p.service_url("ingest") + "/ingest/payments/stripe",
            content=body.encode(),
            headers={"Stripe-Signature": sig, "content-type": "application/json"},
            timeout=30,
        )

    def reply_sms(self, acct: SheetAccount, text: str = "STOP") -> httpx.Response:
        """The customer texts back (the QUO emulator signs and delivers the webhook to responses)."""
        return self.http.post(
            self.p.emulator_url("quo") + "/_emulator/inbound",
            json={"from": acct.phone, "to": self.p.stack.quo_from_number, "content": text},
            timeout=30,
        )

    def faults(self, emulator: str, body: Mapping[str, Any]) -> None:
        self.http.post(self.p.emulator_url(emulator) + "/_emulator/faults", json=body).raise_for_status()

    # -- reading state --------------------------------------------------------------------------------

    def query(self, sql: str, params: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Rows of one read-only query as the platform's admin (the benchmark reads every schema)."""
        from arrears_shared.db.engine import make_engine
        from sqlalchemy import text

        async def go() -> list[dict[str, Any]]:
            eng = make_engine(self.p.database_url, pool_size=1)
            try:
                async with eng.connect() as c:
                    return [dict(r._mapping) for r in await c.execute(text(sql), dict(params or {}))]
            finally:
                await eng.dispose()

        return list(call_in_fresh_thread(go))

    def stop_times(self, table: str, column: str, channels: tuple[str, ...]) -> dict[str, float]:
        """account -> the moment the stop held in every dispatcher of `channels` (the latest of them)."""
        got: dict[str, list[float]] = defaultdict(list)
        for svc in channels:
            schema = DISPATCHER_SCHEMAS[svc]
            for r in self.query(f"SELECT account_id, {column} AS t FROM {schema}.{table}"):
                got[r["account_id"]].append(r["t"].timestamp())
        return {a: max(ts) for a, ts in got.items() if len(ts) == len(channels)}

    def lags(self) -> dict[str, float]:
        """Consumer lag summed per service, from each service's `/metrics` (absent: not answering)."""
        out: dict[str, float] = {}
        for svc in topology.services():
            try:
                r = self.http.get(self.p.service_url(svc) + "/metrics", timeout=5)
            except httpx.HTTPError:
                continue
            out[svc] = sum(
                float(line.rsplit(" ", 1)[1])
                for line in r.text.splitlines()
                if line.startswith("arrears_consumer_lag{")
            )
        return out


SEND_TIMEOUT_S = 5.0  # ARREARS_DISPATCH_SEND_TIMEOUT_S of the run: a send in flight at a stop ends by then
CONFIRMATION = "you are unsubscribed"  # the one SMS an opt-out answers with (not dunning)


class Sends:
    """Provider sends by account, kept up to date incrementally (a 100,000-account run has 200,000 sends): email
    notices carry the notice id (account first), SMS go to the account's phone."""

    def __init__(self, accounts: list[SheetAccount], quo: LedgerTail, gmail: LedgerTail) -> None:
        self.by_phone = {a.phone: a.id for a in accounts}
        self.quo, self.gmail = quo, gmail
        self._read = {"quo": 0, "gmail": 0}
        self._by: dict[str, list[tuple[float, str, str]]] = defaultdict(list)
        self.texted: set[str] = set()  # accounts sent at least one SMS
        self._lock = threading.Lock()

    def by_account(self) -> dict[str, list[tuple[float, str, str]]]:
        """account -> [(accepted at, channel, detail)] in ledger order (read-only for the caller)."""
        with self._lock:
            return self._update()

    def _update(self) -> dict[str, list[tuple[float, str, str]]]:
        new = self.quo.since(self._read["quo"])
        self._read["quo"] += len(new)
        for e in new:
            aid = self.by_phone.get(e["recipient"])
            if aid is not None:
                dropped = " (answer dropped)" if e.get("dropped") else ""
                self._by[aid].append((at(e), "sms", f"{e['provider_id']}{dropped} {e.get('content') or ''}"))
                self.texted.add(aid)
        new = self.gmail.since(self._read["gmail"])
        self._read["gmail"] += len(new)
        for e in new:
            if e.get("notice_id"):
                self._by[e["notice_id"].split(":", 1)[0]].append(
                    (at(e), "email", f"{e['notice_id']} {e.get('content') or ''}")
                )
        return self._by


def stage_line(label: str, times: list[float], t0: float) -> str:
    if not times:
        return f"  {label:<34} (none)"
    rel = [t - t0 for t in times]
    return (
        f"  {label:<34} first {min(rel):7.1f}s  median {percentile(rel, 0.5):7.1f}s  last {max(rel):7.1f}s"
        f"  ({len(rel)})"
    )


def stop_latencies(
    posted: dict[str, float],
    held: dict[str, float],
    sends: dict[str, list[tuple[float, str, str]]],
    channels: tuple[str, ...],
) -> tuple[list[float], int, int]:
    """(latency per account in seconds, sends after a stop, accounts whose stop never held)."""
    lat: list[float] = []
    after = never = 0
    for aid, t_post in posted.items():
        t_stop = held.get(aid)
        if t_stop is None:
            never += 1
            continue
        effective = t_stop
        for t, ch, content in sends.get(aid, []):
            if ch not in channels or t <= t_post or CONFIRMATION in content.lower():
                continue
            if t <= t_stop + SEND_TIMEOUT_S:
                effective = max(effective, t)  # in flight when the stop was recorded
            else:
                after += 1
        lat.append(effective - t_post)
    return lat, after, never


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def machine_load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}, {psutil.cpu_count()} cores"


def wait_until(check: Callable[[], bool], timeout_s: float, every_s: float = 1.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every_s)
    return check()


def batched(seq: list[Any], n: int) -> Iterator[list[Any]]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
