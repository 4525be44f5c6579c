"""Exports assembled from each day's text (formatted once a build, or read from a current day period's published files) are the
bytes each period's own rows give."""

import datetime as dt
import gzip
import subprocess
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from conftest import DEMO_END
from usage_jobs import warehouse
from usage_jobs.defs.report import build as site_build
from usage_jobs.defs.report import exports, focus, queries
from usage_jobs.defs.report.build import build_site, export_metadata, export_tables
from usage_jobs.defs.report.exports import ExportDays, ExportTable, render_csv, render_json, write_exports
from usage_jobs.defs.report.periods import report_periods

WHEN = dt.datetime(2026, 11, 21, 6, tzinfo=dt.UTC)
NO_PDF = "/nonexistent/chromium"  # the exports are what is compared: no PDF printed
ASSEMBLED = ("key_model_daily", "team_model_daily", "focus")


def _exports(site: Path) -> dict[str, bytes]:
    """Every period's export files (gzip ones decompressed: the compressed bytes are checked alike by the manifest's sha256)."""
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.glob("periods/*/exports/*"))}


def _unassembled(conn, site: Path, billing: bool) -> dict[str, bytes]:
    """Every period's exports written from its own rows, table by table (no day text shared)."""
    builder = site_build.SiteBuilder.from_warehouse(conn, timezone="UTC", billing_configured=billing, generated_at=WHEN)
    days = [row[0] for row in conn.execute("SELECT day FROM ingest_days ORDER BY day").fetchall()]
    for period in report_periods(days):
        views = builder.period_views(period)
        metadata = export_metadata(views, timezone="UTC", billing_configured=billing)
        write_exports(site / "periods" / period.slug / "exports", export_tables(views), metadata, generated_at=builder.context.generated_at)
    return _exports(site)


@pytest.fixture(scope="module", params=[True, False], ids=["billing", "no-billing"])
def built(demo_site, tmp_path_factory, request):
    """The demo site built (its exports assembled from days) and every period's exports written whole, with or without billing."""
    out = tmp_path_factory.mktemp("export-days")
    conn = warehouse.connect(demo_site.warehouse, read_only=True)
    build_site(conn, out / "site", timezone="UTC", billing_configured=request.param, generated_at=WHEN, chromium=NO_PDF)
    return _exports(out / "site"), _unassembled(conn, out / "whole", request.param)


@pytest.mark.parametrize("table", [*ASSEMBLED, "daily", "keys", "chargeback", "manifest"])
def test_every_periods_export_is_the_bytes_its_own_rows_give(built, table):
    assembled, whole = built
    names = {name for name in whole if name.split("/")[-1].split(".")[0] == table}
    assert names or table == "chargeback"  # the chargeback: with billing only
    assert {name for name in assembled if name.split("/")[-1].split(".")[0] == table} == names
    for name in names:
        assert assembled[name] == whole[name], name
    periods = {name.split("/")[1] for name in whole}
    assert len(periods) == 10 and {name.split("/")[1] for name in names} in (periods, set())  # 4 days, a week, month, quarter, year, 2 rolling


