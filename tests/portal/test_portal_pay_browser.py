"""Paying part of a debt from the link in a real SMS, in Chromium at phone size, on the whole platform run as
processes (`Platform`, as `arrears up` runs it, with the checkout emulator): the sheet's account gets its
reminder SMS (QUO emulator's ledger) whose link opens the portal; a wrong answer is refused, the right one
shows the balance; paying part of it at the checkout emulator's hosted page sends the signed webhook to
ingest, which applies the payment and publishes `account-changed`; the segmenter's balance drops and counts a
partial payment (the sequence continues for the rest, per the default policy) and the portal shows the new
balance. Screenshots are saved under `<pytest tmp>/screenshots/`."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import phonenumbers
import pytest
from arrears_cli.demo_sheet import load_into_emulator
from arrears_cli.stack.platform import SPREADSHEET_ID, Platform
from arrears_cli.stack.postgres import EmbeddedPostgres
from browser.conftest import LAUNCH_ARGS, chromium_path
from e2e.support import auth, running_platform
from e2e.test_loop import LOCALES, Account, Locale, ingest_sheet, segmenter_account, sheet_rows
from playwright.sync_api import sync_playwright

from .test_portal_browser import PHONE

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def platform(pg: EmbeddedPostgres, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    overrides = {"portal": {"ARREARS_PORTAL_BRAND_NAME": "Acme Water", "ARREARS_PORTAL_PAY_MIN_MINOR": "500"}}
    with running_platform(pg, tmp_path_factory, "portal-pay", overrides) as p:
        yield p


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("screenshots")
    print(f"portal screenshots: {path}")
    return path


def wait_for(what: str, check: Callable[[], Any], timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def lawful_now(now: datetime) -> Locale:
    """The locale whose local time is closest to 13:30 today, weekday or not (no default rule blocks
    weekends), so a reminder can lawfully go out at once whenever the test runs."""

    def distance(loc: Locale) -> float:
        local = now.astimezone(ZoneInfo(loc.zone))
        return abs(local.hour + local.minute / 60 - 13.5)

    return min(LOCALES, key=distance)


def sms_link(p: Platform, phone: str) -> str | None:
    e164 = phonenumbers.format_number(phonenumbers.parse(phone), phonenumbers.PhoneNumberFormat.E164)
    ledger = httpx.get(
        p.emulator_url("quo") + "/_emulator/ledger", params={"recipient": e164}, timeout=10
    ).json()
    for entry in ledger["entries"]:
        m = re.search(r"(http://\S+/p/[A-Za-z0-9_-]+)", entry["content"] or "")
        if m:
            return m.group(1)
    return None


def test_pay_part_from_the_sms_link(platform: Platform, shots: Path) -> None:
    p = platform
    loc = lawful_now(datetime.now(UTC))
    today = datetime.now(ZoneInfo(loc.zone)).date()
    debtor = Account("PAY-A01", loc.phone(1), "pay.a01@example.com", 5)
    load_into_emulator(p.emulator_url("sheets"), SPREADSHEET_ID, sheet_rows([debtor], loc, today, []))
    assert ingest_sheet(p)["accepted"] == 1
    try:
        link = wait_for("the reminder SMS with its link", lambda: sms_link(p, debtor.phone))
    except AssertionError:
        ledger = httpx.get(p.emulator_url("quo") + "/_emulator/ledger", timeout=10).json()
        raise AssertionError(f"no SMS link: {segmenter_account(p, debtor.id)} {ledger}") from None
    assert link.startswith(p.service_url("portal") + "/p/")
    tail = re.sub(r"\D", "", debtor.phone)[-4:]
    before = wait_for("the segmenter's account", lambda: segmenter_account(p, debtor.id))

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS)
        try:
            page = browser.new_context(**PHONE).new_page()
            assert (resp := page.goto(link)) is not None and resp.status == 200
            assert "1,234.50" not in page.content()
            page.get_by_label("Last 4 digits of your phone number").fill("0000" if tail != "0000" else "1111")
            page.get_by_role("button", name="Continue").click()
            assert page.get_by_role("alert").inner_text().startswith("That does not match")
            assert "1,234.50" not in page.content()
            page.get_by_label("Last 4 digits of your phone number").fill(tail)
            page.get_by_role("button", name="Continue").click()
            page.wait_for_url(f"{p.service_url('portal')}/portal/account")
            assert "$1,234.50" in page.content()
            assert page.locator("script").count() == 0
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
            page.screenshot(path=str(shots / "portal-pay.png"), full_page=True)

            page.get_by_label("Or pay part: amount (USD)").fill("2000")  # more than owed: refused
            page.get_by_role("button", name="Pay this amount").click()
            assert "more than you owe" in page.get_by_role("alert").inner_text()
            page.get_by_label("Or pay part: amount (USD)").fill("200.50")
            page.get_by_role("button", name="Pay this amount").click()
            page.wait_for_url(re.compile(re.escape(p.emulator_url("checkout")) + r"/c/pay/cs_test_\w+"))
            assert "200.50 USD" in page.content()
            page.screenshot(path=str(shots / "checkout-hosted.png"), full_page=True)
            page.get_by_role("button", name=re.compile("^Pay ")).click()
            page.wait_for_url(
                re.compile(re.escape(p.service_url("portal")) + r"/portal/paid\?session_id=cs_test_\w+")
            )
            assert "$200.50" in page.get_by_role("status").inner_text()
            page.screenshot(path=str(shots / "portal-paid.png"), full_page=True)

            # the webhook reached ingest, which published the payment: the balance drops everywhere
            after = wait_for(
                "the segmenter to apply the payment",
                lambda: (
                    (a := segmenter_account(p, debtor.id)) and a["balance_minor"] == 123_450 - 20_050 and a
                ),
            )
            assert after["partial_payments"] == before.get("partial_payments", 0) + 1, after
            assert after["status"] not in ("paid", "closed"), (
                after
            )  # the rest is still owed: sequence continues

            def portal_shows_new_balance() -> bool:
                page.goto(f"{p.service_url('portal')}/portal/account")
                return "$1,034.00" in page.content()

            wait_for("the portal's balance", portal_shows_new_balance, timeout=30)
            page.screenshot(path=str(shots / "portal-after-payment.png"), full_page=True)
        finally:
            browser.close()

    hooks = httpx.get(p.emulator_url("checkout") + "/_emulator/webhooks", timeout=10).json()
    assert hooks["webhooks_given_up"] == 0 and hooks["webhooks_delivered"] == 2, hooks
    payments = [
        e
        for e in httpx.get(p.emulator_url("checkout") + "/_emulator/ledger", timeout=10).json()["entries"]
        if e["operation"] == "payment"
    ]
    assert len(payments) == 1 and payments[0]["details"]["amount"] == 20_050
    # one payment in ingest however many events announced it
    payments_api = httpx.get(
        f"{p.service_url('ingest')}/ingest/rejects", headers=auth(p, "supervisor"), timeout=10
    ).json()
    assert not [r for r in payments_api["items"] if r.get("source") == "payment"], payments_api
