"""SLAs in working time against real PostgreSQL: due times from the team's calendar, at risk / breached only
in working time, a breach notifies the assignee and the team lead once (two replicas ticking at once), the
console API shows each person only their own, the email reaches the Gmail emulator once (also after a send
left in doubt), a calendar change re-times open SLAs and is audited and published on `team-calendars`."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from arrears_emulators.common import EmulatorServer
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.gmail.app import create_app as create_gmail
from arrears_escalation.__main__ import definition
from arrears_escalation.deps import Deps
from arrears_escalation.notifications.mailer import MailerConfig, claim, send_due
from arrears_escalation.notifications.service import inbox
from arrears_escalation.settings import EscalationSettings
from arrears_escalation.tasks.assignment import Agent
from arrears_escalation.tasks.service import check_sla, create_task, get_task
from arrears_escalation.teams.models import TeamSettings
from arrears_escalation.teams.service import put_team
from arrears_shared.auth import Principal
from arrears_shared.clock import Clock
from arrears_shared.db.engine import make_engine
from arrears_shared.providers.gmail import GmailClient
from arrears_shared.service import ServiceHost
from arrears_shared.stream.transaction import transaction
from arrears_shared.working_time import TeamCalendar
from auth_support import bearer, issue_key_async
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

NY = ZoneInfo("America/New_York")
SENDER = "alerts@arrears.test"
SUPERVISOR = Principal(name="sam-supervisor", roles=frozenset({"supervisor"}), kind="api_key", subject="k1")
NINE_TO_FIVE = TeamCalendar.model_validate(
    {
        "timezone": "America/New_York",
        "hours": {d: [{"start": "09:00", "end": "17:00"}] for d in ("mon", "tue", "wed", "thu", "fri")},
        "holidays": [{"date": "2026-12-25", "name": "Christmas Day"}],
    }
)


def ny(d: int, hh: int, mm: int = 0) -> datetime:
    return datetime(2026, 12, d, hh, mm, tzinfo=NY)  # 2026-12-04 is a Friday


@pytest.fixture
def gmail() -> Iterator[Any]:
    with EmulatorServer(create_gmail(GmailConfig(user_email=SENDER))) as srv:
        yield srv


def deps_with(team: str, *agents: str) -> Deps:
    return Deps(agents=[Agent(id=a, team=team) for a in agents], console_url="https://console.example")


async def set_team(
    engine: AsyncEngine,
    team: str,
    lead: str | None,
    emails: dict[str, str],
    at: datetime,
    calendar: TeamCalendar = NINE_TO_FIVE,
) -> None:
    async with transaction(engine, "escalation", "escalation") as tx:
        await put_team(tx, team, TeamSettings(calendar=calendar, lead=lead, emails=emails), SUPERVISOR, at)


async def new_task(
    engine: AsyncEngine, deps: Deps, team: str, at: datetime, sla_h: float, trigger: str
) -> str:
    async with engine.begin() as conn:
        tid = await create_task(
            conn,
            deps,
            account_id=f"ACC-{trigger}",
            case_id=None,
            kind="call_back",
            team=team,
            priority="high",
            due_in=timedelta(hours=sla_h * 2),
            sla=timedelta(hours=sla_h),
            rule_id=None,
            trigger_id=trigger,
            detail="call the customer back",
            now=at,
        )
    assert tid is not None
    return tid


async def sla_tick(engine: AsyncEngine, deps: Deps, at: datetime) -> tuple[int, int]:
    async with engine.begin() as conn:
        return await check_sla(conn, deps, at)


async def state_of(engine: AsyncEngine, tid: str) -> str:
    async with engine.connect() as conn:
        task = await get_task(conn, tid)
    assert task is not None
    return task.sla_state


async def test_due_times_count_only_working_time(engine: AsyncEngine) -> None:
    deps = deps_with("t-due", "ana")
    await set_team(engine, "t-due", "lena", {}, ny(1, 8))
    at_five = await new_task(engine, deps, "t-due", ny(4, 17), 4, "fri-17")
    at_four = await new_task(engine, deps, "t-due", ny(4, 16), 4, "fri-16")
    async with engine.connect() as conn:
        five, four = await get_task(conn, at_five), await get_task(conn, at_four)
    assert five is not None and four is not None
    # Friday 17:00 is closing time: Monday 09:00 + 4 h; an hour earlier: 1 h Friday + 3 h Monday
    assert five.sla_due_at == ny(7, 13) and five.sla_at_risk_at == ny(7, 12)
    assert four.sla_due_at == ny(7, 12)
    assert five.due_at == ny(7, 17)  # 8 working hours: all of Monday
    # a team without a calendar works around the clock (what every task did before)
    other = await new_task(engine, deps, "no-calendar-team", ny(4, 17), 4, "fri-17-24x7")
    async with engine.connect() as conn:
        t = await get_task(conn, other)
    assert t is not None and t.sla_due_at == ny(4, 21)


async def test_breach_only_in_working_time_and_notified_once_across_two_replicas(
    engine: AsyncEngine, escalation_url: str
) -> None:
    deps = deps_with("t-breach", "bea")
    await set_team(engine, "t-breach", "lou", {"bea": "bea@team.test", "lou": "lou@team.test"}, ny(1, 8))
    tid = await new_task(engine, deps, "t-breach", ny(4, 17), 4, "breach")
    # the weekend passes: wall-clock 4 h ran out on Friday evening, working time did not
    for at in (ny(4, 21, 1), ny(5, 12), ny(6, 23), ny(7, 9)):
        await sla_tick(engine, deps, at)
        assert await state_of(engine, tid) == "ok"
    await sla_tick(engine, deps, ny(7, 12, 30))
    assert await state_of(engine, tid) == "at_risk"
    # two replicas reach the breach at the same moment, each in its own transaction and connection pool
    second = make_engine(escalation_url)
    try:
        results = await asyncio.gather(
            sla_tick(engine, deps, ny(7, 13)),
            sla_tick(second, deps, ny(7, 13)),
            sla_tick(engine, deps, ny(7, 13)),
        )
    finally:
        await second.dispose()
    assert all(r[0] >= 0 for r in results)  # other tests' tasks may breach too: count this one's rows below
    assert await state_of(engine, tid) == "breached"
    await sla_tick(engine, deps, ny(7, 14))  # and again later: nothing new
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT recipient, why FROM escalation.notifications WHERE task_id = :t ORDER BY recipient"
                ),
                {"t": tid},
            )
        ).all()
        emails = (
            (
                await conn.execute(
                    text(
                        """SELECT e.address FROM escalation.notification_emails e
                    JOIN escalation.notifications n ON n.id = e.notification_id WHERE n.task_id = :t
                    ORDER BY e.address"""
                    ),
                    {"t": tid},
                )
            )
            .scalars()
            .all()
        )
    assert [tuple(r) for r in rows] == [("bea", "assignee"), ("lou", "lead")]
    assert emails == ["bea@team.test", "lou@team.test"]
    async with engine.connect() as conn:
        mine, _ = await inbox(conn, "bea")
    assert mine.unread == 1 and mine.items[0].task_id == tid
    assert "ACC-breach" in mine.items[0].title and mine.items[0].link.startswith("https://console.example/")


async def test_calendar_change_retimes_open_slas_and_is_audited_and_published(engine: AsyncEngine) -> None:
    deps = deps_with("t-change", "ana")
    await set_team(engine, "t-change", "lena", {}, ny(1, 8))
    tid = await new_task(engine, deps, "t-change", ny(4, 17), 4, "retime")
    weekend = TeamCalendar.model_validate(
        {
            **NINE_TO_FIVE.model_dump(mode="json"),
            "hours": {
                **NINE_TO_FIVE.model_dump(mode="json")["hours"],
                "sat": [{"start": "10:00", "end": "12:00"}],
            },
        }
    )
    await set_team(engine, "t-change", "lena", {}, ny(4, 18), calendar=weekend)
    async with engine.connect() as conn:
        task = await get_task(conn, tid)
        audit = (
            await conn.execute(
                text(
                    "SELECT action, actor FROM escalation.audit_log WHERE entity = 'team' AND entity_id = 't-change' ORDER BY seq"
                )
            )
        ).all()
        published = (
            await conn.execute(
                text("SELECT count(*) FROM escalation.outbox WHERE topic = 'team-calendars' AND key = :k"),
                {"k": b"team:t-change"},
            )
        ).scalar_one()
    assert task is not None and task.sla_due_at == ny(7, 11)  # Saturday 10-12 counts now: 2 h + Monday 2 h
    assert [tuple(a) for a in audit] == [("team.create", "sam-supervisor"), ("team.update", "sam-supervisor")]
    assert published == 2


# -- the API: each person sees only their own notifications; only supervisors edit teams ------------------


@pytest.fixture
async def api(
    broker: Any, escalation_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str], Deps]]:
    settings = EscalationSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=escalation_url,
        runner_poll_timeout_ms=100,
        escalation_tick_s=3600,
    )
    deps = Deps.from_settings(settings)
    deps.clock = Clock(fixed=ny(7, 14).astimezone(UTC))
    deps.agents = [Agent(id="api-ana", team="t-api")]
    host = ServiceHost(definition(settings, deps))
    app = host.build_app()
    await host.start()
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        keys = {
            name: await issue_key_async(conn, role, name=name)
            for name, role in (
                ("api-ana", "collector"),
                ("api-lena", "supervisor"),
                ("api-otto", "collector"),
                ("api-vic", "viewer"),
            )
        }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://esc") as client:
        yield client, keys, deps
    await host.stop()


async def test_notifications_are_for_the_assignee_and_the_lead_only(
    api: tuple[httpx.AsyncClient, dict[str, str], Deps], engine: AsyncEngine
) -> None:
    client, keys, deps = api
    body = {"calendar": NINE_TO_FIVE.model_dump(mode="json"), "lead": "api-lena", "emails": {}}
    assert (await client.put("/teams/t-api", json=body, headers=bearer(keys["api-ana"]))).status_code == 403
    r = await client.put("/teams/t-api", json=body, headers=bearer(keys["api-lena"]))
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 1 and r.json()["updated_by"] == "api-lena"
    bad = {**body, "calendar": {**body["calendar"], "timezone": "Nowhere/Atlantis"}}
    assert (await client.put("/teams/t-api", json=bad, headers=bearer(keys["api-lena"]))).status_code == 422
    tid = await new_task(engine, deps, "t-api", ny(4, 17), 4, "api")
    await sla_tick(engine, deps, ny(7, 13))
    seen = {}
    for name in keys:
        r = await client.get("/notifications", headers=bearer(keys[name]))
        assert r.status_code == 200, r.text
        seen[name] = [n["task_id"] for n in r.json()["items"]]
    assert seen == {"api-ana": [tid], "api-lena": [tid], "api-otto": [], "api-vic": []}
    # marking read: one's own only, audited
    nid = (await client.get("/notifications", headers=bearer(keys["api-ana"]))).json()["items"][0]["id"]
    r = await client.post("/notifications/read", json={"ids": [nid]}, headers=bearer(keys["api-otto"]))
    assert r.json() == {"marked": 0}
    r = await client.post("/notifications/read", json={"ids": [nid]}, headers=bearer(keys["api-ana"]))
    assert r.json() == {"marked": 1}
    assert (await client.get("/notifications?unread=true", headers=bearer(keys["api-ana"]))).json()[
        "unread"
    ] == 0
    assert (await client.get("/notifications", headers=bearer(keys["api-lena"]))).json()["unread"] == 1


# -- the email: once at the Gmail emulator, also across two replicas and after a send left in doubt -------


def gmail_ledger(url: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{url}/_emulator/ledger", timeout=10)
    r.raise_for_status()
    return r.json()["entries"]


class _Ctx:
    """The two things `send_due` uses of a service context: its engine and transactions."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    def transaction(self) -> Any:
        return transaction(self.engine, "escalation", "escalation")


