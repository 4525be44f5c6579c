"""One data script per month and rolling period holding every used key's page (`key-data.js`, written by table_data.script), read by its one `key.html`.

A page per key and period made ~10,000 files (82 MB) of a 3,000-key site; the page is now drawn in the browser by report.js
from `window.KEY_DATA`, assigned in a script (not JSON fetched: the site is opened from file:// too). To stay small it holds
arrays, not named fields, and only the days a key was used or flagged (the page fills the others from `days`). Counts are
integers; money is the exact decimal text the page shows (4 places, as the `usd4` filter; a budget's spend 2 places), the
page only adds "$" and thousands separators.

`KEY_DATA` = {"label": period label, "days": [every day of the period], "all": whether every day is listed (else only the days
with requests), "keys": {page name: KEY}}, where
KEY = [alias or null, key_hash, team (alias, else id), status, first request, last request (as the `when` filter), spend or null
(unpriced), unpriced requests, input tokens, output tokens, total tokens, requests, successful, failed, budget or null, DAYS, MODELS],
budget = [flag, spend in its window, max budget], DAYS = [[index in days, requests, failed, total tokens, spend, unpriced
requests(, anomaly)] …] (no requests: the four figures null), MODELS = [[model, requests, total tokens, spend or null, unpriced
requests] …], largest spender first.
"""

from __future__ import annotations

from collections.abc import Callable

from usage_jobs.defs.report.queries import KeyPage, PeriodData
from usage_jobs.defs.report.table_data import day_listing, money

SCRIPT_FILE = "key-data.js"
PAGE_FILE = "key.html"
# Keys of KEY and of a day row, for readers (tests) of the script.
KEY_FIELDS = ("alias", "key_hash", "team", "status", "first_request", "last_request", "spend", "unpriced_requests", "input_tokens",
              "output_tokens", "total_tokens", "requests", "successful_requests", "failed_requests", "budget", "days", "models")
DAY_FIELDS = ("day", "requests", "failed_requests", "total_tokens", "spend", "unpriced_requests", "anomaly")
MODEL_FIELDS = ("model", "requests", "total_tokens", "spend", "unpriced_requests")


def _key(page: KeyPage, index: dict, when: Callable) -> list:
    key = page.key
    budget = [key.budget_flag, f"{key.budget_spend_usd:.2f}", str(key.max_budget)] if key.budget_flag else None
    days = []
    for day in page.days:
        usage = day.usage
        if usage is None and not day.anomaly:
            continue
        row = [index[day.date.isoformat()]] + ([usage.requests, usage.failed_requests, usage.total_tokens, money(usage.spend_usd), usage.unpriced_requests]
                                              if usage else [None, None, None, None, None])
        days.append(row + [day.anomaly] if day.anomaly else row)
    models = [[m.model, m.requests, m.total_tokens, money(m.spend_usd), m.unpriced_requests] for m in page.models]
    return [key.key_alias, key.key_hash, key.team_alias or key.team_id, key.status, when(key.first_request_at), when(key.last_request_at),
            money(key.spend_usd), key.unpriced_requests, key.input_tokens, key.output_tokens, key.total_tokens, key.requests,
            key.successful_requests, key.failed_requests, budget, days, models]


def key_data(data: PeriodData, when: Callable) -> dict:
    head, index = day_listing(data.period)
    return head | {"keys": {page.key.page: _key(page, index, when) for page in data.key_pages}}
