"""The gateway's key/team inventory, from its API responses or a file holding them.

Accepted shapes (what LiteLLM returns): `/key/list?return_full_object=true` →
`{"keys": [...], "total_count", "current_page", "total_pages"}` (or a bare list), and
`/team/list` → a list of teams (or `{"teams": [...]}`). A file holds both:
`{"keys": <key list response>, "teams": <team list response>}`.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class InventoryError(ValueError):
    pass


KEY_COLUMNS = ("key_hash", "key_alias", "key_name", "team_id", "user_id", "max_budget", "spend", "budget_duration", "blocked", "expires", "created_at", "models")
TEAM_COLUMNS = ("team_id", "team_alias", "max_budget", "spend", "budget_duration", "blocked", "models", "created_at")


@dataclass
class Inventory:
    keys: list[tuple]
    teams: list[tuple]
    source: str


def _items(document: Any, field: str, where: str) -> list[dict]:
    if isinstance(document, dict) and field in document:
        document = document[field]
    if not isinstance(document, list):
        raise InventoryError(f"{where}: expected a list of {field} (or {{\"{field}\": [...]}}), got {type(document).__name__}")
    bad = [i for i, item in enumerate(document) if not isinstance(item, dict)]
    if bad:
        raise InventoryError(f"{where}: {field} entry {bad[0]} is not an object")
    return document


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _time(value: Any) -> dt.datetime | None:
    if not value or not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _strings(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def key_row(item: dict) -> tuple | None:
    # /key/list returns the hashed key as `token`; some versions name it `key`/`token_id`.
    key_hash = item.get("token") or item.get("key") or item.get("token_id")
    if not isinstance(key_hash, str) or not key_hash:
        return None
    return (
        key_hash, item.get("key_alias"), item.get("key_name"), item.get("team_id"), item.get("user_id"),
        _number(item.get("max_budget")), _number(item.get("spend")), item.get("budget_duration"),
        bool(item.get("blocked")), _time(item.get("expires")), _time(item.get("created_at")), _strings(item.get("models")),
    )


def team_row(item: dict) -> tuple | None:
    team_id = item.get("team_id")
    if not isinstance(team_id, str) or not team_id:
        return None
    return (
        team_id, item.get("team_alias"), _number(item.get("max_budget")), _number(item.get("spend")),
        item.get("budget_duration"), bool(item.get("blocked")), _strings(item.get("models")), _time(item.get("created_at")),
    )


def parse_inventory(keys_document: Any, teams_document: Any, source: str) -> Inventory:
    keys = [row for row in map(key_row, _items(keys_document, "keys", source)) if row]
    teams = [row for row in map(team_row, _items(teams_document, "teams", source)) if row]
    return Inventory(keys=sorted(keys, key=lambda r: r[0]), teams=sorted(teams, key=lambda r: r[0]), source=source)


def read_inventory_file(path: Path) -> Inventory:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InventoryError(f"USAGE_INVENTORY_FILE {path}: cannot read it as JSON ({exc})") from None
    if not isinstance(document, dict) or "keys" not in document:
        raise InventoryError(f"USAGE_INVENTORY_FILE {path}: expected {{\"keys\": <GET /key/list response>, \"teams\": <GET /team/list response>}}")
    return parse_inventory(document["keys"], document.get("teams", []), f"file {path.name}")
