"""What the pages and exports of one period show, read from the warehouse into typed rows.

The period's `daily_usage` rows (day × team × key × model) are summed in one GROUPING SETS
query, so days, models, teams, keys and their crossings always add up to the same totals.
Templates and exports read the same frozen rows; an export's columns are named next to its row.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, fields
from decimal import Decimal

import duckdb

from usage_jobs.defs.billing.reconcile import BUCKET_LABELS, UNASSIGNED
from usage_jobs.defs.keys.budgets import budget_flag, budget_window_days
from usage_jobs.defs.report.periods import Period, consecutive_runs

# A team's or key's page lists every day of a period up to a month long; a quarter's or a year's, the days it was used.
MAX_DAYS_LISTED = 31


def page_name(identifier: str) -> str:
    """A file name for a team or key page: hashed, so no text from the logs reaches a path."""
    return hashlib.sha256(identifier.encode("utf-8")).hexdigest()[:16]


def rows_as_dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


@dataclass(frozen=True, kw_only=True)
class Usage:
    """Requests, tokens and gateway-estimated spend of one slice of the period."""

    requests: int = 0
    successful_requests: int = 0
    failed_requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_input_tokens: int = 0
    unpriced_requests: int = 0
    estimated_requests: int = 0
    spend_usd: Decimal | None = Decimal(0)  # None only for a model with no price: shown as unpriced, never as $0


USAGE_FIELDS = tuple(f.name for f in fields(Usage))


@dataclass(frozen=True, kw_only=True)
class DayUsage(Usage):
    date: str


DAILY_COLUMNS = ["date", "requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens", "spend_usd",
                 "cached_input_tokens", "unpriced_requests", "estimated_requests"]


@dataclass(frozen=True, kw_only=True)
class ModelUsage(Usage):
    model: str
    billed_input_tokens: int | None = None
    billed_output_tokens: int | None = None
    billed_cost: Decimal | None = None
    billed_currency: str | None = None


MODEL_COLUMNS = ["model", "requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens", "spend_usd",
                 "billed_input_tokens", "billed_output_tokens", "billed_cost", "billed_currency", "unpriced_requests"]


@dataclass(frozen=True, kw_only=True)
class BudgetUse:
    """Spend in the budget window ending on the period's last day, against max_budget (USD)."""

    max_budget: float | None = None
    budget_window_days: int | None = None
    budget_spend_usd: Decimal | None = None
    budget_used_pct: float | None = None
    budget_flag: str | None = None


@dataclass(frozen=True, kw_only=True)
class TeamUsage(Usage, BudgetUse):
    team_id: str
    team_alias: str | None
    page: str
    top_model: str | None = None
    billed_cost_allocated: Decimal | None = None
    billed_currency: str | None = None


TEAM_COLUMNS = ["team_id", "team_alias", "requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens",
                "spend_usd", "billed_cost_allocated", "top_model", "billed_currency", "unpriced_requests"]


@dataclass(frozen=True, kw_only=True)
class KeyUsage(Usage, BudgetUse):
    key_hash: str
    key_alias: str | None
    team_id: str
    team_alias: str | None
    status: str
    page: str | None  # a key gets a page when it was used in the period
    owner: str | None
    age_days: int | None
    first_request_at: dt.datetime | None
    last_request_at: dt.datetime | None
    created_at: dt.datetime | None
    expires: dt.datetime | None
    anomalies: int = 0


KEY_COLUMNS = ["key_hash", "key_alias", "team_id", "team_alias", "requests", "successful_requests", "failed_requests", "input_tokens",
               "output_tokens", "total_tokens", "spend_usd", "last_request_at", "status", "first_request_at", "created_at", "expires", "owner",
               "max_budget", "budget_window_days", "budget_spend_usd", "budget_used_pct", "budget_flag", "anomalies", "unpriced_requests"]


@dataclass(frozen=True, kw_only=True)
class TeamModelDay(Usage):
    date: str
    team_id: str
    team_alias: str | None
    model: str
    billed_cost_allocated: Decimal | None = None
    billed_currency: str | None = None


TEAM_MODEL_DAILY_COLUMNS = ["date", "team_id", "team_alias", "model", "requests", "successful_requests", "failed_requests", "input_tokens",
                            "output_tokens", "total_tokens", "spend_usd", "billed_cost_allocated", "billed_currency", "unpriced_requests"]


