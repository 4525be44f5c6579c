"""What the pages and exports of one period show, read from the warehouse.

The period's `daily_usage` rows (day × team × key × model) are read once and every
breakdown is summed from them, so teams, keys, models and days always add up to the
same global totals.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

import duckdb

from usage_jobs.defs.billing.reconcile import UNASSIGNED
from usage_jobs.defs.keys.budgets import budget_flag, budget_window_days
from usage_jobs.defs.report.periods import Period

DAILY_COLUMNS = ["date", "requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens", "spend_usd",
                 "cached_input_tokens", "unpriced_requests", "estimated_requests"]
MODEL_COLUMNS = ["model", "requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens", "spend_usd",
                 "billed_input_tokens", "billed_output_tokens", "billed_cost", "billed_currency", "unpriced_requests"]
TEAM_COLUMNS = ["team_id", "team_alias", "requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens",
                "spend_usd", "billed_cost_allocated", "top_model", "billed_currency", "unpriced_requests"]
KEY_COLUMNS = ["key_hash", "key_alias", "team_id", "team_alias", "requests", "successful_requests", "failed_requests", "input_tokens",
               "output_tokens", "total_tokens", "spend_usd", "last_request_at", "status", "first_request_at", "created_at", "expires", "owner",
               "max_budget", "budget_window_days", "budget_spend_usd", "budget_used_pct", "budget_flag", "anomalies", "unpriced_requests"]
ANOMALY_COLUMNS = ["date", "key_hash", "key_alias", "team_id", "team_alias", "metric", "value", "baseline", "score", "reason"]
TEAM_MODEL_DAILY_COLUMNS = ["date", "team_id", "team_alias", "model", "requests", "successful_requests", "failed_requests", "input_tokens",
                            "output_tokens", "total_tokens", "spend_usd", "billed_cost_allocated", "billed_currency", "unpriced_requests"]
KEY_MODEL_DAILY_COLUMNS = ["date", "key_hash", "key_alias", "team_id", "model", "requests", "successful_requests", "failed_requests",
                           "input_tokens", "output_tokens", "total_tokens", "spend_usd", "unpriced_requests"]
COUNTS = ("requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens", "cached_input_tokens",
          "unpriced_requests", "estimated_requests")


def page_name(identifier: str) -> str:
    """A file name for a team or key page: hashed, so no text from the logs reaches a path."""
    return hashlib.sha256(identifier.encode("utf-8")).hexdigest()[:16]


def rows_as_dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def _empty() -> dict:
    return {**{name: 0 for name in COUNTS}, "spend_usd": Decimal(0)}


def _add(target: dict, row: dict) -> None:
    for name in COUNTS:
        target[name] += row[name]
    target["spend_usd"] += row["spend_usd"] or 0


@dataclass
class PeriodData:
    period: Period
    daily: list[dict]
    totals: dict
    previous_totals: dict | None
    top_keys: list[dict]
    models: list[dict]
    teams: list[dict]
    keys: list[dict]
    team_model_daily: list[dict]
    key_model_daily: list[dict]
    anomalies: list[dict] = field(default_factory=list)
    attention: list[dict] = field(default_factory=list)  # what an admin should look at, most pressing first
    team_pages: dict[str, dict] = field(default_factory=dict)  # team_id → its page's data
    key_pages: dict[str, dict] = field(default_factory=dict)  # key_hash → its page's data
    missing_days: list[str] = field(default_factory=list)
    rejected: int = 0
    duplicates: int = 0
    spend_by_model_day: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    last_ingested: str | None = None


def _totals(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> dict | None:
    row = conn.execute("SELECT count(*) FROM ingest_days WHERE day BETWEEN ? AND ?", [start, end]).fetchone()
    if not row[0]:
        return None
    requests, tokens, spend = conn.execute(
        "SELECT coalesce(sum(requests), 0), coalesce(sum(total_tokens), 0), coalesce(sum(spend_usd), 0) FROM daily_usage WHERE day BETWEEN ? AND ?",
        [start, end]).fetchone()
    return {"requests": requests, "total_tokens": tokens, "spend_usd": spend, "days": row[0]}


def _key_status(key: dict, ever_used: bool) -> str:
    used = key["requests"] > 0
    expires, blocked = key.get("expires"), key.get("blocked")
    if used and expires is not None and key["last_in_period"] is not None and key["last_in_period"] > expires:
        return "expired but still used"
    if used and blocked:
        return "blocked but still used"
    if used and key["team_id"] in (None, UNASSIGNED):
        return "no team"
    if used:
        return "active"
    return "unused in the period" if ever_used else "never used"


class _WindowSpend:
    """Spend per key or team over windows ending on one day, one query per window length."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, end: dt.date):
        self.conn, self.end, self.cache = conn, end, {}

    def spend(self, column: str, identifier: str, days: int | None) -> Decimal:
        if (column, days) not in self.cache:
            start = self.end - dt.timedelta(days=days - 1) if days else dt.date(1970, 1, 1)
            self.cache[(column, days)] = dict(self.conn.execute(
                f"SELECT {column}, coalesce(sum(spend_usd), 0) FROM daily_usage WHERE day BETWEEN ? AND ? GROUP BY ALL", [start, self.end]).fetchall())
        return self.cache[(column, days)].get(identifier, Decimal(0))

    def budget(self, column: str, identifier: str, max_budget, duration) -> dict:
        """Spend in the budget window ending on the period's last day, against max_budget (USD)."""
        if not max_budget:
            return {"max_budget": None, "budget_window_days": None, "budget_spend_usd": None, "budget_used_pct": None, "budget_flag": None}
        days = budget_window_days(duration)
        spend = self.spend(column, identifier, days)
        share, flag = budget_flag(float(spend), float(max_budget))
        return {"max_budget": max_budget, "budget_window_days": days, "budget_spend_usd": spend,
                "budget_used_pct": round(share * 100, 1) if share is not None else None, "budget_flag": flag}


