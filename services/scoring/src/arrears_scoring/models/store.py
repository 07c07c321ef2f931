"""Model versions in `scoring.models`: every trained version is kept with its metrics and windows; the
activation rule (training.better on the latest window) decides whether it replaces the active one."""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import date, datetime, timedelta
from typing import Any

from arrears_shared import paging
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import metrics as prom
from ..history.rows import EPOCH
from .linear import FORMAT, LinearModel
from .training import Trained, better, evaluate

log = logging.getLogger(__name__)
TRAIN_LOCK = 0x53434F52  # "SCOR": one training at a time, whichever replica


class ModelView(BaseModel):
    version: str
    kind: str
    source: str
    metrics: dict[str, Any]
    train_from: date
    train_to: date
    test_from: date
    test_to: date
    rows: int
    active: bool
    decision: str
    created_by: str
    created_at: datetime
    activated_at: datetime | None


_COLS = """version, kind, source, metrics, train_from, train_to, test_from, test_to, rows, active, decision,
    created_by, created_at, activated_at"""


async def page_models(
    conn: AsyncConnection, schema: str, kind: str | None, limit: int, cursor: str | None
) -> tuple[list[ModelView], str | None]:
    """One page of model versions, newest first, and the cursor of the next page."""
    after, params = paging.after_sql(cursor, [("created_at", datetime), ("version", str)])
    rows = await conn.execute(
        text(
            f"""SELECT {_COLS} FROM {schema}.models WHERE (CAST(:k AS text) IS NULL OR kind = :k) AND {after}
                ORDER BY created_at DESC, version DESC LIMIT :n"""
        ),
        {"k": kind, "n": limit + 1, **params},
    )
    found, nxt = paging.page(list(rows), limit, lambda r: (r.created_at, r.version))
    return [ModelView.model_validate(r._asdict()) for r in found], nxt


def _day(d: int) -> date:
    return EPOCH + timedelta(days=int(d))


async def active_models(conn: AsyncConnection, schema: str) -> dict[str, tuple[str, LinearModel]]:
    rows = (await conn.execute(text(f"SELECT kind, version, params FROM {schema}.models WHERE active"))).all()
    return {r.kind: (r.version, LinearModel.from_bytes(bytes(r.params))) for r in rows}


async def list_models(conn: AsyncConnection, schema: str, kind: str | None = None) -> list[ModelView]:
    rows = (
        await conn.execute(
            text(
                f"""SELECT {_COLS} FROM {schema}.models WHERE (CAST(:k AS text) IS NULL OR kind = :k)
                    ORDER BY created_at DESC, version DESC"""
            ),
            {"k": kind},
        )
    ).all()
    return [ModelView.model_validate(r._asdict()) for r in rows]


async def record(
    conn: AsyncConnection, schema: str, trained: list[Trained], *, source: str, by: str, now: datetime
) -> list[ModelView]:
    """Store every model of `trained`; activate each that beats its kind's active model on its own test
    window (both evaluated on the same rows), or that has no active model to beat. In the caller's
    transaction, under the training lock."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": TRAIN_LOCK})
    active = await active_models(conn, schema)
    sources: dict[str, str] = dict(
        (await conn.execute(text(f"SELECT kind, source FROM {schema}.models WHERE active"))).tuples().all()
    )
    out = []
    for t in trained:
        params = t.model.to_bytes()
        version = f"{t.kind}-{now:%Y%m%d%H%M%S}-{hashlib.sha256(params).hexdigest()[:8]}"
        metrics = dict(t.metrics)
        current = active.get(t.kind)
        if current is None:
            activate, decision = True, "activated: no active model"
        elif source == "simulated" and sources.get(t.kind) != "simulated":
            # simulated customers are a demo: their model never replaces one learnt from real outcomes
            activate, decision = False, f"not activated: simulated; {current[0]} was trained on history"
        elif source != "simulated" and sources.get(t.kind) == "simulated":
            activate, decision = True, f"activated: replaces the simulated demo model {current[0]}"
        else:
            old_version, old_model = current
            if old_model.features != t.model.features:
                activate, decision = (
                    True,
                    f"activated: {old_version} uses other features and cannot be compared",
                )
            else:
                old = evaluate(old_model, t.test_x, t.test_y)
                metrics["active_on_window"] = {
                    "version": old_version,
                    **{k: v for k, v in old.items() if k != "calibration"},
                }
                activate = better(t.metrics, old)
                key = "auc" if "auc" in old else "mae"
                decision = (
                    f"{'activated' if activate else 'not activated'}: {key} {_fmt(t.metrics[key])} vs "
                    f"{_fmt(old[key])} of {old_version} on the latest window"
                )
        if activate:
            await conn.execute(
                text(f"UPDATE {schema}.models SET active = false WHERE kind = :k AND active"), {"k": t.kind}
            )
        row = (
            await conn.execute(
                text(
                    f"""INSERT INTO {schema}.models (version, kind, format, params, metrics, source, train_from,
                           train_to, test_from, test_to, rows, active, decision, created_by, created_at,
                           activated_at)
                        VALUES (:v, :k, :f, :p, CAST(:m AS jsonb), :src, :tf, :tt, :sf, :st, :rows, :act, :dec,
                           :by, :now, :at)
                        RETURNING {_COLS}"""
                ),
                {
                    "v": version,
                    "k": t.kind,
                    "f": FORMAT,
                    "p": params,
                    "m": json.dumps(metrics),
                    "src": source,
                    "tf": _day(t.window.train_from),
                    "tt": _day(t.window.train_to),
                    "sf": _day(t.window.test_from),
                    "st": _day(t.window.test_to),
                    "rows": t.rows,
                    "act": activate,
                    "dec": decision,
                    "by": by,
                    "now": now,
                    "at": now if activate else None,
                },
            )
        ).one()
        prom.TRAINED.labels(t.kind, str(activate).lower()).inc()
        if activate and t.metrics.get("auc") is not None:
            prom.ACTIVE_AUC.labels(t.kind).set(t.metrics["auc"])
        log.info("model stored", extra={"version": version, "active": activate, "decision": decision})
        out.append(ModelView.model_validate(row._asdict()))
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)
