"""A payment stops what is already queued (issue 17): a dispatcher reads `account-changed` and, once an
account is paid in full, closed or removed at its source, suppresses every queued dunning notice planned from
an older state of the account, however long its queue, while notices planned after the stop (the account
owes again) and answers to the customer's own messages still go. Real Postgres, the real QUO client, sends
counted at the QUO emulator."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any

from arrears_shared.delivery import DeliveryEngine
from arrears_shared.events import AccountChanged, AccountStatus, DunningStopped, NoticeDue, utcnow
from sqlalchemy import text

from .helpers import daytime_zone, drain, feed, ledger, night_zone, notice, states

SCHEMA = "dispatcher_sms"


def changed(
    n: NoticeDue, *, balance: int = 0, status: AccountStatus = AccountStatus.OPEN, **kw: Any
) -> AccountChanged:
    return AccountChanged(
        account_id=n.account_id,
        change=kw.pop("change", "payment"),
        source=kw.pop("source", "payment"),
        customer_name=n.customer_name,
        phone=n.to,
        balance_minor=balance,
        currency="USD",
        due_date=date.today() - timedelta(days=40),
        status=status,
        sms_consent=True,
        content_hash="h",
        as_of=kw.pop("as_of", utcnow()),
    )


def planned(n: NoticeDue, seconds_ago: float) -> NoticeDue:
    return n.model_copy(update={"account_as_of": utcnow() - timedelta(seconds=seconds_ago)})


async def last_errors(eng: DeliveryEngine) -> dict[str, tuple[str, str | None]]:
    return {k: (v["state"], v["last_error"]) for k, v in (await states(eng.engine, SCHEMA)).items()}


async def test_payment_in_full_suppresses_what_is_queued_and_nothing_else(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    paid, bystander, partial = planned(notice(), 60), planned(notice(), 60), planned(notice(), 60)
    await feed(eng, [paid, bystander, partial], SCHEMA)
    # the payment arrives before any of them was sent: balance 0 for one, a part payment for another
    await feed(eng, [changed(paid, balance=0), changed(partial, balance=10_000)], SCHEMA)
    await drain(eng)
    got = await last_errors(eng)
    assert got[paid.notice_id] == ("suppressed", "stopped: balance_settled"), got
    assert got[bystander.notice_id][0] == "sent" and got[partial.notice_id][0] == "sent", got
    assert sorted(e["recipient"] for e in ledger(quo.url)["entries"]) == sorted([bystander.to, partial.to])


async def test_a_notice_planned_after_the_stop_goes_and_an_older_stop_never_moves_it_back(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    n = notice()
    stop_at = utcnow() - timedelta(seconds=30)
    await feed(eng, [changed(n, status=AccountStatus.CLOSED, balance=5_000, as_of=stop_at)], SCHEMA)
    # an older stop replayed later changes nothing
    await feed(eng, [changed(n, balance=0, as_of=stop_at - timedelta(seconds=60))], SCHEMA)
    async with eng.engine.connect() as c:
        row = (await c.execute(text(f"SELECT stopped_as_of, reason FROM {SCHEMA}.account_stops"))).one()
    assert (row.stopped_as_of, row.reason) == (stop_at, "status_closed")
    # the account owes again and the planner planned from that newer state: it is sent
    later = n.model_copy(update={"account_as_of": utcnow(), "notice_id": n.notice_id + ":again"})
    await feed(eng, [later], SCHEMA)
    await drain(eng)
    assert (await last_errors(eng))[later.notice_id][0] == "sent"
    assert ledger(quo.url)["count"] == 1


async def test_a_notice_deferred_by_quiet_hours_is_settled_at_once_when_the_account_pays(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make(gate=None)  # the real compliance gate
    n = planned(notice(timezone=night_zone()), 60)
    await feed(eng, [n], SCHEMA)
    await drain(eng)
    state, reason = (await last_errors(eng))[n.notice_id]
    assert state == "queued" and (reason or "").startswith("deferred:"), (state, reason)
    await feed(eng, [changed(n, balance=0, status=AccountStatus.PAID)], SCHEMA)
    await drain(eng)  # due again now: the claim suppresses it instead of waiting for the morning
    assert (await last_errors(eng))[n.notice_id] == ("suppressed", "stopped: balance_settled")
    assert ledger(quo.url)["count"] == 0


async def test_a_notice_from_an_older_planner_counts_as_planned_when_it_was_queued(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make()
    old = notice()  # no account_as_of
    await feed(eng, [old], SCHEMA)
    await feed(eng, [changed(old, change="removed", source="sheet", balance=5_000)], SCHEMA)
    await drain(eng)
    assert (await last_errors(eng))[old.notice_id] == ("suppressed", "stopped: account_removed")
    assert ledger(quo.url)["count"] == 0


def test_stops_are_read_in_a_lane_of_their_own(quo: Any, db: str) -> None:
    """Payments and replies are never read behind a batch of notices: a second member of the same group."""
    from arrears_dispatcher_sms.__main__ import definition
    from arrears_shared import topology
    from arrears_shared.delivery.service import BULK_LANE, STOP_LANE

    from .helpers import sms_settings

    d = definition(sms_settings(quo.url, db))
    lanes = [tuple(c.topics or ()) for c in d.consumers]
    assert lanes == [BULK_LANE, STOP_LANE] and {c.group for c in d.consumers} == {None}
    assert set(BULK_LANE) | set(STOP_LANE) == set(topology.service("dispatcher-sms").consumes)
    assert "account-changed" in STOP_LANE and "reply-received" in STOP_LANE


async def test_a_stopped_notice_is_settled_before_the_backlog_it_waits_in(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    eng = make(dispatch_batch_size=5)
    backlog = [planned(notice(priority=50), 60) for _ in range(20)]
    paid = planned(notice(), 60)
    await feed(eng, [*backlog, paid], SCHEMA)
    await feed(eng, [changed(paid, balance=0)], SCHEMA)
    await eng.process_one()  # one batch: the stopped row is at the head of the queue
    assert (await last_errors(eng))[paid.notice_id] == ("suppressed", "stopped: balance_settled")
    assert ledger(quo.url)["count"] <= 5


async def test_a_notice_read_after_its_accounts_stop_is_settled_first_too(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    """The stop lane may be ahead of the notice lane: a notice planned before the stop but read after it."""
    eng = make(dispatch_batch_size=5)
    backlog = [planned(notice(priority=50), 60) for _ in range(20)]
    paid = planned(notice(), 60)
    await feed(eng, backlog, SCHEMA)
    await feed(eng, [changed(paid, balance=0)], SCHEMA)
    await feed(eng, [paid], SCHEMA)
    await eng.process_one()
    assert (await last_errors(eng))[paid.notice_id] == ("suppressed", "stopped: balance_settled")


async def test_a_settlement_paid_in_full_suppresses_what_is_queued_though_a_balance_is_left(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    """`account-changed` still shows a balance after a settlement is paid (the rest is written off): the
    segmenter's `DunningStopped` on notice-due stops the account here all the same (issue #19)."""
    eng = make(gate=None)  # the real compliance gate
    n = planned(notice(timezone=night_zone()), 60)
    await feed(eng, [n], SCHEMA)
    await drain(eng)
    assert (await last_errors(eng))[n.notice_id][0] == "queued"  # deferred to the morning
    settling = changed(n, balance=20_000)  # a part of the balance: no stop by itself
    await feed(eng, [settling], SCHEMA)
    await feed(
        eng,
        [
            DunningStopped(
                account_id=n.account_id, reason="settled", account_as_of=settling.as_of, stopped_at=utcnow()
            )
        ],
        SCHEMA,
    )
    await drain(eng)
    assert (await last_errors(eng))[n.notice_id] == ("suppressed", "stopped: settled")
    assert ledger(quo.url)["count"] == 0


