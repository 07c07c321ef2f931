"""Two settlement offers made at once for one account (real escalation, Postgres and broker): both requests
pass the "no open offer" check, the unique index lets one in, and the other gets the same 409 a later create
gets, never a 500."""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import text

from .test_offers import gateway, offer, platform, scalar, seeded

__all__ = ["gateway", "platform"]  # the modules' fixtures, shared


async def test_two_concurrent_creates_give_one_offer_and_a_409(platform: dict[str, Any], broker: Any) -> None:
    p = platform
    acc = await seeded(p, broker)
    esc = p["escalation"]
    assert esc.ctx is not None
    # hold writes to the table so both requests are past their checks and queue at the same point; when the
    # lock goes, both insert: the index decides
    async with esc.ctx.engine.connect() as lock:
        tx = await lock.begin()
        await lock.execute(text("LOCK TABLE escalation.settlement_offers IN SHARE MODE"))
        both = [asyncio.create_task(offer(p, acc, amount_minor=8_000 + i)) for i in range(2)]
        for _ in range(300):
            waiting = await scalar(
                esc,
                """SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
                WHERE c.relname = 'settlement_offers' AND NOT l.granted""",
            )
            if waiting == 2:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the two creates never queued on the table")
        await tx.rollback()
    answers = await asyncio.gather(*both)
    assert sorted(r.status_code for r in answers) == [201, 409], [r.text for r in answers]
    refused = next(r for r in answers if r.status_code == 409)
    assert "withdraw it first" in refused.json()["detail"]
    q = "SELECT count(*) FROM escalation.settlement_offers WHERE account_id = :a AND status = 'offered'"
    assert await scalar(esc, q, a=acc) == 1
    assert (await offer(p, acc)).status_code == 409  # and sequentially, as before
