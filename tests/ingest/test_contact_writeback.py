"""Contact facts written back to the PME sheet (issue 6, point 3): the ingest service in-process consuming
`message-sent` / `reply-received` from the real broker, its facts in real PostgreSQL, and the write-back
through gspread to the Sheets emulator over HTTP.

- the cells (Last Contact, Last Reply, Intent, Promise) show each account's newest facts, whatever order
  the events arrive in; missing columns are added after the last header;
- a burst of 1,000 accounts' events reaches the sheet in a couple of `values:batchUpdate` calls;
- while the sheet answers 429 the facts stay pending (the client backs off and retries, the queue replays);
  when the quota returns every fact is written, the newest ones, nothing lost.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from arrears_emulators.sheets import SheetsEmulatorConfig, create_app
from arrears_ingest.__main__ import definition
from arrears_ingest.settings import IngestSettings
from arrears_ingest.validation import column_aliases
from arrears_ingest.validation.columns import check_writeback_headers
from arrears_ingest.writeback.scheduled import replay_writebacks
from arrears_shared.cloudevents import encode
from arrears_shared.events import (
    Channel,
    DeliveryStatus,
    Event,
    Intent,
    MessageSent,
    ReplyReceived,
    Tier,
)
from arrears_shared.service import Context, ServiceHost
from prometheus_client import generate_latest
from sqlalchemy import text

from .sheetdata import HEADER, account_row
from .support import ServerThread, SheetsEmulator, fast_settings

SID = f"cw{uuid.uuid4().hex[:8]}"
T0 = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
FACTS = ["Last Contact", "Last Reply", "Intent", "Promise"]
# reads are not what these tests are about: a generous read quota, Google's write quota (60/min/user)
BATCH_UPDATE = "spreadsheets.values.batchUpdate"
READS = {"read_requests_per_minute_per_user": 5000, "read_requests_per_minute_per_project": 5000}


def rows_for(prefix: str, n: int) -> list[list[str]]:
    return [HEADER, *(account_row(i, **{"Account ID": f"{prefix}{i}"}) for i in range(1, n + 1))]


@pytest.fixture(scope="module")
def emulator() -> Iterator[SheetsEmulator]:
    server = ServerThread(create_app(SheetsEmulatorConfig())).start()
    try:
        with httpx.Client(base_url=server.url, timeout=30) as control:
            emu = SheetsEmulator(url=server.url, control=control)
            emu.limits(**READS)
            yield emu
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def service(
    broker: Any, fresh_database_url: Callable[..., str], emulator: SheetsEmulator
) -> AsyncIterator[ServiceHost]:
    emulator.load(SID, {"Accounts": rows_for("C-", 6)})
    settings = fast_settings(
        broker.bootstrap_servers,
        fresh_database_url("ingest_contacts"),
        emulator.url,
        SID,
        outbox_poll_s=0.05,
        sheets_writes_per_minute=600,
        ingest_writeback_retry_s=0.5,
        ingest_writeback_contact_delay_s=1.0,
        ingest_writeback_contact_interval_s=0,
        ingest_validation_workers=0,
    )
    host = ServiceHost(definition(settings))
    host.build_app()
    await host.start()
    try:
        await wait_for(lambda: _writeback_idle(host), what="the start-up poll and its write-back")
        yield host
    finally:
        await host.stop()


@pytest.fixture
async def producer(broker: Any) -> AsyncIterator[AIOKafkaProducer]:
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=5)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


async def publish(p: AIOKafkaProducer, events: Sequence[Event]) -> None:
    futures = []
    for ev in events:
        rec = encode(ev, source="test", id=f"t-{uuid.uuid4().hex}")
        futures.append(await p.send(rec.topic, value=rec.value, key=rec.key, headers=rec.headers))
    await p.flush()
    for f in futures:
        await f


def sent(
    aid: str, at: datetime, channel: Channel = "sms", status: DeliveryStatus = DeliveryStatus.SENT
) -> MessageSent:
    return MessageSent(
        account_id=aid,
        notice_id=f"{aid}:default:v1:s1:c0:{channel}:{at.timestamp():.0f}",
        channel=channel,
        status=status,
        provider="quo" if channel == "sms" else "gmail",
        to="+14155550100" if channel == "sms" else "x@example.com",
        tier=Tier.REMINDER,
        step=1,
        reason="mailbox full" if status is DeliveryStatus.FAILED else None,
        sent_at=at,
    )


def reply(
    aid: str,
    at: datetime,
    intent: Intent,
    *,
    amount: int | None = None,
    on: date | None = None,
    channel: Channel = "sms",
) -> ReplyReceived:
    return ReplyReceived(
        account_id=aid,
        reply_id=f"r-{uuid.uuid4().hex}",
        channel=channel,
        from_address="+14155550100",
        text="...",
        intent=intent,
        confidence=0.9,
        promise_amount_minor=amount,
        promise_date=on,
        received_at=at,
    )


async def wait_for(check: Callable[[], Any], within_s: float = 45.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + within_s
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def pending(host: ServiceHost) -> tuple[int, int]:
    """(queued outcomes, accounts whose contact facts the sheet does not show yet)."""
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        outcomes = (await c.execute(text("SELECT count(*) FROM ingest.writeback"))).scalar_one()
        facts = (
            await c.execute(text("SELECT count(*) FROM ingest.contact_facts WHERE version > written_version"))
        ).scalar_one()
    return int(outcomes), int(facts)


async def _writeback_idle(host: ServiceHost) -> bool:
    return await pending(host) == (0, 0)


async def consumed(host: ServiceHost, n_events: int, mark: int) -> bool:
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        n = (await c.execute(text("SELECT count(*) FROM ingest.inbox"))).scalar_one()
    return int(n) >= mark + n_events


async def inbox_size(host: ServiceHost) -> int:
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        return int((await c.execute(text("SELECT count(*) FROM ingest.inbox"))).scalar_one())


async def fact_versions(host: ServiceHost) -> dict[str, int]:
    assert host.ctx is not None
    async with host.ctx.engine.connect() as c:
        rows = (await c.execute(text("SELECT account_id, version FROM ingest.contact_facts"))).all()
    return {a: v for a, v in rows}


def fact_cells(emulator: SheetsEmulator) -> tuple[list[str], dict[str, list[str]]]:
    values: list[list[str]] = emulator.dump(SID)["sheets"]["Accounts"]  # type: ignore[index]
    header = values[0]
    pos = [header.index(h) if h in header else None for h in FACTS]
    out: dict[str, list[str]] = {}
    for row in values[1:]:
        pad = [*row, *[""] * (len(header) - len(row))]
        out[pad[0]] = ["" if p is None else str(pad[p]) for p in pos]
    return header, out


async def settled(host: ServiceHost, n_events: int, mark: int) -> bool:
    return await consumed(host, n_events, mark) and await _writeback_idle(host)


# -- the cells show the newest facts ---------------------------------------------------------------------------


async def test_newest_facts_reach_the_sheet_whatever_the_order(
    service: ServiceHost, emulator: SheetsEmulator, producer: AIOKafkaProducer
) -> None:
    host = service
    mark = await inbox_size(host)
    events: list[Event] = [
        # C-1: an SMS, then a promise to pay an hour later ...
        sent("C-1", T0),
        reply("C-1", T0 + timedelta(hours=1), Intent.PROMISE_TO_PAY, amount=20_000, on=date(2026, 5, 15)),
        # ... and facts that are older, arriving after them: ignored
        sent("C-1", T0 - timedelta(days=3), "email"),
        reply("C-1", T0 - timedelta(days=2), Intent.DISPUTE),
        # C-2: the newest attempt failed (email); the older SMS was sent
        sent("C-2", T0 - timedelta(days=1)),
        sent("C-2", T0 + timedelta(minutes=5), "email", DeliveryStatus.FAILED),
        # C-3: suppressed by the last-moment gate: nothing left us, no contact
        sent("C-3", T0, status=DeliveryStatus.SUPPRESSED),
        # C-4: a reply with no contact recorded yet (the message-sent may come later)
        reply("C-4", T0 + timedelta(minutes=30), Intent.CALLBACK_REQUEST, channel="email"),
        # an account that is not in the sheet: kept, never blocks the rest
        sent("NOT-IN-SHEET", T0),
    ]
    await publish(producer, events)
    await wait_for(lambda: settled(host, len(events), mark), what="the facts written back")

    header, cells = fact_cells(emulator)
    assert header[-4:] == FACTS, header  # added after the last header, in this order
    assert cells["C-1"] == [
        "2026-05-04 14:00 UTC, sms, sent",
        "2026-05-04 15:00 UTC, sms",
        "promise_to_pay",
        "200.00 USD by 2026-05-15",
    ]
    assert cells["C-2"] == ["2026-05-04 14:05 UTC, email, failed", "", "", ""]
    assert cells["C-3"] == ["", "", "", ""]
    assert cells["C-4"] == ["", "2026-05-04 14:30 UTC, email", "callback_request", ""]
    assert cells["C-5"] == ["", "", "", ""]
    assert "NOT-IN-SHEET" not in cells
    assert emulator.dump(SID)["sheets"]["Accounts"][1][HEADER.index("Arrears Status")] == "accepted"  # type: ignore[index]

    # later: C-1 says something else (the promise stays: only a newer promise replaces it); an old contact
    # arrives for C-4 and a newer one for C-2; a stale reply for C-1 changes nothing
    writes = emulator.stats()["by_method"].get(BATCH_UPDATE, 0)  # type: ignore[union-attr]
    mark = await inbox_size(host)
    later: list[Event] = [
        reply("C-1", T0 + timedelta(days=1), Intent.OTHER),
        reply("C-1", T0 + timedelta(hours=2), Intent.HARDSHIP),
        sent("C-4", T0 - timedelta(days=9), "email"),
        sent("C-2", T0 + timedelta(days=1, hours=1)),
    ]
    await publish(producer, later)
    await wait_for(lambda: settled(host, len(later), mark), what="the later facts written back")
    _, cells = fact_cells(emulator)
    assert cells["C-1"] == [
        "2026-05-04 14:00 UTC, sms, sent",
        "2026-05-05 14:00 UTC, sms",
        "other",
        "200.00 USD by 2026-05-15",
    ]
    assert cells["C-2"][0] == "2026-05-05 15:00 UTC, sms, sent"
    assert cells["C-4"][:2] == ["2026-04-25 14:00 UTC, email, sent", "2026-05-04 14:30 UTC, email"]
    stats: dict[str, Any] = emulator.stats()  # type: ignore[assignment]
    assert stats["by_method"][BATCH_UPDATE] - writes <= 2

    # replaying only stale facts changes nothing: no version moves, no write request
    versions = await fact_versions(host)
    mark = await inbox_size(host)
    stale: list[Event] = [sent("C-1", T0 - timedelta(days=5)), reply("C-4", T0, Intent.OTHER)]
    await publish(producer, stale)
    await wait_for(lambda: consumed(host, len(stale), mark), what="the stale facts consumed")
    await asyncio.sleep(1.5)
    assert await fact_versions(host) == versions
    assert emulator.stats()["by_method"][BATCH_UPDATE] == stats["by_method"][BATCH_UPDATE]  # type: ignore[index]


# -- a burst: few batch calls ----------------------------------------------------------------------------------


async def test_a_burst_of_1000_accounts_is_written_in_a_few_batch_calls(
    service: ServiceHost, emulator: SheetsEmulator, producer: AIOKafkaProducer
) -> None:
    host = service
    n = 1000
    rows = rows_for("B-", n)
    rows[0] = [*rows[0], *FACTS]  # the columns exist this time (and the flush writes no header)
    emulator.load(SID, {"Accounts": rows})
    before: dict[str, Any] = emulator.stats()  # type: ignore[assignment]
    mark = await inbox_size(host)
    events: list[Event] = []
    for i in range(1, n + 1):
        events.append(sent(f"B-{i}", T0 + timedelta(seconds=i), "email"))
        if i % 2 == 0:
            events.append(
                reply(f"B-{i}", T0 + timedelta(hours=1, seconds=i), Intent.PROMISE_TO_PAY, amount=i * 100)
            )
    await publish(producer, events)
    await wait_for(lambda: settled(host, len(events), mark), within_s=90, what="the burst written back")
    after: dict[str, Any] = emulator.stats()  # type: ignore[assignment]
    calls = after["by_method"].get(BATCH_UPDATE, 0) - before["by_method"].get(BATCH_UPDATE, 0)
    assert 1 <= calls <= 4, f"{calls} values:batchUpdate calls for {n} accounts"
    assert after["throttled"] == before["throttled"]
    header, cells = fact_cells(emulator)
    assert header[-4:] == FACTS and len(header) == len(HEADER) + 4  # found, not added again
    for i in (1, 2, 500, 999, 1000):
        when = T0 + timedelta(seconds=i)
        assert cells[f"B-{i}"][0] == f"{when:%Y-%m-%d %H:%M} UTC, email, sent", i
        if i % 2 == 0:
            assert cells[f"B-{i}"][2:] == ["promise_to_pay", f"{i:.2f} USD"], i
        else:
            assert cells[f"B-{i}"][1:] == ["", "", ""], i
    assert all(c[0] for c in cells.values()), "an account's contact is missing"


# -- 429: retried, nothing lost ---------------------------------------------------------------------------------


async def test_quota_exhaustion_is_retried_and_nothing_is_lost(
    service: ServiceHost, emulator: SheetsEmulator, producer: AIOKafkaProducer
) -> None:
    host = service
    emulator.load(SID, {"Accounts": rows_for("Q-", 20)})
    emulator.limits(**READS, write_requests_per_minute_per_user=0)  # every write answers 429
    try:
        mark = await inbox_size(host)
        first = [sent(f"Q-{i}", T0 + timedelta(minutes=i)) for i in range(1, 21)]
        await publish(producer, first)
        await wait_for(lambda: consumed(host, len(first), mark), what="the events consumed")
        await wait_for(
            lambda: _throttled(emulator, 6), what="writes refused with 429 and retried (backoff + replay)"
        )
        assert (await pending(host))[1] == 20  # nothing written, nothing dropped
        metrics = (await _metrics(host)).splitlines()
        assert "arrears_ingest_writeback_pending 20.0" in metrics
        # more facts arrive while the sheet refuses writes: folded into the pending ones
        mark = await inbox_size(host)
        more: list[Event] = [
            reply(f"Q-{i}", T0 + timedelta(hours=1), Intent.PROMISE_TO_PAY, on=date(2026, 6, 1))
            for i in (3, 4)
        ]
        more.append(sent("Q-5", T0 + timedelta(days=1), "email"))
        await publish(producer, more)
        await wait_for(lambda: consumed(host, len(more), mark), what="the later events consumed")
        assert (await pending(host))[1] == 20
        _, cells = fact_cells(emulator)
        assert all(c == ["", "", "", ""] for c in cells.values())
    finally:
        emulator.limits(**READS)  # Google's default write quota again
    await wait_for(lambda: _writeback_idle(host), what="the replayed write-back")
    _, cells = fact_cells(emulator)
    for i in range(1, 21):
        want = T0 + (timedelta(days=1) if i == 5 else timedelta(minutes=i))
        channel = "email" if i == 5 else "sms"
        assert cells[f"Q-{i}"][0] == f"{want:%Y-%m-%d %H:%M} UTC, {channel}, sent", i
    assert cells["Q-3"][1:] == ["2026-05-04 15:00 UTC, sms", "promise_to_pay", "by 2026-06-01"]
    assert cells["Q-4"][3] == "by 2026-06-01" and cells["Q-6"][1:] == ["", "", ""]


async def _throttled(emulator: SheetsEmulator, at_least: int) -> bool:
    return int(emulator.stats()["throttled_writes"]) >= at_least  # type: ignore[arg-type]


async def _metrics(host: ServiceHost) -> str:
    """What the service's /metrics shows (the process-wide registry)."""
    return generate_latest().decode()


