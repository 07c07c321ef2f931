"""One customer notice that is not a dunning step (a payment retry, a receipt, a promise or plan
confirmation, a dispute acknowledgement): which channel, when, and emitted once.

The channel is the first usable one of: the channel the triggering reply came on, the channels a person set
(`set_channel_preference`), the configured order (`ARREARS_SEGMENTER_CONFIRMATION_CHANNELS`). Usable = an
address, consent, not stopped, not opted out, not known invalid (`firing.channel_block`). The compliance
gate runs here (hours; do-not-contact and opt-outs suppress) and again in the dispatcher right before the
send. A notice due in quiet hours is emitted with `due_at` at the next allowed moment (the dispatcher holds
it until then), never dropped. Every outcome is a decision in the account's log (rule and reason), so "why
was no receipt sent?" has an answer. The notice id is deterministic (account, purpose, trigger): the ledger
row (`customer_notices`) is inserted first, and only a new row emits, so a replayed trigger sends nothing.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from arrears_shared import compliance
from arrears_shared.events import NoticeDue, NoticePurpose, Tier
from arrears_shared.stream.transaction import Transaction
from sqlalchemy.dialects.postgresql import insert

from ..accounts.account import Account
from ..accounts.projection import DecisionRow, FoldContext, decision
from ..deps import Deps
from ..preferences.window import debtor_window
from ..timers.firing import channel_block
from .metrics import CUSTOMER_NOTICES
from .models import customer_notices

# ahead of dunning reminders in a backlog (ARCHITECTURE §4: payment confirmations before polite reminders)
PRIORITY: dict[str, int] = {
    "payment_receipt": 900,
    "dispute_acknowledgement": 850,
    "promise_confirmation": 800,
    "plan_confirmation": 800,
    "payment_retry": 25,
}
RULE = "customer_notice"


def customer_notice_id(account_id: str, purpose: str, trigger_id: str) -> str:
    return f"{account_id}:{purpose}:{trigger_id}"


def channel_order(acct: Account, deps: Deps, first: str | None = None) -> list[str]:
    allowed = deps.notify.channels
    order = [first] if first else []
    order += acct.preferred_channels() + list(allowed)
    return [c for c in dict.fromkeys(order) if c in allowed]


def usable(acct: Account, channel: str) -> tuple[str, str] | None:
    """Why `channel` cannot carry the notice (rule, reason), or None."""
    if acct.opted_out(channel):
        return f"opt_out.{channel}", f"the customer opted out of {channel}"
    return channel_block(acct, channel)


async def send(
    tx: Transaction,
    acct: Account,
    deps: Deps,
    ctx: FoldContext,
    *,
    purpose: NoticePurpose,
    trigger_id: str,
    first_channel: str | None = None,
    expires_after: timedelta | None = None,
    **about: Any,
) -> tuple[str | None, list[DecisionRow]]:
    """Emit the notice on the first usable channel (once per trigger). Returns (notice id or None, decisions)."""
    now, out = ctx.now, []
    if acct.erased or not acct.known:
        return None, [decision(acct.account_id, ctx, "suppressed", f"{RULE}.{purpose}", "no known account")]
    for ch in channel_order(acct, deps, first_channel):
        block = usable(acct, ch)
        if block is not None:
            out.append(
                decision(acct.account_id, ctx, "suppressed", block[0], f"{purpose}: {block[1]}", channel=ch)
            )
            continue
        d = compliance.evaluate(
            now,
            channel=ch,
            timezone=acct.timezone,
            country=acct.country,
            region=acct.region,
            do_not_contact=acct.do_not_contact,
            recent_sends=[],
            rules=deps.rules,
            window=debtor_window(acct),  # the debtor's quiet times (preferences/)
        )
        if not d.allowed and d.defer_until is None:
            out.append(
                decision(acct.account_id, ctx, "suppressed", d.rule_id, f"{purpose}: {d.reason}", channel=ch)
            )
            CUSTOMER_NOTICES.labels(purpose, "suppressed").inc()
            return None, out  # do-not-contact and the like stop every channel
        # due now (a clock shifted ahead for demos must not make the dispatcher hold it), or when hours open
        due = min(now, datetime.now(UTC)) if d.allowed else d.defer_until
        assert due is not None
        nid = customer_notice_id(acct.account_id, purpose, trigger_id)
        inserted = await tx.conn.execute(
            insert(customer_notices)
            .values(
                notice_id=nid,
                account_id=acct.account_id,
                purpose=purpose,
                trigger_id=trigger_id,
                channel=ch,
                due_at=due,
                emitted_at=now,
            )
            .on_conflict_do_nothing()
            .returning(customer_notices.c.notice_id)
        )
        if inserted.first() is None:
            return None, []  # this trigger was handled before (a replay): nothing twice, nothing logged again
        expires = due + (expires_after or deps.notify.expiry)
        ev = _notice(acct, deps, nid, purpose, ch, due, expires, about).model_copy(update={"issued_at": now})
        tx.emit(ev, id=f"notice-due:{nid}", time=now)
        outcome: Literal["emitted", "deferred"] = "emitted" if d.allowed else "deferred"
        reason = f"{purpose}: {d.reason}" + ("" if d.allowed else f"; due {due.isoformat()}")
        CUSTOMER_NOTICES.labels(purpose, outcome).inc()
        out.append(
            decision(
                acct.account_id,
                ctx,
                outcome,
                d.rule_id if not d.allowed else f"{RULE}.{purpose}",
                reason,
                channel=ch,
                notice_id=nid,
                defer_until=None if d.allowed else due,
            )
        )
        return nid, out
    out.append(
        decision(acct.account_id, ctx, "suppressed", f"{RULE}.{purpose}", f"{purpose}: no usable channel")
    )
    CUSTOMER_NOTICES.labels(purpose, "suppressed").inc()
    return None, out


def _notice(
    acct: Account,
    deps: Deps,
    nid: str,
    purpose: NoticePurpose,
    channel: str,
    due: datetime,
    expires: datetime,
    about: dict[str, Any],
) -> NoticeDue:
    about_date: date | None = about.get("about_date")
    return NoticeDue(
        account_id=acct.account_id,
        notice_id=nid,
        policy_id=purpose,
        policy_version=1,
        step=0,
        cycle=acct.cycle,
        tier=Tier.REMINDER,
        channel=channel,
        template_id=purpose,
        priority=PRIORITY.get(purpose, 0),
        to=acct.address(channel),
        customer_name=acct.customer_name,
        balance_minor=max(acct.balance_minor, 0),
        currency=acct.currency or "USD",
        days_past_due=acct.days_past_due,
        aging_bucket=acct.aging_bucket,
        timezone=acct.timezone,
        country=acct.country,
        region=acct.region,
        due_at=due,
        expires_at=expires,
        account_as_of=acct.as_of,
        locale=deps.notify.locale(acct.country),
        contact_window=debtor_window(acct),
        purpose=purpose,
        about_amount_minor=about.get("about_amount_minor"),
        about_date=about_date,
        plan_every=about.get("plan_every"),
        reference=about.get("reference"),
        pay_with=about.get("pay_with"),
        retry=about.get("retry"),
        retries_max=about.get("retries_max"),
    )
