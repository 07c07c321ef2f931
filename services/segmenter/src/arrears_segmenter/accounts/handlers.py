"""Consumer handler: a batch of account-changed / reply-received / message-sent events, set-based.

One read locks every account of the batch, the events are folded in order in memory (pure functions in
projection.py), then one write per table: accounts, timers, decisions. About six statements per batch
instead of several per event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from arrears_shared.cloudevents import Envelope
from arrears_shared.events import AccountChanged, MessageSent, ReplyReceived
from arrears_shared.stream.runner import BatchHandler
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from .. import bulk
from ..deps import Deps
from ..policy import store
from ..timers.planning import sync_timers
from .models import accounts, decisions
from .projection import Row, apply_account_changed, apply_message_sent, apply_reply, new_row, refresh_segment

ACCOUNT_COLUMNS = [str(c.name) for c in accounts.columns]


async def load_locked(conn: AsyncConnection, ids: Iterable[str]) -> dict[str, Row]:
    """Account rows by id, locked in id order (so two writers never deadlock)."""
    rows = await conn.execute(
        select(accounts)
        .where(bulk.in_ids(accounts.c.account_id, sorted(ids)))
        .order_by(accounts.c.account_id)
        .with_for_update()
    )
    return {r.account_id: dict(r._mapping) for r in rows}


async def save(conn: AsyncConnection, rows: Sequence[Row]) -> None:
    await bulk.insert(
        conn,
        accounts,
        [{c: r[c] for c in ACCOUNT_COLUMNS} for r in rows],
        conflict=["account_id"],
        update=[c for c in ACCOUNT_COLUMNS if c not in ("account_id", "first_seen_at")],
    )


async def apply_events(conn: AsyncConnection, events: Sequence[object], deps: Deps, now: datetime) -> None:
    if not events:
        return
    ctx = deps.fold_context(now)
    rows = await load_locked(conn, {e.account_id for e in events})  # type: ignore[attr-defined]
    touched: dict[str, Row] = {}
    out: list[Row] = []
    for ev in events:
        aid = ev.account_id  # type: ignore[attr-defined]
        row = rows.get(aid) or rows.setdefault(aid, new_row(aid, now))
        if isinstance(ev, AccountChanged):
            out += apply_account_changed(row, ev, ctx)
        elif isinstance(ev, ReplyReceived):
            out += apply_reply(row, ev, ctx)
        elif isinstance(ev, MessageSent):
            out += apply_message_sent(row, ev, ctx)
        else:
            continue
        touched[aid] = row
    for row in touched.values():
        refresh_segment(row, ctx)
    changed = list(touched.values())
    await save(conn, changed)
    policy = await store.active(conn, deps.policy)
    out += await sync_timers(conn, changed, policy, now)
    await bulk.insert(conn, decisions, out)


def make_handler(deps: Deps) -> BatchHandler:
    async def handle_batch(events: Sequence[Envelope], tx: Transaction) -> None:
        await apply_events(tx.conn, [env.data for env in events], deps, deps.clock.now())

    return handle_batch
