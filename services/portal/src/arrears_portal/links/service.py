"""Opening a notice's link: the first open of each notice's link publishes `link-clicked` (in the same
transaction as the row that remembers it, so a retried request or a second replica never publishes twice)."""

from __future__ import annotations

from datetime import datetime

from arrears_shared.events import LinkClicked
from arrears_shared.links import LinkClaims
from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text


async def record_open(tx: Transaction, claims: LinkClaims, now: datetime) -> bool:
    """Count an open of the link; True (and `link-clicked` emitted) when it is the notice's first."""
    first = (
        await tx.conn.execute(
            text(
                f"""INSERT INTO {tx.schema}.link_opens (notice_id, account_id, channel, tier, first_opened_at,
                       last_opened_at) VALUES (:n, :a, :c, :t, :now, :now)
                    ON CONFLICT (notice_id) DO UPDATE SET opens = {tx.schema}.link_opens.opens + 1,
                       last_opened_at = EXCLUDED.last_opened_at
                    RETURNING (xmax = 0) AS inserted"""
            ),
            {
                "n": claims.notice_id,
                "a": claims.account_id,
                "c": claims.channel,
                "t": claims.tier.value if claims.tier else None,
                "now": now,
            },
        )
    ).scalar_one()
    if first:
        tx.emit(
            LinkClicked(
                account_id=claims.account_id,
                notice_id=claims.notice_id,
                channel=claims.channel,
                tier=claims.tier,
                issued_at=claims.issued_at,
                clicked_at=now,
            ),
            id=f"link-clicked:{claims.notice_id}",
        )
    return bool(first)
