"""Personal data in the segmenter's own tables is sealed with the account's key (arrears_segmenter.sealing):
the customer's name, each channel's address, a pause's and a send-now's reason, the decision log's reasons.
Sending, the API view, the decision log and address-change detection work on the opened values; rows
written in clear before sealing still work; an erased account has no address and is never sent anything."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from arrears_segmenter.accounts.models import mask_email, mask_phone
from arrears_segmenter.accounts.service import account_view, decision_log
from arrears_segmenter.accounts.store import load
from arrears_segmenter.simulate import simulate
from arrears_shared.db.migrate import downgrade, upgrade
from arrears_shared.events import DeliveryStatus, MessageSent, Tier
from arrears_shared.vault import subject_access
from arrears_shared.vault.keys import vault
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .support import account, decisions, deps, handle, notices, run_tick
from .test_migration_0006 import sql
from .test_overrides import ov

NOON_NY = datetime(2026, 4, 15, 16, 0, tzinfo=UTC)  # 12:00 in New York, dpd 45 for due 1 Mar: step 2 due
NAME, PHONE, EMAIL = "Ada Debtor", "+14155550100", "ada@example.com"


async def raw(engine: AsyncEngine, statement: str, **params: Any) -> list[Any]:
    async with engine.connect() as c:
        return list((await c.execute(text(statement), params)).all())


def assert_sealed(value: object, *plaintexts: str) -> None:
    assert isinstance(value, str) and value.startswith("pii1:"), value
    assert not any(p in value for p in plaintexts)


async def assert_nothing_in_clear(engine: AsyncEngine, aid: str, *plaintexts: str) -> None:
    """No row of the account, in any segmenter table, holds one of `plaintexts` in clear."""
    for table in ("accounts", "account_channels", "decisions", "timers", "notices"):
        rows = await raw(engine, f"SELECT t::text FROM segmenter.{table} t WHERE account_id = :a", a=aid)
        for (row,) in rows:
            assert not any(p in row for p in plaintexts), (table, row)


async def test_name_and_addresses_are_stored_sealed_and_sending_and_the_view_use_them(engine) -> None:
    d = deps(NOON_NY)
    await handle(engine, d, account("SEAL-1"))
    [(name,)] = await raw(engine, "SELECT customer_name FROM segmenter.accounts WHERE account_id = 'SEAL-1'")
    assert_sealed(name, NAME)
    addresses = dict(
        await raw(
            engine, "SELECT channel, address FROM segmenter.account_channels WHERE account_id = 'SEAL-1'"
        )
    )
    assert set(addresses) == {"sms", "email"}
    assert_sealed(addresses["sms"], PHONE, "4155550100")
    assert_sealed(addresses["email"], EMAIL, "example.com")

    assert await run_tick(engine, d) == 1
    sent = {n["channel"]: n for n in await notices(engine, "SEAL-1")}
    assert (sent["sms"]["to"], sent["email"]["to"]) == (PHONE, EMAIL)
    assert sent["sms"]["customer_name"] == sent["email"]["customer_name"] == NAME
    await assert_nothing_in_clear(engine, "SEAL-1", NAME, PHONE, EMAIL)

    async with engine.connect() as c:
        view = await account_view(c, "SEAL-1", d, d.clock.now())
    assert view is not None and view.customer_name == NAME
    assert {ch.channel: ch.address_masked for ch in view.channels} == {
        "sms": mask_phone(PHONE),
        "email": mask_email(EMAIL),
    }


async def test_a_changed_address_is_told_from_the_same_one_by_its_opened_value(engine) -> None:
    d = deps(NOON_NY)
    await handle(engine, d, account("SEAL-2"))
    await run_tick(engine, d)
    sms = next(n for n in await notices(engine, "SEAL-2") if n["channel"] == "sms")
    bounce = MessageSent(
        account_id="SEAL-2",
        notice_id=sms["notice_id"],
        channel="sms",
        status=DeliveryStatus.FAILED,
        provider="quo",
        to=PHONE,
        tier=Tier(sms["tier"]),
        step=sms["step"],
        reason=f"quo 30003: {PHONE} unreachable",
        permanent=True,
        sent_at=d.clock.now(),
    )
    await handle(engine, d, bounce)

    async def sms_invalid() -> bool:
        async with engine.connect() as c:
            acct = await load(c, "SEAL-2")
        assert acct is not None
        return acct.address_invalid("sms")

    assert await sms_invalid()
    # the same number again (sealed afresh each time: ciphertexts differ): still known invalid
    await handle(engine, d, account("SEAL-2", as_of=datetime(2026, 1, 2, tzinfo=UTC), content_hash="h2"))
    assert await sms_invalid()
    # a new number: no longer known invalid
    await handle(
        engine,
        d,
        account("SEAL-2", phone="+14155550111", as_of=datetime(2026, 1, 3, tzinfo=UTC), content_hash="h3"),
    )
    assert not await sms_invalid()
    async with engine.connect() as c:
        acct = await load(c, "SEAL-2")
    assert acct is not None and acct.address("sms") == "+14155550111"
    # the provider's error quoted the number: the decision log holds it sealed, the API opens it
    await assert_nothing_in_clear(engine, "SEAL-2", PHONE, "+14155550111", NAME)
    async with engine.connect() as c:
        log, _ = await decision_log(c, "SEAL-2")
    assert any(r.rule_id == "invalid_address.sms" and PHONE in r.reason for r in log)


async def test_a_pause_reason_and_send_now_reason_are_sealed_and_read_back(engine) -> None:
    d = deps(NOON_NY)
    until = NOON_NY + timedelta(days=2)
    await handle(
        engine,
        d,
        account("SEAL-3"),
        ov("SEAL-3", "pause", until=until, reason="customer in hospital"),
    )
    [(pause_reason,)] = await raw(
        engine, "SELECT pause_reason FROM segmenter.accounts WHERE account_id = 'SEAL-3'"
    )
    assert_sealed(pause_reason, "hospital")
    # the pause moved the step to its end; a timer already due when a pause came (planned earlier) is
    # deferred when it fires, with a note that quotes the reason opened by the tick
    async with engine.begin() as c:
        await c.execute(
            text("UPDATE segmenter.timers SET due_at = :t WHERE account_id = 'SEAL-3' AND state = 'pending'"),
            {"t": NOON_NY},
        )
    assert await run_tick(engine, d) == 1
    assert await notices(engine, "SEAL-3") == []
    log = await decisions(engine, "SEAL-3")
    assert any(
        r["rule_id"] == "override.pause" and r["reason"].endswith("(customer in hospital)") for r in log
    )
    deferred = [r for r in log if r["rule_id"] == "override.pause" and r["outcome"] == "deferred"]
    assert deferred and deferred[0]["reason"] == "paused by sup-1 (customer in hospital)"
    [(pause_reason,)] = await raw(
        engine, "SELECT pause_reason FROM segmenter.accounts WHERE account_id = 'SEAL-3'"
    )
    assert_sealed(pause_reason, "hospital")  # the tick wrote the account back, still sealed
    stored = await raw(engine, "SELECT reason FROM segmenter.decisions WHERE account_id = 'SEAL-3'")
    for (reason,) in stored:
        assert_sealed(reason, "hospital")

    await handle(
        engine,
        d,
        ov("SEAL-3", "resume"),
        ov("SEAL-3", "send_now", step=3, gate_override=True, reason="court deadline tomorrow"),
    )
    [(send_now,)] = await raw(engine, "SELECT send_now FROM segmenter.accounts WHERE account_id = 'SEAL-3'")
    assert send_now["step"] == 3
    assert_sealed(send_now["reason"], "court")
    async with engine.connect() as c:
        acct = await load(c, "SEAL-3")
    assert acct is not None and acct.send_now is not None
    assert acct.send_now["reason"] == "court deadline tomorrow"
    await assert_nothing_in_clear(engine, "SEAL-3", "hospital", "court deadline", NAME, PHONE, EMAIL)


async def test_an_erased_account_has_no_address_and_is_never_sent_anything(engine) -> None:
    d = deps(NOON_NY)
    await handle(engine, d, account("SEAL-E"))
    async with engine.begin() as c:
        assert await subject_access.erase(c, "SEAL-E", "test")
    await run_tick(engine, d)
    assert await notices(engine, "SEAL-E") == []
    rules = {r["rule_id"] for r in await decisions(engine, "SEAL-E") if r["outcome"] == "suppressed"}
    assert {"no_address.sms", "no_address.email"} <= rules
    async with engine.connect() as c:
        view = await account_view(c, "SEAL-E", d, d.clock.now())
        acct = await load(c, "SEAL-E")
    assert view is not None and view.customer_name == "[erased]"
    assert [ch.address_masked for ch in view.channels] == [None, None]
    assert acct is not None and acct.address("sms") is None and acct.reachable_channels() == []
    # even an account-changed that reaches the fold (the runner skips an erased account's sealed events)
    # gives it no address: a new cycle is planned, nothing is sent
    await handle(
        engine, d, account("SEAL-E", due_date=NOON_NY.date(), as_of=datetime(2026, 4, 1, tzinfo=UTC))
    )
    d.clock.advance(timedelta(days=40))
    await run_tick(engine, d)
    assert await notices(engine, "SEAL-E") == []
    await assert_nothing_in_clear(engine, "SEAL-E", NAME, PHONE, EMAIL)


async def test_rows_written_in_clear_before_sealing_still_work(engine) -> None:
    """An account written by a release before sealing (plaintext, and no key yet) is sent to and shown as it
    is, sealed on its next write. A simulation over it (rolled back) leaves no key behind in the vault's
    cache that was never stored: what the real tick seals afterwards opens."""
    d = deps(NOON_NY)
    await handle(engine, d, account("SEAL-L"))
    async with engine.begin() as c:
        await c.execute(
            text("UPDATE segmenter.accounts SET customer_name = 'Old Name' WHERE account_id = 'SEAL-L'")
        )
        await c.execute(
            text(
                "UPDATE segmenter.account_channels SET address = CASE channel WHEN 'sms' THEN '+14155550199' "
                "ELSE 'old@example.com' END WHERE account_id = 'SEAL-L'"
            )
        )
        await c.execute(
            text(
                "INSERT INTO segmenter.decisions (account_id, outcome, rule_id, reason, at) "
                "VALUES ('SEAL-L', 'updated', 'legacy', 'old reason', now())"
            )
        )
        await c.execute(text("DELETE FROM vault.account_keys WHERE subject = 'SEAL-L'"))
    vault().forget("SEAL-L")

    sim = await simulate(engine, d, days=30, start=NOON_NY)
    assert {(n["account_id"], n["channel"]) for n in sim.notices} >= {("SEAL-L", "sms"), ("SEAL-L", "email")}
    assert await run_tick(engine, d) == 1
    vault().forget("SEAL-L")  # read the key from the database, not from the cache
    sent = {n["channel"]: n for n in await notices(engine, "SEAL-L")}
    assert (sent["sms"]["to"], sent["email"]["to"]) == ("+14155550199", "old@example.com")
    assert sent["sms"]["customer_name"] == "Old Name"
    async with engine.connect() as c:
        view = await account_view(c, "SEAL-L", d, d.clock.now())
        log, _ = await decision_log(c, "SEAL-L")
    assert view is not None and view.customer_name == "Old Name"
    assert "old reason" in [r.reason for r in log]
    assert any(r.outcome == "emitted" for r in log)  # written sealed after the upgrade, opened

    await handle(
        engine, d, account("SEAL-L", customer_name="Old Name", as_of=datetime(2026, 1, 2, tzinfo=UTC))
    )
    [(name,)] = await raw(engine, "SELECT customer_name FROM segmenter.accounts WHERE account_id = 'SEAL-L'")
    assert_sealed(name, "Old Name")


def test_migration_0008_records_what_each_column_holds(fresh_database_url: Callable[..., str]) -> None:
    url = fresh_database_url("seg_mig8")
    query = (
        "SELECT col_description('segmenter.account_channels'::regclass, "
        "(SELECT attnum FROM pg_attribute WHERE attrelid = 'segmenter.account_channels'::regclass "
        "AND attname = 'address'))"
    )
    upgrade(url, "segmenter")
    [(note,)] = sql(url, query)
    assert note.startswith("the channel's address") and "sealed" in note
    downgrade(url, "segmenter", "0007")
    assert sql(url, query) == [(None,)]
    upgrade(url, "segmenter")
