"""Reads the key and team inventory from the gateway's management API (LiteLLM), with the
shared retries (`usage_jobs.http_retry`): timeouts, connection errors, 429 and 5xx are
retried; a wrong admin key fails at once naming GATEWAY_ADMIN_KEY, never the key itself."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from usage_jobs.defs.inventory.parse import InventoryError
from usage_jobs.http_retry import gateway_client

PAGE_SIZE = 100
MAX_PAGES = 1000


def fetch_inventory(base_url: str, admin_key: str, *, timeout: float = 30.0, transport: httpx.BaseTransport | None = None,
                    max_retries: int = 2, backoff_seconds: float = 0.5, sleep: Callable[[float], None] = time.sleep,
                    jitter: Callable[[], float] = random.random, log: Callable[[str], None] | None = None) -> tuple[list[dict], list[dict]]:
    """All keys (every page of /key/list) and all teams (/team/list)."""
    if not admin_key:
        raise InventoryError("GATEWAY_ADMIN_KEY is not set: the inventory cannot be read from the gateway")
    with gateway_client(base_url, admin_key, error=InventoryError, timeout=timeout, max_retries=max_retries,
                        backoff_seconds=backoff_seconds, transport=transport, sleep=sleep, jitter=jitter, log=log) as client:
        keys: list[dict] = []
        for page in range(1, MAX_PAGES + 1):
            body: Any = client.get_json("/key/list", {"page": page, "size": PAGE_SIZE, "return_full_object": "true"})
            items = body.get("keys") if isinstance(body, dict) else body
            if not isinstance(items, list):
                raise InventoryError("gateway /key/list: expected {\"keys\": [...]} in the response")
            keys += items
            total_pages = body.get("total_pages") if isinstance(body, dict) else None
            if not items or (isinstance(total_pages, int) and page >= total_pages) or (total_pages is None and len(items) < PAGE_SIZE):
                break
        teams = client.get_json("/team/list", {})
    return keys, teams