@dataclass(frozen=True, kw_only=True)
class KeyModelDay(Usage):
    date: str
    key_hash: str
    key_alias: str | None
    team_id: str
    model: str


KEY_MODEL_DAILY_COLUMNS = ["date", "key_hash", "key_alias", "team_id", "model", "requests", "successful_requests", "failed_requests",
                           "input_tokens", "output_tokens", "total_tokens", "spend_usd", "unpriced_requests"]


@dataclass(frozen=True)
class Anomaly:
    date: str
    key_hash: str
    metric: str
    value: float
    baseline: float
    score: float
    reason: str
    key_alias: str | None
    team_id: str | None
    team_alias: str | None
    page: str | None


ANOMALY_COLUMNS = ["date", "key_hash", "key_alias", "team_id", "team_alias", "metric", "value", "baseline", "score", "reason"]


@dataclass(frozen=True)
class AttentionItem:
    kind: str
    subject: str
    page: str | None  # the key's page, if it has one
    text: str


@dataclass(frozen=True)
class PreviousTotals:
    requests: int
    total_tokens: int
    spend_usd: Decimal
    days: int


@dataclass(frozen=True)
class SpendSeries:
    """A model's spend on each day of the period (the daily spend chart)."""

    model: str
    daily_spend: tuple[Decimal, ...]


@dataclass(frozen=True)
class PageDay:
    """A day of a team or key page: its usage (None without requests) and the key's anomaly."""

    date: dt.date
    usage: Usage | None
    anomaly: str | None = None


@dataclass(frozen=True)
class TeamKey:
    key: KeyUsage
    usage: Usage  # the key's usage within the team


@dataclass(frozen=True)
class TeamPage:
    team: TeamUsage
    days: tuple[PageDay, ...]
    models: tuple[ModelUsage, ...]  # the 10 largest
    keys: tuple[TeamKey, ...]  # the 10 largest


@dataclass(frozen=True)
class KeyPage:
    key: KeyUsage
    days: tuple[PageDay, ...]
    models: tuple[ModelUsage, ...]

    @property
    def abnormal_days(self) -> tuple[PageDay, ...]:
        return tuple(day for day in self.days if day.anomaly)


@dataclass(frozen=True)
class PeriodData:
    period: Period
    daily: tuple[DayUsage, ...]  # every day of the period
    totals: Usage
    previous_totals: PreviousTotals | None
    models: tuple[ModelUsage, ...]
    teams: tuple[TeamUsage, ...]
    keys: tuple[KeyUsage, ...]  # every key in the inventory or the logs
    top_keys: tuple[KeyUsage, ...]
    team_model_daily: TeamModelDays
    key_model_daily: KeyModelDays
    anomalies: tuple[Anomaly, ...]
    attention: tuple[AttentionItem, ...]  # what an admin should look at, most pressing first
    team_pages: tuple[TeamPage, ...]
    key_pages: tuple[KeyPage, ...]
    spend_series: tuple[SpendSeries, ...]  # largest spender first
    missing_days: tuple[str, ...]
    rejected: int
    duplicates: int
    last_ingested: str | None


def _by_spend(usage: Usage, tie: int, name: str) -> tuple:
    """Sort key: the largest spender first, then the larger `tie`, then by name."""
    return -(usage.spend_usd or 0), -tie, name


# One query sums the period's daily_usage rows over every slice a page or an export shows.
DIMENSIONS = ("day", "team_id", "key_hash", "model")
SLICES = ((), ("day",), ("model",), ("team_id",), ("key_hash",), ("day", "team_id"), ("day", "key_hash"), ("day", "model"), ("team_id", "model"),
          ("team_id", "key_hash"), ("key_hash", "model"))
# The day × key × model and day × team × model cells (a large period's ~200,000 and ~20,000 a month, most of its rows) are read apart,
# a day at a time when asked: KeyModelDays, TeamModelDays.
CELL_SLICE = ("day", "key_hash", "model")
TEAM_CELL_SLICE = ("day", "team_id", "model")
# Only the team and key pages read these (their days, keys and models); a period without pages skips them: (day, key_hash) alone
# is a third of a quarter's rows.
PAGE_SLICES = frozenset({("day", "team_id"), ("day", "key_hash"), ("team_id", "key_hash"), ("key_hash", "model")})


