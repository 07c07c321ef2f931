"""The whole platform under fire (issue 17): the stack of `bench/loop.py` with N accounts (default 20,000),
provider faults on (5xx, timeouts accepted late, accepted-then-dropped answers, slow answers), and for
`--chaos-minutes`: one of the seven services SIGKILLed every `--kill-every` seconds and restarted,
PostgreSQL restarted once, the broker paused (SIGSTOP) for 10 s once, while a sheet edit (balances changed,
some accounts marked Paid), signed payments and STOP texts arrive throughout. Every `--night-every`-th
account lives where it is night: nothing may reach it.

Then the faults stop, everything drains, and the providers' ledgers are compared with what the policy says
must have been sent: step 1 once on each consented channel to every account that is in its contact hours and
was not paid or marked Paid before that notice was sent.
  expected         (account, channel) pairs that must have been reached
  sent             dunning messages accepted by the providers
  lost             expected pairs never reached
  duplicates       dunning messages beyond the first per (account, channel)
  after_stop       sends to a paid account accepted after the stop held (+ the send timeout: not in flight)
  quiet_hour_sends dunning messages to accounts in their quiet hours
  opted_out_sends  dunning SMS accepted after the customer's STOP held (+ the send timeout)
Last line:
  CHAOS loop accounts=… expected=… sent=… lost=… duplicates=… after_stop=… quiet_hour_sends=… opted_out_sends=…
Exit status 0 only when the last five are all 0.

Usage: python bench/chaos_loop.py [--accounts 20000] [--chaos-minutes 5] [--kill-every 5] [--fault-rate 0.1]
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from chaos_dispatch import faults  # noqa: E402
from common import ensure_stack_keys  # noqa: E402
from loop_stack import (  # noqa: E402
    CONFIRMATION,
    SEND_TIMEOUT_S,
    LedgerTail,
    LoopStack,
    Sends,
    SheetAccount,
    daytime_locale,
    loop_sheet,
    machine_load,
    night_locale,
    stop_latencies,
)

SEVEN = ("ingest", "segmenter", "dispatcher-sms", "dispatcher-email", "responses", "escalation", "console")


class Chaos:
    """Kills and restarts in a thread of its own; the broker pause and the PostgreSQL restart once each."""

    def __init__(self, s: LoopStack, rng: random.Random, kill_every: float, minutes: float) -> None:
        self.s, self.rng, self.kill_every, self.minutes = s, rng, kill_every, minutes
        self.kills: Counter[str] = Counter()
        self.events: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def log(self, what: str) -> None:
        self.events.append(what)
        print(f"  chaos: {what}", flush=True)

    def run(self) -> None:
        p = self.s.p
        started = time.monotonic()
        end = started + self.minutes * 60
        pause_at = started + self.minutes * 60 * 0.3
        restart_pg_at = started + self.minutes * 60 * 0.6
        paused = restarted = False
        while time.monotonic() < end and not self.stop.is_set():
            now = time.monotonic()
            if not paused and now >= pause_at:
                paused = True
                self.log("broker paused (SIGSTOP) for 10 s")
                p.broker.pause()
                time.sleep(10)
                p.broker.resume()
                self.log("broker resumed (SIGCONT)")
                continue
            if not restarted and now >= restart_pg_at:
                restarted = True
                self.log("PostgreSQL restarting")
                t = time.monotonic()
                p.postgres.restart()
                self.log(f"PostgreSQL back after {time.monotonic() - t:.1f} s")
                continue
            victim = self.rng.choice(SEVEN)
            p.kill_service(victim, signal.SIGKILL)
            self.kills[victim] += 1
            time.sleep(self.rng.uniform(0.2, 1.5))
            p.supervisor.restart(victim)  # not waiting for it: the next kill may find it still starting
            time.sleep(max(0.0, self.kill_every - (time.monotonic() - now)))


def retrying(what: str, call, failures: list[str], deadline_s: float = 600.0) -> float | None:  # type: ignore[no-untyped-def]
    """Call until it answers 2xx, as a payment provider or a phone network retries; returns when it first
    succeeded."""
    deadline = time.monotonic() + deadline_s
    last = ""
    while time.monotonic() < deadline:
        try:
            r = call()
            if r.status_code < 300:
                return time.time()
            last = f"{r.status_code} {r.text[:120]}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(1.0)
    failures.append(f"{what}: {last}")
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=20_000)
    ap.add_argument("--chaos-minutes", type=float, default=5.0)
    ap.add_argument("--kill-every", type=float, default=5.0)
    ap.add_argument("--fault-rate", type=float, default=0.1)
    ap.add_argument("--payments", type=int, default=300)
    ap.add_argument("--stops", type=int, default=300)
    ap.add_argument("--sheet-edits", type=int, default=500)
    ap.add_argument("--night-every", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=2400.0)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    rng = random.Random(23)
    loc, night = daytime_locale(run_minutes=30), night_locale()
    rows, accounts = loop_sheet(
        args.accounts, loc, today=date.today(), night=night, night_every=args.night_every
    )
    by_id = {a.id: a for a in accounts}
    nights = {a.id for a in accounts if a.night}
    print(
        f"{len(accounts)} accounts in {loc.zone}, {len(nights)} in {night.zone} (quiet hours); {machine_load()}",
        flush=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="chaos-loop-"))
    failures: list[str] = []
    paid_at: dict[str, float] = {}
    marked_paid: dict[str, float] = {}
    stopped_at: dict[str, float] = {}
    with LoopStack(folder) as s:
        s.load_sheet(rows)
        quo = LedgerTail(s.p.emulator_url("quo"), interval_s=1.0).start()
        gmail = LedgerTail(s.p.emulator_url("gmail"), interval_s=1.0).start()
        sends = Sends(accounts, quo, gmail)
        s.faults("quo", faults(args.fault_rate, ["send"]))
        s.faults("gmail", faults(args.fault_rate, ["users.messages.send"]))
        t0 = time.time()
        s.run_sheet()
        print(
            f"sheet run done after {time.time() - t0:.0f} s; chaos for {args.chaos_minutes} min", flush=True
        )
        chaos = Chaos(s, rng, args.kill_every, args.chaos_minutes)
        chaos.thread.start()
        pool = ThreadPoolExecutor(8)
        day = [a for a in accounts if not a.night]
        # payments at accounts not reached yet, STOP texts from texted ones, a sheet edit, all during the chaos
        gap = args.chaos_minutes * 60 * 0.8 / max(1, args.payments + args.stops)
        edited = False
        edit = None
        n_pay = n_stop = 0
        pay_targets = rng.sample([a.id for a in day], min(len(day), args.payments * 3))
        # a sheet edit changes balances: it never touches an account a payment may pay in full
        editable = [a for a in day if a.id not in set(pay_targets)]
        while chaos.thread.is_alive() and (n_pay < args.payments or n_stop < args.stops or not edited):
            reached = sends.by_account()
            if not edited and time.time() - t0 > args.chaos_minutes * 60 * 0.45:
                edited = True
                edit = pool.submit(
                    sheet_edit, s, rng, editable, reached, args.sheet_edits, marked_paid, failures
                )
            if n_pay <= n_stop and n_pay < args.payments:
                n_pay += 1
                fresh = [x for x in pay_targets if x not in reached and x not in paid_at]
                if fresh:
                    a = by_id[fresh[rng.randrange(len(fresh))]]
                    pay_targets.remove(a.id)
                    paid_at[a.id] = time.time()  # latencies count from the first attempt
                    pool.submit(retrying, f"payment {a.id}", lambda a=a: s.pay(a), failures)
            elif n_stop < args.stops:
                n_stop += 1
                texted = list(sends.texted)
                texted = [x for x in texted if x not in stopped_at and x not in paid_at]
                if texted:
                    a = by_id[texted[rng.randrange(len(texted))]]
                    stopped_at[a.id] = time.time()
                    pool.submit(retrying, f"STOP {a.id}", lambda a=a: s.reply_sms(a), failures)
            time.sleep(gap)
        chaos.thread.join()
        pool.shutdown(wait=True)
        if edited:
            assert edit is not None
            edit.result()  # raises what the edit raised
        s.faults("quo", {"clear": True})
        s.faults("gmail", {"clear": True})
        print(f"chaos over after {time.time() - t0:.0f} s: kills {dict(chaos.kills)}; draining", flush=True)

        def drained() -> bool:
            left = s.query(
                "SELECT (SELECT count(*) FROM dispatcher_sms.deliveries WHERE state = 'sending' OR (state = 'queued'"
                " AND coalesce(last_error, '') NOT LIKE 'deferred:%')) + (SELECT count(*) FROM"
                " dispatcher_email.deliveries WHERE state = 'sending' OR (state = 'queued' AND"
                " coalesce(last_error, '') NOT LIKE 'deferred:%')) AS n"
            )[0]["n"]
            lag = s.lags()
            busy = {k: v for k, v in lag.items() if v}
            print(f"  t={time.time() - t0:.0f}s undelivered {left}, lag {busy or 0}", flush=True)
            return left == 0 and not busy and len(lag) >= len(SEVEN)

        deadline = time.time() + args.timeout
        while time.time() < deadline:
            try:
                if drained():
                    break
            except Exception as exc:  # noqa: BLE001 - a database still coming back: look again
                print(f"  not readable yet: {exc!r}"[:300], flush=True)
            time.sleep(10)

        def unstopped() -> int:
            held_pay = s.stop_times("account_stops", "recorded_at", ("dispatcher-sms", "dispatcher-email"))
            held_opt = s.stop_times("opt_outs", "created_at", ("dispatcher-sms",))
            return sum(a not in held_pay for a in [*paid_at, *marked_paid]) + sum(
                a not in held_opt for a in stopped_at
            )

        for _ in range(12):  # a provider may still be retrying a webhook a restart missed
            left = unstopped()
            if not left:
                break
            print(f"  {left} payments / STOPs not applied yet", flush=True)
            time.sleep(10)
        time.sleep(SEND_TIMEOUT_S + 3)
        stats = {n: s.http.get(s.p.emulator_url(n) + "/_emulator/stats").json() for n in ("quo", "gmail")}
        print(f"  QUO webhooks: {stats['quo'].get('extra', {})}", flush=True)
        quo.stop()
        gmail.stop()
        reached = sends.by_account()

        pay_held = s.stop_times("account_stops", "recorded_at", ("dispatcher-sms", "dispatcher-email"))
        opt_held = s.stop_times("opt_outs", "created_at", ("dispatcher-sms",))
        _, after_stop, pay_never = stop_latencies(paid_at, pay_held, reached, ("sms", "email"))
        _, opted_out_sends, stop_never = stop_latencies(stopped_at, opt_held, reached, ("sms",))
        _, marked_after, marked_never = stop_latencies(marked_paid, pay_held, reached, ("sms", "email"))

    expected = sent = lost = duplicates = quiet = 0
    stopped = paid_at.keys() | marked_paid.keys()
    for a in accounts:
        ss = [(t, ch) for t, ch, content in reached.get(a.id, []) if CONFIRMATION not in content.lower()]
        per = Counter(ch for _, ch in ss)
        sent += len(ss)
        extra = sum(max(0, n - 1) for n in per.values())
        if extra and duplicates < 10:
            print(f"  duplicate: {a.id} {sorted(reached.get(a.id, []))}"[:600], flush=True)
        duplicates += extra
        if a.night:
            quiet += len(ss)
            continue
        if a.id in stopped:
            continue  # reached or not, depending on whether the stop came first: both are right
        for ch in ("sms", "email"):
            expected += 1
            lost += per.get(ch, 0) == 0
    print(
        f"payments {len(paid_at)} (never stopped {pay_never}), sheet-marked Paid {len(marked_paid)}"
        f" (never stopped {marked_never}), STOP texts {len(stopped_at)} (never stopped {stop_never})"
    )
    print(f"chaos: {', '.join(chaos.events)}; SIGKILLs {sum(chaos.kills.values())} {dict(chaos.kills)}")
    for f in failures[:10]:
        print("  failed:", f)
    print(machine_load())
    after_stop += marked_after
    ok = lost == duplicates == after_stop == quiet == opted_out_sends == 0
    ok = ok and pay_never == stop_never == marked_never == 0 and not failures
    if not ok:
        print(f"NOT OK: logs in {folder}", flush=True)
    print(
        f"CHAOS loop accounts={len(accounts)} expected={expected} sent={sent} lost={lost} duplicates={duplicates}"
        f" after_stop={after_stop} quiet_hour_sends={quiet} opted_out_sends={opted_out_sends}",
        flush=True,
    )
    if ok and not args.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


def sheet_edit(
    s: LoopStack,
    rng: random.Random,
    day: list[SheetAccount],
    reached: dict[str, list[tuple[float, str, str]]],
    n: int,
    marked_paid: dict[str, float],
    failures: list[str],
) -> None:
    """A person edits the sheet: new balances for `n` accounts (no new notice: the step is the same), and a
    tenth of them marked Paid (among accounts not reached yet); then the sheet runs again."""
    picks = rng.sample(day, min(n, len(day)))  # `day` holds no account a payment may pick
    edits: list[tuple[int, str, str]] = []
    paid_now: list[str] = []
    for i, a in enumerate(picks):
        if i % 10 == 0 and a.id not in reached:
            edits.append((a.row, "Status", "Paid"))
            paid_now.append(a.id)
        else:
            edits.append((a.row, "Balance", f"{(a.balance_minor + 1_000) / 100:.2f}"))
    try:
        s.edit_cells(edits)
    except httpx.HTTPError as exc:
        failures.append(f"sheet edit: {exc!r}")
        return
    now = time.time()
    marked_paid.update(dict.fromkeys(paid_now, now))
    print(f"  sheet edited: {len(edits)} rows ({len(paid_now)} marked Paid); running the sheet", flush=True)
    retrying(
        "sheet run",
        lambda: s.http.post(
            s.p.service_url("ingest") + "/ingest/sheet",
            headers={"Authorization": f"Bearer {s.service_key}"},
            timeout=600,
        ),
        failures,
    )


if __name__ == "__main__":
    ensure_stack_keys()
    sys.exit(main())
