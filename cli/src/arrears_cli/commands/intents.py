"""`arrears intents split|train|evaluate|retrain|models`: the reply classifier's corpus and models.

- `split` makes the corpus's train/test split once (fixed seed); later replies are training data;
- `train` trains the model shipped in the package from the train split and records its test metrics;
- `evaluate` prints per-intent precision/recall and the headline figures of a model on the test split;
- `retrain` (database) trains a candidate on the train split + people's corrections, activates it only
  if it is not worse than the active model on the test split, and records the decision (audit log);
- `models` (database) lists the versions with status, metrics and decision."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from arrears_responses.intents.classifier import BUNDLED_MODEL, ReplyClassifier
from arrears_responses.intents.corpus import (
    SPLIT_FILE,
    corpus_sha256,
    load_corpus,
    load_split,
    make_split,
    split_corpus,
)
from arrears_responses.intents.features import features_sha256
from arrears_responses.intents.model import IntentModel
from arrears_responses.intents.train import Report, evaluate, train
from arrears_shared.audit import append
from sqlalchemy.ext.asyncio import AsyncConnection

from arrears_cli.db import DbUrl, cli_actor, run_in_transaction

intents_app = typer.Typer(
    help="Reply classifier: corpus split, training, evaluation, retraining.", no_args_is_help=True
)
SCHEMA = "responses"


def print_report(r: Report, *, misses: bool = False) -> None:
    typer.echo(f"{'intent':<18}{'precision':>10}{'recall':>8}{'f1':>8}{'n':>6}")
    for intent, m in r.per_intent.items():
        typer.echo(
            f"{intent:<18}{m['precision']:>10.3f}{m['recall']:>8.3f}{m['f1']:>8.3f}{int(m['support']):>6}"
        )
    p = r.promise
    typer.echo(
        f"promises n={p['n']} amount={p['amount']:.3f} currency={p['currency']:.3f} date={p['date']:.3f} "
        f"plan={p['plan']:.3f}"
    )
    typer.echo(
        f"review_rate={r.review_rate:.3f} auto_accuracy={r.auto_accuracy:.4f} "
        f"fail_safe_opt_out_recall={r.fail_safe_recall:.4f}"
    )
    typer.echo(
        f"acted on without a person: opt-out precision={r.acted_opt_out_precision:.4f} "
        f"recall={r.acted_opt_out_recall:.4f} (the rest of the opt-outs were held for a person)"
    )
    if misses:
        by_id = {e.id: e for e in load_corpus()}
        for rid, gold, got, conf in r.misses:
            typer.echo(f"  miss {rid}: {gold} -> {got} ({conf:.2f}) {by_id[rid].text[:100]!r}")


@intents_app.command()
def split() -> None:
    """Make the train/test split (once: refuses when corpus/split.json exists)."""
    if SPLIT_FILE.exists():
        typer.echo(f"{SPLIT_FILE} exists: the split is made once (new replies are training data)", err=True)
        raise typer.Exit(1)
    s = make_split(load_corpus())
    SPLIT_FILE.write_text(json.dumps(s, indent=1) + "\n", encoding="utf-8")
    typer.echo(f"test split: {len(s['test'])} replies -> {SPLIT_FILE}")


@intents_app.command("train")
def train_cmd(
    output: Annotated[Path, typer.Option(help="Where to write the model (.npz + .json)")] = BUNDLED_MODEL,
    misses: Annotated[bool, typer.Option(help="Print every test reply the model gets wrong")] = False,
) -> None:
    """Train the shipped model on the train split; evaluate and record its metrics on the test split."""
    train_set, test_set = split_corpus(load_corpus(), load_split())
    sha = corpus_sha256()
    version = f"intents-corpus-{sha[:12]}-f{features_sha256()[:8]}"
    model = train(train_set, meta={"version": version, "corpus_sha256": sha, "source": "bundled"})
    report = evaluate(ReplyClassifier(model), test_set)
    evaluate(ReplyClassifier(model), test_set)  # warm: the recorded latency is steady state
    report_warm = evaluate(ReplyClassifier(model), test_set)
    from arrears_responses.intents.retrain import metrics_of

    model.meta["metrics"] = {**metrics_of(report), "p99_ms": round(report_warm.p99_ms, 4)}
    model.meta["test_size"] = len(test_set)
    model.save(output)
    print_report(report, misses=misses)
    typer.echo(f"model {model.version}: {json.dumps(model.meta['metrics'])} -> {output}")


@intents_app.command("evaluate")
def evaluate_cmd(
    model: Annotated[Path, typer.Option(help="Model file (.npz)")] = BUNDLED_MODEL,
    misses: Annotated[bool, typer.Option(help="Print every test reply the model gets wrong")] = False,
) -> None:
    """Evaluate a model on the test split."""
    _, test_set = split_corpus(load_corpus(), load_split())
    m = IntentModel.load(model)
    r = evaluate(ReplyClassifier(m), test_set)
    print_report(r, misses=misses)
    typer.echo(json.dumps({k: v for k, v in r.as_dict().items() if k not in ("per_intent", "promise")}))


@intents_app.command()
def retrain(database_url: DbUrl = None) -> None:
    """Train on corpus + corrections; activate only if not worse on the test split."""
    from arrears_responses.intents.retrain import Decision
    from arrears_responses.intents.retrain import retrain as run_retrain

    async def work(conn: AsyncConnection) -> Decision:
        d = await run_retrain(conn, SCHEMA, cli_actor())
        await append(
            conn, SCHEMA, actor=cli_actor(), role="admin", action="intent_model.retrained",
            entity="intent_model", entity_id=d.version,
            before={"version": d.baseline_version, **d.baseline},
            after={"activated": d.activated, "reasons": d.reasons, **d.candidate},
        )  # fmt: skip
        return d

    d = run_in_transaction(database_url, work)
    verdict = "activated" if d.activated else "rejected: " + "; ".join(d.reasons)
    typer.echo(f"candidate {d.version}: {verdict}")
    typer.echo(f"  candidate {json.dumps(d.candidate)}")
    typer.echo(f"  active    {d.baseline_version} {json.dumps(d.baseline)}")


@intents_app.command()
def models(database_url: DbUrl = None) -> None:
    """List intent model versions (newest first)."""
    from arrears_responses.intents.registry import list_models

    async def work(conn: AsyncConnection) -> list[dict[str, Any]]:
        return await list_models(conn, SCHEMA)

    for m in run_in_transaction(database_url, work):
        metrics: dict[str, Any] = dict(m["metrics"] or {})  # type: ignore[call-overload]
        typer.echo(
            f"{m['version']:<40} {m['status']:<9} {m['source']:<8} acc={metrics.get('accuracy')} "
            f"opt_out_recall={metrics.get('opt_out_recall')} {m['decision']}"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(intents_app, name="intents")
