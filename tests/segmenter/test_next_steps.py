"""`GET /next-steps`: every account's pending step through the segmenter's real API (the read permission of
reports, no personal data), with its tier and channels from the policy and what holds it; paged."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from arrears_shared.db.migrate import upgrade
from auth_support import bearer

from .support import segmenter_api
from .test_overrides import NOON_NY, consume, ov, started


async def test_next_steps_list_each_accounts_pending_step_and_hold(
    broker: Any, fresh_database_url: Callable[..., str]
) -> None:
    url = fresh_database_url("seg_next_steps")
    await asyncio.to_thread(upgrade, url, "segmenter")
    names: dict[str, str | None] = {"viewer": None, "service": None}
    async with segmenter_api(broker.bootstrap_servers, url, names) as (client, engine, keys):
        d = await started(engine, "NS-1", "NS-2", "NS-3", "NS-4")
        until = NOON_NY + timedelta(days=40)
        await consume(
            engine,
            d,
            ov("NS-2", "pause", until=until, reason="in hospital"),
            ov("NS-3", "record_promise", promise_date=date(2026, 6, 1)),
            ov("NS-4", "mark_dispute"),
        )
        assert (await client.get("/next-steps")).status_code == 401
        r = await client.get("/next-steps", headers=bearer(keys["viewer"]))
        assert r.status_code == 200, r.text
        found = {s["account_id"]: s for s in r.json()}
        # a dispute stops the packaged policy's dunning: no pending step for NS-4
        assert sorted(found) == ["NS-1", "NS-2", "NS-3"]
        one = found["NS-1"]
        assert (one["step"], one["cycle"], one["tier"], one["channels"], one["state"]) == (
            2, 0, "firm", ["sms", "email"], "pending",
        )  # fmt: skip
        assert datetime.fromisoformat(one["due_at"]) == datetime(2026, 5, 10, 4, tzinfo=UTC)
        assert one["hold"] is None and one["hold_until"] is None
        assert (found["NS-2"]["hold"], datetime.fromisoformat(found["NS-2"]["hold_until"])) == (
            "pause",
            until,
        )
        assert (found["NS-3"]["hold"], found["NS-3"]["promise_until"]) == ("promise", "2026-06-01")
        assert (
            "in hospital" not in r.text and "Ada" not in r.text and "+1415" not in r.text
        )  # nothing personal

        # paged by account id, and filtered to some accounts
        first = await client.get("/next-steps", params={"limit": 2}, headers=bearer(keys["service"]))
        assert [s["account_id"] for s in first.json()] == ["NS-1", "NS-2"]
        rest = await client.get(
            "/next-steps", params={"limit": 2, "cursor": first.headers["x-next-cursor"]},
            headers=bearer(keys["viewer"]),
        )  # fmt: skip
        assert [s["account_id"] for s in rest.json()] == ["NS-3"] and "x-next-cursor" not in rest.headers
        some = await client.get(
            "/next-steps", params=[("account_id", "NS-3"), ("account_id", "NS-1"), ("account_id", "NOPE")],
            headers=bearer(keys["viewer"]),
        )  # fmt: skip
        assert [s["account_id"] for s in some.json()] == ["NS-1", "NS-3"]
