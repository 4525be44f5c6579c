"""Are the logs complete? The gateway's own daily totals against the `requests` table.

LiteLLM keeps, besides the request logs, daily totals per user (`LiteLLM_DailyUserSpend`)
and per team (`LiteLLM_DailyTeamSpend`), one row per
`(entity, date, api_key, model, custom_llm_provider, mcp_namespaced_tool_name, endpoint)`
with `model_group`, prompt/completion tokens, spend, `api_requests`,
`successful_requests`, `failed_requests`. They are written by the proxy from the same
spend-log payload as the request log, independently of where the logs go, so they tell
whether logs were lost on the way (a bucket, a logger, a retention job).

What the totals mean, from LiteLLM's source:
* `date` is the **UTC date of the request's start** (`startTime`, converted to UTC, cut
  at the `T`), stored as text; `start_date`/`end_date` (YYYY-MM-DD, both included) select
  on it. The `timezone` query parameter does not rebucket, so this module never sends it.
  Logged requests are therefore counted here by the UTC date of their `start_time`,
  whatever the report time zone.
* Models: `breakdown.model_groups[g]` is keyed `model_group or model or
  "unknown-model-group"` — exactly the `requests.model` convention (`model_group`, else
  the deployment's `model`) — and `breakdown.models[m]` by the deployment's `model` (or
  "unknown-model"). Both carry `api_key_breakdown[key_hash]`, the key × model cross.
  Older releases have no `model_groups` (then the deployment name is compared with
  `requests.deployment`); the oldest have no `api_key_breakdown` (then models and keys
  are compared separately, with `*` for the other side).
* Keys: `api_key` is the key hash; requests without one are under "unattributed"
  (here "unassigned"). `api_requests` leaves out the proxy's internal sub-calls (auto-
  router classifier, shadow evaluations, billed retry attempts) whose tokens and spend
  it still counts, so the logs may hold *more* requests than the totals, never fewer.
* `/user/daily/activity` (default) covers every request with a key, whether or not the
  key has a user; `/team/daily/activity` only requests of keys that belong to a team.
  A non-admin key sees only its own rows in both.
* Paging: `page`/`page_size` (≤ 1000) page over the *table rows* (ordered by date then
  id), and each page's `results` aggregate that page's rows only: a date can span pages,
  so every page is read and the figures are summed.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

import duckdb

from usage_jobs.defs.gateway.ingest import NO_MODEL
from usage_jobs.defs.gateway.layout import utc_day_span
from usage_jobs.http_retry import RetryingJsonClient, gateway_client
from usage_jobs.warehouse import insert_rows, transaction

USER_ACTIVITY = "/user/daily/activity"
TEAM_ACTIVITY = "/team/daily/activity"
PAGE_SIZE = 1000
MAX_PAGES = 10_000
ANY = "*"  # the other side of a breakdown that has no key × model cross
UNASSIGNED = "unassigned"
GATEWAY_UNATTRIBUTED = "unattributed"
GATEWAY_UNKNOWN_MODELS = {"unknown-model-group", "unknown-model"}
# Tokens and spend may differ by this share (and a little absolute slack) before it counts.
TOKENS_TOLERANCE = 0.001
SPEND_TOLERANCE = 0.001
SPEND_SLACK_USD = 1e-6

# Statuses of a comparison line; the first three are gaps (the check warns about them).
MISSING_REQUESTS = "missing_requests"
TOKENS_DIFFER = "tokens_differ"
SPEND_DIFFER = "spend_differ"
COMPLETE = "complete"
EXTRA_REQUESTS = "extra_requests"  # the logs hold more: internal sub-calls the totals leave out
NOT_IN_GATEWAY = "not_in_gateway"
WAREHOUSE_INCOMPLETE = "warehouse_incomplete"  # a report day overlapping the UTC date is not ingested yet
GAP_STATUSES = (MISSING_REQUESTS, TOKENS_DIFFER, SPEND_DIFFER)


class GatewayActivityError(RuntimeError):
    """The gateway's daily totals could not be read; the message says why (never the key)."""


