"""Reads the key and team inventory from the gateway's management API (LiteLLM)."""

from __future__ import annotations

from typing import Any

import httpx

from usage_jobs.defs.inventory.parse import InventoryError

PAGE_SIZE = 100
MAX_PAGES = 1000


def _get(client: httpx.Client, path: str, params: dict[str, Any]) -> Any:
    try:
        response = client.get(path, params=params)
    except httpx.HTTPError as exc:
        raise InventoryError(f"gateway {path}: {type(exc).__name__} ({exc})") from None
    if response.status_code in (401, 403):
        raise InventoryError(f"gateway {path}: HTTP {response.status_code}: GATEWAY_ADMIN_KEY is wrong, revoked or not an admin key")
    if response.status_code != 200:
        raise InventoryError(f"gateway {path}: HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError:
        raise InventoryError(f"gateway {path}: the response is not JSON") from None


def fetch_inventory(base_url: str, admin_key: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None) -> tuple[list[dict], list[dict]]:
    """All keys (every page of /key/list) and all teams (/team/list)."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    with httpx.Client(base_url=base_url, headers=headers, timeout=timeout, transport=transport) as client:
        keys: list[dict] = []
        for page in range(1, MAX_PAGES + 1):
            body = _get(client, "/key/list", {"page": page, "size": PAGE_SIZE, "return_full_object": "true"})
            items = body.get("keys") if isinstance(body, dict) else body
            if not isinstance(items, list):
                raise InventoryError("gateway /key/list: expected {\"keys\": [...]} in the response")
            keys += items
            total_pages = body.get("total_pages") if isinstance(body, dict) else None
            if not items or (isinstance(total_pages, int) and page >= total_pages) or (total_pages is None and len(items) < PAGE_SIZE):
                break
        teams = _get(client, "/team/list", {})
    return keys, teams
