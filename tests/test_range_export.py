"""`usage-report export`: any range's export files, as the site's; quarters and years as periods of the site."""

import csv
import datetime as dt
import io
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from conftest import DEMO_END
from helpers import export_text
from usage_jobs.cli import main
from usage_jobs.defs.report.periods import (
    KINDS,
    RANGE,
    Period,
    day_period,
    month_period,
    navigation,
    period_from_slug,
    quarter_period,
    range_period,
    report_periods,
    week_period,
    year_period,
)

FIRST = DEMO_END - dt.timedelta(days=3)  # the demo's four days: 2026-11-17 to 2026-11-20


@pytest.fixture
def export_env(demo_site, monkeypatch, tmp_path):
    """The demo site's settings (IG1 billing configured, as the site was built) for an export command run in tmp_path."""
    monkeypatch.setenv("USAGE_WAREHOUSE", str(demo_site.warehouse))
    monkeypatch.setenv("USAGE_SITE_DIR", str(demo_site.site_dir))
    monkeypatch.setenv("USAGE_LOGS_DIR", str(demo_site.logs_dir))
    monkeypatch.setenv("IG1_MASTER_KEY", demo_site.ig1_master_key.get_secret_value())
    monkeypatch.setenv("IG1_BASE_URL", str(demo_site.ig1_base_url))
    monkeypatch.delenv("USAGE_TIMEZONE", raising=False)
    monkeypatch.chdir(tmp_path)
    return demo_site


def _export(capsys, *argv) -> tuple[int, str, str]:
    code = main(["export", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(export_text(path), newline="")))


def _without_period(path: Path) -> dict:
    document = json.loads(export_text(path))
    del document["metadata"]["period"]
    return document


def _data_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name != "manifest.json" and not p.name.startswith(".")}  # not the site's day records


# --- the export command ---------------------------------------------------------------------


def test_a_range_equal_to_a_site_month_gives_the_site_month_files(export_env, capsys, tmp_path):
    site = export_env.site_dir / "periods" / "2026-11" / "exports"
    code, out, _ = _export(capsys, "--start", "2026-11-01", "--end", "2026-11-30", "--out", str(tmp_path / "nov"))
    assert code == 0
    mine = tmp_path / "nov"
    assert _data_files(mine) == _data_files(site) and len(_data_files(site)) >= 22
    for name in sorted(_data_files(site)):
        plain = name.removesuffix(".gz")  # a file over exports.COMPRESS_OVER is written compressed
        if plain.endswith(".csv"):
            assert (mine / name).read_bytes() == (site / name).read_bytes(), name
        else:
            ours, theirs = _without_period(mine / plain), _without_period(site / plain)
            assert ours == theirs, name
            assert json.loads(export_text(mine / plain))["metadata"]["period"] == "2026-11-01_2026-11-30"
    manifest, site_manifest = json.loads((mine / "manifest.json").read_text()), json.loads((site / "manifest.json").read_text())
    assert [(f["file"], f["rows"]) for f in manifest["files"]] == [(f["file"], f["rows"]) for f in site_manifest["files"]]
    assert "1 November 2026 to 30 November 2026" in out and "teams.csv" in out
    assert "warning: 26 of the 30 days are not in the warehouse (2026-11-01 to 2026-11-16, 2026-11-21 to 2026-11-30)" in out


@pytest.mark.parametrize("slug", ["2026-11", "2026-Q4", "last-7-days"])
def test_a_site_period_is_reproduced_byte_for_byte(export_env, capsys, tmp_path, slug):
    site = export_env.site_dir / "periods" / slug / "exports"
    code, _, _ = _export(capsys, "--period", slug)
    assert code == 0
    mine = tmp_path / "exports" / slug  # the default folder, under the current one
    assert _data_files(mine) == _data_files(site)
    for name in _data_files(site):
        assert (mine / name).read_bytes() == (site / name).read_bytes(), name
    manifest, site_manifest = json.loads((mine / "manifest.json").read_text()), json.loads((site / "manifest.json").read_text())
    assert manifest["files"] == site_manifest["files"]
    assert {**manifest["metadata"], "generated_at": None} == {**site_manifest["metadata"], "generated_at": None}


