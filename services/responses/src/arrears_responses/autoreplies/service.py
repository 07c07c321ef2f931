"""Automatic answers to an SMS reply: the HELP text and the one confirmation of an opt-out.

They travel the normal path (outbox -> `notice-due` -> dispatcher-sms -> QUO) as a `NoticeDue` whose
`purpose` is not `dunning`: the dispatcher sends its `text` as is, exempt from the opt-out it confirms and
from the contact-hours gate. Never twice: the notice id is derived from the reply id (the dispatcher's
deliveries are keyed by it), the confirmation is recorded once per number (unique index) in the same
transaction as the reply, and HELP is answered at most once per number per `ARREARS_RESPONSES_HELP_INTERVAL_S`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from arrears_shared.events import AgingBucket, Channel, Intent, NoticeDue, Tier
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text

from ..settings import ResponsesSettings

PURPOSE_BY_INTENT = {Intent.OPT_OUT: "opt_out_confirmation", Intent.HELP: "help"}
PRIORITY = 1000  # ahead of any dunning backlog


def auto_reply_notice_id(account_id: str, reply_id: str, purpose: str) -> str:
    return f"{account_id}:auto:{purpose}:{reply_id}"


def answer_text(settings: ResponsesSettings, purpose: str) -> str:
    template = (
        settings.responses_opt_out_confirmation_text
        if purpose == "opt_out_confirmation"
        else settings.responses_help_text
    )
    return template.replace("{brand}", settings.responses_brand_name)


def answer_notice(
    settings: ResponsesSettings,
    purpose: str,
    *,
    account_id: str,
    reply_id: str,
    address: str,
    received_at: datetime,
) -> NoticeDue:
    """The `notice-due` that makes dispatcher-sms send the automatic answer."""
    return NoticeDue(
        account_id=account_id,
        notice_id=auto_reply_notice_id(account_id, reply_id, purpose),
        policy_id="auto-reply",
        policy_version=1,
        step=0,
        tier=Tier.REMINDER,
        channel=Channel.SMS,
        template_id=f"auto-reply.{purpose}",
        priority=PRIORITY,
        to=address,
        # an automatic answer carries no balance: these fields are required by the contract, unused here
        customer_name="",
        balance_minor=0,
        currency="USD",
        days_past_due=0,
        aging_bucket=AgingBucket.CURRENT,
        timezone=None,
        due_at=received_at,
        expires_at=received_at + timedelta(seconds=settings.responses_auto_reply_expiry_s),
        purpose=purpose,  # type: ignore[arg-type]
        text=answer_text(settings, purpose),
    )


async def maybe_answer(
    tx: Transaction,
    settings: ResponsesSettings,
    *,
    intent: Intent,
    account_id: str,
    reply_id: str,
    address: str,
    received_at: datetime,
) -> str | None:
    """Emit the automatic answer to an SMS reply if one is due. Returns the notice id, or None."""
    purpose = PURPOSE_BY_INTENT.get(intent)
    if purpose is None or not settings.responses_auto_replies:
        return None
    s = tx.schema
    if purpose == "help":
        recent = (
            await tx.conn.execute(
                text(
                    f"SELECT 1 FROM {s}.auto_replies WHERE channel = 'sms' AND address = :a AND purpose = 'help'"
                    " AND created_at > :since LIMIT 1"
                ),
                {"a": address, "since": received_at - timedelta(seconds=settings.responses_help_interval_s)},
            )
        ).first()
        if recent:
            return None
    notice_id = auto_reply_notice_id(account_id, reply_id, purpose)
    claimed = (
        await tx.conn.execute(
            text(
                f"""INSERT INTO {s}.auto_replies (notice_id, reply_id, purpose, channel, address, account_id,
                    created_at) VALUES (:n, :r, :p, 'sms', :a, :acc, :at) ON CONFLICT DO NOTHING RETURNING 1"""
            ),
            {"n": notice_id, "r": reply_id, "p": purpose, "a": address, "acc": account_id, "at": received_at},
        )
    ).first()
    if claimed is None:  # this number's opt-out was already confirmed (or this reply already answered)
        return None
    tx.emit(
        answer_notice(
            settings,
            purpose,
            account_id=account_id,
            reply_id=reply_id,
            address=address,
            received_at=received_at,
        ),
        id=f"notice-due:{notice_id}",
    )
    return notice_id