@dataclass(frozen=True)
class ActivityRow:
    """The gateway's totals for one UTC date × key × model.

    `naming` says which model name `model` is: "model_group" (the public name, as in
    `requests.model`), "model" (the deployment, as in `requests.deployment`), or "*" for a
    per-key row of a release without the key × model cross (then `model` is "*")."""

    day: dt.date
    key_hash: str
    model: str
    naming: str
    requests: int
    successful_requests: int
    failed_requests: int
    prompt_tokens: int
    completion_tokens: int
    spend: float
    key_alias: str | None = None

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Comparison:
    """One UTC date × key × model: the gateway's totals against what the warehouse holds."""

    day: dt.date
    key_hash: str
    model: str
    naming: str
    key_alias: str | None
    gateway_requests: int
    logged_requests: int
    gateway_successful_requests: int
    logged_successful_requests: int
    gateway_failed_requests: int
    logged_failed_requests: int
    gateway_tokens: int
    logged_tokens: int
    gateway_spend: float
    logged_spend: float
    status: str

    @property
    def is_gap(self) -> bool:
        return self.status in GAP_STATUSES

    @property
    def missing_requests(self) -> int:
        return max(0, self.gateway_requests - self.logged_requests)

    def key_label(self) -> str:
        short = self.key_hash if len(self.key_hash) <= 16 else f"{self.key_hash[:8]}…{self.key_hash[-4:]}"
        return f"{self.key_alias} ({short})" if self.key_alias else short

    def describe(self) -> str:
        where = f"{self.day.isoformat()} (UTC) · key {self.key_label()} · model {self.model}"
        if self.status == MISSING_REQUESTS:
            return (f"{where}: the gateway counted {self.gateway_requests:,} requests, the logs hold {self.logged_requests:,} "
                    f"({self.missing_requests:,} missing; tokens {self.gateway_tokens:,} vs {self.logged_tokens:,})")
        if self.status == TOKENS_DIFFER:
            return (f"{where}: same {self.logged_requests:,} requests, but the gateway counted {self.gateway_tokens:,} tokens "
                    f"and the logs {self.logged_tokens:,}")
        if self.status == SPEND_DIFFER:
            return (f"{where}: same {self.logged_requests:,} requests, but the gateway's spend is ${self.gateway_spend:.6f} "
                    f"and the logs' ${self.logged_spend:.6f}")
        return f"{where}: {self.status}, gateway {self.gateway_requests:,} / logs {self.logged_requests:,} requests"


Gap = Comparison  # a comparison whose status is one of GAP_STATUSES


# ---------------------------------------------------------------------------------------
# Reading the gateway's totals


def fetch_daily_activity(base_url: str, admin_key: str, start: dt.date, end: dt.date, *, endpoint: str = USER_ACTIVITY,
                         fallback_endpoint: str | None = TEAM_ACTIVITY, page_size: int = PAGE_SIZE,
                         client: RetryingJsonClient | None = None, log: Callable[[str], None] | None = None,
                         timeout: float = 60.0, max_retries: int = 4) -> list[ActivityRow]:
    """Every page of the gateway's daily activity for the UTC dates start…end (both included),
    as rows per date × key × model, summed across pages.

    When `endpoint` does not exist on the gateway (HTTP 404) and a fallback is given, the
    fallback is read instead (and `log` says so: the team totals miss keys without a team)."""
    if not base_url:
        raise GatewayActivityError("GATEWAY_BASE_URL is not set: the gateway's daily totals cannot be read")
    if not admin_key:
        raise GatewayActivityError("GATEWAY_ADMIN_KEY is not set: the gateway's daily totals need an admin key")
    say = log or (lambda message: None)
    own = client is None
    http = client or gateway_client(base_url, admin_key, error=GatewayActivityError, timeout=timeout, max_retries=max_retries,
                                    backoff_seconds=1.0, log=say)
    try:
        try:
            return _read_activity(http, endpoint, start, end, page_size)
        except GatewayActivityError as exc:
            if getattr(exc, "status", None) != 404 or not fallback_endpoint or fallback_endpoint == endpoint:
                raise
            say(f"The gateway has no {endpoint} (an older LiteLLM?); reading {fallback_endpoint}, which leaves out keys without a team")
            return _read_activity(http, fallback_endpoint, start, end, page_size)
    finally:
        if own:
            http.close()


def _read_activity(http: RetryingJsonClient, endpoint: str, start: dt.date, end: dt.date, page_size: int) -> list[ActivityRow]:
    totals: dict[tuple[dt.date, str, str, str], ActivityRow] = {}
    for page in range(1, MAX_PAGES + 1):
        body = http.get_json(endpoint, {"start_date": start.isoformat(), "end_date": end.isoformat(), "page": page, "page_size": page_size})
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise GatewayActivityError(f"The gateway's {endpoint} answered {_shape(body)}, expected {{results: [...], metadata: {{...}}}}: "
                                       "is GATEWAY_BASE_URL a LiteLLM proxy?")
        for index, result in enumerate(results):
            for row in parse_activity_result(result, f"{endpoint} page {page} results[{index}]"):
                key = (row.day, row.key_hash, row.model, row.naming)
                before = totals.get(key)
                totals[key] = row if before is None else _add(before, row)
        metadata = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
        total_pages, has_more = metadata.get("total_pages"), metadata.get("has_more")
        if has_more is True:
            continue
        if has_more is False or not isinstance(total_pages, int) or page >= total_pages or not results:
            break
    else:
        raise GatewayActivityError(f"The gateway's {endpoint} did not end after {MAX_PAGES:,} pages")
    return sorted(totals.values(), key=lambda r: (r.day, r.naming, r.key_hash, r.model))


