"""Instalment plans (issue #19): the schedule (whole minor units summing exactly to the balance, monthly
dates clamped to the month's end) and the policy's limits; the portal on a real broker and Postgres showing
the plan form and the schedule to a verified debtor and recording the chosen plan as the platform's own
event (`record_promise` for the first instalment with the cadence and count, audited with the whole
schedule); and the segmenter holding the sequence and confirming the plan with a `plan_confirmation`."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from arrears_portal.__main__ import definition
from arrears_portal.plans.service import PlanPolicy, PlanRefused, schedule, split
from arrears_portal.settings import PortalSettings
from arrears_segmenter.consumer import make_handler
from arrears_shared import topics
from arrears_shared.audit.chain import verify as verify_chain
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import OverrideRequested, SettlementOfferChanged
from arrears_shared.instalments import add_months
from arrears_shared.service import ServiceHost
from arrears_shared.stream.transaction import transaction
from portal_support import hosted, portal_settings
from segmenter.support import SCHEMA as SEG
from segmenter.support import account as seg_account
from segmenter.support import deps as seg_deps
from segmenter.support import envelope, notices
from sqlalchemy import text

from .test_portal import KEY, account, csrf_of, events_of, known, publish, sign_in, token

POLICY = PlanPolicy(
    max_instalments=6,
    min_instalment_minor=1_000,
    max_term_days=120,
    first_within_days=30,
    cadences=("fortnight", "month"),
)
TODAY = date(2026, 1, 31)


# -- the schedule -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("balance", [1, 2, 99, 10_000, 12_345, 99_999_999_999])
@pytest.mark.parametrize("count", [1, 2, 3, 7, 12])
def test_split_sums_exactly_and_differs_by_at_most_one_unit(balance: int, count: int) -> None:
    parts = split(balance, count)
    assert len(parts) == count and sum(parts) == balance
    assert max(parts) - min(parts) <= 1 and parts == sorted(parts, reverse=True)


def test_monthly_dates_keep_the_day_or_take_the_months_last() -> None:
    assert [add_months(date(2026, 1, 31), i) for i in range(4)] == [
        date(2026, 1, 31), date(2026, 2, 28), date(2026, 3, 31), date(2026, 4, 30),
    ]  # fmt: skip
    assert add_months(date(2027, 11, 30), 3) == date(2028, 2, 29)  # across a year, a leap day


def test_a_schedule_within_the_policy() -> None:
    plan = schedule(10_000, 3, "month", TODAY, TODAY, POLICY)
    assert [(i.number, i.due_on, i.amount_minor) for i in plan] == [
        (1, date(2026, 1, 31), 3_334), (2, date(2026, 2, 28), 3_333), (3, date(2026, 3, 31), 3_333),
    ]  # fmt: skip
    fortnightly = schedule(10_000, 4, "fortnight", TODAY + timedelta(days=3), TODAY, POLICY)
    assert [i.due_on - fortnightly[0].due_on for i in fortnightly] == [
        timedelta(days=14 * n) for n in range(4)
    ]
    assert sum(i.amount_minor for i in fortnightly) == 10_000


@pytest.mark.parametrize(
    ("balance", "count", "every", "first", "key"),
    [
        (10_000, 3, "week", TODAY, "plan_bad_cadence"),  # weekly not allowed by this policy
        (10_000, 3, "daily", TODAY, "plan_bad_cadence"),
        (10_000, 7, "month", TODAY, "plan_bad_count"),  # more than max_instalments
        (5_000, 6, "month", TODAY, "plan_bad_count"),  # instalments below the minimum: at most 5
        (10_000, 1, "month", TODAY, "plan_bad_count"),
        (1_999, 2, "month", TODAY, "plan_unavailable"),  # not even two instalments of the minimum
        (10_000, 3, "month", TODAY - timedelta(days=1), "plan_bad_first"),
        (10_000, 3, "month", TODAY + timedelta(days=31), "plan_bad_first"),
        (10_000, 6, "month", TODAY, "plan_too_long"),  # the last one (31 July) after 120 days
    ],
)
def test_plans_outside_the_policy_are_refused(
    balance: int, count: int, every: str, first: date, key: str
) -> None:
    with pytest.raises(PlanRefused) as e:
        schedule(balance, count, every, first, TODAY, POLICY)
    assert e.value.key == key


def test_policy_from_settings_reads_the_allowed_cadences_in_order() -> None:
    s = PortalSettings(portal_plan_cadences="month, week", portal_plan_max_instalments=4)
    p = PlanPolicy.from_settings(s)
    assert p.cadences == ("week", "month") and p.max_instalments == 4
    assert p.most_instalments(3_500) == 3 and p.most_instalments(1_000_000) == 4
    with pytest.raises(ValueError):
        PortalSettings(portal_plan_cadences="yearly")


# -- the portal ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def portal(
    broker: Any, fresh_database_url: Callable[..., str]
) -> AsyncIterator[tuple[ServiceHost, Any]]:
    settings = portal_settings(
        broker,
        fresh_database_url("portal_plans"),
        KEY,
        portal_plan_max_instalments=6,
        portal_plan_min_instalment_minor=1_000,
        portal_plan_max_term_days=120,
        portal_plan_cadences="week,month",
    )
    async with hosted(definition(settings)) as (host, client, _):
        yield host, client


def schedule_rows(html: str) -> list[tuple[str, str, str]]:
    return re.findall(r"<tr><td>(\d+)</td><td>([\d-]+)</td><td class=\"num\">([^<]+)</td></tr>", html)


async def test_a_debtor_chooses_a_plan_within_the_policy_and_it_is_the_platforms_promise_event(
    portal: Any, broker: Any
) -> None:
    host, client = portal
    acc = f"PLAN-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(acc, balance=10_000))
    await known(host, acc)
    page = await sign_in(client, token(acc))
    # the form offers 2..6 payments (6 x 10.00 fits 100.00) and only the allowed cadences
    assert 'action="/portal/account/plan"' in page
    counts = re.findall(r'<option value="(\d+)">', page)
    assert counts == ["2", "3", "4", "5", "6"]
    assert re.findall(r'<option value="(week|fortnight|month)">', page) == ["week", "month"]

    today = date.today()
    q = {"count": "3", "every": "month", "first": today.isoformat()}
    preview = await client.get("/portal/account/plan", params=q)
    assert preview.status_code == 200, preview.text
    rows = schedule_rows(preview.text)
    assert [(n, a) for n, _, a in rows] == [("1", "$33.34"), ("2", "$33.33"), ("3", "$33.33")]
    assert [d for _, d, _ in rows] == [add_months(today, i).isoformat() for i in range(3)]
    assert "$100.00" in preview.text  # the total: exactly the balance
    assert "script" not in preview.text.lower()

    csrf = csrf_of(preview.text)
    r = await client.post("/portal/account/plan", data=q | {"csrf": csrf})
    assert r.status_code == 303 and r.headers["location"] == "/portal/account?done=plan"
    assert "payment plan is recorded" in (await client.get(r.headers["location"])).text

    (env,) = await events_of(host, broker.bootstrap_servers, topics.OVERRIDES, acc, want=1)
    ev = env.data
    assert isinstance(ev, OverrideRequested)
    assert (ev.action, ev.promise_date, ev.promise_amount_minor) == ("record_promise", today, 3_334)
    assert (ev.promise_plan_every, ev.plan_instalments) == ("month", 3)
    assert ev.actor.startswith("portal:debtor:") and ev.role == "system"
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        audit = (
            await c.execute(
                text("SELECT action, role, after FROM portal.audit_log WHERE entity_id = :a"), {"a": acc}
            )
        ).one()
        kind = (
            await c.execute(text("SELECT kind FROM portal.actions WHERE account_id = :a"), {"a": acc})
        ).scalar_one()
        assert (await verify_chain(c, "portal")).ok
    assert (audit.action, audit.role, kind) == ("portal.plan", "debtor", "plan")
    assert [i["amount_minor"] for i in audit.after["schedule"]] == [3_334, 3_333, 3_333]
    assert audit.after["currency"] == "USD"


async def test_plans_outside_the_policy_are_answered_on_the_page_and_record_nothing(
    portal: Any, broker: Any
) -> None:
    host, client = portal
    acc = f"PLAN-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(acc, balance=10_000))
    await known(host, acc)
    page = await sign_in(client, token(acc))
    csrf, today = csrf_of(page), date.today().isoformat()
    refused = {
        ("7", "month", today): "between 2 and 6 payments",
        ("3", "fortnight", today): "how often",  # not an allowed cadence here
        ("3", "month", "2020-01-01"): "first payment date",
        ("3", "month", "garbage"): "first payment date",
        ("x", "month", today): "between 2 and 6 payments",
        ("6", "month", today): "last payment would be after",  # 5 months > 120 days
    }
    for (count, every, first), message in refused.items():
        q = {"count": count, "every": every, "first": first}
        preview = await client.get("/portal/account/plan", params=q)
        assert preview.status_code == 422 and message in preview.text, (q, preview.text)
        chosen = await client.post("/portal/account/plan", data=q | {"csrf": csrf})
        assert chosen.status_code == 422 and message in chosen.text, q
    bad_csrf = await client.post(
        "/portal/account/plan", data={"count": "2", "every": "week", "first": today, "csrf": "nope"}
    )
    assert bad_csrf.status_code == 403
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        n = (
            await c.execute(text("SELECT count(*) FROM portal.actions WHERE account_id = :a"), {"a": acc})
        ).scalar_one()
    assert n == 0
    # without a visit: nothing about the account
    fresh = httpx.AsyncClient(transport=client._transport, base_url="http://portal")
    async with fresh:
        r = await fresh.get("/portal/account/plan", params={"count": "2", "every": "week", "first": today})
    assert r.status_code == 401 and "$" not in r.text


async def test_a_small_balance_gets_no_plan_form_and_spanish_has_its_words(portal: Any, broker: Any) -> None:
    host, client = portal
    small, acc = f"PLAN-{uuid.uuid4().hex[:8]}", f"PLAN-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(small, balance=1_500))
    await publish(broker.bootstrap_servers, account(acc, balance=10_000))
    await known(host, small)
    await known(host, acc)
    page = await sign_in(client, token(small))
    assert 'action="/portal/account/plan"' not in page  # 15.00 is not two instalments of 10.00
    r = await client.post(f"/p/{token(acc)}", data={"digits": "4321", "lang": "es"})
    assert r.status_code == 303
    page = (await client.get("/portal/account")).text
    assert "Pagar a plazos" in page and "Cada mes" in page
    q = {"count": "2", "every": "week", "first": date.today().isoformat()}
    preview = (await client.get("/portal/account/plan", params=q)).text
    assert "Su calendario de pagos" in preview and "Elegir este plan" in preview


# -- the segmenter ------------------------------------------------------------------------------------------

NOON_NY = datetime(2026, 4, 15, 16, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def segmenter_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("segmenter_plans")
    upgrade(url, "segmenter")
    return url


async def test_the_segmenter_holds_for_a_portal_plan_and_confirms_it_as_a_plan(segmenter_url: str) -> None:
    engine = make_engine(segmenter_url)

    async def handle(*events: Any) -> None:
        async with transaction(engine, SEG, "segmenter") as tx:
            await make_handler(seg_deps(NOON_NY))([envelope(e) for e in events], tx)

    try:
        aid = "PLAN-SEG-1"
        await handle(seg_account(aid, due_date=date(2026, 4, 1)))
        plan = OverrideRequested(
            account_id=aid,
            override_id="o-plan-1",
            action="record_promise",
            promise_date=date(2026, 4, 20),
            promise_amount_minor=3_334,
            promise_plan_every="month",
            plan_instalments=3,
            actor="portal:debtor:v1",
            role="system",
            requested_at=NOON_NY,
        )
        offer = SettlementOfferChanged(
            account_id=aid,
            offer_id="so-1",
            status="offered",
            amount_minor=30_000,
            currency="USD",
            balance_minor=50_000,
            expires_on=date(2026, 4, 30),
            actor="sup",
            role="supervisor",
            changed_at=NOON_NY,
        )
        await handle(offer, plan, plan)  # an offer is none of the segmenter's business; a replayed plan
        found = await notices(engine, aid, None)
        (conf,) = [n for n in found if n["purpose"] == "plan_confirmation"]
        assert (conf["about_amount_minor"], conf["about_date"], conf["plan_every"]) == (
            3_334,
            "2026-04-20",
            "month",
        )
        assert not [n for n in found if n["purpose"] == "promise_confirmation"]
        async with engine.connect() as c:
            hold = (
                await c.execute(
                    text(f"SELECT hold, promise_hold_until FROM {SEG}.accounts WHERE account_id = :a"),
                    {"a": aid},
                )
            ).one()
        assert (hold.hold, hold.promise_hold_until) == ("promise", date(2026, 4, 20))
    finally:
        await engine.dispose()
