"""Billed usage into the warehouse, the estimated-versus-billed reconciliation and the
chargeback, for a window of billing days. No Dagster here.

Billing days are days in the billing time zone (UTC unless set); gateway requests are
bucketed by the billing day of their start time, so a report time zone other than UTC
still compares like with like. A billed figure stays on its billing day; a share of it
also records the report day of the requests it was shared among (`chargeback.report_day`).

Shares are kept at full precision (10^-18 of the currency): each billing day × model's
cost is shared exactly, and money is rounded once, on the statement (`statement.py`).
Two buckets hold what no team can be charged for by name: `unassigned` ("no team",
gateway traffic without a team, as the logs have it) and `not-seen-by-gateway` (billed
usage with no gateway traffic for that day × model).
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

import duckdb
import numpy as np

from usage_jobs.defs.billing.allocation import share_exactly
from usage_jobs.defs.billing.forecast import CommitForecast, commit_forecast
from usage_jobs.defs.billing.fx import UsdRates
from usage_jobs.defs.billing.nowcast import calibrated_days
from usage_jobs.defs.billing.parse import BilledHistory
from usage_jobs.warehouse import insert_rows, transaction

UNASSIGNED = "unassigned"  # gateway traffic without a team (or key): the "no team" bucket
NOT_SEEN = "not-seen-by-gateway"  # billed usage with no gateway traffic for that billing day × model
BUCKET_LABELS = {UNASSIGNED: "no team", NOT_SEEN: "not seen by the gateway"}
WITHDRAWN = "withdrawn by IG1"


@dataclass
class StoredHistory:
    billed_days: list[dt.date] = field(default_factory=list)
    unbilled_days: list[dt.date] = field(default_factory=list)
    withdrawn_days: list[dt.date] = field(default_factory=list)  # billed before, absent from this answer: cleared and marked
    restated_days: list[dt.date] = field(default_factory=list)
    rows: int = 0


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def billing_window(first: dt.date, last: dt.date, refresh_days: int, earliest: dt.date) -> tuple[dt.date, dt.date]:
    """The days to ask IG1 for: the run's days plus the `refresh_days - 1` before them (late or restated billing)."""
    return max(earliest, first - dt.timedelta(days=max(refresh_days, 1) - 1)), last


def store_history(conn: duckdb.DuckDBPyConnection, history: BilledHistory, start: dt.date, end: dt.date) -> StoredHistory:
    """Replace the billed figures of every day asked: a day IG1 returned gets its rows (restated when they
    changed); a day billed before and absent from this answer was withdrawn by IG1: its figures are
    cleared and the day marked `withdrawn` (billed, for nothing); a day never billed stays "not billed yet"."""
    before = {day: (cost, tokens) for day, cost, tokens in conn.execute(
        "SELECT day, sum(cost), sum(input_tokens + output_tokens) FROM billed_usage WHERE day BETWEEN ? AND ? GROUP BY day", [start, end]).fetchall()}
    withdrawn_before = {row[0] for row in conn.execute("SELECT day FROM billing_days WHERE withdrawn AND day BETWEEN ? AND ?", [start, end]).fetchall()}
    by_day: dict[dt.date, list] = defaultdict(list)
    for row in history.rows:
        by_day[row.day].append(row)
    result = StoredHistory(rows=len(history.rows))
    day_rows = []
    for day in days_between(start, end):
        rows = by_day.get(day)
        if rows:
            totals = (sum(r.cost for r in rows), sum(r.input_tokens + r.output_tokens for r in rows))
            restated = (day in before and before[day] != totals) or day in withdrawn_before
            result.billed_days.append(day)
            if restated:
                result.restated_days.append(day)
            day_rows.append((day, True, len(rows), totals[0], history.currency, restated, False))
        elif day in before or day in withdrawn_before:
            result.withdrawn_days.append(day)
            day_rows.append((day, True, 0, Decimal(0), history.currency, day in before, True))
        else:
            result.unbilled_days.append(day)
            day_rows.append((day, False, 0, None, None, False, False))
    # One transaction: a day's billed figures are replaced whole or not at all.
    with transaction(conn):
        replaced = [row[0] for row in day_rows]
        if replaced:
            conn.execute("DELETE FROM billed_usage WHERE list_contains(?, day)", [replaced])
        insert_rows(conn, "billed_usage", [(r.day, r.model, r.input_tokens, r.output_tokens, r.requests, r.cost, history.currency) for r in history.rows])
        if replaced:
            conn.execute("DELETE FROM billing_days WHERE list_contains(?, day)", [replaced])
            insert_rows(conn, "billing_days", day_rows, ("day", "billed", "models", "cost", "currency", "restated", "withdrawn"))
    return result


