"""A period's tags, end users, errors, latency and prompt cache, read from the day aggregates into typed rows.

Tags: a request with several tags is under each of them, so the tag rows add up to more than the
period's requests; every total shown is the global view's (each request once), and the view says how
much the rows overcount. Latency percentiles are read from summed duration buckets (`daily_latency`),
so any span's percentiles come from its days' rows, in the site, the range picker and `usage-report export` alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import duckdb

from usage_jobs.defs.gateway.aggregates import LATENCY_BUCKET_RATIO, USER_AGENT_TAG
from usage_jobs.defs.report.periods import Period
from usage_jobs.defs.report.queries import MAX_DAYS_LISTED, Usage, page_name, rows_as_dicts

NO_TAG, NO_END_USER = "(no tag)", "(no end user)"
PERCENTILES = (50, 95, 99)


# The measures the tag and end-user tables hold (a Usage without cached and estimated counts).
SLICE_FIELDS = ("requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens", "spend_usd",
                "unpriced_requests")
_SUMS = ", ".join(f"coalesce(sum({name}), 0) AS {name}" for name in SLICE_FIELDS if name != "spend_usd") + ", sum(spend_usd) AS spend_usd"


@dataclass(frozen=True, kw_only=True)
class NamedUsage(Usage):
    """A model's, team's or day's share of a tag or an end user."""

    name: str


@dataclass(frozen=True, kw_only=True)
class DimensionUsage(Usage):
    """One tag or end user over the period (None: the requests without one)."""

    value: str | None
    label: str
    page: str
    top_models: str  # the three largest spenders, by name
    shared_requests: int = 0  # tags only: requests also under another tag


TAG_COLUMNS = ["tag", "requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens", "spend_usd",
               "shared_requests", "top_models", "unpriced_requests"]
END_USER_COLUMNS = ["end_user", "requests", "successful_requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens", "spend_usd",
                    "top_models", "unpriced_requests"]


@dataclass(frozen=True)
class DimensionPage:
    usage: DimensionUsage
    models: tuple[NamedUsage, ...]
    teams: tuple[NamedUsage, ...]
    days: tuple[NamedUsage, ...]  # every day of the period (of a quarter or a year, the days with requests)


@dataclass(frozen=True)
class DimensionView:
    rows: tuple[DimensionUsage, ...]  # largest spender first; the row without a value last
    pages: tuple[DimensionPage, ...]
    row_requests: int  # the rows' requests added up: more than the period's when requests are under several tags
    hidden_user_agent: bool = False

    def overcount(self, requests: int) -> int:
        return self.row_requests - requests


@dataclass(frozen=True)
class ErrorGroup:
    error_class: str
    error_code: str
    failures: int
    share: float  # of the period's failures
    models: str


@dataclass(frozen=True)
class ErrorMessage:
    message: str
    error_class: str
    failures: int
    models: str


@dataclass(frozen=True)
class FailureRate:
    name: str
    label: str
    requests: int
    failed_requests: int
    rate: float
    top_error: str


@dataclass(frozen=True)
class ErrorRow:
    team_id: str
    key_hash: str
    model: str
    error_class: str
    error_code: str
    error_message: str
    failures: int


ERROR_COLUMNS = ["team_id", "key_hash", "model", "error_class", "error_code", "error_message", "failures"]


@dataclass(frozen=True)
class ErrorView:
    failures: int
    groups: tuple[ErrorGroup, ...]
    messages: tuple[ErrorMessage, ...]  # the 15 most frequent
    by_model: tuple[FailureRate, ...]
    by_team: tuple[FailureRate, ...]
    by_key: tuple[FailureRate, ...]  # keys with failures, the 25 worst
    rows: tuple[ErrorRow, ...]


@dataclass(frozen=True)
class Latency:
    """Percentiles of the duration (ms) of a slice's successful requests, streams and non-streams apart."""

    slice: str  # model | key | day (all models) | day-model
    model: str | None
    key_hash: str | None
    key_alias: str | None
    date: str | None
    stream: bool
    requests: int
    mean_ms: int
    p50_ms: int
    p95_ms: int
    p99_ms: int


LATENCY_COLUMNS = ["slice", "date", "model", "key_hash", "key_alias", "stream", "requests", "mean_ms", "p50_ms", "p95_ms", "p99_ms"]


