"""Contact preferences in the portal (real broker and Postgres): a verified debtor picks channels in order
and quiet times; saving is one `set_channel_preference` override with the optional `contact_window` on
`overrides`, audited (`portal.preferences`) and shown back on the page; what the form does not offer (an
unknown or repeated channel, an hour outside the list, a window upside down or under an hour, too many days
avoided) is refused on the page with nothing published; CSRF and a visit are required; Spanish words."""

from __future__ import annotations

import uuid
from datetime import time
from typing import Any

from arrears_shared import topics
from arrears_shared.audit.chain import verify as verify_chain
from arrears_shared.contact_window import ContactWindow
from arrears_shared.events import OverrideRequested
from sqlalchemy import text

from .test_portal import account, csrf_of, events_of, known, portal, publish, sign_in, token

__all__ = ["portal"]  # the module's fixture, shared


async def visit(portal: Any, broker: Any, lang: str = "en") -> tuple[str, str]:
    host, client = portal
    acc = f"PREF-{uuid.uuid4().hex[:8]}"
    await publish(broker.bootstrap_servers, account(acc))
    await known(host, acc)
    client.cookies.clear()
    if lang == "en":
        return acc, await sign_in(client, token(acc))
    r = await client.post(f"/p/{token(acc)}", data={"digits": "4321", "lang": lang})
    assert r.status_code == 303
    return acc, (await client.get("/portal/account")).text


async def test_preferences_are_saved_as_the_override_audited_and_shown_back(portal: Any, broker: Any) -> None:
    host, client = portal
    acc, page = await visit(portal, broker)
    assert "How and when we contact you" in page and "America/Los_Angeles" in page
    assert '<label for="prefs-channel-1">Choice 1</label>' in page and 'for="prefs-not-before"' in page
    r = await client.post(
        "/portal/account/preferences",
        data={
            "csrf": csrf_of(page),
            "channel": ["email", "sms"],
            "not_before": "10:00",
            "not_after": "18:00",
            "avoid": ["6", "7"],
        },
    )
    assert r.status_code == 303 and r.headers["location"] == "/portal/account?done=preferences"
    shown = (await client.get(r.headers["location"])).text
    assert "Your contact preferences are saved" in shown
    assert shown.count(" selected>") >= 4  # two channels and two hours chosen
    assert '<option value="10:00" selected>' in shown and '<option value="18:00" selected>' in shown
    assert 'value="6" checked' in shown and 'value="7" checked' in shown and 'value="1" checked' not in shown

    [env] = await events_of(host, broker.bootstrap_servers, topics.OVERRIDES, acc, want=1)
    ev = env.data
    assert isinstance(ev, OverrideRequested) and ev.action == "set_channel_preference"
    assert ev.channels == ["email", "sms"] and ev.actor.startswith("portal:debtor:") and ev.role == "system"
    assert ev.contact_window == ContactWindow(not_before=time(10), not_after=time(18), avoid_weekdays=[6, 7])

    # changeable: no limits and a single channel; the stored choice follows
    r = await client.post(
        "/portal/account/preferences",
        data={"csrf": csrf_of(shown), "channel": ["sms", ""], "not_before": "", "not_after": ""},
    )
    assert r.status_code == 303
    [_, second] = await events_of(host, broker.bootstrap_servers, topics.OVERRIDES, acc, want=2)
    assert second.data.channels == ["sms"] and second.data.contact_window == ContactWindow()  # cleared
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        actions = (
            (
                await c.execute(
                    text("SELECT action FROM portal.audit_log WHERE entity_id = :a ORDER BY seq"), {"a": acc}
                )
            )
            .scalars()
            .all()
        )
        assert actions == ["portal.preferences", "portal.preferences"]
        assert (await verify_chain(c, "portal")).ok


REFUSED: list[tuple[dict[str, Any], str]] = [
    ({"channel": ["sms", "sms"]}, "each channel only once"),
    ({"channel": ["fax"]}, "each channel only once"),
    ({"not_before": "06:00"}, "one of the times offered"),
    ({"not_after": "18:30"}, "one of the times offered"),
    ({"not_before": "garbage"}, "one of the times offered"),
    ({"not_before": "18:00", "not_after": "10:00"}, "at least one hour"),
    ({"not_before": "12:00", "not_after": "12:00"}, "at least one hour"),
    ({"avoid": ["1", "2", "3", "4", "5", "6"]}, "at least two days"),
    ({"avoid": ["9"]}, "at least two days"),
    ({"avoid": ["Monday"]}, "at least two days"),
]


async def test_what_the_form_does_not_offer_is_refused_on_the_page(portal: Any, broker: Any) -> None:
    host, client = portal
    acc, page = await visit(portal, broker)
    for form, says in REFUSED:
        r = await client.post("/portal/account/preferences", data={"csrf": csrf_of(page), **form})
        assert r.status_code == 422 and says in r.text, (form, r.text)
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        n = (
            await c.execute(
                text("SELECT count(*) FROM portal.actions WHERE account_id = :a AND kind = 'preferences'"),
                {"a": acc},
            )
        ).scalar_one()
    assert n == 0


async def test_csrf_and_a_visit_are_required(portal: Any, broker: Any) -> None:
    _, client = portal
    _, page = await visit(portal, broker)
    r = await client.post("/portal/account/preferences", data={"csrf": "forged", "channel": ["sms"]})
    assert r.status_code == 403
    client.cookies.clear()
    r = await client.post("/portal/account/preferences", data={"csrf": csrf_of(page), "channel": ["sms"]})
    assert r.status_code == 401


async def test_spanish_preferences(portal: Any, broker: Any) -> None:
    _, client = portal
    _, page = await visit(portal, broker, lang="es")
    assert "Cómo y cuándo le contactamos" in page and "No antes de" in page and "Sábado" in page
    r = await client.post(
        "/portal/account/preferences",
        data={"csrf": csrf_of(page), "not_before": "20:00", "not_after": "20:00"},
    )
    assert r.status_code == 422 and "al menos una hora" in r.text
