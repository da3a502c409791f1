"""Browser fixtures: the app on a real loopback server, driven by Debian's chromium through Playwright.

Only /usr/bin/chromium is used (never a browser Playwright downloads). Without it the browser tests are
skipped on a workstation, but fail when CI is set: a CI run must not pass by skipping them silently.

The live server runs in another thread, outside the suite's rolled-back transaction (`tx`), so browser tests
only read public pages there; the console's tests serve an app on a database of their own (test_console.py).

`BILLOPS_SCREENSHOTS=DIR` (see `make screenshots`) makes `screenshot(page, name)` save full-page PNGs into DIR.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import build_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _unavailable(reason: str) -> None:
    """Skip locally; fail in CI, where a browser test that does not run is a broken pipeline."""
    if _in_ci():
        pytest.fail(f"{reason} (CI is set, so the browser tests must run: install Debian's chromium)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator:
    """One headless chromium for the run."""
    if not CHROMIUM.is_file() or not os.access(CHROMIUM, os.X_OK):
        _unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        _unavailable(f"the playwright package is not installed ({exc})")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def serve(app) -> Iterator[str]:
    """`app` served by werkzeug on 127.0.0.1 and a free port, in a background thread; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_server(test_env, migrated_database) -> Iterator[str]:
    """The suite's app on the migrated test database."""
    with serve(build_app(test_env)) as url:
        yield url


def screenshot(page, name: str) -> None:
    """Save a full-page PNG as DIR/NAME.png when BILLOPS_SCREENSHOTS=DIR is set (for docs/screenshots)."""
    if directory := os.environ.get("BILLOPS_SCREENSHOTS"):
        Path(directory).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)


@pytest.fixture
def page(browser) -> Iterator:
    """A fresh browser context (no cookies, no cache) and page per test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)  # headroom for a loaded CI machine; waits end as soon as ready
    page = context.new_page()
    try:
        yield page
    finally:
        context.close()
