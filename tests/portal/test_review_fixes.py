"""Review fixes of the debtor portal, end to end on the real broker and Postgres: the debtor's day (their zone,
not the server's) bounds promises and plans; accepting a settlement offer re-checks the current balance and
currency; a contact window the account's legal window leaves no time for is refused when saved (with the
legal hours); saving only quiet times keeps a collector's channel order (`channels_unchanged`);
`Origin: null` cannot POST."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from arrears_shared import topics
from arrears_shared.clock import local_day
from arrears_shared.events import AccountChanged, OverrideRequested, SettlementOfferChanged
from sqlalchemy import text

from .test_offers import publish as publish_any
from .test_portal import account, csrf_of, events_of, known, portal, publish, sign_in, token

__all__ = ["portal"]  # the module's fixture, shared


async def visit(portal: Any, broker: Any, **update: Any) -> tuple[str, str, AccountChanged]:
    host, client = portal
    acc = f"REV-{uuid.uuid4().hex[:8]}"
    ev = account(acc).model_copy(update=update)
    await publish(broker.bootstrap_servers, ev)
    await known(host, acc)
    client.cookies.clear()
    return acc, await sign_in(client, token(acc)), ev


async def count(portal: Any, sql: str, **params: Any) -> Any:
    host, _ = portal
    async with host.ctx.engine.connect() as c:
        return (await c.execute(text(sql), params)).scalar()


def far_zone() -> str:
    """A zone whose day is not the UTC day right now (Kiritimati is UTC+14, Pago Pago UTC-11)."""
    now = datetime.now(UTC)
    zone = "Pacific/Kiritimati" if now.hour >= 11 else "Pacific/Pago_Pago"
    assert local_day(zone, now) != now.date()
    return zone


async def test_promises_and_plans_are_bounded_by_the_debtors_day(portal: Any, broker: Any) -> None:
    _, client = portal
    zone = far_zone()
    acc, page, _ = await visit(portal, broker, timezone=zone)
    today = local_day(zone, datetime.now(UTC))
    assert f'min="{today.isoformat()}"' in page
    csrf = csrf_of(page)
    yesterday = (today - timedelta(days=1)).isoformat()
    r = await client.post("/portal/account/promise", data={"csrf": csrf, "date": yesterday})
    assert r.status_code == 422, "a day already past in the debtor's zone"
    r = await client.post("/portal/account/promise", data={"csrf": csrf, "date": today.isoformat()})
    assert r.status_code == 303, r.text
    q = {"count": "2", "every": "week"}
    assert (await client.get("/portal/account/plan", params=q | {"first": yesterday})).status_code == 422
    r = await client.get("/portal/account/plan", params=q | {"first": today.isoformat()})
    assert r.status_code == 200, r.text


async def test_an_offer_no_longer_below_the_balance_or_in_another_currency_is_refused(
    portal: Any, broker: Any
) -> None:
    _, client = portal
    acc, _, ev = await visit(portal, broker, balance_minor=10_000)

    def offer(amount: int, currency: str = "USD") -> SettlementOfferChanged:
        return SettlementOfferChanged(
            account_id=acc, offer_id=f"so-{uuid.uuid4().hex[:8]}", status="offered", amount_minor=amount,
            currency=currency, balance_minor=10_000, expires_on=datetime.now(UTC).date() + timedelta(days=9),
            actor="sup", role="supervisor", changed_at=datetime.now(UTC),
        )  # fmt: skip

    settle, euros = offer(8_000), offer(5_000, "EUR")
    await publish_any(broker.bootstrap_servers, settle, euros, source="escalation")
    # part payments since: the debtor now owes $75.00, less than the $80.00 "settlement"
    paid = ev.model_copy(
        update={
            "balance_minor": 7_500,
            "as_of": datetime.now(UTC),
            "change": "updated",
            "content_hash": "paid",
        }
    )
    await publish(broker.bootstrap_servers, paid)
    for _ in range(300):
        n = await count(portal, "SELECT count(*) FROM portal.settlement_offers WHERE account_id = :a", a=acc)
        bal = await count(portal, "SELECT balance_minor FROM portal.accounts WHERE account_id = :a", a=acc)
        if n == 2 and bal == 7_500:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("the portal never learnt the offers and the new balance")
    page = (await client.get("/portal/account")).text
    assert "settle your account" not in page  # not shown either
    csrf = csrf_of(page)
    r = await client.post("/portal/account/offer", data={"csrf": csrf, "offer_id": settle.offer_id})
    assert r.status_code == 422 and "you now owe $75.00" in r.text, r.text
    r = await client.post("/portal/account/offer", data={"csrf": csrf, "offer_id": euros.offer_id})
    assert r.status_code == 422 and "in the same currency" in r.text
    assert await count(portal, "SELECT count(*) FROM portal.actions WHERE account_id = :a", a=acc) == 0
    status = "SELECT status FROM portal.settlement_offers WHERE offer_id = :o"
    assert await count(portal, status, o=settle.offer_id) == "offered"


async def test_a_window_the_legal_one_leaves_no_time_for_is_refused_with_the_legal_hours(
    portal: Any, broker: Any
) -> None:
    _, client = portal
    acc, page, _ = await visit(portal, broker, timezone="Asia/Kolkata", country="IN")
    csrf = csrf_of(page)
    form = {"csrf": csrf, "not_before": "20:00", "not_after": ""}
    r = await client.post("/portal/account/preferences", data=form)
    assert r.status_code == 422 and "only contact you between 08:00 and 19:00" in r.text, r.text
    assert await count(portal, "SELECT count(*) FROM portal.actions WHERE account_id = :a", a=acc) == 0
    r = await client.post("/portal/account/preferences", data=form | {"not_before": "17:00"})
    assert r.status_code == 303  # inside India's window: saved
    # the same hours are fine where the law allows them (US: 08:00-21:00)
    us, page, _ = await visit(portal, broker, country="US")
    r = await client.post("/portal/account/preferences", data=form | {"csrf": csrf_of(page)})
    assert r.status_code == 303, r.text


async def test_saving_only_quiet_times_keeps_the_channel_order(portal: Any, broker: Any) -> None:
    host, client = portal
    acc, page, _ = await visit(portal, broker)
    csrf = csrf_of(page)
    quiet = {"csrf": csrf, "not_before": "10:00", "not_after": "18:00"}
    assert (await client.post("/portal/account/preferences", data=quiet)).status_code == 303
    ranked = quiet | {"channel": ["email", "sms"]}
    assert (await client.post("/portal/account/preferences", data=ranked)).status_code == 303
    later = ranked | {"not_before": "11:00"}  # the same channels again, only the hours changed
    assert (await client.post("/portal/account/preferences", data=later)).status_code == 303
    found = await events_of(host, broker.bootstrap_servers, topics.OVERRIDES, acc, want=3)
    sent = [e.data for e in found if isinstance(e.data, OverrideRequested)]
    assert [(e.channels, e.channels_unchanged) for e in sent] == [
        ([], True),
        (["email", "sms"], False),
        ([], True),
    ]
    page = (await client.get("/portal/account")).text  # the debtor's own choice is still shown
    assert '<option value="email" selected>' in page and '<option value="11:00" selected>' in page


async def test_origin_null_cannot_post(portal: Any, broker: Any) -> None:
    _, client = portal
    acc, page, _ = await visit(portal, broker)
    data = {"csrf": csrf_of(page), "not_before": "10:00"}
    for origin, site in (("null", None), ("Null", None), ("null", "cross-site"), ("null", "same-site")):
        headers = {"origin": origin} | ({"sec-fetch-site": site} if site else {})
        r = await client.post("/portal/account/preferences", data=data, headers=headers)
        assert r.status_code == 403, (origin, site)
    assert await count(portal, "SELECT count(*) FROM portal.actions WHERE account_id = :a", a=acc) == 0
    # our own form under `Referrer-Policy: no-referrer`: Chromium sends Origin null, Sec-Fetch-Site same-origin
    own = {"origin": "null", "sec-fetch-site": "same-origin"}
    assert (await client.post("/portal/account/preferences", data=data, headers=own)).status_code == 303
    assert (await client.post("/portal/account/preferences", data=data)).status_code == 303