def _grouping(dimensions: tuple[str, ...]) -> int:
    """GROUPING(day, team_id, key_hash, model) of a slice: a bit set for each dimension it rolls up."""
    return sum(1 << (len(DIMENSIONS) - 1 - i) for i, name in enumerate(DIMENSIONS) if name not in dimensions)


SLICE_OF_GROUPING = {_grouping(s): s for s in (*SLICES, CELL_SLICE, TEAM_CELL_SLICE)}
SLICED_USAGE = (
    "SELECT {grouping} AS grouping, {dimensions}, "
    # counts as BIGINT: DuckDB's sum of BIGINTs is a HUGEINT, ~3x slower to fetch into Python (0.6 s of a quarter's 206,000 rows)
    + ", ".join(f"coalesce(sum({name}), 0){'' if name == 'spend_usd' else '::BIGINT'} AS {name}" for name in USAGE_FIELDS) + ", "
    # a model with no price on some row has no spend figure when nothing else is priced
    "bool_or(spend_usd IS NULL) AS has_unpriced_rows{names} "
    "FROM daily_usage WHERE day BETWEEN $start AND $end GROUP BY GROUPING SETS ({sets})")
# The chargeback's shares of days $1..$2, each on its report day: a share follows the requests it was shared among to their report
# day (chargeback.report_day), never a billing day read as a report day; billed usage the gateway never saw has no request and
# stays on its billing day.
ALLOCATED = ("SELECT on_day AS day, team_id, model, allocated_cost, currency FROM (SELECT coalesce(report_day, day) AS on_day, * FROM chargeback) "
             "WHERE on_day BETWEEN $1 AND $2")
# The first row in (day, team, key, model) order names a team, a key's team and a cell's key alias; a key keeps its last alias.
# Ordered aggregates over every set of the period's query were two thirds of it (a quarter's 0.76 s, 0.28 s without): a cell
# is named in its own query, a team and a key in these.
CELL_NAMES = ", first(key_alias ORDER BY day, team_id, model) AS first_key_alias, first(team_id ORDER BY day, team_id, model) AS first_team_id"
TEAM_NAMES = ("SELECT team_id, first(team_alias ORDER BY day, key_hash, model), strftime(min(day), '%Y-%m-%d') "
              "FROM daily_usage WHERE day BETWEEN ? AND ? GROUP BY team_id")
KEY_NAMES = ("SELECT key_hash, first(team_id ORDER BY day, team_id, model), last(key_alias ORDER BY day, team_id, model) FILTER (key_alias IS NOT NULL) "
             "FROM daily_usage WHERE day BETWEEN ? AND ? GROUP BY key_hash")


def _sliced_usage(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, wanted: list[tuple[str, ...]]) -> dict[tuple[str, ...], dict[tuple, dict]]:
    """Slice (its dimensions) → the slice's values (their day, team, key, model in that order) → the summed row, of the days
    start..end, for the `wanted` slices."""
    # A dimension no set groups by may be neither selected nor named by GROUPING(): a single set's rows are all of its slice.
    grouped = {name for s in wanted for name in s}
    assert len(wanted) == 1 or grouped == set(DIMENSIONS)
    dimensions = ", ".join(f"NULL AS {name}" if name not in grouped else "strftime(day, '%Y-%m-%d') AS day" if name == "day" else name
                           for name in DIMENSIONS)
    grouping = f"GROUPING({', '.join(DIMENSIONS)})" if len(wanted) > 1 else str(_grouping(wanted[0]))
    sql = SLICED_USAGE.format(grouping=grouping, dimensions=dimensions, names=CELL_NAMES if wanted == [CELL_SLICE] else "",
                              sets=", ".join(f"({', '.join(s)})" for s in wanted))
    cursor = conn.execute(sql, {"start": start, "end": end})
    names = [d[0] for d in cursor.description]
    # Per grouping: its slice and the positions of the slice's values in a row (a tuple of them, one value too).
    keys = {grouping: (s, [names.index(name) for name in s]) for grouping, s in SLICE_OF_GROUPING.items() if s in wanted}
    slices: dict[tuple[str, ...], dict[tuple, dict]] = {s: {} for s in wanted}
    for row in cursor.fetchall():
        dimensions, positions = keys[row[0]]
        slices[dimensions][tuple([row[i] for i in positions])] = dict(zip(names, row))
    return slices


