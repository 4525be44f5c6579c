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
from helpers import payload, write
from usage_jobs import warehouse
from usage_jobs.defs.gateway.aggregates import aggregate_day
from usage_jobs.defs.gateway.ingest import ingest_day
from usage_jobs.defs.gateway.pricing import load_prices
from usage_jobs.defs.report.build import build_site
from usage_jobs.defs.report.periods import month_period
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
        "key": f"periods/2026-11/key.html?k={page_name(key_hash)}", "week-quality": "periods/2026-W47/quality.html",
        "month-chargeback": "periods/2026-11/chargeback.html",
        "week-tags": "periods/2026-W47/tags.html", "tag": f"periods/2026-W47/tag.html?t={page_name('env:prod')}",
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
    for view, folder, target in (("keys.html", "keys", f"key.html?k={page_name(key_hash)}"), ("teams.html", "teams", f"teams/{page_name(team_id)}.html")):
        _visit(browser, served, f"periods/{day}/{view}", f"day-{folder}-link")
        browser.find_element(By.CSS_SELECTOR, f'a[href$="/periods/2026-11/{target}#d-{day}"]').click()
        assert browser.current_url.endswith(f"/periods/2026-11/{target}#d-{day}")
        row = browser.find_element(By.CSS_SELECTOR, "tr:target")
        assert row.get_attribute("id") == f"d-{day}" and row.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"
        assert not (demo_site.site_dir / "periods" / day / folder).exists()  # no page per key or team and day
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "month-key-at-day.png"))


HOSTILE_KEY, LONG_KEY = "c" * 64, "d" * 64
KEY_ALIASES = {HOSTILE_KEY: "<b>x</b>", LONG_KEY: "L" * 70}
KEY_DAYS = (dt.date(2026, 11, 10), dt.date(2026, 11, 12))
ANOMALY = "<i>requests</i> 3 against a median of 1"