def _anomalies(conn: duckdb.DuckDBPyConnection, period: Period, keys: dict[str, dict]) -> list[dict]:
    rows = rows_as_dicts(conn.execute(
        "SELECT strftime(day, '%Y-%m-%d') AS date, key_hash, metric, value, baseline, score, reason FROM key_anomalies "
        "WHERE day BETWEEN ? AND ? ORDER BY day DESC, score DESC, key_hash, metric", [period.start, period.end]))
    for row in rows:
        key = keys.get(row["key_hash"], {})
        row.update({"key_alias": key.get("key_alias"), "team_id": key.get("team_id"), "team_alias": key.get("team_alias"), "page": key.get("page")})
    return rows


def _attention(anomalies: list[dict], keys: list[dict], teams) -> list[dict]:
    """Abnormal days, budgets at 80% or more, expired or blocked keys still in use: the global page's list."""
    items = [{"kind": "abnormal consumption", "subject": a["key_alias"] or a["key_hash"][:12], "page": a["page"], "text": f"{a['date']}: {a['reason']}"}
             for a in anomalies]
    items += [{"kind": key["budget_flag"], "subject": key["key_alias"] or key["key_hash"][:12], "page": key["page"],
               "text": f"key spent ${key['budget_spend_usd']:,.2f} of its ${key['max_budget']:,.2f} budget ({key['budget_used_pct']:.0f}%)"}
              for key in keys if key["budget_flag"]]
    items += [{"kind": team["budget_flag"], "subject": team["team_alias"] or team["team_id"], "page": None,
               "text": f"team spent ${team['budget_spend_usd']:,.2f} of its ${team['max_budget']:,.2f} budget ({team['budget_used_pct']:.0f}%)"}
              for team in teams if team.get("budget_flag")]
    items += [{"kind": key["status"], "subject": key["key_alias"] or key["key_hash"][:12], "page": key["page"], "text": f"{key['requests']:,} requests in the period"}
              for key in keys if key["status"] in ("expired but still used", "blocked but still used")]
    return items