async def test_breach_email_reaches_gmail_once(engine: AsyncEngine, gmail: Any) -> None:
    deps = deps_with("t-mail", "mia")
    await set_team(engine, "t-mail", "max", {"mia": "mia@team.test", "max": "max@team.test"}, ny(1, 8))
    tid = await new_task(engine, deps, "t-mail", ny(4, 17), 4, "mail")
    await sla_tick(engine, deps, ny(7, 13))
    cfg = MailerConfig(sender=SENDER, in_doubt_after=timedelta(seconds=30))
    a = GmailClient.for_emulator(gmail.url)
    b = GmailClient.for_emulator(gmail.url)
    try:
        ctx: Any = _Ctx(engine)
        # two replicas, round after round (Gmail's per-user rate limit sends some back to pending: they are
        # retried after their backoff), until nothing is left to send
        for minute in range(1, 30):
            at = ny(7, 13) + timedelta(minutes=minute)
            await asyncio.gather(
                send_due(ctx, a, cfg, lambda at=at: at), send_due(ctx, b, cfg, lambda at=at: at)
            )
            async with engine.connect() as conn:
                left = (
                    await conn.execute(
                        text("SELECT count(*) FROM escalation.notification_emails WHERE state <> 'sent'")
                    )
                ).scalar_one()
            if not left:
                break
            await asyncio.sleep(0.5)
        assert left == 0
        assert await send_due(ctx, a, cfg, lambda: ny(7, 18)) == 0  # nothing pending, nothing in doubt
    finally:
        a.close()
        b.close()
    mine = [e for e in gmail_ledger(gmail.url) if e["recipient"] in ("mia@team.test", "max@team.test")]
    assert sorted(e["recipient"] for e in mine) == ["max@team.test", "mia@team.test"]
    for e in mine:
        assert "ACC-mail" in e["details"]["subject"] and tid not in e["details"]["subject"]
        assert e["sender"] == SENDER


