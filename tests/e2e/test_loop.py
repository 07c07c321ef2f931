"""The whole collections loop, every service its own OS process, on the real broker and PostgreSQL.

sheet (Sheets emulator, read through gspread) -> ingest -> account-changed -> segmenter -> notice-due ->
dispatcher-sms (httpx -> QUO emulator) / dispatcher-email (google-api-python-client -> Gmail emulator) ->
message-sent -> escalation; customer replies arrive as signed QUO webhooks -> responses -> reply-received.

What is proved, counted at the provider emulators' ledgers:
- every due notice is sent exactly once, on every channel the account consented to, and nothing else is sent;
- a bad sheet row is rejected with its row number and reason while the good rows flow;
- a STOP reply stops every later SMS to that account while its email continues;
- an account marked paid in the sheet gets nothing more;
- the tone escalates in order: an account first seen 35 or 65 days past due gets the reminder first;
- time moves on (the segmenter restarted with its clock 30, then 45 days ahead): the next tier goes out,
  once, and the final notice only after the firm one;
- a reply asking for a call (SMS) or disputing the debt (email, read from the Gmail mailbox) opens a case,
  and a final notice with no reply opens a no-response case.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import phonenumbers
import pytest
from arrears_cli.demo_sheet import PME_COLUMNS, load_into_emulator
from arrears_cli.stack.platform import SPREADSHEET_ID, Platform
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_shared import topology
from prometheus_client.parser import text_string_to_metric_families

from .support import auth, run_explained, running_platform

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

WAIT_S = 90.0
DAY_S = 86_400
DEFAULT_POLICY = (
    Path(__file__).resolve().parents[2] / "services/segmenter/src/arrears_segmenter/policies/default.yaml"
)


@dataclass(frozen=True)
class Locale:
    """A place whose debtors we can lawfully message right now (local time well inside every window)."""

    country: str
    state: str
    zone: str
    phone: Callable[[int], str]


LOCALES = (
    Locale("US", "NY", "America/New_York", lambda i: f"+1 212 555 01{i:02d}"),
    Locale("US", "CA", "America/Los_Angeles", lambda i: f"+1 415 555 01{i:02d}"),
    Locale("US", "HI", "Pacific/Honolulu", lambda i: f"+1 808 555 01{i:02d}"),
    Locale("GB", "", "Europe/London", lambda i: f"+44 20 7946 0{i:03d}"),
    Locale("IN", "", "Asia/Kolkata", lambda i: f"+91 98765 4{i:04d}"),
    Locale("JP", "", "Asia/Tokyo", lambda i: f"+81 90 1234 5{i:03d}"),
    Locale("AU", "", "Australia/Sydney", lambda i: f"+61 491 570 1{i:02d}"),
)


def pick_locale(now: datetime) -> Locale:
    """The locale whose local time is closest to 13:30 (the run takes a few minutes), a weekday preferred.
    Being well inside every contact window (09:30-18:30) outweighs the weekday: the shipped compliance table
    leaves weekends open, and a Friday-night locale chosen over a Saturday-afternoon one (what a weekday
    weight above the window's did) has its notices deferred to the morning."""

    def distance(loc: Locale) -> float:
        local = now.astimezone(ZoneInfo(loc.zone))
        hours = local.hour + local.minute / 60
        outside = not 9.5 <= hours <= 18.5
        return abs(hours - 13.5) + (2 if local.weekday() >= 5 else 0) + (48 if outside else 0)

    return min(LOCALES, key=distance)


@dataclass
class Account:
    id: str
    phone: str
    email: str
    dpd: int  # days past due at the start of the test (negative: not yet due)
    sms_consent: bool = True
    status: str = "Open"


def sheet_rows(accounts: list[Account], loc: Locale, today: date, bad: list[list[str]]) -> list[list[str]]:
    rows: list[list[str]] = [list(PME_COLUMNS)]
    for a in accounts:
        due = today - timedelta(days=a.dpd)
        rows.append(
            [
                a.id,
                f"Customer {a.id}",
                a.phone,
                a.email,
                "$1,234.50",
                "USD",
                due.isoformat(),
                "",
                "",
                loc.zone,
                loc.state,
                loc.country,
                "Y" if a.sms_consent else "N",
                "Y",
                a.status,
                "",
                "",
                "",
            ]
        )
    return rows + bad


@pytest.fixture(scope="module")
def platform(pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    overrides = {"escalation": {"ARREARS_ESCALATION_NO_RESPONSE_AFTER_S": "3"}}
    with running_platform(pg, tmp_path_factory, "e2e", overrides) as p:
        yield p


def ledger(p: Platform, emulator: str) -> dict[str, Any]:
    r = httpx.get(p.emulator_url(emulator) + "/_emulator/ledger", timeout=10)
    r.raise_for_status()
    return r.json()


def wait_for(what: str, check: Callable[[], Any], timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def ingest_sheet(p: Platform) -> dict[str, Any]:
    """`POST /ingest/sheet`, waiting out a service still starting (503) and its start-up poll (409):
    `Platform.start` returns once `/healthz` answers, which is before the first poll has run."""

    def attempt() -> dict[str, Any] | None:
        # a scheduler's call: the machine role may run the sheet
        r = httpx.post(p.service_url("ingest") + "/ingest/sheet", headers=auth(p, "service"), timeout=60)
        if r.status_code in (409, 503):
            return None
        return dict(r.json())

    run: dict[str, Any] = wait_for("an ingest run", attempt, timeout=60)
    assert run["status"] == "succeeded", run
    return run


def wait_counts(p: Platform, sms: int, email: int) -> None:
    seen: list[tuple[int, int]] = []

    def both() -> bool:
        got = (ledger(p, "quo")["count"], ledger(p, "gmail")["count"])
        assert got[0] <= sms and got[1] <= email, f"more sent than due: (sms, email) = {got}"
        seen.append(got)
        return got == (sms, email)

    try:
        wait_for(f"{sms} SMS and {email} emails", both)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; (sms, email) sent = {seen[-1]}") from None
    time.sleep(3)  # nothing more may follow: every due notice exactly once
    assert (ledger(p, "quo")["count"], ledger(p, "gmail")["count"]) == (sms, email)


def sms_to(p: Platform, phone: str) -> int:
    e164 = phonenumbers.format_number(phonenumbers.parse(phone), phonenumbers.PhoneNumberFormat.E164)
    return int(ledger(p, "quo")["by_recipient"].get(e164, 0))


def sms_texts(p: Platform, phone: str) -> list[str]:
    e164 = phonenumbers.format_number(phonenumbers.parse(phone), phonenumbers.PhoneNumberFormat.E164)
    return [e["content"] or "" for e in ledger(p, "quo")["entries"] if e["recipient"] == e164]


def emails_to(p: Platform, address: str) -> int:
    return int(ledger(p, "gmail")["by_recipient"].get(address.lower(), 0))


def caught_up(p: Platform, service: str) -> bool:
    """Whether a service has consumed everything on its assigned partitions (its `arrears_consumer_lag`
    series exist and are all 0)."""
    r = httpx.get(p.service_url(service) + "/metrics", timeout=10)
    lags = [
        float(line.rsplit(" ", 1)[1])
        for line in r.text.splitlines()
        if line.startswith("arrears_consumer_lag{") and f'service="{service}"' in line
    ]
    return bool(lags) and not any(lags)


def reply_sms(p: Platform, phone: str, text: str) -> None:
    """A customer's text, once responses has read the account events before it (a busy machine can leave
    responses behind the dispatchers; a reply from a number it has not read yet is stored as unmatched)."""
    wait_for("responses to catch up with the account events", lambda: caught_up(p, "responses"))
    e164 = phonenumbers.format_number(phonenumbers.parse(phone), phonenumbers.PhoneNumberFormat.E164)
    r = httpx.post(
        p.emulator_url("quo") + "/_emulator/inbound",
        json={"from": e164, "to": p.stack.quo_from_number, "content": text},
        timeout=10,
    )
    r.raise_for_status()


def segmenter_account(p: Platform, account_id: str) -> dict[str, Any] | None:
    r = httpx.get(
        f"{p.service_url('segmenter')}/accounts/{account_id}", headers=auth(p, "collector"), timeout=10
    )
    assert r.status_code not in (401, 403), r.text  # a refused credential must not read as "not there yet"
    return r.json() if r.status_code == 200 else None


def channel_state(acct: dict[str, Any] | None, channel: str) -> dict[str, Any]:
    """One channel of a segmenter account (`GET /accounts/{id}`), {} if the account has none."""
    return next((c for c in (acct or {}).get("channels", []) if c["channel"] == channel), {})


def cases(p: Platform) -> list[dict[str, Any]]:
    r = httpx.get(
        p.service_url("escalation") + "/cases",
        headers=auth(p),
        timeout=10,
    )
    r.raise_for_status()
    return list(r.json())


def test_the_whole_loop(platform: Platform) -> None:
    run_explained(platform, run_loop, ["E2E-A01", "E2E-B10", "E2E-F20"])


def test_running_services_match_their_declared_topology(platform: Platform) -> None:
    """After the loop ran: every running service reads exactly the topics its `topology.py` declares, with
    its own consumer group, and every topic it wrote to is one its declaration allows. (The host and the
    transaction enforce this; this is what a live process reports.)"""
    written: dict[str, set[str]] = {}
    for svc, declared in topology.declared().items():
        ready = httpx.get(platform.service_url(svc) + "/readyz", timeout=10).json()
        groups = ready["checks"]["consumers"]["detail"]
        assert set(groups) == {declared.group}, svc
        assert sorted(groups[declared.group]["topics"]) == sorted(declared.consumes), svc
        text = httpx.get(platform.service_url(svc) + "/metrics", timeout=10).text
        written[svc] = {
            s.labels["topic"]
            for fam in text_string_to_metric_families(text)
            if fam.name == "arrears_events_produced"
            for s in fam.samples
            if s.name.endswith("_total") and s.value > 0 and s.labels.get("service") == svc
        }
        assert all(declared.may_write(t) for t in written[svc]), (svc, written[svc], declared.writes)
    # the loop exercised the pipeline, so the check above looked at real writes
    assert {"account-changed", "notice-due", "message-sent", "reply-received"} <= set().union(
        *written.values()
    )
    assert "notice-due" in written["segmenter"] and "message-sent" in written["dispatcher-sms"]


def run_loop(p: Platform) -> None:
    loc = pick_locale(datetime.now(UTC))
    today = datetime.now(ZoneInfo(loc.zone)).date()
    counter = iter(range(100))

    def acct(prefix: str, dpd: int, **kw: Any) -> Account:
        i = next(counter)
        return Account(
            f"E2E-{prefix}{i:02d}", loc.phone(i), f"e2e.{prefix.lower()}{i}@example.com", dpd, **kw
        )

    reminder = [acct("A", 5) for _ in range(8)]  # step 1 (reminder) now
    email_only = acct("A", 6, sms_consent=False)  # reminder by email only
    firm = [acct("B", 35) for _ in range(6)]  # first seen past 30 days: still the reminder first
    final = [acct("C", 65) for _ in range(5)]  # past 60 days: the reminder first too (start_tier: first)
    not_yet = acct("F", -10)  # not due yet: nothing now, a reminder once 30 days pass
    accounts = [*reminder, email_only, *firm, *final, not_yet]
    for a in accounts:
        assert phonenumbers.is_valid_number(phonenumbers.parse(a.phone)), a.phone

    bad = [
        ["E2E-X1", "Bad Balance", loc.phone(90), "x1@example.com", "lots", "USD", today.isoformat()]
        + [""] * 2
        + [loc.zone, loc.state, loc.country, "Y", "Y", "Open", "", "", ""],
        ["", "No Id", loc.phone(91), "x2@example.com", "$10.00", "USD", today.isoformat()]
        + [""] * 2
        + [loc.zone, loc.state, loc.country, "Y", "Y", "Open", "", "", ""],
    ]
    rows = sheet_rows(accounts, loc, today, bad)
    load_into_emulator(p.emulator_url("sheets"), SPREADSHEET_ID, rows)

    # -- ingest: good rows flow, bad rows are rejected with their row number and reason -------------------
    run = ingest_sheet(p)
    assert (run["accepted"], run["rejected"]) == (len(accounts), 2), run
    assert httpx.get(p.service_url("ingest") + "/ingest/rejects", timeout=10).status_code == 401
    rejects = httpx.get(
        p.service_url("ingest") + "/ingest/rejects", headers=auth(p, "supervisor"), timeout=10
    )
    assert rejects.status_code == 200, rejects.text
    rejects = rejects.json()
    rejected_rows = {item["row_number"]: item for item in rejects["items"]}
    assert set(rejected_rows) == {len(accounts) + 2, len(accounts) + 3}, rejects
    assert rejected_rows[len(accounts) + 2]["column"].lower() == "balance"
    assert all(item["reason"] for item in rejects["items"])

    # -- phase 1: every due notice once, on each consented channel ----------------------------------------
    due_now = [*reminder, email_only, *firm, *final]
    sms_due = [a for a in due_now if a.sms_consent]
    wait_counts(p, sms=len(sms_due), email=len(due_now))
    for a in due_now:
        assert emails_to(p, a.email) == 1, a
        assert sms_to(p, a.phone) == (1 if a.sms_consent else 0), a
    assert sms_to(p, not_yet.phone) == 0 and emails_to(p, not_yet.email) == 0
    gmail = ledger(p, "gmail")
    assert all(n == 1 for n in gmail["by_notice"].values()) and len(gmail["by_notice"]) == len(due_now)
    tiers = Counter(e["notice_id"].split(":")[3] for e in gmail["entries"])
    assert tiers == {"s1": len(due_now)}, tiers  # never "FINAL NOTICE" as the first message

    # -- replies: STOP, a call-back request; and a payment recorded in the sheet --------------------------
    stopper, caller, payer = reminder[0], final[0], firm[0]
    reply_sms(p, stopper.phone, "STOP")
    reply_sms(p, caller.phone, "Can someone call me tomorrow afternoon about this?")
    disputer = final[1]
    wait_for("responses to catch up with the sent messages", lambda: caught_up(p, "responses"))
    r = httpx.post(
        p.emulator_url("gmail") + "/_emulator/inbound",
        json={
            "from": disputer.email,
            "subject": "Re: your account",
            "body": "I dispute this debt. I never received these services.",
        },
        timeout=10,
    )
    r.raise_for_status()
    payer_row = 1 + accounts.index(payer) + 1
    rows[payer_row - 1][PME_COLUMNS.index("Status")] = "Paid"
    rows[payer_row - 1][PME_COLUMNS.index("Balance")] = "0.00"
    load_into_emulator(p.emulator_url("sheets"), SPREADSHEET_ID, rows)
    rerun = ingest_sheet(p)
    assert (rerun["status"], rerun["updated"], rerun["created"]) == ("succeeded", 1, 0), rerun

    wait_for(
        "the STOP applied", lambda: channel_state(segmenter_account(p, stopper.id), "sms").get("opted_out")
    )
    wait_for("the one opt-out confirmation", lambda: len(sms_texts(p, stopper.phone)) == 2)
    assert "unsubscribed" in sms_texts(p, stopper.phone)[-1]
    wait_for("the payment applied", lambda: (segmenter_account(p, payer.id) or {}).get("status") == "paid")
    wait_for(
        "a dispute case from an email reply",
        lambda: any(c["account_id"] == disputer.id and c["reason"] == "dispute" for c in cases(p)),
    )
    # the customer is told their dispute was received, once, on the channel they wrote on
    wait_for("the dispute acknowledged by email", lambda: emails_to(p, disputer.email) == 2)
    wait_for(
        "a call-back case",
        lambda: any(c["account_id"] == caller.id and c["reason"] == "callback_request" for c in cases(p)),
    )

    # -- phase 2: 30 days later the next tier goes out, except where STOP, payment or a dispute say no -----
    before_sms, before_email = ledger(p, "quo")["count"], ledger(p, "gmail")["count"]
    p.restart_service("segmenter", env={"ARREARS_SEGMENTER_CLOCK_OFFSET_S": str(30 * DAY_S)})
    older = [*[a for a in firm if a is not payer], *[a for a in final if a is not disputer]]
    next_tier = [*reminder, email_only, *older, not_yet]  # firm (s2); not_yet: its reminder (s1)
    new_sms = [a for a in next_tier if a.sms_consent and a is not stopper]
    wait_counts(p, sms=before_sms + len(new_sms), email=before_email + len(next_tier))

    assert len(sms_texts(p, stopper.phone)) == 2, "an SMS went to an opted-out customer"
    assert emails_to(p, stopper.email) == 2, "lawful email must continue after an SMS STOP"
    assert (sms_to(p, payer.phone), emails_to(p, payer.email)) == (1, 1), "a paid account was messaged"
    assert sms_to(p, not_yet.phone) == 1 and emails_to(p, not_yet.email) == 1
    # the dispute pauses dunning (+ its acknowledgement, not a dunning step)
    assert (sms_to(p, disputer.phone), emails_to(p, disputer.email)) == (1, 2)
    gmail = ledger(p, "gmail")
    assert all(n == 1 for n in gmail["by_notice"].values()), "a notice was emailed twice"
    assert not any(e["notice_id"].split(":")[3] == "s3" for e in gmail["entries"]), "final before firm"

    # -- phase 3: 45 days on, the final notice after the firm one; with no reply, a no-response case -------
    before_sms, before_email = ledger(p, "quo")["count"], ledger(p, "gmail")["count"]
    p.restart_service("segmenter", env={"ARREARS_SEGMENTER_CLOCK_OFFSET_S": str(45 * DAY_S)})
    # older accounts: final (s3, 7 days after the firm one and past 60 days); not_yet: firm (s2) at 30 days
    # past due; the reminder group is 50 days past due: nothing until 60
    third = [*older, not_yet]
    wait_counts(p, sms=before_sms + sum(1 for a in third if a.sms_consent), email=before_email + len(third))
    for a in older:
        assert (sms_to(p, a.phone), emails_to(p, a.email)) == (3, 3), a
    gmail = ledger(p, "gmail")
    assert all(n == 1 for n in gmail["by_notice"].values()), "a notice was emailed twice"
    finals = {e["notice_id"].split(":")[0] for e in gmail["entries"] if e["notice_id"].split(":")[3] == "s3"}
    assert finals == {a.id for a in older}, finals
    wait_for(
        "no-response cases for every final notice",
        lambda: {c["account_id"] for c in cases(p) if c["reason"] == "no_response"} >= {a.id for a in older},
    )

    # -- the read side saw it all ----------------------------------------------------------------------------
    summary = httpx.get(p.service_url("console") + "/api/summary", headers=auth(p, "viewer"), timeout=10)
    assert summary.status_code == 200, summary.text
    timeline = httpx.get(
        f"{p.service_url('console')}/api/accounts/{stopper.id}/timeline",
        headers=auth(p, "collector"),
        timeout=10,
    ).json()
    assert timeline, "the console timeline is empty"
