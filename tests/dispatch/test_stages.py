"""The engine's stages and the stream toolkit they share with the stream runner: one backoff formula, one
DLQ record layout, commit-then-wake, and the order of the last-moment check chain."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord
from arrears_shared.db.engine import make_engine
from arrears_shared.delivery import DispatchSettings, allow_all
from arrears_shared.delivery.channel import DeliveryRow
from arrears_shared.delivery.checks import default_checks
from arrears_shared.delivery.engine import DeliveryEngine, DeliveryFailed
from arrears_shared.stream import dead_letter as dl
from arrears_shared.stream.backoff import backoff
from arrears_shared.stream.waking import waking_transaction

from .helpers import notice
from .test_engine import SCHEMA


class _Channel:
    channel = "sms"
    provider = "quo"
    limiter_name = "quo:test"
    rate_per_s = 10.0
    burst = 1.0


def test_backoff_doubles_with_equal_jitter_up_to_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    for attempt, full in [(0, 1.0), (1, 1.0), (2, 2.0), (3, 4.0), (6, 10.0), (30, 10.0)]:
        monkeypatch.setattr(random, "random", lambda: 0.0)
        assert backoff(attempt, 1.0, 10.0) == full / 2
        monkeypatch.setattr(random, "random", lambda: 1.0)
        assert backoff(attempt, 1.0, 10.0) == full


def test_engine_and_runner_dead_letters_have_one_layout() -> None:
    n = notice()
    created = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    row = DeliveryRow(
        n.notice_id,
        n.account_id,
        "sms",
        n.to,
        n,
        None,
        0,
        "sending",
        6,
        created,
        None,
        None,
        created,
        created,
        None,
    )
    eng = DeliveryEngine(_Channel(), DispatchSettings(service_name="dispatcher-sms"))  # type: ignore[arg-type]
    eng.bound.service = "dispatcher-sms"
    ours = eng.settler.dead_letter_record(row, "gave up after 6 attempts: boom", "dlq:x")
    consumed = ConsumerRecord("notice-due", 1, 9, 5, 0, b"k", b"v", None, 1, 1, [("ce_id", b"x")])
    theirs = dl.dead_letter(dl.Failure(consumed, RuntimeError("boom"), 6), group="dispatcher-sms")
    assert ours.topic == theirs.topic == eng.dlq_topic == "notice-due.dispatcher-sms.dlq"
    dlq_keys = [k for k, _ in theirs.headers if k in dl.DLQ_HEADERS]
    assert (
        [k for k, _ in ours.headers if k in dl.DLQ_HEADERS]
        == dlq_keys
        == sorted(dlq_keys, key=dlq_keys.index)
    )
    h = dict(ours.headers)
    assert h[dl.ORIGINAL_PARTITION] == h[dl.ORIGINAL_OFFSET] == b"-1"
    assert h[dl.ORIGINAL_TIMESTAMP] == str(int(created.timestamp() * 1000)).encode()
    assert h[dl.EXCEPTION_FQCN] == b"arrears_shared.delivery.engine.DeliveryFailed"
    assert h[dl.EXCEPTION_STACKTRACE] == b"" and h[dl.ATTEMPTS] == b"6"
    assert h["ce_id"] == b"dlq:x"
    assert DeliveryFailed.__module__ == "arrears_shared.delivery.engine"


def test_default_check_chain_order() -> None:
    names = [getattr(c, "__name__", "") for c in default_checks(allow_all)]
    assert names == [
        "erased",  # nothing is ever sent to an erased account, whatever the other checks say
        "stopped",  # paid, closed or removed at its source since the notice was planned
        "withdrawn",  # the segmenter withdrew what was queued (a settlement, a person's stop, a dispute)
        "opted_out",
        "held",
        "invalid_channel",
        "expired",
        "sending_halted",  # an incident halt holds what is still sendable (control/halts.py)
        "one_per_account",
        "compliance_gate",
    ]


async def test_waking_transaction_wakes_once_committed(db: str) -> None:
    ae = make_engine(db, pool_size=2)
    woken: list[Any] = []
    try:
        async with waking_transaction(ae, SCHEMA, "test", lambda: woken.append(1)):
            pass
        assert woken == []  # nothing emitted: nothing to wake for
        async with waking_transaction(ae, SCHEMA, "test", lambda: woken.append(1), always=True):
            pass
        assert woken == [1]
        async with waking_transaction(ae, SCHEMA, "test", lambda: woken.append(2)) as tx:
            tx.emit(notice())
        assert woken == [1, 2]
        with pytest.raises(RuntimeError):
            async with waking_transaction(ae, SCHEMA, "test", lambda: woken.append(3)) as tx:
                tx.emit(notice())
                raise RuntimeError("rolled back")
        assert woken == [1, 2]
    finally:
        await ae.dispose()