def _usage(row: dict | None) -> Usage | None:
    return Usage(**_counts(row)) if row else None


def _counts(row: dict | None) -> dict:
    """A summed row's Usage fields; none (the defaults: nothing used) without a row."""
    return {name: row[name] for name in USAGE_FIELDS} if row else {}


def _totals(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date) -> PreviousTotals | None:
    row = conn.execute("SELECT count(*) FROM ingest_days WHERE day BETWEEN ? AND ?", [start, end]).fetchone()
    if not row[0]:
        return None
    requests, tokens, spend = conn.execute(
        "SELECT coalesce(sum(requests), 0), coalesce(sum(total_tokens), 0), coalesce(sum(spend_usd), 0) FROM daily_usage WHERE day BETWEEN ? AND ?",
        [start, end]).fetchone()
    return PreviousTotals(requests, tokens, spend, row[0])


def _key_status(requests: int, team_id: str, inventory: dict, last_in_period: dt.datetime | None, ever_used: bool) -> str:
    expires = inventory.get("expires")
    if requests and expires is not None and last_in_period is not None and last_in_period > expires:
        return "expired but still used"
    if requests and inventory.get("blocked"):
        return "blocked but still used"
    if requests and team_id in (None, UNASSIGNED):
        return "no team"
    if requests:
        return "active"
    return "unused in the period" if ever_used else "never used"


class _WindowSpend:
    """Spend per key and team over windows ending on one day, one query per window length."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, end: dt.date):
        self.conn, self.end, self.cache = conn, end, {}

    def spend(self, column: str, identifier: str, days: int | None) -> Decimal:
        if days not in self.cache:
            start = self.end - dt.timedelta(days=days - 1) if days else dt.date(1970, 1, 1)
            rows = self.conn.execute("SELECT key_hash, team_id, coalesce(sum(spend_usd), 0) FROM daily_usage WHERE day BETWEEN ? AND ? "
                                     "GROUP BY GROUPING SETS ((key_hash), (team_id))", [start, self.end]).fetchall()
            self.cache[days] = {("key_hash", key) if key is not None else ("team_id", team): spend for key, team, spend in rows}
        return self.cache[days].get((column, identifier), Decimal(0))

    def budget(self, column: str, identifier: str, max_budget, duration) -> dict:
        """The BudgetUse fields of a key or team."""
        if not max_budget:
            return {}
        days = budget_window_days(duration)
        spend = self.spend(column, identifier, days)
        share, flag = budget_flag(float(spend), float(max_budget))
        return {"max_budget": max_budget, "budget_window_days": days, "budget_spend_usd": spend,
                "budget_used_pct": round(share * 100, 1) if share is not None else None, "budget_flag": flag}


def _anomaly(row: tuple, key: KeyUsage | None) -> Anomaly:
    return Anomaly(*row, key_alias=key and key.key_alias, team_id=key and key.team_id, team_alias=key and key.team_alias, page=key and key.page)


def _attention(anomalies: tuple[Anomaly, ...], keys: tuple[KeyUsage, ...], teams: list[TeamUsage]) -> tuple[AttentionItem, ...]:
    """Abnormal days, budgets at 80% or more, expired or blocked keys still in use: the global page's list."""
    items = [AttentionItem("abnormal consumption", a.key_alias or a.key_hash[:12], a.page, f"{a.date}: {a.reason}") for a in anomalies]
    items += [AttentionItem(key.budget_flag, key.key_alias or key.key_hash[:12], key.page,
                            f"key spent ${key.budget_spend_usd:,.2f} of its ${key.max_budget:,.2f} budget ({key.budget_used_pct:.0f}%)")
              for key in keys if key.budget_flag]
    items += [AttentionItem(team.budget_flag, team.team_alias or team.team_id, None,
                            f"team spent ${team.budget_spend_usd:,.2f} of its ${team.max_budget:,.2f} budget ({team.budget_used_pct:.0f}%)")
              for team in teams if team.budget_flag]
    items += [AttentionItem(key.status, key.key_alias or key.key_hash[:12], key.page, f"{key.requests:,} requests in the period")
              for key in keys if key.status in ("expired but still used", "blocked but still used")]
    return tuple(items)


