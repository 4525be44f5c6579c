"""The published site: every period adds up, exports agree with pages, hostile names are
harmless, links resolve, publishing is all-or-nothing and unchanged periods are reused."""

import csv
import datetime as dt
import hashlib
import html
import io
import json
import re
import subprocess
import sys
import time
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import duckdb
import pytest

from conftest import DEMO_END
from helpers import export_text, payload, write
from usage_jobs import warehouse
from usage_jobs.defs.gateway.aggregates import aggregate_day
from usage_jobs.defs.gateway.ingest import ingest_day
from usage_jobs.defs.gateway.pricing import load_prices
from usage_jobs.defs.report import build as site_build
from usage_jobs.defs.report.build import build_site
from usage_jobs.defs.report.key_data import DAY_FIELDS, KEY_FIELDS, MODEL_FIELDS
from usage_jobs.defs.report.queries import page_name
from usage_jobs.defs.report.table_data import ITEM_FIELDS, KEYS_FIELDS, ROW_FIELDS, read_script

EXPORTS = ("daily", "teams", "keys", "models", "team_model_daily", "key_model_daily", "reconciliation", "focus", "anomalies", "data_quality",
           "chargeback", "tags", "end_users", "errors", "latency", "cache")


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(export_text(path), newline="")))


def _sum(rows: list[dict], column: str) -> Decimal:
    return sum((Decimal(r[column]) for r in rows if r[column] not in ("", None)), Decimal(0))


def _same(json_value, csv_text: str) -> bool:
    """A JSON value and its CSV cell say the same thing (CSV has no types; text may carry the formula guard)."""
    if json_value is None:
        return csv_text == ""
    if isinstance(json_value, bool):
        return csv_text == ("true" if json_value else "false")
    if isinstance(json_value, (int, float)):
        return Decimal(csv_text) == Decimal(str(json_value)) or abs(Decimal(csv_text) - Decimal(str(json_value))) < Decimal("0.0000005")
    return csv_text in (json_value, "'" + json_value)


def _kpi(page: str, label: str) -> str:
    return re.search(rf'<p class="label">{re.escape(label)}</p><p class="value">([^<]+)</p>', page).group(1)


