"""People in control, end to end (issue 6): every service its own OS process, on the real broker and
PostgreSQL, sends counted at the provider emulators' ledgers.

- a promise to pay by SMS reply pauses dunning; the promised date passes unpaid (escalation restarted with
  its clock three days ahead, grace 0 days) -> the promise is broken -> escalation publishes
  `resume_dunning` -> the segmenter makes the next step due now -> that notice goes out exactly once;
- a supervisor pauses an account through the escalation API: while paused (the segmenter's clock 30 days
  ahead, when its next step is due) nothing is sent; after `resume` the step goes out exactly once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from arrears_cli.demo_sheet import load_into_emulator
from arrears_cli.stack.platform import SPREADSHEET_ID, Platform
from arrears_cli.stack.postgres import EmbeddedPostgres

from .support import auth, run_explained, running_platform
from .test_loop import (
    DAY_S,
    Account,
    cases,
    emails_to,
    ingest_sheet,
    ledger,
    pick_locale,
    reply_sms,
    segmenter_account,
    sheet_rows,
    sms_to,
    wait_counts,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def platform(pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    overrides = {
        "escalation": {"ARREARS_ESCALATION_THRESHOLDS": json.dumps({"broken_promise.grace_days": 0})}
    }
    with running_platform(pg, tmp_path_factory, "e2e-overrides", overrides) as p:
        yield p


def api(p: Platform, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = httpx.post(
        p.service_url("escalation") + path,
        json=body,
        headers=auth(p, "supervisor"),
        timeout=10,
    )
    assert r.status_code == 202, r.text
    return dict(r.json())


def timeline_kinds(p: Platform, account_id: str) -> set[str]:
    r = httpx.get(
        f"{p.service_url('escalation')}/accounts/{account_id}/timeline",
        headers=auth(p),
        timeout=10,
    )
    if r.status_code == 503:  # just restarted, not ready yet: ask again
        return set()
    r.raise_for_status()
    return {item["kind"] for item in r.json()}


def segmenter_decisions(p: Platform, account_id: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{p.service_url('segmenter')}/accounts/{account_id}/decisions",
        headers=auth(p, "collector"),
        timeout=10,
    )
    r.raise_for_status()
    return list(r.json())


def test_broken_promise_resumes_and_a_supervisor_pause_holds(platform: Platform) -> None:
    run_explained(platform, run, ["E2E-OV-P1", "E2E-OV-S2"])


def run(p: Platform) -> None:
    loc = pick_locale(datetime.now(UTC))
    today = datetime.now(ZoneInfo(loc.zone)).date()
    promiser = Account("E2E-OV-P1", loc.phone(41), "e2e.ov.p1@example.com", dpd=5)
    paused = Account("E2E-OV-S2", loc.phone(42), "e2e.ov.s2@example.com", dpd=5)
    load_into_emulator(
        p.emulator_url("sheets"), SPREADSHEET_ID, sheet_rows([promiser, paused], loc, today, [])
    )
    run_ = ingest_sheet(p)
    assert run_["accepted"] == 2, run_
    wait_counts(p, sms=2, email=2)  # the reminder (step 1) to both, on both channels

    # -- a promise to pay by SMS pauses dunning -----------------------------------------------------------
    reply_sms(p, promiser.phone, "I'll pay $200 tomorrow, promise")
    wait_for("the promise hold", lambda: (segmenter_account(p, promiser.id) or {}).get("hold") == "promise")
    wait_for("escalation tracking the promise", lambda: "promise.made" in timeline_kinds(p, promiser.id))
    wait_counts(p, sms=3, email=2)  # the promise confirmed to the customer, by SMS (the reply's channel)

    # -- the promised day passes unpaid: broken -> resume_dunning -> the next step goes out, once ---------
    p.restart_service("escalation", env={"ARREARS_ESCALATION_CLOCK_OFFSET_S": str(3 * DAY_S)})
    wait_for("the promise broken", lambda: "promise.broken" in timeline_kinds(p, promiser.id))
    wait_counts(p, sms=4, email=3)
    assert (sms_to(p, promiser.phone), emails_to(p, promiser.email)) == (3, 2)
    steps = [
        e["notice_id"].split(":")[3]
        for e in ledger(p, "gmail")["entries"]
        if e["recipient"] == promiser.email
    ]
    assert steps == ["s1", "s2"], steps
    resumed = [d for d in segmenter_decisions(p, promiser.id) if d["rule_id"] == "override.resume_dunning"]
    assert [d["outcome"] for d in resumed] == ["updated"], resumed
    assert resumed[0]["reason"].startswith(
        "rule:broken_promise: promise broken: hold cleared, step 2 due now"
    )
    assert any(c["account_id"] == promiser.id and c["reason"] == "broken_promise" for c in cases(p))
    acct = segmenter_account(p, promiser.id) or {}
    assert (acct.get("hold"), acct.get("broken_promises")) == (None, 1), acct

    # -- a supervisor pauses an account: nothing goes out while paused, its step goes once on resume -----
    api(p, f"/accounts/{paused.id}/pause", {"reason": "customer in hospital"})
    wait_for("the pause applied", lambda: (segmenter_account(p, paused.id) or {}).get("paused_by"))
    p.restart_service("segmenter", env={"ARREARS_SEGMENTER_CLOCK_OFFSET_S": str(30 * DAY_S)})  # dpd 35
    time.sleep(3)  # several ticks with step 2 due for the paused account
    assert (ledger(p, "quo")["count"], ledger(p, "gmail")["count"]) == (4, 3), "a paused account was messaged"
    assert segmenter_account(p, paused.id)["timers"][-1]["state"] == "cancelled"  # type: ignore[index]
    api(p, f"/accounts/{paused.id}/resume", {"reason": "back home"})
    wait_counts(p, sms=5, email=4)
    assert (sms_to(p, paused.phone), emails_to(p, paused.email)) == (2, 2)
    log = [(d["outcome"], d["rule_id"]) for d in segmenter_decisions(p, paused.id)]
    assert ("updated", "override.pause") in log and ("updated", "override.resume") in log
    assert any(d["reason"].endswith("(customer in hospital)") for d in segmenter_decisions(p, paused.id))