@dataclass(frozen=True)
class LatencyView:
    by_model: tuple[Latency, ...]
    by_key: tuple[Latency, ...]
    by_day: tuple[Latency, ...]  # day × stream, every model
    by_day_model: tuple[Latency, ...]

    @property
    def rows(self) -> tuple[Latency, ...]:
        return self.by_model + self.by_key + self.by_day + self.by_day_model


@dataclass(frozen=True)
class CacheUsage:
    slice: str  # model | team
    name: str
    label: str
    input_tokens: int
    cached_input_tokens: int
    cached_share: float
    savings_usd: Decimal | None  # None: only models without a price cached
    unpriced_cached_tokens: int  # cached tokens of models without a price: their saving is not counted
    cache_hit_requests: int


CACHE_COLUMNS = ["slice", "name", "label", "input_tokens", "cached_input_tokens", "cached_share", "savings_usd", "unpriced_cached_tokens",
                 "cache_hit_requests"]


@dataclass(frozen=True)
class CacheView:
    total: CacheUsage
    by_model: tuple[CacheUsage, ...]
    by_team: tuple[CacheUsage, ...]

    @property
    def rows(self) -> tuple[CacheUsage, ...]:
        return self.by_model + self.by_team


@dataclass(frozen=True)
class Insights:
    tags: DimensionView
    end_users: DimensionView
    errors: ErrorView
    latency: LatencyView
    cache: CacheView


def _by_spend(row) -> tuple:
    return -(row.spend_usd or 0), -row.requests, row.name if isinstance(row, NamedUsage) else (row.value or "")


def _slice(row: dict) -> dict:
    return {name: row[name] for name in SLICE_FIELDS}


def _top(names: list[tuple[str, Decimal | None, int]], limit: int = 3) -> str:
    return ", ".join(name for name, *_ in sorted(names, key=lambda n: (-(n[1] or 0), -n[2], n[0]))[:limit])


def _dimension_view(conn: duckdb.DuckDBPyConnection, period: Period, table: str, column: str, empty_label: str, where: str,
                    shared: str | None, team_names: dict[str, str | None], hidden_user_agent: bool = False) -> DimensionView:
    shared_sum = f", coalesce(sum({shared}), 0) AS shared_requests" if shared else ", 0 AS shared_requests"
    rows = rows_as_dicts(conn.execute(
        f"SELECT GROUPING(day, model, team_id) AS grouping, {column} AS value, strftime(day, '%Y-%m-%d') AS day, model, team_id, {_SUMS}{shared_sum} "
        f"FROM {table} WHERE day BETWEEN $start AND $end AND ({where}) "
        f"GROUP BY GROUPING SETS (({column}), ({column}, model), ({column}, team_id), ({column}, day))", {"start": period.start, "end": period.end}))
    totals = {row["value"]: row for row in rows if row["grouping"] == 0b111}
    parts: dict[tuple[str, str | None], list[dict]] = {}
    for row in rows:
        part = {0b101: "model", 0b110: "team", 0b011: "day"}.get(row["grouping"])
        if part:
            parts.setdefault((part, row["value"]), []).append(row)
    usages, pages = [], []
    for value, total in totals.items():
        models = parts.get(("model", value), [])
        usage = DimensionUsage(**_slice(total), value=value, label=empty_label if value is None else value, page=page_name(value or empty_label),
                               top_models=_top([(m["model"], m["spend_usd"], m["requests"]) for m in models]), shared_requests=total["shared_requests"])
        usages.append(usage)
        by_day = {row["day"]: row for row in parts.get(("day", value), [])}
        pages.append(DimensionPage(
            usage,
            tuple(sorted((NamedUsage(**_slice(m), name=m["model"]) for m in models), key=_by_spend)),
            tuple(sorted((NamedUsage(**_slice(t), name=team_names.get(t["team_id"]) or t["team_id"]) for t in parts.get(("team", value), [])),
                         key=_by_spend)),
            tuple(NamedUsage(**(_slice(by_day[d.isoformat()]) if d.isoformat() in by_day else {}), name=d.isoformat()) for d in period.days
                  if d.isoformat() in by_day or period.length <= MAX_DAYS_LISTED)))
    order = sorted(usages, key=lambda u: (u.value is None, *_by_spend(u)))
    pages.sort(key=lambda p: order.index(p.usage))
    return DimensionView(tuple(order), tuple(pages), sum(u.requests for u in usages), hidden_user_agent)


