"""Load the history tables into a `History` (columns), rows before `before` only.

The query's own `at < :before` is the first guard of point-in-time correctness; the pipeline's `t < D` is
the second (it also serves the simulator's histories, which are not in the database)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from .rows import (
    CHANNELS,
    INTENTS,
    OVERRIDE_ACTIONS,
    TIERS,
    Clicks,
    History,
    Messages,
    Overrides,
    Payments,
    Replies,
    Snapshots,
    code,
    day_of,
    t_of,
)


async def _rows(conn: AsyncConnection, sql: str, before: datetime) -> list[Any]:
    return list((await conn.execute(text(sql), {"before": before})).all())


async def load_history(conn: AsyncConnection, schema: str, before: datetime) -> History:
    s = schema
    snaps = await _rows(
        conn,
        f"""SELECT account_id, at, balance_minor, currency, due_date, open, consent_sms, consent_email,
               consent_whatsapp FROM {s}.snapshots WHERE at < :before ORDER BY account_id, at""",
        before,
    )
    accounts: list[str] = []
    currency: list[str] = []
    index: dict[str, int] = {}
    for r in snaps:
        if r.account_id not in index:
            index[r.account_id] = len(accounts)
            accounts.append(r.account_id)
            currency.append(r.currency)
        currency[index[r.account_id]] = r.currency  # the latest state's currency

    def ix(rows: list[Any]) -> list[Any]:
        return [r for r in rows if r.account_id in index]  # rows of accounts never seen are no use

    msgs = ix(
        await _rows(
            conn,
            f"SELECT account_id, at, channel, local_hour, tier FROM {s}.messages WHERE at < :before",
            before,
        )
    )
    reps = ix(
        await _rows(
            conn,
            f"SELECT account_id, at, channel, intent, promise_date FROM {s}.replies WHERE at < :before",
            before,
        )
    )
    pays = ix(
        await _rows(conn, f"SELECT account_id, at, amount_minor FROM {s}.payments WHERE at < :before", before)
    )
    ovs = ix(
        await _rows(
            conn, f"SELECT account_id, at, action, promise_date FROM {s}.overrides WHERE at < :before", before
        )
    )
    clks = ix(await _rows(conn, f"SELECT account_id, at FROM {s}.clicks WHERE at < :before", before))

    def acc(rows: list[Any]) -> np.ndarray:
        return np.array([index[r.account_id] for r in rows], dtype=np.int64)

    def ts(rows: list[Any]) -> np.ndarray:
        return np.array([t_of(r.at) for r in rows], dtype=np.float64)

    def pday(rows: list[Any]) -> np.ndarray:
        return np.array(
            [day_of(r.promise_date) if r.promise_date else np.nan for r in rows], dtype=np.float64
        )

    return History(
        accounts=accounts,
        currency=currency,
        snapshots=Snapshots(
            acc(snaps),
            ts(snaps),
            np.array([r.balance_minor for r in snaps], dtype=np.float64),
            np.array([day_of(r.due_date) for r in snaps], dtype=np.int64),
            np.array([r.open for r in snaps], dtype=bool),
            np.array(
                [[r.consent_sms, r.consent_email, r.consent_whatsapp] for r in snaps], dtype=bool
            ).reshape(-1, len(CHANNELS)),
        ),
        messages=Messages(
            acc(msgs),
            ts(msgs),
            np.array([code(CHANNELS, r.channel) for r in msgs], dtype=np.int64),
            np.array([r.local_hour for r in msgs], dtype=np.int64),
            np.array([max(code(TIERS, r.tier), 0) for r in msgs], dtype=np.int64),
        ),
        replies=Replies(
            acc(reps),
            ts(reps),
            np.array([code(CHANNELS, r.channel) for r in reps], dtype=np.int64),
            np.array([code(INTENTS, r.intent) for r in reps], dtype=np.int64),
            pday(reps),
        ),
        payments=Payments(acc(pays), ts(pays), np.array([r.amount_minor for r in pays], dtype=np.float64)),
        overrides=Overrides(
            acc(ovs),
            ts(ovs),
            np.array([code(OVERRIDE_ACTIONS, r.action) for r in ovs], dtype=np.int64),
            pday(ovs),
        ),
        clicks=Clicks(acc(clks), ts(clks)),
    )
