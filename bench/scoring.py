"""Scoring benchmark: simulate the history of 100,000 accounts, train the three models, score every open
account, then a simulated 60-day A/B run (model-chosen channel and hour vs the fixed policy, same accounts
and same random draws).

It uses the service's own code (arrears_scoring: simulator, feature pipeline, training, scoring) on in-memory
history, not the broker: what is measured is the models and the scoring, not Kafka.

Last line: `BENCH scoring accounts=… auc_pay14=… brier_pay14=… score_s=… uplift_recovery=…`
(targets: auc_pay14 ≥ 0.75, score_s ≤ 30 for 100,000 accounts, uplift_recovery > 0; uplift_recovery is the
relative difference of the amounts recovered, (model − fixed) / fixed).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

import numpy as np
from arrears_scoring.features.pipeline import CANDIDATE_HOURS, features_at, prepare
from arrears_scoring.history.rows import CHANNELS
from arrears_scoring.models.score import score
from arrears_scoring.models.training import train_all
from arrears_scoring.simulate import chosen_policy, copy_state, fixed_policy, run, simulate

END_DAY = 20_400  # an arbitrary fixed day number: runs are comparable across machines and dates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--accounts", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=120, help="days of simulated history")
    ap.add_argument("--ab-days", type=int, default=60)
    ap.add_argument("--seed", type=int, default=20)
    args = ap.parse_args()

    t0 = time.perf_counter()
    sim = simulate(args.accounts, args.days, end_day=END_DAY, seed=args.seed)
    h = sim.history
    t_sim = time.perf_counter() - t0
    print(
        f"simulated {h.n:,} accounts over {args.days} days in {t_sim:.1f}s: {len(h.messages.t):,} messages, "
        f"{len(h.replies.t):,} replies, {len(h.payments.t):,} payments, {len(h.clicks.t):,} clicks"
    )

    t0 = time.perf_counter()
    trained = {t.kind: t for t in train_all(prepare(h), end_day=END_DAY)}
    t_train = time.perf_counter() - t0
    print(f"trained in {t_train:.1f}s")
    for kind, t in trained.items():
        m = {k: v for k, v in t.metrics.items() if k != "calibration"}
        print(
            f"  {kind:9s} train {t.window.train_from}..{t.window.train_to} test {t.window.test_from}..{t.window.test_to} {m}"
        )
    print("  calibration pay14 (predicted -> observed, n):")
    for b in trained["pay14"].metrics["calibration"]:
        print(f"    {b['from']:.1f}-{b['to']:.1f}  {b['predicted']:.3f} -> {b['observed']:.3f}  n={b['n']}")

    models = {k: t.model for k, t in trained.items()}
    # the timed run scores every account of the history (paid-off ones too), as if all 100,000 were open
    t0 = time.perf_counter()
    frame = features_at(prepare(h), END_DAY)
    every = score(models, replace(frame, open=frame.known))
    score_s = time.perf_counter() - t0
    print(
        f"scored {len(every.rows):,} accounts (features + best of {len(CHANNELS)}x{len(CANDIDATE_HOURS)} "
        f"contacts + 3 reasons each) in {score_s:.2f}s"
    )
    scores = score(models, frame)  # the open ones: those the A/B run contacts
    print(
        f"  {len(scores.rows):,} of them are open; bands: {np.bincount(np.digitize(scores.risk, [34, 67]), minlength=3).tolist()} (low, medium, high)"
    )

    # A/B: the same customers from the same state, the same draws; only the channel and hour differ
    channel = np.full(h.n, -1, dtype=np.int64)
    hour = np.full(h.n, 10, dtype=np.int64)
    channel[scores.rows] = scores.channel
    hour[scores.rows] = scores.hour
    ab_seed = args.seed + 1000
    _, _, fixed = run(sim.pop, copy_state(sim.state), END_DAY, args.ab_days, fixed_policy(), ab_seed)
    _, _, model = run(
        sim.pop, copy_state(sim.state), END_DAY, args.ab_days, chosen_policy(channel, hour), ab_seed
    )
    uplift = (model - fixed) / fixed if fixed else 0.0
    hidden_ch = float(np.mean(scores.channel == sim.pop.pref_channel[scores.rows]))
    print(
        f"A/B {args.ab_days} days: recovered fixed={fixed / 100:,.0f} model={model / 100:,.0f} "
        f"(best channel = hidden preference for {hidden_ch:.0%} of accounts)"
    )
    pay = trained["pay14"].metrics
    print(
        f"BENCH scoring accounts={h.n} auc_pay14={pay['auc']:.4f} brier_pay14={pay['brier']:.4f} "
        f"score_s={score_s:.2f} uplift_recovery={uplift:.4f}"
    )


if __name__ == "__main__":
    main()
