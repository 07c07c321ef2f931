"""Learning from people: train a candidate on the corpus's train split plus every person's correction,
evaluate it and the active model on the test split, activate it only if it is not worse (the gate), and
record the decision either way (`intent_models` + the audit log)."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arrears_shared.events import Intent
from arrears_shared.vault.cipher import UNREADABLE, open_value
from arrears_shared.vault.keys import vault
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .classifier import ReplyClassifier, bundled_model, is_email
from .clean import reply_text
from .corpus import corpus_sha256, load_corpus, load_split, same_text, split_corpus
from .model import IntentModel
from .registry import store_model
from .train import Report, evaluate, train

# How much worse than the active model a candidate may be on each metric and still be activated: none on
# opt-out recall and on opt-outs caught or held by the fail-safe (a missed opt-out is the costliest
# mistake), half a point on the rest (one or two replies of a few hundred: noise, not a regression).
GATE_TOLERANCE = {
    "opt_out_recall": 0.0,
    "fail_safe_recall": 0.0,
    "opt_out_precision": 0.005,
    "accuracy": 0.005,
    "macro_f1": 0.005,
}


@dataclass
class Decision:
    version: str
    activated: bool
    reasons: list[str]
    candidate: dict[str, Any]
    baseline: dict[str, Any]
    baseline_version: str


def gate(candidate: Report, baseline: Report) -> list[str]:
    """Why the candidate may not replace the baseline (empty: it may)."""
    why = []
    for metric, slack in GATE_TOLERANCE.items():
        new, old = getattr(candidate, metric), getattr(baseline, metric)
        if new < old - slack:
            why.append(f"{metric} {new:.4f} < active {old:.4f}" + (f" - {slack}" if slack else ""))
    return why


def metrics_of(r: Report) -> dict[str, Any]:
    keys = ("n", "accuracy", "macro_f1", "opt_out_recall", "opt_out_precision", "fail_safe_recall",
            "acted_opt_out_precision", "acted_opt_out_recall", "review_rate", "auto_accuracy", "p99_ms")  # fmt: skip
    return {k: round(getattr(r, k), 4) if isinstance(getattr(r, k), float) else getattr(r, k) for k in keys}


async def corrections(conn: AsyncConnection, schema: str) -> list[tuple[str, str, Intent]]:
    """(text, channel, intent) of every person's correction, oldest first, the text opened with its account's
    key. An erased account's corrections are left out: their text is gone."""
    rows = (
        await conn.execute(
            text(
                f"SELECT account_id, text, channel, intent FROM {schema}.intent_corrections ORDER BY corrected_at"
            )
        )
    ).all()
    keys = await vault().for_reading(conn, {r.account_id for r in rows if r.account_id is not None})
    found = []
    for r in rows:
        if r.account_id is None:
            found.append((r.text, r.channel, Intent(r.intent)))
            continue
        if r.account_id in keys and keys[r.account_id] is None:
            continue  # erased
        opened = open_value(keys.get(r.account_id), r.account_id, r.text)
        if opened and opened != UNREADABLE:
            found.append((opened, r.channel, Intent(r.intent)))
    return found


async def active_model(conn: AsyncConnection, schema: str) -> IntentModel:
    blob = (
        await conn.execute(text(f"SELECT artifact FROM {schema}.intent_models WHERE status = 'active'"))
    ).scalar_one_or_none()
    return bundled_model() if blob is None else IntentModel.from_bytes(bytes(blob))


async def retrain(conn: AsyncConnection, schema: str, who: str, *, now: datetime | None = None) -> Decision:
    """Runs inside the caller's transaction (the decision is stored there)."""
    now = now or datetime.now(UTC)
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{schema}.intent_models"})
    examples = load_corpus()
    train_set, test_set = split_corpus(examples, load_split())
    held_out = {same_text(e.text, e.channel) for e in test_set}
    # the customer's own words (an email's quotes and signature removed), never a reply of the test split
    people = [
        (reply_text(t) if is_email(ch) else t, i)
        for t, ch, i in await corrections(conn, schema)
        if same_text(t, ch) not in held_out
    ]
    current = await active_model(conn, schema)
    sha = corpus_sha256()

    def work() -> tuple[IntentModel, Report, Report]:
        stamp = hashlib.sha256(f"{sha}:{len(people)}:{now.isoformat()}".encode()).hexdigest()[:8]
        candidate = train(
            train_set,
            extra=people,
            meta={
                "version": f"intents-{now:%Y%m%d%H%M%S}-{stamp}",
                "corpus_sha256": sha,
                "source": "retrain",
            },
        )
        new = evaluate(ReplyClassifier(candidate), test_set)
        old = evaluate(ReplyClassifier(current), test_set)
        candidate.meta["metrics"] = metrics_of(new)
        return candidate, new, old

    candidate, new, old = await asyncio.to_thread(work)
    reasons = gate(new, old)
    activated = not reasons
    decision = (
        f"activated: not worse than {current.version} on the test split"
        if activated
        else "rejected: " + "; ".join(reasons)
    )
    await store_model(
        conn,
        schema,
        candidate,
        status="active" if activated else "rejected",
        source="retrain",
        created_by=who,
        decision=decision,
        metrics=metrics_of(new),
        baseline={"version": current.version, **metrics_of(old)},
    )
    return Decision(candidate.version, activated, reasons, metrics_of(new), metrics_of(old), current.version)
