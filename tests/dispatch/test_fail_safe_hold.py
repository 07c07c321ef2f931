"""Fail-safe pause (issue 12): a reply the classifier thinks may be an opt-out, but is not sure of, holds
every dunning message on that channel to the account, never sending it, until a person decides: their
decision (a reviewed reply-received) either makes it an opt-out (suppressed) or releases the held notice
(sent once). Real Postgres, the real QUO client, sends counted at the QUO emulator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arrears_shared.delivery import DeliveryEngine
from arrears_shared.events import Intent, ReplyReceived
from sqlalchemy import text

from .helpers import drain, feed, ledger, notice, opt_out, states

SCHEMA = "dispatcher_sms"


def unsure(account_id: str, reply_id: str = "quo:unsure-1") -> ReplyReceived:
    base = opt_out(account_id)
    return base.model_copy(
        update={
            "reply_id": reply_id,
            "text": "ya estuvo con esto",
            "intent": Intent.OTHER,
            "confidence": 0.41,
            "suggested_intent": Intent.OTHER,
            "needs_review": True,
            "possible_opt_out": True,
        }
    )


def decided(ev: ReplyReceived, intent: Intent, who: str = "carla") -> ReplyReceived:
    return ev.model_copy(
        update={
            "intent": intent,
            "confidence": 1.0,
            "needs_review": False,
            "possible_opt_out": False,
            "reviewed_by": who,
        }
    )


async def held_row(eng: DeliveryEngine, notice_id: str) -> Any:
    async with eng.engine.connect() as c:
        return (
            await c.execute(
                text(
                    f"SELECT state, last_error, next_attempt_at FROM {SCHEMA}.deliveries WHERE notice_id = :n"
                ),
                {"n": notice_id},
            )
        ).one()


async def test_possible_opt_out_holds_until_a_person_releases(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    n, bystander = notice(), notice()
    reply = unsure(n.account_id)
    await feed(eng, [reply, n, bystander], SCHEMA)
    await drain(eng)
    row = await held_row(eng, n.notice_id)
    assert row.state == "queued" and row.last_error.startswith("held: possible opt-out"), row
    assert [e["recipient"] for e in ledger(quo.url)["entries"]] == [bystander.to], (
        "only the other account is sent"
    )
    # a replay of the same unsure reply changes nothing; the hold is still there
    await feed(eng, [reply], SCHEMA)
    await drain(eng)
    assert ledger(quo.url)["count"] == 1
    # the person decides it was not an opt-out: the held notice goes out, once
    await feed(eng, [decided(reply, Intent.OTHER)], SCHEMA)
    await drain(eng)
    assert (await states(eng.engine, SCHEMA))[n.notice_id]["state"] == "sent"
    assert sorted(e["recipient"] for e in ledger(quo.url)["entries"]) == sorted([bystander.to, n.to])
    async with eng.engine.connect() as c:
        open_holds = f"SELECT count(*) FROM {SCHEMA}.contact_holds WHERE released_at IS NULL"
        assert (await c.execute(text(open_holds))).scalar_one() == 0
    # a replay of the original unsure reply (a DLQ replay, a reprocessed partition) after the decision holds
    # nothing: the decided row stays; a later notice is sent
    await feed(eng, [reply], SCHEMA)
    later = n.model_copy(update={"notice_id": n.notice_id.replace(":s1:", ":s2:"), "step": 2})
    await feed(eng, [later], SCHEMA)
    await drain(eng)
    assert (await states(eng.engine, SCHEMA))[later.notice_id]["state"] == "sent"
    async with eng.engine.connect() as c:
        assert (await c.execute(text(open_holds))).scalar_one() == 0


async def test_a_decision_before_its_reply_prevents_the_hold(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    n = notice()
    reply = unsure(n.account_id, "quo:unsure-4")
    await feed(eng, [decided(reply, Intent.OTHER)], SCHEMA)  # the original arrives later (a DLQ replay)
    await feed(eng, [reply, n], SCHEMA)
    await drain(eng)
    assert (await states(eng.engine, SCHEMA))[n.notice_id]["state"] == "sent"


async def test_possible_opt_out_confirmed_by_a_person_is_an_opt_out(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    n = notice()
    reply = unsure(n.account_id, "quo:unsure-2")
    await feed(eng, [reply, n], SCHEMA)
    await drain(eng)
    assert (await held_row(eng, n.notice_id)).state == "queued"
    await feed(eng, [decided(reply, Intent.OPT_OUT)], SCHEMA)
    await drain(eng)
    assert (await states(eng.engine, SCHEMA))[n.notice_id]["state"] == "suppressed"
    later = n.model_copy(update={"notice_id": n.notice_id.replace(":s1:", ":s2:"), "step": 2})
    await feed(eng, [later], SCHEMA)
    await drain(eng)
    assert (await states(eng.engine, SCHEMA))[later.notice_id]["state"] == "suppressed"
    assert ledger(quo.url)["count"] == 0, "nothing may reach a customer who opted out"


async def test_hold_on_email_does_not_pause_sms(quo: Any, make: Callable[..., DeliveryEngine]) -> None:
    eng = make()
    n = notice()
    email_reply = unsure(n.account_id, "gmail:unsure-3").model_copy(update={"channel": "email"})
    await feed(eng, [email_reply, n], SCHEMA)
    await drain(eng)
    assert (await states(eng.engine, SCHEMA))[n.notice_id]["state"] == "sent"