def tag_rows(hide_user_agent: bool) -> tuple[str, str]:
    """The `daily_tag_usage` rows a tags view shows (a WHERE condition) and its column of requests also under another tag."""
    if hide_user_agent:  # a request with only User-Agent tags is one without a tag
        return f"NOT coalesce(starts_with(tag, '{USER_AGENT_TAG}'), false)", "shared_requests_without_user_agent"
    return "tag IS NOT NULL OR NOT user_agent_only", "shared_requests"


def _tags(conn: duckdb.DuckDBPyConnection, period: Period, team_names: dict, hide_user_agent: bool) -> DimensionView:
    where, shared = tag_rows(hide_user_agent)
    return _dimension_view(conn, period, "daily_tag_usage", "tag", NO_TAG, where, shared, team_names, hide_user_agent)


def _bucket_value(bucket: int) -> int:
    """A bucket's duration (ms): its geometric middle, within 2.5% of every duration in it."""
    return round(LATENCY_BUCKET_RATIO ** (bucket + 0.5))


# Each slice's buckets summed, then each slice's count, duration sum and nearest-rank percentiles (the range picker, report.js,
# reads them alike) in SQL: a quarter's ~190,000 bucket rows were grouped and walked in Python (0.65 s of a 3,000-key quarter).
LATENCY = (
    "WITH buckets AS (SELECT GROUPING(day, model, key_hash) AS grouping, strftime(day, '%Y-%m-%d') AS day, model, key_hash, stream, bucket, "
    "sum(requests) AS requests, sum(duration_ms_sum) AS duration FROM daily_latency WHERE day BETWEEN $start AND $end "
    "GROUP BY GROUPING SETS ((model, stream, bucket), (key_hash, stream, bucket), (day, stream, bucket), (day, model, stream, bucket))), "
    "ranked AS (SELECT *, sum(requests) OVER (slice ORDER BY bucket ROWS UNBOUNDED PRECEDING) AS seen, sum(requests) OVER (slice) AS total "
    "FROM buckets WINDOW slice AS (PARTITION BY grouping, day, model, key_hash, stream)) "
    "SELECT grouping, day, model, key_hash, stream, any_value(total)::BIGINT, sum(duration), "
    + ", ".join(f"min(bucket) FILTER (seen >= ceil({q} / 100 * total))" for q in PERCENTILES) +
    " FROM ranked GROUP BY grouping, day, model, key_hash, stream")


def _latency(conn: duckdb.DuckDBPyConnection, period: Period, key_aliases: dict[str, str | None]) -> LatencyView:
    result: dict[str, list[Latency]] = {"model": [], "key": [], "day": [], "day-model": []}
    for grouping, day, model, key_hash, stream, requests, duration, *buckets in conn.execute(
            LATENCY, {"start": period.start, "end": period.end}).fetchall():
        name = {0b101: "model", 0b110: "key", 0b011: "day", 0b001: "day-model"}[grouping]
        result[name].append(Latency(name, model, key_hash, key_aliases.get(key_hash) if key_hash else None, day, stream, requests,
                                    round(duration / requests), *(_bucket_value(bucket) for bucket in buckets)))
    return LatencyView(tuple(sorted(result["model"], key=lambda r: (r.model, r.stream))),
                       tuple(sorted(result["key"], key=lambda r: (-r.p95_ms, r.key_hash, r.stream))),
                       tuple(sorted(result["day"], key=lambda r: (r.date, r.stream))),
                       tuple(sorted(result["day-model"], key=lambda r: (r.date, r.model, r.stream))))


def _failure_rates(conn, period: Period, dimension: str, labels: dict[str, str | None], limit: int | None = None) -> tuple[FailureRate, ...]:
    bounds = {"start": period.start, "end": period.end}
    top = dict(conn.execute(
        f"SELECT {dimension}, first(coalesce(error_class, '(unknown)') ORDER BY n DESC, error_class) "
        f"FROM (SELECT {dimension}, error_class, sum(failures) AS n FROM daily_errors WHERE day BETWEEN $start AND $end GROUP BY ALL) GROUP BY ALL",
        bounds).fetchall())
    rates = [FailureRate(name, labels.get(name) or name, int(requests), int(failed), failed / requests if requests else 0.0, top.get(name, ""))
             for name, requests, failed in conn.execute(
                 f"SELECT {dimension}, sum(requests), sum(failed_requests) FROM daily_usage WHERE day BETWEEN $start AND $end GROUP BY ALL", bounds).fetchall()
             if failed or limit is None]
    rates.sort(key=lambda r: (-r.failed_requests, -r.rate, r.name))
    return tuple(rates[:limit] if limit else rates)


