"""The gateway's key/team inventory, from its API responses or a file holding them (pydantic models).

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
from typing import Annotated, Any

from pydantic import AfterValidator, AliasChoices, BaseModel, BeforeValidator, Field, ValidationError, ValidatorFunctionWrapHandler, WrapValidator


class InventoryError(ValueError):
    pass


KEY_COLUMNS = ("key_hash", "key_alias", "key_name", "team_id", "user_id", "max_budget", "spend", "budget_duration", "blocked", "expires",
               "created_at", "models")
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


def _or_default(default: Any) -> WrapValidator:
    """A field the inventory can do without: its value when it validates, else `default`
    (LiteLLM releases differ; one odd field must not lose the whole key)."""

    def keep_or_default(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            return default

    return WrapValidator(keep_or_default)


def _utc_if_naive(moment: dt.datetime | None) -> dt.datetime | None:
    return moment.replace(tzinfo=dt.UTC) if moment is not None and moment.tzinfo is None else moment


Text = Annotated[str | None, _or_default(None)]
Amount = Annotated[float | None, _or_default(None)]
Moment = Annotated[dt.datetime | None, AfterValidator(_utc_if_naive), _or_default(None)]
Flag = Annotated[bool, _or_default(False)]
Names = Annotated[list[Annotated[str, BeforeValidator(str)]], _or_default([])]


class GatewayKey(BaseModel):
    """One virtual key of `/key/list?return_full_object=true`; fields named as the `inventory_keys` columns."""

    # /key/list returns the hashed key as `token`; some versions name it `key`/`token_id`.
    key_hash: Annotated[str, Field(min_length=1, validation_alias=AliasChoices("token", "key", "token_id"))]
    key_alias: Text = None
    key_name: Text = None
    team_id: Text = None
    user_id: Text = None
    max_budget: Amount = None
    spend: Amount = None
    budget_duration: Text = None
    blocked: Flag = False
    expires: Moment = None
    created_at: Moment = None
    models: Names = []


class GatewayTeam(BaseModel):
    """One team of `/team/list`; fields named as the `inventory_teams` columns."""

    team_id: Annotated[str, Field(min_length=1)]
    team_alias: Text = None
    max_budget: Amount = None
    spend: Amount = None
    budget_duration: Text = None
    blocked: Flag = False
    models: Names = []
    created_at: Moment = None


def _rows(model: type[BaseModel], items: list[dict], columns: tuple[str, ...]) -> list[tuple]:
    """Each item as a warehouse row, sorted by its id; an item without an id cannot be stored and is left out."""
    rows = []
    for item in items:
        try:
            parsed = model.model_validate(item)
        except ValidationError:
            continue
        rows.append(tuple(getattr(parsed, column) for column in columns))
    return sorted(rows, key=lambda row: row[0])


def parse_inventory(keys_document: Any, teams_document: Any, source: str) -> Inventory:
    return Inventory(keys=_rows(GatewayKey, _items(keys_document, "keys", source), KEY_COLUMNS),
                     teams=_rows(GatewayTeam, _items(teams_document, "teams", source), TEAM_COLUMNS), source=source)


def read_inventory_file(path: Path) -> Inventory:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InventoryError(f"USAGE_INVENTORY_FILE {path}: cannot read it as JSON ({exc})") from None
    if not isinstance(document, dict) or "keys" not in document:
        raise InventoryError(f"USAGE_INVENTORY_FILE {path}: expected {{\"keys\": <GET /key/list response>, \"teams\": <GET /team/list response>}}")
    return parse_inventory(document["keys"], document.get("teams", []), f"file {path.name}")
