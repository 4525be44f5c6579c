"""Several days ingested at once: read and validated by worker processes, stored by one writer, in order.

Whatever the number of workers, the warehouse ends exactly as with one day at a time; a day without
logs fails at its turn, after the days before it were stored and before any day after it."""

import datetime as dt

import pytest

from conftest import DEMO_DAYS, DEMO_END
from usage_jobs import warehouse
from usage_jobs.defs.gateway import ingest
from usage_jobs.defs.gateway.ingest import DaySource, MissingLogsError, ingest_day, ingest_days
from usage_jobs.defs.gateway.pricing import load_prices

DAYS = [DEMO_END - dt.timedelta(days=i) for i in reversed(range(DEMO_DAYS))]
TABLES = {  # each stored table, in an order that makes its rows comparable
    "requests": "SELECT * FROM requests ORDER BY request_id, start_time",
    "rejected_records": "SELECT * FROM rejected_records ORDER BY ALL",
    "ingest_days": "SELECT * FROM ingest_days ORDER BY day",
    "unrecognised_files": "SELECT * FROM unrecognised_files ORDER BY ALL",
}


def _contents(conn) -> dict[str, list]:
    return {table: conn.execute(query).fetchall() for table, query in TABLES.items()}


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_days_staged_by_workers_are_stored_exactly_as_one_day_at_a_time(demo_org, tmp_path, workers):
    where = DaySource(logs_dir=demo_org / "logs", timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
    one_by_one = warehouse.connect(tmp_path / "one.duckdb")
    expected = [ingest_day(one_by_one, logs_dir=where.logs_dir, day=day, timezone="UTC", prices=where.prices, max_record_bytes=16_000_000)
                for day in DAYS]
    together = warehouse.connect(tmp_path / "together.duckdb")
    stats = list(ingest_days(together, where, DAYS, workers=workers))
    assert stats == expected
    assert sum(s.rows for s in stats) > 0 and sum(s.duplicates for s in stats) > 0
    assert _contents(together) == _contents(one_by_one)


def test_a_day_without_logs_fails_at_its_turn_the_days_before_it_stored(demo_org, tmp_path):
    where = DaySource(logs_dir=demo_org / "logs", timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
    missing = DEMO_END + dt.timedelta(days=5)
    conn = warehouse.connect(tmp_path / "w.duckdb")
    stored = []
    with pytest.raises(MissingLogsError, match=f"No gateway logs for {missing}"):
        for stats in ingest_days(conn, where, [DAYS[0], DAYS[1], missing, DAYS[2]], workers=2):
            stored.append(stats.day)
    assert stored == [DAYS[0].isoformat(), DAYS[1].isoformat()]
    days = [row[0] for row in conn.execute("SELECT DISTINCT day FROM requests ORDER BY day").fetchall()]
    assert days == DAYS[:2]


def test_a_date_folder_read_by_two_days_of_a_run_is_folded_once(demo_org, tmp_path, monkeypatch):
    """Each day also reads the next day's date folder: in one run, its one-request files are folded once, not by both days."""
    where = DaySource(logs_dir=demo_org / "logs", timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
    folded: list[tuple[str, ...]] = []
    write_shard = ingest.write_shard
    monkeypatch.setattr(ingest, "write_shard", lambda shard, files: folded.append(tuple(path for path, _ in files)) or write_shard(shard, files))
    for day in DAYS:
        ingest_day(warehouse.connect(tmp_path / f"{day}.duckdb"), logs_dir=where.logs_dir, day=day, timezone="UTC", prices=where.prices,
                   max_record_bytes=16_000_000)
    day_by_day = list(folded)
    folded.clear()
    list(ingest_days(warehouse.connect(tmp_path / "run.duckdb"), where, DAYS, workers=1))
    assert len(set(day_by_day)) < len(day_by_day)  # the days alone fold a shared folder twice
    assert sorted(folded) == sorted(set(day_by_day))