async def test_email_in_doubt_is_reconciled_not_resent(engine: AsyncEngine, gmail: Any) -> None:
    deps = deps_with("t-doubt", "dora")
    await set_team(engine, "t-doubt", None, {"dora": "dora@team.test"}, ny(1, 8))
    await new_task(engine, deps, "t-doubt", ny(4, 17), 4, "doubt")
    await sla_tick(engine, deps, ny(7, 13))
    async with httpx.AsyncClient(timeout=10) as http:
        fault = {"accept_then_drop": {"next": 1, "operations": ["users.messages.send"]}}
        (await http.post(f"{gmail.url}/_emulator/faults", json=fault)).raise_for_status()
    cfg = MailerConfig(sender=SENDER, in_doubt_after=timedelta(seconds=30))
    client = GmailClient.for_emulator(gmail.url, timeout_s=5)
    ctx: Any = _Ctx(engine)
    try:
        await send_due(ctx, client, cfg, lambda: ny(7, 13, 1))  # accepted by Gmail, the answer lost
        assert len([e for e in gmail_ledger(gmail.url) if e["recipient"] == "dora@team.test"]) == 1
        async with engine.connect() as conn:
            state = (
                await conn.execute(
                    text("SELECT state FROM escalation.notification_emails WHERE address = 'dora@team.test'")
                )
            ).scalar_one()
        assert state == "sending"
        soon = ny(7, 13, 1) + timedelta(seconds=10)
        assert await send_due(ctx, client, cfg, lambda: soon) == 0  # not yet in doubt long enough
        assert await send_due(ctx, client, cfg, lambda: ny(7, 14)) == 1  # reconciled by its Message-ID
    finally:
        client.close()
    assert len([e for e in gmail_ledger(gmail.url) if e["recipient"] == "dora@team.test"]) == 1
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT state, provider_message_id FROM escalation.notification_emails WHERE address = 'dora@team.test'"
                )
            )
        ).one()
    assert row.state == "sent" and row.provider_message_id


