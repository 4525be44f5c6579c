"""Data scripts for the pages report.js draws: a period's keys table (`keys-data.js`) and its tag and end-user pages
(`tag-data.js`, `end-user-data.js`), each read by one page of the period (keys.html, tag.html?t=<page>, end-user.html?u=<page>).

Rendered as markup, keys.html listed every key of the inventory twice (1.5 MB a period at 3,000 keys) and every tag and end user
had a page per period (~2,300 files, 76 MB). As key_data.py: a script assigning `window.<NAME>` (the site opens from file://,
where fetch() fails), arrays rather than named fields, counts as integers, money as the decimal text the page shows (4 places,
as the `usd4` filter); the page only adds "$" and thousands separators. Names are set as text by the page.

`KEYS_DATA` = {"label": period label, "href": the link to a key's page from keys.html with "{page}", "{month}" and "{day}" in place
of the key's page name, the first 7 characters of its day and its day (`key.html?k={page}` in a month or rolling period, which has
a key page; else `../../periods/{month}/key.html?k={page}#d-{day}`, the month's page at the key's last day with requests), "teams":
[team name …], "owners": [owner …], "days": [day …] (the days links name), "keys": [KEY …] in the table's order}, each name and day
once, KEY = [alias or null, first 12 characters of key_hash, team (alias, else id: index in teams), status, requests, failed, total
tokens, spend or null (unpriced), unpriced requests, budget or null, abnormal days, last request (as the `when` filter), page name
of the key (for "{page}") or null (no link), owner (index in owners) or null, age in days or null, the link's day (index in days)
or null (no link, or a link naming no day)], budget = [used % as the page shows it, max budget, flag or null]. Written out in every
KEY, the links, teams and owners made a day's file 607 KB at 3,000 keys (now 412 KB; a month's 532 -> 426 KB).

`TAG_DATA` / `END_USER_DATA` = {"label": period label, "days": [every day of the period], "all": whether every day is listed (else
only the days with requests), "items": {page name: ITEM}}, ITEM = [label, requests, successful, failed, input tokens, output
tokens, total tokens, spend or null, unpriced requests, requests also under another tag, DAYS, MODELS, TEAMS], DAYS = [[index in
days, requests, failed, total tokens, spend or null, unpriced requests] …] (the days with requests), MODELS and TEAMS = [[name,
requests, failed, total tokens, spend or null, unpriced requests] …], largest spender first.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal

from usage_jobs.defs.report.insights import DimensionView
from usage_jobs.defs.report.periods import Period
from usage_jobs.defs.report.queries import MAX_DAYS_LISTED, KeyUsage

KEYS_SCRIPT = "keys-data.js"
# Per dimension folder name (as insights and exports call them): its page, its data script, the script's variable, the query
# parameter naming an item.
DIMENSION_PAGES = {"tags": ("tag.html", "tag-data.js", "TAG_DATA", "t"), "end-users": ("end-user.html", "end-user-data.js", "END_USER_DATA", "u")}
KEYS_FIELDS = ("alias", "key_hash", "team", "status", "requests", "failed_requests", "total_tokens", "spend", "unpriced_requests", "budget",
               "anomalies", "last_request", "page", "owner", "age_days", "day")
ITEM_FIELDS = ("label", "requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens", "spend",
               "unpriced_requests", "shared_requests", "days", "models", "teams")
ROW_FIELDS = ("name", "requests", "failed_requests", "total_tokens", "spend", "unpriced_requests")


def money(value) -> str | None:
    """Money as the exact decimal text the pages show (4 places, as the `usd4` filter)."""
    return None if value is None else f"{Decimal(value):.4f}"


def script(name: str, document: dict) -> str:
    """`window.<name> = {…};`: JSON with <, > and & escaped, ASCII only (the file is read in the page's encoding)."""
    text = json.dumps(document, separators=(",", ":"))
    return f"window.{name} = " + text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026") + ";\n"


def read_script(text: str) -> dict:
    """The document of a data script (tests, tools)."""
    return json.loads(text.split(" = ", 1)[1].rstrip().removesuffix(";"))


def _key(key: KeyUsage, team: int, owner: int | None, day: int | None, when: Callable) -> list:
    budget = [f"{key.budget_used_pct}", f"{key.max_budget}", key.budget_flag] if key.budget_used_pct is not None else None
    return [key.key_alias, key.key_hash[:12], team, key.status, key.requests or 0, key.failed_requests or 0, key.total_tokens or 0,
            money(key.spend_usd), key.unpriced_requests or 0, budget, key.anomalies or 0, when(key.last_request_at), key.page, owner,
            key.age_days, day]


def _index(names: dict, name):
    return None if name is None else names.setdefault(name, len(names))


def keys_data(period: Period, keys: tuple[KeyUsage, ...], page_href: Callable, when: Callable) -> dict:
    """The rows of keys.html; `page_href` as build._page_links gives it: its link pattern from the period's folder and each key's day."""
    teams: dict[str, int] = {}
    owners: dict[str, int] = {}
    days: dict[str, int] = {}
    rows = [_key(key, _index(teams, key.team_alias or key.team_id), _index(owners, key.owner),
                 _index(days, page_href.day("keys", key.page) if key.page else None), when) for key in keys]
    return {"label": period.label, "href": page_href.pattern("keys", "", "../../"), "teams": list(teams), "owners": list(owners),
            "days": list(days), "keys": rows}


def _row(row, name) -> list:
    return [name, row.requests, row.failed_requests, row.total_tokens, money(row.spend_usd), row.unpriced_requests]


def _used(row) -> bool:
    return bool(row.requests or row.failed_requests or row.total_tokens or row.unpriced_requests) or row.spend_usd != 0


def day_listing(period: Period) -> tuple[dict, dict[str, int]]:
    """A document listing days: its head (the period's label, every day, whether the page lists them all) and each day's index."""
    days = [day.isoformat() for day in period.days]
    return {"label": period.label, "days": days, "all": period.length <= MAX_DAYS_LISTED}, {day: i for i, day in enumerate(days)}


def dimension_data(period: Period, view: DimensionView) -> dict:
    head, index = day_listing(period)
    items = {}
    for page in view.pages:
        u = page.usage
        items[u.page] = [u.label, u.requests, u.successful_requests, u.failed_requests, u.input_tokens, u.output_tokens, u.total_tokens,
                         money(u.spend_usd), u.unpriced_requests, u.shared_requests,
                         [_row(d, index[d.name]) for d in page.days if _used(d)],
                         [_row(m, m.name) for m in page.models], [_row(t, t.name) for t in page.teams]]
    return head | {"items": items}
