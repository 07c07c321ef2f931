"""Browser tests: Playwright (from PyPI) driving the system's Chromium against the whole platform.

Chromium comes from the system (Debian's `chromium` package: /usr/bin/chromium); `.ci/run` installs it when it
is missing, so CI never skips these tests. Without it they fail with one message saying how to install it.
Screenshots of every page visited are saved under `<pytest tmp>/screenshots/` (the path is printed).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

CHROMIUM_HINT = (
    "Chromium is needed for the browser tests: install Debian's package (`sudo apt-get install chromium`) "
    "or point ARREARS_CHROMIUM at a Chromium or Chrome binary."
)


LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    found = os.environ.get("ARREARS_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        pytest.fail(CHROMIUM_HINT, pytrace=False)
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Module-scoped: Playwright's sync API drives an event loop in this thread while it is open, which the
    asyncio tests that run after the browser tests must not inherit."""
    path = chromium_path()
    with sync_playwright() as pw:
        b = pw.chromium.launch(
            executable_path=path,
            args=LAUNCH_ARGS,
        )
        yield b
        b.close()


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config) -> Path:
    path = tmp_path_factory.mktemp("screenshots")
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"browser screenshots: {path}")
    return path
