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
from datetime import datetime
from typing import Any

from arrears_shared import paging
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics
from .classifier import OPT_OUT_AT, POSSIBLE_OPT_OUT_AT, REVIEW_BELOW, ReplyClassifier, bundled_model
from .features import features_sha256
from .model import IntentModel

log = logging.getLogger(__name__)
_labelled: set[str] = set()  # versions with an INTENT_MODEL series


class ActiveModel:
    """The classifier every reply goes through in this process."""

    def __init__(self) -> None:
        self.review_below = REVIEW_BELOW
        self.possible_opt_out_at = POSSIBLE_OPT_OUT_AT
        self.opt_out_at = OPT_OUT_AT
        self._classifier: ReplyClassifier | None = None
        self._lock = asyncio.Lock()

    def configure(
        self, review_below: float, possible_opt_out_at: float, opt_out_at: float = OPT_OUT_AT
    ) -> None:
        self.review_below, self.possible_opt_out_at, self.opt_out_at = (
            review_below,
            possible_opt_out_at,
            opt_out_at,
        )
        if self._classifier is not None:
            self._classifier = self._wrap(self._classifier.model)

    def _wrap(self, model: IntentModel) -> ReplyClassifier:
        return ReplyClassifier(
            model,
            review_below=self.review_below,
            possible_opt_out_at=self.possible_opt_out_at,
            opt_out_at=self.opt_out_at,
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
            if model.meta.get("features_sha256") != features_sha256():
                # built with other feature code (a rolling update in progress): scoring it here would be
                # silently wrong; keep the model in use until this replica runs the matching code
                log.warning(
                    "intent model not loaded: built with other feature code",
                    extra={"model_version": row.version},
                )
                return False
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
                metrics, baseline, train_size, corrections, corpus_sha256, features_sha256, trained_at, artifact)
            VALUES (:v, :st, :src, :by, CASE WHEN :st = 'active' THEN now() END, :d, CAST(:m AS jsonb),
                    CAST(:b AS jsonb), :n, :c, :sha, :fsha, :tat, :a)
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
            "fsha": str(model.meta.get("features_sha256", "")),
            "tat": datetime.fromisoformat(str(model.meta["trained_at"])),
            "a": model.to_bytes(),
        },
    )


async def ensure_registered(conn: AsyncConnection, schema: str) -> str:
    """Make sure a model this code can use is active: the shipped one when none is, when the active one was
    built with other feature code (`features_sha256`), or when the active one is an *older* shipped model.
    A retrained model with matching features stays. Returns the active version. Safe to run from every
    replica at once (advisory lock); during a rolling update old pods never re-activate their older model."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"{schema}.intent_models"})
    shipped = bundled_model()
    shipped_at = datetime.fromisoformat(str(shipped.meta["trained_at"]))
    row = (
        await conn.execute(
            text(
                f"SELECT version, source, features_sha256, trained_at FROM {schema}.intent_models"
                " WHERE status = 'active'"
            )
        )
    ).first()
    if row is not None:
        usable = row.features_sha256 == features_sha256()
        if usable and (
            row.source != "bundled" or row.version == shipped.version or row.trained_at >= shipped_at
        ):
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


async def page_models(
    conn: AsyncConnection, schema: str, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the registry, newest first, and the cursor of the next page."""
    after, params = paging.after_sql(cursor, (("created_at", datetime), ("version", str)))
    rows = await conn.execute(
        text(
            f"""SELECT version, status, source, created_by, created_at, activated_at, decision, metrics,
                baseline, train_size, corrections, corpus_sha256
            FROM {schema}.intent_models WHERE {after} ORDER BY created_at DESC, version DESC LIMIT :n"""
        ),
        {"n": limit + 1, **params},
    )
    found, nxt = paging.page(rows.all(), limit, lambda r: (r.created_at, r.version))
    return [dict(r._mapping) for r in found], nxt
