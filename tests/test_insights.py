"""Tags, end users, errors, latency and cache: each view's export against figures the test computes itself from the
stored requests (and the price list), the masking of error messages, and the from/to picker in Chromium from the file system."""

import csv
import datetime as dt
import json
import math
from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from importlib import resources

import duckdb
import pytest
from selenium.webdriver.common.by import By

from conftest import DEMO_END

WEEK = "2026-W47"  # the demo's four days, 2026-11-17 to 2026-11-20
WEEK_DAYS = ("2026-11-17", "2026-11-20")


def _export(site, period: str, name: str) -> list[dict]:
    with open(site / "periods" / period / "exports" / f"{name}.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def requests_table(demo_site):
    conn = duckdb.connect(str(demo_site.warehouse), read_only=True)
    yield conn
    conn.close()


def test_a_request_under_several_tags_is_in_each_tag_row_and_once_in_the_totals(demo_site, requests_table):
    expected = defaultdict(lambda: [0, Decimal(0)])
    for tags, spend in requests_table.execute("SELECT request_tags, spend_usd FROM requests WHERE day BETWEEN ? AND ?", WEEK_DAYS).fetchall():
        for tag in set(tags or []) or {"(no tag)"}:
            expected[tag][0] += 1
            expected[tag][1] += spend or 0
    rows = {row["tag"]: row for row in _export(demo_site.site_dir, WEEK, "tags")}
    assert set(rows) == set(expected)
    for tag, (count, spend) in expected.items():
        assert int(rows[tag]["requests"]) == count, tag
        assert Decimal(rows[tag]["spend_usd"]) == spend.quantize(Decimal("0.000001")), tag
    total = sum(int(r["requests"]) for r in _export(demo_site.site_dir, WEEK, "daily"))
    page = (demo_site.site_dir / "periods" / WEEK / "tags.html").read_text(encoding="utf-8")
    assert f"this period's {total:,} requests appear {sum(c for c, _ in expected.values()):,} times" in page
    assert "User-Agent: OpenAI" in rows  # LiteLLM's automatic tags are shown unless hidden


def test_end_users_add_up_to_the_period_and_match_the_requests(demo_site, requests_table):
    expected = dict(requests_table.execute(
        "SELECT coalesce(end_user, '(no end user)'), count(*) FROM requests WHERE day BETWEEN ? AND ? GROUP BY ALL", WEEK_DAYS).fetchall())
    rows = {row["end_user"]: int(row["requests"]) for row in _export(demo_site.site_dir, WEEK, "end_users")}
    assert rows == expected and len(rows) > 10  # the demo's chat keys name their customers


def test_failures_are_counted_by_class_code_and_message(demo_site, requests_table):
    expected = dict(((cls, code), n) for cls, code, n in requests_table.execute(
        "SELECT error_class, error_code, count(*) FROM requests WHERE status = 'failure' AND day BETWEEN ? AND ? GROUP BY ALL", WEEK_DAYS).fetchall())
    found: dict = defaultdict(int)
    for row in _export(demo_site.site_dir, WEEK, "errors"):
        found[(row["error_class"], row["error_code"])] += int(row["failures"])
    assert dict(found) == expected and sum(expected.values()) > 0


def _nearest_rank(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[math.ceil(q / 100 * len(ordered)) - 1]


def test_latency_percentiles_are_within_the_stated_precision_of_the_exact_ones(demo_site, requests_table):
    durations = defaultdict(list)
    for model, stream, ms in requests_table.execute(
            "SELECT model, coalesce(stream, false), epoch_ms(end_time) - epoch_ms(start_time) FROM requests "
            "WHERE status = 'success' AND end_time >= start_time AND day BETWEEN ? AND ?", WEEK_DAYS).fetchall():
        durations[(model, stream == True)].append(ms)  # noqa: E712 (DuckDB's bool)
    rows = [r for r in _export(demo_site.site_dir, WEEK, "latency") if r["slice"] == "model"]
    assert {(r["model"], r["stream"] == "true") for r in rows} == set(durations)
    for row in rows:
        values = durations[(row["model"], row["stream"] == "true")]
        assert int(row["requests"]) == len(values)
        for q in (50, 95, 99):
            exact = _nearest_rank(values, q)
            assert abs(int(row[f"p{q}_ms"]) - exact) <= 0.025 * exact + 1, (row, q, exact)


def test_cache_savings_are_the_cached_tokens_at_the_list_prices(demo_site, requests_table):
    prices = json.loads(resources.files("usage_jobs").joinpath("data/prices.json").read_text())["models"]
    saved, unpriced = Decimal(0), 0
    for model, cached, input_tokens in requests_table.execute(
            "SELECT model, cached_input_tokens, input_tokens FROM requests WHERE cached_input_tokens > 0 AND day BETWEEN ? AND ?", WEEK_DAYS).fetchall():
        price = prices.get(model)
        if price is None:
            unpriced += cached
            continue
        saved += Decimal(min(cached, input_tokens)) * (Decimal(str(price["input"])) - Decimal(str(price.get("cached_input", price["input"])))) / 10**6
    total = next(r for r in _export(demo_site.site_dir, WEEK, "cache") if r["slice"] == "total")
    assert saved > 0
    assert abs(Decimal(total["savings_usd"]) - saved) <= Decimal("0.000001")
    assert int(total["unpriced_cached_tokens"]) == unpriced


@pytest.mark.parametrize(("logged", "shown"), [
    ("litellm.RateLimitError: Rate limit reached", "litellm.RateLimitError: Rate limit reached"),
    ("Invalid input: 'please summarise my medical file'", 'Invalid input: "…"'),
    ('BadRequest: messages "secret prompt" rejected', 'BadRequest: messages "…" rejected'),
    ("Received Messages=[{'role': 'user', 'content': 'hi'}] bad", "Received Messages=[…] bad"),
    ("context length is 262144 tokens, you requested 300000", "context length is N tokens, you requested N"),
    ("first line\nLiteLLM: model group 'x' failed with the error above", "first line"),
    ("x" * 200, "x" * 159 + "…"),
    ("   ", None),
])
def test_error_messages_are_stored_masked_and_short(logged, shown):
    from usage_jobs.defs.gateway.ingest import _MACROS

    conn = duckdb.connect()
    conn.execute(_MACROS)
    assert conn.execute("SELECT masked_error(?)", [logged]).fetchone()[0] == shown


def _pick(browser, url: str, start: str, end: str) -> tuple[list[str], list[list[str]], list[str]]:
    browser.get(url)
    form = browser.find_element(By.CSS_SELECTOR, ".range-form")
    browser.execute_script("arguments[0].elements.from.value = arguments[1]; arguments[0].elements.to.value = arguments[2];", form, start, end)
    form.find_element(By.CSS_SELECTOR, "button").click()
    table = browser.find_element(By.CSS_SELECTOR, ".range-result")
    assert table.is_displayed()
    header = [th.text for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    rows = [[c.text for c in tr.find_elements(By.CSS_SELECTOR, "th, td")] for tr in table.find_elements(By.CSS_SELECTOR, "tbody tr")]
    footer = [c.text for c in table.find_elements(By.CSS_SELECTOR, "tfoot th, tfoot td")]
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    return header, rows, footer


def _usd4(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.0001'), rounding=ROUND_HALF_EVEN):,}"


def test_the_range_picker_sums_any_days_as_the_day_exports_do_from_the_file_system(browser, demo_site):
    """Two days picked on the week's teams page: each team's figures are the sums of its rows in those two days' exports."""
    days = [(DEMO_END - dt.timedelta(days=n)).isoformat() for n in (2, 1)]
    expected: dict = defaultdict(lambda: [0, 0, Decimal(0)])
    for day in days:
        for row in _export(demo_site.site_dir, day, "teams"):
            if int(row["requests"]):
                team = expected[row["team_alias"] or row["team_id"]]
                team[0] += int(row["requests"])
                team[1] += int(row["total_tokens"])
                team[2] += Decimal(row["spend_usd"] or 0)
    header, rows, footer = _pick(browser, (demo_site.site_dir / "periods" / WEEK / "teams.html").as_uri(), *days)
    got = {r[0]: (int(r[header.index("Requests")].replace(",", "")), int(r[header.index("Total tokens")].replace(",", "")), r[header.index("Spend (USD)")])
           for r in rows}
    assert got == {team: (n, tokens, _usd4(spend)) for team, (n, tokens, spend) in expected.items()}
    assert footer[header.index("Requests")] == f"{sum(v[0] for v in expected.values()):,}"


def test_the_range_picker_sums_days_of_two_months_loaded_a_script_each(browser, demo_site, tmp_path):
    """Each month's rows come in a script of their own (range/<view>/<month>.js): a range across two months sums both."""
    from test_site import _site_over_two_months

    conn, site = _site_over_two_months(demo_site, tmp_path)
    days = ["2026-10-30", WEEK_DAYS[0]]  # the October day (a copy of the demo's last) and the first of November's
    from usage_jobs.defs.billing.reconcile import BUCKET_LABELS

    expected = {alias or BUCKET_LABELS.get(team_id, team_id): f"{requests:,}" for team_id, alias, requests in conn.execute(
        "SELECT d.team_id, coalesce(i.team_alias, max(d.team_alias)), sum(requests) FROM daily_usage d LEFT JOIN inventory_teams i USING (team_id) "
        "WHERE day BETWEEN ? AND ? GROUP BY d.team_id, i.team_alias", days).fetchall()}
    assert sum(int(n.replace(",", "")) for n in expected.values()) == conn.execute(
        "SELECT sum(requests) FROM daily_usage WHERE day IN (?, ?)", [DEMO_END, WEEK_DAYS[0]]).fetchone()[0]
    header, rows, _ = _pick(browser, (site / "periods" / WEEK / "teams.html").as_uri(), *days)
    assert {r[0]: r[header.index("Requests")] for r in rows} == expected


def test_the_range_picker_gives_the_exports_latency_percentiles_for_the_same_days(browser, demo_site):
    header, rows, _ = _pick(browser, (demo_site.site_dir / "periods" / WEEK / "latency.html").as_uri(), *WEEK_DAYS)
    expected = {f"{r['model']} · {'stream' if r['stream'] == 'true' else 'non-stream'}": [f"{int(r['requests']):,}", f"{int(r['p50_ms']):,}",
                f"{int(r['p95_ms']):,}", f"{int(r['p99_ms']):,}"] for r in _export(demo_site.site_dir, WEEK, "latency") if r["slice"] == "model"}
    got = {r[0]: [r[header.index(c)] for c in ("Requests", "p50 (ms)", "p95 (ms)", "p99 (ms)")] for r in rows}
    assert got == expected


def test_the_tags_picker_says_its_rows_overcount(browser, demo_site):
    header, rows, footer = _pick(browser, (demo_site.site_dir / "periods" / WEEK / "tags.html").as_uri(), *WEEK_DAYS)
    assert footer[0].startswith("Rows added up")
    assert footer[header.index("Requests")] == f"{sum(int(r['requests']) for r in _export(demo_site.site_dir, WEEK, 'tags')):,}"
    assert "more than the total" in browser.find_element(By.CSS_SELECTOR, ".range-status").text


def test_the_chargeback_picker_gives_each_teams_exact_share_of_the_month(browser, demo_site):
    expected: dict = defaultdict(Decimal)
    for line in _export(demo_site.site_dir, "2026-11", "chargeback"):
        expected[line["team_alias"] or line["team_id"]] += Decimal(line["exact_cost"])
    header, rows, _ = _pick(browser, (demo_site.site_dir / "periods" / "2026-11" / "chargeback.html").as_uri(), "2026-11-01", "2026-11-30")
    got = {r[0]: Decimal(r[header.index("Billed share (contract currency)")].replace(",", "")) for r in rows}
    assert set(got) == set(expected) and len(got) > 3
    for team, share in expected.items():
        assert abs(got[team] - share) <= Decimal("0.0001"), team