# -- configuration -----------------------------------------------------------------------------------------------


def test_contact_columns_merge_over_the_defaults_and_must_not_name_data_columns() -> None:
    s = IngestSettings(
        sheets_spreadsheet_id="x", ingest_writeback_contact_columns={"promise": "", "intent": "Intención"}
    )
    assert s.contact_columns() == {
        "last_contact": "Last Contact",
        "last_reply": "Last Reply",
        "intent": "Intención",
    }
    assert IngestSettings(sheets_spreadsheet_id="x", ingest_writeback=False).contact_columns() == {}
    assert IngestSettings().contact_columns() == {}  # no sheet: nothing to write back to
    check_writeback_headers(["Last Contact", "Last Reply", "Intent", "Promise"])
    for bad in (["Status"], ["last contact", "Last_Contact"], ["Phone Number"]):
        with pytest.raises(ValueError):
            check_writeback_headers(bad)
    with pytest.raises(ValueError, match="Amount Owed"):
        check_writeback_headers(["Amount Owed"], column_aliases({"Amount Owed": "Balance"}))


async def test_a_steady_trickle_of_facts_is_flushed_at_a_bounded_rate() -> None:
    """The replay loop itself (no sheet): facts arriving every 20 ms for 1.2 s, flushes at least 0.4 s
    apart after a 0.1 s gathering delay -> a handful of flushes, not one per event, and the last facts
    are flushed too."""
    settings = IngestSettings(
        sheets_spreadsheet_id="x",
        ingest_writeback_retry_s=30,
        ingest_writeback_contact_delay_s=0.1,
        ingest_writeback_contact_interval_s=0.4,
    )
    flushes: list[float] = []

    class FakeWriteBack:
        woken = asyncio.Event()
        facts = 0

        async def pending(self) -> int:
            return self.facts

        async def flush_quietly(self) -> None:
            flushes.append(time.monotonic())
            self.facts = 0

    class NotRunning:
        running = False

    wb = FakeWriteBack()
    stopping = asyncio.Event()
    ctx = Context(
        settings,
        "ingest",
        "ingest",
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        None,  # type: ignore[arg-type]
        stopping,
        {"sheet_writeback": wb, "sheet_ingestor": NotRunning()},
    )
    loop = asyncio.create_task(replay_writebacks(ctx))
    start = time.monotonic()
    while time.monotonic() - start < 1.2:
        wb.facts += 1
        wb.woken.set()
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.6)
    stopping.set()
    await asyncio.wait_for(loop, 5)
    assert 2 <= len(flushes) <= 5, flushes
    assert all(b - a >= 0.39 for a, b in itertools.pairwise(flushes)), flushes
    assert wb.facts == 0  # what arrived last was flushed as well
