"""`record_contact` overrides (a person's call, letter, visit) applied by the segmenter against the real
PostgreSQL: a contact that reached the customer moves the next automated step to at least the contact's
time + the policy's gap; one that did not (no answer) changes no plan; a replayed override changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from arrears_segmenter.schedule.models import load_policy

from .support import notices, run_tick
from .test_overrides import active_timer, consume, ov, override_log, started

STEP2_DUE = datetime(2026, 5, 10, 4, 0, tzinfo=UTC)  # dpd 30 of a 2026-04-10 due date: midnight in New York
NOW = datetime(2026, 5, 9, 16, 0, tzinfo=UTC)  # noon in New York, the day before
CALLED = NOW - timedelta(minutes=10)


def contact(aid: str, outcome: str, at: datetime = CALLED, channel: str = "call", **kw: object) -> object:
    return ov(
        aid,
        "record_contact",
        actor="cora",
        role="collector",
        reason="spoke about the balance",
        contact_id=f"mc-{aid}-{outcome}",
        contact_channel=channel,
        contact_direction="outbound",
        contact_outcome=outcome,
        contacted_at=at,
        **kw,
    )


async def steps(engine, aid: str) -> list[int]:  # type: ignore[no-untyped-def]
    return sorted({n["step"] for n in await notices(engine, aid)})


async def test_a_reached_contact_defers_the_next_step_a_missed_one_does_not(engine) -> None:
    d = await started(engine, "MC-R", "MC-N", "MC-X")
    d.clock.set(NOW)
    gap = timedelta(hours=load_policy().manual_contact_gap_hours)
    assert gap == timedelta(hours=24)  # the packaged policy's default
    reached = contact("MC-R", "reached")
    await consume(engine, d, reached, contact("MC-N", "no_answer"))
    await consume(engine, d, reached)  # the same override again (a replay): nothing new
    r, n = await active_timer(engine, "MC-R"), await active_timer(engine, "MC-N")
    assert r is not None and n is not None
    assert (r["step"], r["due_at"]) == (2, CALLED + gap)
    assert (n["step"], n["due_at"]) == (2, STEP2_DUE)
    log_r = await override_log(engine, "MC-R")
    assert log_r[0][:2] == ("updated", "override.record_contact")
    assert f"next automated step not before {(CALLED + gap).isoformat()}" in log_r[0][2]
    assert [x[0] for x in log_r[1:]] == ["ignored"]  # the replay: already paused that long
    assert (await override_log(engine, "MC-N"))[0][0] == "ignored"
    assert "did not reach the customer" in (await override_log(engine, "MC-N"))[0][2]

    d.clock.set(datetime(2026, 5, 10, 13, 0, tzinfo=UTC))  # 09:00 in New York: step 2 is due, gap not over
    await run_tick(engine, d)
    await run_tick(engine, d)
    assert await steps(engine, "MC-N") == [1, 2]
    assert await steps(engine, "MC-X") == [1, 2]  # no contact at all: the plan as it was
    assert await steps(engine, "MC-R") == [1]
    d.clock.set(CALLED + gap + timedelta(minutes=1))
    await run_tick(engine, d)
    await run_tick(engine, d)
    assert await steps(engine, "MC-R") == [1, 2]


async def test_an_old_contact_or_a_longer_pause_changes_nothing(engine) -> None:
    d = await started(engine, "MC-O", "MC-P")
    d.clock.set(NOW)
    # imported from a sheet days later: its gap is already over
    await consume(engine, d, contact("MC-O", "reached", at=NOW - timedelta(days=3)))
    o = await active_timer(engine, "MC-O")
    assert o is not None and o["due_at"] == STEP2_DUE
    assert "gap after it is over" in (await override_log(engine, "MC-O"))[0][2]
    # a person's pause running longer than the gap stays as it is
    until = NOW + timedelta(days=5)
    await consume(engine, d, ov("MC-P", "pause", until=until), contact("MC-P", "reached"))
    p = await active_timer(engine, "MC-P")
    assert p is not None and p["due_at"] == until
    assert [x[0] for x in await override_log(engine, "MC-P")] == ["updated", "ignored"]
    # a contact without its details is refused (logged, nothing changes)
    await consume(engine, d, ov("MC-O", "record_contact", contacted_at=CALLED))
    assert (await override_log(engine, "MC-O"))[-1][0] == "rejected"


def test_the_gap_is_the_policys_and_a_stored_default_policy_reads_as_before() -> None:
    from arrears_segmenter.accounts.account import Account
    from arrears_segmenter.overrides.actions import record_contact
    from arrears_segmenter.schedule.models import Policy

    packaged = load_policy()
    assert "manual_contact_gap_hours" not in packaged.model_dump(mode="json")  # older replicas read it
    slow = Policy.model_validate(packaged.model_dump(mode="json") | {"manual_contact_gap_hours": 48})
    assert Policy.model_validate(slow.model_dump(mode="json")).manual_contact_gap_hours == 48
    acct = Account.new("MC-G", NOW)
    applied = record_contact(acct, contact("MC-G", "reached"), slow, NOW, "low")  # type: ignore[arg-type]
    assert applied.outcome == "updated" and acct.manual_pause_until == CALLED + timedelta(hours=48)
    assert acct.paused_by == "cora" and acct.pause_reason == "manual call contact reached the customer"
