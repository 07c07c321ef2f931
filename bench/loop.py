"""The whole platform under load (issue 17): every service its own process on the embedded stack, one sheet of
N accounts (default 100,000), the provider emulators with their limits lifted.

1. The sheet run: from `POST /ingest/sheet` to the last account's first notice accepted by a provider
   (`first_notices_s`), with a per-stage breakdown from the services' own records: the ingest run, the
   segmenter's notices, the dispatchers' queued deliveries, the providers' ledgers.
2. While that backlog drains: signed Stripe payments (in full) at random accounts not yet contacted, and STOP
   texts from random accounts already texted. For each, the time until its sequence is stopped: until the stop
   holds in every dispatcher that could still message the account (`account_stops` / `opt_outs`, written when
   the dispatcher reads the event) or, if a send to it was already in flight then, until that send was
   accepted. Any send accepted later than the stop plus the send timeout (so not in flight at the stop) is a
   send after the stop: there must be none.
3. CPU-seconds of the whole platform (services, broker, PostgreSQL; not the emulators) per account, and the
   peak RSS of each process, from the sheet run until the end of the run: when every account got its first
   notice and every stopped account's queue is settled. Later channels' notices may still be queued then (an
   account's email after its SMS): their number is printed, their cost is not in the figure.

Last line:
  BENCH loop accounts=… first_notices_s=… payment_stop_p99_ms=… stop_sms_p99_ms=… cpu_ms_per_account=…
Exit status 0 only when every account was reached (or stopped first) and nothing was sent after a stop.

Usage: python bench/loop.py [--accounts 100000] [--payments 1000] [--stops 1000] [--inject-over 120]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import ensure_stack_keys  # noqa: E402
from loop_stack import (  # noqa: E402
    SEND_TIMEOUT_S,
    LedgerTail,
    LoopStack,
    Sampler,
    Sends,
    SheetAccount,
    daytime_locale,
    loop_sheet,
    machine_load,
    percentile,
    stage_line,
    stop_latencies,
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--payments", type=int, default=1000)
    ap.add_argument("--stops", type=int, default=1000)
    ap.add_argument("--inject-after", type=float, default=0.05, help="share of accounts reached first")
    ap.add_argument("--inject-over", type=float, default=120.0, help="seconds to spread the injections over")
    ap.add_argument("--timeout", type=float, default=2400.0)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--keep", action="store_true", help="keep the run's folder (logs) afterwards")
    args = ap.parse_args()
    rng = random.Random(5)
    loc = daytime_locale(run_minutes=15)
    rows, accounts = loop_sheet(args.accounts, loc, today=date.today())
    by_id = {a.id: a for a in accounts}
    print(f"{len(accounts)} accounts in {loc.zone} ({loc.country}), {machine_load()}", flush=True)

    folder = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    with LoopStack(folder, partitions=args.partitions) as s:
        s.load_sheet(rows)
        quo = LedgerTail(s.p.emulator_url("quo")).start()
        gmail = LedgerTail(s.p.emulator_url("gmail")).start()
        sampler = Sampler(s.pids, interval_s=2.0)
        sampler.baseline()
        sampler.start()
        sends = Sends(accounts, quo, gmail)
        print(f"platform up in {s.p.timings.get('total', 0):.1f}s; running the sheet", flush=True)

        t0 = time.time()
        run: dict[str, Any] = {}
        runner = threading.Thread(target=lambda: run.update(s.run_sheet()), daemon=True)
        runner.start()

        paid_at: dict[str, float] = {}
        stopped_at: dict[str, float] = {}
        failures: list[str] = []

        def inject() -> None:
            """Payments at accounts not reached yet, STOP texts from accounts already texted, interleaved at
            an even pace over `inject_over` seconds."""
            targets = set(rng.sample([a.id for a in accounts], min(len(accounts), args.payments * 3)))
            gap = args.inject_over / max(1, args.payments + args.stops)
            n_pay = n_stop = 0
            pool = ThreadPoolExecutor(8)

            def pay(a: SheetAccount) -> None:
                t = time.time()
                r = s.pay(a)
                if r.status_code != 200:
                    failures.append(f"payment {a.id}: {r.status_code} {r.text[:200]}")
                else:
                    paid_at[a.id] = t

            def stop(a: SheetAccount) -> None:
                t = time.time()
                r = s.reply_sms(a)
                if r.status_code >= 300:
                    failures.append(f"STOP {a.id}: {r.status_code} {r.text[:200]}")
                else:
                    stopped_at[a.id] = t

            while n_pay < args.payments or n_stop < args.stops:
                reached = sends.by_account()
                if n_pay <= n_stop and n_pay < args.payments:
                    fresh = [x for x in targets if x not in reached and x not in paid_at]
                    if fresh:
                        a = by_id[fresh[rng.randrange(len(fresh))]]
                        targets.discard(a.id)
                        pool.submit(pay, a)
                    n_pay += 1
                elif n_stop < args.stops:
                    texted = list(sends.texted)
                    texted = [x for x in texted if x not in stopped_at and x not in paid_at]
                    if texted:
                        pool.submit(stop, by_id[texted[rng.randrange(len(texted))]])
                    n_stop += 1
                else:
                    n_pay += 1
                time.sleep(gap)
            pool.shutdown(wait=True)

        injector = threading.Thread(target=inject, daemon=True)
        injecting = False
        last_report = time.time()
        done = False
        while time.time() - t0 < args.timeout:
            time.sleep(2)
            reached = sends.by_account()
            if not injecting and len(reached) >= args.inject_after * len(accounts):
                injecting = True
                injector.start()
                print(f"t={time.time() - t0:.0f}s injecting payments and STOP texts", flush=True)
            if time.time() - last_report >= 20:
                last_report = time.time()
                print(
                    f"t={time.time() - t0:.0f}s accounts reached {len(reached)}/{len(accounts)};"
                    f" sms {len(quo.entries)} email {len(gmail.entries)}; {machine_load()}",
                    flush=True,
                )
            if injecting and not injector.is_alive() and not runner.is_alive():
                # done once every account got its first notice (or was paid first) and every stop has
                # settled what was queued for its account; the rest of the backlog (later channels) may
                # still be draining: it is reported, not waited for
                left = [a for a in accounts if a.id not in reached and a.id not in paid_at]
                pending = s.query(
                    "SELECT (SELECT count(*) FROM dispatcher_sms.deliveries WHERE state IN ('queued','sending')"
                    " AND account_id = ANY(:a)) + (SELECT count(*) FROM dispatcher_email.deliveries"
                    " WHERE state IN ('queued','sending') AND account_id = ANY(:p)) AS n",
                    {"a": sorted({*paid_at, *stopped_at}), "p": sorted(paid_at)},
                )[0]["n"]
                if not left and pending == 0:
                    done = True
                    break
        elapsed = time.time() - t0
        time.sleep(SEND_TIMEOUT_S + 2)  # anything still in flight lands in the ledgers
        sampler.stop()
        backlog = s.query(
            "SELECT (SELECT count(*) FROM dispatcher_sms.deliveries WHERE state IN ('queued','sending'))"
            " + (SELECT count(*) FROM dispatcher_email.deliveries WHERE state IN ('queued','sending')) AS n"
        )[0]["n"]
        quo.stop()
        gmail.stop()
        reached = sends.by_account()

        # -- the sheet run, stage by stage --------------------------------------------------------------
        first = {aid: min(t for t, _, _ in ss) for aid, ss in reached.items()}
        first_notices_s = max(first.values()) - t0 if first else float("nan")
        notices = s.query("SELECT emitted_at FROM segmenter.notices")
        queued_rows = s.query(
            "SELECT created_at FROM dispatcher_sms.deliveries UNION ALL SELECT created_at FROM dispatcher_email.deliveries"
        )
        print(f"sheet run: {run.get('rows')} rows, {run.get('created')} created, status {run.get('status')}")
        started = run.get("started")
        print("stages (seconds from POST /ingest/sheet):")
        if run.get("finished") and started:
            from datetime import datetime

            f = datetime.fromisoformat(run["finished"]).timestamp()
            print(f"  {'ingest run (read, validate, publish)':<34} done {f - t0:7.1f}s")
        print(stage_line("segmenter notices emitted", [r["emitted_at"].timestamp() for r in notices], t0))
        print(
            stage_line(
                "dispatchers' deliveries queued", [r["created_at"].timestamp() for r in queued_rows], t0
            )
        )
        print(stage_line("first notice accepted, per account", list(first.values()), t0))
        all_sends = [t for ss in reached.values() for t, _, _ in ss]
        print(stage_line("every send accepted", all_sends, t0))

        # -- stops -------------------------------------------------------------------------------------
        channels = ("dispatcher-sms", "dispatcher-email")
        pay_held = s.stop_times("account_stops", "recorded_at", channels)
        pay_lat, pay_after, pay_never = stop_latencies(paid_at, pay_held, reached, ("sms", "email"))
        opt_held = s.stop_times("opt_outs", "created_at", ("dispatcher-sms",))
        stop_lat, stop_after, stop_never = stop_latencies(stopped_at, opt_held, reached, ("sms",))
        for label, lat, after, never, n in (
            ("payments", pay_lat, pay_after, pay_never, len(paid_at)),
            ("STOP texts", stop_lat, stop_after, stop_never, len(stopped_at)),
        ):
            ms = [x * 1000 for x in lat]
            print(
                f"{label}: {n} sent, stopped in p50 {percentile(ms, 0.5):.0f} ms, p99 {percentile(ms, 0.99):.0f} ms,"
                f" max {max(ms, default=float('nan')):.0f} ms; never stopped {never}; sends after the stop {after}"
            )
        for f in failures[:10]:
            print("  failed:", f)

        # -- cost ---------------------------------------------------------------------------------------
        cpu = sampler.cpu_total(LoopStack.is_platform)
        emu = sampler.cpu_total(lambda n: not LoopStack.is_platform(n))
        n_sends = len(quo.entries) + len(gmail.entries)
        print(
            f"after {elapsed:.0f} s: {n_sends} messages sent, {backlog} notices still queued (later channels);"
            f" CPU: platform {cpu:.0f} s ({cpu * 1000 / len(accounts):.1f} ms per account,"
            f" {cpu * 1000 / max(1, n_sends):.1f} ms per message sent), emulators {emu:.0f} s"
        )
        for name, cpu_s in sorted(sampler.stats.cpu_s.items(), key=lambda kv: -kv[1]):
            print(
                f"  {name:<22} cpu {cpu_s:8.1f} s   peak RSS {sampler.stats.peak_rss.get(name, 0) / 2**20:7.0f} MiB"
            )
        print(machine_load())
        unreached = [a.id for a in accounts if a.id not in reached and a.id not in paid_at]
        ok = done and not unreached and pay_after == stop_after == 0 and pay_never == stop_never == 0
        ok = ok and not failures
        if not ok:
            print(
                f"NOT OK: finished={done} unreached={len(unreached)} failures={len(failures)}"
                f" logs in {folder}",
                flush=True,
            )
        print(
            f"BENCH loop accounts={len(accounts)} first_notices_s={first_notices_s:.1f}"
            f" payment_stop_p99_ms={percentile([x * 1000 for x in pay_lat], 0.99):.0f}"
            f" stop_sms_p99_ms={percentile([x * 1000 for x in stop_lat], 0.99):.0f}"
            f" cpu_ms_per_account={cpu * 1000 / len(accounts):.1f}",
            flush=True,
        )
    if not args.keep and ok:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    ensure_stack_keys()
    sys.exit(main())
