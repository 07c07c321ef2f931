"""The segmenter tells the dispatchers of the stops they cannot see (accounts/stops.py): a person's
do-not-contact (every channel or some), a dispute, a pause until resumed and a settlement paid publish one
`DunningStopped` on notice-due when the account moves into them — from the event fold, an override and the
flags API alike — and nothing while it stays there or when the stop is lifted. Real PostgreSQL."""

from __future__ import annotations

from arrears_segmenter.accounts.models import FlagsUpdate
from arrears_segmenter.accounts.service import set_flags
from arrears_shared.events import Intent
from arrears_shared.stream.transaction import transaction

from .support import SCHEMA, reply, stopped_events
from .test_overrides import consume, ov, started


async def told(engine, aid: str) -> list[tuple[str, list[str]]]:  # type: ignore[no-untyped-def]
    return [(e["reason"], e["channels"]) for e in await stopped_events(engine, aid)]


async def test_a_persons_stops_are_published_once_each(engine) -> None:  # type: ignore[no-untyped-def]
    d = await started(engine, "W-dnc", "W-sms", "W-pause", "W-disp")
    await consume(
        engine,
        d,
        ov("W-dnc", "do_not_contact"),
        ov("W-sms", "do_not_contact", channels=["sms"]),
        ov("W-pause", "pause", reason="customer in hospital"),
        reply("W-disp", Intent.DISPUTE),
    )
    assert await told(engine, "W-dnc") == [("do_not_contact", [])]
    assert await told(engine, "W-sms") == [("do_not_contact", ["sms"])]
    assert await told(engine, "W-pause") == [("paused", [])]
    assert await told(engine, "W-disp") == [("dispute", [])]
    # the same again (a replayed reply, a second pause) and a lifted stop: nothing more
    await consume(
        engine,
        d,
        reply("W-disp", Intent.DISPUTE, reply_id="r-again"),
        ov("W-pause", "pause"),
        ov("W-pause", "resume"),
        ov("W-sms", "do_not_contact", channels=["sms"]),
    )
    assert await told(engine, "W-disp") == [("dispute", [])]
    assert await told(engine, "W-pause") == [("paused", [])]
    assert await told(engine, "W-sms") == [("do_not_contact", ["sms"])]
    # a second channel stopped later: that channel only; every channel now: a stop for good
    await consume(engine, d, ov("W-sms", "do_not_contact", channels=["email"]))
    assert await told(engine, "W-sms") == [("do_not_contact", ["sms"]), ("do_not_contact", [])]


async def test_the_flags_api_publishes_a_do_not_contact_and_nothing_when_it_is_cleared(engine) -> None:  # type: ignore[no-untyped-def]
    d = await started(engine, "W-flag")
    async with transaction(engine, SCHEMA, "segmenter") as tx:
        await set_flags(tx, "W-flag", FlagsUpdate(do_not_contact=True), d, d.clock.now(), "cora")
    async with transaction(engine, SCHEMA, "segmenter") as tx:
        await set_flags(tx, "W-flag", FlagsUpdate(do_not_contact=False), d, d.clock.now(), "cora")
    assert await told(engine, "W-flag") == [("do_not_contact", [])]