def month_span(month: str) -> tuple[dt.date, dt.date]:
    """The first and last day of an invoice month `YYYY-MM`; ValueError naming it otherwise."""
    try:
        first = dt.datetime.strptime(month, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"{month!r} is not a month (YYYY-MM)") from None
    return first, (first + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)


def months_to_refetch(conn: duckdb.DuckDBPyConnection, today: dt.date, earliest: dt.date) -> list[str]:
    """Invoice months to fetch whole again at month close: every month ended before `today` (the run's last day), from
    `earliest` on, with billed or asked days, that has not yet been fetched again more than IG1_LATE_DAYS after its end (IG1 bills late and
    restates: until then, each run after the month's end asks for the whole month; see `record_refetch`)."""
    months = [row[0] for row in conn.execute(
        "SELECT DISTINCT strftime(day, '%Y-%m') FROM billing_days WHERE day >= ? AND day < ? ORDER BY 1", [earliest, today.replace(day=1)]).fetchall()]
    closed = {row[0] for row in conn.execute("SELECT month FROM billing_months WHERE closed").fetchall()}
    return [month for month in months if month not in closed]


def months_covered(start: dt.date, end: dt.date, earliest: dt.date) -> list[str]:
    """Invoice months that ended before the month of `end` and whose every day from `earliest` on lies in start..end: a run
    asking IG1 for that window (a backfill) has fetched them whole, as a month-close fetch would."""
    months, first = [], start.replace(day=1)
    while first < end.replace(day=1):
        month = first.strftime("%Y-%m")
        month_first, month_last = month_span(month)
        if max(month_first, earliest) >= start:
            months.append(month)
        first = month_last + dt.timedelta(days=1)
    return months


def record_refetch(conn: duckdb.DuckDBPyConnection, month: str, today: dt.date, late_days: int) -> bool:
    """Note that `month` was fetched whole on `today`; closed once that was more than `late_days` after its end."""
    closed = (today - month_span(month)[1]).days > late_days
    conn.execute("INSERT OR REPLACE INTO billing_months VALUES (?, ?, ?)", [month, today, closed])
    return closed


def _bounds(start: dt.date, end: dt.date, timezone: str) -> tuple[dt.datetime, dt.datetime]:
    zone = ZoneInfo(timezone)
    return (dt.datetime.combine(start, dt.time(), zone).astimezone(dt.UTC),
            dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), zone).astimezone(dt.UTC))


def gateway_complete_days(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, *, billing_timezone: str, report_timezone: str) -> set[dt.date]:
    """Billing days whose every hour falls in a report day that has been ingested."""
    ingested = {row[0] for row in conn.execute("SELECT day FROM ingest_days").fetchall()}
    report_zone = ZoneInfo(report_timezone)
    complete = set()
    for day in days_between(start, end):
        begin, finish = _bounds(day, day, billing_timezone)
        needed = {begin.astimezone(report_zone).date(), (finish - dt.timedelta(microseconds=1)).astimezone(report_zone).date()}
        if needed <= ingested:
            complete.add(day)
    return complete


# Successful requests only: IG1 bills nothing for failures.
_ESTIMATED_SQL = """
SELECT CAST(timezone($tz, start_time) AS DATE) AS billing_day, model,
    count(*) AS requests, sum(input_tokens) AS input_tokens, sum(output_tokens) AS output_tokens,
    CASE WHEN bool_or(unpriced) THEN NULL ELSE sum(spend_usd) END AS cost_usd
FROM requests
WHERE status = 'success' AND day BETWEEN $first_day AND $last_day AND start_time >= $begin AND start_time < $finish
GROUP BY billing_day, model
"""


def requests_window(start: dt.date, end: dt.date, billing_timezone: str) -> dict:
    """The query parameters selecting the requests started in billing days start..end ($tz, $begin, $finish, $first_day, $last_day)."""
    begin, finish = _bounds(start, end, billing_timezone)
    # `day` (report time zone) narrows the scan; the start-time bounds decide.
    return {"tz": billing_timezone, "begin": begin, "finish": finish,
            "first_day": start - dt.timedelta(days=1), "last_day": end + dt.timedelta(days=1)}


def variance_pct(billed, estimated, places: int = 4) -> float | None:
    """(billed − estimated) ÷ estimated × 100, or None when either is missing or nothing was estimated."""
    if billed is None or not estimated:
        return None
    return round(float((Decimal(billed) - Decimal(estimated)) / Decimal(estimated) * 100), places)


