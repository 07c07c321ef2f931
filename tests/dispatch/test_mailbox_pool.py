"""dispatcher-email with a pool of sending mailboxes: per-account stickiness (across restarts and racing
replicas), per-mailbox quotas and pauses, re-homing, and no notice ever sent twice or from a second mailbox.
Through the real Gmail client against the emulator, counting each mailbox's sends in the emulator's ledger."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from arrears_dispatcher_email.__main__ import build_engine
from arrears_dispatcher_email.settings import EmailSettings
from arrears_emulators.common import EmulatorServer, LimitsConfig
from arrears_emulators.gmail.app import GmailConfig
from arrears_emulators.gmail.app import create_app as create_gmail
from arrears_shared.db.migrate import upgrade
from arrears_shared.delivery import DeliveryEngine, allow_all
from arrears_shared.events import NoticeDue
from sqlalchemy import text

from .helpers import bound, control, feed, ledger, notice, states

SCHEMA = "dispatcher_email"
A, B, C = "a.collections@arrears.test", "b.collections@arrears.test", "c.collections@arrears.test"
FINAL = {"sent", "failed", "suppressed"}


@pytest.fixture
def gmail() -> Any:
    # quota units far above Gmail's 250/s, so the test is paced by the dispatcher, not by the emulator
    with EmulatorServer(
        create_gmail(GmailConfig(user_email=A, limits=LimitsConfig(rate=100_000, daily_limit=2000)))
    ) as srv:
        yield srv


@pytest.fixture
async def db(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("mailbox_pool")
    await asyncio.to_thread(upgrade, url, "dispatcher-email")
    return url


@pytest.fixture
async def make(gmail: Any, db: str) -> AsyncIterator[Callable[..., DeliveryEngine]]:
    made: list[Any] = []

    def factory(mailboxes: list[dict[str, Any]] | None = None, **kw: Any) -> DeliveryEngine:
        boxes = mailboxes or [{"address": A}, {"address": B}]
        s = EmailSettings(
            service_name="dispatcher-email",
            database_url=db,
            gmail_api_endpoint=gmail.url,
            gmail_token="emulator-token",
            gmail_mailboxes=[{"rate_per_s": 50.0, **m} for m in boxes],
            gmail_timeout_s=3.0,
            dispatch_in_doubt_after_s=1.0,
            dispatch_backoff_base_s=0.05,
            dispatch_backoff_max_s=0.2,
            **kw,
        )
        eng, ae = bound(build_engine(s, gate=allow_all), db, SCHEMA, "dispatcher-email")
        made.append((eng, ae))
        return eng

    yield factory
    for eng, ae in made:
        await eng.channel.aclose()  # type: ignore[attr-defined]
        await ae.dispose()


def step(n: NoticeDue, k: int) -> NoticeDue:
    """The account's k-th notice (its own notice id)."""
    return n.model_copy(update={"notice_id": n.notice_id.replace(":s1:", f":s{k}:"), "step": k})


