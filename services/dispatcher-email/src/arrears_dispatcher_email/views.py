"""`GET /delivery/mailboxes`: the sending pool, per mailbox (read-only, `providers.read`), and the loop that keeps
its metrics current while nothing is being claimed. Our own mailbox addresses only: no customer data."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from arrears_shared.auth import requires
from arrears_shared.service import Context, RouterFactory
from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field
from sqlalchemy import text

from .pool import MailboxPool

log = logging.getLogger(__name__)
METRICS_EVERY_S = 30.0


class MailboxStatus(BaseModel):
    address: str
    display_name: str | None
    enabled: bool = Field(
        description="False = draining: no new sends, its accounts re-homed on their next email"
    )
    daily_quota: int
    rate_per_s: float
    sent_24h: int = Field(description="Sends over the rolling 24 hours, all replicas")
    remaining: int
    paused_until: datetime | None = Field(
        None, description="Sends nothing before then (quota or credentials)"
    )
    pause_reason: str | None = None
    accounts: int = Field(description="Accounts this mailbox writes to (their replies arrive here)")


class PoolStatus(BaseModel):
    pooled: bool = Field(
        description="False = the single mailbox ARREARS_GMAIL_SENDER (see GET /delivery/status)"
    )
    overflow: bool = Field(description="A full mailbox hands accounts it never wrote to to another")
    mailboxes: list[MailboxStatus]
    unassigned_accounts: int = Field(
        description="Accounts whose mailbox is no longer configured or is disabled (re-homed on their next email)"
    )


async def pool_status(ctx: Context, pool: MailboxPool) -> PoolStatus:
    async with ctx.engine.connect() as conn:
        usage = await pool.usage(conn, ctx.schema)
        accounts = {
            r.mailbox: int(r.n)
            for r in await conn.execute(
                text(f"SELECT mailbox, count(*) AS n FROM {ctx.schema}.mailbox_assignments GROUP BY mailbox")
            )
        }
    homeless = sum(n for m, n in accounts.items() if not pool.usable(m))
    return PoolStatus(
        pooled=True,
        overflow=pool.overflow,
        mailboxes=[
            MailboxStatus(
                address=u.mailbox.address,
                display_name=u.mailbox.display_name,
                enabled=u.mailbox.enabled,
                daily_quota=u.mailbox.daily_quota,
                rate_per_s=u.mailbox.rate_per_s,
                sent_24h=u.sent_24h,
                remaining=u.remaining,
                paused_until=u.paused_until,
                pause_reason=u.pause_reason,
                accounts=accounts.get(u.mailbox.address, 0),
            )
            for u in usage
        ],
        unassigned_accounts=homeless,
    )


def mailboxes_router(pool: MailboxPool | None) -> RouterFactory:
    def factory(get_context: Callable[[], Context]) -> APIRouter:
        r = APIRouter(prefix="/delivery", tags=["delivery"])

        @r.get("/mailboxes", response_model=PoolStatus, dependencies=[Depends(requires("providers.read"))])
        async def mailboxes() -> PoolStatus:
            """The sending mailboxes: quota used and left over the rolling 24 hours, pauses, accounts each."""
            if pool is None:
                return PoolStatus(pooled=False, overflow=False, mailboxes=[], unassigned_accounts=0)
            return await pool_status(get_context(), pool)

        return r

    return factory


def mailbox_metrics_loop(pool: MailboxPool) -> Callable[[Context], Awaitable[None]]:
    """Refreshes the per-mailbox gauges (the claims refresh them too, but only while mail is due)."""

    async def mailbox_metrics(ctx: Context) -> None:
        while True:
            try:
                async with ctx.engine.connect() as conn:
                    await pool.usage(conn, ctx.schema)
            except Exception as e:  # noqa: BLE001 - a metrics refresh never stops the service
                log.warning(
                    "mailbox metrics refresh failed", extra={"error": f"{type(e).__name__}: {e}"[:200]}
                )
            if not await ctx.sleep(METRICS_EVERY_S):
                return

    return mailbox_metrics
