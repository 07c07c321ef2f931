"""Promises, opt-outs and failed payments end to end (issue 6): every service its own OS process, on the
real broker and PostgreSQL, sends counted at the provider emulators' ledgers.

- **A broken promise resumes the sequence.** A promise to pay by SMS reply pauses dunning; time moves on
  (the segmenter restarted with its clock 8 days ahead) past the promised date, unpaid: the segmenter
  resumes by itself and emits the next step (firm) on both channels, exactly once; escalation (its clock
  moved too) finds the promise broken and opens a broken-promise case and task, and its `resume_dunning`
  is then a no-op (nothing sent twice).
- **STOP means no further SMS, ever, while lawful email continues.** After STOP (one confirmation SMS), a
  sheet edit re-publishes the account with SMS consent still "Y", a supervisor's send-now with the gate
  override, and 60 days of dunning later: not one more SMS, every email step still goes.
- **A failed payment opens a case**: a Stripe `charge.failed` through the signed webhook -> ingest ->
  `arrears.payment.failed.v1` -> escalation -> a `failed_payment` case and follow-up task; the segmenter
  puts the account at risk and, as time moves on, asks the customer to pay again (retry 1, then 2) by SMS.
- **A promise in a reply is confirmed** to the customer by SMS, once.
- The sheet shows the contact facts (Last Contact, Intent, Promise) written back by ingest.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from arrears_cli.demo_sheet import PME_COLUMNS, load_into_emulator
from arrears_cli.stack.platform import SPREADSHEET_ID, Platform
from arrears_cli.stack.postgres import EmbeddedPostgres
from stripe import WebhookSignature

from .support import auth, run_explained, running_platform
from .test_loop import (
    DAY_S,
    Account,
    channel_state,
    emails_to,
    ingest_sheet,
    ledger,
    pick_locale,
    reply_sms,
    segmenter_account,
    sheet_rows,
    sms_texts,
    sms_to,
    wait_counts,
    wait_for,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

STRIPE_SECRET = f"whsec_{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def platform(pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    overrides = {
        "ingest": {
            "ARREARS_INGEST_WRITEBACK_CONTACT_DELAY_S": "0.5",
            "ARREARS_PAYMENTS_STRIPE_WEBHOOK_SECRET": STRIPE_SECRET,
        }
    }
    with running_platform(pg, tmp_path_factory, "e2e-promises", overrides) as p:
        yield p


def escalation_get(p: Platform, path: str) -> Any:
    r = httpx.get(
        p.service_url("escalation") + path,
        headers=auth(p),
        timeout=10,
    )
    if r.status_code == 503:  # restarting: ask again
        return None
    r.raise_for_status()
    return r.json()


def decisions(p: Platform, account_id: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{p.service_url('segmenter')}/accounts/{account_id}/decisions",
        headers=auth(p, "collector"),
        timeout=10,
    )
    if r.status_code == 503:  # restarted, still starting (a restart waits for /healthz only)
        return []
    r.raise_for_status()
    return list(r.json())


def segmenter_get(p: Platform, path: str) -> Any:
    """A segmenter read; [] while it is (re)starting."""
    r = httpx.get(p.service_url("segmenter") + path, headers=auth(p, "collector"), timeout=10)
    if r.status_code == 503:
        return []
    r.raise_for_status()
    return r.json()


def open_cases(p: Platform) -> list[dict[str, Any]]:
    """Escalation's cases; [] while it is (re)starting."""
    return list(escalation_get(p, "/cases") or [])


def email_steps(p: Platform, address: str) -> list[str]:
    return [e["notice_id"].split(":")[3] for e in ledger(p, "gmail")["entries"] if e["recipient"] == address]


def sheet_facts(p: Platform) -> dict[str, dict[str, str]]:
    r = httpx.get(f"{p.emulator_url('sheets')}/_emulator/spreadsheets/{SPREADSHEET_ID}", timeout=10)
    r.raise_for_status()
    values: list[list[str]] = r.json()["sheets"]["Accounts"]
    header = values[0]
    out: dict[str, dict[str, str]] = {}
    for row in values[1:]:
        pad = [*row, *[""] * (len(header) - len(row))]
        out[pad[0]] = dict(zip(header, (str(c) for c in pad), strict=True))
    return out