def test_a_changed_day_reformats_only_itself_and_every_export_is_a_full_builds(demo_site, tmp_path, monkeypatch):
    """Incremental: the day periods left as published give their day's text; only the changed day is formatted again; every
    period's exports equal those of a full build of the same warehouse."""
    db = tmp_path / "usage.duckdb"
    db.write_bytes(demo_site.warehouse.read_bytes())
    conn = warehouse.connect(db)
    build_site(conn, tmp_path / "site", timezone="UTC", billing_configured=True, generated_at=WHEN, chromium=NO_PDF)
    changed = DEMO_END - dt.timedelta(days=1)  # IG1's cost of a day: the periods holding it rendered again, the other days left
    assert conn.execute("UPDATE chargeback SET allocated_cost = allocated_cost * 2 WHERE day = ?", [changed]).fetchone()[0]
    formatted: dict[str, set] = {}
    bodies = exports._bodies

    def spy(table, *args):
        if table.day_column:
            formatted.setdefault(table.name, set()).update(row[table.day_column] for row in table.rows)
        return bodies(table, *args)

    monkeypatch.setattr(exports, "_bodies", spy)
    cells_read: list[str] = []  # the days whose key × model cells were read from the warehouse
    cells = queries.KeyModelDays.cells
    monkeypatch.setattr(queries.KeyModelDays, "cells", lambda self, days: cells_read.extend(days) or cells(self, days))
    team_cells_built: list[str] = []  # the days whose team × model cells were built
    team_cells = queries.TeamModelDays.cells
    monkeypatch.setattr(queries.TeamModelDays, "cells", lambda self, days: team_cells_built.extend(days) or team_cells(self, days))
    charged: list[tuple] = []  # the billing days whose FOCUS cells were built
    charge_cells = focus._cells
    monkeypatch.setattr(focus, "_cells", lambda conn, start, end, zone: charged.append((start, end)) or charge_cells(conn, start, end, zone))
    result = build_site(conn, tmp_path / "site", timezone="UTC", billing_configured=True, generated_at=WHEN, chromium=NO_PDF)
    assert changed.isoformat() in result.rendered and (DEMO_END - dt.timedelta(days=3)).isoformat() not in result.rendered
    assert formatted["key_model_daily"] == formatted["team_model_daily"] == {changed.isoformat()}
    assert set(cells_read) == set(team_cells_built) == {changed.isoformat()}  # in each period holding it, not the other days
    assert set(charged) == {(changed, changed)}
    assert formatted["focus"] == {f"{changed.isoformat()}T00:00:00Z"}
    monkeypatch.setattr(exports, "_bodies", bodies)
    build_site(conn, tmp_path / "full", timezone="UTC", billing_configured=True, generated_at=WHEN, full=True, chromium=NO_PDF)
    incremental, full = _exports(tmp_path / "site"), _exports(tmp_path / "full")
    assert incremental.keys() == full.keys()
    assert [name for name in full if incremental[name] != full[name]] == []


def _table(rows: list[dict]) -> ExportTable:
    return ExportTable("team_model_daily", ["date", "team_alias", "spend"], frozenset({"spend"}), rows, day_column="date",
                       period_columns=("team_alias",))


def test_a_day_whose_name_a_period_writes_otherwise_is_formatted_for_that_period(tmp_path):
    """A team's alias is its first in the period: the same day's rows under another alias are not the text of the first."""
    day = [{"date": "2026-11-02", "team_alias": "Old", "spend": Decimal("1.5")}, {"date": "2026-11-02", "team_alias": "Old", "spend": None}]
    renamed = [row | {"team_alias": "New"} for row in day]
    before = [{"date": "2026-11-01", "team_alias": "New", "spend": Decimal(2)}]
    after = [{"date": "2026-11-03", "team_alias": "Old", "spend": Decimal(3)}]
    days = ExportDays()
    for name, rows in (("a", day + after), ("b", before + renamed), ("c", day), ("d", before + renamed + after)):
        table = _table(rows)
        [csv_entry, json_entry] = write_exports(tmp_path / name, [table], {"period": name}, days=days)
        assert (tmp_path / name / csv_entry["file"]).read_bytes() == render_csv(table)
        assert (tmp_path / name / json_entry["file"]).read_bytes() == render_json(table, {"period": name})
    assert len(days.bodies) == 4  # 2026-11-02 under each alias, the 1st and the 3rd


def test_rows_not_grouped_by_day_are_written_whole_and_a_published_day_is_read_back(tmp_path, monkeypatch):
    monkeypatch.setattr(exports, "COMPRESS_OVER", 100)  # the published day gzip-compressed
    mixed = _table([{"date": d, "team_alias": "T", "spend": Decimal(i)} for i, d in enumerate(["2026-11-01", "2026-11-02", "2026-11-01"])])
    write_exports(tmp_path / "mixed", [mixed], {}, days=ExportDays())
    assert (tmp_path / "mixed" / "team_model_daily.csv").read_bytes() == render_csv(mixed)
    day = _table([{"date": "2026-11-02", "team_alias": f"T{i}", "spend": Decimal(i)} for i in range(20)])
    write_exports(tmp_path / "day", [day], {"period": "2026-11-02"})
    assert (tmp_path / "day" / "team_model_daily.json.gz").is_file()
    days = ExportDays([tmp_path / "day"])
    month = _table([{"date": "2026-11-01", "team_alias": "T", "spend": Decimal(7)}, *day.rows])
    formatted = []
    bodies = exports._bodies
    monkeypatch.setattr(exports, "_bodies", lambda table, *args: formatted.append(table.rows[0]["date"]) or bodies(table, *args))
    write_exports(tmp_path / "month", [month], {"period": "2026-11"}, days=days)
    assert formatted == ["2026-11-01"]  # the 2nd read from the day's files
    monkeypatch.setattr(exports, "_bodies", bodies)
    assert gzip.decompress((tmp_path / "month" / "team_model_daily.csv.gz").read_bytes()) == render_csv(month)
    assert gzip.decompress((tmp_path / "month" / "team_model_daily.json.gz").read_bytes()) == render_json(month, {"period": "2026-11"})


