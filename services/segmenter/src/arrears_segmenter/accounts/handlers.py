"""Consumer handler: a batch of account-changed / reply-received / message-sent events, set-based.

One read locks every account of the batch, the events are folded in order in memory (pure functions in
projection.py), then one write per table: accounts, timers, decisions. About six statements per batch
instead of several per event.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from arrears_shared.events import AccountChanged, DunningStopped, MessageSent, ReplyReceived
from arrears_shared.stream.transaction import Transaction

from ..deps import Deps
from ..schedule import store
from ..timers.planning import sync_timers
from ..timers.service import fall_back_failed
from .account import Account
from .projection import DecisionRow, apply_account_changed, apply_message_sent, apply_reply, refresh_segment
from .store import insert_decisions, load_locked, save


async def apply_events(tx: Transaction, events: Sequence[object], deps: Deps, now: datetime) -> None:
    if not events:
        return
    conn = tx.conn
    ctx = deps.fold_context(now)
    accts = await load_locked(conn, {e.account_id for e in events})  # type: ignore[attr-defined]
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
    _tell_dispatchers_of_settlements(tx, out, touched, now)
    changed = list(touched.values())
    await save(conn, changed)
    policy = await store.active(conn, deps.policy)
    out += await sync_timers(conn, changed, policy, now, scoring=deps.score_use, rules=deps.rules)
    failures = [e for e in events if isinstance(e, MessageSent)]
    out += await fall_back_failed(conn, tx, failures, accts, deps, now)
    await insert_decisions(conn, out)


def _tell_dispatchers_of_settlements(
    tx: Transaction, decisions: Sequence[DecisionRow], touched: dict[str, Account], now: datetime
) -> None:
    """A settlement paid in full stops the account for good, but its balance is not zero: the dispatchers,
    which stop on what `account-changed` says, are told on `notice-due` (in order with the notices), so a
    notice fired just before and still queued (quiet hours, a provider outage) is suppressed."""
    for d in decisions:
        if d["rule_id"] != "settlement.paid":
            continue
        acct = touched[d["account_id"]]
        assert acct.as_of is not None  # the payment that settled it
        tx.emit(
            DunningStopped(
                account_id=acct.account_id, reason="settled", account_as_of=acct.as_of, stopped_at=now
            ),
            id=f"dunning-stopped:{acct.account_id}:{acct.as_of.isoformat()}",
            time=now,
        )
