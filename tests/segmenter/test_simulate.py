"""`arrears simulate`: the real timer code with a virtual clock over current data; nothing is written."""

from __future__ import annotations

from datetime import UTC, date, datetime

from arrears_cli.__main__ import app
from arrears_segmenter.simulate import render, simulate
from sqlalchemy import text
from typer.testing import CliRunner

from .support import account, deps, handle

START = datetime(2026, 3, 2, 15, tzinfo=UTC)  # Monday 10:00 New York


async def _state(engine) -> list:  # type: ignore[no-untyped-def]
    out = []
    async with engine.connect() as c:
        for t in ("outbox", "timers", "notices", "decisions", "accounts"):
            q = f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM segmenter.{t} t"
            out.append(tuple((await c.execute(text(q))).one()))
    return out


async def test_simulation_reports_tiers_channels_and_gate_and_changes_nothing(engine, segmenter_url) -> None:
    d = deps(START)
    await handle(
        engine,
        d,
        account("SIM-ny", due_date=date(2026, 3, 1)),
        account("SIM-in", due_date=date(2026, 2, 1), timezone="Asia/Kolkata", country="IN", region=None),
        account("SIM-nosms", due_date=date(2026, 3, 1), sms_consent=False),
        account("SIM-big", due_date=date(2026, 3, 1), balance_minor=5_000_000),
    )
    before = await _state(engine)
    sim = await simulate(engine, d, days=30, start=START)
    assert await _state(engine) == before  # rolled back: no outbox row, no timer moved
    counts = sim.by_tier_channel()
    # NY and no-SMS: reminder now, firm at dpd 30 (31 Mar 08:00 local); IN (20:30 local at the start, dpd 29):
    # reminder deferred to 08:00 IST, firm 7 days later; the high balance waits for approval
    assert dict(counts) == {
        ("reminder", "sms"): 2,
        ("reminder", "email"): 3,
        ("firm", "sms"): 2,
        ("firm", "email"): 3,
    }
    assert sorted(sim.by_day().items()) == [
        ("2026-03-02", 3),
        ("2026-03-03", 2),
        ("2026-03-10", 2),
        ("2026-03-31", 3),
    ]
    rules = sim.gate_by_rule()
    assert rules[("deferred", "quiet_hours.IN")] >= 1
    assert rules[("suppressed", "no_consent.sms")] >= 1
    assert rules[("held", "approval.high_balance")] >= 1
    assert not any(n["account_id"] == "SIM-big" for n in sim.notices)
    out = render(sim, details=True)
    assert "Nothing was sent" in out and "quiet_hours.IN" in out and "SIM-ny" in out


def test_cli_simulate_prints_the_report(segmenter_url) -> None:
    r = CliRunner().invoke(
        app, ["simulate", "--days", "30", "--database-url", segmenter_url, "--start", "2026-03-02T15:00:00"]
    )
    assert r.exit_code == 0, r.output
    assert "Would send" in r.output and "firm" in r.output and "Nothing was sent" in r.output
    as_json = CliRunner().invoke(
        app, ["simulate", "--json", "--database-url", segmenter_url, "--start", "2026-03-02T15:00:00"]
    )
    assert as_json.exit_code == 0, as_json.output
    summary = __import__("json").loads(as_json.output)["summary"]  # the same summary the API returns
    assert summary["totals"]["sent"] == sum(r["sent"] for r in summary["by_tier_channel"])
    shown = CliRunner().invoke(
        app,
        ["simulate", "--progress", "--database-url", segmenter_url, "--start", "2026-03-02T15:00:00"],
    )
    assert shown.exit_code == 0 and "Would send" in shown.stdout
    assert "simulating 30 days" in shown.stderr and "100%" in shown.stderr, shown.stderr
    bad = CliRunner().invoke(app, ["simulate", "--database-url", segmenter_url, "--policy", __file__])
    assert bad.exit_code == 2 and "policy rejected" in bad.output
