"""The gateway's key and team inventory (unused keys never appear in request logs)."""


from pathlib import Path

import dagster as dg

from usage_jobs.defs.gateway.assets import NETWORK_RETRY
from usage_jobs.defs.inventory.client import fetch_inventory
from usage_jobs.defs.inventory.parse import Inventory, InventoryError, parse_inventory, read_inventory_file
from usage_jobs.defs.inventory.store import store_inventory
from usage_jobs.defs.refreshes import INVENTORY, record_refresh
from usage_jobs.defs.resources import WAREHOUSE_POOL, InventoryResource, WarehouseResource


def load_inventory(source: InventoryResource) -> Inventory | None:
    """The inventory from the gateway API when configured, else from the file, else None."""
    if source.gateway_base_url and source.gateway_admin_key:
        keys, teams = fetch_inventory(source.gateway_base_url, source.gateway_admin_key, max_retries=source.max_retries)
        return parse_inventory(keys, teams, f"gateway {source.gateway_base_url}")
    if source.inventory_file:
        return read_inventory_file(Path(source.inventory_file))
    return None


@dg.asset(pool=WAREHOUSE_POOL, group_name="inventory", kinds={"duckdb"}, retry_policy=NETWORK_RETRY)
def key_inventory(context: dg.AssetExecutionContext, warehouse: WarehouseResource, inventory: InventoryResource):
    """Virtual keys and teams as the gateway lists them (`/key/list`, `/team/list`), replaced at each run.

    Without GATEWAY_BASE_URL/GATEWAY_ADMIN_KEY or USAGE_INVENTORY_FILE the tables are
    emptied and the report says the inventory is not configured. When the inventory cannot
    be read, the previous snapshot is kept, the attempt is recorded in `source_refreshes`
    (the site states it) and the asset fails."""
    try:
        snapshot = load_inventory(inventory)
    except (InventoryError, OSError) as exc:
        with warehouse.connect() as conn:
            record_refresh(conn, INVENTORY, error=str(exc))
        raise dg.Failure(description=str(exc), allow_retries=False) from None
    with warehouse.connect() as conn:
        store_inventory(conn, snapshot)
        if snapshot is not None:
            record_refresh(conn, INVENTORY)
    if snapshot is None:
        context.log.warning("No key/team inventory configured; unused keys cannot be listed.")
        return dg.MaterializeResult(metadata={"keys": 0, "teams": 0, "source": "none"})
    return dg.MaterializeResult(metadata={"dagster/row_count": len(snapshot.keys), "keys": len(snapshot.keys), "teams": len(snapshot.teams),
                                          "source": snapshot.source})
