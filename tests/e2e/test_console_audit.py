"""The console's audit page in a real headless Chromium: the root user sees the project's traces
(their own sign-in among them); a user whom the API refuses cts:trace:list sees the refusal."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_console import (  # the browser and a console server, as the console's tests run them
    browser,
    context,
    page,
    playwright,
    server,
    sign_in,
)
from tests.support.server import ServerProcess

pytestmark = [pytest.mark.serial, pytest.mark.e2e, pytest.mark.browser]
__all__ = ["browser", "context", "page", "playwright", "server"]


def test_the_audit_page_lists_recent_traces(page: Page, server: ServerProcess) -> None:
    sign_in(page, server, "acme-admin")
    page.click("#audit-link")
    expect(page.locator("h1")).to_have_text("Audit trail of cn-north-4")
    login = page.locator("#traces tbody tr[data-trace=login]").first
    expect(login).to_contain_text("acme-admin")
    expect(login).to_contain_text("201")
    expect(login).to_have_attribute("data-rating", "normal")


def test_the_audit_page_is_refused_without_permission(page: Page, server: ServerProcess) -> None:
    sign_in(page, server, "vera")
    response = page.goto(f"{server.url}/console/audit")
    assert response is not None and response.status == 403
    expect(page.locator("body")).to_contain_text("cts:trace:list")
    expect(page.locator("#traces")).to_have_count(0)