def withdrawn_by(
    n: NoticeDue, reason: str, channels: list[str] | None = None, at: datetime | None = None
) -> DunningStopped:
    return DunningStopped(
        account_id=n.account_id,
        reason=reason,  # type: ignore[arg-type]
        channels=channels or [],
        account_as_of=utcnow(),
        stopped_at=at or utcnow(),
    )


async def test_a_persons_stop_withdraws_what_is_queued_and_only_that(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    """A collector's do-not-contact (a dispute, a pause) lands while a notice waits for the morning: the
    segmenter's `DunningStopped` withdraws it. A notice queued after it (the stop was lifted, the segmenter
    planned again) goes, and a stop of another channel changes nothing here."""
    eng = make(gate=None)  # the real compliance gate
    stopped, other_channel = (
        planned(notice(timezone=night_zone()), 60),
        planned(notice(timezone=night_zone()), 60),
    )
    await feed(eng, [stopped, other_channel], SCHEMA)
    await drain(eng)
    got = await last_errors(eng)
    assert got[stopped.notice_id][0] == "queued" and got[other_channel.notice_id][0] == "queued"
    await feed(
        eng,
        [withdrawn_by(stopped, "do_not_contact"), withdrawn_by(other_channel, "dispute", ["email"])],
        SCHEMA,
    )
    await drain(eng)  # brought forward: settled now, not in the morning
    got = await last_errors(eng)
    assert got[stopped.notice_id] == ("suppressed", "withdrawn: do_not_contact"), got
    assert got[other_channel.notice_id][0] == "queued", (
        got
    )  # an email-only stop: still waiting for the morning
    # lifted: the segmenter plans again and the new notice is queued after the withdrawal
    again = stopped.model_copy(update={"notice_id": stopped.notice_id + ":again", "timezone": daytime_zone()})
    await feed(eng, [again], SCHEMA)
    await drain(eng)
    assert (await last_errors(eng))[again.notice_id][0] == "sent"
    assert ledger(quo.url)["count"] == 1


async def test_a_withdrawal_covers_what_was_issued_before_it_whenever_it_arrives(
    quo: Any, make: Callable[..., DeliveryEngine]
) -> None:
    """The segmenter's clock decides (`issued_at` vs `stopped_at`), not the order rows reach this table: in one
    batch [stop, lift, new notice] the new notice goes; a copy of an older notice arriving after the stop
    (an SMS-to-email failover, a DLQ revival) is withdrawn; a replayed older stop withdraws nothing new."""
    eng = make(gate=None)
    t0 = utcnow() - timedelta(minutes=10)
    old = planned(notice(timezone=night_zone()), 60).model_copy(update={"issued_at": t0})
    await feed(eng, [old], SCHEMA)
    await drain(eng)
    after = old.model_copy(
        update={"notice_id": old.notice_id + ":after", "issued_at": t0 + timedelta(minutes=2),
                "timezone": daytime_zone()}
    )  # fmt: skip
    # one batch: the stop (t0 + 1 min), then a notice the segmenter issued after it was lifted
    await feed(eng, [withdrawn_by(old, "paused", at=t0 + timedelta(minutes=1)), after], SCHEMA)
    late_copy = old.model_copy(update={"notice_id": old.notice_id + ":copy", "timezone": daytime_zone()})
    await feed(eng, [late_copy], SCHEMA)  # issued at t0, read after the stop
    await feed(eng, [withdrawn_by(old, "paused", at=t0 - timedelta(minutes=5))], SCHEMA)  # an older replay
    await drain(eng)
    got = await last_errors(eng)
    assert got[old.notice_id] == ("suppressed", "withdrawn: paused"), got
    assert got[late_copy.notice_id] == ("suppressed", "withdrawn: paused"), got
    assert got[after.notice_id][0] == "sent", got
    assert ledger(quo.url)["count"] == 1