def test_every_period_adds_up_across_days_teams_keys_and_models_in_pages_and_exports(demo_site):
    periods = sorted((demo_site.site_dir / "periods").iterdir())
    assert {p.name for p in periods} >= {"last-7-days", "last-30-days", "2026-11", "2026-W47", DEMO_END.isoformat()}
    for folder in periods:
        exports = folder / "exports"
        tables = {name: _csv(exports / f"{name}.csv") for name in EXPORTS}
        for name in EXPORTS:  # JSON holds the same rows as CSV, value for value
            document = json.loads(export_text(exports / f"{name}.json"))
            assert len(document["data"]) == len(tables[name]) and document["metadata"]["period"] == folder.name
            for from_json, from_csv in zip(document["data"], tables[name]):
                assert list(from_json) == list(from_csv)
                for column, value in from_json.items():
                    assert _same(value, from_csv[column]), (folder.name, name, column, value, from_csv[column])
        for column in ("requests", "failed_requests", "total_tokens", "spend_usd"):
            total = _sum(tables["daily"], column)
            for name in ("teams", "keys", "models", "team_model_daily", "key_model_daily", "end_users"):
                # Money cells are rounded to 6 decimals each: sums may differ by half a millionth per row, no more.
                slack = Decimal("0.0000005") * (len(tables[name]) + len(tables["daily"])) if column == "spend_usd" else 0
                assert abs(_sum(tables[name], column) - total) <= slack, (folder.name, name, column)
        # Each failure once in the errors export; each timed success once per latency slice; cached tokens once per cache slice.
        assert _sum(tables["errors"], "failures") == _sum(tables["daily"], "failed_requests")
        for name in ("model", "key", "day", "day-model"):
            assert _sum([r for r in tables["latency"] if r["slice"] == name], "requests") == _sum([r for r in tables["latency"] if r["slice"] == "model"],
                                                                                                "requests") <= _sum(tables["daily"], "successful_requests")
        for name in ("model", "team", "total"):
            assert _sum([r for r in tables["cache"] if r["slice"] == name], "cached_input_tokens") == _sum(tables["daily"], "cached_input_tokens")
        # Tags: a request under several tags is in each row; the page states by how much the rows overcount.
        tag_rows = _sum(tables["tags"], "requests")
        assert tag_rows >= _sum(tables["daily"], "requests")
        assert f"appear {int(tag_rows):,} times" in (folder / "tags.html").read_text(encoding="utf-8")
        # Every record read is stored, rejected or a duplicate, and what is stored is what the report counts.
        for day in tables["data_quality"]:
            assert int(day["records_read"]) == int(day["stored"]) + int(day["rejected"]) + int(day["duplicates"]), (folder.name, day)
        assert _sum(tables["data_quality"], "stored") == _sum(tables["daily"], "requests")
        quality_page = (folder / "quality.html").read_text(encoding="utf-8")
        assert _kpi(quality_page, "Stored") == f"{int(_sum(tables['daily'], 'requests')):,}"
        page = (folder / "index.html").read_text(encoding="utf-8")
        assert _kpi(page, "Requests") == f"{int(_sum(tables['daily'], 'requests')):,}"
        assert _kpi(page, "Total tokens") == f"{int(_sum(tables['daily'], 'total_tokens')):,}"
        assert _kpi(page, "Spend (USD, estimate)") == f"${_sum(tables['daily'], 'spend_usd'):,.2f}"
        # Billed cost allocated to teams adds up to IG1's bill for the period's days.
        assert _sum(tables["teams"], "billed_cost_allocated") == _sum(tables["team_model_daily"], "billed_cost_allocated")
        manifest = json.loads((exports / "manifest.json").read_text())
        assert {f["file"].removesuffix(".gz") for f in manifest["files"]} == {f"{n}.{s}" for n in EXPORTS for s in ("csv", "json")}
        assert all(f["file"].endswith(".gz") == (f.get("compression") == "gzip") for f in manifest["files"])
        for entry in manifest["files"]:
            assert hashlib.sha256((exports / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
        assert manifest["metadata"]["generated_at"] and manifest["metadata"]["source_days"]


def test_the_chargeback_statement_adds_up_to_the_billed_total_to_the_cent(demo_site):
    """Each period's chargeback.csv against the billed total computed here from the emulator's ledger (IG1's own figures)."""
    ledger = json.loads((Path(demo_site.logs_dir).parent / "billing" / "ledger.json").read_text())
    for folder in sorted((demo_site.site_dir / "periods").iterdir()):
        lines = _csv(folder / "exports" / "chargeback.csv")
        manifest = json.loads((folder / "exports" / "manifest.json").read_text())["metadata"]
        billed = sum((Decimal(str(row["cost"])) for row in ledger["data"] if manifest["start_date"] <= row["date"] <= manifest["end_date"]
                      and row["date"] <= DEMO_END.isoformat()), Decimal(0))
        assert _sum(lines, "billed_cost") == billed.quantize(Decimal("0.01"), ROUND_HALF_UP), folder.name
        assert all(re.fullmatch(r"\d+\.\d\d", line["billed_cost"]) for line in lines)  # cents, rounded once
        teams = {}
        for line in lines:
            teams.setdefault(line["team_id"], Decimal(0))
            teams[line["team_id"]] += Decimal(line["billed_cost"])
        page = (folder / "chargeback.html").read_text(encoding="utf-8")
        assert "Chargeback statement" in page and len(teams) == page.count("<h3>")
        if lines:
            assert sum(Decimal(line["share_pct"]) for line in lines) == pytest.approx(Decimal(100), abs=Decimal("0.01"))


def test_every_variance_recomputes_from_the_reconciliation_csv(demo_site):
    """(billed − estimated) ÷ estimated × 100 from the exported cells gives the exported variance to 0.01 percentage point."""
    checked = 0
    for folder in sorted((demo_site.site_dir / "periods").iterdir()):
        for row in _csv(folder / "exports" / "reconciliation.csv"):
            if row["cost_variance_pct"]:
                estimated, billed = Decimal(row["estimated_cost_usd"]), Decimal(row["billed_cost_usd"])
                assert float((billed - estimated) / estimated * 100) == pytest.approx(float(row["cost_variance_pct"]), abs=0.01), row
                checked += 1
            if row["token_variance_pct"]:
                estimated = int(row["estimated_input_tokens"]) + int(row["estimated_output_tokens"])
                billed = int(row["billed_input_tokens"]) + int(row["billed_output_tokens"])
                assert (billed - estimated) / estimated * 100 == pytest.approx(float(row["token_variance_pct"]), abs=0.01), row
    assert checked > 20


def test_the_focus_export_follows_the_focus_rules(demo_site):
    rows = _csv(demo_site.site_dir / "periods" / "last-7-days" / "exports" / "focus.csv")
    assert rows
    for row in rows:
        start, end = row["ChargePeriodStart"], row["ChargePeriodEnd"]
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT00:00:00Z", start) and end > start  # UTC, start inclusive, end exclusive
        assert (dt.datetime.fromisoformat(end) - dt.datetime.fromisoformat(start)) == dt.timedelta(days=1)
        assert re.fullmatch(r"[A-Z]{3}", row["BillingCurrency"]) and row["ServiceCategory"] == "AI and Machine Learning"
        assert row["ConsumedUnit"] == "Tokens" and int(row["ConsumedQuantity"]) >= 0 and row["ChargeCategory"] == "Usage"
        assert Decimal(row["BilledCost"]) == Decimal(row["EffectiveCost"]) >= 0


@pytest.mark.parametrize("slug", ["2026", "2026-Q4", "2026-11", "2026-W47", "last-30-days"])
def test_the_daily_tables_list_the_days_with_logs_and_the_daily_export_every_day(demo_site, slug):
    """A day not ingested (before the history, after the last day) is no row of zeros on the page; the export keeps every day."""
    folder = demo_site.site_dir / "periods" / slug
    daily = _csv(folder / "exports" / "daily.csv")
    metadata = json.loads((folder / "exports" / "manifest.json").read_text())["metadata"]
    assert [row["date"] for row in daily] == metadata["source_days"]  # the export contract: every day of the period
    logged = [row for row in daily if row["date"] not in metadata["missing_days"]]
    assert 0 < len(logged) <= 4 and all(dt.date.fromisoformat(row["date"]) <= DEMO_END for row in logged)
    page = (folder / "index.html").read_text(encoding="utf-8")
    spend, tokens, requests = (re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td>(.*?)</tr>", table, re.S)
                               for table in page.split('<section class="chart-block">')[1:4])
    cells = [re.findall(r'<td class="num">([^<]*)</td>', row) for _, row in requests]
    assert [day for day, _ in spend] == [day for day, _ in tokens] == [day for day, _ in requests] == [row["date"] for row in logged]
    assert cells == [[f"{int(row[column]):,}" for column in ("requests", "successful_requests", "failed_requests")] for row in logged]
    assert [cell for _, row in spend for cell in re.findall(r'<td class="num">\$([^<]*)</td>', row)] == [
        f"{Decimal(row['spend_usd']).quantize(Decimal('0.0001'), ROUND_HALF_UP):,}" for row in logged]


def test_every_local_link_and_image_resolves_and_nothing_points_elsewhere(demo_site):
    site = demo_site.site_dir
    pages = list(site.rglob("*.html"))
    assert len(pages) > 100
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r'(?:href|src)="([^"]+)"', text):
            assert not re.match(r"^[a-z]+:", target), (page, target)  # no other host, no scheme at all
            assert (page.parent / re.split(r"[?#]", html.unescape(target))[0]).resolve().is_file(), (page.relative_to(site), target)


def test_navigation_moves_between_periods_of_a_kind_and_between_kinds(demo_site):
    day = (demo_site.site_dir / "periods" / DEMO_END.isoformat() / "teams.html").read_text()
    previous = (DEMO_END - dt.timedelta(days=1)).isoformat()
    assert f'rel="prev" href="../../periods/{previous}/teams.html"' in day
    assert "no later day" in day
    for kind in ("2026-W47", "2026-11", "2026-Q4", "2026", "last-7-days", "last-30-days"):
        assert f'href="../../periods/{kind}/teams.html"' in day


@pytest.fixture
def hostile_site(tmp_path):
    names = {
        "script": "<script>alert('x')</script>",
        "quotes": "Team \"Q\" & 'co'",
        "formula": '=HYPERLINK("http://evil.example","click")',
        "rtl": "abc\u202edcba",
        "long": "L" * 500,
    }
    logs = tmp_path / "logs"
    lines = []
    for index, (label, name) in enumerate(names.items()):
        metadata = {"user_api_key_hash": f"{index:064x}", "user_api_key_alias": name, "user_api_key_team_id": f"team-{label}", "user_api_key_team_alias": name}
        lines.append(json.dumps(payload(f"req-{label}", metadata=metadata, model_group=name if label == "formula" else "qwen35-35b-a3b-instruct")))
    write(logs / "gcs" / "2026-11-10" / "batch.ndjson", "\n".join(lines) + "\n")
    conn = warehouse.connect(tmp_path / "w.duckdb")
    ingest_day(conn, logs_dir=logs, day=dt.date(2026, 11, 10), timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
    aggregate_day(conn, dt.date(2026, 11, 10))
    build_site(conn, tmp_path / "site", timezone="UTC", billing_configured=False)
    return tmp_path / "site", names


def test_hostile_names_are_shown_verbatim_and_harmless(hostile_site):
    site, names = hostile_site
    pages = {p: p.read_text(encoding="utf-8") for p in site.rglob("*.html")}
    for text in pages.values():
        assert "<script>alert" not in text
        assert "href=\"http://evil" not in text
    shown = "\n".join(html.unescape(t) for t in pages.values())
    for name in names.values():
        assert name in shown
    teams_csv = _csv(site / "periods" / "2026-11-10" / "exports" / "teams.csv")
    aliases = {row["team_alias"] for row in teams_csv}
    assert "'" + names["formula"] in aliases and names["script"] in aliases and names["long"] in aliases
    models = json.loads((site / "periods" / "2026-11-10" / "exports" / "models.json").read_text(encoding="utf-8"))
    assert names["formula"] in {row["model"] for row in models["data"]}  # JSON keeps the text as it is


def test_a_failed_build_leaves_the_published_site_untouched(demo_site, tmp_path, monkeypatch):
    site = tmp_path / "site"
    conn = warehouse.connect(demo_site.warehouse, read_only=True)
    build_site(conn, site, timezone="UTC", billing_configured=True)
    before = {p.relative_to(site).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in site.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while writing the range picker's data")

    monkeypatch.setattr(site_build, "write_range_data", broken)  # the last step before publishing
    with pytest.raises(RuntimeError, match="disk full"):
        build_site(conn, site, timezone="UTC", billing_configured=True, full=True)
    assert not site.with_name(site.name + ".building").exists()  # nothing left beside the site either
    after = {p.relative_to(site).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in site.rglob("*") if p.is_file()}
    assert after == before


def test_only_periods_touched_by_a_changed_day_are_rendered_again(demo_site, tmp_path):
    db = tmp_path / "usage.duckdb"
    db.write_bytes(demo_site.warehouse.read_bytes())
    site = tmp_path / "site"
    conn = warehouse.connect(db)
    first = build_site(conn, site, timezone="UTC", billing_configured=True)
    assert first.rendered_periods == first.periods
    files = {p: p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file() and p.parent.name != site.name}
    began = time.perf_counter()
    unchanged = build_site(conn, site, timezone="UTC", billing_configured=True)
    assert time.perf_counter() - began < 1.0  # nothing read but the stamps: nothing rendered, copied or rewritten
    assert (unchanged.rendered_periods, unchanged.reused_periods) == (0, first.periods)
    assert (unchanged.pages, unchanged.charts, unchanged.export_files) == (first.pages, first.charts, first.export_files)
    assert {p: p.stat().st_mtime_ns for p in site.rglob("*") if p.is_file() and p.parent.name != site.name} == files
    day = DEMO_END.isoformat()
    conn.execute("DELETE FROM daily_usage WHERE day = ? AND model = 'bge-m3'", [day])  # the day changes
    changed = build_site(conn, site, timezone="UTC", billing_configured=True)
    untouched = (site / "periods" / "2026-11-17" / "index.html").stat().st_mtime
    rendered = {p.name for p in (site / "periods").iterdir() if (p / "index.html").stat().st_mtime > untouched}
    assert {day, "2026-W47", "2026-11", "2026-Q4", "2026", "last-7-days", "last-30-days"} == rendered == set(changed.rendered)
    assert changed.rendered_periods == 7 and changed.reused_periods == first.periods - 7


def _site_over_two_months(demo_site, tmp_path) -> tuple:
    """A copy of the demo warehouse whose last day is also copied to an October day, and its site."""
    db = tmp_path / "usage.duckdb"
    db.write_bytes(demo_site.warehouse.read_bytes())
    conn = warehouse.connect(db)
    for table in ("daily_usage", "ingest_days"):
        conn.execute(f"INSERT INTO {table} BY NAME SELECT * REPLACE (DATE '2026-10-30' AS day) FROM {table} WHERE day = ?", [DEMO_END])
    site = tmp_path / "site"
    build_site(conn, site, timezone="UTC", billing_configured=True)
    return conn, site


def _range_scripts(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site / "range").as_posix(): p.read_bytes() for p in (site / "range").rglob("*.js")}


def test_a_changed_day_writes_again_only_its_months_range_scripts(demo_site, tmp_path):
    """The range picker's rows are a script per view and month: a changed day writes its month's again, every other month's stays
    the published file, and the scripts are the ones a full build writes."""
    conn, site = _site_over_two_months(demo_site, tmp_path)
    october = {p: p.stat().st_ino for p in (site / "range").glob("*/2026-10.js")}
    assert len(october) == len(list((site / "range").glob("*.js"))) == 12
    assert json.loads((site / "range" / "index.js").read_text().split(" = ", 1)[1].rstrip(";\n"))["months"] == ["2026-10", "2026-11"]
    november = (site / "range" / "index" / "2026-11.js").read_bytes()
    conn.execute("DELETE FROM daily_usage WHERE day = ? AND model = 'bge-m3'", [DEMO_END])
    build_site(conn, site, timezone="UTC", billing_configured=True)
    assert {p: p.stat().st_ino for p in october} == october  # the same files, not written again
    assert (site / "range" / "index" / "2026-11.js").read_bytes() != november
    build_site(conn, tmp_path / "full", timezone="UTC", billing_configured=True, full=True)
    assert _range_scripts(site) == _range_scripts(tmp_path / "full")


@pytest.mark.parametrize("module", ["defs/billing/statement.py", "defs/billing/allocation.py", "defs/keys/budgets.py", "names.py",
                                    "defs/report/queries.py"])
def test_a_change_to_any_code_the_pages_run_re_renders_every_period(module, monkeypatch):
    """The rounding of a statement or a budget rule shows on the pages as much as a template: a published period rendered by
    older code is not current."""
    before = site_build._source_version()
    changed = Path(site_build.names.__file__).parent / module
    read_bytes = Path.read_bytes
    monkeypatch.setattr(Path, "read_bytes", lambda path: read_bytes(path) + (b"\n# changed" if path == changed else b""))
    assert site_build._source_version() != before


def _rendered_after(conn, site, change: str, params: list) -> set[str]:
    conn.execute(change, params)
    return set(build_site(conn, site, timezone="UTC", billing_configured=True).rendered)


def test_a_changed_old_day_re_renders_exactly_the_periods_that_read_it(demo_site, tmp_path):
    """A change written straight into a per-day table (no writer has to stamp it) re-renders the periods that read its day, no
    other: a table read within the period's own days (key anomalies, billed usage), the periods holding that day; one read from
    history (key statuses and budgets read every day up to a period's end), every period ending on or after it; the ingested
    days (the KPI deltas count those of the span before), the periods holding it or the day after."""
    db = tmp_path / "usage.duckdb"
    db.write_bytes(demo_site.warehouse.read_bytes())
    site = tmp_path / "site"
    conn = warehouse.connect(db)
    build_site(conn, site, timezone="UTC", billing_configured=True)
    spans = {p.name: json.loads((p / "exports" / "manifest.json").read_text())["metadata"] for p in (site / "periods").iterdir()}
    old = DEMO_END - dt.timedelta(days=2)  # the demo holds 4 days
    holding = {slug for slug, meta in spans.items() if meta["start_date"] <= old.isoformat() <= meta["end_date"]}
    assert {old.isoformat(), "2026-W47", "2026-11", "last-30-days"} <= holding and (old + dt.timedelta(days=1)).isoformat() not in holding

    key = conn.execute("SELECT min(key_hash) FROM daily_usage WHERE day = ?", [old]).fetchone()[0]
    finding = "INSERT INTO key_anomalies VALUES (?, ?, 'requests', 99, 3, 9.9, 'requests 99 against a median of 3 (test)')"
    charts = {p: p.stat().st_ino for p in (site / "periods").glob("*/charts/*.svg")}
    assert _rendered_after(conn, site, finding, [key, old]) == holding
    assert {p: p.stat().st_ino for p in (site / "periods").glob("*/charts/*.svg")} == charts  # drawn alike: the published files kept
    anomalies = _csv(site / "periods" / old.isoformat() / "exports" / "anomalies.csv")
    assert [row["key_hash"] for row in anomalies if row["reason"].endswith("(test)")] == [key]  # the re-rendered day shows it

    bill = "UPDATE billed_usage SET cost = cost + 1 WHERE day = ? AND model IN (SELECT min(model) FROM billed_usage WHERE day = ?)"
    assert conn.execute("SELECT count(*) FROM billed_usage WHERE day = ?", [old]).fetchone()[0]
    assert _rendered_after(conn, site, bill, [old, old]) == holding

    usage = "DELETE FROM daily_usage WHERE day = ? AND rowid IN (SELECT min(rowid) FROM daily_usage WHERE day = ?)"
    assert _rendered_after(conn, site, usage, [old, old]) == {slug for slug, meta in spans.items() if meta["end_date"] >= old.isoformat()}
    redrawn = {p.relative_to(site).as_posix() for p in (site / "periods").glob("*/charts/*.svg") if charts.get(p) != p.stat().st_ino}
    assert f"periods/{old}/charts/models-spend.svg" in redrawn and f"periods/{DEMO_END}/charts/models-spend.svg" not in redrawn

    ingested = "UPDATE ingest_days SET files = files + 1 WHERE day = ?"
    assert _rendered_after(conn, site, ingested, [old]) == holding | {(old + dt.timedelta(days=1)).isoformat()}


def _key_data(folder: Path) -> dict:
    """A period's key-data.js, each key's and day's and model's arrays named by key_data's field lists."""
    document = read_script((folder / "key-data.js").read_text(encoding="ascii"))
    for key in document["keys"].values():
        assert len(key) == len(KEY_FIELDS)
    return document | {"keys": {page: dict(zip(KEY_FIELDS, key)) | {
        "days": {document["days"][day[0]]: dict(zip(DAY_FIELDS[1:], day[1:])) for day in key[KEY_FIELDS.index("days")]},
        "models": [dict(zip(MODEL_FIELDS, model)) for model in key[KEY_FIELDS.index("models")]]} for page, key in document["keys"].items()}}


def _keys_rows(folder) -> list[dict]:
    """keys.html's rows as keys-data.js gives them, with the team, owner and link each index or page name stands for."""
    document = read_script((folder / "keys-data.js").read_text(encoding="ascii"))
    assert len(set(document["teams"])) == len(document["teams"]) and len(set(document["owners"])) == len(document["owners"])
    assert len(set(document["days"])) == len(document["days"])
    rows = []
    for key in document["keys"]:
        assert len(key) == len(KEYS_FIELDS)
        row = dict(zip(KEYS_FIELDS, key))
        day = None if row["day"] is None else document["days"][row["day"]]
        assert (day is None) == (row["page"] is None or "{day}" not in document["href"]), row
        href = None if row["page"] is None else document["href"].replace("{month}", (day or "")[:7]).replace("{day}", day or "").replace("{page}", row["page"])
        rows.append(row | {"team": document["teams"][row["team"]], "owner": None if row["owner"] is None else document["owners"][row["owner"]], "href": href})
    return rows


def test_a_quarters_and_a_years_keys_link_their_page_of_the_month_at_their_last_day(demo_site):
    """Team pages and the key page exist for months and rolling periods only: a quarter's, year's, week's or day's key table links
    the key page of the month holding the key's last day in the period, with the key in the query and at that day's row, a day
    the month's key data holds for that key."""
    site = demo_site.site_dir / "periods"
    months = {}
    for slug in ("2026-Q4", "2026", "2026-W47", DEMO_END.isoformat()):
        last_day = {}
        for row in _csv(site / slug / "exports" / "key_model_daily.csv"):
            last_day[row["key_hash"]] = max(last_day.get(row["key_hash"], ""), row["date"])
        assert last_day
        assert not (site / slug / "keys").exists() and not (site / slug / "teams").exists() and not (site / slug / "key.html").exists()
        hrefs = {row["key_hash"]: row["href"] for row in _keys_rows(site / slug)}  # keys.html's rows: keys-data.js
        for key_hash, day in last_day.items():
            assert hrefs[key_hash[:12]] == f"../../periods/{day[:7]}/key.html?k={page_name(key_hash)}#d-{day}", (slug, key_hash)
            month = months.setdefault(day[:7], _key_data(site / day[:7]))
            assert day in month["days"] and month["keys"][page_name(key_hash)]["days"][day]["requests"] > 0, (slug, key_hash, day)
    assert (site / "2026-11" / "key.html").is_file() and not list(site.glob("*/keys/*.html"))


@pytest.mark.parametrize("slug", ["2026-11", "last-30-days"])
def test_every_keys_data_in_the_key_page_script_is_what_its_requests_add_up_to(demo_site, slug):
    """key-data.js against the request rows of the warehouse, summed here: each used key's totals, its days and its models."""
    import duckdb

    folder = demo_site.site_dir / "periods" / slug
    document = _key_data(folder)
    meta = json.loads((folder / "exports" / "manifest.json").read_text())["metadata"]
    assert document["days"] == meta["source_days"] and document["all"]
    conn = duckdb.connect(str(demo_site.warehouse), read_only=True)
    bounds = [meta["start_date"], meta["end_date"]]
    sums = ("count(*), count(*) FILTER (status = 'success'), count(*) FILTER (status = 'failure'), sum(input_tokens), sum(output_tokens), "
            "sum(total_tokens), coalesce(sum(spend_usd), 0), count(*) FILTER (unpriced)")
    totals = {row[0]: row[1:] for row in conn.execute(
        f"SELECT key_hash, {sums} FROM requests WHERE day BETWEEN ? AND ? GROUP BY key_hash", bounds).fetchall()}
    days, models = {}, {}
    for key_hash, day, requests, failed, tokens, spend, unpriced in conn.execute(
            "SELECT key_hash, strftime(day, '%Y-%m-%d'), count(*), count(*) FILTER (status = 'failure'), sum(total_tokens), "
            "coalesce(sum(spend_usd), 0), count(*) FILTER (unpriced) FROM requests WHERE day BETWEEN ? AND ? GROUP BY ALL", bounds).fetchall():
        days.setdefault(page_name(key_hash), {})[day] = {"requests": requests, "failed_requests": failed, "total_tokens": tokens,
                                                         "spend": f"{spend:.4f}", "unpriced_requests": unpriced}
    for key_hash, model, requests, tokens, spend, unpriced in conn.execute(
            "SELECT key_hash, model, count(*), sum(total_tokens), coalesce(sum(spend_usd), 0), count(*) FILTER (unpriced) FROM requests "
            "WHERE day BETWEEN ? AND ? GROUP BY ALL", bounds).fetchall():
        models.setdefault(page_name(key_hash), []).append((spend, {"model": model, "requests": requests, "total_tokens": tokens,
                                                                   "spend": f"{spend:.4f}", "unpriced_requests": unpriced}))
    anomalies = conn.execute("SELECT key_hash, strftime(day, '%Y-%m-%d') FROM key_anomalies WHERE day BETWEEN ? AND ?", bounds).fetchall()
    conn.close()
    assert set(document["keys"]) == {page_name(key_hash) for key_hash in totals} and len(totals) > 10
    for key_hash, (requests, successful, failed, tokens_in, tokens_out, tokens, spend, unpriced) in totals.items():
        key = document["keys"][page_name(key_hash)]
        assert key["key_hash"] == key_hash
        assert (key["requests"], key["successful_requests"], key["failed_requests"], key["input_tokens"], key["output_tokens"], key["total_tokens"],
                key["spend"], key["unpriced_requests"]) == (requests, successful, failed, tokens_in, tokens_out, tokens, f"{spend:.4f}", unpriced)
        used = {day: {name: value for name, value in row.items() if name != "anomaly"} for day, row in key["days"].items() if row["requests"]}
        assert used == days[page_name(key_hash)], (slug, key_hash)
        # largest spender first, then the most tokens, then by name (the page's order)
        expected = sorted(models[page_name(key_hash)], key=lambda m: (-m[0], -m[1]["total_tokens"], m[1]["model"]))
        assert key["models"] == [model for _, model in expected], (slug, key_hash)
    for key_hash, day in anomalies:
        assert document["keys"][page_name(key_hash)]["days"][day]["anomaly"]


@pytest.mark.parametrize("slug", ["2026-11", "2026-Q4"])
def test_the_keys_tables_data_is_what_the_requests_of_each_key_add_up_to(demo_site, slug):
    """keys-data.js (the rows keys.html draws) against the warehouse's requests summed here, for a month and a quarter: every used
    key's requests, failures, tokens, spend and unpriced requests, its last request; the other rows are keys without a request."""
    import duckdb

    folder = demo_site.site_dir / "periods" / slug
    meta = json.loads((folder / "exports" / "manifest.json").read_text())["metadata"]
    bounds = [meta["start_date"], meta["end_date"]]
    conn = duckdb.connect(str(demo_site.warehouse), read_only=True)
    used = {row[0][:12]: row[1:] for row in conn.execute(
        "SELECT key_hash, count(*), count(*) FILTER (status = 'failure'), sum(total_tokens), coalesce(sum(spend_usd), 0), "
        "count(*) FILTER (unpriced) FROM requests WHERE day BETWEEN ? AND ? GROUP BY key_hash", bounds).fetchall()}
    conn.close()
    rows = _keys_rows(folder)
    assert len({row["key_hash"] for row in rows}) == len(rows) and len(used) > 10
    shown = {row["key_hash"]: (row["requests"], row["failed_requests"], row["total_tokens"], row["spend"], row["unpriced_requests"])
             for row in rows if row["requests"]}
    assert shown == {key: (n, failed, tokens, f"{spend:.4f}", unpriced) for key, (n, failed, tokens, spend, unpriced) in used.items()}
    for row in rows:
        assert (row["href"] is None) == (not row["requests"]), row
        assert row["last_request"] == "—" or re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", row["last_request"]), row


@pytest.mark.parametrize("dimension", ["end-users", "tags"])
def test_an_end_users_and_a_tags_page_data_is_what_their_requests_add_up_to(demo_site, dimension):
    """end-user-data.js and tag-data.js of a month against the warehouse's requests summed here: each end user's totals and days
    (the days with requests), each tag's totals."""
    import duckdb

    folder = demo_site.site_dir / "periods" / "2026-11"
    file, label = {"end-users": ("end-user-data.js", "coalesce(end_user, '(no end user)')"), "tags": ("tag-data.js", None)}[dimension]
    document = read_script((folder / file).read_text(encoding="ascii"))
    items = {page: dict(zip(ITEM_FIELDS, item)) for page, item in document["items"].items()}
    assert document["days"][0] == "2026-11-01" and len(document["days"]) == 30 and document["all"]
    if dimension == "tags":  # a request under several tags is under each: compare with the period's tags export
        for row in _csv(folder / "exports" / "tags.csv"):
            item = items[page_name(row["tag"])]
            assert (item["label"], item["requests"], item["total_tokens"], item["spend"]) == (
                row["tag"], int(row["requests"]), int(row["total_tokens"]), f"{Decimal(row['spend_usd']):.4f}")
        assert len(items) == len(_csv(folder / "exports" / "tags.csv")) > 1
        return
    conn = duckdb.connect(str(demo_site.warehouse), read_only=True)
    sums = ("count(*), count(*) FILTER (status = 'success'), count(*) FILTER (status = 'failure'), sum(input_tokens), sum(output_tokens), "
            "sum(total_tokens), sum(spend_usd), count(*) FILTER (unpriced)")  # no priced request: no spend, shown as unpriced
    where = "WHERE day BETWEEN DATE '2026-11-01' AND DATE '2026-11-30'"
    totals = conn.execute(f"SELECT {label}, {sums} FROM requests {where} GROUP BY 1").fetchall()
    days = conn.execute(f"SELECT {label}, strftime(day, '%Y-%m-%d'), count(*), count(*) FILTER (status = 'failure'), sum(total_tokens), "
                        f"sum(spend_usd), count(*) FILTER (unpriced) FROM requests {where} GROUP BY ALL").fetchall()
    conn.close()
    assert len(totals) > 1 and set(items) == {page_name(name) for name, *_ in totals}
    for name, requests, successful, failed, tokens_in, tokens_out, tokens, spend, unpriced in totals:
        item = items[page_name(name)]
        assert (item["label"], item["requests"], item["successful_requests"], item["failed_requests"], item["input_tokens"], item["output_tokens"],
                item["total_tokens"], item["spend"], item["unpriced_requests"]) == (
                    name, requests, successful, failed, tokens_in, tokens_out, tokens, _text(spend), unpriced)
        assert sum(model[ROW_FIELDS.index("requests")] for model in item["models"]) == requests
    for name, day, requests, failed, tokens, spend, unpriced in days:
        shown = {document["days"][row[0]]: row[1:] for row in items[page_name(name)]["days"]}
        assert shown[day] == [requests, failed, tokens, _text(spend), unpriced], (name, day)
    assert sum(len(item["days"]) for item in items.values()) == len(days)


def _text(spend) -> str | None:
    return None if spend is None else f"{spend:.4f}"


def test_period_workers_build_the_same_site_as_one_process(demo_site, tmp_path):
    """A read-only connection to a file has the periods rendered by worker processes, each with its own connection; a writing
    one (which locks other processes out) renders them here: the same files, byte for byte."""
    db = tmp_path / "usage.duckdb"
    db.write_bytes(demo_site.warehouse.read_bytes())
    sites = {}
    for read_only in (True, False):
        site = tmp_path / f"site-{'workers' if read_only else 'here'}"
        with warehouse.session(db, read_only=read_only) as conn:
            assert (site_build._read_only_file(conn) is not None) is read_only
            build_site(conn, site, timezone="UTC", billing_configured=True, generated_at=dt.datetime(2026, 11, 27, tzinfo=dt.UTC),
                       chromium="/nonexistent/chromium")
        sites[read_only] = {p.relative_to(site).as_posix(): p.read_bytes() for p in site.rglob("*") if p.is_file()}
    assert len(sites[True]) > 500 and sites[True] == sites[False]


def test_period_workers_exit_with_a_killed_build_and_free_the_warehouse(demo_site, tmp_path):
    """A build killed outright (SIGKILL, out of memory) leaves no period worker holding its read-only connection: a writer
    opens the warehouse within seconds (each worker waited on its pool's queue for ever, locking every run out)."""
    db = tmp_path / "usage.duckdb"
    db.write_bytes(demo_site.warehouse.read_bytes())
    scratch = tmp_path / "site.building" / "periods"
    script = ("from pathlib import Path\nfrom usage_jobs import warehouse\nfrom usage_jobs.defs.report.build import build_site\n"
              f"with warehouse.session(Path({str(db)!r}), read_only=True) as conn:\n"
              f"    build_site(conn, Path({str(tmp_path / 'site')!r}), timezone='UTC', billing_configured=True, chromium='/nonexistent/chromium')\n")
    build = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path)
    try:
        deadline = time.monotonic() + 120
        while not (scratch.is_dir() and any(scratch.iterdir())) and build.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert build.poll() is None, "the build ended before a worker had rendered a period"
    finally:
        build.kill()
        build.wait()
    deadline = time.monotonic() + 15
    while True:
        try:
            duckdb.connect(str(db)).close()  # a writer: refused while any process holds the file
            break
        except duckdb.IOException:
            assert time.monotonic() < deadline, "a period worker still holds the warehouse after its build was killed"
            time.sleep(0.2)