@pytest.fixture(scope="module")
def key_site(tmp_path_factory):
    """Two keys, one aliased with markup, one with a long alias, used on two days of a month (each day: a failure and two
    successes over two models); an anomaly with markup in its reason on the first day. The warehouse and the built site."""
    root = tmp_path_factory.mktemp("key-site")
    conn = warehouse.connect(root / "w.duckdb")
    for day in KEY_DAYS:
        lines = []
        for key_hash, alias in KEY_ALIASES.items():
            metadata = {"user_api_key_hash": key_hash, "user_api_key_alias": alias, "user_api_key_team_id": "team-k", "user_api_key_team_alias": "Team <K>"}
            for i, model in enumerate(("qwen35-35b-a3b-instruct", "qwen35-35b-a3b-instruct", "bge-m3")):
                lines.append(json.dumps(payload(f"{key_hash[0]}-{day}-{i}", start=f"{day} 09:2{i}:46.847371", metadata=metadata, model_group=model,
                                                status="failure" if i == 0 else "success", prompt_tokens=100 * (i + 1), total_tokens=100 * (i + 1) + 20)))
        write(root / "logs" / "gcs" / day.isoformat() / "batch.ndjson", "\n".join(lines) + "\n")
        ingest_day(conn, logs_dir=root / "logs", day=day, timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
        aggregate_day(conn, day)
    conn.execute("INSERT INTO key_anomalies VALUES (?, ?, 'requests', 3, 1, 9.9, ?)", [HOSTILE_KEY, KEY_DAYS[0], ANOMALY])
    build_site(conn, root / "site", timezone="UTC", billing_configured=False)
    yield conn, root / "site"
    conn.close()


def _open(browser, url: str) -> None:
    browser.get_log("browser")
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == [], url


def test_the_one_key_page_draws_the_key_in_its_address_from_the_file_system(browser, key_site):
    """The month's key.html opened from file:// (no server, no fetch): heading, KPIs, every day of the month with the key's
    figures on its days and the day of the address highlighted, models; names from the logs shown as text."""
    conn, site = key_site
    day = KEY_DAYS[0]
    page = site / "periods" / "2026-11" / "key.html"
    assert not (site / "periods" / "2026-11" / "keys").exists()
    _open(browser, f"{page.as_uri()}?k={page_name(HOSTILE_KEY)}#d-{day}")
    label = month_period(day).label
    heading = browser.find_element(By.TAG_NAME, "h1")
    assert heading.text.split("\n") == ["Key <b>x</b>", label] and heading.find_element(By.TAG_NAME, "bdi").text == "<b>x</b>"
    assert browser.title == f"\u2068<b>x</b>\u2069 — {label} — IG1 usage report"
    assert not browser.find_elements(By.CSS_SELECTOR, "main b, main i")  # the alias and the reason are text, not markup
    note = browser.find_element(By.CSS_SELECTOR, "p.note").text
    first, last = conn.execute("SELECT strftime(min(start_time) AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M'), "
                               "strftime(max(start_time) AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M') FROM requests WHERE key_hash = ?", [HOSTILE_KEY]).fetchone()
    assert note == f"sha256 {HOSTILE_KEY} · team Team <K> · status active · first request {first} · last request {last}"
    assert browser.find_element(By.CSS_SELECTOR, "p.note bdi").text == "Team <K>"

    def figures(where: str, params: list) -> tuple:
        return conn.execute("SELECT count(*), count(*) FILTER (status = 'failure'), count(*) FILTER (status = 'success'), sum(total_tokens), "
                            f"sum(input_tokens), sum(output_tokens), sum(spend_usd) FROM requests WHERE key_hash = ? {where}",
                            [HOSTILE_KEY, *params]).fetchone()

    requests, failed, successful, tokens, tokens_in, tokens_out, spend = figures("", [])
    kpis = [(k.find_element(By.CLASS_NAME, "value").text, [s.text for s in k.find_elements(By.CLASS_NAME, "sub")])
            for k in browser.find_elements(By.CSS_SELECTOR, ".kpis .kpi")]
    assert kpis == [(f"${spend:,.4f}", []), (f"{tokens:,}", [f"{tokens_in:,} in · {tokens_out:,} out"]),
                    (f"{requests:,}", [f"{successful:,} successful · {failed:,} failed"])]
    assert [li.text for li in browser.find_elements(By.CSS_SELECTOR, "section ul li")] == [f"{day} {ANOMALY}"]

    rows = browser.find_elements(By.CSS_SELECTOR, "section table")[0].find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [row.get_attribute("id") for row in rows] == [f"d-{d}" for d in month_period(day).days]
    row = browser.find_element(By.ID, f"d-{day}")
    requests, failed, _, tokens, *_, spend = figures("AND day = ?", [day])
    assert [td.text for td in row.find_elements(By.TAG_NAME, "td")] == [f"{day} abnormal", f"{requests:,}", f"{failed:,}", f"{tokens:,}", f"${spend:,.4f}"]
    assert row.find_element(By.CLASS_NAME, "flag").get_attribute("title") == ANOMALY
    assert row.find_element(By.TAG_NAME, "meter").get_attribute("value") == str(requests)
    target = browser.find_element(By.CSS_SELECTOR, "tr:target")  # drawn after load, then navigated to
    assert target.get_attribute("id") == f"d-{day}" and target.value_of_css_property("background-color") != "rgba(0, 0, 0, 0)"
    assert browser.find_element(By.ID, "d-2026-11-11").text == "2026-11-11 no requests"

    models = browser.find_elements(By.CSS_SELECTOR, "section table")[1].find_elements(By.CSS_SELECTOR, "tbody tr")
    expected = conn.execute("SELECT model, count(*), sum(total_tokens), sum(spend_usd) FROM requests WHERE key_hash = ? GROUP BY model "
                            "ORDER BY sum(spend_usd) DESC, sum(total_tokens) DESC, model", [HOSTILE_KEY]).fetchall()
    assert [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in models] == [[m, f"{n:,}", f"{t:,}", f"${s:,.4f}"] for m, n, t, s in expected]
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "key-from-file.png"))

    _open(browser, f"{page.as_uri()}?k={page_name(LONG_KEY)}")
    alias = browser.find_element(By.CSS_SELECTOR, "h1 bdi")
    assert alias.text == "L" * 59 + "…" and alias.get_attribute("title") == "L" * 70  # shortened as names.name_html(…, 60)


def test_an_unknown_or_missing_key_says_so_and_links_the_periods_keys(browser, key_site):
    _, site = key_site
    page = site / "periods" / "last-7-days" / "key.html"
    for query in ("?k=0123456789abcdef", ""):
        _open(browser, page.as_uri() + query)
        assert browser.find_element(By.TAG_NAME, "h1").text == "Key not found"
        link = browser.find_element(By.CSS_SELECTOR, "main p.notice a")
        assert link.get_attribute("href") == (site / "periods" / "last-7-days" / "keys.html").as_uri()


