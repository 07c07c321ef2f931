"""`arrears vault seal-existing`: rows written before sealing was on get sealed with their account's key, their
blind indexes filled as the services compute them; an erased account's legacy plaintext becomes unreadable; a
second run seals nothing. Real PostgreSQL, every service's migrations."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

from arrears_cli.__main__ import app as cli_app
from arrears_console.readmodels.service import accounts as console_accounts
from arrears_responses.contacts.lookup import find_contact
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade_all
from arrears_shared.delivery.sealing import address_index as delivery_index
from arrears_shared.stream.transaction import Transaction
from arrears_shared.vault import cipher, subject_access
from arrears_shared.vault.backfill import seal_existing, sealed_columns
from arrears_shared.vault.keys import vault
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection
from typer.testing import CliRunner

LIVE, GONE = "BF-LIVE-1", "BF-GONE-2"
NAME, PHONE, EMAIL = "Annabel Smithers", "+14155550142", "annabel@example.com"
T0 = datetime(2026, 11, 1, tzinfo=UTC)


async def _legacy_rows(conn: AsyncConnection) -> None:
    """Plaintext rows as a release before sealing wrote them (no blind indexes)."""
    for acc, name in ((LIVE, NAME), (GONE, "Gone Person")):
        await conn.execute(
            text(
                """INSERT INTO console.accounts (account_id, customer_name, balance_minor, currency, due_date,
                    status, source, sms_consent, email_consent, as_of, phone, email)
                VALUES (:a, :n, 1000, 'USD', :d, 'open', 'sheet', true, true, :t, :p, :e)"""
            ),
            {"a": acc, "n": name, "d": date(2026, 10, 1), "t": T0, "p": PHONE, "e": EMAIL},
        )
        await conn.execute(
            text(
                """INSERT INTO segmenter.accounts (account_id, customer_name, pause_reason, send_now,
                    first_seen_at, last_event_at)
                VALUES (:a, :n, 'asked for a week', CAST(:so AS jsonb), :t, :t)"""
            ),
            {"a": acc, "n": name, "t": T0, "so": json.dumps({"reason": "called, wants it now", "by": "x"})},
        )
        await conn.execute(
            text(
                "INSERT INTO segmenter.account_channels (account_id, channel, address) VALUES (:a, 'sms', :p)"
            ),
            {"a": acc, "p": PHONE},
        )
        await conn.execute(
            text(
                """INSERT INTO escalation.notes (account_id, author, body, created_at)
                VALUES (:a, 'ops', 'spoke to Annabel, pays Friday', :t)"""
            ),
            {"a": acc, "t": T0},
        )
        await conn.execute(
            text(
                """INSERT INTO escalation.activity (id, account_id, at, kind, summary, data)
                VALUES (:i, :a, :t, 'message_in', 'reply', CAST(:d AS jsonb))"""
            ),
            {"i": f"act-{acc}", "a": acc, "t": T0, "d": json.dumps({"text": "I will pay Friday", "n": 1})},
        )
        await conn.execute(
            text(
                """INSERT INTO dispatcher_sms.deliveries (notice_id, account_id, channel, to_address, payload,
                    rendered)
                VALUES (:n, :a, 'sms', :p, CAST(:pl AS jsonb), CAST(:r AS jsonb))"""
            ),
            {
                "n": f"n-{acc}",
                "a": acc,
                "p": PHONE,
                "pl": json.dumps(
                    {"to": PHONE, "customer_name": name, "fallback_to": {"email": EMAIL}, "step": 1}
                ),
                "r": json.dumps({"type": "sms", "content": f"Hi {name}, please pay"}),
            },
        )
        await conn.execute(
            text(
                """INSERT INTO dispatcher_sms.invalid_channels (account_id, channel, address, reason)
                VALUES (:a, 'sms', :p, 'unreachable')"""
            ),
            {"a": acc, "p": PHONE},
        )
    # the contact index: one row per address; the number twice, written differently (one blind index)
    contacts = [
        ("sms", "14155550100", LIVE, T0),
        ("sms", "+14155550100", LIVE, T0 + timedelta(days=1)),  # the later send wins
        ("email", EMAIL, LIVE, T0),
        ("sms", "+14155550199", GONE, T0),
    ]
    for ch, ad, acc, at in contacts:
        await conn.execute(
            text(
                """INSERT INTO responses.contacts (channel, address, account_id, notice_id, sent_at)
                VALUES (:c, :ad, :a, :n, :t)"""
            ),
            {"c": ch, "ad": ad, "a": acc, "n": f"n-{acc}-{at.day}", "t": at},
        )
    # an unmatched reply (no account: no key) stays as it is
    await conn.execute(
        text(
            """INSERT INTO responses.replies (reply_id, channel, from_address, text, intent, confidence, received_at)
            VALUES ('r-unmatched', 'sms', '+15550001111', 'who is this', 'other', 0.5, :t)"""
        ),
        {"t": T0},
    )


async def _raw(conn: AsyncConnection, sql: str, **params: Any) -> Any:
    return (await conn.execute(text(sql), params)).scalar_one()


async def test_seal_existing_seals_legacy_rows_and_fills_blind_indexes(fresh_database_url) -> None:  # type: ignore[no-untyped-def]
    url = fresh_database_url("backfill")
    await asyncio.to_thread(upgrade_all, url)
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            await _legacy_rows(conn)
        async with engine.begin() as conn:
            await vault().for_writing(conn, [LIVE])  # the live account already has a key; GONE gets one now
        async with engine.begin() as conn:
            assert await subject_access.erase(conn, GONE, "test")

        async with engine.connect() as conn:
            counts = await seal_existing(conn, batch=2)  # small batches: several transactions per column
        assert counts["console.accounts.customer_name"] == 2
        assert counts["segmenter.accounts.send_now"] == 2
        assert counts["dispatcher_sms.deliveries.rendered"] == 2
        assert counts["escalation.activity.data"] == 2
        # four sealed, then the older of the two rows of one number dropped (below)
        assert counts["responses.contacts.address"] == 4
        assert counts["responses.replies.text"] == 0  # the unmatched reply has no key
        assert "responses.replies.from_address" in counts and "ingest.snapshot.data" in counts
        assert all(
            n == 0 for k, n in counts.items() if k.startswith(("dispatcher_email.", "dispatcher_whatsapp."))
        )

        async with engine.connect() as conn:
            # nothing of a live or erased account is in clear any more, in any listed column
            for s in sealed_columns():
                if s.kind != "text":
                    continue
                left = await _raw(
                    conn,
                    f"SELECT count(*) FROM {s.schema}.{s.table} WHERE account_id IS NOT NULL"
                    f" AND {s.column} <> '' AND {s.column} NOT LIKE 'pii1:%'",
                )
                assert left == 0, s.name
            dump = json.dumps(
                [
                    await _raw(conn, "SELECT json_agg(t) FROM console.accounts t"),
                    await _raw(conn, "SELECT json_agg(t) FROM segmenter.accounts t"),
                    await _raw(conn, "SELECT json_agg(t) FROM segmenter.account_channels t"),
                    await _raw(conn, "SELECT json_agg(t) FROM escalation.notes t"),
                    await _raw(conn, "SELECT json_agg(t) FROM escalation.activity t"),
                    await _raw(conn, "SELECT json_agg(t) FROM dispatcher_sms.deliveries t"),
                    await _raw(conn, "SELECT json_agg(t) FROM dispatcher_sms.invalid_channels t"),
                    await _raw(conn, "SELECT json_agg(t) FROM responses.contacts t"),
                ]
            )
            for plain in (
                NAME,
                "Gone Person",
                PHONE,
                EMAIL,
                "5550100",
                "5550199",
                "Friday",
                "a week",
                "wants it",
            ):
                assert plain not in dump, plain
            assert await _raw(conn, "SELECT text FROM responses.replies WHERE reply_id = 'r-unmatched'") == (
                "who is this"
            )

            # the live account's values open to the originals with its key
            keys = await vault().for_reading(conn, [LIVE, GONE])
            k = keys[LIVE]
            row = (
                await conn.execute(text("SELECT * FROM console.accounts WHERE account_id = :a"), {"a": LIVE})
            ).one()
            assert cipher.is_sealed(row.customer_name) and cipher.is_sealed(row.phone)
            assert [cipher.open_value(k, LIVE, v) for v in (row.customer_name, row.phone, row.email)] == [
                NAME,
                PHONE,
                EMAIL,
            ]
            seg = (
                await conn.execute(
                    text("SELECT * FROM segmenter.accounts WHERE account_id = :a"), {"a": LIVE}
                )
            ).one()
            assert cipher.open_value(k, LIVE, seg.pause_reason) == "asked for a week"
            assert cipher.open_fields(k, LIVE, seg.send_now, ("reason",)) == {
                "reason": "called, wants it now",
                "by": "x",
            }
            d = (
                await conn.execute(
                    text("SELECT * FROM dispatcher_sms.deliveries WHERE account_id = :a"), {"a": LIVE}
                )
            ).one()
            assert cipher.open_value(k, LIVE, d.to_address) == PHONE
            assert d.payload["step"] == 1 and cipher.is_sealed(d.payload["fallback_to"]["email"])
            assert cipher.open_fields(k, LIVE, d.payload, ("to", "customer_name", "fallback_to.*"))[
                "fallback_to"
            ] == {"email": EMAIL}
            assert d.rendered["type"] == "sms" and cipher.open_value(
                k, LIVE, d.rendered["content"]
            ).startswith("Hi ")
            act = await _raw(conn, "SELECT data FROM escalation.activity WHERE account_id = :a", a=LIVE)
            assert act["n"] == 1 and cipher.open_value(k, LIVE, act["text"]) == "I will pay Friday"

            # blind indexes as the services compute them: console search, contact lookup, invalid channels
            found = await console_accounts(
                conn, "console", date(2026, 12, 1), bucket=None, q="annab smi", limit=10
            )
            assert [a.account_id for a in found.items] == [LIVE] and found.items[0].customer_name == NAME
            for q in ("555 0142", "example.com", EMAIL):
                hits = await console_accounts(conn, "console", date(2026, 12, 1), bucket=None, q=q, limit=10)
                assert [a.account_id for a in hits.items] == [LIVE], q
            inv = (
                await conn.execute(
                    text("SELECT account_id, address_bidx FROM dispatcher_sms.invalid_channels")
                )
            ).all()
            assert dict(inv) == {LIVE: delivery_index("sms", PHONE), GONE: None}

        async with engine.begin() as conn:
            tx = Transaction(conn, "responses", "responses")
            contact = await find_contact(tx, "sms", "+14155550100")
            assert contact is not None and contact.account_id == LIVE and contact.notice_id == f"n-{LIVE}-2"
            assert (await find_contact(tx, "email", EMAIL)).account_id == LIVE
            assert await find_contact(tx, "sms", "+14155550199") is None
            rows = (await conn.execute(text("SELECT account_id, address_bidx FROM responses.contacts"))).all()
            assert sorted(r.account_id for r in rows) == [GONE, LIVE, LIVE]
            assert [r.address_bidx for r in rows if r.account_id == GONE] == [None]

            # the erased account: sealed with a throw-away key, its legacy plaintext now reads "[erased]"
            gone = (
                await conn.execute(text("SELECT * FROM console.accounts WHERE account_id = :a"), {"a": GONE})
            ).one()
            gkey = (await vault().for_reading(conn, [GONE]))[GONE]
            assert gkey is None
            assert cipher.open_value(gkey, GONE, gone.customer_name) == cipher.ERASED
            assert (gone.name_bidx, gone.phone_bidx, gone.email_bidx) == ([], [], [])
            note = await _raw(conn, "SELECT body FROM escalation.notes WHERE account_id = :a", a=GONE)
            assert cipher.is_sealed(note) and cipher.open_value(gkey, GONE, note) == cipher.ERASED
            hits = await console_accounts(
                conn, "console", date(2026, 12, 1), bucket=None, q="Person", limit=10
            )
            assert hits.items == []

        # a second run (the command an operator runs) seals nothing
        out = await asyncio.to_thread(
            CliRunner().invoke, cli_app, ["vault", "seal-existing", "--batch", "3", "--database-url", url]
        )
        assert out.exit_code == 0, out.output
        assert "console.accounts.customer_name: 0" in out.output and "total: 0 row(s) sealed" in out.output
    finally:
        await engine.dispose()