def test_days_past_the_budget_are_dropped_oldest_used_first_and_formatted_again(tmp_path):
    days = ExportDays(budget=200)
    tables = {name: _table([{"date": f"2026-11-0{d}", "team_alias": "T", "spend": Decimal(d)} for d in digits]) for name, digits in
              (("a", "123"), ("b", "34"), ("c", "1234"))}
    for name, table in tables.items():
        [csv_entry, json_entry] = write_exports(tmp_path / name, [table], {}, days=days)
        assert (tmp_path / name / csv_entry["file"]).read_bytes() == render_csv(table)
        assert (tmp_path / name / json_entry["file"]).read_bytes() == render_json(table, {})
        assert days.size == sum(day.size for day in days.bodies.values()) <= 200
    assert [key[1] for key in days.bodies][-1] == "2026-11-04" and len(days.bodies) < 4


def test_days_past_the_budget_keep_their_gzip_members_alone_and_give_the_same_bytes(tmp_path, monkeypatch):
    """Compressed, a day is kept as its members (its text inflated when a period needs it) before any day is dropped: nothing is
    formatted or compressed again."""
    monkeypatch.setattr(exports, "COMPRESS_OVER", 100)
    rows = {d: [{"date": f"2026-11-0{d}", "team_alias": f"T{i}", "spend": Decimal(i)} for i in range(20)] for d in range(1, 6)}
    texts = ExportDays()
    write_exports(tmp_path / "sizes", [_table([row for day in rows.values() for row in day])], {}, days=texts)
    members = sum(len(member) for day in texts.bodies.values() for member in day.members.values())
    days = ExportDays(budget=members + 1_000)  # every member, not every text
    periods = {name: _table([row for d in digits for row in rows[int(d)]]) for name, digits in
               (("first", "12345"), ("again", "12345"), ("last-three", "345"))}
    expected = {name: (render_csv(table), render_json(table, {"period": name})) for name, table in periods.items()}
    formatted, compressed = [], []
    bodies, member = exports._bodies, exports._member
    monkeypatch.setattr(exports, "_bodies", lambda table, *args: formatted.append(table.rows[0]["date"]) or bodies(table, *args))
    monkeypatch.setattr(exports, "_member", lambda text: compressed.append(text) or member(text))
    for name, table in periods.items():
        write_exports(tmp_path / name, [table], {"period": name}, days=days)
        for suffix, text in zip(("csv", "json"), expected[name]):
            assert gzip.decompress((tmp_path / name / f"team_model_daily.{suffix}.gz").read_bytes()) == text, (name, suffix)
        assert days.size == sum(day.size for day in days.bodies.values()) <= days.budget
    assert len(days.bodies) == 5 and any(day.csv is None for day in days.bodies.values())  # compacted, none dropped
    assert sorted(formatted) == [f"2026-11-0{d}" for d in range(1, 6)]  # each day formatted once
    day_members = [text for text in compressed if b"2026-11-0" in text]
    assert len(day_members) == 10  # each day compressed once a format


