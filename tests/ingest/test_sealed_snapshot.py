"""The snapshot holds an account's personal strings (name, phone, email, notes, channel addresses) sealed with the
account's data key; what is rebuilt from it (removals, payments) carries them in clear to the outbox (which seals
them again for the topic). Rows written before sealing read as they are; an erased account's read as erased."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import pytest
from arrears_ingest.payments.models import Payment
from arrears_ingest.payments.service import record_payment
from arrears_ingest.runs.service import SheetIngestor
from arrears_ingest.snapshot import service as snapshots
from arrears_ingest.validation import ValidationConfig, validate_sheet
from arrears_ingest.validation.rows import content_hash
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.events import AccountChanged, ContactPoint
from arrears_shared.stream.transaction import transaction
from arrears_shared.vault import cipher, fields, subject_access
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from . import support
from .sheetdata import HEADER, account_row
from .test_runs_db import FakeSheet

SCHEMA = "ingest"
WA_HEADER = [*HEADER, "WhatsApp Number", "WhatsApp opt-in"]
AS_OF = datetime(2025, 3, 31, 12, 0, tzinfo=UTC)


def wa_row(i: int, number: str = "", opt_in: str = "", **overrides: str) -> list[str]:
    return [*account_row(i, **overrides), number, opt_in]


@pytest.fixture(scope="module")
def ingest_url(fresh_database_url: Callable[..., str]) -> str:
    url = fresh_database_url("ingest_sealed")
    upgrade(url, "ingest")
    return url


@pytest.fixture
async def engine(ingest_url: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(ingest_url, pool_size=4)
    async with eng.begin() as c:
        await c.execute(text(f"TRUNCATE {SCHEMA}.snapshot, {SCHEMA}.rejects, {SCHEMA}.runs, {SCHEMA}.outbox"))
        await c.execute(text(f"TRUNCATE {SCHEMA}.payments, {SCHEMA}.webhook_deliveries"))
    yield eng
    await eng.dispose()


def ingestor(engine: AsyncEngine, src: FakeSheet) -> SheetIngestor:
    return SheetIngestor(
        engine=engine,
        schema=SCHEMA,
        cfg=ValidationConfig(),
        read=src.read,
        transaction=lambda: transaction(engine, SCHEMA, "ingest"),
    )


def payment(account_id: str, amount_minor: int) -> Payment:
    return Payment(
        provider="generic",
        payment_id=f"tx-{uuid.uuid4().hex[:8]}",
        event_id=f"ev-{uuid.uuid4().hex[:8]}",
        account_id=account_id,
        amount_minor=amount_minor,
        currency="USD",
        paid_at=AS_OF,
    )


async def outbox_rows(engine: AsyncEngine) -> list[tuple[str, str]]:
    """(subject, value) of every outbox row, as stored."""
    async with engine.connect() as c:
        rows = (await c.execute(text(f"SELECT value, headers FROM {SCHEMA}.outbox ORDER BY id"))).all()
    return [(dict(r.headers)["ce_subject"], bytes(r.value).decode()) for r in rows]


def assert_sealed(stored: dict[str, object], *plaintexts: str) -> None:
    """Each personal field of the stored data is ciphertext and no plaintext occurs anywhere in it."""
    blob = json.dumps(stored, ensure_ascii=False)
    for p in plaintexts:
        assert p not in blob, f"{p!r} stored in clear"
    n = 0

    def check(v: str) -> str:
        nonlocal n
        assert cipher.is_sealed(v), f"{v!r} stored in clear"
        n += 1
        return v

    fields.apply(stored, snapshots.PERSONAL, check)
    assert n >= 1


async def test_run_seals_the_snapshot_and_events_carry_plaintext(engine: AsyncEngine) -> None:
    notes = "Spoke to Jane at 415 555 0001, pays Friday"
    src = FakeSheet(
        [WA_HEADER, wa_row(1, "+44 7911 123456", "Y", Notes=notes), wa_row(2), wa_row(3, Email="", Notes="")]
    )
    ing = ingestor(engine, src)
    assert (await ing.run("test")).created == 3
    expected = {r.account_id: r.to_data() for r in validate_sheet(src.values, ValidationConfig()).accepted}

    stored, opened = await support.stored_snapshot(engine, "ACC-000001")
    assert opened == expected["ACC-000001"]
    assert_sealed(stored, "Customer 1", "+12125550001", "customer1@example.com", "Jane", "+447911123456")
    assert all(cipher.is_sealed(stored[k]) for k in ("customer_name", "phone", "email", "notes"))
    assert cipher.is_sealed(stored["contacts"]["whatsapp"]["address"])
    # the row's event carries the same ciphertexts (sealed once for both)
    (event,) = [json.loads(v) for s, v in await outbox_rows(engine) if s == "ACC-000001"]
    assert (event["customer_name"], event["phone"], event["email"]) == (
        stored["customer_name"],
        stored["phone"],
        stored["email"],
    )
    assert event["contacts"]["sms"]["address"] == stored["phone"]
    assert event["contacts"]["whatsapp"]["address"] == stored["contacts"]["whatsapp"]["address"]
    assert stored["contacts"]["whatsapp"]["consent"] is True and stored["balance_minor"] == 1101
    for account in ("ACC-000002", "ACC-000003"):
        stored, opened = await support.stored_snapshot(engine, account)
        assert opened == expected[account]
        assert cipher.is_sealed(stored["customer_name"]) and cipher.is_sealed(stored["phone"])
    assert stored["email"] is None and stored["notes"] is None  # nothing to seal
    async with engine.connect() as c:  # what SQL reads of it stays readable (contacts/service.py)
        currencies = (
            await c.execute(text(f"SELECT DISTINCT data->>'currency' FROM {SCHEMA}.snapshot"))
        ).all()
    assert currencies == [("USD",)]

    # a removal is rebuilt from the sealed snapshot: the event has the plaintext (sealed again on the topic)
    pos, _ = await support.outbox_since(engine, 0)
    del src.values[1]
    assert (await ing.run("test")).removed == 1
    _, envs = await support.outbox_since(engine, pos)
    (removed,) = [e.data for e in envs]
    assert isinstance(removed, AccountChanged) and removed.change == "removed"
    assert (removed.customer_name, removed.phone, removed.email) == (
        "Customer 1",
        "+12125550001",
        "customer1@example.com",
    )
    assert removed.contacts["whatsapp"] == ContactPoint(address="+447911123456", consent=False)
    assert all("Customer 1" not in v for _, v in await outbox_rows(engine))


async def test_payment_reads_and_rewrites_the_sealed_snapshot(engine: AsyncEngine) -> None:
    src = FakeSheet([WA_HEADER, wa_row(4, "+44 7911 123456", "Y", Notes="call after 5")])
    ing = ingestor(engine, src)
    await ing.run("test")
    pos, _ = await support.outbox_since(engine, 0)
    async with transaction(engine, SCHEMA, "ingest") as tx:
        result = await record_payment(tx, payment("ACC-000004", 1000))
    assert result.status == "applied" and result.balance_minor == 1404 - 1000
    stored, opened = await support.stored_snapshot(engine, "ACC-000004")
    assert_sealed(stored, "Customer 4", "customer4@example.com", "call after 5", "+447911123456")
    assert (opened["customer_name"], opened["notes"], opened["balance_minor"]) == (
        "Customer 4",
        "call after 5",
        404,
    )
    # the content hash is the plaintext's, as the sheet row's would be: an unchanged sheet stays unchanged
    async with engine.connect() as c:
        stored_hash = (
            await c.execute(
                text(f"SELECT content_hash FROM {SCHEMA}.snapshot WHERE account_id = 'ACC-000004'")
            )
        ).scalar_one()
    assert stored_hash == content_hash("ACC-000004", opened)
    _, envs = await support.outbox_since(engine, pos)
    (ev,) = [e.data for e in envs]
    assert isinstance(ev, AccountChanged) and (ev.change, ev.customer_name, ev.balance_minor) == (
        "payment",
        "Customer 4",
        404,
    )
    assert ev.contacts["whatsapp"] == ContactPoint(address="+447911123456", consent=True)
    assert (await ing.run("test")).updated == 0


async def test_rows_written_before_sealing_read_as_they_are(engine: AsyncEngine) -> None:
    """An upgrade needs no backfill: a plaintext entry is used as it is and sealed when next rewritten."""
    (row,) = validate_sheet([HEADER, account_row(5)], ValidationConfig()).accepted
    async with engine.begin() as c:
        await c.execute(
            text(
                f"INSERT INTO {SCHEMA}.snapshot (account_id, content_hash, raw_hash, row_number, data, updated_at) "
                "VALUES (:a, :c, :r, 2, CAST(:d AS jsonb), now())"
            ),
            {"a": row.account_id, "c": row.content_hash, "r": row.raw_hash, "d": json.dumps(row.to_data())},
        )
    async with transaction(engine, SCHEMA, "ingest") as tx:
        assert (await record_payment(tx, payment(row.account_id, 15))).balance_minor == 1505 - 15
    stored, opened = await support.stored_snapshot(engine, row.account_id)
    assert_sealed(stored, "Customer 5", "customer5@example.com")
    assert opened["customer_name"] == "Customer 5"
    async with engine.begin() as c:
        await c.execute(
            text(f"UPDATE {SCHEMA}.snapshot SET data = CAST(:d AS jsonb) WHERE account_id = :a"),
            {"a": row.account_id, "d": json.dumps(row.to_data())},
        )
        (removed,) = await snapshots.delete_rows(c, SCHEMA, [row.account_id])
    assert removed[3] == row.to_data()


async def test_erased_account_reads_as_erased_and_nothing_is_addressed_to_it(engine: AsyncEngine) -> None:
    src = FakeSheet([WA_HEADER, wa_row(6, "+44 7911 123456", "Y"), wa_row(7)])
    ing = ingestor(engine, src)
    await ing.run("test")
    async with engine.begin() as c:
        assert await subject_access.erase(c, "ACC-000006", "test")
    stored, opened = await support.stored_snapshot(engine, "ACC-000006")
    assert opened["customer_name"] == cipher.ERASED
    assert (opened["phone"], opened["email"], opened["notes"]) == (None, None, None)
    assert opened["contacts"]["whatsapp"] == {"address": None, "consent": False}
    # a payment still applies (the money is recorded), and the snapshot stays unreadable
    async with transaction(engine, SCHEMA, "ingest") as tx:
        assert (await record_payment(tx, payment("ACC-000006", 6))).status == "applied"
    stored, opened = await support.stored_snapshot(engine, "ACC-000006")
    assert_sealed(stored, "Customer 6", "+447911123456")
    assert opened["customer_name"] == cipher.ERASED and opened["phone"] is None
    # its removal is announced without a single address (and sealed with a key nobody holds)
    async with engine.connect() as c:
        (pos,) = (await c.execute(text(f"SELECT coalesce(max(id), 0) FROM {SCHEMA}.outbox"))).one()
    del src.values[1]
    assert (await ing.run("test")).removed == 1
    async with engine.connect() as c:
        rows = (await c.execute(text(f"SELECT value FROM {SCHEMA}.outbox WHERE id > :p"), {"p": pos})).all()
    (value,) = [json.loads(bytes(r.value)) for r in rows]
    assert value["account_id"] == "ACC-000006" and value["change"] == "removed"
    assert value["phone"] is None and value["email"] is None
    assert all(c["address"] is None for c in value["contacts"].values())
    assert cipher.open_value(None, "ACC-000006", value["customer_name"]) == cipher.ERASED


def test_sealing_covers_the_personal_paths_and_opening_without_a_key_drops_every_address() -> None:
    values = [WA_HEADER, wa_row(8, "+44 7911 123456", "Y", Notes="n")]
    (row,) = validate_sheet(values, ValidationConfig()).accepted
    aead = AESGCM(AESGCM.generate_key(256))
    plain = row.to_data()
    sealed = snapshots.seal_data(aead, row.account_id, row.to_data())
    # the unrolled sealing is seal_fields' (every personal path, nothing else)
    found: list[str] = []
    fields.apply(sealed, snapshots.PERSONAL, lambda v: found.append(v) or v)
    assert len(found) == 5 and all(cipher.is_sealed(v) for v in found)
    personal = ("customer_name", "phone", "email", "notes", "contacts")
    assert {k: v for k, v in sealed.items() if k not in personal} == {
        k: v for k, v in plain.items() if k not in personal
    }
    assert (
        snapshots.open_data({row.account_id: aead}, row.account_id, json.loads(json.dumps(sealed))) == plain
    )
    erased = snapshots.open_data({}, row.account_id, json.loads(json.dumps(sealed)))
    event = snapshots.removed_event(row.account_id, 2, row.content_hash, erased, AS_OF)
    assert event.customer_name == cipher.ERASED and event.phone is None and event.email is None
    assert all(c.address is None and not c.consent for c in event.contacts.values())
