"""Account search over the console's read model: id, name, email and phone (digits, any format), filters,
and nothing personal found or shown for a caller who may not see personal data."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime

from arrears_console.readmodels import service
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from sqlalchemy import text

ROWS = [
    ("S-1", "Maria Lopez", "+15550142001", "maria.lopez@example.com", "open", "big-90"),
    ("S-2", "John Smith", "+15550199002", "jsmith@example.org", "open", None),
    ("S-3", "Ana Ruiz", "+34600111222", "ana@correo.es", "promise", "big-90"),
]


async def test_search_by_every_field_and_filter(fresh_database_url: Callable[..., str]) -> None:
    url = fresh_database_url("console_search")
    await asyncio.to_thread(upgrade, url, "console")
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            for aid, name, phone, email, status, campaign in ROWS:
                await conn.execute(
                    text(
                        """INSERT INTO console.accounts (account_id, customer_name, balance_minor, currency, due_date,
                            status, source, sms_consent, email_consent, as_of, phone, email, campaign_id)
                        VALUES (:a, :n, 10000, 'USD', :d, :s, 'sheet', true, true, :at, :p, :e, :c)"""
                    ),
                    {"a": aid, "n": name, "d": date(2026, 10, 1), "s": status, "at": datetime.now(UTC),
                     "p": phone, "e": email, "c": campaign},
                )  # fmt: skip

        async def ids(**kw: object) -> list[str]:
            async with engine.connect() as conn:
                found = await service.accounts(
                    conn,
                    "console",
                    date(2026, 12, 4),
                    bucket=kw.pop("bucket", None),
                    limit=50,
                    **kw,  # type: ignore[arg-type]
                )
            return sorted(i.account_id for i in found.items)

        assert await ids(q="lopez") == ["S-1"]
        assert await ids(q="EXAMPLE.ORG") == ["S-2"]
        assert await ids(q="555 0199") == ["S-2"]  # digits, whatever the spacing
        assert await ids(q="(600) 111-222") == ["S-3"]
        assert await ids(q="S-") == ["S-1", "S-2", "S-3"]
        assert await ids(q=None, status="promise") == ["S-3"]
        assert await ids(q=None, campaign="big-90") == ["S-1", "S-3"]
        assert await ids(q="ruiz", campaign="big-90", status="open") == []
        assert await ids(q=None, only=["S-2", "S-9"]) == ["S-2"]  # e.g. one assignee's open tasks
        # a viewer: the id only, and no personal data in what comes back
        assert await ids(q="lopez", names=False) == []
        assert await ids(q="5550142", names=False) == []
        async with engine.connect() as conn:
            found = service.mask_personal(
                await service.accounts(
                    conn, "console", date(2026, 12, 4), bucket=None, q="S-1", limit=5, names=False
                )
            )
        item = found.items[0]
        assert (item.customer_name, item.phone, item.email) == ("M. L.", "+1••••••••01", "m•••@example.com")
    finally:
        await engine.dispose()
