"""Consumer handler: a batch of account-changed / reply-received / message-sent events, set-based.

One read locks every account of the batch, the events are folded in order in memory (pure functions in
projection.py), then one write per table: accounts, timers, decisions. About six statements per batch
instead of several per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from arrears_shared.events import AccountChanged, MessageSent, ReplyReceived
from arrears_shared.stream.transaction import Transaction

from ..deps import Deps
from ..schedule import store
from ..timers.planning import sync_timers
from ..timers.service import fall_back_failed
from .account import Account
from .projection import DecisionRow, apply_account_changed, apply_message_sent, apply_reply, refresh_segment
from .stops import NOT_STOPPED, new_stops, publish, stop_state
from .store import insert_decisions, load_locked, save


async def apply_events(tx: Transaction, events: Sequence[object], deps: Deps, now: datetime) -> None:
    if not events:
        return
    conn = tx.conn
    ctx = deps.fold_context(now)
    accts = await load_locked(conn, {e.account_id for e in events})  # type: ignore[attr-defined]
    policy = await store.active(conn, deps.policy)
    before = {aid: stop_state(a, policy) for aid, a in accts.items()}
    touched: dict[str, Account] = {}
    out: list[DecisionRow] = []
    for ev in events:
        aid = ev.account_id  # type: ignore[attr-defined]
        acct = accts.get(aid) or accts.setdefault(aid, Account.new(aid, now))
        if isinstance(ev, AccountChanged):
            out += apply_account_changed(acct, ev, ctx)
        elif isinstance(ev, ReplyReceived):
            out += apply_reply(acct, ev, ctx)
        elif isinstance(ev, MessageSent):
            out += apply_message_sent(acct, ev, ctx)
        else:
            continue
        touched[aid] = acct
    for acct in touched.values():
        refresh_segment(acct, ctx)
    publish(
        tx, [s for aid, a in touched.items() for s in new_stops(before.get(aid, NOT_STOPPED), a, policy, now)]
    )
    changed = list(touched.values())
    await save(conn, changed)
    out += await sync_timers(conn, changed, policy, now, scoring=deps.score_use, rules=deps.rules)
    failures = [e for e in events if isinstance(e, MessageSent)]
    out += await fall_back_failed(conn, tx, failures, accts, deps, now)
    await insert_decisions(conn, out)