def test_the_keys_tables_are_drawn_from_the_file_system_and_link_each_keys_page(browser, key_site):
    """keys.html opened from file://: a row per key drawn from keys-data.js with its figures, the alias as text, a link to the
    key's page that opens it (a day's links: the month's page at the day's row)."""
    conn, site = key_site
    requests, failed, tokens, spend = conn.execute("SELECT count(*), count(*) FILTER (status = 'failure'), sum(total_tokens), sum(spend_usd) "
                                                   "FROM requests WHERE key_hash = ?", [HOSTILE_KEY]).fetchone()
    last = conn.execute("SELECT strftime(max(start_time) AT TIME ZONE 'UTC', '%Y-%m-%d %H:%M') FROM requests WHERE key_hash = ?", [HOSTILE_KEY]).fetchone()[0]
    page = f"key.html?k={page_name(HOSTILE_KEY)}"
    for slug, target in (("2026-11", page), (KEY_DAYS[0].isoformat(), f"{page}#d-{KEY_DAYS[0]}")):
        _open(browser, (site / "periods" / slug / "keys.html").as_uri())
        rows = browser.find_elements(By.CSS_SELECTOR, "#keys-every tbody tr")
        assert len(rows) == 2 and not browser.find_elements(By.CSS_SELECTOR, "main b, main i")
        row = next(r for r in rows if "<b>x</b>" in r.text)
        cells = [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        figures = (requests, failed, tokens) if slug == "2026-11" else (requests // 2, failed // 2, tokens // 2)
        day_spend = spend if slug == "2026-11" else spend / 2
        assert cells[1:9] == ["Team <K>", "active", *(f"{n:,}" for n in figures), f"${day_spend:,.4f}", "—", "1"]  # the anomaly is on the day
        assert cells[0] == f"<b>x</b> {HOSTILE_KEY[:12]}" and row.find_element(By.CSS_SELECTOR, "a bdi").text == "<b>x</b>"
        assert [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#keys-unused tbody td")] == ["Every key was used in this period."]
        if slug == "2026-11":
            assert cells[9] == last
        link = row.find_element(By.TAG_NAME, "a")
        assert link.get_attribute("href") == (site / "periods" / "2026-11").as_uri() + "/" + target
        link.click()
        assert browser.find_element(By.TAG_NAME, "h1").text.split("\n")[0] == "Key <b>x</b>"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    browser.save_screenshot(str(SCREENSHOTS / "keys-from-file.png"))


def test_an_end_users_page_draws_the_one_in_its_address_and_says_so_for_an_unknown_one(browser, served, demo_site):
    import duckdb

    conn = duckdb.connect(str(demo_site.warehouse), read_only=True)
    end_user, requests = conn.execute("SELECT end_user, count(*) FROM requests WHERE day BETWEEN DATE '2026-11-01' AND DATE '2026-11-30' "
                                      "AND end_user IS NOT NULL GROUP BY end_user ORDER BY count(*) DESC, end_user LIMIT 1").fetchone()
    conn.close()
    _visit(browser, served, "periods/2026-11/end-users.html", "end-users")
    browser.find_element(By.CSS_SELECTOR, f'a[href="end-user.html?u={page_name(end_user)}"]').click()
    heading = browser.find_element(By.TAG_NAME, "h1")
    assert heading.text.split("\n")[0] == f"End user {end_user}" and heading.find_element(By.TAG_NAME, "bdi").text == end_user
    assert browser.find_elements(By.CSS_SELECTOR, ".kpis .kpi .value")[2].text == f"{requests:,}"
    assert [h.text for h in browser.find_elements(By.CSS_SELECTOR, "main section h2")] == ["By day", "Models", "Teams"]
    assert len(browser.find_elements(By.CSS_SELECTOR, "main section")[1].find_elements(By.CSS_SELECTOR, "tbody tr")) == 30  # every day
    page = demo_site.site_dir / "periods" / "2026-11" / "end-user.html"
    for query, says in (("?u=%3Cb%3Ex%3C%2Fb%3E", "No end user <b>x</b> had requests in"), ("", "No end user is named in the address")):
        _open(browser, page.as_uri() + query)
        assert browser.find_element(By.TAG_NAME, "h1").text == "End user not found"
        assert says in browser.find_element(By.CSS_SELECTOR, "main p.notice").text and not browser.find_elements(By.CSS_SELECTOR, "main b")
        link = browser.find_element(By.CSS_SELECTOR, "main p.notice a")
        assert link.get_attribute("href") == (page.parent / "end-users.html").as_uri()


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