class _PeriodReader:
    """One period's sums and lookups, read from the warehouse once; each method builds one table of the page models."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, period: Period, pages: bool = True):
        self.conn, self.period = conn, period
        bounds = [period.start, period.end]
        self.slices = _sliced_usage(conn, period.start, period.end, [s for s in SLICES if pages or s not in PAGE_SLICES])
        self._owned_slices: dict[tuple, dict[str, dict[str, dict]]] = {}  # _owned's groupings, made when first asked
        self._day_names = [(day, day.isoformat()) for day in period.days]
        self.team_names = dict(conn.execute("SELECT team_id, team_alias FROM inventory_teams").fetchall())
        self.team_first = {team_id: (alias, day) for team_id, alias, day in conn.execute(TEAM_NAMES, bounds).fetchall()}  # alias, first day
        self.key_names = {key_hash: (team_id, alias) for key_hash, team_id, alias in conn.execute(KEY_NAMES, bounds).fetchall()}  # team, last alias
        self.inventory = {row["key_hash"]: row for row in rows_as_dicts(conn.execute(
            "SELECT key_hash, key_alias, team_id, user_id, blocked, expires, created_at, max_budget, budget_duration FROM inventory_keys"))}
        self.team_budgets = {row["team_id"]: row for row in rows_as_dicts(conn.execute("SELECT team_id, max_budget, budget_duration FROM inventory_teams"))}
        # team → (billed cost allocated, unrounded, currency): ALLOCATED's shares over the period's days
        self.allocated = {team_id: (cost, currency) for team_id, cost, currency in conn.execute(
            f"SELECT team_id, sum(allocated_cost), any_value(currency) FROM ({ALLOCATED}) GROUP BY team_id", bounds).fetchall()}
        self.billed = {m: (i, o, c, cur) for m, i, o, c, cur in conn.execute(
            "SELECT model, sum(input_tokens), sum(output_tokens), sum(cost), any_value(currency) FROM billed_usage WHERE day BETWEEN ? AND ? GROUP BY model",
            bounds).fetchall()}
        # From the day aggregates, not `requests`: read for every period rendered, they hold a row per key and model a day.
        self.seen = {k: (first, last) for k, first, last in conn.execute(
            "SELECT key_hash, min(first_request_at), max(last_request_at) FROM daily_usage WHERE day <= ? GROUP BY key_hash", [period.end]).fetchall()}
        self.last_in_period = dict(conn.execute(
            "SELECT key_hash, max(last_request_at) FROM daily_usage WHERE day BETWEEN ? AND ? GROUP BY key_hash", bounds).fetchall())
        self.anomaly_rows = conn.execute(
            "SELECT strftime(day, '%Y-%m-%d'), key_hash, metric, value, baseline, score, reason FROM key_anomalies "
            "WHERE day BETWEEN ? AND ? ORDER BY day DESC, score DESC, key_hash, metric", bounds).fetchall()
        self.window_spend = _WindowSpend(conn, period.end)
        # A team is named by the inventory, else by the logs; one billed but never seen, by the inventory only.
        seen_teams = self.slices[("team_id",)]
        self.team_alias = {team_id: self.team_names.get(team_id) or self.team_first[team_id][0] or BUCKET_LABELS.get(team_id)
                           for (team_id,) in seen_teams}
        self.billed_teams = sorted(t for t in self.allocated if (t,) not in seen_teams)
        self.team_alias |= {team_id: self.team_names.get(team_id) or BUCKET_LABELS.get(team_id) for team_id in self.billed_teams}

    def models(self) -> tuple[ModelUsage, ...]:
        """Every model the gateway saw or IG1 billed, largest spender first."""
        seen_models, models = self.slices[("model",)], []
        for (name,), row in seen_models.items():
            spend = None if row["has_unpriced_rows"] and not row["spend_usd"] else row["spend_usd"]
            models.append(ModelUsage(**_counts(row) | {"spend_usd": spend}, model=name, **_billed(self.billed.get(name))))
        models += [ModelUsage(model=name, **_billed(values)) for name, values in self.billed.items() if (name,) not in seen_models]
        return tuple(sorted(models, key=lambda m: _by_spend(m, m.requests, m.model)))

    def _owned(self, dimensions: tuple[str, str], owner: int) -> dict[str, dict[str, dict]]:
        """A two-dimension slice's rows by their `owner` value (0: the first dimension, 1: the second), then by the other: grouped
        once per slice, not scanned for each team or key."""
        if (dimensions, owner) not in self._owned_slices:
            grouped: dict[str, dict[str, dict]] = {}
            for values, row in self.slices[dimensions].items():
                grouped.setdefault(values[owner], {})[values[1 - owner]] = row
            self._owned_slices[(dimensions, owner)] = grouped
        return self._owned_slices[(dimensions, owner)]

    def ranked_models(self, dimension: str, identifier: str, limit: int | None = None) -> tuple[ModelUsage, ...]:
        """A team's or key's models, largest spender first."""
        rows = [ModelUsage(**_counts(row), model=model) for model, row in self._owned((dimension, "model"), 0).get(identifier, {}).items()]
        return tuple(sorted(rows, key=lambda m: _by_spend(m, m.total_tokens, m.model))[:limit])

    def teams(self) -> list[TeamUsage]:
        """Every team seen in the logs (in the order they appear) or billed through the chargeback (the `not-seen-by-gateway` bucket)."""
        seen_teams, teams = self.slices[("team_id",)], []
        for team_id in [t for (t,) in sorted(seen_teams, key=lambda t: (self.team_first[t[0]][1], t))] + self.billed_teams:
            top = self.ranked_models("team_id", team_id, limit=1)
            cost, currency = self.allocated.get(team_id, (None, None))
            budget = self.team_budgets.get(team_id, {})
            teams.append(TeamUsage(**_counts(seen_teams.get((team_id,))), team_id=team_id, team_alias=self.team_alias[team_id], page=page_name(team_id),
                                   top_model=top[0].model if top else None, billed_cost_allocated=cost, billed_currency=currency,
                                   **self.window_spend.budget("team_id", team_id, budget.get("max_budget"), budget.get("budget_duration"))))
        return teams

    def keys(self) -> dict[str, KeyUsage]:
        """Every key in the inventory or seen in the logs, with its status and budget in the period."""
        seen_keys, keys = self.slices[("key_hash",)], {}
        anomaly_counts: dict[str, int] = {}
        for _, key_hash, *_ in self.anomaly_rows:
            anomaly_counts[key_hash] = anomaly_counts.get(key_hash, 0) + 1
        for key_hash in [k for (k,) in seen_keys] + [k for k in self.inventory if (k,) not in seen_keys]:
            row, inv = seen_keys.get((key_hash,)), self.inventory.get(key_hash, {})
            team_id = self.key_names[key_hash][0] if row else inv["team_id"] or UNASSIGNED
            first, last = self.seen.get(key_hash, (None, None))
            requests = row["requests"] if row else 0
            keys[key_hash] = KeyUsage(
                **_counts(row), key_hash=key_hash,
                # the inventory has the current alias; the logs have the one used at the time
                key_alias=inv.get("key_alias") or (row and self.key_names[key_hash][1]),
                team_id=team_id, team_alias=self.team_alias.get(team_id) if row else self.team_names.get(team_id),
                status=_key_status(requests, team_id, inv, self.last_in_period.get(key_hash), ever_used=last is not None),
                page=page_name(key_hash) if requests else None, owner=inv.get("user_id"),
                age_days=(self.period.end - inv["created_at"].date()).days if inv.get("created_at") else None,
                first_request_at=first, last_request_at=last, created_at=inv.get("created_at"), expires=inv.get("expires"),
                anomalies=anomaly_counts.get(key_hash, 0),
                **self.window_spend.budget("key_hash", key_hash, inv.get("max_budget"), inv.get("budget_duration")))
        return keys

    def page_days(self, dimension: str, identifier: str, anomalies: dict[str, str]) -> tuple[PageDay, ...]:
        used, every_day = self._owned(("day", dimension), 1).get(identifier, {}), self.period.length <= MAX_DAYS_LISTED
        return tuple(PageDay(day, _usage(used.get(name)), anomalies.get(name)) for day, name in self._day_names
                     if every_day or name in used or anomalies.get(name))

    def team_page(self, team: TeamUsage, keys: dict[str, KeyUsage]) -> TeamPage:
        by_key = [(keys[key_hash], row) for key_hash, row in self._owned(("team_id", "key_hash"), 0).get(team.team_id, {}).items()]
        top_keys = sorted(by_key, key=lambda item: _by_spend(_usage(item[1]), item[1]["requests"], item[0].key_hash))[:10]
        return TeamPage(team, self.page_days("team_id", team.team_id, {}), self.ranked_models("team_id", team.team_id, limit=10),
                        tuple(TeamKey(key, _usage(row)) for key, row in top_keys))

    def key_page(self, key: KeyUsage) -> KeyPage:
        if not hasattr(self, "_reasons"):  # per key, once for all keys: the one listed last on a day
            self._reasons: dict[str, dict[str, str]] = {}
            for date, key_hash, *_, reason in self.anomaly_rows:
                self._reasons.setdefault(key_hash, {})[date] = reason
        return KeyPage(key, self.page_days("key_hash", key.key_hash, self._reasons.get(key.key_hash, {})), self.ranked_models("key_hash", key.key_hash))

    def spend_series(self) -> tuple[SpendSeries, ...]:
        by_model_day = self.slices[("day", "model")]
        series = [SpendSeries(model, tuple(by_model_day.get((d.isoformat(), model), {}).get("spend_usd", Decimal(0)) for d in self.period.days))
                  for (model,) in self.slices[("model",)]]
        return tuple(sorted(series, key=lambda s: (-sum(s.daily_spend), s.model)))


class TeamModelDays:
    """The period's day × team × model cells with the billed cost allocated to them, billed cells the gateway never saw included,
    read from the warehouse a day at a time when asked (iterated: all of them, in day, team, model order). A cell's team name is
    the period's (`team_alias`), the one value of a day's rows another period may write otherwise: `names(day)`. A large period's
    days mostly come as text (exports.ExportDays): their sums read whole, into dicts, were a year's data cost growing with its
    history (1.4 CPU-s at 180 days of 3,000 keys)."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, period: Period, team_alias: dict[str, str | None]):
        self.conn, self.period, self.team_alias = conn, period, team_alias
        self.order: dict[str, list[tuple[str, str]]] = {}  # each day holding cells → its (team, model) cells in order
        for day, team_id, model in conn.execute(
                f"SELECT strftime(day, '%Y-%m-%d') AS d, team_id, model FROM daily_usage WHERE day BETWEEN $1 AND $2 "
                f"UNION SELECT strftime(day, '%Y-%m-%d'), team_id, model FROM ({ALLOCATED}) ORDER BY d, team_id, model",
                [period.start, period.end]).fetchall():
            self.order.setdefault(day, []).append((team_id, model))
        self.counts = {day: len(day_cells) for day, day_cells in self.order.items()}

    def names(self, day: str) -> tuple:
        """The team name of each of the day's rows (exports' `period_columns` values)."""
        return tuple((self.team_alias.get(team_id),) for team_id, _ in self.order[day])

    def cells(self, days: list[str]) -> dict[str, list[TeamModelDay]]:
        """The cells of `days` (each a day of `counts`), in (team, model) order: two queries a run of consecutive days."""
        out = {}
        for first, last in consecutive_runs(dt.date.fromisoformat(day) for day in days):
            seen = _sliced_usage(self.conn, first, last, [TEAM_CELL_SLICE])[TEAM_CELL_SLICE]
            allocated = {(day, team_id, model): (cost, currency) for day, team_id, model, cost, currency in self.conn.execute(
                f"SELECT strftime(day, '%Y-%m-%d'), team_id, model, sum(allocated_cost), any_value(currency) FROM ({ALLOCATED}) "
                "GROUP BY ALL", [first, last]).fetchall()}
            for day in (d for d in days if first.isoformat() <= d <= last.isoformat()):
                out[day] = []
                for team_id, model in self.order[day]:
                    cost, currency = allocated.get((day, team_id, model), (None, None))
                    out[day].append(TeamModelDay(**_counts(seen.get((day, team_id, model))), date=day, team_id=team_id,
                                                 team_alias=self.team_alias.get(team_id), model=model, billed_cost_allocated=cost,
                                                 billed_currency=currency))
        return {day: out[day] for day in days}

    def __iter__(self):
        for day_cells in self.cells(list(self.order)).values():
            yield from day_cells

    def last_days(self) -> dict[str, str]:
        """Each team's last day with requests or a billed cost."""
        return dict(self.conn.execute(
            f"SELECT team_id, strftime(max(day), '%Y-%m-%d') FROM (SELECT day, team_id FROM daily_usage WHERE day BETWEEN $1 AND $2 "
            f"AND requests > 0 UNION ALL SELECT day, team_id FROM ({ALLOCATED}) WHERE allocated_cost IS NOT NULL) GROUP BY team_id",
            [self.period.start, self.period.end]).fetchall())