def test_a_compressed_export_is_a_gzip_member_a_day_the_published_days_kept_as_they_are_and_read_whole(tmp_path, monkeypatch):
    """A large period's file takes a current day period's member byte for byte (not compressed again), and every gzip reader
    (Python, the gzip program, DuckDB) reads the members as one text."""
    monkeypatch.setattr(exports, "COMPRESS_OVER", 100)
    day = _table([{"date": "2026-11-02", "team_alias": f"T{i}", "spend": Decimal(i)} for i in range(20)])
    write_exports(tmp_path / "day", [day], {"period": "2026-11-02"}, days=ExportDays())
    published = {suffix: exports._members((tmp_path / "day" / f"team_model_daily.{suffix}.gz").read_bytes()) for suffix in ("csv", "json")}
    compressed = []
    member = exports._member
    monkeypatch.setattr(exports, "_member", lambda text: compressed.append(text) or member(text))
    month = _table([{"date": "2026-11-01", "team_alias": "T", "spend": Decimal(7)}, *day.rows,
                    {"date": "2026-11-03", "team_alias": "T", "spend": Decimal(8)}])
    write_exports(tmp_path / "month", [month], {"period": "2026-11"}, days=ExportDays([tmp_path / "day"]))
    for suffix, expected in (("csv", render_csv(month)), ("json", render_json(month, {"period": "2026-11"}))):
        path = tmp_path / "month" / f"team_model_daily.{suffix}.gz"
        members = exports._members(path.read_bytes())
        day_rows = published[suffix][1]  # the day file's members: head, its rows[, tail]
        assert day_rows in members and day_rows[1] not in compressed
        assert len(members) == (1 + 3 if suffix == "csv" else 1 + 3 + 2 + 1)  # head, 3 days[, 2 separators, tail]
        assert gzip.decompress(path.read_bytes()) == expected
        assert subprocess.run(["gzip", "-dc", str(path)], capture_output=True, check=True).stdout == expected
    rows = duckdb.connect().execute("SELECT date, team_alias, spend FROM read_csv(?) ORDER BY date, team_alias",
                                    [str(tmp_path / "month" / "team_model_daily.csv.gz")]).fetchall()
    assert len(rows) == len(month.rows) and rows[0] == (dt.date(2026, 11, 1), "T", 7.0)


@pytest.mark.parametrize("day_file", ["compressed", "plain"])
@pytest.mark.parametrize("record", ["kept", "damaged", "missing"])
def test_a_published_days_members_are_taken_where_its_record_places_them_else_the_day_is_read_whole(tmp_path, monkeypatch, record, day_file):
    """A day period records where its day's gzip member is: in its compressed files, or for a file it writes plain, in its
    .day-members.gz. A large period takes the members from there, neither inflating the day's files nor compressing its rows
    again; a record that is damaged or missing falls back to reading the files whole."""
    monkeypatch.setattr(exports, "COMPRESS_OVER", 100 if day_file == "compressed" else 2_000)
    day = _table([{"date": "2026-11-02", "team_alias": f"T{i}", "spend": Decimal(i)} for i in range(20)])
    write_exports(tmp_path / "day", [day], {"period": "2026-11-02"}, days=ExportDays())
    assert (tmp_path / "day" / "team_model_daily.csv.gz").is_file() == (day_file == "compressed")
    places = tmp_path / "day" / exports.DAY_MEMBERS
    if record == "damaged":
        places.write_text(places.read_text().replace("[", "[7", 1))
    elif record == "missing":
        places.unlink()
    inflated, compressed = [], []
    members, member = exports._members, exports._member
    monkeypatch.setattr(exports, "_members", lambda content: inflated.append(len(content)) or members(content))
    monkeypatch.setattr(exports, "_member", lambda text: compressed.append(text) or member(text))
    month = _table([*[{"date": "2026-11-01", "team_alias": f"Team {i}", "spend": Decimal(i)} for i in range(100)], *day.rows])
    write_exports(tmp_path / "month", [month], {"period": "2026-11"}, days=ExportDays([tmp_path / "day"]))
    assert bool(inflated) == (record != "kept" and day_file == "compressed")
    assert any(b"2026-11-02" in text for text in compressed) == (record != "kept" and day_file == "plain")
    assert gzip.decompress((tmp_path / "month" / "team_model_daily.csv.gz").read_bytes()) == render_csv(month)
    assert gzip.decompress((tmp_path / "month" / "team_model_daily.json.gz").read_bytes()) == render_json(month, {"period": "2026-11"})


def test_an_export_of_a_range_carries_no_day_record(tmp_path, monkeypatch):
    """The day members are the site's own bookkeeping: `usage-report export` (no build's ExportDays) writes none into a user's folder."""
    monkeypatch.setattr(exports, "COMPRESS_OVER", 100)
    write_exports(tmp_path / "one-day", [_table([{"date": "2026-11-02", "team_alias": f"T{i}", "spend": Decimal(i)} for i in range(20)])], {})
    assert sorted(p.name for p in (tmp_path / "one-day").iterdir()) == ["manifest.json", "team_model_daily.csv.gz", "team_model_daily.json.gz"]
