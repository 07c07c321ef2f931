"""Personal fields never travel in clear, and erasing an account makes every copy of them unreadable: the
topic, the outbox and a dead-letter replay. Real broker, real PostgreSQL, the real runner and relay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import replace

from arrears_cli.__main__ import app as cli_app
from arrears_shared import telemetry as m
from arrears_shared.cloudevents import Envelope, InvalidEvent, decode, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.db.migrate import upgrade
from arrears_shared.stream.relay import OutboxRelay, make_producer
from arrears_shared.stream.runner import StreamRunner
from arrears_shared.stream.transaction import Transaction, transaction
from arrears_shared.vault.keys import vault
from backbone.factories import account_changed
from backbone.support import (
    consume_all,
    create_schema,
    create_topics,
    open_record,
    produce,
    scalar,
    settings,
    unique,
    wait_until,
)
from sqlalchemy import text
from typer.testing import CliRunner


def _eq(coro, want):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return (await coro) == want

    return check()


async def test_personal_fields_are_sealed_on_the_topic_and_unreadable_after_erasure(broker, pg) -> None:
    url = pg.create_database(unique("db"))
    await asyncio.to_thread(upgrade, url, "console")  # the erase command audits in the console's log
    producer_schema, consumer_schema = unique("src"), unique("dst")
    topic, group = unique("t"), unique("g")
    await create_topics(broker.bootstrap_servers, [topic])
    await create_schema(url, producer_schema)
    await create_schema(url, consumer_schema)
    s = settings(broker.bootstrap_servers, url)
    engine = make_engine(url)

    # a producer emits two accounts' events through its outbox; the relay publishes them
    ev1, ev2 = account_changed(1), account_changed(2)
    async with transaction(engine, producer_schema, "t") as tx:
        for ev in (ev1, ev2):
            rec = encode(ev, source="t", id=f"e-{ev.account_id}")
            tx.records.append(replace(rec, topic=topic))
    outbox_values = [
        bytes(v) for (v,) in (await _rows(url, f"SELECT value FROM {producer_schema}.outbox ORDER BY id"))
    ]
    assert len(outbox_values) == 2
    for raw, ev in zip(outbox_values, (ev1, ev2), strict=True):
        assert ev.customer_name.encode() not in raw and ev.email.encode() not in raw  # type: ignore[union-attr]
        assert ev.phone.encode() not in raw  # type: ignore[union-attr]
        assert json.loads(raw)["balance_minor"] == ev.balance_minor  # what is not personal stays readable

    producer = make_producer(s, "t")
    await producer.start()
    relay = OutboxRelay(engine=engine, schema=producer_schema, producer=producer, settings=s, service="t")
    rtask = asyncio.create_task(relay.run())
    on_topic = await consume_all(broker.bootstrap_servers, topic, expect=2)
    relay.stop()
    await rtask
    await producer.stop()
    assert {r.value for r in on_topic} == set(outbox_values)
    try:
        decode(on_topic[0].headers, on_topic[0].value)  # without the vault's key: nothing to read
        raise AssertionError("a sealed record decoded without its key")
    except InvalidEvent as e:
        assert "no data key" in str(e)

    # a consumer gets the plaintext back
    seen: list[Envelope] = []

    async def handler(events: Sequence[Envelope], tx: Transaction) -> None:
        seen.extend(events)
        await tx.conn.execute(
            text(
                f"INSERT INTO {consumer_schema}.applied SELECT * FROM unnest(CAST(:i AS text[]), CAST(:a AS text[]))"
            ),
            {"i": [e.id for e in events], "a": [e.data.account_id for e in events]},
        )

    runner = StreamRunner(
        group=group, topics=[topic], handler=handler, engine=engine, schema=consumer_schema, settings=s
    )
    task = asyncio.create_task(runner.run())
    try:
        await wait_until(lambda: _eq(scalar(url, f"SELECT count(*) FROM {consumer_schema}.applied"), 2))
        assert {e.data.account_id: e.data for e in seen} == {ev1.account_id: ev1, ev2.account_id: ev2}

        # erase account 1 (as an operator would), then the same records arrive again (a replay, new ids)
        result = await asyncio.to_thread(
            CliRunner().invoke,
            cli_app,
            ["erase", ev1.account_id, "--reason", "GDPR request 17", "--yes", "--database-url", url],
        )
        assert result.exit_code == 0, result.output
        assert "key destroyed" in result.output
        vault().forget(ev1.account_id)
        erased_before = m.EVENTS_ERASED.labels(group, topic)._value.get()
        again = []
        for r in on_topic:
            hs = [(k, f"again-{v.decode()}".encode() if k == "ce_id" else v) for k, v in r.headers]
            again.append((r.key, r.value, hs))
        await produce(broker.bootstrap_servers, topic, again)
        await wait_until(lambda: _eq(scalar(url, f"SELECT count(*) FROM {consumer_schema}.applied"), 3))
        await asyncio.sleep(0.5)
        assert await scalar(url, f"SELECT count(*) FROM {consumer_schema}.applied") == 3  # only account 2's
        assert m.EVENTS_ERASED.labels(group, topic)._value.get() == erased_before + 1
    finally:
        runner.stop()
        await task
        await engine.dispose()

    # account 1's record is unreadable even with the vault; account 2's still opens
    by_account = {r.key.decode(): r for r in on_topic}
    try:
        await open_record(url, by_account[ev1.account_id].headers, by_account[ev1.account_id].value)
        raise AssertionError("an erased account's record opened")
    except Exception as e:  # noqa: BLE001
        assert type(e).__name__ == "Erased"
    assert (
        await open_record(url, by_account[ev2.account_id].headers, by_account[ev2.account_id].value)
    ).data == ev2

    # the erasure is on the audit trail; a second erase says so and changes nothing
    row = (
        await _rows(
            url, "SELECT actor, action, entity_id, reason FROM console.audit_log ORDER BY seq DESC LIMIT 1"
        )
    )[0]
    assert row[1:] == ("account.erase", ev1.account_id, "GDPR request 17") and row[0].startswith("cli:")
    again_out = await asyncio.to_thread(
        CliRunner().invoke,
        cli_app,
        ["erase", ev1.account_id, "--reason", "x", "--yes", "--database-url", url],
    )
    assert again_out.exit_code == 0 and "already erased" in again_out.output

    # `arrears dlq show --payload` prints what is stored; `--open` opens it with the account's key
    async def show(rec, *extra: str) -> dict:  # type: ignore[no-untyped-def]
        ref = f"{rec.topic}/{rec.partition}/{rec.offset}"
        args = ["dlq", "show", ref, "--payload", "--bootstrap-servers", broker.bootstrap_servers, *extra]
        out = await asyncio.to_thread(CliRunner().invoke, cli_app, [*args, "--database-url", url])
        assert out.exit_code == 0, out.output
        return json.loads(out.output)

    stored = await show(by_account[ev2.account_id])
    assert ev2.customer_name not in stored["value"] and "pii1:" in stored["value"]
    assert (
        json.loads((await show(by_account[ev2.account_id], "--open"))["value"])["customer_name"]
        == ev2.customer_name
    )
    assert (
        json.loads((await show(by_account[ev1.account_id], "--open"))["value"])["customer_name"] == "[erased]"
    )

    # the subject-access report of account 2 shows its data opened, of account 1 only that it was erased
    report = await asyncio.to_thread(
        CliRunner().invoke, cli_app, ["export", ev1.account_id, "--database-url", url]
    )
    assert report.exit_code == 0, report.output
    doc = json.loads(report.output)
    assert doc["key"] == "erased" and doc["erased_at"]


async def _rows(url: str, sql: str) -> list:
    engine = make_engine(url)
    try:
        async with engine.connect() as c:
            return list((await c.execute(text(sql))).all())
    finally:
        await engine.dispose()
