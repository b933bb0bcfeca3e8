"""Browser fixtures shared by every browser test: one Chromium for the whole session (Playwright's sync
API allows one instance per thread), a fresh page per test on the live server, and a screenshot folder
per test directory under test-output/."""

import os
import shutil
from pathlib import Path

import pytest

OUTPUT = Path(os.environ.get("FACET_TEST_OUTPUT", Path(__file__).resolve().parents[1] / "test-output"))
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the ORM calls the tests make are still
    # plain synchronous calls, so Django's async guard is told so.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--no-first-run", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


_emptied: set[Path] = set()


@pytest.fixture
def screenshots(request) -> Path:
    """test-output/<the test's directory>/, emptied once per session."""
    folder = OUTPUT / Path(request.node.path).parent.name
    if folder not in _emptied:
        shutil.rmtree(folder, ignore_errors=True)
        _emptied.add(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_in_as(page, username: str) -> None:
    """Log in through the login form (as a user of tests.conftest.make_user); it lands on the dashboard."""
    from playwright.sync_api import expect

    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("correct-horse-battery")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