def _errors(conn: duckdb.DuckDBPyConnection, period: Period, team_names: dict, key_aliases: dict) -> ErrorView:
    bounds = {"start": period.start, "end": period.end}
    rows = tuple(ErrorRow(*row) for row in conn.execute(
        "SELECT team_id, key_hash, model, coalesce(error_class, ''), coalesce(error_code, ''), coalesce(error_message, ''), sum(failures)::BIGINT "
        "FROM daily_errors WHERE day BETWEEN $start AND $end GROUP BY ALL ORDER BY ALL", bounds).fetchall())
    failures = sum(r.failures for r in rows)

    def grouped(key) -> dict[tuple, dict[str, int]]:
        out: dict[tuple, dict[str, int]] = {}
        for row in rows:
            models = out.setdefault(key(row), {})
            models[row.model] = models.get(row.model, 0) + row.failures
        return out

    def model_list(models: dict[str, int]) -> str:
        return _top([(m, Decimal(n), n) for m, n in models.items()])

    groups = [ErrorGroup(cls or "(unknown)", code or "—", sum(m.values()), sum(m.values()) / failures, model_list(m))
              for (cls, code), m in grouped(lambda r: (r.error_class, r.error_code)).items()]
    messages = [ErrorMessage(message or "(no message)", cls or "(unknown)", sum(m.values()), model_list(m))
                for (message, cls), m in grouped(lambda r: (r.error_message, r.error_class)).items()]
    return ErrorView(
        failures,
        tuple(sorted(groups, key=lambda g: (-g.failures, g.error_class, g.error_code))),
        tuple(sorted(messages, key=lambda m: (-m.failures, m.message))[:15]),
        _failure_rates(conn, period, "model", {}),
        _failure_rates(conn, period, "team_id", team_names),
        _failure_rates(conn, period, "key_hash", key_aliases, limit=25),
        rows)


def _cache_usage(slice_: str, name: str, label: str, input_tokens, cached, savings, unpriced, hits) -> CacheUsage:
    input_tokens, cached, unpriced = int(input_tokens or 0), int(cached or 0), int(unpriced or 0)
    return CacheUsage(slice_, name, label, input_tokens, cached, cached / input_tokens if input_tokens else 0.0,
                      None if cached and unpriced == cached else Decimal(savings or 0), unpriced, int(hits or 0))


def _cache(conn: duckdb.DuckDBPyConnection, period: Period, team_names: dict) -> CacheView:
    rows = conn.execute(
        "SELECT GROUPING(model, team_id), model, team_id, sum(input_tokens), sum(cached_input_tokens), sum(cache_savings_usd), "
        "sum(cache_unpriced_tokens), sum(cache_hit_requests) FROM daily_usage WHERE day BETWEEN $start AND $end "
        "GROUP BY GROUPING SETS ((), (model), (team_id))", {"start": period.start, "end": period.end}).fetchall()
    total = _cache_usage("total", "", "all", 0, 0, 0, 0, 0)
    by_model, by_team = [], []
    for grouping, model, team_id, *values in rows:
        if grouping == 0b11:
            total = _cache_usage("total", "", "all", *values)
        elif grouping == 0b01:
            by_model.append(_cache_usage("model", model, model, *values))
        else:
            by_team.append(_cache_usage("team", team_id, team_names.get(team_id) or team_id, *values))

    def order(rows: list[CacheUsage]) -> tuple[CacheUsage, ...]:
        return tuple(sorted(rows, key=lambda c: (-(c.savings_usd or 0), -c.cached_input_tokens, c.name)))

    return CacheView(total, order(by_model), order(by_team))


def insights(conn: duckdb.DuckDBPyConnection, period: Period, *, team_names: dict[str, str | None], key_aliases: dict[str, str | None],
             hide_user_agent_tags: bool = False) -> Insights:
    """The period's tags, end users, errors, latency and cache; team and key names as the period's other views give them."""
    return Insights(
        tags=_tags(conn, period, team_names, hide_user_agent_tags),
        end_users=_dimension_view(conn, period, "daily_end_user_usage", "end_user", NO_END_USER, "true", None, team_names),
        errors=_errors(conn, period, team_names, key_aliases),
        latency=_latency(conn, period, key_aliases),
        cache=_cache(conn, period, team_names),
    )
