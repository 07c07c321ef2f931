"""The daily scoring run: once per UTC day across every replica, durable and idempotent.

One transaction does the whole day: it takes the run lock (a replica that cannot get it skips: another one is
running), returns if the day's `runs` row exists, scores every open account from the history before the
run's moment (`features_as_of`: the run time, or the end of the day for a past day), writes each score and its `AccountScored` event (id `score:<account>:<day>`) to the outbox, and
writes the day's `runs` row. A crash before the commit leaves nothing, so the next check runs the day again;
after the commit the `runs` row makes every later attempt (another replica, a restart, `POST /scoring/run`)
a no-op, and the scores' primary key (account, day) could not take a second score of the day anyway.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np
from arrears_shared.events import AccountScored, RiskBand, ScoreReason
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text

from .. import metrics
from ..features.pipeline import features_at, prepare
from ..history.rows import CHANNELS, History, t_of
from ..history.store import load_history
from ..models.linear import LinearModel
from ..models.score import Scores, band, score
from ..models.store import active_models

log = logging.getLogger(__name__)
RUN_LOCK = 0x53434452  # "SCDR": the daily run, whichever replica


class NoActiveModel(RuntimeError):
    pass


@dataclass
class RunResult:
    day: date
    ran: bool  # False: the day had run already, or another replica is running it
    accounts: int = 0
    published: int = 0
    model_version: str | None = None
    detail: str = ""


def event_id(account_id: str, day: date) -> str:
    return f"score:{account_id}:{day.isoformat()}"


def _score(history: History, at: float, models: dict[str, LinearModel], reasons: int) -> Scores:
    return score(models, features_at(prepare(history), at), reasons)


def as_of(day: date, now: datetime) -> datetime:
    """The moment the day's features are taken at: now, or the end of `day` if that is earlier."""
    return min(now.astimezone(UTC), datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1))


async def run_day(tx: Transaction, day: date, *, now: datetime, by: str, reasons: int = 3) -> RunResult:
    conn, s = tx.conn, tx.schema
    if not (await conn.execute(text("SELECT pg_try_advisory_xact_lock(:k)"), {"k": RUN_LOCK})).scalar():
        return RunResult(day, False, detail="another replica is running the day")
    if (await conn.execute(text(f"SELECT 1 FROM {s}.runs WHERE day = :d"), {"d": day})).first():
        return RunResult(day, False, detail="the day has run already")
    active = await active_models(conn, s)
    missing = [k for k in ("pay14", "dropout", "recovery") if k not in active]
    if missing:
        raise NoActiveModel(f"no active model of kind {', '.join(missing)}: train first (POST /models/train)")
    models = {k: m for k, (_, m) in active.items()}
    versions = {k: v for k, (v, _) in active.items()}
    at = as_of(day, now)
    history = await load_history(conn, s, at)
    scores = await asyncio.to_thread(_score, history, t_of(at), models, reasons)
    rows, published = _rows(history, scores, day, versions, now, at)
    if rows:
        inserted = (
            await conn.execute(
                text(
                    f"""INSERT INTO {s}.scores (account_id, scored_on, model_version, models, risk_score, band,
                           p_pay_14d, dropout_risk, expected_recovery, expected_recovery_minor, currency,
                           best_channel, best_hour, reasons, scored_at, features_as_of)
                        SELECT * FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(account_id text,
                           scored_on date, model_version text, models jsonb, risk_score smallint, band text,
                           p_pay_14d double precision, dropout_risk double precision,
                           expected_recovery double precision, expected_recovery_minor bigint, currency text,
                           best_channel text, best_hour smallint, reasons jsonb, scored_at timestamptz,
                           features_as_of timestamptz)
                        ON CONFLICT (account_id, scored_on) DO NOTHING RETURNING account_id"""
                ),
                {"rows": json.dumps(rows, default=str)},
            )
        ).scalars()
        new = set(inserted)
        for ev in published:
            if ev.account_id in new:
                tx.emit(ev, id=event_id(ev.account_id, day), time=now)
        count = len(new)
    else:
        count = 0
    await conn.execute(
        text(
            f"""INSERT INTO {s}.runs (day, started_at, finished_at, accounts, published, model_version, run_by)
                VALUES (:d, :start, now(), :n, :p, :v, :by)"""
        ),
        {"d": day, "start": now, "n": len(rows), "p": count, "v": versions["pay14"], "by": by},
    )
    metrics.RUNS.inc()
    metrics.SCORED.inc(count)
    metrics.LAST_RUN.set(now.timestamp())
    log.info("scoring run done", extra={"day": day.isoformat(), "accounts": len(rows), "published": count})
    return RunResult(day, True, len(rows), count, versions["pay14"])


def _rows(
    history: History, sc: Scores, day: date, versions: dict[str, str], now: datetime, at: datetime
) -> tuple[list[dict[str, Any]], list[AccountScored]]:
    rows, events = [], []
    for i, acc in enumerate(sc.rows.tolist()):
        account_id, currency = history.accounts[acc], history.currency[acc]
        risk = int(sc.risk[i])
        ch = int(sc.channel[i])
        bal = float(sc.balance[i])
        recovery = float(np.clip(sc.recovery[i], 0.0, 1.0))
        reasons = [ScoreReason(feature=f, label=lab, contribution=pts) for f, lab, pts in sc.reasons[i]]
        ev = AccountScored(
            account_id=account_id,
            scored_on=day,
            model_version=versions["pay14"],
            risk_score=risk,
            band=RiskBand(band(risk)),
            p_pay_14d=round(float(sc.p_pay[i]), 4),
            dropout_risk=round(float(sc.dropout[i]), 4),
            expected_recovery=round(recovery, 4),
            expected_recovery_minor=int(round(recovery * bal)),
            currency=currency,
            best_channel=CHANNELS[ch] if ch >= 0 else None,
            best_hour=int(sc.hour[i]) if ch >= 0 else None,
            reasons=reasons,
            scored_at=now,
            features_as_of=at,
        )
        events.append(ev)
        rows.append(
            {
                "account_id": account_id,
                "scored_on": day.isoformat(),
                "model_version": ev.model_version,
                "models": versions,
                "risk_score": risk,
                "band": ev.band.value,
                "p_pay_14d": ev.p_pay_14d,
                "dropout_risk": ev.dropout_risk,
                "expected_recovery": ev.expected_recovery,
                "expected_recovery_minor": ev.expected_recovery_minor,
                "currency": currency,
                "best_channel": ev.best_channel,
                "best_hour": ev.best_hour,
                "reasons": [r.model_dump() for r in reasons],
                "scored_at": now.isoformat(),
                "features_as_of": at.isoformat(),
            }
        )
    return rows, events