def period_data(conn: duckdb.DuckDBPyConnection, period: Period) -> PeriodData:
    bounds = [period.start, period.end]
    rows = rows_as_dicts(conn.execute(
        "SELECT strftime(day, '%Y-%m-%d') AS date, team_id, team_alias, key_hash, key_alias, model, " + ", ".join(COUNTS) +
        ", spend_usd FROM daily_usage WHERE day BETWEEN ? AND ? ORDER BY day, team_id, key_hash, model", bounds))
    team_names = dict(conn.execute("SELECT team_id, team_alias FROM inventory_teams").fetchall())
    inventory = {row["key_hash"]: row for row in rows_as_dicts(conn.execute(
        "SELECT key_hash, key_alias, team_id, user_id, blocked, expires, created_at, max_budget, budget_duration FROM inventory_keys"))}
    team_budgets = {row["team_id"]: row for row in rows_as_dicts(conn.execute("SELECT team_id, max_budget, budget_duration FROM inventory_teams"))}
    allocated = {(d, t, m): (cost, currency) for d, t, m, cost, currency in conn.execute(
        "SELECT strftime(day, '%Y-%m-%d'), team_id, model, sum(allocated_cost), any_value(currency) FROM chargeback "
        "WHERE day BETWEEN ? AND ? GROUP BY ALL", bounds).fetchall()}
    billed = {m: (i, o, c, cur) for m, i, o, c, cur in conn.execute(
        "SELECT model, sum(input_tokens), sum(output_tokens), sum(cost), any_value(currency) FROM billed_usage WHERE day BETWEEN ? AND ? GROUP BY model",
        bounds).fetchall()}
    seen = {k: (first, last) for k, first, last in conn.execute(
        "SELECT key_hash, min(start_time), max(start_time) FROM requests WHERE day <= ? GROUP BY key_hash", [period.end]).fetchall()}
    last_in_period = dict(conn.execute(
        "SELECT key_hash, max(start_time) FROM requests WHERE day BETWEEN ? AND ? GROUP BY key_hash", bounds).fetchall())

    def team_alias(team_id: str, seen_alias: str | None) -> str | None:
        return team_names.get(team_id) or seen_alias

    # Days, models, teams, keys and their crossings, all summed from the same rows.
    daily = {d.isoformat(): {"date": d.isoformat(), **_empty()} for d in period.days}
    models: dict[str, dict] = defaultdict(_empty)
    teams: dict[str, dict] = {}
    keys: dict[str, dict] = {}
    team_model_daily: dict[tuple, dict] = {}
    key_model_daily: dict[tuple, dict] = {}
    spend_by_model_day: dict[str, dict[str, Decimal]] = defaultdict(dict)
    unpriced_models: set[str] = set()
    for row in rows:
        _add(daily[row["date"]], row)
        _add(models[row["model"]], row)
        if row["spend_usd"] is None:
            unpriced_models.add(row["model"])
        team = teams.setdefault(row["team_id"], {"team_id": row["team_id"], "team_alias": team_alias(row["team_id"], row["team_alias"]),
                                                 **_empty(), "by_model": defaultdict(_empty), "by_key": defaultdict(_empty), "by_day": defaultdict(_empty)})
        _add(team, row)
        _add(team["by_model"][row["model"]], row)
        _add(team["by_key"][row["key_hash"]], row)
        _add(team["by_day"][row["date"]], row)
        key = keys.setdefault(row["key_hash"], {"key_hash": row["key_hash"], "key_alias": row["key_alias"], "team_id": row["team_id"],
                                                "team_alias": team["team_alias"], **_empty(), "by_model": defaultdict(_empty), "by_day": defaultdict(_empty)})
        key["key_alias"] = row["key_alias"] or key["key_alias"]
        _add(key, row)
        _add(key["by_model"][row["model"]], row)
        _add(key["by_day"][row["date"]], row)
        cell = team_model_daily.setdefault((row["date"], row["team_id"], row["model"]), {
            "date": row["date"], "team_id": row["team_id"], "team_alias": team["team_alias"], "model": row["model"], **_empty()})
        _add(cell, row)
        _add(key_model_daily.setdefault((row["date"], row["key_hash"], row["model"]), {
            "date": row["date"], "key_hash": row["key_hash"], "key_alias": row["key_alias"], "team_id": row["team_id"], "model": row["model"], **_empty()}), row)
        spend_by_model_day[row["model"]][row["date"]] = spend_by_model_day[row["model"]].get(row["date"], Decimal(0)) + (row["spend_usd"] or 0)

    # A model with no price has no spend figure: shown as unpriced, never as $0.
    for name, model in models.items():
        model["model"] = name
        if name in unpriced_models and not model["spend_usd"]:
            model["spend_usd"] = None
        b = billed.get(name)
        model.update({"billed_input_tokens": b[0] if b else None, "billed_output_tokens": b[1] if b else None,
                      "billed_cost": b[2] if b else None, "billed_currency": b[3] if b else None})
    for name, (i, o, c, cur) in billed.items():
        if name not in models:  # billed by IG1 but never seen by the gateway
            models[name] = {"model": name, **_empty(), "billed_input_tokens": i, "billed_output_tokens": o, "billed_cost": c, "billed_currency": cur}

    for (date, team_id, model), cell in team_model_daily.items():
        cost, currency = allocated.pop((date, team_id, model), (None, None))
        cell.update({"billed_cost_allocated": cost, "billed_currency": currency})
    for (date, team_id, model), (cost, currency) in allocated.items():  # billed usage the gateway never saw: the unassigned bucket
        team_model_daily[(date, team_id, model)] = {"date": date, "team_id": team_id, "team_alias": team_alias(team_id, None), "model": model,
                                                    **_empty(), "billed_cost_allocated": cost, "billed_currency": currency}
        teams.setdefault(team_id, {"team_id": team_id, "team_alias": team_alias(team_id, None), **_empty(),
                                   "by_model": defaultdict(_empty), "by_key": defaultdict(_empty), "by_day": defaultdict(_empty)})
    billed_cells: dict[str, list[dict]] = defaultdict(list)
    for cell in team_model_daily.values():
        if cell["billed_cost_allocated"] is not None:
            billed_cells[cell["team_id"]].append(cell)
    for team in teams.values():
        cells = billed_cells[team["team_id"]]
        team["billed_cost_allocated"] = sum((c["billed_cost_allocated"] for c in cells), Decimal(0)) if cells else None
        team["billed_currency"] = cells[0]["billed_currency"] if cells else None
        ranked = sorted(team["by_model"].items(), key=lambda item: (-(item[1]["spend_usd"] or 0), -item[1]["total_tokens"], item[0]))
        team["top_model"] = ranked[0][0] if ranked else None

    # Keys: every key in the inventory or seen in the logs, with its status and budget in the period.
    window_spend = _WindowSpend(conn, period.end)
    for key_hash, inv in inventory.items():
        keys.setdefault(key_hash, {"key_hash": key_hash, "key_alias": inv["key_alias"], "team_id": inv["team_id"] or UNASSIGNED,
                                   "team_alias": team_alias(inv["team_id"] or UNASSIGNED, None), **_empty(),
                                   "by_model": defaultdict(_empty), "by_day": defaultdict(_empty)})
    for key_hash, key in keys.items():
        inv = inventory.get(key_hash, {})
        first, last = seen.get(key_hash, (None, None))
        # The inventory has the current alias; the logs have the one used at the time.
        key.update({"key_alias": inv.get("key_alias") or key["key_alias"], "blocked": inv.get("blocked"), "expires": inv.get("expires"),
                    "created_at": inv.get("created_at"), "first_request_at": first, "last_request_at": last,
                    "last_in_period": last_in_period.get(key_hash)})
        key["status"] = _key_status(key, ever_used=last is not None)
        key["page"] = page_name(key_hash) if key["requests"] else None
        key["owner"] = inv.get("user_id")
        key["age_days"] = (period.end - inv["created_at"].date()).days if inv.get("created_at") else None
        key.update(window_spend.budget("key_hash", key_hash, inv.get("max_budget"), inv.get("budget_duration")))
    for team in teams.values():
        budget = team_budgets.get(team["team_id"], {})
        team.update(window_spend.budget("team_id", team["team_id"], budget.get("max_budget"), budget.get("budget_duration")))
    anomalies = _anomalies(conn, period, keys)
    for key in keys.values():
        key["anomalies"], key["anomaly_days"] = 0, {}
    for anomaly in anomalies:
        key = keys.get(anomaly["key_hash"])
        if key is not None:
            key["anomalies"] += 1
            key["anomaly_days"][anomaly["date"]] = anomaly["reason"]

    totals = {name: sum(row[name] for row in daily.values()) for name in DAILY_COLUMNS[1:]}
    ingested = {row[0] for row in conn.execute("SELECT strftime(day, '%Y-%m-%d') FROM ingest_days WHERE day BETWEEN ? AND ?", bounds).fetchall()}
    rejected, duplicates, last_ingested = conn.execute(
        "SELECT coalesce(sum(rejected), 0), coalesce(sum(duplicates), 0), strftime(max(day), '%Y-%m-%d') FROM ingest_days WHERE day BETWEEN ? AND ?",
        bounds).fetchone()
    by_spend = lambda item: (-(item["spend_usd"] or 0), -item["requests"], item.get("key_hash") or item.get("team_id") or item.get("model"))  # noqa: E731
    key_list = sorted(keys.values(), key=by_spend)
    return PeriodData(
        period=period, daily=list(daily.values()), totals=totals,
        previous_totals=_totals(conn, *period.previous_span()),
        top_keys=[k for k in key_list if k["requests"]][:10], models=sorted(models.values(), key=by_spend),
        teams=sorted(teams.values(), key=by_spend), keys=key_list,
        team_model_daily=sorted(team_model_daily.values(), key=lambda c: (c["date"], c["team_id"], c["model"])),
        key_model_daily=sorted(key_model_daily.values(), key=lambda c: (c["date"], c["key_hash"], c["model"])),
        anomalies=anomalies, attention=_attention(anomalies, key_list, teams.values()),
        team_pages={t["team_id"]: t for t in teams.values()}, key_pages={k["key_hash"]: k for k in key_list if k["requests"]},
        missing_days=[d for d in daily if d not in ingested], rejected=int(rejected), duplicates=int(duplicates),
        spend_by_model_day=dict(spend_by_model_day), last_ingested=last_ingested,
    )
