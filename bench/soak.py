"""Soak (issue 17): the whole platform of `bench/loop.py` at a steady rate for `--minutes` (default 30): every
`--batch-every` seconds a batch of new past-due accounts is added to the sheet and the sheet runs (as the
scheduler would), while signed payments and STOP texts arrive at a steady pace. Every process is sampled every
5 s (RSS of the process, its open TCP connections; PostgreSQL: the postmaster's own).

It fails when, after the first third (warm-up: caches, pools and PostgreSQL's shared buffers fill), a
process's memory or connections keep growing: the last third's median is above the middle third's by more
than `--rss-growth-mib` (and 10 %) or `--conn-growth` connections; or when, once the load stops, some
consumer lag does not return to zero within two minutes. The provider emulators keep every message they
accept (their ledgers), so their memory grows by design and is reported, not judged.

Last line:
  SOAK minutes=… accounts=… sends=… worst_rss_growth_mib=… worst_conn_growth=… final_lag=… result=ok|FAIL
Usage: python bench/soak.py [--minutes 30] [--accounts-per-min 600] [--batch-every 60]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from common import ensure_stack_keys  # noqa: E402
from loop_stack import LedgerTail, LoopStack, Sampler, Sends, daytime_locale, loop_sheet, machine_load  # noqa: E402


def thirds(series: list[tuple[float, int, int]], index: int) -> tuple[float, float]:
    """Medians of the middle and the last third of one column of a process's samples."""
    n = len(series)
    middle = [s[index] for s in series[n // 3 : 2 * n // 3]] or [0]
    last = [s[index] for s in series[2 * n // 3 :]] or [0]
    return float(statistics.median(middle)), float(statistics.median(last))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--accounts-per-min", type=int, default=600)
    ap.add_argument("--batch-every", type=float, default=60.0)
    ap.add_argument("--payments-per-min", type=int, default=30)
    ap.add_argument("--stops-per-min", type=int, default=30)
    ap.add_argument("--rss-growth-mib", type=float, default=40.0)
    ap.add_argument("--conn-growth", type=int, default=10)
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    rng = random.Random(31)
    batches = max(1, int(args.minutes * 60 / args.batch_every))
    per_batch = max(1, int(args.accounts_per_min * args.batch_every / 60))
    loc = daytime_locale(run_minutes=args.minutes + 5)
    rows, accounts = loop_sheet(batches * per_batch, loc, today=date.today(), seed=41)
    print(
        f"{batches} batches of {per_batch} accounts over {args.minutes} min in {loc.zone}; {machine_load()}",
        flush=True,
    )
    folder = Path(tempfile.mkdtemp(prefix="soak-"))
    with LoopStack(folder) as s:
        quo = LedgerTail(s.p.emulator_url("quo"), interval_s=2.0).start()
        gmail = LedgerTail(s.p.emulator_url("gmail"), interval_s=2.0).start()
        sends = Sends(accounts, quo, gmail)
        sampler = Sampler(s.pids, interval_s=5.0, connections=True)
        sampler.baseline()
        sampler.start()
        t0 = time.monotonic()
        paid: set[str] = set()
        stopped: set[str] = set()
        for b in range(batches):
            batch_start = t0 + b * args.batch_every
            s.load_sheet(rows[: 1 + (b + 1) * per_batch])  # the sheet grows by one batch
            s.run_sheet()
            live = accounts[: (b + 1) * per_batch]
            n_pay = int(args.payments_per_min * args.batch_every / 60)
            n_stop = int(args.stops_per_min * args.batch_every / 60)
            reached = sends.by_account()
            fresh = [a for a in live if a.id not in reached and a.id not in paid]
            texted = [a for a in live if a.id in reached and a.id not in stopped and a.id not in paid]
            gap = (args.batch_every * 0.8) / max(1, n_pay + n_stop)
            for a in rng.sample(fresh, min(n_pay, len(fresh))):
                s.pay(a)
                paid.add(a.id)
                time.sleep(gap)
            for a in rng.sample(texted, min(n_stop, len(texted))):
                s.reply_sms(a)
                stopped.add(a.id)
                time.sleep(gap)
            lag = s.lags()
            print(
                f"t={time.monotonic() - t0:5.0f}s batch {b + 1}/{batches}: sms {len(quo.entries)} email"
                f" {len(gmail.entries)}, lag {sum(lag.values()):.0f}; {machine_load()}",
                flush=True,
            )
            time.sleep(max(0.0, batch_start + args.batch_every - time.monotonic()))
        # the load stops: every lag must come back to zero
        deadline = time.monotonic() + 120
        final_lag = float("inf")
        while time.monotonic() < deadline:
            final_lag = sum(s.lags().values())
            if final_lag == 0:
                break
            time.sleep(5)
        sampler.stop()
        quo.stop()
        gmail.stop()

        worst_rss = worst_conn = 0.0
        failing: list[str] = []
        print("process              RSS MiB (middle -> last third)   TCP connections (middle -> last)")
        for name, series in sorted(sampler.stats.samples.items()):
            (m_rss, l_rss), (m_conn, l_conn) = thirds(series, 1), thirds(series, 2)
            grow_mib = (l_rss - m_rss) / 2**20
            grow_conn = l_conn - m_conn
            judged = LoopStack.is_platform(name)
            print(
                f"  {name:<20} {m_rss / 2**20:8.0f} -> {l_rss / 2**20:8.0f}            {m_conn:5.0f} -> {l_conn:5.0f}"
                f"{'' if judged else '   (emulator: keeps every message; not judged)'}"
            )
            if not judged:
                continue
            worst_rss = max(worst_rss, grow_mib)
            worst_conn = max(worst_conn, grow_conn)
            if grow_mib > args.rss_growth_mib and l_rss > m_rss * 1.10:
                failing.append(f"{name} memory grew {grow_mib:.0f} MiB")
            if grow_conn > args.conn_growth:
                failing.append(f"{name} connections grew by {grow_conn:.0f}")
        if final_lag != 0:
            failing.append(f"consumer lag {final_lag} two minutes after the load stopped")
        for f in failing:
            print("FAIL:", f)
        print(machine_load())
        n_sends = len(quo.entries) + len(gmail.entries)
        print(
            f"SOAK minutes={args.minutes:g} accounts={len(accounts)} sends={n_sends}"
            f" worst_rss_growth_mib={worst_rss:.0f} worst_conn_growth={worst_conn:.0f} final_lag={final_lag:.0f}"
            f" result={'ok' if not failing else 'FAIL'}",
            flush=True,
        )
    if not failing and not args.keep:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    return 0 if not failing else 1


if __name__ == "__main__":
    ensure_stack_keys()
    sys.exit(main())
