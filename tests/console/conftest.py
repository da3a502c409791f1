"""Console fixtures: a browser-like test client with CSRF ON, signing in through the real login form."""

from __future__ import annotations

import re

import pytest

from app.auth import SESSION_ID
from tests.conftest import build_app

LOGIN = "/admin/login"
_CSRF_INPUT = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"')


@pytest.fixture(scope="session")
def console_app(test_env, migrated_database):
    """The app with CSRF protection on, as in production (whatever TestConfig may say)."""
    app = build_app(test_env, WTF_CSRF_ENABLED=True)
    assert app.config["WTF_CSRF_ENABLED"] is True
    return app


class ConsoleClient:
    """A test client that fills forms as a browser does: the CSRF token comes from the page it was served on."""

    def __init__(self, client) -> None:
        self.client = client

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)

    def csrf_token(self, page: str) -> str:
        html = self.client.get(page).get_data(as_text=True)
        match = _CSRF_INPUT.search(html)
        assert match, f"no csrf_token on {page}"
        return match.group(1) or match.group(2)

    def submit(self, path: str, data: dict | None = None, *, form_page: str | None = None, csrf: bool = True):
        """POST `data` to `path` with the token of `form_page` (default: `path` itself)."""
        body = dict(data or {})
        if csrf:
            body["csrf_token"] = self.csrf_token(form_page or path)
        return self.client.post(path, data=body)

    def login(self, secret: str, next_path: str | None = None):
        path = LOGIN + (f"?next={next_path}" if next_path else "")
        body = {"admin_key": secret, **({"next": next_path} if next_path else {})}
        return self.submit(LOGIN, body, form_page=path)

    def logout(self):
        return self.submit("/admin/logout", form_page="/admin/")

    def session_id(self) -> str | None:
        with self.client.session_transaction() as session:
            return session.get(SESSION_ID)


@pytest.fixture
def console(console_app, tx):
    """An anonymous browser on the console."""
    return ConsoleClient(console_app.test_client())


@pytest.fixture
def console_as(console_app, tx, make_key):
    """`console_as("support")`: a browser signed in with a new key of that role."""

    def signed_in(role: str = "admin") -> ConsoleClient:
        browser = ConsoleClient(console_app.test_client())
        resp = browser.login(make_key(role))
        assert resp.status_code == 302, resp.get_data(as_text=True)
        return browser

    return signed_in
