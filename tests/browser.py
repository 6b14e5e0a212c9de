"""A real headless Chromium (Debian's ``chromium``) driven by Playwright, for tests.

Tests that need it are reported as not run, with the install command, when the
browser or Playwright is missing — never as passed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import pytest  # noqa: F401 - the browser tests' runner
from system_tools import missing

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
INSTALL = "apt-get install -y chromium (and pip install -e '.[dev]' for playwright)"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def require_chromium() -> None:
    """Not run (locally) or failed (CI) with the install command when it is missing."""
    if shutil.which("chromium") is None:
        missing("chromium is not installed", INSTALL)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing("playwright is not installed", INSTALL)


@contextmanager
def browser_page() -> Iterator[tuple[object, list[str]]]:
    """A new page and the list its console errors and page errors are appended to."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page()
            page.on(
                "console",
                lambda msg: errors.append(msg.text) if msg.type == "error" else None,
            )
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            yield page, errors
        finally:
            browser.close()
