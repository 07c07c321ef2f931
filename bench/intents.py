"""Reply understanding on the held-out test split: per-intent precision/recall, promise extraction, the
review and fail-safe figures, and the time to classify one reply (safety rules + features + model +
promise extraction, the whole `classify` call), steady state after one warm pass.

Also prints the same figures on `intents/holdout/external.jsonl`, a second labelled set written by an author
who saw neither the corpus nor the model, never trained on (a check that the test split does not flatter).

Last line: `BENCH intents n=… accuracy=… macro_f1=… opt_out_recall=… opt_out_precision=… p99_ms=…
fail_safe_recall=… review_rate=…` (targets: accuracy >= 0.95, opt-out recall >= 0.995, opt-out precision
>= 0.98, p99 <= 2 ms). `opt_out_recall` is the model's own verdict (its best guess is opt-out);
`fail_safe_recall` also counts opt-outs it was unsure of and held for a person (no message goes out).
"""

from __future__ import annotations

import argparse
import gc
import time
from pathlib import Path

import numpy as np
from arrears_cli.commands.intents import print_report
from arrears_responses.intents.classifier import BUNDLED_MODEL, ReplyClassifier
from arrears_responses.intents.corpus import load_corpus, load_split, split_corpus
from arrears_responses.intents.model import IntentModel
from arrears_responses.intents.train import evaluate

HOLDOUT = BUNDLED_MODEL.parent.parent / "holdout"


def latency(clf: ReplyClassifier, examples: list, rounds: int) -> tuple[float, float]:
    """p50 / p99 in ms of one classify call over `rounds` passes of `examples` (GC as in production)."""
    times: list[float] = []
    for _ in range(rounds):
        for e in examples:
            t0 = time.perf_counter()
            clf.classify(e.text, e.received_at, channel=e.channel)
            times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=BUNDLED_MODEL)
    ap.add_argument("--rounds", type=int, default=20, help="timing passes over the test split")
    ap.add_argument("--misses", action="store_true", help="print every reply the model gets wrong")
    args = ap.parse_args()
    model = IntentModel.load(args.model)
    clf = ReplyClassifier(model)
    _, test = split_corpus(load_corpus(), load_split())
    print(
        f"model {model.version} (features={model.meta.get('features')}, trained on {model.meta.get('train_size')})"
    )
    evaluate(clf, test)  # warm pass: compiled patterns, caches
    report = evaluate(clf, test)
    gc.collect()
    p50, p99 = latency(clf, test, args.rounds)
    print(f"\n== test split (n={report.n}) ==")
    print_report(report, misses=args.misses)
    external = load_corpus(HOLDOUT) if HOLDOUT.exists() else []
    if external:
        ext = evaluate(clf, external)
        print(f"\n== external holdout (n={ext.n}, written after the model) ==")
        print_report(ext)
        print(
            f"EXTERNAL intents n={ext.n} accuracy={ext.accuracy:.4f} macro_f1={ext.macro_f1:.4f} "
            f"opt_out_recall={ext.opt_out_recall:.4f} opt_out_precision={ext.opt_out_precision:.4f} "
            f"fail_safe_recall={ext.fail_safe_recall:.4f}"
        )
    print(f"\nlatency over {args.rounds} x {report.n} calls: p50={p50:.3f} ms p99={p99:.3f} ms")
    print(
        f"BENCH intents n={report.n} accuracy={report.accuracy:.4f} macro_f1={report.macro_f1:.4f} "
        f"opt_out_recall={report.opt_out_recall:.4f} opt_out_precision={report.opt_out_precision:.4f} "
        f"p99_ms={p99:.3f} fail_safe_recall={report.fail_safe_recall:.4f} review_rate={report.review_rate:.4f}"
    )


if __name__ == "__main__":
    main()
