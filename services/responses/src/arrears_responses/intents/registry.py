"""Versioned intent models in `responses.intent_models`: one active, every candidate kept with its metrics
and the retrain gate's decision. Each replica scores with the active one (`ACTIVE`), loaded at start-up
and re-read when another replica or `arrears intents retrain` activates a new version.

With no active row, the model shipped in the package (`model/intents.npz`, trained from the corpus at
release) is registered as active. A newer shipped model replaces an older *shipped* one at start-up; a
model retrained from people's corrections stays active until the next retrain (which uses the new corpus)."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics
from .classifier import POSSIBLE_OPT_OUT_AT, REVIEW_BELOW, ReplyClassifier, bundled_model
from .model import IntentModel

log = logging.getLogger(__name__)
_labelled: set[str] = set()  # versions with an INTENT_MODEL series


class ActiveModel:
    """The classifier every reply goes through in this process."""

    def __init__(self) -> None:
        self.review_below = REVIEW_BELOW
        self.possible_opt_out_at = POSSIBLE_OPT_OUT_AT
        self._classifier: ReplyClassifier | None = None
        self._lock = asyncio.Lock()

    def configure(self, review_below: float, possible_opt_out_at: float) -> None:
        self.review_below, self.possible_opt_out_at = review_below, possible_opt_out_at
        if self._classifier is not None:
            self._classifier = self._wrap(self._classifier.model)

    def _wrap(self, model: IntentModel) -> ReplyClassifier:
        return ReplyClassifier(
            model, review_below=self.review_below, possible_opt_out_at=self.possible_opt_out_at
        )

    @property
    def classifier(self) -> ReplyClassifier:
        if self._classifier is None:
            self._classifier = self._wrap(bundled_model())
        return self._classifier

    @property
    def version(self) -> str:
        return self.classifier.model.version

    async def refresh(self, conn: AsyncConnection, schema: str) -> bool:
        """Load the active model if it is not the one in use. True when it changed."""
        row = (
            await conn.execute(text(f"SELECT version FROM {schema}.intent_models WHERE status = 'active'"))
        ).first()
        if row is None or (self._classifier is not None and row.version == self.version):
            return False
        async with self._lock:
            blob = (
                await conn.execute(
                    text(f"SELECT artifact FROM {schema}.intent_models WHERE version = :v"),
                    {"v": row.version},
                )
            ).scalar_one()
            model = await asyncio.to_thread(IntentModel.from_bytes, bytes(blob))
            if self._classifier is not None and self.version in _labelled:
                metrics.INTENT_MODEL.remove(self.version)
                _labelled.discard(self.version)
            self._classifier = self._wrap(model)
            metrics.INTENT_MODEL.labels(model.version).set(1)
            _labelled.add(model.version)
        log.info("intent model loaded", extra={"model_version": model.version})
        return True


ACTIVE = ActiveModel()


async def store_model(
    conn: AsyncConnection,
    schema: str,
    model: IntentModel,
    *,
    status: str,
    source: str,
    created_by: str,
    decision: str,
    metrics: dict[str, Any],
    baseline: dict[str, Any] | None = None,
) -> None:
    """Record a model; `status='active'` retires the active one in the same transaction."""
    if status == "active":
        await conn.execute(
            text(f"UPDATE {schema}.intent_models SET status = 'retired' WHERE status = 'active'")
        )
    await conn.execute(
        text(
            f"""INSERT INTO {schema}.intent_models (version, status, source, created_by, activated_at, decision,
                metrics, baseline, train_size, corrections, corpus_sha256, artifact)
            VALUES (:v, :st, :src, :by, CASE WHEN :st = 'active' THEN now() END, :d, CAST(:m AS jsonb),
                    CAST(:b AS jsonb), :n, :c, :sha, :a)
            ON CONFLICT (version) DO NOTHING"""
        ),
        {
            "v": model.version,
            "st": status,
            "src": source,
            "by": created_by,
            "d": decision,
            "m": json.dumps(metrics, default=str),
            "b": json.dumps(baseline, default=str) if baseline is not None else None,
            "n": int(model.meta.get("train_size", 0)),
            "c": int(model.meta.get("corrections", 0)),
            "sha": str(model.meta.get("corpus_sha256", "")),
            "a": model.to_bytes(),
        },
    )


async def ensure_registered(conn: AsyncConnection, schema: str) -> str:
    """Make sure a model is active: the shipped one when none is, or when the active one is an older
    shipped model. Returns the active version. Safe to run from every replica at once."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{schema}.intent_models"})
    shipped = bundled_model()
    row = (
        await conn.execute(
            text(f"SELECT version, source FROM {schema}.intent_models WHERE status = 'active'")
        )
    ).first()
    if row is not None and (row.source != "bundled" or row.version == shipped.version):
        return str(row.version)
    known = (
        await conn.execute(
            text(f"SELECT 1 FROM {schema}.intent_models WHERE version = :v"), {"v": shipped.version}
        )
    ).first()
    if known:
        await conn.execute(
            text(f"UPDATE {schema}.intent_models SET status = 'retired' WHERE status = 'active'")
        )
        await conn.execute(
            text(
                f"UPDATE {schema}.intent_models SET status = 'active', activated_at = now() WHERE version = :v"
            ),
            {"v": shipped.version},
        )
    else:
        await store_model(
            conn,
            schema,
            shipped,
            status="active",
            source="bundled",
            created_by="release",
            decision="shipped with the release (trained from the corpus)",
            metrics=dict(shipped.meta.get("metrics", {})),
        )
    return shipped.version


async def list_models(conn: AsyncConnection, schema: str, limit: int = 50) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text(
            f"""SELECT version, status, source, created_by, created_at, activated_at, decision, metrics,
                baseline, train_size, corrections, corpus_sha256
            FROM {schema}.intent_models ORDER BY created_at DESC LIMIT :n"""
        ),
        {"n": limit},
    )
    return [dict(r._mapping) for r in rows]
