"""dispatcher-sms as a whole (ServiceHost: StreamRunner, outbox relay, send loop) on the real broker."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from arrears_dispatcher_sms.__main__ import definition
from arrears_shared import topics
from arrears_shared.cloudevents import decode, encode
from arrears_shared.events import Event, MessageSent, NoticeDue
from arrears_shared.service import ServiceHost
from vault_support import SyncKeys

from .helpers import ledger, notice, opt_out
from .test_engine import sms_settings


async def publish(bootstrap: str, events: list[tuple[Event, str]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for ev, ce_id in events:
            rec = encode(ev, source="test", id=ce_id)
            await producer.send_and_wait(rec.topic, rec.value, key=rec.key, headers=rec.headers)
    finally:
        await producer.stop()


async def collect_sent(
    bootstrap: str, url: str, notices: list[NoticeDue], until: Callable[[list[MessageSent]], bool]
) -> list[MessageSent]:
    """message-sent events of `notices`, opened with the keys of the service's database `url` (the address
    travels sealed: it is not in the raw record)."""
    notice_ids = {n.notice_id for n in notices}
    accounts = {n.account_id for n in notices}
    keys = SyncKeys(url)
    consumer = AIOKafkaConsumer(
        topics.MESSAGE_SENT,
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[MessageSent] = []
    try:
        deadline = asyncio.get_running_loop().time() + 40
        while not until(out):
            assert asyncio.get_running_loop().time() < deadline, f"message-sent timeout: {out}"
            batch = await consumer.getmany(timeout_ms=300)
            for recs in batch.values():
                for r in recs:
                    subject = dict(r.headers).get("ce_subject", b"").decode()
                    if subject not in accounts:
                        continue  # other tests' records: sealed under keys of other databases
                    ev = decode(r.headers, r.value, {subject: keys[subject]}).data
                    if isinstance(ev, MessageSent) and ev.notice_id in notice_ids:
                        assert ev.to.encode() not in r.value
                        out.append(ev)
    finally:
        await consumer.stop()
    return out


async def test_service_end_to_end(broker: Any, fresh_database_url: Callable[..., str], quo: Any) -> None:
    db = fresh_database_url("dispatch_e2e")
    settings = sms_settings(quo.url, db, kafka_bootstrap_servers=broker.bootstrap_servers, dispatch_workers=3)
    host = ServiceHost(definition(settings, group=f"dispatcher-sms-{uuid.uuid4().hex[:6]}"))
    notices = [notice() for _ in range(5)]
    waiting = notice(due_in_s=10.0)  # the opt-out published next is read first, even on a busy CI machine
    await host.start()
    try:
        events: list[tuple[Event, str]] = [(n, f"nd-{n.notice_id}") for n in [*notices, waiting]]
        await publish(broker.bootstrap_servers, events)
        await publish(broker.bootstrap_servers, [(opt_out(waiting.account_id), str(uuid.uuid4()))])
        # replay: the same records again (same ce_id) and the same notices under new ce_ids
        await publish(broker.bootstrap_servers, events + [(n, str(uuid.uuid4())) for n in notices])
        ids = {n.notice_id for n in [*notices, waiting]}
        sent = await collect_sent(
            broker.bootstrap_servers, db, [*notices, waiting], lambda out: {e.notice_id for e in out} == ids
        )
        await asyncio.sleep(1.0)  # give a double send the chance to show up
    finally:
        await host.stop()
    led = ledger(quo.url)
    ours = Counter(
        e["recipient"] for e in led["entries"] if e["recipient"] in {n.to for n in [*notices, waiting]}
    )
    assert ours == Counter(n.to for n in notices)  # one send per notice, none to the opted-out debtor
    by_id = {e.notice_id: e for e in sent}
    assert len(sent) == len(ids)
    assert all(by_id[n.notice_id].status == "sent" for n in notices)
    assert by_id[waiting.notice_id].status == "suppressed"
    assert all(by_id[n.notice_id].to == n.to for n in [*notices, waiting])