async def test_a_claim_lost_before_the_call_is_sent_once_later(engine: AsyncEngine, gmail: Any) -> None:
    deps = deps_with("t-crash", "cleo")
    await set_team(engine, "t-crash", None, {"cleo": "cleo@team.test"}, ny(1, 8))
    await new_task(engine, deps, "t-crash", ny(4, 17), 4, "crash")
    await sla_tick(engine, deps, ny(7, 13))
    cfg = MailerConfig(sender=SENDER, in_doubt_after=timedelta(seconds=30))
    async with engine.begin() as conn:  # a replica claims, commits, and dies before calling Gmail
        assert len(await claim(conn, ny(7, 13, 1), cfg)) >= 1
    client = GmailClient.for_emulator(gmail.url)
    ctx: Any = _Ctx(engine)
    try:
        await send_due(ctx, client, cfg, lambda: ny(7, 14))
        await send_due(ctx, client, cfg, lambda: ny(7, 15))
    finally:
        client.close()
    assert len([e for e in gmail_ledger(gmail.url) if e["recipient"] == "cleo@team.test"]) == 1


async def test_a_case_is_due_in_the_working_time_of_the_team_that_works_it(engine: AsyncEngine) -> None:
    from arrears_escalation.cases.service import list_cases
    from arrears_shared.events import Intent

    from .test_escalation import handle, reply

    await set_team(engine, "collectors", None, {}, ny(1, 8))
    deps = Deps(clock=Clock(fixed=ny(4, 17).astimezone(UTC)))
    # the packaged callback_request rule: a case due in 4 h, its task for the collectors (SLA 2 h)
    await handle(engine, deps, reply("ACC-CASE", Intent.CALLBACK_REQUEST, rid="case-wt"))
    async with engine.connect() as conn:
        [case] = await list_cases(conn, account_id="ACC-CASE")
        task = (
            await conn.execute(text("SELECT sla_due_at FROM escalation.tasks WHERE account_id = 'ACC-CASE'"))
        ).one()
    assert case.due_at == ny(7, 13)
    assert task.sla_due_at == ny(7, 11)


