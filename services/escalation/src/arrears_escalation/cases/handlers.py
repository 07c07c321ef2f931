"""Consumer handler: message-sent, reply-received, account-changed (with its payment-failed events) and
overrides for escalation. Of `overrides` it needs only what others made: the portal's promises, plans and
accepted settlement offers (tracked as promises); its own overrides and offers it recorded as it made them."""

from __future__ import annotations

from collections.abc import Sequence

from arrears_shared.cloudevents import Envelope
from arrears_shared.events import (
    AccountChanged,
    AccountScored,
    MessageSent,
    OverrideRequested,
    PaymentFailed,
    PaymentRetryChanged,
    ReplyReceived,
)
from arrears_shared.stream.runner import BatchHandler
from arrears_shared.stream.transaction import Transaction

from ..deps import Deps
from ..offers.service import on_accepted
from ..promises.service import on_override
from ..scoring.flows import on_account_scored
from ..timeline.service import record_activity
from .flows import (
    on_account_changed,
    on_message_sent,
    on_payment_failed,
    on_payment_retry_changed,
    on_reply,
)

OWN_SOURCE = "escalation"  # ce_source of what escalation publishes itself


def make_handler(deps: Deps) -> BatchHandler:
    async def handle_batch(events: Sequence[Envelope], tx: Transaction) -> None:
        now = deps.clock.now()
        await record_activity(tx.conn, [(env.data, env.id) for env in events])
        for env in events:
            ev = env.data
            if isinstance(ev, MessageSent):
                await on_message_sent(tx, ev, deps, now)
            elif isinstance(ev, ReplyReceived):
                await on_reply(tx, ev, deps, now)
            elif isinstance(ev, AccountChanged):
                await on_account_changed(tx, ev, deps, now)
            elif isinstance(ev, PaymentFailed):
                await on_payment_failed(tx, ev, deps, now)
            elif isinstance(ev, PaymentRetryChanged):
                await on_payment_retry_changed(tx, ev, deps, now)
            elif isinstance(ev, AccountScored):
                await on_account_scored(tx, ev, deps, now)
            elif isinstance(ev, OverrideRequested) and env.source != OWN_SOURCE:
                await on_override(tx.conn, ev)
                if ev.action == "record_promise" and ev.settlement_offer_id:
                    await on_accepted(tx.conn, ev)

    return handle_batch
