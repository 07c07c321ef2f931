"""The consumer's entry: after a batch was folded, the facts in it that touch failed payments or call for a
customer confirmation (in batch order, on the accounts as the batch left them).

The consumer folds 100,000-account sheet runs: the filter below keeps this off that path. A batch reads the
accounts again only for the few events that need them (a payment, a failed payment, a promise, a dispute),
and one indexed query finds which settled accounts have open retries to clear."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from arrears_shared.cloudevents import Envelope
from arrears_shared.events import AccountChanged, Intent, OverrideRequested, PaymentFailed, ReplyReceived
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import select

from .. import bulk
from ..accounts.projection import DecisionRow
from ..accounts.store import insert_decisions, load_locked
from ..deps import Deps
from . import confirmations, retries
from .models import payment_retries

CONFIRMED_OVERRIDES = ("record_promise", "mark_dispute")
CONFIRMED_INTENTS = (Intent.PROMISE_TO_PAY, Intent.DISPUTE)


def _wanted(ev: object) -> bool:
    if isinstance(ev, PaymentFailed):
        return True
    if isinstance(ev, AccountChanged):
        return retries.pays(ev)
    if isinstance(ev, ReplyReceived):
        return ev.intent in CONFIRMED_INTENTS
    if isinstance(ev, OverrideRequested):
        return ev.action in CONFIRMED_OVERRIDES
    return False


async def _with_open_retries(tx: Transaction, ids: set[str]) -> set[str]:
    if not ids:
        return set()
    c = payment_retries.c
    rows = await tx.conn.execute(
        select(c.account_id)
        .where(bulk.in_ids(c.account_id, sorted(ids)), c.state.in_(retries.OPEN))
        .distinct()
    )
    return {r.account_id for r in rows}


async def after_batch(tx: Transaction, envelopes: Sequence[Envelope], deps: Deps, now: datetime) -> None:
    todo = [env for env in envelopes if _wanted(env.data)]
    if not todo:
        return
    settled = {env.data.account_id for env in todo if isinstance(env.data, AccountChanged)}
    # (a failure earlier in this very batch counts: its retry row is written below, before the payment)
    at_risk = await _with_open_retries(tx, settled) | {
        env.data.account_id for env in todo if isinstance(env.data, PaymentFailed)
    }
    # a settled sheet row with no open retry needs nothing (only a payment webhook gets a receipt)
    todo = [
        env
        for env in todo
        if not isinstance(env.data, AccountChanged)
        or env.data.change == "payment"
        or env.data.account_id in at_risk
    ]
    if not todo:
        return
    ctx = deps.fold_context(now)
    accts = await load_locked(tx.conn, {env.data.account_id for env in todo})
    out: list[DecisionRow] = []
    for env in todo:
        ev = env.data
        acct = accts.get(ev.account_id)
        if isinstance(ev, PaymentFailed):
            out += await retries.on_failed(tx, ev, deps, ctx)
        elif acct is None or not acct.known:
            continue
        elif isinstance(ev, AccountChanged):
            if ev.account_id in at_risk:
                out += await retries.on_paid(tx, ev, env.id, ctx)
            out += await confirmations.for_payment(tx, acct, ev, env.id, deps, ctx)
        elif isinstance(ev, ReplyReceived):
            out += await confirmations.for_reply(tx, acct, ev, deps, ctx)
        elif isinstance(ev, OverrideRequested):
            out += await confirmations.for_override(tx, acct, ev, deps, ctx)
    await insert_decisions(tx.conn, out)