class KeyModelDays:
    """The period's day × key × model cells, read from the warehouse a day at a time when asked. A quarter at 3,000 keys holds
    ~150,000 of them, most of its rows, and its export (the one reader) is mostly written from each day's text formatted once
    (exports.ExportDays): built whole for every large period, they were a quarter of its time."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, period: Period):
        self.conn, self.period = conn, period
        # each day holding cells → how many, in day order
        self.counts: dict[str, int] = dict(conn.execute(
            "SELECT strftime(day, '%Y-%m-%d'), count(*) FROM (SELECT DISTINCT day, key_hash, model FROM daily_usage WHERE day BETWEEN ? AND ?) "
            "GROUP BY day ORDER BY day", [period.start, period.end]).fetchall())

    def cells(self, days: list[str]) -> dict[str, list[KeyModelDay]]:
        """The cells of `days` (each a day of `counts`), each day's in (key, model) order: one query a run of consecutive days."""
        cells: dict[str, list[KeyModelDay]] = {day: [] for day in days}
        for first, last in consecutive_runs(dt.date.fromisoformat(day) for day in days):
            rows = _sliced_usage(self.conn, first, last, [CELL_SLICE])[CELL_SLICE]
            for (day, key_hash, model), row in sorted(rows.items()):
                cells[day].append(KeyModelDay(**_counts(row), date=day, key_hash=key_hash, key_alias=row["first_key_alias"],
                                              team_id=row["first_team_id"], model=model))
        return cells

    def last_days(self) -> dict[str, str]:
        """Each key's last day with a cell."""
        return dict(self.conn.execute("SELECT key_hash, strftime(max(day), '%Y-%m-%d') FROM daily_usage WHERE day BETWEEN ? AND ? GROUP BY key_hash",
                                      [self.period.start, self.period.end]).fetchall())