def parse_activity_result(result: object, where: str) -> list[ActivityRow]:
    """One `DailySpendData` (`{date, metrics, breakdown}`) as rows per key × model."""
    if not isinstance(result, dict):
        raise GatewayActivityError(f"{where} is {_shape(result)}, expected an object")
    try:
        day = dt.date.fromisoformat(str(result.get("date"))[:10])
    except ValueError:
        raise GatewayActivityError(f"{where}.date is {result.get('date')!r}, expected YYYY-MM-DD") from None
    breakdown = result.get("breakdown") if isinstance(result.get("breakdown"), dict) else {}
    rows: list[ActivityRow] = []
    if isinstance(breakdown.get("model_groups"), dict):
        rows += _cross(day, breakdown["model_groups"], "model_group", where)
    elif isinstance(breakdown.get("models"), dict) and any(
            isinstance(v, dict) and v.get("api_key_breakdown") for v in breakdown["models"].values()):
        rows += _cross(day, breakdown["models"], "model", where)
    else:
        # The oldest releases: per model and per key, no cross.
        for model, bucket in (breakdown.get("models") or {}).items():
            rows.append(_row(day, ANY, _model_name(model), "model", bucket, where))
        for key, bucket in (breakdown.get("api_keys") or {}).items():
            rows.append(_row(day, _key_name(key), ANY, ANY, bucket, where))
    return [r for r in rows if r.requests or r.tokens or r.spend]


def _cross(day: dt.date, buckets: dict, naming: str, where: str) -> list[ActivityRow]:
    rows = []
    for model, bucket in buckets.items():
        keys = bucket.get("api_key_breakdown") if isinstance(bucket, dict) else None
        if keys:
            rows += [_row(day, _key_name(key), _model_name(model), naming, per_key, where) for key, per_key in keys.items()]
        elif isinstance(bucket, dict):  # a bucket without keys: requests are kept, a PTU flat-cost row (no request) is not
            row = _row(day, ANY, _model_name(model), naming, bucket, where)
            if row.requests:
                rows.append(row)
    return rows


def _row(day: dt.date, key: str, model: str, naming: str, bucket: object, where: str) -> ActivityRow:
    metrics = bucket.get("metrics") if isinstance(bucket, dict) else None
    if not isinstance(metrics, dict):
        raise GatewayActivityError(f"{where}: the breakdown of {model} × {key} has no metrics object")
    metadata = bucket.get("metadata") if isinstance(bucket.get("metadata"), dict) else {}

    def count(name: str) -> int:
        value = metrics.get(name, 0) or 0
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or not math.isfinite(value):
            raise GatewayActivityError(f"{where}: metrics.{name} of {model} × {key} is {value!r}, expected a count")
        return int(value)

    spend = metrics.get("spend", 0) or 0
    if isinstance(spend, bool) or not isinstance(spend, int | float) or not math.isfinite(spend):
        raise GatewayActivityError(f"{where}: metrics.spend of {model} × {key} is {spend!r}, expected a number")
    alias = metadata.get("key_alias")
    return ActivityRow(day=day, key_hash=key, model=model, naming=naming, requests=count("api_requests"),
                       successful_requests=count("successful_requests"), failed_requests=count("failed_requests"),
                       prompt_tokens=count("prompt_tokens"), completion_tokens=count("completion_tokens"), spend=float(spend),
                       key_alias=alias if isinstance(alias, str) and alias and alias != "Unattributed" else None)


def _add(a: ActivityRow, b: ActivityRow) -> ActivityRow:
    return replace(a, requests=a.requests + b.requests, successful_requests=a.successful_requests + b.successful_requests,
                   failed_requests=a.failed_requests + b.failed_requests, prompt_tokens=a.prompt_tokens + b.prompt_tokens,
                   completion_tokens=a.completion_tokens + b.completion_tokens, spend=a.spend + b.spend,
                   key_alias=a.key_alias or b.key_alias)


