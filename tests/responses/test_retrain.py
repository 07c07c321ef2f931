"""Learning from people (issue 12): `retrain` trains a candidate on the train split plus every correction,
evaluates it and the active model on the held-out test split, activates it only if it is not worse, and
records the decision either way; the service registers the shipped model at start-up and picks up a newly
activated one. Real PostgreSQL (the responses schema migrated)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from arrears_responses.intents.classifier import bundled_model
from arrears_responses.intents.corpus import load_corpus, load_split, split_corpus
from arrears_responses.intents.model import IntentModel
from arrears_responses.intents.registry import (
    ActiveModel,
    ensure_registered,
    list_models,
    store_model,
)
from arrears_responses.intents.retrain import GATE_TOLERANCE, gate, retrain
from arrears_responses.intents.train import Report
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

SCHEMA = "responses"


@pytest.fixture(scope="module")
async def engine(fresh_database_url: Callable[..., str]) -> AsyncIterator[AsyncEngine]:
    url = fresh_database_url("responses_retrain")
    await asyncio.to_thread(upgrade, url, "responses")
    eng = make_engine(url)
    yield eng
    await eng.dispose()


def report(**kw: float) -> Report:
    base = {"accuracy": 0.97, "macro_f1": 0.97, "opt_out_recall": 0.98, "opt_out_precision": 0.98}
    base.update(kw)
    return Report(
        n=300, per_intent={}, fail_safe_recall=1.0, acted_opt_out_precision=1.0, acted_opt_out_recall=0.95, review_rate=0.03, auto_accuracy=0.98, promise={},
        p50_ms=0.2, p99_ms=1.0, **base,
    )  # fmt: skip


def test_gate_allows_noise_but_never_a_lower_opt_out_recall() -> None:
    old = report()
    assert gate(report(), old) == []
    assert gate(report(accuracy=0.97 - GATE_TOLERANCE["accuracy"] / 2), old) == []
    assert gate(report(accuracy=0.95), old) == ["accuracy 0.9500 < active 0.9700 - 0.005"]
    assert gate(report(opt_out_recall=0.9799), old) == ["opt_out_recall 0.9799 < active 0.9800"]
    assert len(gate(report(macro_f1=0.9, opt_out_precision=0.9), old)) == 2


async def test_shipped_model_registered_once_and_loaded(engine: AsyncEngine) -> None:
    async with engine.begin() as c:
        v1 = await ensure_registered(c, SCHEMA)
    async with engine.begin() as c:
        assert await ensure_registered(c, SCHEMA) == v1 == bundled_model().version
        models = await list_models(c, SCHEMA)
    assert [(m["status"], m["source"]) for m in models] == [("active", "bundled")]
    assert models[0]["metrics"]["accuracy"] == bundled_model().meta["metrics"]["accuracy"]
    holder = ActiveModel()
    async with engine.connect() as c:
        assert await holder.refresh(c, SCHEMA) is True
        assert await holder.refresh(c, SCHEMA) is False  # unchanged: not loaded again
    assert holder.version == v1


async def test_retrain_activates_a_candidate_that_is_not_worse_and_rejects_one_that_is(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as c:
        await ensure_registered(c, SCHEMA)
    train, _ = split_corpus(load_corpus(), load_split())
    now = datetime(2026, 12, 4, 12, tzinfo=UTC)
    # good corrections: people confirming what the corpus says (a few dozen training replies, right labels)
    good = [e for e in train if not e.id.startswith("legacy-")][:40]
    async with engine.begin() as c:
        await add_corrections(c, [(f"good-{i}", e.text, e.intent.value) for i, e in enumerate(good)])
        decision = await retrain(c, SCHEMA, "cli:test", now=now)
    assert decision.activated, decision.reasons
    async with engine.connect() as c:
        models = await list_models(c, SCHEMA)
        assert models[0]["version"] == decision.version and models[0]["status"] == "active"
        assert [m["status"] for m in models[1:]] == ["retired"]
        assert models[0]["corrections"] == 40 and models[0]["decision"].startswith("activated")
        assert models[0]["baseline"]["version"] == bundled_model().version
        # a replica picks the new model up
        holder = ActiveModel()
        await holder.refresh(c, SCHEMA)
        assert holder.version == decision.version
    # poisoned corrections: every opt-out in the training data "corrected" to other
    poison = [e for e in train if e.intent.value == "opt_out"]
    async with engine.begin() as c:
        await add_corrections(c, [(f"bad-{i}", e.text, "other") for i, e in enumerate(poison)])
        rejected = await retrain(c, SCHEMA, "cli:test", now=now.replace(hour=13))
    assert not rejected.activated and any(r.startswith("opt_out_recall") for r in rejected.reasons), rejected
    async with engine.connect() as c:
        rows = {m["version"]: m for m in await list_models(c, SCHEMA)}
        assert rows[rejected.version]["status"] == "rejected"
        assert rows[rejected.version]["decision"].startswith("rejected: ")
        assert rows[decision.version]["status"] == "active", "a rejected candidate leaves the active model"


async def add_corrections(c, items: list[tuple[str, str, str]]) -> None:  # type: ignore[no-untyped-def]
    for rid, body, intent in items:
        await c.execute(
            text(
                f"""INSERT INTO {SCHEMA}.intent_corrections (reply_id, channel, text, predicted_intent,
                    predicted_confidence, intent, corrected_by, corrected_at)
                VALUES (:r, 'sms', :t, 'other', 0.5, :i, 'carla', now())"""
            ),
            {"r": rid, "t": body, "i": intent},
        )


async def test_a_model_built_with_other_feature_code_is_never_used(engine: AsyncEngine) -> None:
    """A rolling update: the active model was trained with feature code this replica does not run. It is
    not loaded here, and registering finds it unusable and activates the shipped, matching model."""
    stale = IntentModel.from_bytes(bundled_model().to_bytes())
    stale.meta.update(
        version="intents-stale-features", features_sha256="0" * 64, trained_at="2030-01-01T00:00:00+00:00"
    )
    async with engine.begin() as c:
        await store_model(
            c, SCHEMA, stale, status="active", source="bundled", created_by="test", decision="test", metrics={}
        )  # fmt: skip
    holder = ActiveModel()
    async with engine.connect() as c:
        assert await holder.refresh(c, SCHEMA) is False
    assert holder.version == bundled_model().version  # still the shipped model in memory
    async with engine.begin() as c:
        assert await ensure_registered(c, SCHEMA) == bundled_model().version
    async with engine.connect() as c:
        statuses = {m["version"]: m["status"] for m in await list_models(c, SCHEMA)}
    assert statuses["intents-stale-features"] == "retired" and statuses[bundled_model().version] == "active"


def test_retrain_and_models_from_the_shell(fresh_database_url: Callable[..., str]) -> None:
    """`arrears intents retrain` records its decision (table + audit log as cli:<user>); `models` lists it."""
    from arrears_cli.__main__ import app as cli
    from typer.testing import CliRunner

    url = fresh_database_url("cli_intents")
    upgrade(url, "responses")
    run = CliRunner()
    retrained = run.invoke(cli, ["intents", "retrain", "--database-url", url])
    assert retrained.exit_code == 0, retrained.output
    assert "activated" in retrained.output.splitlines()[0], retrained.output  # same data: not worse
    listed = run.invoke(cli, ["intents", "models", "--database-url", url])
    assert listed.exit_code == 0 and " active " in listed.output, listed.output

    async def audit() -> list[str]:
        eng = make_engine(url)
        try:
            async with eng.connect() as c:
                return [r.actor for r in await c.execute(text(f"SELECT actor FROM {SCHEMA}.audit_log"))]
        finally:
            await eng.dispose()

    assert [a.startswith("cli:") for a in asyncio.run(audit())] == [True]