def stored_forecast(conn: duckdb.DuckDBPyConnection, asked_on: dt.date | None = None) -> tuple[CommitForecast | None, str | None, dt.date | None]:
    """The commit forecast from IG1's /usage answer recorded on `asked_on` (default: the latest),
    with that answer's currency and date; the run-rate comes from the billed days before it."""
    latest = conn.execute("SELECT asked_on, current, commit, currency FROM commit_status WHERE asked_on = coalesce(?, asked_on) "
                          "ORDER BY asked_on DESC LIMIT 1", [asked_on]).fetchone()
    if latest is None:
        return None, None, None
    asked_on, current, commit, currency = latest
    daily = conn.execute("SELECT day, sum(cost) FROM billed_usage WHERE day BETWEEN ? AND ? GROUP BY day",
                         [asked_on - dt.timedelta(days=14), asked_on]).fetchall()
    # Days IG1 has not billed yet count at their calibrated estimate (nowcast.py).
    calibrated = calibrated_days(conn, asked_on - dt.timedelta(days=14), asked_on - dt.timedelta(days=1))
    forecast = commit_forecast(today=asked_on, spent=Decimal(current), commit=Decimal(commit), daily_costs={d: Decimal(c) for d, c in daily},
                               calibrated=calibrated)
    return forecast, currency, asked_on


def reconcile(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, *, billing_timezone: str, report_timezone: str, rates: UsdRates) -> int:
    """Rebuild `reconciliation` for billing days start..end: estimate vs bill per day × model."""
    estimated = {(r[0], r[1]): r[2:] for r in conn.execute(_ESTIMATED_SQL, requests_window(start, end, billing_timezone)).fetchall()}
    billed = {(r[0], r[1]): r[2:] for r in conn.execute(
        "SELECT day, model, requests, input_tokens, output_tokens, cost, currency FROM billed_usage WHERE day BETWEEN ? AND ?", [start, end]).fetchall()}
    billed_days = {r[0] for r in conn.execute("SELECT day FROM billing_days WHERE billed AND day BETWEEN ? AND ?", [start, end]).fetchall()}
    withdrawn = {r[0] for r in conn.execute("SELECT day FROM billing_days WHERE withdrawn AND day BETWEEN ? AND ?", [start, end]).fetchall()}
    complete = gateway_complete_days(conn, start, end, billing_timezone=billing_timezone, report_timezone=report_timezone)
    rows = []
    for day, model in sorted(set(estimated) | set(billed)):
        e_requests, e_input, e_output, e_cost = estimated.get((day, model), (0, 0, 0, Decimal(0)))
        b_requests, b_input, b_output, b_cost, currency = billed.get((day, model), (None, None, None, None, None))
        if day not in complete:
            status = "gateway logs incomplete"
        elif day in withdrawn:
            status = WITHDRAWN
        elif day not in billed_days:
            status = "not billed yet"
        elif (day, model) not in billed:
            status = "not billed"
        elif (day, model) not in estimated:
            status = "no gateway traffic"
        elif e_cost is None:
            status = "unpriced at the gateway"
        else:
            status = "reconciled"
        if day in billed_days and (day, model) not in billed:
            b_requests, b_input, b_output, b_cost = 0, 0, 0, Decimal(0)
        rate = rates.usd_per_unit(currency, day)
        b_cost_usd = b_cost * rate if b_cost is not None and rate is not None else None
        token_variance = variance_pct(None if b_input is None else b_input + b_output, e_input + e_output)
        rows.append((day, model, status, e_requests, b_requests, e_input, b_input, e_output, b_output, token_variance,
                     e_cost, b_cost, currency, rate if currency else None, b_cost_usd, variance_pct(b_cost_usd, e_cost)))
    # The window's rows are replaced together, so a re-run never leaves a mix of old and new.
    with transaction(conn):
        conn.execute("DELETE FROM reconciliation WHERE day BETWEEN ? AND ?", [start, end])
        insert_rows(conn, "reconciliation", rows)
    return len(rows)


_CONSUMERS_SQL = """
SELECT CAST(timezone($tz, start_time) AS DATE) AS billing_day, model, team_id, arg_max(team_alias, start_time) AS team_alias,
    key_hash, arg_max(key_alias, start_time) AS key_alias, day AS report_day,
    sum(spend_usd) AS spend_usd, bool_or(unpriced) AS unpriced, sum(input_tokens + output_tokens) AS tokens, count(*) AS requests
FROM requests
WHERE status = 'success' AND day BETWEEN $first_day AND $last_day AND start_time >= $begin AND start_time < $finish
GROUP BY billing_day, model, team_id, key_hash, day
ORDER BY billing_day, model, team_id, key_hash, day
"""