def test_a_three_day_range_adds_up_to_the_warehouse_requests(export_env, capsys, tmp_path):
    start, end = FIRST + dt.timedelta(days=1), DEMO_END
    code, out, _ = _export(capsys, "--start", start.isoformat(), "--end", end.isoformat())
    assert code == 0 and "warning" not in out
    folder = tmp_path / "exports" / f"{start}_{end}"
    daily, teams = _csv(folder / "daily.csv"), _csv(folder / "teams.csv")
    assert [row["date"] for row in daily] == [(start + dt.timedelta(days=i)).isoformat() for i in range(3)]
    conn = duckdb.connect(str(export_env.warehouse), read_only=True)
    try:  # straight from the stored requests, not through the product's aggregates
        requests, tokens, spend = conn.execute("SELECT count(*), sum(total_tokens), sum(spend_usd) FROM requests WHERE day BETWEEN ? AND ?",
                                               [start, end]).fetchone()
    finally:
        conn.close()
    for rows in (daily, teams):
        assert sum(int(row["requests"]) for row in rows) == requests > 0
        assert sum(int(row["total_tokens"]) for row in rows) == tokens
        assert abs(sum(Decimal(row["spend_usd"]) for row in rows) - spend) <= Decimal("0.0000005") * len(rows)
    metadata = json.loads((folder / "daily.json").read_text())["metadata"]
    assert (metadata["start_date"], metadata["end_date"], metadata["missing_days"]) == (start.isoformat(), end.isoformat(), [])


def test_type_and_format_choose_the_files(export_env, capsys, tmp_path):
    code, out, _ = _export(capsys, "--start", "2026-11-17", "--end", "2026-11-18", "--type", "teams", "--format", "csv", "--out", "only-teams")
    assert code == 0
    assert {p.name for p in (tmp_path / "only-teams").iterdir()} == {"teams.csv", "manifest.json"}
    manifest = json.loads((tmp_path / "only-teams" / "manifest.json").read_text())
    assert [(f["file"], f["format"]) for f in manifest["files"]] == [("teams.csv", "csv")]
    rows = len(_csv(tmp_path / "only-teams" / "teams.csv"))
    assert f"teams.csv  {rows:>8,} rows" in out
    code, _, _ = _export(capsys, "--period", "2026-11-20", "--type", "focus", "chargeback", "--type", "tags", "--format", "json", "--out", "three")
    assert code == 0
    assert {p.name for p in (tmp_path / "three").iterdir()} == {"focus.json", "chargeback.json", "tags.json", "manifest.json"}


def test_a_range_partly_ingested_says_which_days_are_missing(export_env, capsys, tmp_path):
    code, out, _ = _export(capsys, "--start", "2026-11-15", "--end", "2026-11-18")
    assert code == 0
    assert "warning: 2 of the 4 days are not in the warehouse (2026-11-15 to 2026-11-16)" in out
    metadata = json.loads((tmp_path / "exports" / "2026-11-15_2026-11-18" / "teams.json").read_text())["metadata"]
    assert metadata["missing_days"] == ["2026-11-15", "2026-11-16"]
    assert metadata["source_days"] == ["2026-11-15", "2026-11-16", "2026-11-17", "2026-11-18"]


@pytest.mark.parametrize(("argv", "message"), [
    (["--start", "2026-11-20", "--end", "2026-11-18"], "--end 2026-11-18 is before --start 2026-11-20"),
    (["--start", "2025-01-01", "--end", "2025-03-31"],
     "no day from 2025-01-01 to 2025-03-31 is in the warehouse: it holds 2026-11-17 to 2026-11-20 (4 day(s))"),
    (["--period", "2025-Q1"], "no day from 2025-01-01 to 2025-03-31 is in the warehouse"),
    (["--start", "2026-11-17", "--end", "2026-11-18", "--type", "teams", "nope"],
     "unknown export type nope: the exports of this range are daily, teams, keys, models, team_model_daily, key_model_daily, "
     "reconciliation, focus, anomalies, data_quality"),
    (["--period", "2026-13"], "--period '2026-13' names no period"),
    (["--period", "2026-11", "--start", "2026-11-01"], "give either --period or --start and --end"),
    (["--start", "2026-11-17"], "give --start YYYY-MM-DD and --end YYYY-MM-DD"),
])
def test_clear_errors(export_env, capsys, tmp_path, argv, message):
    code, out, err = _export(capsys, *argv)
    assert code == 2 and message in err, err
    assert not (tmp_path / "exports").exists()