def _key_name(key: str) -> str:
    """The gateway's key bucket as `requests.key_hash` names it."""
    if key == GATEWAY_UNATTRIBUTED or not key:
        return UNASSIGNED
    return key.removeprefix("raw:")


def _model_name(model: str) -> str:
    return NO_MODEL if model in GATEWAY_UNKNOWN_MODELS or not model else model


def _shape(value: object) -> str:
    if isinstance(value, dict):
        return f"an object with keys {sorted(value)[:8]}"
    return f"a {type(value).__name__}"


# ---------------------------------------------------------------------------------------
# Comparing with the warehouse


def utc_dates_of(days: Iterable[dt.date], timezone: str) -> list[dt.date]:
    """The UTC dates a set of report days overlaps (the gateway's totals are per UTC date)."""
    dates: set[dt.date] = set()
    for day in days:
        start, end = utc_day_span(day, timezone)
        last = (end - dt.timedelta(microseconds=1)).date()
        dates.update(start.date() + dt.timedelta(days=i) for i in range((last - start.date()).days + 1))
    return sorted(dates)


def _report_days_of(utc_date: dt.date, timezone: str) -> list[dt.date]:
    """The report days (in `timezone`) that the UTC date overlaps."""
    tz = ZoneInfo(timezone)
    first = dt.datetime.combine(utc_date, dt.time(), dt.UTC).astimezone(tz).date()
    last = (dt.datetime.combine(utc_date + dt.timedelta(days=1), dt.time(), dt.UTC) - dt.timedelta(microseconds=1)).astimezone(tz).date()
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


_LOGGED_SQL = """
SELECT CAST(timezone('UTC', start_time) AS DATE) AS utc_day, key_hash, {model} AS model,
    count(*) AS requests,
    count(*) FILTER (WHERE status = 'success') AS successful,
    count(*) FILTER (WHERE status = 'failure') AS failed,
    -- The gateway's totals hold the logged counts: our tiktoken estimates and re-pricings are left out.
    coalesce(sum(input_tokens + output_tokens) FILTER (WHERE NOT tokens_estimated), 0) AS tokens,
    coalesce(sum(coalesce(spend_usd, 0)) FILTER (WHERE NOT spend_repriced), 0)::DOUBLE AS spend,
    any_value(key_alias) FILTER (WHERE key_alias IS NOT NULL) AS key_alias
FROM requests
WHERE day BETWEEN ? AND ? AND start_time >= ? AND start_time < ?
GROUP BY ALL
"""


def comparisons(conn: duckdb.DuckDBPyConnection, rows: Iterable[ActivityRow], days: Iterable[dt.date], *, timezone: str = "UTC",
                tokens_tolerance: float = TOKENS_TOLERANCE, spend_tolerance: float = SPEND_TOLERANCE) -> list[Comparison]:
    """Every UTC date × key × model of `days` (UTC dates) found on either side, with its status."""
    days = sorted(set(days))
    if not days:
        return []
    wanted = set(days)
    gateway = [r for r in rows if r.day in wanted]
    namings = {r.naming for r in gateway} or {"model_group"}
    first, last = days[0], days[-1]
    span = (dt.datetime.combine(first, dt.time(), dt.UTC), dt.datetime.combine(last + dt.timedelta(days=1), dt.time(), dt.UTC))
    report_span = (first - dt.timedelta(days=1), last + dt.timedelta(days=1))
    loaded = {d for (d,) in conn.execute("SELECT day FROM ingest_days WHERE day BETWEEN ? AND ?", list(report_span)).fetchall()}
    covered = {d for d in days if all(r in loaded for r in _report_days_of(d, timezone))}

    def logged(model_expr: str) -> dict[tuple[dt.date, str, str], tuple]:
        found = conn.execute(_LOGGED_SQL.format(model=model_expr), [*report_span, *span]).fetchall()
        return {(d, k, m): rest for d, k, m, *rest in found if d in wanted}

    out: list[Comparison] = []
    if "model_group" in namings or not gateway:
        out += _compare(logged("model"), [r for r in gateway if r.naming == "model_group"], "model_group", covered,
                        tokens_tolerance, spend_tolerance)
    if "model" in namings:
        by_deployment = logged(f"coalesce(deployment, '{NO_MODEL}')")
        if ANY in namings:  # oldest releases: per deployment over every key, and per key over every model
            per_model = _regroup(by_deployment, lambda d, k, m: (d, ANY, m))
            out += _compare(per_model, [r for r in gateway if r.naming == "model"], "model", covered, tokens_tolerance, spend_tolerance)
        else:
            out += _compare(by_deployment, [r for r in gateway if r.naming == "model"], "model", covered, tokens_tolerance, spend_tolerance)
    if ANY in namings:
        per_key = _regroup(logged("model"), lambda d, k, m: (d, k, ANY))
        out += _compare(per_key, [r for r in gateway if r.naming == ANY], ANY, covered, tokens_tolerance, spend_tolerance)
    return sorted(out, key=lambda c: (c.day, c.naming, c.key_hash, c.model))


