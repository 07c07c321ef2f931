"""What responses knows about the debtor behind an account: the time zone and currency of the notices sent
to them (from `message-sent`), so promise dates resolve in their time zone and amounts in their currency."""

from __future__ import annotations

from dataclasses import dataclass

from arrears_shared.stream.transaction import Transaction
from sqlalchemy import text


@dataclass(frozen=True)
class Debtor:
    timezone: str | None
    currency: str | None


async def debtor_of(tx: Transaction, account_id: str) -> Debtor | None:
    row = (
        await tx.conn.execute(
            text(
                f"SELECT timezone, currency FROM {tx.schema}.contacts WHERE account_id = :a"
                " AND (timezone IS NOT NULL OR currency IS NOT NULL) ORDER BY sent_at DESC LIMIT 1"
            ),
            {"a": account_id},
        )
    ).first()
    return Debtor(row.timezone, row.currency) if row else None
