"""Account search over the console's read model: id, name, email and phone (digits, any format), filters,
and nothing personal found or shown for a caller who may not see personal data. Names and addresses are
stored sealed and found through blind indexes; an erased account is found by none of them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime

from arrears_console.readmodels import handlers, service
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import AccountChanged
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault import subject_access
from arrears_shared.vault.keys import vault
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
        async with engine.begin() as conn:  # as the read model's consumer writes them
            tx = Transaction(conn, "console", "console")
            await handlers._upsert_accounts(
                tx,
                [
                    AccountChanged(
                        account_id=aid, change="created", source="sheet", customer_name=name, phone=phone,
                        email=email, balance_minor=10000, currency="USD", due_date=date(2026, 10, 1),
                        status=status, sms_consent=True, email_consent=True, content_hash="h",
                        as_of=datetime.now(UTC),
                    )
                    for aid, name, phone, email, status, _ in ROWS
                ],
            )  # fmt: skip
            for aid, *_, campaign in ROWS:
                await conn.execute(
                    text("UPDATE console.accounts SET campaign_id = :c WHERE account_id = :a"),
                    {"a": aid, "c": campaign},
                )
            stored = (
                await conn.execute(text("SELECT customer_name, phone, email FROM console.accounts"))
            ).all()
            assert all(v.startswith("pii1:") for row in stored for v in row)  # nothing personal in clear
            assert not any(n in str(stored) for _, n, *_ in ROWS)

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
        assert await ids(q="lop") == ["S-1"]  # the start of a word of the name
        assert await ids(q="maria lo") == ["S-1"] and await ids(q="maria smith") == []  # every word
        assert await ids(q="EXAMPLE.ORG") == ["S-2"]  # a domain
        assert await ids(q="jsmith") == ["S-2"] and await ids(q="jsmith@example.org") == ["S-2"]
        assert await ids(q="0199 002") == ["S-2"]  # the end of the number, whatever the spacing
        assert await ids(q="555 0199") == []  # ... not its middle (a blind index matches whole terms)
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
        async with engine.connect() as conn:
            shown = (
                await service.accounts(conn, "console", date(2026, 12, 4), bucket=None, q="S-2", limit=5)
            ).items
        assert (shown[0].customer_name, shown[0].phone) == (
            "John Smith",
            "+15550199002",
        )  # opened for display

        # erased: found by nothing personal any more, and shown as erased
        async with engine.begin() as conn:
            assert await subject_access.erase(conn, "S-2", "test")
        vault().forget("S-2")
        assert (
            await ids(q="smith") == [] and await ids(q="0199 002") == [] and await ids(q="example.org") == []
        )
        async with engine.connect() as conn:
            shown = (
                await service.accounts(conn, "console", date(2026, 12, 4), bucket=None, q="S-2", limit=5)
            ).items
        assert (shown[0].customer_name, shown[0].phone, shown[0].email) == ("[erased]",) * 3
    finally:
        await engine.dispose()
