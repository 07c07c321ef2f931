"""Escalation follows a portal plan instalment by instalment and a paid settlement to its write-off (issue
#19 review): instalment 1 kept rolls the promise to instalment 2 (same amount, a week on); instalment 2
missed (its day + grace) is broken: the `broken_promise` case and `resume_dunning`. A settlement paid in
full with a balance left opens one `settlement_write_off` task for the recovery team. Replays change
nothing. Real portal and escalation hosts on one broker, real Postgres."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from arrears_escalation.cases.flows import fire_due
from arrears_escalation.promises.service import on_payment
from arrears_shared.events import AccountChanged
from arrears_shared.stream.transaction import transaction
from portal.test_offers import gateway, offer, platform, portal_offer, publish, seeded, until  # noqa: F401
from portal.test_portal import account, csrf_of, sign_in, token
from sqlalchemy import text

from .test_portal_promises import promises_of, timeline_of


def paid(acc: str, amount: int, balance: int) -> AccountChanged:
    return account(acc, balance=balance).model_copy(
        update={
            "change": "payment",
            "source": "payment",
            "last_payment_minor": amount,
            "last_payment_date": date.today(),
            "content_hash": f"paid-{amount}-{balance}",
            "as_of": datetime.now(UTC),
        }
    )


async def replay(p: dict[str, Any], ev: AccountChanged) -> None:
    """The escalation consumer's payment step again, for the very same event (a redelivery)."""
    host = p["escalation"]
    async with transaction(host.ctx.engine, "escalation", "escalation") as tx:
        await on_payment(tx.conn, ev, p["deps"], datetime.now(UTC))


async def rows(p: dict[str, Any], sql: str, **params: Any) -> list[Any]:
    async with p["escalation"].ctx.engine.connect() as c:
        return list((await c.execute(text(sql), params)).all())


async def test_a_kept_instalment_rolls_the_promise_on_and_a_missed_one_is_broken(
    platform: dict[str, Any],  # noqa: F811
    broker: Any,
) -> None:
    p = platform
    acc = await seeded(p, broker)
    page = await sign_in(p["debtor"], token(acc))
    first = date.today()
    q = {"count": "3", "every": "week", "first": first.isoformat()}
    r = await p["debtor"].post("/portal/account/plan", data=q | {"csrf": csrf_of(page)})
    assert r.status_code == 303, r.text
    (promise,) = await until(lambda: promises_of(p, acc), "escalation tracks the plan")
    assert (promise["amount_minor"], promise["instalment"], promise["plan_instalments"]) == (3_334, 1, 3)

    instalment_1 = paid(acc, 3_334, 6_666)
    await publish(broker.bootstrap_servers, instalment_1)

    async def rolled() -> Any:
        got = await promises_of(p, acc)
        return got if len(got) == 2 else None

    second, kept = await until(rolled, "instalment 1 kept rolls the promise to instalment 2")
    assert (kept["status"], kept["paid_minor"], kept["on_time"]) == ("kept", 3_334, True)
    assert (second["promise_id"], second["status"], second["instalment"]) == (
        f"{kept['promise_id']}#2", "pending", 2,
    )  # fmt: skip
    assert (second["amount_minor"], second["due_date"]) == (3_334, (first + timedelta(days=7)).isoformat())
    await replay(p, instalment_1)  # the same payment again keeps nothing more
    assert [(x["status"], x["paid_minor"]) for x in await promises_of(p, acc)] == [
        ("pending", 0), ("kept", 3_334),
    ]  # fmt: skip

    host = p["escalation"]
    # three days on: instalment 2 is not due yet, nothing breaks
    async with transaction(host.ctx.engine, "escalation", "escalation") as tx:
        await fire_due(tx.conn, tx, p["deps"], datetime.now(UTC) + timedelta(days=3))
    assert (await promises_of(p, acc))[0]["status"] == "pending"
    # ten days on (day 7 + 1 day's grace passed) instalment 2 was never paid: broken
    later = datetime.now(UTC) + timedelta(days=10)
    for _ in range(2):  # a second tick finds nothing more
        async with transaction(host.ctx.engine, "escalation", "escalation") as tx:
            await fire_due(tx.conn, tx, p["deps"], later)
    assert [x["status"] for x in await promises_of(p, acc)] == ["broken", "kept"]
    timeline = await timeline_of(p, acc)
    assert len([i for i in timeline if i["kind"] == "case.opened" and "broken_promise" in i["summary"]]) == 1
    actions = await rows(
        p,
        "SELECT convert_from(value, 'UTF8')::jsonb ->> 'action' FROM escalation.outbox "
        "WHERE topic = 'overrides' AND key = convert_to(:a, 'UTF8')",
        a=acc,
    )
    assert [a for (a,) in actions] == ["resume_dunning"]


async def test_a_settlement_paid_in_full_opens_one_write_off_task(
    platform: dict[str, Any],  # noqa: F811
    broker: Any,
) -> None:
    p = platform
    acc = await seeded(p, broker)
    made = await offer(p, acc)  # 80.00 of 100.00
    assert made.status_code == 201, made.text
    offer_id = made.json()["offer_id"]
    await portal_offer(p, offer_id, "offered")
    page = await sign_in(p["debtor"], token(acc))
    r = await p["debtor"].post("/portal/account/offer", data={"csrf": csrf_of(page), "offer_id": offer_id})
    assert r.status_code == 303, r.text
    (promise,) = await until(lambda: promises_of(p, acc), "escalation tracks the acceptance")
    assert (promise["settlement_offer_id"], promise["amount_minor"]) == (offer_id, 8_000)

    part, rest = paid(acc, 5_000, 5_000), None
    await publish(broker.bootstrap_servers, part)

    async def counted() -> Any:
        (got,) = await promises_of(p, acc)
        return got if got["paid_minor"] == 5_000 else None

    assert (await until(counted, "a part payment counts toward it"))["status"] == "pending"
    rest = paid(acc, 3_000, 2_000)
    await publish(broker.bootstrap_servers, rest)

    async def kept() -> Any:
        (got,) = await promises_of(p, acc)
        return got if got["status"] == "kept" else None

    assert (await until(kept, "the settlement is paid"))["paid_minor"] == 8_000
    q = "SELECT team, detail, status FROM escalation.tasks WHERE account_id = :a AND kind = 'settlement_write_off'"
    (task,) = await until(lambda: rows(p, q, a=acc), "a write-off task")
    assert task.team == "recovery" and task.status == "open"
    assert task.detail == (
        f"settlement offer {offer_id} paid (80.00 USD of 80.00 USD): write off the remaining 20.00 USD"
    )
    for ev in (part, rest):  # redeliveries: no second task, nothing counted twice
        await replay(p, ev)
    assert len(await rows(p, q, a=acc)) == 1
    (promise,) = await promises_of(p, acc)
    assert (promise["status"], promise["paid_minor"]) == ("kept", 8_000)
    assert any(i["kind"] == "offer.paid" for i in await timeline_of(p, acc))