def compare(conn: duckdb.DuckDBPyConnection, rows: Iterable[ActivityRow], days: Iterable[dt.date], *, timezone: str = "UTC",
            tokens_tolerance: float = TOKENS_TOLERANCE, spend_tolerance: float = SPEND_TOLERANCE) -> list[Gap]:
    """The date × key × model where the logs miss requests, or their tokens or spend differ."""
    return [c for c in comparisons(conn, rows, days, timezone=timezone, tokens_tolerance=tokens_tolerance,
                                   spend_tolerance=spend_tolerance) if c.is_gap]


def _regroup(logged: dict, key: Callable) -> dict:
    out: dict = {}
    for (d, k, m), (requests, successful, failed, tokens, spend, alias) in logged.items():
        target = key(d, k, m)
        before = out.get(target, (0, 0, 0, 0, 0.0, None))
        out[target] = (before[0] + requests, before[1] + successful, before[2] + failed, before[3] + tokens,
                       before[4] + spend, before[5] or (alias if target[1] != ANY else None))
    return out


def _compare(logged: dict, gateway: list[ActivityRow], naming: str, covered: set[dt.date],
             tokens_tolerance: float, spend_tolerance: float) -> list[Comparison]:
    by_key = {(r.day, r.key_hash, r.model): r for r in gateway}
    out = []
    for target in sorted(set(by_key) | set(logged)):
        g = by_key.get(target)
        requests, successful, failed, tokens, spend, alias = logged.get(target, (0, 0, 0, 0, 0.0, None))
        gateway_tokens = g.tokens if g else 0
        gateway_spend = g.spend if g else 0.0
        if target[0] not in covered:
            status = WAREHOUSE_INCOMPLETE
        elif g is None:
            status = NOT_IN_GATEWAY
        elif requests < g.requests:
            status = MISSING_REQUESTS
        elif requests > g.requests:
            status = EXTRA_REQUESTS
        elif abs(tokens - gateway_tokens) > max(1.0, tokens_tolerance * gateway_tokens):
            status = TOKENS_DIFFER
        elif abs(spend - gateway_spend) > max(SPEND_SLACK_USD, spend_tolerance * abs(gateway_spend)):
            status = SPEND_DIFFER
        else:
            status = COMPLETE
        out.append(Comparison(
            day=target[0], key_hash=target[1], model=target[2], naming=naming, key_alias=(g.key_alias if g else None) or alias,
            gateway_requests=g.requests if g else 0, logged_requests=int(requests),
            gateway_successful_requests=g.successful_requests if g else 0, logged_successful_requests=int(successful),
            gateway_failed_requests=g.failed_requests if g else 0, logged_failed_requests=int(failed),
            gateway_tokens=gateway_tokens, logged_tokens=int(tokens), gateway_spend=round(gateway_spend, 10),
            logged_spend=round(float(spend), 10), status=status,
        ))
    return out


def store_comparisons(conn: duckdb.DuckDBPyConnection, lines: list[Comparison], days: Iterable[dt.date]) -> int:
    """Replace the stored comparison of the UTC dates `days` (one transaction)."""
    days = sorted(set(days))
    columns = ("day", "key_hash", "model", "model_naming", "key_alias", "gateway_requests", "logged_requests",
               "gateway_successful_requests", "logged_successful_requests", "gateway_failed_requests", "logged_failed_requests",
               "gateway_tokens", "logged_tokens", "gateway_spend", "logged_spend", "status")
    values = [(c.day, c.key_hash, c.model, c.naming, c.key_alias, c.gateway_requests, c.logged_requests, c.gateway_successful_requests,
               c.logged_successful_requests, c.gateway_failed_requests, c.logged_failed_requests, c.gateway_tokens, c.logged_tokens,
               c.gateway_spend, c.logged_spend, c.status) for c in lines]
    with transaction(conn):
        if days:
            conn.execute(f"DELETE FROM gateway_completeness WHERE day IN ({', '.join('?' * len(days))})", days)
        insert_rows(conn, "gateway_completeness", values, columns)
    return len(values)


def is_auth_error(exc: BaseException) -> bool:
    return getattr(exc, "status", None) in (401, 403)

