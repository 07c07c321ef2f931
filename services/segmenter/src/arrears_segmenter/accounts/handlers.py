"""Consumer handler: account-changed, reply-received and message-sent for the segmenter."""

from __future__ import annotations

from collections.abc import Sequence

from arrears_shared.cloudevents import Envelope
from arrears_shared.events import AccountChanged, MessageSent, ReplyReceived
from arrears_shared.stream.runner import BatchHandler
from arrears_shared.stream.transaction import Transaction

from ..deps import Deps
from .service import apply_account_changed, apply_message_sent, apply_reply


def make_handler(deps: Deps) -> BatchHandler:
    async def handle_batch(events: Sequence[Envelope], tx: Transaction) -> None:
        now = deps.clock.now()
        for env in events:
            ev = env.data
            if isinstance(ev, AccountChanged):
                await apply_account_changed(tx.conn, ev, deps, now)
            elif isinstance(ev, ReplyReceived):
                await apply_reply(tx.conn, ev, deps, now)
            elif isinstance(ev, MessageSent):
                await apply_message_sent(tx.conn, ev, deps, now)

    return handle_batch
