"""Public pages in a real browser: the API reference at /docs and the HTML error page."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# Collects CSP violations as the page reports them; runs before any of the page's own scripts.
RECORD_CSP_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  const where = `${e.sourceFile}:${e.lineNumber}`;
  window.__cspViolations.push(`${e.effectiveDirective} blocked ${e.blockedURI || "inline"} at ${where}`);
});
"""


class PageLog:
    """Every request, console error and uncaught exception of one page."""

    def __init__(self, page) -> None:
        self.requests: list[str] = []
        self.console_errors: list[str] = []
        self.page_errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("console", lambda message: message.type == "error" and self.console_errors.append(message.text))
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.add_init_script(RECORD_CSP_VIOLATIONS)


def test_docs_renders_swagger_ui_from_local_assets_only(page, live_server):
    log = PageLog(page)

    with page.expect_response(f"{live_server}/openapi.json") as spec:
        response = page.goto(f"{live_server}/docs")

    assert response is not None and response.status == 200
    assert spec.value.status == 200
    audit = page.locator(".opblock").filter(has=page.locator('[data-path="/v1/admin/billing/audit"]'))
    expect(audit.first).to_be_visible()
    expect(audit.first.locator(".opblock-summary-description")).to_contain_text("List audit entries")
    expect(page.locator(".information-container .title")).to_contain_text("billops")

    # goto waited for the page's load event and the operations render from the spec: nothing more is fetched.
    assert log.requests, "the page made no requests at all"
    foreign = [url for url in log.requests if not url.startswith(f"{live_server}/")]
    assert not foreign, f"/docs reached beyond {live_server}: {foreign}"
    assert not log.console_errors, f"console errors on /docs: {log.console_errors}"
    assert page.evaluate("window.__cspViolations") == []
    assert not log.page_errors, f"uncaught errors on /docs: {log.page_errors}"


def test_unknown_page_renders_the_html_not_found_page(page, live_server):
    log = PageLog(page)

    response = page.goto(f"{live_server}/no-such-page")

    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    expect(page).to_have_title(re.compile(r"\bNot found\b"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    expect(page.locator("main")).to_contain_text("Nothing is at /no-such-page")

    foreign = [url for url in log.requests if not url.startswith(f"{live_server}/")]
    assert not foreign, f"the 404 page reached beyond {live_server}: {foreign}"
    # The 404 itself is logged as a failed resource load; nothing else may be.
    assert [text for text in log.console_errors if "404" not in text] == []
    assert page.evaluate("window.__cspViolations") == []
