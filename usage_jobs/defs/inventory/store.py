"""Replaces the warehouse's key/team inventory with a snapshot (no Dagster)."""

from __future__ import annotations

import duckdb

from usage_jobs.defs.inventory.parse import KEY_COLUMNS, TEAM_COLUMNS, Inventory
from usage_jobs.warehouse import insert_rows, transaction

NOT_CONFIGURED = "no inventory configured: set USAGE_INVENTORY_FILE or GATEWAY_BASE_URL + GATEWAY_ADMIN_KEY"


def store_inventory(conn: duckdb.DuckDBPyConnection, snapshot: Inventory | None) -> None:
    """The snapshot replaces the previous one whole; None records that no inventory is configured."""
    with transaction(conn):
        conn.execute("DELETE FROM inventory_keys")
        conn.execute("DELETE FROM inventory_teams")
        conn.execute("DELETE FROM inventory_status")
        if snapshot is None:
            conn.execute("INSERT INTO inventory_status VALUES ('none', 0, 0, ?)", [NOT_CONFIGURED])
            return
        insert_rows(conn, "inventory_keys", snapshot.keys, KEY_COLUMNS)
        insert_rows(conn, "inventory_teams", snapshot.teams, TEAM_COLUMNS)
        conn.execute("INSERT INTO inventory_status VALUES (?, ?, ?, NULL)", [snapshot.source, len(snapshot.keys), len(snapshot.teams)])