def stripe_charge_failed(p: Platform, account_id: str) -> httpx.Response:
    charge = {
        "id": f"ch_{uuid.uuid4().hex[:14]}",
        "object": "charge",
        "amount": 5000,
        "currency": "usd",
        "payment_intent": f"pi_{uuid.uuid4().hex[:14]}",
        "failure_code": "card_declined",
        "failure_message": "Your card was declined.",
        "created": int(time.time()),
        "metadata": {"account_id": account_id},
    }
    body = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "charge.failed", "data": {"object": charge}})
    sig = WebhookSignature.generate_signature_header(body, STRIPE_SECRET)
    return httpx.post(
        p.service_url("ingest") + "/ingest/payments/stripe",
        content=body.encode(),
        headers={"Stripe-Signature": sig, "content-type": "application/json"},
        timeout=10,
    )


def test_broken_promise_stop_forever_and_failed_payment(platform: Platform) -> None:
    run_explained(platform, run, ["E2E-PR-P1", "E2E-PR-S2", "E2E-PR-F3"])


def run(p: Platform) -> None:
    loc = pick_locale(datetime.now(UTC))
    today = datetime.now(ZoneInfo(loc.zone)).date()
    promiser = Account("E2E-PR-P1", loc.phone(51), "e2e.pr.p1@example.com", dpd=28)
    stopper = Account("E2E-PR-S2", loc.phone(52), "e2e.pr.s2@example.com", dpd=5)
    failing = Account("E2E-PR-F3", loc.phone(53), "e2e.pr.f3@example.com", dpd=5)
    accounts = [promiser, stopper, failing]
    rows = sheet_rows(accounts, loc, today, [])
    load_into_emulator(p.emulator_url("sheets"), SPREADSHEET_ID, rows)
    assert ingest_sheet(p)["accepted"] == 3

    # -- phase 0: the reminder (step 1) to everyone, on both channels -----------------------------------------
    wait_counts(p, sms=3, email=3)
    wait_for(
        "the last contact written back to the sheet",
        lambda: all(
            sheet_facts(p).get(a.id, {}).get("Last Contact", "").endswith(", sent") for a in accounts
        ),
    )

    # -- phase 1: a promise, a STOP, a failed payment -------------------------------------------------------------
    reply_sms(p, promiser.phone, "I'll pay $200 tomorrow, promise")
    reply_sms(p, stopper.phone, "STOP")
    declined = stripe_charge_failed(p, failing.id)
    assert declined.status_code == 200 and declined.json()["status"] == "failed", declined.text

    wait_for("the promise hold", lambda: (segmenter_account(p, promiser.id) or {}).get("hold") == "promise")
    wait_for(
        "the STOP applied", lambda: channel_state(segmenter_account(p, stopper.id), "sms").get("opted_out")
    )
    wait_for("the one opt-out confirmation", lambda: len(sms_texts(p, stopper.phone)) == 2)
    wait_for("the promise confirmed by SMS", lambda: len(sms_texts(p, promiser.phone)) == 2)
    assert "we noted your promise to pay" in sms_texts(p, promiser.phone)[-1]
    wait_for(
        "the failed payment puts the account at risk",
        lambda: (
            [r["state"] for r in segmenter_get(p, f"/accounts/{failing.id}/payment-retries")] == ["at_risk"]
        ),
    )
    wait_for(
        "a failed-payment case and its task",
        lambda: any(
            t["kind"] == "payment_follow_up"
            for t in escalation_get(p, f"/tasks?account_id={failing.id}") or []
        ),
    )
    [case] = [c for c in open_cases(p) if c["account_id"] == failing.id]
    assert (case["reason"], case["priority"]) == ("failed_payment", "high")
    assert "card_declined" in case["detail"]
    assert (segmenter_account(p, failing.id) or {}).get("balance_minor") == 123_450  # a failure pays nothing
    facts = wait_for(
        "the promise written back to the sheet",
        lambda: (f := sheet_facts(p).get(promiser.id, {})).get("Intent") == "promise_to_pay" and f,
    )
    assert facts["Promise"].startswith("200.00 USD by "), facts
    assert facts["Last Reply"].endswith(", sms"), facts

    # -- phase 2: STOP holds against a sheet edit (consent still "Y") and a supervisor's gate override -------
    stop_row = 1 + accounts.index(stopper)
    rows[stop_row][PME_COLUMNS.index("Balance")] = "$1,100.00"
    load_into_emulator(p.emulator_url("sheets"), SPREADSHEET_ID, rows)
    assert ingest_sheet(p)["updated"] == 1
    wait_for(
        "the edit applied", lambda: (segmenter_account(p, stopper.id) or {}).get("balance_minor") == 110_000
    )
    acct = segmenter_account(p, stopper.id) or {}
    sms = channel_state(acct, "sms")
    assert (sms["consent"], sms["opted_out"]) == (True, True), acct
    r = httpx.post(
        f"{p.service_url('escalation')}/accounts/{stopper.id}/send-now",
        json={"step": 0, "gate_override": True, "reason": "customer asked for the notice today"},
        headers=auth(p),
        timeout=10,
    )
    assert r.status_code == 202, r.text
    wait_counts(p, sms=5, email=4)  # the firm notice, by email only (SMS: + the promise confirmation)
    assert (sms_to(p, stopper.phone), emails_to(p, stopper.email)) == (2, 2)

    # -- phase 3: the promised date passes unpaid -> the segmenter resumes and sends the next step, once -------
    # (+ the failed payment's first retry notice by SMS: due 2 days after the failure)
    p.restart_service("segmenter", env={"ARREARS_SEGMENTER_CLOCK_OFFSET_S": str(8 * DAY_S)})
    wait_counts(p, sms=7, email=5)
    assert (sms_to(p, promiser.phone), emails_to(p, promiser.email)) == (3, 2)
    retry = [r for r in segmenter_get(p, f"/accounts/{failing.id}/payment-retries")]
    assert [(r["state"], r["retry_count"]) for r in retry] == [("at_risk", 1)], retry
    assert "did not go through" in sms_texts(p, failing.phone)[-1]
    assert email_steps(p, promiser.email) == ["s1", "s2"]
    log = [(d["outcome"], d["rule_id"]) for d in decisions(p, promiser.id)]
    assert ("updated", "promise_broken") in log, log
    acct = segmenter_account(p, promiser.id) or {}
    assert (acct.get("hold"), acct.get("broken_promises"), acct.get("history")) == (None, 1, "broken_promise")

    # ... and escalation, its clock moved on as well, opens the broken-promise case and task
    p.restart_service("escalation", env={"ARREARS_ESCALATION_CLOCK_OFFSET_S": str(8 * DAY_S)})
    wait_for(
        "a broken-promise case",
        lambda: any(
            c["account_id"] == promiser.id and c["reason"] == "broken_promise" for c in open_cases(p)
        ),
    )
    tasks = escalation_get(p, f"/tasks?account_id={promiser.id}") or []
    assert [t["kind"] for t in tasks] == ["follow_up_promise"], tasks
    # its resume_dunning reaches a segmenter that already resumed: ignored, nothing sent twice
    wait_for(
        "the rule's resume_dunning seen by the segmenter",
        lambda: (
            [d["outcome"] for d in decisions(p, promiser.id) if d["rule_id"] == "override.resume_dunning"]
            == ["ignored"]
        ),
    )
    time.sleep(2)
    assert (ledger(p, "quo")["count"], ledger(p, "gmail")["count"]) == (7, 5)

    # -- phase 4: two months on: the final notice; still no SMS to the STOP account, email goes on ------------
    p.restart_service("segmenter", env={"ARREARS_SEGMENTER_CLOCK_OFFSET_S": str(60 * DAY_S)})
    # promiser: final (s3) on both; stopper: final by email only; failing: firm (s2) on both and the failed
    # payment's second retry notice (by SMS)
    wait_counts(p, sms=10, email=8)
    assert len(sms_texts(p, stopper.phone)) == 2, "an SMS went to an opted-out customer"
    assert email_steps(p, stopper.email) == ["s1", "s2", "s3"], "lawful email must continue after STOP"
    assert email_steps(p, promiser.email) == ["s1", "s2", "s3"]
    assert (sms_to(p, promiser.phone), sms_to(p, failing.phone), emails_to(p, failing.email)) == (4, 4, 2)
    gmail = ledger(p, "gmail")
    assert all(n == 1 for n in gmail["by_notice"].values()), "a notice was emailed twice"
    suppressed = [
        d for d in decisions(p, stopper.id) if d["rule_id"] == "opt_out.sms" and d["outcome"] == "suppressed"
    ]
    assert suppressed, "the SMS of each later step is recorded as suppressed by the opt-out"
