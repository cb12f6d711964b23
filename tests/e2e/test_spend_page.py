"""Issue 13, the spend page: served by the accounting service with the report's reader
credentials, rendered in a real headless Chromium (Debian's, driven by Playwright), with a
screenshot (.run/e2e/spend-page/spend-page.png; README's copy is docs/spend-page.png).
Hostile names (a tag that is markup) are shown as text, never run."""

import base64
import shutil
import urllib.parse

import pytest

from conftest import accounting_server, start_stack
from policies import MONEY_KEYS, bearer, chat, money_policy
from stack import ROOT, request, wait_until
from test_attribution import TAGGED, PLAIN, policy as attribution_policy

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
HOSTILE_TAG = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def accounting():
    server = accounting_server("accounting-page")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def filled(request, upstreams, accounting):
    policy = attribution_policy()
    policy["version"] = "page-1"
    stack = start_stack(request, upstreams, policy, extra_clusters={"accounting": accounting.port})
    try:
        sent = 0
        for i in range(12):
            key = [TAGGED, PLAIN, MONEY_KEYS["meter"]][i % 3]
            tags = {"x-tollgate-tags": ["search", "batch", HOSTILE_TAG.replace(",", "")][i % 3]}
            r = stack.request("POST", "/v1/chat/completions", dict(bearer(key), **tags), chat("gpt-4o", user=f"page-{i}"))
            assert r.status == 200, r
            sent += 1
        for _ in range(7):  # 7 × $0.00008 of $0.001: past 50%, an alert
            r = stack.request("POST", "/v1/chat/completions", bearer(MONEY_KEYS["small"]), chat("gpt-4o"))
            assert r.status == 200, r
            sent += 1
        wait_until(lambda: len(accounting.event_ids()) >= sent, timeout=15, message="the page's events")
    finally:
        stack.stop()
    return accounting


def test_the_page_needs_the_reader_token_and_a_browser_is_asked_for_it(filled):
    r = request(filled.port, "GET", "/spend")
    assert r.status == 401 and r.headers["www-authenticate"].startswith("Basic"), r
    writer = {"authorization": f"Bearer {filled.writer_token}"}
    assert request(filled.port, "GET", "/spend", writer).status == 403, "writers may not read"
    basic = base64.b64encode(f"anyone:{filled.reader_token}".encode()).decode()
    r = request(filled.port, "GET", "/spend?days=7", {"authorization": f"Basic {basic}"})
    assert r.status == 200 and r.headers["content-type"].startswith("text/html"), r
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert HOSTILE_TAG not in r.body.decode(), "a tag is escaped, never markup"


def test_the_page_renders_in_headless_chromium_with_chart_tables_budgets_and_alerts(filled):
    sync_api = pytest.importorskip("playwright.sync_api")
    out = ROOT / ".run" / "e2e" / "spend-page"
    out.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900},
                                    extra_http_headers={"authorization": f"Bearer {filled.reader_token}"})
            dialogs = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            response = page.goto(f"http://127.0.0.1:{filled.port}/spend?days=14")
            assert response.status == 200
            assert page.title() == "Tollgate spend"
            text = page.inner_text("body")
            for expected in ("Spend per day by team", "Teams", "Keys", "Models", "Tags", "Budgets (open windows)",
                             "Alerts", "research", "tagged", "gpt-4o", "search", "small-budget"):
                assert expected in text, f"{expected!r} missing from the page"
            assert HOSTILE_TAG.replace(",", "") in text, "the hostile tag is shown as text"
            assert not dialogs, "no script ran"
            assert "percent_50" in text, "the alert is listed"
            bars = page.locator("svg rect").count()
            assert bars >= 1, "the chart has bars"
            # The small key spent 7 × $0.00008 of $0.001: 56% of it, shown as a bar, and one alert.
            row = page.locator("tr", has_text="key:").filter(has_text="56%")
            assert row.count() >= 1, page.inner_text("table >> nth=4")
            page.screenshot(path=str(out / "spend-page.png"), full_page=True)
        finally:
            browser.close()
    assert (out / "spend-page.png").stat().st_size > 10_000
