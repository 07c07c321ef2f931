"""The console in a real browser, on the whole platform: a collector finds an account, works a task and adds
a note that shows on the timeline; a supervisor approves a held step and the SMS reaches the QUO emulator; a
viewer sees masked names and no actions; the aging export cannot carry a live formula."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import phonenumbers
import pytest
from arrears_cli.demo_sheet import load_into_emulator
from arrears_cli.stack.platform import SPREADSHEET_ID, Platform
from arrears_cli.stack.postgres import EmbeddedPostgres
from arrears_emulators.common import EmulatorServer
from arrears_emulators.oidc.app import IssuerState, User, create_app, new_rsa_key
from auth_support import bearer, issue_key
from e2e.support import running_platform
from e2e.test_loop import Account, pick_locale, sheet_rows
from openpyxl import load_workbook
from playwright.sync_api import Browser, Page, expect

pytestmark = pytest.mark.e2e
HIGH = "WEB-H01"  # 20,000.00 USD: held for approval, and a senior_review task (the collector works it)
HELD = "WEB-H02"  # 20,000.00 USD too: the supervisor approves its held step


@pytest.fixture(scope="module")
def idp() -> Iterator[tuple[str, IssuerState]]:
    state = IssuerState(keys=[new_rsa_key("idp-1")])
    state.users["maria"] = User(
        "maria-pass-42", {"sub": "u-maria", "email": "maria@example.com", "roles": ["collections-leads"]}
    )
    with EmulatorServer(create_app(state)) as server:
        yield server.url, state


@pytest.fixture(scope="module")
def platform(
    pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory, idp: tuple[str, IssuerState]
) -> Iterator[Platform]:
    url, state = idp
    oidc = {
        "ARREARS_AUTH_OIDC_ISSUER": url,
        "ARREARS_AUTH_OIDC_CLIENT_ID": "arrears-console",
        "ARREARS_AUTH_OIDC_ROLE_MAP": "collections-leads=supervisor",
    }
    with running_platform(pg, tmp_path_factory, "browser", every_service=oidc) as p:
        state.clients["arrears-console"] = [p.service_url("console") + "/auth/callback"]
        loc = pick_locale(datetime.now(UTC))
        accounts = [
            Account(HIGH, loc.phone(1), "web.h01@example.com", 12),
            Account(HELD, loc.phone(2), "web.h02@example.com", 12),
        ] + [
            Account(f"WEB-N{i:02d}", loc.phone(10 + i), f"web.n{i:02d}@example.com", 5 + i)
            for i in range(1, 4)
        ]
        rows = sheet_rows(accounts, loc, date.today(), [["WEB-BAD", '=HYPERLINK("x")', "", "", "-5"]])
        rows[1][4] = rows[2][4] = "$20,000.00"
        load_into_emulator(p.emulator_url("sheets"), SPREADSHEET_ID, rows)
        admin = bearer(p.admin_api_key)
        wait_for("an ingest run", lambda: _run(p, admin))
        p.locale = loc  # type: ignore[attr-defined]
        yield p


def _run(p: Platform, headers: dict[str, str]) -> bool:
    r = httpx.post(p.service_url("ingest") + "/ingest/sheet", headers=headers, timeout=60)
    return r.status_code == 200 and r.json()["status"] == "succeeded"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def sign_in(browser: Browser, p: Platform, key: str) -> Page:
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page.goto(p.service_url("console") + "/")
    expect(page).to_have_url(p.service_url("console") + "/login")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    return page


def shot(page: Page, screenshots: Path, name: str) -> None:
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def test_a_collector_finds_an_account_works_its_task_and_notes_it(
    platform: Platform, browser: Browser, screenshots: Path
) -> None:
    p = platform
    page = sign_in(browser, p, issue_key(p.database_url, "collector", name="ana"))
    shot(page, screenshots, "dashboard-collector")
    page.get_by_role("link", name="Accounts").click()
    page.get_by_label("Search").fill(HIGH)
    page.get_by_role("button", name="Search").click()
    cell = page.get_by_role("cell", name=f"Customer {HIGH}")
    wait_for("the account in the console's read model", lambda: cell.count() > 0 or page.reload() and False)
    shot(page, screenshots, "accounts")
    page.get_by_role("link", name="Worklist").click()
    task_row = page.get_by_role("row").filter(has_text=HIGH).filter(has_text="senior_review")
    wait_for("the senior review task", lambda: page.reload() or task_row.count() > 0)
    shot(page, screenshots, "worklist")
    task_row.get_by_role("button", name="Claim").click()
    expect(page.get_by_role("status")).to_contain_text("is yours")
    page.goto(p.service_url("console") + "/accounts?assignee=ana")  # search by assignee: ana's open tasks
    expect(page.get_by_role("cell", name=f"Customer {HIGH}")).to_be_visible()
    page.get_by_role("link", name="Worklist").click()
    mine = page.locator("section", has=page.get_by_role("heading", name="My tasks (1)"))
    mine.get_by_label("Outcome").fill("called, will pay Friday")
    mine.get_by_role("button", name="Complete").click()
    expect(page.get_by_role("status")).to_contain_text("done")
    page.goto(p.service_url("console") + f"/accounts/{HIGH}")
    expect(page.get_by_role("heading", name=f"Account {HIGH}")).to_be_visible()
    # a collector may pause but not send now or approve: those actions are not offered
    expect(page.get_by_text("Send now", exact=True)).to_have_count(0)
    page.get_by_label("Add a note").fill("Customer asked for a call back after 5pm")
    page.get_by_role("button", name="Add note").click()
    expect(page.get_by_role("status")).to_contain_text("note added")
    timeline = page.locator("ol.timeline")
    wait_for(
        "the note on the timeline", lambda: page.reload() or "call back after 5pm" in timeline.inner_text()
    )
    assert "audit.task.complete" in timeline.inner_text()  # the completed task, as ana
    page.get_by_text("Record a promise").click()
    page.get_by_label("Pays by").fill((date.today() + timedelta(days=7)).isoformat())
    page.get_by_label("Amount (USD)", exact=True).fill("500.00")
    page.get_by_role("button", name="Record promise").click()
    expect(page.get_by_role("status")).to_contain_text("promise to pay by")
    expect(page.locator("#h-promises + ul")).to_contain_text("pending")
    wait_for(
        "the promise on the timeline", lambda: page.reload() or "record_promise" in timeline.inner_text()
    )
    shot(page, screenshots, "account")
    audit = httpx.get(
        p.service_url("escalation") + "/audit",
        params={"entity_id": HIGH},
        headers=bearer(p.admin_api_key),
        timeout=10,
    ).json()
    assert {e["actor"] for e in audit} >= {"ana"}


def test_a_supervisor_approves_a_held_step_and_the_sms_is_sent(
    platform: Platform, browser: Browser, screenshots: Path
) -> None:
    p = platform
    phone = phonenumbers.format_number(
        phonenumbers.parse(p.locale.phone(2)),
        phonenumbers.PhoneNumberFormat.E164,  # type: ignore[attr-defined]
    )
    page = sign_in(browser, p, issue_key(p.database_url, "supervisor", name="lead"))
    page.get_by_role("link", name="Approvals").click()
    row = page.get_by_role("row").filter(has_text=HELD)
    wait_for("the held step", lambda: page.reload() or row.count() > 0)
    shot(page, screenshots, "approvals")
    assert _sms_to(p, phone) == 0  # held: nothing sent yet
    page.once("dialog", lambda d: d.accept())  # "this step will message the customer"
    row.first.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text("approved")
    wait_for("the approved SMS at the QUO emulator", lambda: _sms_to(p, phone) == 1)
    time.sleep(2)
    assert _sms_to(p, phone) == 1  # once
    decisions = httpx.get(
        f"{p.service_url('segmenter')}/accounts/{HELD}/decisions", headers=bearer(p.admin_api_key), timeout=10
    ).json()
    assert any(d["outcome"] == "approved" and "lead" in d["reason"] for d in decisions)
    # the customer answers with an instalment offer: the console shows it as a plan on the account page
    r = httpx.post(
        p.emulator_url("quo") + "/_emulator/inbound",
        json={"from": phone, "to": p.stack.quo_from_number, "content": "I can do $50 a week starting friday"},
        timeout=10,
    )
    r.raise_for_status()
    page.goto(p.service_url("console") + f"/accounts/{HELD}")
    promises = page.locator("section[aria-labelledby=h-promises]")

    def plan_shown() -> bool:
        # one read of the section per reload: the section is always there (the list only once a promise is),
        # and under load a reload can land between two reads or the page's call to escalation can time out
        page.reload()
        text = promises.inner_text(timeout=10_000)
        return all(part in text for part in ("every week", "first payment by", "(instalments)"))

    wait_for("the plan on the account page", plan_shown)
    shot(page, screenshots, "account-plan")


def _sms_to(p: Platform, e164: str) -> int:
    led = httpx.get(p.emulator_url("quo") + "/_emulator/ledger", timeout=10).json()
    return int(led["by_recipient"].get(e164, 0))


def test_a_viewer_sees_masked_names_and_no_actions(
    platform: Platform, browser: Browser, screenshots: Path
) -> None:
    p = platform
    page = sign_in(browser, p, issue_key(p.database_url, "viewer", name="finance"))
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Worklist")).to_have_count(0)
    expect(nav.get_by_role("link", name="Approvals")).to_have_count(0)
    page.get_by_role("link", name="Accounts").click()
    page.get_by_label("Search").fill("WEB-N0")
    page.get_by_role("button", name="Search").click()
    wait_for(
        "the accounts", lambda: "WEB-N01" in page.locator("main").inner_text() or page.reload() and False
    )
    body = page.locator("main").inner_text()
    assert "WEB-N01" in body and "Customer WEB-N01" not in body and "C. W." in body
    expect(page.locator("main form[method=post]")).to_have_count(0)
    expect(page.get_by_role("link", name="WEB-N01")).to_have_count(0)  # no drill-down into personal data
    shot(page, screenshots, "accounts-viewer")
    assert page.goto(p.service_url("console") + "/accounts/WEB-N01").status == 403  # type: ignore[union-attr]


def test_the_aging_export_has_no_live_formula(
    platform: Platform, browser: Browser, screenshots: Path
) -> None:
    p = platform
    page = sign_in(browser, p, issue_key(p.database_url, "viewer"))
    page.get_by_role("link", name="Aging").click()
    expect(page.get_by_role("img", name="Outstanding by aging bucket, in USD")).to_be_visible()
    shot(page, screenshots, "aging")
    with page.expect_download() as got:
        page.get_by_role("link", name="Export XLSX").click()
    wb = load_workbook(io.BytesIO(Path(got.value.path()).read_bytes()))  # the temp file has no .xlsx suffix
    cells = [c for row in wb.active.iter_rows() for c in row]
    assert cells and all(c.data_type != "f" for c in cells)
    assert any(c.value == "USD" for c in cells)
    with page.expect_download() as got:
        page.get_by_role("link", name="Export CSV").click()
    text = Path(got.value.path()).read_text()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0][0] == "bucket" and len(rows) > 1
    assert not any(cell.startswith(("=", "+", "-", "@", "\t", "\r")) for row in rows for cell in row)


def test_pages_answer_fast(platform: Platform) -> None:
    key = issue_key(platform.database_url, "supervisor")
    with httpx.Client(base_url=platform.service_url("console"), headers=bearer(key), timeout=10) as c:
        for path in ("/", "/work", "/accounts", "/aging", "/approvals", f"/accounts/{HIGH}"):
            c.get(path)  # warm
            started = time.perf_counter()
            assert c.get(path).status_code == 200, path
            assert time.perf_counter() - started < 1.0, path


def test_sign_in_with_the_identity_provider_and_out(
    platform: Platform, browser: Browser, screenshots: Path
) -> None:
    p = platform
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.goto(p.service_url("console") + "/login")
    shot(page, screenshots, "login")
    page.get_by_role("link", name="Sign in with 127.0.0.1").click()
    page.get_by_label("User name").fill("maria")
    page.get_by_label("Password").fill("maria-pass-42")
    page.get_by_role("button", name="Continue").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
    expect(page.locator("header")).to_contain_text("maria@example.com (supervisor)")
    shot(page, screenshots, "dashboard-phone")
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(p.service_url("console") + "/login")
    page.goto(p.service_url("console") + "/work")
    expect(page).to_have_url(p.service_url("console") + "/login")