def _billed(values: tuple | None) -> dict:
    if values is None:
        return {}
    return dict(zip(("billed_input_tokens", "billed_output_tokens", "billed_cost", "billed_currency"), values))


def period_data(conn: duckdb.DuckDBPyConnection, period: Period, *, pages: bool = True) -> PeriodData:
    """A period's data; without `pages`, no team or key page (the site links a day's or week's to its month's)."""
    reader = _PeriodReader(conn, period, pages)
    teams, keys = reader.teams(), reader.keys()
    key_list = tuple(sorted(keys.values(), key=lambda k: _by_spend(k, k.requests, k.key_hash)))
    used_keys = tuple(key for key in key_list if key.requests)
    anomalies = tuple(_anomaly(row, keys.get(row[1])) for row in reader.anomaly_rows)
    bounds = [period.start, period.end]
    ingested = {row[0] for row in conn.execute("SELECT strftime(day, '%Y-%m-%d') FROM ingest_days WHERE day BETWEEN ? AND ?", bounds).fetchall()}
    rejected, duplicates, last_ingested = conn.execute(
        "SELECT coalesce(sum(rejected), 0), coalesce(sum(duplicates), 0), strftime(max(day), '%Y-%m-%d') FROM ingest_days WHERE day BETWEEN ? AND ?",
        bounds).fetchone()
    return PeriodData(
        period=period, daily=tuple(DayUsage(**_counts(reader.slices[("day",)].get((d.isoformat(),))), date=d.isoformat()) for d in period.days),
        totals=_usage(reader.slices[()][()]), previous_totals=_totals(conn, *period.previous_span()),
        models=reader.models(), teams=tuple(sorted(teams, key=lambda t: _by_spend(t, t.requests, t.team_id))), keys=key_list, top_keys=used_keys[:10],
        team_model_daily=TeamModelDays(conn, period, reader.team_alias),
        key_model_daily=KeyModelDays(conn, period),
        anomalies=anomalies, attention=_attention(anomalies, key_list, teams),
        team_pages=tuple(reader.team_page(team, keys) for team in teams) if pages else (),
        key_pages=tuple(reader.key_page(key) for key in used_keys) if pages else (),
        spend_series=reader.spend_series(),
        missing_days=tuple(d.isoformat() for d in period.days if d.isoformat() not in ingested), rejected=int(rejected), duplicates=int(duplicates),
        last_ingested=last_ingested,
    )
