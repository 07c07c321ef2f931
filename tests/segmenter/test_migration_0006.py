"""Migration 0006 renames the two pause columns of `segmenter.accounts` and keeps what they hold: the promised
day of a promise hold (`paused_until` -> `promise_hold_until`) and the end of a person's pause (`pause_until`
-> `manual_pause_until`); its downgrade gives the old names back, values intact."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from alembic import command
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import alembic_config, upgrade
from sqlalchemy import text

PROMISED = date(2026, 7, 10)
PAUSE_END = datetime(2026, 7, 20, 12, 0, tzinfo=UTC)


def sql(url: str, statement: str, **params: Any) -> list[Any]:
    async def run() -> list[Any]:
        engine = make_engine(url)
        try:
            async with engine.begin() as c:
                res = await c.execute(text(statement), params)
                return list(res.all()) if res.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def columns(url: str) -> set[str]:
    rows = sql(
        url,
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_schema = 'segmenter' AND table_name = 'accounts'",
    )
    return {r[0] for r in rows}


def test_the_pause_columns_are_renamed_with_their_values(fresh_database_url: Callable[..., str]) -> None:
    url = fresh_database_url("seg_mig6")
    upgrade(url, "segmenter", "0005")
    sql(
        url,
        "INSERT INTO segmenter.accounts (account_id, first_seen_at, last_event_at, paused_until, pause_until) "
        "VALUES ('M-1', now(), now(), :d, :t)",
        d=PROMISED,
        t=PAUSE_END,
    )
    upgrade(url, "segmenter")
    assert {"promise_hold_until", "manual_pause_until"} <= columns(url)
    assert not {"paused_until", "pause_until"} & columns(url)
    got = sql(url, "SELECT promise_hold_until, manual_pause_until FROM segmenter.accounts")
    assert [tuple(r) for r in got] == [(PROMISED, PAUSE_END)]

    command.downgrade(alembic_config(url, "segmenter"), "0005")
    got = sql(url, "SELECT paused_until, pause_until FROM segmenter.accounts")
    assert [tuple(r) for r in got] == [(PROMISED, PAUSE_END)]
