"""The requests_unique check reads the run's days and their neighbours only (issue 14)."""

from __future__ import annotations

import datetime as dt

from usage_jobs import warehouse
from usage_jobs.defs.gateway.assets import requests_stored_twice

DAY = dt.date(2026, 11, 10)


def _insert(conn, day: dt.date, request_id: str, start: str) -> None:
    conn.execute("INSERT INTO requests (day, request_id, start_time, status, model, key_hash, team_id, input_tokens, output_tokens, "
                 "total_tokens, cached_input_tokens, cache_creation_tokens, tokens_estimated, tokens_missing, spend_repriced, unpriced, "
                 "metadata_unreadable, source_file) VALUES (?, ?, ?, 'success', 'm', 'k', 't', 1, 1, 2, 0, 0, false, false, false, false, false, 'f')",
                 [day, request_id, start])


def test_twins_of_the_day_and_copies_on_a_neighbouring_day_count_a_neighbours_own_twins_do_not(tmp_path):
    conn = warehouse.connect(tmp_path / "w.duckdb")
    _insert(conn, DAY, "a", "2026-11-10 10:00:00+00")
    _insert(conn, DAY, "b", "2026-11-10 11:00:00+00")
    _insert(conn, DAY, "b", "2026-11-10 12:00:00+00")  # an id collision: another request
    assert requests_stored_twice(conn, DAY, DAY) == (0, None)
    _insert(conn, DAY, "a", "2026-11-10 10:00:00+00")
    assert requests_stored_twice(conn, DAY, DAY) == (1, "a")
    _insert(conn, DAY + dt.timedelta(days=1), "c", "2026-11-10 23:30:00+00")
    _insert(conn, DAY, "c", "2026-11-10 23:30:00+00")  # the same request on the next day too (a time zone changed)
    assert requests_stored_twice(conn, DAY, DAY) == (2, "a")
    _insert(conn, DAY - dt.timedelta(days=1), "d", "2026-11-09 08:00:00+00")
    _insert(conn, DAY - dt.timedelta(days=1), "d", "2026-11-09 08:00:00+00")  # the day before's own twins: its check's
    assert requests_stored_twice(conn, DAY, DAY) == (2, "a")
    assert requests_stored_twice(conn, DAY - dt.timedelta(days=1), DAY - dt.timedelta(days=1)) == (1, "d")
    _insert(conn, DAY - dt.timedelta(days=5), "a", "2026-11-10 10:00:00+00")  # further away: not read
    assert requests_stored_twice(conn, DAY, DAY) == (2, "a")
    conn.close()
