"""Every kind of page in a real browser: headless Chromium (Debian's, installed by `make test`)
against the site served on 127.0.0.1. No console errors, no failed or external requests,
links between periods and views work, the team filter works. Screenshots are kept in
test-artifacts/screenshots/."""

import datetime as dt
import functools
import json
import shutil
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By

from conftest import DEMO_END
from usage_jobs.defs.report.queries import page_name

SCREENSHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "screenshots"


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(demo_site):
    handler = functools.partial(QuietHandler, directory=str(demo_site.site_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _visit(browser, served: str, path: str, shot: str) -> None:
    browser.get_log("performance")  # drop what earlier pages logged
    browser.get(f"{served}/{path}")
    assert browser.execute_script("return document.readyState") == "complete"
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == [], (path, errors)
    ours: set[str] = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message["params"]
        if message["method"] == "Network.requestWillBeSent":
            url = params["request"]["url"]
            if not url.startswith(("http:", "https:", "ws:", "wss:")):
                continue  # the browser's own pages (chrome:, about:, data:), not the network
            assert url.startswith(served + "/"), (path, url)
            ours.add(params["requestId"])
        elif message["method"] == "Network.loadingFailed" and params["requestId"] in ours:
            raise AssertionError(f"{path}: a request failed: {params}")
        elif message["method"] == "Network.responseReceived" and params["requestId"] in ours:
            assert params["response"]["status"] in (200, 304), (path, params["response"]["url"])  # 304: from the cache
    assert ours, path
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / f"{shot}.png"))


def test_every_kind_of_page_loads_cleanly(browser, served, demo_site):
    import duckdb

    conn = duckdb.connect(str(demo_site.warehouse), read_only=True)
    team_id = conn.execute("SELECT team_id FROM daily_usage WHERE day = ? GROUP BY team_id ORDER BY sum(requests) DESC LIMIT 1", [DEMO_END]).fetchone()[0]
    key_hash = conn.execute("SELECT key_hash FROM daily_usage WHERE day = ? GROUP BY key_hash ORDER BY sum(requests) DESC LIMIT 1", [DEMO_END]).fetchone()[0]
    day = DEMO_END.isoformat()
    pages = {
        "front": "index.html", "day-global": f"periods/{day}/index.html", "week-teams": "periods/2026-W47/teams.html",
        "month-keys": "periods/2026-11/keys.html", "rolling-models": "periods/last-30-days/models.html",
        "reconciliation": "periods/last-7-days/reconciliation.html", "team": f"periods/2026-11/teams/{page_name(team_id)}.html",
        "key": f"periods/2026-11/keys/{page_name(key_hash)}.html", "week-quality": "periods/2026-W47/quality.html",
        "month-chargeback": "periods/2026-11/chargeback.html",
        "week-tags": "periods/2026-W47/tags.html", "tag": f"periods/2026-W47/tags/{page_name('env:prod')}.html",
        "month-end-users": "periods/2026-11/end-users.html", "day-errors": f"periods/{day}/errors.html",
        "rolling-latency": "periods/last-7-days/latency.html", "quarter-cache": "periods/2026-Q4/cache.html",
    }
    for shot, path in pages.items():
        _visit(browser, served, path, shot)


def test_links_move_between_periods_and_views(browser, served):
    day = DEMO_END.isoformat()
    _visit(browser, served, f"periods/{day}/index.html", "nav-start")
    browser.find_element(By.CSS_SELECTOR, "a[rel=prev]").click()
    assert browser.current_url.endswith(f"/periods/{(DEMO_END - dt.timedelta(days=1)).isoformat()}/index.html")
    browser.find_element(By.LINK_TEXT, "Teams").click()
    assert browser.current_url.endswith("/teams.html")
    browser.find_element(By.LINK_TEXT, "Month").click()
    assert browser.current_url.endswith("/periods/2026-11/teams.html")
    browser.find_element(By.LINK_TEXT, "Estimated vs billed").click()
    assert "Estimated vs billed" in browser.find_element(By.TAG_NAME, "h1").text
    browser.find_element(By.LINK_TEXT, "IG1 usage report").click()
    assert browser.current_url.endswith("/index.html") and "Last 7 days" in browser.find_element(By.TAG_NAME, "h1").text


def test_a_days_key_and_team_open_their_page_of_the_month_at_that_days_row(browser, served, demo_site):
    """Team and key pages are the month's: a day's tables link them at the day's row, which the page marks."""
    import duckdb

    conn = duckdb.connect(str(demo_site.warehouse), read_only=True)
    day = (DEMO_END - dt.timedelta(days=1)).isoformat()
    key_hash = conn.execute("SELECT key_hash FROM daily_usage WHERE day = ? GROUP BY key_hash ORDER BY sum(requests) DESC LIMIT 1", [day]).fetchone()[0]
    team_id = conn.execute("SELECT team_id FROM daily_usage WHERE day = ? GROUP BY team_id ORDER BY sum(requests) DESC LIMIT 1", [day]).fetchone()[0]
    conn.close()
    for view, folder, identifier in (("keys.html", "keys", key_hash), ("teams.html", "teams", team_id)):
        _visit(browser, served, f"periods/{day}/{view}", f"day-{folder}-link")
        browser.find_element(By.CSS_SELECTOR, f'a[href$="/periods/2026-11/{folder}/{page_name(identifier)}.html#d-{day}"]').click()
        assert browser.current_url.endswith(f"/periods/2026-11/{folder}/{page_name(identifier)}.html#d-{day}")
        row = browser.find_element(By.CSS_SELECTOR, "tr:target")
        assert row.get_attribute("id") == f"d-{day}" and row.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"
        assert not (demo_site.site_dir / "periods" / day / folder).exists()  # no page per key or team and day
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "month-key-at-day.png"))


def test_the_team_filter_works_without_a_server_round_trip(browser, served):
    _visit(browser, served, "periods/last-7-days/teams.html", "filter-before")
    rows = browser.find_elements(By.CSS_SELECTOR, "#teams tbody tr[data-name]")
    assert len(rows) >= 10
    browser.find_element(By.ID, "team-filter").send_keys("legal")
    visible = [row.get_attribute("data-name") for row in rows if row.is_displayed()]
    assert visible == ["Legal"]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "filter-after.png"))


def test_printing_drops_the_controls_and_keeps_the_tables_on_the_paper(browser, served):
    _visit(browser, served, "periods/last-30-days/teams.html", "print-screen")
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "print"})
    browser.set_window_size(720, 1600)  # about an A4 page's printable width
    try:
        shown = browser.execute_script(
            "return ['.nav', '.filter', 'meter.bar', '#teams', 'figure'].map(s => getComputedStyle(document.querySelector(s)).display)")
        assert shown[:3] == ["none"] * 3 and "none" not in shown[3:], shown
        assert browser.execute_script("return getComputedStyle(document.querySelector('#teams tbody tr')).breakInside") == "avoid"
        assert browser.execute_script("return document.getElementById('teams').getBoundingClientRect().right <= document.documentElement.clientWidth")
        browser.save_screenshot(str(SCREENSHOTS / "print.png"))
    finally:
        browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": ""})
        browser.set_window_size(1280, 1600)


def teardown_module(module):
    # Keep the screenshots, drop anything else a crashed browser may have left.
    shutil.rmtree(SCREENSHOTS.parent / "tmp", ignore_errors=True)