@dataclass(frozen=True)
class Consumer:
    """Successful gateway requests of one team × key on one report day, within a billing day × model."""

    team_id: str
    team_alias: str | None
    key_hash: str
    key_alias: str | None
    report_day: dt.date | None
    spend_usd: Decimal | None
    unpriced: bool
    tokens: int
    requests: int


NOT_SEEN_CONSUMER = Consumer(NOT_SEEN, BUCKET_LABELS[NOT_SEEN], NOT_SEEN, None, None, None, False, 0, 0)


def allocation_basis(consumers: list[Consumer]) -> tuple[str, list[Decimal]]:
    """What the billed cost is shared by: estimated cost, else tokens (unpriced model or no cost), else requests."""
    if consumers and not any(c.unpriced for c in consumers) and sum(c.spend_usd or 0 for c in consumers) > 0:
        return "estimated cost", [Decimal(c.spend_usd or 0) for c in consumers]
    if sum(c.tokens for c in consumers) > 0:
        return "tokens", [Decimal(c.tokens) for c in consumers]
    if consumers and sum(c.requests for c in consumers) > 0:
        return "requests", [Decimal(c.requests) for c in consumers]
    return "no gateway traffic", []


def shares_of(cost: Decimal, usd_rate: Decimal | None, consumers: list[Consumer]) -> list[tuple[Consumer, str, Decimal, Decimal, Decimal | None]]:
    """A billing day × model's cost shared at full precision: (consumer, basis, weight, share, share in USD).
    Billed usage the gateway never saw goes whole to the `not-seen-by-gateway` bucket."""
    basis, weights = allocation_basis(consumers)
    if not weights:
        consumers, weights = [NOT_SEEN_CONSUMER], [Decimal(1)]
    shares = share_exactly(cost, weights)
    usd = share_exactly(cost * usd_rate, weights) if usd_rate is not None else [None] * len(weights)
    return list(zip(consumers, [basis] * len(weights), weights, shares, usd))


def chargeback(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, *, billing_timezone: str, rates: UsdRates) -> int:
    """Rebuild `chargeback` for billing days start..end: each day × model's billed cost shared among the
    consumers of that day × model (team × key × report day) at full precision; no rounding here."""
    consumers: dict[tuple, list[Consumer]] = defaultdict(list)
    for day, model, *values in conn.execute(_CONSUMERS_SQL, requests_window(start, end, billing_timezone)).fetchall():
        consumers[(day, model)].append(Consumer(*values))
    rows = []
    for day, model, cost, currency in conn.execute(
            "SELECT day, model, cost, currency FROM billed_usage WHERE day BETWEEN ? AND ? ORDER BY day, model", [start, end]).fetchall():
        for consumer, basis, weight, share, usd_share in shares_of(cost, rates.usd_per_unit(currency, day), consumers.get((day, model), [])):
            rows.append((day.isoformat(), model, consumer.team_id, consumer.team_alias, consumer.key_hash, consumer.key_alias, basis, float(weight),
                         str(share), currency, None if usd_share is None else str(usd_share),
                         consumer.report_day and consumer.report_day.isoformat(), str(consumer.tokens),
                         None if consumer.spend_usd is None else str(consumer.spend_usd)))
    names = ("day", "model", "team_id", "team_alias", "key_hash", "key_alias", "basis", "weight", "allocated_cost", "currency",
             "allocated_cost_usd", "report_day", "tokens", "spend_usd")
    with transaction(conn):
        conn.execute("DELETE FROM chargeback WHERE day BETWEEN ? AND ?", [start, end])
        if rows:
            columns = {name: np.array([row[i] for row in rows], dtype=np.float64 if name == "weight" else object) for i, name in enumerate(names)}
            conn.register("chargeback_rows", columns)
            conn.execute(
                "INSERT INTO chargeback SELECT CAST(day AS DATE), model, team_id, team_alias, key_hash, key_alias, basis, weight, "
                "CAST(allocated_cost AS DECIMAL(38, 18)), currency, CAST(allocated_cost_usd AS DECIMAL(38, 18)), CAST(report_day AS DATE), "
                "CAST(tokens AS BIGINT), "
                "CAST(spend_usd AS DECIMAL(38, 10)) FROM chargeback_rows")
            conn.unregister("chargeback_rows")
    return len(rows)