def test_chargeback_without_billing_says_why(export_env, capsys, monkeypatch):
    monkeypatch.delenv("IG1_MASTER_KEY")
    code, _, err = _export(capsys, "--period", "2026-11-20", "--type", "chargeback")
    assert code == 2 and "unknown export type chargeback" in err and "chargeback needs IG1 billing configured" in err
    code, _, _ = _export(capsys, "--period", "2026-11-20", "--type", "focus", "--out", "estimates")
    assert code == 0 and {p.name for p in Path("estimates").iterdir()} == {"focus.csv", "focus.json", "manifest.json"}


def test_a_missing_warehouse_is_named(export_env, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("USAGE_WAREHOUSE", str(tmp_path / "nowhere.duckdb"))
    code, _, err = _export(capsys, "--start", "2026-11-17", "--end", "2026-11-18")
    assert code == 2 and f"no warehouse at {tmp_path / 'nowhere.duckdb'}" in err
    assert not (tmp_path / "nowhere.duckdb").exists()


def test_a_warehouse_being_written_is_named(export_env, capsys, tmp_path, monkeypatch):
    """DuckDB refuses a reader while a run holds the file: the command says so instead of a lock error."""
    copy = tmp_path / "busy.duckdb"
    copy.write_bytes(export_env.warehouse.read_bytes())
    writer = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print('open', flush=True); sys.stdin.read()",
                               str(copy)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        monkeypatch.setenv("USAGE_WAREHOUSE", str(copy))
        code, _, err = _export(capsys, "--period", "2026-11-20")
    finally:
        writer.stdin.close()
        writer.wait(timeout=30)
    assert code == 2 and f"the warehouse {copy} is being written by a run right now: export again once it has finished" in err


def test_every_export_of_the_site_is_a_type(export_env, capsys):
    """The types are the site's export names, whatever they are: each one alone gives its two files."""
    site = export_env.site_dir / "periods" / "2026-11-20" / "exports"
    names = sorted({p.name.rsplit(".", 1)[0] for p in site.iterdir() if p.name != "manifest.json" and not p.name.startswith(".")})
    assert {"daily", "teams", "chargeback", "focus", "data_quality"} <= set(names)
    code, _, _ = _export(capsys, "--period", "2026-11-20", "--type", *names, "--out", "all")
    assert code == 0 and _data_files(Path("all")) == _data_files(site)


# --- quarters and years on the site ---------------------------------------------------------


def test_the_site_has_the_quarter_and_the_year_like_a_month(export_env):
    periods = export_env.site_dir / "periods"
    month, quarter, year = (periods / slug / "exports" for slug in ("2026-11", "2026-Q4", "2026"))
    assert len(_csv(quarter / "daily.csv")) == 92 and len(_csv(year / "daily.csv")) == 365
    for folder in (quarter, year):  # only November has data: the same teams and totals
        assert _csv(folder / "teams.csv") == _csv(month / "teams.csv")
        assert (folder / "chargeback.csv").read_bytes().count(b"\n") == (month / "chargeback.csv").read_bytes().count(b"\n")
    day = (periods / DEMO_END.isoformat() / "teams.html").read_text(encoding="utf-8")
    assert ('href="../../periods/2026-11/teams.html">Month</a> · <a href="../../periods/2026-Q4/teams.html">Quarter</a> · '
            '<a href="../../periods/2026/teams.html">Year</a> · <a href="../../periods/last-7-days/teams.html">Last 7 days</a>') in day
    page = (periods / "2026-Q4" / "index.html").read_text(encoding="utf-8")
    assert "Q4 2026" in page and "no earlier quarter" in page and "no later quarter" in page
    assert (periods / "2026-Q4" / "charts" / "daily-spend.svg").is_file()  # per-day charts, as a month's


# --- periods.py -----------------------------------------------------------------------------


@pytest.mark.parametrize(("year", "quarter", "start", "end", "length"), [
    (2026, 1, "2026-01-01", "2026-03-31", 90), (2026, 2, "2026-04-01", "2026-06-30", 91), (2026, 3, "2026-07-01", "2026-09-30", 92),
    (2026, 4, "2026-10-01", "2026-12-31", 92), (2024, 1, "2024-01-01", "2024-03-31", 91), (2100, 1, "2100-01-01", "2100-03-31", 90),
])
def test_quarter_bounds(year, quarter, start, end, length):
    for month in range(3 * quarter - 2, 3 * quarter + 1):
        period = quarter_period(dt.date(year, month, 15))
        assert (period.slug, period.kind, period.label) == (f"{year}-Q{quarter}", "quarter", f"Q{quarter} {year}")
        assert (period.start.isoformat(), period.end.isoformat(), period.length) == (start, end, length)
    assert period_from_slug(f"{year}-Q{quarter}") == period


@pytest.mark.parametrize(("year", "length"), [(2026, 365), (2024, 366), (2100, 365), (2000, 366)])
def test_year_bounds_and_previous_year(year, length):
    period = year_period(dt.date(year, 7, 4))
    assert (period.slug, period.label, period.start, period.end, period.length) == (str(year), str(year), dt.date(year, 1, 1),
                                                                                     dt.date(year, 12, 31), length)
    assert period.previous_span() == (dt.date(year - 1, 1, 1), dt.date(year - 1, 12, 31))


@pytest.mark.parametrize(("slug", "previous"), [
    ("2026-Q1", ("2025-10-01", "2025-12-31")), ("2026-Q2", ("2026-01-01", "2026-03-31")), ("2024-Q2", ("2024-01-01", "2024-03-31")),
    ("2026-Q4", ("2026-07-01", "2026-09-30")), ("2026-03", ("2026-02-01", "2026-02-28")), ("2024-03", ("2024-02-01", "2024-02-29")),
])
def test_previous_span_is_the_calendar_period_before(slug, previous):
    assert tuple(d.isoformat() for d in period_from_slug(slug).previous_span()) == previous


def test_a_year_with_one_day_of_data():
    day = dt.date(2028, 2, 29)
    periods = report_periods([day])
    assert [p.slug for p in periods] == ["last-7-days", "last-30-days", "2028", "2028-Q1", "2028-02", "2028-W09", "2028-02-29"]
    nav = navigation(periods)
    for period in periods:
        kinds = dict(nav[period.slug].kinds)
        assert [label for label, _ in nav[period.slug].kinds] == ["Day", "Week", "Month", "Quarter", "Year", "Last 7 days", "Last 30 days"]
        assert (kinds["Quarter"].slug, kinds["Year"].slug) == ("2028-Q1", "2028")
        assert nav[period.slug].previous is None and nav[period.slug].next is None


def test_quarters_and_years_step_and_round_trip():
    days = [dt.date(2025, 12, 31), dt.date(2026, 1, 2), dt.date(2026, 5, 1)]
    periods = report_periods(days)
    assert {p.slug for p in periods if p.kind in ("quarter", "year")} == {"2025-Q4", "2026-Q1", "2026-Q2", "2025", "2026"}
    nav = navigation(periods)
    assert (nav["2026-Q1"].previous.slug, nav["2026-Q1"].next.slug) == ("2025-Q4", "2026-Q2")
    assert (nav["2026"].previous.slug, nav["2026"].next) == ("2025", None)
    assert dict(nav["2025-12-31"].kinds)["Year"].slug == "2025" and dict(nav["2026-01-02"].kinds)["Quarter"].slug == "2026-Q1"
    for period in periods:  # every folder of the site names its period
        assert period_from_slug(period.slug, last_day=max(days)) == period
    assert all(p.kind in KINDS for p in periods)


def test_range_periods_are_never_published():
    period = range_period(dt.date(2026, 10, 3), dt.date(2026, 11, 12))
    assert (period.slug, period.kind, period.label, period.length) == ("2026-10-03_2026-11-12", RANGE, "3 October 2026 to 12 November 2026", 41)
    assert period.previous_span() == (dt.date(2026, 8, 23), dt.date(2026, 10, 2))
    assert RANGE not in KINDS and period_from_slug(period.slug) == period
    published = report_periods([dt.date(2026, 11, 12)])
    assert set(navigation([*published, period])) == {p.slug for p in published}
    with pytest.raises(ValueError, match="before it starts"):
        range_period(dt.date(2026, 11, 12), dt.date(2026, 10, 3))


@pytest.mark.parametrize("slug", ["2026-13", "2026-Q5", "2025-W53", "2026-02-30", "26", "last-8-days", "november"])
def test_slugs_that_name_no_period(slug):
    with pytest.raises(ValueError, match="names no period"):
        period_from_slug(slug, last_day=dt.date(2026, 11, 20))


def test_period_kinds_of_the_other_makers_are_unchanged():
    day = dt.date(2026, 11, 20)
    assert [p.kind for p in (day_period(day), week_period(day), month_period(day))] == ["day", "week", "month"]
    assert isinstance(range_period(day, day), Period) and range_period(day, day).label == "20 November 2026"