async def run(
    eng: DeliveryEngine,
    until: Callable[[dict[str, dict[str, Any]]], bool],
    timeout_s: float = 30.0,
    *,
    reconcile: bool = True,
) -> None:
    """Process batches until `until(states)` holds (rows deferred for pacing come due again meanwhile), and
    reconcile in-doubt rows as the engine's reconciler does (a send that could not start on time under load
    is left `sending` for it)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        done, _ = await eng.process_batch()
        if not done:
            if until(await states(eng.engine, SCHEMA)):
                return
            if reconcile:
                await eng.reconcile_in_doubt()
            await asyncio.sleep(0.05)
        assert asyncio.get_running_loop().time() < deadline, await states(eng.engine, SCHEMA)


def settled(*ids: str) -> Callable[[dict[str, dict[str, Any]]], bool]:
    return lambda st: all(st.get(i, {}).get("state") in FINAL for i in ids)


def senders(url: str) -> dict[str, str]:
    """notice id -> the mailbox that sent it (From:, as the emulator stored it)."""
    return {e["notice_id"]: e["details"]["mailbox"] for e in ledger(url)["entries"]}


def per_mailbox(url: str) -> Counter[str]:
    return Counter(e["details"]["mailbox"] for e in ledger(url)["entries"])


async def assignments(eng: DeliveryEngine) -> dict[str, dict[str, Any]]:
    async with eng.engine.connect() as c:
        rows = await c.execute(text(f"SELECT * FROM {SCHEMA}.mailbox_assignments"))
        return {r.account_id: dict(r._mapping) for r in rows}


def no_duplicates(url: str) -> None:
    by_notice = ledger(url)["by_notice"]
    assert by_notice and max(by_notice.values()) == 1, by_notice


async def test_first_email_picks_least_used_then_every_email_sticks_across_restarts(
    gmail: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    firsts = [notice(channel="email") for _ in range(4)]
    for n in firsts:  # one at a time: each pick sees the sends before it
        await feed(eng, [n], SCHEMA)
        await run(eng, settled(n.notice_id))
    first_from = senders(gmail.url)
    # least used first, ties to the lowest address: a, b, a, b
    assert [first_from[n.notice_id] for n in firsts] == [A, B, A, B]
    await eng.channel.aclose()  # type: ignore[attr-defined]

    restarted = make()  # a new process: nothing in memory, the choice is in PostgreSQL
    seconds = [step(n, 2) for n in firsts]
    # the mailboxes are no longer balanced by the next picks: a is ahead by two
    extra = notice(channel="email")
    await feed(restarted, [*seconds, extra], SCHEMA)
    await run(restarted, settled(*(n.notice_id for n in seconds), extra.notice_id))
    sent_from = senders(gmail.url)
    for first, second in zip(firsts, seconds, strict=True):
        assert sent_from[second.notice_id] == first_from[first.notice_id]
    assert set((await assignments(restarted)).keys()) == {n.account_id for n in [*firsts, extra]}
    # the reply-to-the-same-conversation headers: the second email answers the first, in the same Gmail thread
    entries = {e["notice_id"]: e for e in ledger(gmail.url)["entries"]}
    for first, second in zip(firsts, seconds, strict=True):
        assert entries[second.notice_id]["thread_id"] == entries[first.notice_id]["thread_id"]
        assert (
            entries[first.notice_id]["details"]["message_id"]
            in entries[second.notice_id]["details"]["references"]
        )
    no_duplicates(gmail.url)


async def test_two_replicas_racing_on_new_accounts_agree_on_one_mailbox(
    gmail: Any, make: Callable[..., DeliveryEngine]
) -> None:
    one, two = make(), make()
    notices = [notice(channel="email") for _ in range(12)]
    all_notices = [*notices, *(step(n, 2) for n in notices), *(step(n, 3) for n in notices)]
    await feed(one, all_notices, SCHEMA)
    ids = [n.notice_id for n in all_notices]
    await asyncio.gather(run(one, settled(*ids)), run(two, settled(*ids)))
    sent_from = senders(gmail.url)
    assert set(sent_from) == set(ids)
    no_duplicates(gmail.url)
    rows = await assignments(one)
    for n in notices:
        mailboxes = {sent_from[n.notice_id], sent_from[step(n, 2).notice_id], sent_from[step(n, 3).notice_id]}
        assert mailboxes == {rows[n.account_id]["mailbox"]}, "an account was written from two mailboxes"
    assert set(per_mailbox(gmail.url)) == {A, B}

    # the database decides even without the pool's lock: two assignments of one account in parallel
    pool_one, pool_two = one.channel.pool, two.channel.pool  # type: ignore[attr-defined]
    account = f"A-{uuid.uuid4().hex[:8]}"

    async def assign(pool: Any, mailbox: str) -> str:
        async with one.engine.begin() as conn:
            return str(await pool._assign(conn, SCHEMA, account, mailbox))

    got = await asyncio.gather(assign(pool_one, A), assign(pool_two, B))
    assert got[0] == got[1] == (await assignments(one))[account]["mailbox"]


async def test_each_mailbox_keeps_its_own_daily_quota(
    gmail: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make([{"address": A, "daily_quota": 2}, {"address": B, "daily_quota": 3}])
    notices = [notice(channel="email") for _ in range(7)]
    await feed(eng, notices, SCHEMA)
    await run(eng, lambda st: sum(r["state"] == "sent" for r in st.values()) == 5)
    await asyncio.sleep(0.2)
    while (await eng.process_batch())[0]:
        pass
    assert per_mailbox(gmail.url) == Counter({A: 2, B: 3})
    st = await states(eng.engine, SCHEMA)
    waiting = [r for r in st.values() if r["state"] == "queued"]
    assert len(waiting) == 2 and all("every mailbox at its daily quota" in r["last_error"] for r in waiting)

    # an account a wrote to waits for a (full), even though another mailbox would have room
    eng2 = make([{"address": A, "daily_quota": 2}, {"address": B, "daily_quota": 3}, {"address": C}])
    on_a = next(n for n in notices if senders(gmail.url).get(n.notice_id) == A)
    later = step(on_a, 2)
    await feed(eng2, [later], SCHEMA)
    await run(eng2, lambda st: st[later.notice_id]["last_error"] is not None)
    row = (await states(eng2.engine, SCHEMA))[later.notice_id]
    assert row["state"] == "queued" and "daily quota" in row["last_error"]
    assert later.notice_id not in senders(gmail.url)
    # the two waiting new accounts go to the new mailbox c, which has quota left
    await run(eng2, lambda st: sum(r["state"] == "sent" for r in st.values()) == 7)
    assert per_mailbox(gmail.url) == Counter({A: 2, B: 3, C: 2})
    no_duplicates(gmail.url)


async def test_overflow_moves_only_accounts_the_full_mailbox_never_wrote_to(
    gmail: Any, make: Callable[..., DeliveryEngine]
) -> None:
    boxes = [{"address": A, "daily_quota": 1}, {"address": B}]
    eng = make(boxes, gmail_mailbox_overflow=True)
    written = notice(channel="email")
    await feed(eng, [written], SCHEMA)
    await run(eng, settled(written.notice_id))
    assert senders(gmail.url)[written.notice_id] == A  # a is now full
    # an account given to a earlier (its first email was held back), never written to
    fresh = notice(channel="email")
    async with eng.engine.begin() as conn:
        await conn.execute(
            text(f"INSERT INTO {SCHEMA}.mailbox_assignments (account_id, mailbox) VALUES (:a, :m)"),
            {"a": fresh.account_id, "m": A},
        )
    again = step(written, 2)
    await feed(eng, [fresh, again], SCHEMA)
    await run(
        eng,
        lambda st: st[fresh.notice_id]["state"] == "sent" and st[again.notice_id]["last_error"] is not None,
    )
    assert senders(gmail.url)[fresh.notice_id] == B
    assert again.notice_id not in senders(gmail.url), "an account a wrote to must not move"
    moved = (await assignments(eng))[fresh.account_id]
    assert (moved["mailbox"], moved["previous_mailbox"], moved["rehome_reason"]) == (B, A, "overflow")


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 429, "reason": "rateLimitExceeded", "retry_after_s": 3600, "mail_sending": True},
        {"status": 403, "reason": "dailyLimitExceeded", "message": "Daily Limit Exceeded"},
        {
            "status": 429,
            "reason": "rateLimitExceeded",
            "message": "User-rate limit exceeded",
            "retry_after_s": 3,
        },
    ],
    ids=["429-mail-sending", "403-daily-limit", "429-user-rate"],
)
async def test_a_refusal_of_one_mailbox_does_not_stop_the_other(
    gmail: Any, make: Callable[..., DeliveryEngine], fault: dict[str, Any]
) -> None:
    eng = make()
    firsts = [notice(channel="email") for _ in range(2)]
    for n in firsts:
        await feed(eng, [n], SCHEMA)
        await run(eng, settled(n.notice_id))
    on = {senders(gmail.url)[n.notice_id]: n for n in firsts}
    assert set(on) == {A, B}
    control(gmail.url, "POST", f"mailboxes/{A}/faults", {**fault, "next": 1})
    a_next, b_next = [step(on[A], k) for k in (2, 3)], [step(on[B], k) for k in (2, 3)]
    await feed(eng, [*a_next, *b_next], SCHEMA)
    await run(eng, settled(*(n.notice_id for n in b_next)), timeout_s=10)
    sent_from = senders(gmail.url)
    assert all(sent_from[n.notice_id] == B for n in b_next)
    st = await states(eng.engine, SCHEMA)
    assert all(st[n.notice_id]["attempts"] == 0 for n in a_next), "a refusal is not a failed attempt"
    if fault.get("retry_after_s") == 3:
        # a per-user rate: a waits seconds, then sends its own accounts' mail (never b)
        await run(eng, settled(*(n.notice_id for n in a_next)), timeout_s=15)
        assert all(senders(gmail.url)[n.notice_id] == A for n in a_next)
    else:
        # the sending limit: a is paused for every replica, its accounts wait for it (never moved to b)
        assert all(st[n.notice_id]["state"] == "queued" for n in a_next)
        assert not any(n.notice_id in sent_from for n in a_next)
        async with eng.engine.connect() as c:
            left = (
                await c.execute(
                    text(
                        f"SELECT extract(epoch FROM until - now()) FROM {SCHEMA}.route_pauses WHERE name = :n"
                    ),
                    {"n": f"gmail:{A}"},
                )
            ).scalar_one()
        assert float(left) > 600
        assert (await assignments(eng))[on[A].account_id]["mailbox"] == A
    no_duplicates(gmail.url)


async def test_a_disabled_mailbox_rehomes_its_accounts_and_still_reconciles_its_in_doubt_send(
    gmail: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    first = notice(channel="email")
    await feed(eng, [first], SCHEMA)
    await run(eng, settled(first.notice_id))
    assert senders(gmail.url)[first.notice_id] == A
    # a's next send is accepted but the answer is lost: in doubt in a
    control(
        gmail.url, "POST", "faults", {"accept_then_drop": {"next": 1, "operations": ["users.messages.send"]}}
    )
    doubt = step(first, 2)
    await feed(eng, [doubt], SCHEMA)
    await run(
        eng,
        lambda st: (
            st[doubt.notice_id]["state"] == "sending" and st[doubt.notice_id]["last_error"] is not None
        ),
        reconcile=False,  # the test reconciles it itself, in another configuration
    )
    await eng.channel.aclose()  # type: ignore[attr-defined]

    drained = make([{"address": A, "enabled": False}, {"address": B}])
    await asyncio.sleep(1.1)
    assert await drained.reconcile_in_doubt() == 1  # asked of a, found there: sent, not resent from b
    assert (await states(drained.engine, SCHEMA))[doubt.notice_id]["state"] == "sent"
    later = step(first, 3)
    await feed(drained, [later], SCHEMA)
    await run(drained, settled(later.notice_id))
    assert senders(gmail.url)[later.notice_id] == B
    row = (await assignments(drained))[first.account_id]
    assert (row["mailbox"], row["previous_mailbox"], row["rehome_reason"]) == (B, A, "disabled")
    assert ledger(gmail.url, notice_id=doubt.notice_id)["count"] == 1
    no_duplicates(gmail.url)


async def test_an_in_doubt_send_of_a_removed_mailbox_is_never_sent_from_another(
    gmail: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    first = notice(channel="email")
    await feed(eng, [first], SCHEMA)
    await run(eng, settled(first.notice_id))
    control(
        gmail.url, "POST", "faults", {"accept_then_drop": {"next": 1, "operations": ["users.messages.send"]}}
    )
    doubt = step(first, 2)
    await feed(eng, [doubt], SCHEMA)
    await run(
        eng,
        lambda st: (
            st[doubt.notice_id]["state"] == "sending" and st[doubt.notice_id]["last_error"] is not None
        ),
        reconcile=False,  # the test reconciles it itself, in another configuration
    )
    await eng.channel.aclose()  # type: ignore[attr-defined]

    without_a = make([{"address": B}])
    await asyncio.sleep(1.1)
    await without_a.reconcile_in_doubt()
    row = (await states(without_a.engine, SCHEMA))[doubt.notice_id]
    assert row["state"] == "failed" and "no longer configured" in row["last_error"]
    await run(without_a, lambda st: True)
    assert ledger(gmail.url, notice_id=doubt.notice_id)["count"] == 1
    assert ledger(gmail.url, notice_id=doubt.notice_id)["entries"][0]["details"]["mailbox"] == A
    # the account's next email goes from the pool as it is now, recorded as a re-home
    later = step(first, 3)
    await feed(without_a, [later], SCHEMA)
    await run(without_a, settled(later.notice_id))
    assert senders(gmail.url)[later.notice_id] == B
    row = (await assignments(without_a))[first.account_id]
    assert (row["mailbox"], row["previous_mailbox"], row["rehome_reason"]) == (B, A, "removed")
    no_duplicates(gmail.url)


async def test_a_single_mailbox_turned_into_a_pool_keeps_its_accounts_and_its_count(
    gmail: Any, db: str, make: Callable[..., DeliveryEngine]
) -> None:
    single = EmailSettings(
        service_name="dispatcher-email",
        database_url=db,
        gmail_api_endpoint=gmail.url,
        gmail_token="emulator-token",
        gmail_sender=A,
        gmail_rate_per_s=50.0,
    )
    before, ae = bound(build_engine(single, gate=allow_all), db, SCHEMA, "dispatcher-email")
    try:
        old = [notice(channel="email") for _ in range(3)]
        await feed(before, old, SCHEMA)
        await run(before, settled(*(n.notice_id for n in old)))
    finally:
        await before.channel.aclose()  # type: ignore[attr-defined]
        await ae.dispose()
    assert set(senders(gmail.url).values()) == {A}

    pooled = make([{"address": A, "daily_quota": 4}, {"address": B}], gmail_sender=A)
    usage = {u.mailbox.address: u.sent_24h for u in await mailbox_usage(pooled)}
    assert usage == {A: 3, B: 0}, "the sends made before the pool count against the old mailbox"
    again = [step(n, 2) for n in old]
    new = notice(channel="email")
    await feed(pooled, [*again, new], SCHEMA)
    await run(
        pooled,
        lambda st: (
            st[new.notice_id]["state"] == "sent"
            and all(st[n.notice_id]["last_error"] or st[n.notice_id]["state"] == "sent" for n in again)
        ),
    )
    sent_from = senders(gmail.url)
    assert sent_from[new.notice_id] == B  # a is the fuller one
    assert all(sent_from.get(n.notice_id, A) == A for n in again), "an old account moved mailbox"
    assert sum(n.notice_id in sent_from for n in again) == 1  # a had room for one more (quota 4)
    no_duplicates(gmail.url)


async def mailbox_usage(eng: DeliveryEngine) -> list[Any]:
    async with eng.engine.connect() as c:
        return await eng.channel.pool.usage(c, SCHEMA)  # type: ignore[attr-defined,no-any-return]


async def test_each_email_is_from_its_mailbox_with_its_display_name(
    gmail: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make(
        [{"address": A, "display_name": "Acme Billing"}, {"address": B, "display_name": "Acme Accounts"}]
    )
    notices = [notice(channel="email") for _ in range(2)]
    for n in notices:
        await feed(eng, [n], SCHEMA)
        await run(eng, settled(n.notice_id))
    for e in ledger(gmail.url)["entries"]:
        raw = e["details"]
        box = raw["mailbox"]
        assert box in raw["from"] and raw["message_id"].endswith("@arrears.test")
        assert ("Acme Billing" if box == A else "Acme Accounts") in raw["from"]
    # the stored rendering names its mailbox (a resend and an in-doubt lookup use it)
    async with eng.engine.connect() as c:
        got = {r.mailbox for r in await c.execute(text(f"SELECT mailbox FROM {SCHEMA}.deliveries"))}
    assert got == {A, B}


async def test_gmails_own_per_mailbox_limit_pauses_only_that_mailbox(
    gmail: Any, make: Callable[..., DeliveryEngine]
) -> None:
    """Our count thinks a has room, Gmail's limit for a is lower: a's first refusal pauses a, b goes on."""
    control(gmail.url, "PUT", f"mailboxes/{A}/limits", {"daily_limit": 2})
    eng = make([{"address": A, "daily_quota": 50}, {"address": B, "daily_quota": 50}])
    notices = [notice(channel="email") for _ in range(8)]
    await feed(eng, notices, SCHEMA)
    await run(eng, lambda st: sum(r["state"] == "sent" for r in st.values()) >= 6)
    for _ in range(3):
        await eng.process_batch()
    counts = per_mailbox(gmail.url)
    assert counts[A] == 2 and counts[B] >= 4, counts
    assert control(gmail.url, "GET", "mailboxes", {})[A]["sends_in_window"] == 2
    st = await states(eng.engine, SCHEMA)
    waiting = [r for r in st.values() if r["state"] == "queued"]
    assert waiting and all(r["attempts"] == 0 for r in waiting)
    assert all(
        r["last_error"].startswith(("mailbox paused", "mailbox paced", "rate_limited")) for r in waiting
    ), waiting
    no_duplicates(gmail.url)


def test_pool_settings_are_checked_and_keep_secrets_out_of_reprs() -> None:
    with pytest.raises(ValueError, match="twice"):
        EmailSettings(gmail_mailboxes=[{"address": A}, {"address": A.upper()}])
    with pytest.raises(ValueError, match="not a mailbox address"):
        EmailSettings(gmail_mailboxes=[{"address": "collections"}])
    s = EmailSettings(
        gmail_mailboxes=[{"address": A, "token": "very-secret-token"}, {"address": B, "enabled": False}]
    )
    assert s.pooled and "very-secret-token" not in repr(s) and "very-secret-token" not in str(s.model_dump())
    with pytest.raises(ValueError, match="no enabled mailbox"):
        build_engine(EmailSettings(gmail_mailboxes=[{"address": A, "enabled": False}], gmail_token="t"))
    assert not EmailSettings(gmail_sender=A).pooled  # the single mailbox of before: unchanged
