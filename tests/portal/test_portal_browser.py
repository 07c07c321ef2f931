"""The portal in Chromium at phone size, run as its own OS process (`python -m arrears_portal`) on the real
broker and Postgres: a link shows only the verification form, a wrong answer is refused, the right one shows
what is owed, a promise is taken; a tampered link discloses nothing; pages are small, script-free and
labelled. Screenshots are saved under `<pytest tmp>/screenshots/`."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from arrears_cli.stack.ports import free_port
from browser.conftest import LAUNCH_ARGS, chromium_path
from playwright.sync_api import Browser, Page, sync_playwright

from .test_portal import PHONE_TAIL, account, publish, token

KEY = "portal-test-link-key-0123456789abcdefghij"  # the same key test_portal.token() mints with
PHONE = {
    "viewport": {"width": 390, "height": 844},
    "device_scale_factor": 2,
    "is_mobile": True,
    "has_touch": True,
}


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("screenshots")
    print(f"portal screenshots: {path}")
    return path


@pytest.fixture(scope="module")
def portal_url(
    broker: Any, fresh_database_url: Callable[..., str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "ARREARS_KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "ARREARS_DATABASE_URL": fresh_database_url("portal_browser"),
        "ARREARS_HTTP_PORT": str(port),
        "ARREARS_LINK_KEY": KEY,
        "ARREARS_PORTAL_COOKIE_SECURE": "false",
        "ARREARS_PORTAL_BRAND_NAME": "Acme Water",
        "ARREARS_PORTAL_CONTACT": "+1 555 010 0100, Mon-Fri 9-17",
        "ARREARS_RUNNER_POLL_TIMEOUT_MS": "100",
    }
    log = (tmp_path_factory.mktemp("portal-log") / "portal.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "arrears_portal"], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"portal exited: see {log.name}"
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"portal not ready: see {log.name}"
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def known_account(portal_url: str, broker: Any) -> str:
    """An account the running portal has learnt from `account-changed` (published before the browser starts:
    Playwright's sync API owns this thread's event loop while it is open)."""
    acc = f"BROW-{uuid.uuid4().hex[:8]}"
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, publish(broker.bootstrap_servers, account(acc))).result()
    probe = token(acc, step=99)
    deadline = time.monotonic() + 30
    while True:  # an unknown account answers like a wrong guess and records nothing: safe to poll
        r = httpx.post(f"{portal_url}/p/{probe}", data={"digits": PHONE_TAIL}, follow_redirects=False)
        if r.status_code == 303:
            return acc
        assert time.monotonic() < deadline, "the portal never learnt the account"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def browser(known_account: str) -> Iterator[Browser]:
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path(), args=LAUNCH_ARGS)
        yield b
        b.close()


def phone_page(browser: Browser, **kw: Any) -> Page:
    return browser.new_context(**PHONE, **kw).new_page()


def labelled(page: Page) -> bool:
    return bool(
        page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), textarea, select')]
                   .every(e => e.id && document.querySelector(`label[for="${e.id}"]`))"""
        )
    )


def test_link_verify_and_promise_at_phone_size(
    browser: Browser, portal_url: str, known_account: str, shots: Path
) -> None:
    page = phone_page(browser)
    tok = token(known_account)
    resp = page.goto(f"{portal_url}/p/{tok}")
    assert resp is not None and resp.status == 200
    assert len(resp.body()) < 50_000
    html = page.content()
    assert "Maria" not in html and "123.45" not in html and known_account not in html
    assert page.locator("script").count() == 0 and labelled(page)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
    page.screenshot(path=str(shots / "portal-verify.png"), full_page=True)

    page.get_by_label("Last 4 digits of your phone number").fill("0000")
    page.get_by_role("button", name="Continue").click()
    assert page.get_by_role("alert").inner_text().startswith("That does not match")
    assert "123.45" not in page.content()
    page.screenshot(path=str(shots / "portal-wrong.png"), full_page=True)

    page.get_by_label("Last 4 digits of your phone number").fill(PHONE_TAIL)
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(f"{portal_url}/portal/account")
    assert page.get_by_role("heading", level=1).inner_text() == "Hello Maria"
    assert "$123.45" in page.content() and labelled(page)
    page.screenshot(path=str(shots / "portal-account.png"), full_page=True)

    page.get_by_label("Date").fill((date.today() + timedelta(days=5)).isoformat())
    page.get_by_label("Amount (optional) (USD)").fill("40")
    page.get_by_role("button", name="Promise to pay").click()
    assert page.get_by_role("status").inner_text() == "Thank you. Your promise to pay is recorded."
    page.screenshot(path=str(shots / "portal-promised.png"), full_page=True)
    page.context.close()


def test_spanish_and_refused_links(
    browser: Browser, portal_url: str, known_account: str, shots: Path
) -> None:
    page = phone_page(browser, locale="es-MX", extra_http_headers={"Accept-Language": "es-MX,es;q=0.9"})
    resp = page.goto(f"{portal_url}/p/{token(known_account, step=2)}")
    assert resp is not None and resp.status == 200
    assert page.get_by_role("heading", level=1).inner_text() == "Confirme que es usted"
    page.screenshot(path=str(shots / "portal-verify-es.png"), full_page=True)
    tok = token(known_account, step=3)
    bad = tok[:-3] + ("xyz" if not tok.endswith("xyz") else "abc")
    resp = page.goto(f"{portal_url}/p/{bad}")
    assert resp is not None and resp.status == 404
    assert "no es válido" in page.content() and "Maria" not in page.content()
    assert page.locator("input").count() == 0
    page.screenshot(path=str(shots / "portal-refused-es.png"), full_page=True)
    page.context.close()
