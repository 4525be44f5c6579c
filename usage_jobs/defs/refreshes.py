"""The last refresh of each outside source the report states (`source_refreshes`): the
gateway's key inventory and IG1's `/usage`. An asset that cannot reach its source records
the attempt before it fails, so the site, built from what the warehouse holds, says so."""

from __future__ import annotations

import datetime as dt

import duckdb

INVENTORY = "inventory"
IG1_USAGE = "ig1_usage"


def record_refresh(conn: duckdb.DuckDBPyConnection, source: str, error: str | None = None, now: dt.datetime | None = None) -> None:
    """One attempt to refresh `source`: a success when `error` is None."""
    now = now or dt.datetime.now(dt.UTC)
    conn.execute(
        "INSERT INTO source_refreshes VALUES (?, ?, ?, ?) ON CONFLICT (source) DO UPDATE SET attempted_at = excluded.attempted_at, "
        "succeeded_at = coalesce(excluded.succeeded_at, source_refreshes.succeeded_at), error = excluded.error",
        [source, now, None if error else now, error])


def _when(value: dt.datetime | None) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "never"


def outage_notes(conn: duckdb.DuckDBPyConnection) -> tuple[str | None, str | None]:
    """(inventory note, billing note): what the pages say when the last refresh of a source failed."""
    if not conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'source_refreshes'").fetchone()[0]:
        return None, None
    failed = {source: (attempted, succeeded, error.rstrip(".")) for source, attempted, succeeded, error in conn.execute(
        "SELECT source, attempted_at, succeeded_at, error FROM source_refreshes WHERE error IS NOT NULL").fetchall()}
    inventory = billing = None
    if INVENTORY in failed:
        attempted, succeeded, error = failed[INVENTORY]
        inventory = (f"The key inventory could not be refreshed at {_when(attempted)} ({error}): "
                     + (f"unused keys are as of {_when(succeeded)}." if succeeded else "unused keys are as of its last load."))
    if IG1_USAGE in failed:
        attempted, _, error = failed[IG1_USAGE]
        last = conn.execute("SELECT max(asked_on) FROM commit_status").fetchone()[0]
        billing = (f"IG1 billing could not be reached at {_when(attempted)} ({error}): "
                   + (f"commit figures are from {last}, billed figures from IG1's last answer." if last else "there are no commit figures yet."))
    return inventory, billing
