"""The gateway's key and team inventory (unused keys never appear in request logs)."""


from pathlib import Path

import dagster as dg

from usage_jobs.defs.inventory.client import fetch_inventory
from usage_jobs.defs.inventory.parse import KEY_COLUMNS, TEAM_COLUMNS, Inventory, InventoryError, parse_inventory, read_inventory_file
from usage_jobs.defs.resources import WAREHOUSE_POOL, InventoryResource, WarehouseResource
from usage_jobs.warehouse import transaction


def load_inventory(source: InventoryResource) -> Inventory | None:
    """The inventory from the gateway API when configured, else from the file, else None."""
    if source.gateway_base_url and source.gateway_admin_key:
        keys, teams = fetch_inventory(source.gateway_base_url, source.gateway_admin_key)
        return parse_inventory(keys, teams, f"gateway {source.gateway_base_url}")
    if source.inventory_file:
        return read_inventory_file(Path(source.inventory_file))
    return None


@dg.asset(pool=WAREHOUSE_POOL, group_name="inventory", kinds={"duckdb"})
def key_inventory(context: dg.AssetExecutionContext, warehouse: WarehouseResource, inventory: InventoryResource):
    """Virtual keys and teams as the gateway lists them (`/key/list`, `/team/list`), replaced at each run.

    Without GATEWAY_BASE_URL/GATEWAY_ADMIN_KEY or USAGE_INVENTORY_FILE the tables are
    emptied and the report says the inventory is not configured."""
    try:
        snapshot = load_inventory(inventory)
    except InventoryError as exc:
        raise dg.Failure(description=str(exc)) from None
    with warehouse.connect() as conn, transaction(conn):
        conn.execute("DELETE FROM inventory_keys")
        conn.execute("DELETE FROM inventory_teams")
        conn.execute("DELETE FROM inventory_status")
        if snapshot is None:
            conn.execute("INSERT INTO inventory_status VALUES ('none', 0, 0, 'no inventory configured: set USAGE_INVENTORY_FILE or GATEWAY_BASE_URL + GATEWAY_ADMIN_KEY')")
            context.log.warning("No key/team inventory configured; unused keys cannot be listed.")
            return dg.MaterializeResult(metadata={"keys": 0, "teams": 0, "source": "none"})
        if snapshot.keys:
            conn.executemany(f"INSERT INTO inventory_keys ({', '.join(KEY_COLUMNS)}) VALUES ({', '.join('?' * len(KEY_COLUMNS))})", snapshot.keys)
        if snapshot.teams:
            conn.executemany(f"INSERT INTO inventory_teams ({', '.join(TEAM_COLUMNS)}) VALUES ({', '.join('?' * len(TEAM_COLUMNS))})", snapshot.teams)
        conn.execute("INSERT INTO inventory_status VALUES (?, ?, ?, NULL)", [snapshot.source, len(snapshot.keys), len(snapshot.teams)])
    return dg.MaterializeResult(metadata={"dagster/row_count": len(snapshot.keys), "keys": len(snapshot.keys), "teams": len(snapshot.teams), "source": snapshot.source})