def test_the_demo_teams_are_valid_team_settings() -> None:
    from arrears_cli.demo_teams import demo_teams

    teams = demo_teams(datetime(2026, 12, 5).date(), "admin")
    assert {"collectors", "disputes", "senior", "supervisors"} <= set(teams)
    for body in teams.values():
        settings = TeamSettings.model_validate(body)
        assert settings.lead == "admin"
    senior = TeamSettings.model_validate(teams["senior"]).calendar
    assert senior.timezone == "America/Mexico_City" and "sat" in senior.hours


async def test_every_calendar_is_published_again_daily_by_one_replica(engine: AsyncEngine) -> None:
    from arrears_escalation.teams.service import list_teams, republish_if_due

    await set_team(engine, "t-republish", None, {}, ny(1, 8))
    async with engine.connect() as conn:
        n_teams = len(await list_teams(conn))

    async def republish(at: datetime) -> int:
        async with transaction(engine, "escalation", "escalation") as tx:
            return await republish_if_due(tx, at, timedelta(days=1))

    first = await republish(ny(8, 9))
    assert first in (0, n_teams)  # 0 when an earlier test's tick already did it today
    if first == 0:
        first = await republish(ny(9, 10))
    assert first == n_teams
    assert await republish(ny(9, 11)) == 0  # within the day: nothing
    assert await republish(ny(10, 11)) == n_teams


async def test_arrears_up_sets_the_demo_teams_once_through_the_api(broker: Any, escalation_url: str) -> None:
    import socket

    import uvicorn
    from arrears_cli.demo_teams import demo_teams, load_demo_teams

    DEMO = demo_teams(datetime(2026, 12, 5).date(), "demo-admin")  # noqa: N806

    settings = EscalationSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers, database_url=escalation_url, escalation_tick_s=3600
    )
    host = ServiceHost(definition(settings))
    app = host.build_app()
    await host.start()
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        admin = await issue_key_async(conn, "admin", name="demo-admin")
        existing = set((await conn.execute(text("SELECT team FROM escalation.teams"))).scalars().all())
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    try:
        url, today = f"http://127.0.0.1:{port}", datetime(2026, 12, 5).date()
        first = await asyncio.to_thread(load_demo_teams, url, admin, today, "demo-admin", 30)
        again = await asyncio.to_thread(load_demo_teams, url, admin, today, "demo-admin", 30)
    finally:
        server.should_exit = True
        await serving
        await host.stop()
    assert sorted(first) == sorted(set(DEMO) - existing)  # every demo team that had no calendar yet
    assert again == []  # a team already set (by a person or an earlier run) is left as it is
    async with engine_for(escalation_url) as e, e.connect() as conn:
        actors = (
            (
                await conn.execute(
                    text(
                        "SELECT DISTINCT actor FROM escalation.audit_log WHERE entity = 'team' AND actor = 'demo-admin'"
                    )
                )
            )
            .scalars()
            .all()
        )
    assert actors == ["demo-admin"]  # audited as the key that set them


@contextlib.asynccontextmanager
async def engine_for(url: str) -> AsyncIterator[AsyncEngine]:
    e = make_engine(url)
    try:
        yield e
    finally:
        await e.dispose()
