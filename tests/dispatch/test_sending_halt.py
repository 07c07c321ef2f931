"""The incident switch at the dispatcher (issue #18 item 6): a sending halt — all, one channel, one campaign —
holds matching notices in the queue (nothing sent, nothing suppressed or lost), and once it is resumed they
go exactly once, still through every other check. Real PostgreSQL (the halts in `iam`, read in the claim
transaction), the real QUO client, sends counted at the QUO emulator's ledger."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from arrears_shared.control import halts
from arrears_shared.delivery import DeliveryEngine
from arrears_shared.events import NoticeDue
from sqlalchemy import text

from .helpers import drain, feed, ledger, notice, opt_out, states

SCHEMA = "dispatcher_sms"


async def set_halt(eng: DeliveryEngine, scope: str, target: str | None = None) -> halts.Halt:
    async with eng.engine.begin() as conn:
        return await halts.set_halt(conn, scope, target, reason="incident drill", by="tests")


async def resume(eng: DeliveryEngine, halt: halts.Halt) -> None:
    async with eng.engine.begin() as conn:
        assert await halts.clear_halt(conn, halt.halt_id, reason="all clear", by="tests") is not None


def sent_to(url: str) -> Counter[str]:
    return Counter(e["recipient"] for e in ledger(url)["entries"])


def of_campaign(campaign: str) -> NoticeDue:
    return notice().model_copy(update={"campaign_id": campaign})


async def test_halt_all_holds_every_notice_then_each_goes_once_after_resume(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    notices = [notice() for _ in range(4)]
    await feed(eng, notices, SCHEMA)
    halt = await set_halt(eng, "all")
    for _ in range(5):  # worker rounds while halted: nothing is taken
        assert await eng.process_batch(10) == (0, None)
    assert ledger(quo.url)["count"] == 0
    st = await states(eng.engine, SCHEMA)
    assert {s["state"] for s in st.values()} == {"queued"} and all(s["attempts"] == 0 for s in st.values())
    # an opt-out arriving during the halt still wins after the resume
    await feed(eng, [opt_out(notices[0].account_id)], SCHEMA)
    await resume(eng, halt)
    await drain(eng)
    assert sent_to(quo.url) == Counter(n.to for n in notices[1:])  # each once, the opted-out one never
    st = await states(eng.engine, SCHEMA)
    assert st[notices[0].notice_id]["state"] == "suppressed"
    assert all(st[n.notice_id]["state"] == "sent" for n in notices[1:])


async def test_channel_halt_stops_only_that_channel(quo: Any, make: Callable[..., DeliveryEngine]) -> None:
    eng = make()
    first, second = notice(), notice()
    other = await set_halt(eng, "channel", "email")  # another dispatcher's channel: SMS goes on
    await feed(eng, [first], SCHEMA)
    await drain(eng)
    assert sent_to(quo.url) == Counter([first.to])
    sms = await set_halt(eng, "channel", "sms")
    await feed(eng, [second], SCHEMA)
    assert await eng.process_batch(10) == (0, None)
    assert ledger(quo.url)["count"] == 1
    await resume(eng, other)
    assert await eng.process_batch(10) == (0, None)  # the SMS halt still holds
    await resume(eng, sms)
    await drain(eng)
    assert sent_to(quo.url) == Counter([first.to, second.to])


async def test_campaign_halt_holds_its_notices_and_lets_the_rest_of_the_queue_go(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    halted = [of_campaign("spring-push") for _ in range(3)]
    # the halted campaign is most urgent: it must not block what is behind it
    halted = [n.model_copy(update={"priority": 50}) for n in halted]
    others = [of_campaign("regular") for _ in range(2)] + [notice()]
    halt = await set_halt(eng, "campaign", "spring-push")
    await feed(eng, [*halted, *others], SCHEMA)
    await drain(eng)
    assert sent_to(quo.url) == Counter(n.to for n in others)
    st = await states(eng.engine, SCHEMA)
    for n in halted:
        assert (st[n.notice_id]["state"], st[n.notice_id]["last_error"]) == (
            "queued",
            "halted: campaign spring-push",
        )
        assert st[n.notice_id]["attempts"] == 0
    await resume(eng, halt)
    deadline = asyncio.get_running_loop().time() + halts.RECHECK_MAX_S + 5
    while ledger(quo.url)["count"] < 6:  # looked at again after the recheck delay (>= 5 s)
        assert asyncio.get_running_loop().time() < deadline, ledger(quo.url)
        await eng.process_batch(10)
        await asyncio.sleep(0.2)
    await drain(eng)
    assert sent_to(quo.url) == Counter(n.to for n in [*halted, *others])  # each exactly once


async def test_a_halt_committed_while_a_batch_is_being_claimed_is_honoured(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    await feed(eng, [notice(), notice()], SCHEMA)
    async with eng.engine.connect() as conn:
        tx = await conn.begin()
        await halts.set_halt(
            conn, "all", None, reason="race drill", by="tests"
        )  # holds the lock, uncommitted
        claim = asyncio.create_task(eng.process_batch(10))
        await asyncio.sleep(0.5)
        assert not claim.done(), "the claim must wait for the halt being committed"
        waiting = await conn.scalar(
            text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        )
        assert waiting == 1
        await tx.commit()
    assert await asyncio.wait_for(claim, 10) == (0, None)
    assert ledger(quo.url)["count"] == 0
    assert {s["state"] for s in (await states(eng.engine, SCHEMA)).values()} == {"queued"}


async def test_one_halt_per_scope_and_reasons_are_required(make: Callable[..., DeliveryEngine]) -> None:
    eng = make()
    first = await set_halt(eng, "campaign", "c-1")
    async with eng.engine.begin() as conn:
        try:
            await halts.set_halt(conn, "campaign", "c-1", reason="again", by="tests")
        except halts.AlreadyHalted as e:
            assert e.existing.halt_id == first.halt_id
        else:
            raise AssertionError("a second active halt of the same campaign was accepted")
    for scope, target, reason in (
        ("all", "x", "why not"),
        ("channel", "pigeon", "why not"),
        ("all", None, ""),
    ):
        async with eng.engine.begin() as conn:
            try:
                await halts.set_halt(conn, scope, target, reason=reason, by="tests")
            except halts.HaltError:
                continue
            raise AssertionError(f"accepted {scope} {target} {reason!r}")
    match = halts.HaltSet([first])
    assert match.matching("sms", "c-1") == first and match.matching("sms", "c-2") is None
    assert match.matching("email", None) is None
