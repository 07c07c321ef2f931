"""`POST /policies/simulate`: a candidate policy and the active one over current data with a virtual clock,
through the real service host with real API keys. Validated like `POST /policies`; nothing is written."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from arrears_shared.db.migrate import upgrade
from auth_support import bearer
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from .support import account, deps, handle, segmenter_api

DEFAULT_YAML = (
    __import__("importlib.resources").resources.files("arrears_segmenter") / "policies" / "default.yaml"
).read_text()
YAML = {"content-type": "application/yaml"}
# the candidate: version 2, and the reminder by email only
EMAIL_REMINDER = DEFAULT_YAML.replace("version: 1", "version: 2").replace(
    "channels: [sms, email]\n    template_id: reminder-v1",
    "channels: [email]\n    template_id: reminder-v1",
    1,
)


@pytest.fixture(scope="module")
def sim_url(fresh_database_url: Any) -> str:
    url: str = fresh_database_url("segmenter_simulate_api")
    upgrade(url, "segmenter")
    return url


@pytest.fixture(scope="module")
async def api(
    broker: Any, sim_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, AsyncEngine, dict[str, str]]]:
    names: dict[str, str | None] = {"viewer": None, "collector": None, "supervisor": None}
    async with segmenter_api(broker.bootstrap_servers, sim_url, names) as api:
        yield api


async def snapshot(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    """Every table a simulation could touch: row count and a digest of the rows."""
    out = []
    async with engine.connect() as c:
        for t in (
            "outbox",
            "timers",
            "notices",
            "decisions",
            "accounts",
            "policies",
            "campaigns",
            "audit_log",
        ):
            q = f"SELECT count(*), md5(string_agg(t::text, ',' ORDER BY t::text)) FROM segmenter.{t} t"
            out.append((t, *tuple((await c.execute(text(q))).one())))
    return out


def row(summary: dict[str, Any], tier: str, channel: str) -> dict[str, Any]:
    found = [r for r in summary["by_tier_channel"] if (r["tier"], r["channel"]) == (tier, channel)]
    return found[0] if found else {"sent": 0, "deferred": 0, "suppressed": 0, "held": 0}


async def test_simulate_compares_candidate_and_active_and_writes_nothing(api) -> None:
    client, engine, keys = api
    now = datetime.now(UTC)
    due = (now - timedelta(days=5)).date()
    await handle(
        engine,
        deps(now),
        account("SA-1", due_date=due),
        account("SA-nosms", due_date=due, sms_consent=False),
        account("SA-big", due_date=due, balance_minor=5_000_000),  # held for approval
    )
    sup = bearer(keys["supervisor"])
    for who in ("viewer", "collector"):
        r = await client.post("/policies/simulate", content=EMAIL_REMINDER, headers=YAML | bearer(keys[who]))
        assert r.status_code == 403 and "policies.write" in r.json()["detail"]
    before = await snapshot(engine)

    r = await client.post(
        "/policies/simulate", params={"days": 30}, content=EMAIL_REMINDER, headers=YAML | sup
    )
    assert r.status_code == 200, r.text
    got = r.json()
    cand, act = got["candidate"], got["active"]
    assert got["days"] == 30 and cand["start"] == act["start"] == got["start"]
    assert (cand["policy_version"], act["policy_version"]) == (2, 1)
    assert not cand["truncated"] and not act["truncated"]
    # the active policy reminds by SMS (SA-1; SA-nosms has no consent) and email; the candidate by email only
    assert row(act, "reminder", "sms")["sent"] == 1 and row(act, "reminder", "sms")["suppressed"] >= 1
    assert row(act, "reminder", "email")["sent"] == 2
    assert row(cand, "reminder", "sms")["sent"] == 0 and row(cand, "reminder", "email")["sent"] == 2
    # the firm step (30 days past due, 25 days from now) is the same in both
    assert row(cand, "firm", "email")["sent"] == row(act, "firm", "email")["sent"] == 2
    assert act["totals"]["held"] >= 1 and cand["totals"]["held"] >= 1  # SA-big waits for a person
    assert {g["rule_id"] for g in act["gate_by_rule"]} >= {"no_consent.sms", "approval.high_balance"}
    assert sum(d["sent"] for d in act["by_day"]) == act["totals"]["sent"]

    # rolled back: no timer moved, no outbox row, no policy version, no audit entry
    assert await snapshot(engine) == before
    versions = (await client.get("/policies", headers=sup)).json()
    assert [v["version"] for v in versions] == [1]

    # the simulated version 2 left nothing behind: a different version 2 loads and is what is active
    sms_reminder = EMAIL_REMINDER.replace("channels: [email]", "channels: [sms]", 1)
    assert (await client.post("/policies", content=sms_reminder, headers=YAML | sup)).status_code == 201
    active = (await client.get("/policies/active", headers=sup)).json()
    assert (active["version"], active["steps"][0]["channels"]) == (2, ["sms"])


async def test_simulate_validates_like_load_and_caps_days(api) -> None:
    client, engine, keys = api
    sup = YAML | bearer(keys["supervisor"])
    before = await snapshot(engine)
    bad = DEFAULT_YAML.replace("version: 1", "version: 9").replace("tier: firm", "tier: loud")
    r = await client.post("/policies/simulate", content=bad, headers=sup)
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail["message"] == "policy rejected"
    assert [e["loc"] for e in detail["errors"]] == ["steps.1.tier"]
    # the same answer as loading it
    assert (await client.post("/policies", content=bad, headers=sup)).json()["detail"] == detail
    # not a higher version than every stored one
    r = await client.post("/policies/simulate", content=DEFAULT_YAML, headers=sup)
    assert r.status_code == 422 and r.json()["detail"]["errors"][0]["loc"] == "version"
    r = await client.post("/policies/simulate", content="steps: [", headers=sup)
    assert r.status_code == 422 and "not valid YAML" in r.json()["detail"]["errors"][0]["msg"]
    ok = DEFAULT_YAML.replace("version: 1", "version: 50")
    for days in (0, 91):
        r = await client.post("/policies/simulate", params={"days": days}, content=ok, headers=sup)
        assert r.status_code == 422, (days, r.text)
    r = await client.post("/policies/simulate", params={"days": 90}, content=ok, headers=sup)
    assert r.status_code == 200 and r.json()["days"] == 90
    assert await snapshot(engine) == before
