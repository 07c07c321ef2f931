"""The segmenter's consumer: account-changed / reply-received / message-sent are folded set-based per
batch (accounts.handlers); overrides are applied one by one (rare, and each may touch timers or a whole
campaign). Batch order is kept: a run of account events, then an override, and so on. Model scores
(account-scored) are stored last, set-based (scores.handlers): their accounts' timers then follow them."""

from __future__ import annotations

from collections.abc import Sequence

from arrears_shared.cloudevents import Envelope
from arrears_shared.events import AccountScored, OverrideRequested
from arrears_shared.stream.runner import BatchHandler
from arrears_shared.stream.transaction import Transaction

from .accounts.handlers import apply_events
from .accounts.store import load_locked
from .deps import Deps
from .overrides.service import apply_override
from .payments.flows import after_batch
from .scores.handlers import apply_scores


def make_handler(deps: Deps) -> BatchHandler:
    async def handle_batch(envelopes: Sequence[Envelope], tx: Transaction) -> None:
        now = deps.clock.now()
        events = [env.data for env in envelopes]
        if any(isinstance(e, (OverrideRequested, AccountScored)) for e in events):
            # lock every account of the batch at once, in id order, as the event fold does: another
            # replica's batch then waits instead of deadlocking with this one
            await load_locked(tx.conn, {e.account_id for e in events})  # type: ignore[attr-defined]
        run: list[object] = []
        scored: list[AccountScored] = []
        for ev in events:
            if isinstance(ev, AccountScored):
                scored.append(ev)
            elif isinstance(ev, OverrideRequested):
                await apply_events(tx, run, deps, now)
                run = []
                await apply_override(tx, ev, deps, now)
            else:
                run.append(ev)
        await apply_events(tx, run, deps, now)
        await apply_scores(tx.conn, scored, deps, now)  # type: ignore[arg-type]
        await after_batch(tx, envelopes, deps, now)  # failed-payment retries, customer confirmations

    return handle_batch
