"""Dead letters in the console: browse with filters, inspect one record (masked without `accounts.read`),
replay one or a filtered set (admin, confirmed, capped, audited) — and a replay is applied exactly once by
the real consumer group that dead-lettered it, however often it is replayed."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from arrears_console.__main__ import definition
from arrears_console.dlq.browse import headers_for_display, payload_text
from arrears_console.settings import ConsoleSettings
from arrears_shared.audit import list_entries
from arrears_shared.cloudevents import Envelope, encode
from arrears_shared.db.engine import make_engine
from arrears_shared.dlq import DeadLetter, Filter, scan
from arrears_shared.service import ServiceHost
from arrears_shared.stream.dead_letter import Failure, dead_letter
from arrears_shared.stream.relay import OutboxRelay, make_producer
from arrears_shared.stream.runner import StreamRunner
from arrears_shared.stream.transaction import Transaction
from arrears_shared.topics import NOTICE_DUE, dlq_topic
from arrears_shared.vault.records import seal_records
from arrears_shared.vault.subject_access import erase
from auth_support import bearer, issue_key_async
from backbone.factories import account_changed
from backbone.support import create_schema, create_topics, produce, scalar, settings, unique
from browser.conftest import LAUNCH_ARGS, chromium_path
from playwright.async_api import async_playwright, expect
from sqlalchemy import text

from .support import eventually, serve


@pytest.fixture(scope="module")
async def console(broker: Any, fresh_database_url: Callable[..., str]) -> AsyncIterator[dict[str, Any]]:
    url = fresh_database_url("console_dlq_ops")
    s = ConsoleSettings(
        kafka_bootstrap_servers=broker.bootstrap_servers,
        database_url=url,
        runner_poll_timeout_ms=100,
        outbox_poll_s=0.02,
        console_dlq_replay_max=3,
        auth_cookie_secure=False,  # the browser reaches it over plain http on 127.0.0.1
    )
    host = ServiceHost(definition(s))
    app = host.build_app()
    await host.start()
    assert host.ctx is not None
    async with host.ctx.engine.begin() as conn:
        keys = {
            r: await issue_key_async(conn, r, name=f"ops-{r}") for r in ("collector", "supervisor", "admin")
        }
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console") as client:
        yield {"client": client, "keys": keys, "url": url, "host": host, "app": app}
    await host.stop()


class DownstreamUnavailable(Exception):
    """A transient failure that is not an infrastructure error: the runner dead-letters it."""


async def test_replaying_twice_through_the_console_applies_once(broker: Any, console: dict[str, Any]) -> None:
    client, keys, url = console["client"], console["keys"], console["url"]
    admin, supervisor = bearer(keys["admin"]), bearer(keys["supervisor"])
    schema, topic, group = unique("svc"), unique("in"), unique("grp")
    dlq = dlq_topic(topic, group)
    await create_topics(broker.bootstrap_servers, [topic, dlq])
    await create_schema(url, schema)
    downstream = {"down": True}  # down while the record is first delivered, back before the replay

    async def handler(events: Sequence[Envelope], tx: Transaction) -> None:
        for env in events:
            if env.data.account_id == "PME-000042" and downstream["down"]:
                raise DownstreamUnavailable("pricing service answered 503")
            await tx.conn.execute(
                text(f"INSERT INTO {schema}.applied VALUES (:i, :a)"), {"i": env.id, "a": env.data.account_id}
            )

    ce_id = f"r-{uuid.uuid4().hex[:8]}"
    recs = [encode(account_changed(i), source="t", id=ce_id if i == 42 else f"{ce_id}-{i}") for i in (41, 42)]
    await produce(broker.bootstrap_servers, topic, [(r.key, r.value, r.headers) for r in recs])
    s = settings(broker.bootstrap_servers, url, runner_retry_attempts=1)
    engine = make_engine(url)
    producer = make_producer(s, "t")
    await producer.start()
    relay = OutboxRelay(engine=engine, schema=schema, producer=producer, settings=s, service="t")
    runner = StreamRunner(
        group=group, topics=[topic], handler=handler, engine=engine, schema=schema, settings=s
    )
    tasks = [asyncio.create_task(x.run()) for x in (runner, relay)]
    kafka = {"bootstrap_servers": broker.bootstrap_servers}

    async def applied(sql_where: str = "true") -> int:
        return int(await scalar(url, f"SELECT count(*) FROM {schema}.applied WHERE {sql_where}"))

    try:

        async def dead() -> list[DeadLetter]:
            return await scan(kafka, Filter(topics=(dlq,)))

        [d] = await eventually(dead, what="the record to be dead-lettered")
        assert await applied() == 1 and d.h["ce_id"] == ce_id
        assert d.value is not None and b"Customer 42" not in d.value  # the dead letter holds it sealed
        downstream["down"] = False

        # inspect: headers and the pretty-printed payload, in clear for a supervisor (accounts.read)
        where = {"topic": dlq, "partition": d.partition, "offset": d.offset}
        r = await client.get("/ops/dlq/record", params=where, headers=supervisor)
        assert r.status_code == 200, r.text
        assert "DownstreamUnavailable" in r.text and "kafka_dlt-original-topic" in r.text
        assert "&#34;customer_name&#34;: &#34;Customer 42&#34;" in r.text  # JSON, indented, escaped
        assert "Replay to" not in r.text  # no replay for a supervisor
        assert (await client.post("/ops/dlq/replay", data=where, headers=supervisor)).status_code == 403

        # replay once as an admin, in a real browser: sign in, find the record, confirm; the group applies it
        await replay_in_browser(console, dlq, d)
        await eventually(lambda: _equals(applied(f"ce_id = '{ce_id}'"), 1), what="the replay to be applied")
        # again, by mistake: same ce_id, dropped by the group's inbox
        r = await client.post("/ops/dlq/replay", data=where, headers=admin)
        assert r.status_code == 303

        # and once more as a filtered set: confirmation page first, then the confirmed replay
        flt = {"topic": dlq, "account": "PME-000042"}
        page = await client.post("/ops/dlq/replay-set", data=flt, headers=admin)
        assert page.status_code == 200 and "Replay 1 dead letter?" in page.text
        digest = re.search(r'name="expected" value="([0-9a-f]+)"', page.text)
        assert digest is not None
        stale = await client.post(
            "/ops/dlq/replay-set", data={**flt, "confirm": "yes", "expected": "0" * 16}, headers=admin
        )
        assert stale.status_code == 200 and "changed since you looked" in stale.text
        r = await client.post(
            "/ops/dlq/replay-set", data={**flt, "confirm": "yes", "expected": digest[1]}, headers=admin
        )
        assert r.status_code == 303 and "replayed+1+dead+letter" in r.headers["location"]

        await asyncio.sleep(2.0)  # give a second application the chance to show up
        assert await applied(f"ce_id = '{ce_id}'") == 1
        assert await applied() == 2
        assert len(await scan(kafka, Filter(topics=(dlq,)))) == 1  # not dead-lettered again

        # the console's audit log: who, what, how many
        async with console["host"].ctx.engine.connect() as conn:
            entries = [e for e in await list_entries(conn, "console") if e["action"].startswith("dlq.replay")]
        ours = [
            e
            for e in entries
            if dlq in e["entity_id"] or (e["after"] or {}).get("filter", {}).get("topic") == dlq
        ]
        assert sorted(e["action"] for e in ours) == ["dlq.replay", "dlq.replay", "dlq.replay_set"]
        assert {e["actor"] for e in ours} == {"ops-admin"}
        bulk = next(e for e in ours if e["action"] == "dlq.replay_set")
        assert bulk["after"]["count"] == 1 and bulk["after"]["records"] == [f"{dlq}/{d.partition}/{d.offset}"]
        one = next(e for e in ours if e["action"] == "dlq.replay")
        assert one["after"]["ce_id"] == ce_id and one["after"]["consumer_group"] == group
    finally:
        for x in (runner, relay):
            x.stop()
        await asyncio.gather(*tasks)
        await producer.stop()
        await engine.dispose()


async def replay_in_browser(console: dict[str, Any], dlq: str, d: DeadLetter) -> None:
    async with serve(console["app"]) as base, async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(base + "/login")
            await page.get_by_label("API key").fill(console["keys"]["admin"])
            await page.get_by_role("button", name="Sign in").click()
            await expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
            # the record's own page (read from Kafka): headers, payload, and the replay button
            await page.goto(base + f"/ops/dlq/record?topic={dlq}&partition={d.partition}&offset={d.offset}")
            await expect(page.get_by_text("DownstreamUnavailable").first).to_be_visible()
            page.once(
                "dialog", lambda dialog: asyncio.ensure_future(dialog.accept())
            )  # "Replay this event…?"
            await page.get_by_role("button", name=f"Replay to {d.original_topic}").click()
            await expect(page.get_by_role("status")).to_contain_text("replayed")
        finally:
            await browser.close()


async def _equals(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


async def test_browse_filters_cap_and_permissions(broker: Any, console: dict[str, Any]) -> None:
    """Records dead-lettered into a real DLQ topic show in the list (read model), filtered by topic, group,
    reason and account; a filtered replay over the cap is refused; a collector sees nothing."""
    client, keys = console["client"], console["keys"]
    supervisor, admin = bearer(keys["supervisor"]), bearer(keys["admin"])
    run = uuid.uuid4().hex[:6]
    group = "dispatcher-sms"
    topic = dlq_topic(NOTICE_DUE, group)
    p = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
    await p.start()
    try:
        for i in range(5):
            original = ConsumerRecord(
                topic=NOTICE_DUE, partition=0, offset=1000 + i, timestamp=0, timestamp_type=0,
                key=f"ACC-{run}-{i}".encode(), value=b'{"to": "+14155550123"}', checksum=None,
                serialized_key_size=0, serialized_value_size=0,
                headers=[("ce_id", f"{run}-{i}".encode()), ("ce_subject", f"ACC-{run}-{i}".encode())],
            )  # fmt: skip
            why = "quota exhausted" if i < 4 else "template broken"
            out = dead_letter(Failure(original, RuntimeError(f"{why} {run}"), 6), group=group)
            await p.send_and_wait(out.topic, out.value, key=out.key, headers=out.headers)
    finally:
        await p.stop()

    async def listed() -> bool:
        r = await client.get("/ops/dlq", params={"reason": run}, headers=supervisor)
        return r.status_code == 200 and "5 records matching" in r.text

    await eventually(listed, what="the DLQ reader to record the dead letters")
    r = await client.get(
        "/ops/dlq", params={"reason": f"template broken {run}", "group": group}, headers=supervisor
    )
    assert "1 record matching" in r.text and f"ACC-{run}-4" in r.text and f"ACC-{run}-0" not in r.text
    r = await client.get("/ops/dlq", params={"account": f"ACC-{run}-2", "topic": topic}, headers=supervisor)
    assert "1 record matching" in r.text and "Replay all matching" not in r.text  # supervisor: no replay
    r = await client.get("/ops/dlq", params={"reason": run}, headers=admin)
    assert "Replay all matching" in r.text and "at most 3" in r.text

    # 4 match "quota exhausted <run>": more than the cap (3) is refused, nothing is sent
    r = await client.post(
        "/ops/dlq/replay-set", data={"topic": topic, "reason": f"quota exhausted {run}"}, headers=admin
    )
    assert r.status_code == 303 and "narrow+the+filter" in r.headers["location"]
    r = await client.post("/ops/dlq/replay-set", data={}, headers=admin)
    assert r.status_code == 303 and "choose+a+filter" in r.headers["location"]
    r = await client.post("/ops/dlq/replay-set", data={"topic": "notice-due"}, headers=admin)
    assert "not+a+dead-letter+topic" in r.headers["location"]

    collector = bearer(keys["collector"])
    for path in ("/ops/dlq", "/ops/dlq/record?topic=x.dlq&partition=0&offset=0"):
        assert (await client.get(path, headers=collector)).status_code == 403
    missing = await client.get(
        "/ops/dlq/record", params={"topic": topic, "partition": 0, "offset": 10**9}, headers=supervisor
    )
    assert missing.status_code == 404 and "no record" in missing.text


async def test_sealed_personal_data_is_opened_for_display_and_shown_erased_once_the_key_is_gone(
    broker: Any, console: dict[str, Any]
) -> None:
    """A dead letter's payload holds personal fields sealed (as every outbox writes them): the record page opens
    them for someone who may read personal data, and shows `[erased]` after the account's key was destroyed."""
    client, keys, engine = console["client"], console["keys"], console["host"].ctx.engine
    supervisor = bearer(keys["supervisor"])
    topic, group = unique("in"), unique("grp")
    dlq = dlq_topic(topic, group)
    await create_topics(broker.bootstrap_servers, [dlq])
    ev = account_changed(100_000 + uuid.uuid4().int % 900_000)
    async with engine.begin() as conn:
        [rec] = await seal_records(conn, [encode(ev, source="t")])
    assert ev.customer_name.encode() not in rec.value and ev.email.encode() not in rec.value
    original = ConsumerRecord(
        topic=topic, partition=0, offset=7, timestamp=0, timestamp_type=0, key=rec.key, value=rec.value,
        checksum=None, serialized_key_size=0, serialized_value_size=0, headers=list(rec.headers),
    )  # fmt: skip
    out = dead_letter(Failure(original, RuntimeError("downstream 503"), 3), group=group)
    await produce(broker.bootstrap_servers, dlq, [(out.key, out.value, out.headers)])
    [d] = await eventually(
        lambda: scan({"bootstrap_servers": broker.bootstrap_servers}, Filter(topics=(dlq,)))
    )
    where = {"topic": dlq, "partition": d.partition, "offset": d.offset}

    r = await client.get("/ops/dlq/record", params=where, headers=supervisor)
    assert r.status_code == 200, r.text
    assert f"&#34;customer_name&#34;: &#34;{ev.customer_name}&#34;" in r.text
    assert f"&#34;email&#34;: &#34;{ev.email}&#34;" in r.text and "pii1:" not in r.text

    async with engine.begin() as conn:
        assert await erase(conn, ev.account_id, "test")
    r = await client.get("/ops/dlq/record", params=where, headers=supervisor)
    assert r.status_code == 200, r.text
    assert (
        "&#34;customer_name&#34;: &#34;[erased]&#34;" in r.text
        and "&#34;email&#34;: &#34;[erased]&#34;" in r.text
    )
    assert ev.customer_name not in r.text and ev.email not in r.text
    assert f"&#34;account_id&#34;: &#34;{ev.account_id}&#34;" in r.text  # what is not personal stays readable


def test_personal_data_is_masked_without_accounts_read() -> None:
    value = (
        b'{"account_id": "A-1", "customer_name": "Maria del Carmen Lopez", "to": "+14155550123",'
        b' "email": "maria@example.com", "text": "call me on +1 415 555 0199", "balance_minor": 1200,'
        b' "note_free": "write to maria@example.com"}'
    )
    clear, is_json = payload_text(value, sees_pii=True)
    assert is_json and '"customer_name": "Maria del Carmen Lopez"' in clear and clear.startswith("{\n  ")
    masked, _ = payload_text(value, sees_pii=False)
    for secret in ("Maria", "4155550123", "0199", "maria@example.com"):
        assert secret not in masked, masked
    assert '"customer_name": "M. d. C. L."' in masked and '"account_id": "A-1"' in masked
    assert '"balance_minor": 1200' in masked
    assert "hidden" in payload_text(b"not json +14155550123", sees_pii=False)[0]
    d = DeadLetter(
        "x.g.dlq", 0, 0, None, value,
        [("kafka_dlt-exception-message", b"bad phone +14155550123 for maria@example.com")],
    )  # fmt: skip
    [(_, shown)] = headers_for_display(d, sees_pii=False)
    assert "4155550123" not in shown and "maria@" not in shown
