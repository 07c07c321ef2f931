"""Instalment plans and settlement offers in Chromium at phone size, the portal as its own OS process on the
real broker and Postgres: the plan form shows the schedule (amounts summing to the balance) and the chosen
plan is confirmed; a supervisor's offer (as escalation publishes it) is shown, accepted once, and then
offered for payment. Pages stay script-free, labelled and without sideways scroll. Screenshots are saved
under `<pytest tmp>/screenshots/`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from arrears_shared.events import SettlementOfferChanged
from browser.conftest import LAUNCH_ARGS, chromium_path
from playwright.sync_api import Browser, sync_playwright

from .test_offers import publish
from .test_portal import PHONE_TAIL, account, token
from .test_portal_browser import phone_page, portal_url, shots  # noqa: F401  (fixtures)


def learnt(url: str, acc: str) -> None:
    probe = token(acc, step=99)
    deadline = time.monotonic() + 30
    while httpx.post(f"{url}/p/{probe}", data={"digits": PHONE_TAIL}).status_code != 303:
        assert time.monotonic() < deadline, "the portal never learnt the account"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def accounts(portal_url: str, broker: Any) -> dict[str, str]:  # noqa: F811
    """Two accounts the portal knows, one with an open settlement offer (published before the browser
    starts: Playwright's sync API owns this thread's event loop while it is open)."""
    plan, offered = f"BPLAN-{uuid.uuid4().hex[:6]}", f"BOFF-{uuid.uuid4().hex[:6]}"
    offer = SettlementOfferChanged(
        account_id=offered, offer_id=f"so-{uuid.uuid4().hex[:8]}", status="offered", amount_minor=8_000,
        currency="USD", balance_minor=12_345, expires_on=date.today() + timedelta(days=10), actor="sup",
        role="supervisor", changed_at=datetime.now(UTC),
    )  # fmt: skip
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, publish(broker.bootstrap_servers, account(plan, balance=30_000))).result()
        pool.submit(asyncio.run, publish(broker.bootstrap_servers, account(offered))).result()
        pool.submit(asyncio.run, publish(broker.bootstrap_servers, offer, source="escalation")).result()
    learnt(portal_url, plan)
    learnt(portal_url, offered)
    return {"plan": plan, "offered": offered, "expires_on": offer.expires_on.isoformat()}


@pytest.fixture(scope="module")
def browser(accounts: dict[str, str]) -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS)
        yield b
        b.close()


def signed_in(browser: Browser, url: str, acc: str) -> Any:
    page = phone_page(browser)
    page.goto(f"{url}/p/{token(acc)}")
    page.get_by_label("Last 4 digits of your phone number").fill(PHONE_TAIL)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{url}/portal/account")
    return page


def fits(page: Any) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"))


def test_an_instalment_plan_at_phone_size(
    browser: Browser,
    portal_url: str,  # noqa: F811
    accounts: dict[str, str],
    shots: Path,  # noqa: F811
) -> None:
    page = signed_in(browser, portal_url, accounts["plan"])
    assert page.get_by_role("heading", name="Pay in instalments").is_visible()
    assert page.evaluate(
        """() => [...document.querySelectorAll('#plan-count, #plan-every, #plan-first')]
               .every(e => document.querySelector(`label[for="${e.id}"]`))"""
    )
    page.get_by_label("Number of payments").select_option("3")
    page.get_by_label("How often").select_option("month")
    page.get_by_role("button", name="See the payment schedule").click()
    assert page.get_by_role("heading", level=1).inner_text() == "Your payment schedule"
    cells = page.locator("tbody td.num").all_inner_texts()
    assert cells == ["$100.00", "$100.00", "$100.00"]
    assert page.locator("tfoot td").inner_text() == "$300.00"
    assert page.locator("script").count() == 0 and fits(page)
    page.screenshot(path=str(shots / "portal-plan.png"), full_page=True)
    page.get_by_role("button", name="Choose this plan").click()
    assert page.get_by_role("status").inner_text().startswith("Thank you. Your payment plan is recorded")
    page.context.close()


def test_a_settlement_offer_accepted_at_phone_size(
    browser: Browser,
    portal_url: str,  # noqa: F811
    accounts: dict[str, str],
    shots: Path,  # noqa: F811
) -> None:
    page = signed_in(browser, portal_url, accounts["offered"])
    section = page.get_by_role("region", name="Settlement offer")
    deadline = time.monotonic() + 30  # the offer travels on another topic than the account
    while section.count() == 0:
        assert time.monotonic() < deadline, "the portal never showed the offer"
        time.sleep(0.3)
        page.reload()
    assert f"settle your account for $80.00 if you pay by {accounts['expires_on']}" in section.inner_text()
    assert section.locator("script, input:not([type=hidden])").count() == 0 and fits(page)
    page.screenshot(path=str(shots / "portal-offer.png"), full_page=True)
    section.get_by_role("button", name="Accept this offer").click()
    assert page.get_by_role("status").inner_text().startswith("Thank you. You accepted the settlement offer")
    accepted = page.get_by_role("region", name="Settlement offer")
    assert "You accepted to settle for $80.00" in accepted.inner_text()
    assert accepted.get_by_role("button", name="Accept this offer").count() == 0
    page.screenshot(path=str(shots / "portal-offer-accepted.png"), full_page=True)
    page.context.close()
