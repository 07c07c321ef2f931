"""Escalation tracks what the debtor promises in the portal (issue #19): the portal's `record_promise`
overrides reach escalation on `overrides`, so a promise (or an instalment plan) made on the page appears on
the collector's timeline and in the account's promises, is kept when a payment covers it and broken when
its day (+ grace) passes — the same promise tracking as a promise in a reply or one a person took. The
overrides escalation makes itself are not recorded twice. Real portal and escalation hosts, one broker."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from arrears_escalation.cases.flows import fire_due
from arrears_shared.events import AccountChanged
from arrears_shared.stream.transaction import transaction
from portal.test_offers import gateway, platform, publish, seeded, until  # noqa: F401  (fixtures)
from portal.test_portal import account, csrf_of, sign_in, token
from sqlalchemy import text


async def promises_of(p: dict[str, Any], acc: str) -> list[dict[str, Any]]:
    r = await p["staff"].get(f"/accounts/{acc}/promises", headers=p["keys"]["collector"])
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def timeline_of(p: dict[str, Any], acc: str) -> list[dict[str, Any]]:
    r = await p["staff"].get(f"/accounts/{acc}/timeline", headers=p["keys"]["collector"])
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def paid(acc: str, amount: int, balance: int) -> AccountChanged:
    ev = account(acc, balance=balance)
    return ev.model_copy(
        update={
            "change": "payment",
            "source": "payment",
            "last_payment_minor": amount,
            "last_payment_date": date.today(),
            "content_hash": f"paid-{amount}",
            "as_of": datetime.now(UTC),
        }
    )


async def test_a_promise_made_on_the_portal_is_on_the_collectors_timeline_and_kept_after_a_payment(
    platform: dict[str, Any],  # noqa: F811
    broker: Any,
) -> None:
    p = platform
    acc = await seeded(p, broker)
    page = await sign_in(p["debtor"], token(acc))
    on = date.today() + timedelta(days=5)
    r = await p["debtor"].post(
        "/portal/account/promise", data={"csrf": csrf_of(page), "date": on.isoformat(), "amount": "40.00"}
    )
    assert r.status_code == 303, r.text

    async def tracked() -> Any:
        return await promises_of(p, acc)

    (promise,) = await until(tracked, "escalation tracks the portal's promise")
    assert (promise["amount_minor"], promise["due_date"], promise["status"], promise["channel"]) == (
        4_000, on.isoformat(), "pending", "portal",
    )  # fmt: skip
    timeline = await timeline_of(p, acc)
    line = next(i for i in timeline if i["kind"] == "portal.promise")
    assert line["summary"] == f"promise to pay 40.00 USD by {on.isoformat()} made in the portal"
    assert any(i["kind"] == "promise.made" and i["ref"] == promise["promise_id"] for i in timeline)

    await publish(broker.bootstrap_servers, paid(acc, 4_000, 6_000))

    async def kept() -> Any:
        got = await promises_of(p, acc)
        return got if got[0]["status"] == "kept" else None

    (promise,) = await until(kept, "the payment keeps the promise")
    assert promise["paid_minor"] == 4_000 and promise["on_time"] is True
    assert any(i["kind"] == "promise.kept" for i in await timeline_of(p, acc))


async def test_a_portal_plan_is_broken_when_its_first_day_passes_unpaid(
    platform: dict[str, Any],  # noqa: F811
    broker: Any,
) -> None:
    p = platform
    acc = await seeded(p, broker)
    page = await sign_in(p["debtor"], token(acc))
    today = date.today().isoformat()
    q = {"count": "4", "every": "week", "first": today}
    r = await p["debtor"].post("/portal/account/plan", data=q | {"csrf": csrf_of(page)})
    assert r.status_code == 303, r.text

    async def tracked() -> Any:
        return await promises_of(p, acc)

    (promise,) = await until(tracked, "escalation tracks the portal's plan")
    assert (promise["amount_minor"], promise["plan_every"], promise["channel"]) == (2_500, "week", "portal")
    line = next(i for i in await timeline_of(p, acc) if i["kind"] == "portal.plan")
    assert (
        line["summary"]
        == f"instalment plan chosen in the portal: 4 instalments every week, first 25.00 USD on {today}"
    )

    # three days later (default grace: 1 day) the timer loop finds it unpaid
    host = p["escalation"]
    assert host.ctx is not None
    later = datetime.now(UTC) + timedelta(days=3)
    async with transaction(host.ctx.engine, "escalation", "escalation") as tx:
        await fire_due(tx.conn, tx, p["deps"], later)
    (promise,) = await promises_of(p, acc)
    assert promise["status"] == "broken"
    timeline = await timeline_of(p, acc)
    assert any(i["kind"] == "promise.broken" for i in timeline)
    # the broken_promise rule: a case for people, and the sequence resumes (an override for the segmenter)
    assert any(i["kind"] == "case.opened" and i["summary"].startswith("broken_promise") for i in timeline)
    async with host.ctx.engine.connect() as c:
        actions = (
            (
                await c.execute(
                    text(
                        "SELECT convert_from(value, 'UTF8')::jsonb ->> 'action' FROM escalation.outbox "
                        "WHERE topic = 'overrides' AND key = convert_to(:a, 'UTF8')"
                    ),
                    {"a": acc},
                )
            )
            .scalars()
            .all()
        )
    assert actions == ["resume_dunning"]


async def test_escalations_own_promises_are_not_recorded_twice(
    platform: dict[str, Any],  # noqa: F811
    broker: Any,
) -> None:
    """A collector's promise: escalation records it as it publishes it; reading it back changes nothing."""
    p = platform
    acc = await seeded(p, broker)
    due = (date.today() + timedelta(days=7)).isoformat()
    r = await p["staff"].post(
        f"/accounts/{acc}/promises",
        json={"due_date": due, "amount_minor": 5_000},
        headers=p["keys"]["collector"],
    )
    assert r.status_code == 202, r.text
    # a portal promise on the same account afterwards: escalation is reading `overrides` by then
    page = await sign_in(p["debtor"], token(acc))
    r = await p["debtor"].post("/portal/account/promise", data={"csrf": csrf_of(page), "date": due})
    assert r.status_code == 303

    async def both() -> Any:
        got = await promises_of(p, acc)
        return got if len(got) >= 2 else None

    found = await until(both, "the portal's promise arrives after the collector's")
    assert [(x["status"], x["channel"]) for x in found] == [("pending", "portal"), ("superseded", None)]


async def test_offers_use_the_debtors_day_from_the_accounts_zone(platform: dict[str, Any]) -> None:  # noqa: F811
    """Escalation reads the debtor's zone from the account's last change on its timeline, so an offer's
    "today" is the debtor's day (Kiritimati, UTC+14, is a day ahead of UTC from 10:00 UTC on)."""
    from arrears_escalation.offers.service import debtor_today
    from arrears_escalation.timeline.service import record_activity

    host = platform["escalation"]
    ev = account("TZ-1", balance=10_000).model_copy(update={"timezone": "Pacific/Kiritimati"})
    at = datetime(2026, 12, 5, 11, tzinfo=UTC)
    async with host.ctx.engine.begin() as conn:
        assert await debtor_today(conn, "TZ-1", at) == date(2026, 12, 5)  # nothing known: the UTC day
        await record_activity(conn, [(ev, "ce-tz-1")])
        assert await debtor_today(conn, "TZ-1", at) == date(2026, 12, 6)
