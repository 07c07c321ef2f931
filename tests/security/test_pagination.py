"""No silent truncation.

- Every list route of every service (found in each service's own OpenAPI document, no hand-written list of
  lists) takes a `cursor` and announces the next page (`X-Next-Cursor`); the routes not converted yet are
  named in NOT_YET_PAGED, which may only shrink (a listed route that gains a cursor fails until removed).
- Walking the cursors of escalation's cases and tasks (which stopped at 500 rows) returns every row exactly
  once over several pages, with rows tied on their sort key, and a bad cursor is a 400.
- A dead-letter scan that stops at its limit says so (`truncated`, a warning log line, the CLI on stderr).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from arrears_cli.__main__ import app as cli_app
from arrears_escalation.__main__ import definition
from arrears_escalation.cases.models import cases
from arrears_escalation.settings import EscalationSettings
from arrears_escalation.tasks.models import tasks
from arrears_shared import paging
from arrears_shared.audit.chain import append
from arrears_shared.dlq import Filter, scan
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async
from backbone.support import create_topics, produce, unique
from sqlalchemy import insert
from typer.testing import CliRunner

from .test_route_rules import _is_list, _operations, documents, monkeypatch_module  # noqa: F401

# Lists that do not take a cursor yet, each with why it is not a silent cut. Remove a route when it gains a
# cursor; never add one.
NOT_YET_PAGED = {
    "ingest GET /ingest/rejects",  # offset + `total` in the answer, ordered by balance (ties by id)
    "console GET /api/accounts",  # a search ordered by days past due; the page shows its `limit`
}


def _announces_next(doc: dict[str, Any], op: dict[str, Any]) -> bool:
    ok = op.get("responses", {}).get("200", {})
    return paging.NEXT_CURSOR_HEADER in ok.get("headers", {})


def test_every_list_route_takes_a_cursor_and_announces_the_next_page(
    documents: dict[str, dict[str, Any]],  # noqa: F811
) -> None:
    paged, unpaged, stale = [], [], []
    for svc, doc, label, method, op in _operations(documents):
        if method != "get" or not _is_list(doc, op):
            continue
        name = f"{svc} {label}"
        params = {p["name"] for p in op.get("parameters", [])}
        has_cursor = "cursor" in params and _announces_next(doc, op)
        if has_cursor:
            paged.append(name)
            if name in NOT_YET_PAGED:
                stale.append(name)
        elif name not in NOT_YET_PAGED:
            unpaged.append(name)
    assert {"escalation GET /cases", "escalation GET /tasks", "console GET /admin/api-keys"} <= set(paged)
    assert not unpaged, f"lists without cursor pagination: {unpaged}"
    assert not stale, f"these lists are paged now: remove them from NOT_YET_PAGED: {stale}"


# -- walking cases and tasks ----------------------------------------------------------------------------------

ROWS = 1203  # more than the old cap of 500, several pages of any allowed limit
T0 = datetime(2026, 7, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
async def escalation(
    broker: Any, fresh_database_url: Callable[..., str]
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], Any]]:
    settings = EscalationSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=fresh_database_url("paging"),
        runner_poll_timeout_ms=100,
        escalation_tick_s=3600,
    )
    host = ServiceHost(definition(settings))
    app = host.build_app()
    await host.start()
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        key = await issue_key_async(conn, "supervisor")
        # every third row shares its timestamp with the next: ties are broken by id, never skipped
        at = [T0 + timedelta(minutes=i // 3) for i in range(ROWS)]
        await conn.execute(
            insert(cases),
            [
                dict(
                    case_id=f"case-{i:05d}",
                    account_id=f"PG-{i % 7}",
                    reason=f"reason-{i}",  # one open case per account and reason
                    priority="high",
                    status="open" if i % 2 else "closed",
                    opened_at=at[i],
                    detail="",
                    trigger_id=f"t-{i}",
                )
                for i in range(ROWS)
            ],
        )
        await conn.execute(
            insert(tasks),
            [
                dict(
                    task_id=f"task-{i:05d}",
                    account_id=f"PG-{i % 7}",
                    kind="call",
                    priority="normal",
                    team="collectors",
                    status="open",
                    due_at=at[i],
                    sla_due_at=at[i],
                    sla_state="ok",
                    detail="",
                    created_at=at[i],
                )
                for i in range(ROWS)
            ],
        )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://esc") as client:
        yield client, bearer(key), host.ctx.engine
    await host.stop()


async def walk(client: httpx.AsyncClient, auth: dict[str, str], path: str, **params: Any) -> list[list[str]]:
    pages: list[list[str]] = []
    query: dict[str, Any] = dict(params)
    while True:
        r = await client.get(path, params=query, headers=auth)
        assert r.status_code == 200, r.text
        pages.append([row.get("task_id") or row["case_id"] for row in r.json()])
        cursor = r.headers.get(paging.NEXT_CURSOR_HEADER)
        if cursor is None:
            assert "link" not in r.headers
            return pages
        assert r.headers["link"].endswith('rel="next"') and "cursor=" in r.headers["link"]
        query["cursor"] = cursor


@pytest.mark.parametrize(("path", "prefix"), [("/cases", "case"), ("/tasks", "task")])
async def test_walking_the_cursor_returns_every_row_exactly_once(
    escalation: tuple[httpx.AsyncClient, dict[str, str], Any], path: str, prefix: str
) -> None:
    client, auth, _ = escalation
    pages = await walk(client, auth, path, limit=500)
    assert [len(p) for p in pages] == [500, 500, ROWS - 1000]
    ids = [i for p in pages for i in p]
    assert len(ids) == len(set(ids)) == ROWS
    assert ids == sorted((f"{prefix}-{i:05d}" for i in range(ROWS)), reverse=True)  # newest first, then id
    small = [i for p in await walk(client, auth, path, limit=7, account_id="PG-3") for i in p]
    assert small == [i for i in ids if int(i.rsplit("-", 1)[1]) % 7 == 3]


async def test_filters_hold_across_pages_and_bad_cursors_are_refused(
    escalation: tuple[httpx.AsyncClient, dict[str, str], Any],
) -> None:
    client, auth, _ = escalation
    open_cases = [i for p in await walk(client, auth, "/cases", limit=100, status="open") for i in p]
    assert len(open_cases) == ROWS // 2 and all(int(i[-5:]) % 2 for i in open_cases)
    made_up = paging.encode(["yesterday", "task-1"])  # well-formed, but not a time: never reaches SQL
    for bad in ("not-a-cursor", paging.encode(["only one value"]), "eyJ9", made_up):
        r = await client.get("/tasks", params={"cursor": bad}, headers=auth)
        assert r.status_code == 400 and r.json()["detail"] == "invalid cursor"


async def test_the_audit_log_pages_newest_first_without_gaps(
    escalation: tuple[httpx.AsyncClient, dict[str, str], Any],
) -> None:
    client, auth, engine = escalation
    marker = unique("audit-page")
    async with engine.begin() as conn:
        for i in range(23):
            await append(
                conn,
                "escalation",
                actor="pager",
                role="admin",
                action="test.page",
                entity="case",
                entity_id=marker,
                after={"i": i},
            )
    pages: list[list[int]] = []
    query: dict[str, Any] = {"entity_id": marker, "limit": 10}
    while True:
        r = await client.get("/audit", params=query, headers=auth)
        assert r.status_code == 200, r.text
        pages.append([e["after"]["i"] for e in r.json()])
        if (cursor := r.headers.get(paging.NEXT_CURSOR_HEADER)) is None:
            break
        query["cursor"] = cursor
    assert [len(p) for p in pages] == [10, 10, 3]
    assert [i for p in pages for i in p] == list(range(22, -1, -1))
    bad = await client.get("/audit", params={"cursor": paging.encode(["x"])}, headers=auth)
    assert bad.status_code == 400


# -- a dead-letter scan that stops early says so ---------------------------------------------------------------


async def test_a_dlq_scan_stopped_at_its_limit_reports_and_logs_it(
    broker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    dlq = f"{unique('trunc')}.grp.dlq"
    await create_topics(broker.bootstrap_servers, [dlq])
    await produce(broker.bootstrap_servers, dlq, [(f"k{i}".encode(), b"{}", []) for i in range(12)])
    kafka = {"bootstrap_servers": broker.bootstrap_servers}
    with caplog.at_level(logging.WARNING, logger="arrears_shared.dlq"):
        cut = await scan(kafka, Filter(topics=(dlq,)), limit=5)
    assert len(cut) == 5 and cut.truncated
    assert any("stopped at its limit of 5" in r.getMessage() for r in caplog.records)
    whole = await scan(kafka, Filter(topics=(dlq,)), limit=12)
    assert len(whole) == 12 and not whole.truncated
    out = await asyncio.to_thread(
        CliRunner().invoke,
        cli_app,
        ["dlq", "list", "--topic", dlq, "--limit", "5", "--json", "--no-progress"],
        env={"ARREARS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers},
    )
    assert out.exit_code == 0, out.output
    assert "warning: stopped at --limit 5" in out.stderr
    assert out.stdout.strip().splitlines()[-1] == '{"truncated": true, "limit": 5}'


async def test_a_time_ordered_union_walks_completely_across_ties(
    escalation: tuple[httpx.AsyncClient, dict[str, str], Any],
) -> None:
    """The account timeline (a union of cases, tasks, ... oldest first): a case and a task share each
    instant, so pages split ties and must still hand over every event once."""
    client, auth, _ = escalation
    whole = (await client.get("/accounts/PG-3/timeline", params={"limit": 10_000}, headers=auth)).json()
    assert len(whole) == 2 * len([i for i in range(ROWS) if i % 7 == 3])
    seen: list[tuple[str, str]] = []
    query: dict[str, Any] = {"limit": 7}
    while True:
        r = await client.get("/accounts/PG-3/timeline", params=query, headers=auth)
        seen += [(e["kind"], e["ref"]) for e in r.json()]
        if paging.NEXT_CURSOR_HEADER not in r.headers:
            break
        query["cursor"] = r.headers[paging.NEXT_CURSOR_HEADER]
    assert seen == [(e["kind"], e["ref"]) for e in whole] and len(set(seen)) == len(seen)
