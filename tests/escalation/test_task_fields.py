"""Tasks carry what created them (the campaign of the account's latest automatic message, the promise a
follow-up is about) and the follow-up date a collector sets through the API (audited, in the work list's
filter and order). Real Postgres, the real service host."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from arrears_escalation.__main__ import definition
from arrears_escalation.cases.scheduled import tick
from arrears_escalation.deps import Deps
from arrears_escalation.settings import EscalationSettings
from arrears_escalation.tasks.assignment import Agent
from arrears_escalation.tasks.service import list_tasks
from arrears_shared.clock import Clock
from arrears_shared.events import DeliveryStatus, Intent, MessageSent, ReplyReceived, Tier
from arrears_shared.service import ServiceHost
from auth_support import bearer, issue_key_async
from sqlalchemy import text

from .test_escalation import handle

T0 = datetime(2026, 9, 1, 10, tzinfo=UTC)


def sent(aid: str, campaign: str | None, at: datetime) -> MessageSent:
    return MessageSent(
        account_id=aid,
        notice_id=f"{aid}:{campaign}:{at.isoformat()}",
        channel="sms",
        status=DeliveryStatus.SENT,
        provider="quo",
        to="+14155550100",
        tier=Tier.REMINDER,
        step=1,
        campaign_id=campaign,
        sent_at=at,
    )


def reply(aid: str, intent: Intent, at: datetime, **kw: Any) -> ReplyReceived:
    return ReplyReceived(
        account_id=aid,
        reply_id=f"{aid}:{intent}:{at.isoformat()}",
        channel="sms",
        from_address="+14155550100",
        text="x",
        intent=intent,
        confidence=0.95,
        received_at=at,
        **kw,
    )


async def test_a_follow_up_task_carries_its_campaign_and_broken_promise(engine) -> None:
    d = Deps(clock=Clock(fixed=T0), agents=[Agent(id="cora", team="collectors")])
    await handle(engine, d, sent("TF-1", "c-old", T0 - timedelta(days=3)), sent("TF-1", "c-new", T0))
    due = date(2026, 9, 5)
    promised = reply(
        "TF-1", Intent.PROMISE_TO_PAY, T0 + timedelta(hours=1), promise_date=due,
        promise_amount_minor=12_500, promise_currency="USD",
    )  # fmt: skip
    await handle(engine, d, promised)
    await handle(
        engine, d, sent("TF-1", "c-later", T0 + timedelta(days=10))
    )  # after the break: not its campaign
    broken_at = datetime(2026, 9, 7, 8, tzinfo=UTC)  # due 09-05 + 1 grace day passed
    await tick(engine, "escalation", "escalation", d, broken_at)
    async with engine.connect() as c:
        [task] = await list_tasks(c, account_id="TF-1")
    assert task.kind == "follow_up_promise"
    assert (
        task.campaign_id == "c-new"
    )  # the latest automatic message at the task's creation, not before/after
    assert (task.promise_id, task.promise_amount_minor, task.promise_currency, task.promise_date) == (
        promised.reply_id,
        12_500,
        "USD",
        due,
    )
    assert task.follow_up_at is None

    # a task of an account never messaged automatically has no campaign; a callback request with a pending
    # promise on the account carries that promise
    await handle(
        engine, d,
        reply("TF-2", Intent.PROMISE_TO_PAY, T0, promise_date=due),
        reply("TF-2", Intent.CALLBACK_REQUEST, T0 + timedelta(minutes=5)),
    )  # fmt: skip
    async with engine.connect() as c:
        [call] = await list_tasks(c, account_id="TF-2")
    assert call.kind == "call_back" and call.campaign_id is None
    assert call.promise_date == due and call.promise_amount_minor is None


@pytest.fixture
async def api(broker: Any, escalation_url: str) -> AsyncIterator[tuple[ServiceHost, httpx.AsyncClient, Deps]]:
    settings = EscalationSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=escalation_url,
        runner_poll_timeout_ms=100,
        escalation_tick_s=3600,
        escalation_reports_enabled=False,
    )
    deps = Deps.from_settings(settings)
    deps.clock = Clock(fixed=T0)
    deps.agents = [Agent(id="fu-cora", team="collectors"), Agent(id="fu-dan", team="collectors")]
    d = definition(settings, deps)
    d.consumers, d.loops = [], []
    host = ServiceHost(d)
    app = host.build_app()
    await host.start()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://esc") as client:
        yield host, client, deps
    await host.stop()


async def test_a_collector_sets_the_follow_up_date_audited_and_the_list_filters_and_orders_by_it(
    api, engine
) -> None:
    host, client, deps = api
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        cora = await issue_key_async(conn, "collector", name="fu-cora")
        dan = await issue_key_async(conn, "collector", name="fu-dan")
        viewer = await issue_key_async(conn, "viewer", name="fu-viewer")
    for i in range(3):  # round-robin: fu-cora, fu-dan, fu-cora
        await handle(engine, deps, reply(f"FU-{i}", Intent.CALLBACK_REQUEST, T0 + timedelta(minutes=i)))
    async with engine.connect() as c:
        tasks = {t.account_id: t for t in await list_tasks(c) if t.account_id.startswith("FU-")}
    mine = [t for t in tasks.values() if t.assignee == "fu-cora"]
    theirs = next(t for t in tasks.values() if t.assignee == "fu-dan")
    assert len(mine) == 2

    later, sooner = T0 + timedelta(days=3), T0 - timedelta(hours=1)  # the second one is due already
    for t, when in zip(mine, (later, sooner), strict=True):
        r = await client.put(
            f"/tasks/{t.task_id}/follow-up",
            json={"follow_up_at": when.isoformat(), "reason": "customer asked for Thursday"},
            headers=bearer(cora),
        )
        assert r.status_code == 200, r.text
        assert datetime.fromisoformat(r.json()["follow_up_at"]) == when
    # not on someone else's task without tasks.assign; a viewer not at all; a naive time is refused
    refused = await client.put(
        f"/tasks/{theirs.task_id}/follow-up", json={"follow_up_at": later.isoformat()}, headers=bearer(cora)
    )
    assert refused.status_code == 403
    assert (
        await client.put(
            f"/tasks/{theirs.task_id}/follow-up",
            json={"follow_up_at": later.isoformat()},
            headers=bearer(viewer),
        )
    ).status_code == 403
    assert (
        await client.put(
            f"/tasks/{theirs.task_id}/follow-up",
            json={"follow_up_at": "2026-09-03T10:00:00"},
            headers=bearer(dan),
        )
    ).status_code == 422

    async with engine.connect() as c:
        audit = (
            await c.execute(
                text(
                    """SELECT actor, role, before, after, reason FROM escalation.audit_log
                    WHERE action = 'task.follow_up' AND entity_id = :t ORDER BY seq"""
                ),
                {"t": mine[0].task_id},
            )
        ).all()
    [entry] = audit
    assert entry.actor == "fu-cora" and entry.role == "collector"
    assert entry.before == {"follow_up_at": None}
    assert entry.after == {"follow_up_at": later.isoformat(), "account_id": mine[0].account_id}
    assert entry.reason.startswith("pii1:")  # the person's words, sealed with the account's key

    async def ids(**params: str) -> list[str]:
        r = await client.get("/tasks", params={"assignee": "fu-cora", **params}, headers=bearer(dan))
        assert r.status_code == 200, r.text
        return [t["task_id"] for t in r.json()]

    assert await ids(follow_up="due") == [mine[1].task_id]  # reached at T0
    assert await ids(sort="follow_up") == [mine[1].task_id, mine[0].task_id]  # earliest first
    assert await ids(follow_up="none") == []
    # paging the follow-up order keeps it
    r = await client.get(
        "/tasks", params={"assignee": "fu-cora", "sort": "follow_up", "limit": 1}, headers=bearer(dan)
    )
    nxt = r.headers["x-next-cursor"]
    r2 = await client.get(
        "/tasks",
        params={"assignee": "fu-cora", "sort": "follow_up", "limit": 1, "cursor": nxt},
        headers=bearer(dan),
    )
    assert [t["task_id"] for t in r.json() + r2.json()] == [mine[1].task_id, mine[0].task_id]

    cleared = await client.put(
        f"/tasks/{mine[1].task_id}/follow-up", json={"follow_up_at": None}, headers=bearer(cora)
    )
    assert cleared.status_code == 200 and cleared.json()["follow_up_at"] is None
    assert await ids(follow_up="due") == []


async def test_the_console_work_page_shows_and_sets_them(api, engine, broker, escalation_url) -> None:
    from arrears_console.web.upstream import Upstreams
    from console_web.support import console_host

    host, _, deps = api
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        sup = await issue_key_async(conn, "supervisor", name="wk-sup")  # sees the open queue, may set any
    await handle(engine, deps, sent("WK-1", "c-work", T0 - timedelta(hours=2)))
    await handle(
        engine, deps,
        reply("WK-1", Intent.PROMISE_TO_PAY, T0 - timedelta(hours=1), promise_date=date(2026, 9, 20),
              promise_amount_minor=4_200, promise_currency="USD"),
        reply("WK-1", Intent.CALLBACK_REQUEST, T0),
    )  # fmt: skip
    async with engine.connect() as c:
        [task] = await list_tasks(c, account_id="WK-1")
    assert task.assignee in ("fu-cora", "fu-dan")  # round-robin
    async with console_host(broker, escalation_url) as (console, client):
        assert console.ctx is not None
        ups = Upstreams(
            {"escalation": "http://escalation"},
            httpx.AsyncClient(transport=httpx.ASGITransport(app=host.build_app())),
        )
        console.ctx.extra["upstreams"] = ups
        try:
            page = await client.get("/work", headers=bearer(sup))
            assert page.status_code == 200, page.text
            row = page.text[page.text.index(task.task_id) - 3000 :]
            assert "campaign <b>c-work</b>" in page.text and "promised 42.00 USD by 2026-09-20" in page.text
            assert f"/work/{task.task_id}/follow-up" in row
            r = await client.post(
                f"/work/{task.task_id}/follow-up", data={"when": "2026-09-04"}, headers=bearer(sup),
                follow_redirects=False,
            )  # fmt: skip
            assert r.status_code == 303 and "follow+up+2026-09-04+09%3A00+UTC" in r.headers["location"], (
                r.headers
            )
            due = await client.get(
                "/work", params={"follow_up": "set", "sort": "follow_up"}, headers=bearer(sup)
            )
            assert task.task_id in due.text and "2026-09-04 09:00 UTC" in due.text
            bad = await client.post(
                f"/work/{task.task_id}/follow-up", data={"when": "soon"}, headers=bearer(sup)
            )
            assert bad.status_code == 303 and "not+a+date" in bad.headers["location"]
        finally:
            await ups.close()
    async with engine.connect() as c:
        [after] = await list_tasks(c, account_id="WK-1")
    assert after.follow_up_at == datetime(2026, 9, 4, 9, tzinfo=UTC)
