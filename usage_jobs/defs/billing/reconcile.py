"""Billed usage into the warehouse, the estimated-versus-billed reconciliation and the
chargeback, for a window of billing days. No Dagster here.

Billing days are days in the billing time zone (UTC unless set); gateway requests are
bucketed by the billing day of their start time, so a report time zone other than UTC
still compares like with like.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from zoneinfo import ZoneInfo

import duckdb
import numpy as np

from usage_jobs.defs.billing.allocation import allocate_cents, to_cents
from usage_jobs.defs.billing.forecast import CommitForecast, commit_forecast
from usage_jobs.defs.billing.fx import UsdRates
from usage_jobs.defs.billing.parse import BilledHistory
from usage_jobs.warehouse import transaction

UNASSIGNED = "unassigned"


@dataclass
class StoredHistory:
    billed_days: list[dt.date] = field(default_factory=list)
    unbilled_days: list[dt.date] = field(default_factory=list)
    kept_days: list[dt.date] = field(default_factory=list)  # billed before, absent from this answer: earlier figures kept
    restated_days: list[dt.date] = field(default_factory=list)
    rows: int = 0


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def billing_window(first: dt.date, last: dt.date, refresh_days: int, earliest: dt.date) -> tuple[dt.date, dt.date]:
    """The days to ask IG1 for: the run's days plus the `refresh_days - 1` before them (late or restated billing)."""
    return max(earliest, first - dt.timedelta(days=max(refresh_days, 1) - 1)), last


def store_history(conn: duckdb.DuckDBPyConnection, history: BilledHistory, start: dt.date, end: dt.date) -> StoredHistory:
    """Replace the billed figures of every day IG1 returned; record which days are billed, missing or restated."""
    before = {day: (cost, tokens) for day, cost, tokens in conn.execute(
        "SELECT day, sum(cost), sum(input_tokens + output_tokens) FROM billed_usage WHERE day BETWEEN ? AND ? GROUP BY day", [start, end]).fetchall()}
    by_day: dict[dt.date, list] = defaultdict(list)
    for row in history.rows:
        by_day[row.day].append(row)
    result = StoredHistory(rows=len(history.rows))
    day_rows = []
    for day in days_between(start, end):
        rows = by_day.get(day)
        if rows:
            totals = (sum(r.cost for r in rows), sum(r.input_tokens + r.output_tokens for r in rows))
            restated = day in before and before[day] != totals
            result.billed_days.append(day)
            if restated:
                result.restated_days.append(day)
            day_rows.append((day, True, len(rows), totals[0], history.currency, restated))
        elif day in before:
            result.kept_days.append(day)
        else:
            result.unbilled_days.append(day)
            day_rows.append((day, False, 0, None, None, False))
    # One transaction: a day's billed figures are replaced whole or not at all.
    with transaction(conn):
        if result.billed_days:
            conn.execute("DELETE FROM billed_usage WHERE list_contains(?, day)", [result.billed_days])
        if history.rows:
            conn.executemany("INSERT INTO billed_usage VALUES (?, ?, ?, ?, ?, ?, ?)",
                             [(r.day, r.model, r.input_tokens, r.output_tokens, r.requests, r.cost, history.currency) for r in history.rows])
        replaced = [row[0] for row in day_rows]
        if replaced:
            conn.execute("DELETE FROM billing_days WHERE list_contains(?, day)", [replaced])
            conn.executemany("INSERT INTO billing_days VALUES (?, ?, ?, ?, ?, ?)", day_rows)
    return result


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


def _window_params(start: dt.date, end: dt.date, billing_timezone: str) -> dict:
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
    forecast = commit_forecast(today=asked_on, spent=Decimal(current), commit=Decimal(commit), daily_costs={d: Decimal(c) for d, c in daily})
    return forecast, currency, asked_on


def reconcile(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, *, billing_timezone: str, report_timezone: str, rates: UsdRates) -> int:
    """Rebuild `reconciliation` for billing days start..end: estimate vs bill per day × model."""
    estimated = {(r[0], r[1]): r[2:] for r in conn.execute(_ESTIMATED_SQL, _window_params(start, end, billing_timezone)).fetchall()}
    billed = {(r[0], r[1]): r[2:] for r in conn.execute(
        "SELECT day, model, requests, input_tokens, output_tokens, cost, currency FROM billed_usage WHERE day BETWEEN ? AND ?", [start, end]).fetchall()}
    billed_days = {r[0] for r in conn.execute("SELECT day FROM billing_days WHERE billed AND day BETWEEN ? AND ?", [start, end]).fetchall()}
    complete = gateway_complete_days(conn, start, end, billing_timezone=billing_timezone, report_timezone=report_timezone)
    rows = []
    for day, model in sorted(set(estimated) | set(billed)):
        e_requests, e_input, e_output, e_cost = estimated.get((day, model), (0, 0, 0, Decimal(0)))
        b_requests, b_input, b_output, b_cost, currency = billed.get((day, model), (None, None, None, None, None))
        if day not in complete:
            status = "gateway logs incomplete"
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
        if rows:
            conn.executemany("INSERT INTO reconciliation VALUES (" + ", ".join("?" * 16) + ")", rows)
    return len(rows)


_CONSUMERS_SQL = """
SELECT CAST(timezone($tz, start_time) AS DATE) AS billing_day, model, team_id, arg_max(team_alias, start_time) AS team_alias,
    key_hash, arg_max(key_alias, start_time) AS key_alias,
    sum(spend_usd) AS spend_usd, bool_or(unpriced) AS unpriced, sum(input_tokens + output_tokens) AS tokens, count(*) AS requests
FROM requests
WHERE status = 'success' AND day BETWEEN $first_day AND $last_day AND start_time >= $begin AND start_time < $finish
GROUP BY billing_day, model, team_id, key_hash
ORDER BY billing_day, model, team_id, key_hash
"""


def _basis(consumers: list[tuple]) -> tuple[str, list[Decimal]]:
    """What the billed cost is shared by: estimated cost, else tokens (unpriced model), else requests."""
    if consumers and not any(c[5] for c in consumers) and sum(c[4] or 0 for c in consumers) > 0:
        return "estimated cost", [Decimal(c[4] or 0) for c in consumers]
    if sum(c[6] for c in consumers) > 0:
        return "tokens", [Decimal(c[6]) for c in consumers]
    if consumers:
        return "requests", [Decimal(c[7]) for c in consumers]
    return "no gateway traffic", []


def chargeback(conn: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date, *, billing_timezone: str, rates: UsdRates) -> int:
    """Rebuild `chargeback` for billing days start..end: each day × model's billed cost shared to the cent."""
    consumers: dict[tuple, list[tuple]] = defaultdict(list)
    for day, model, team_id, team_alias, key_hash, key_alias, spend, unpriced, tokens, requests in conn.execute(
            _CONSUMERS_SQL, _window_params(start, end, billing_timezone)).fetchall():
        consumers[(day, model)].append((team_id, team_alias, key_hash, key_alias, spend, unpriced, tokens, requests))
    out: dict[str, list] = defaultdict(list)
    for day, model, cost, currency in conn.execute(
            "SELECT day, model, cost, currency FROM billed_usage WHERE day BETWEEN ? AND ? ORDER BY day, model", [start, end]).fetchall():
        group = consumers.get((day, model), [])
        basis, weights = _basis(group)
        if not weights:  # billed, but the gateway saw nothing: the unassigned bucket carries it
            group, weights = [(UNASSIGNED, None, UNASSIGNED, None, None, False, 0, 0)], [Decimal(1)]
        cents = allocate_cents(to_cents(cost), weights)
        rate = rates.usd_per_unit(currency, day)
        usd_cents = allocate_cents(to_cents(cost * rate), weights) if rate is not None else [None] * len(weights)
        for consumer, weight, share, usd_share in zip(group, weights, cents, usd_cents):
            team_id, team_alias, key_hash, key_alias = consumer[:4]
            for name, value in (("day", day.isoformat()), ("model", model), ("team_id", team_id), ("team_alias", team_alias),
                                ("key_hash", key_hash), ("key_alias", key_alias), ("basis", basis), ("weight", float(weight)),
                                ("allocated_cost", str(Decimal(share) / 100)), ("currency", currency),
                                ("allocated_cost_usd", None if usd_share is None else str(Decimal(usd_share) / 100))):
                out[name].append(value)
    with transaction(conn):
        conn.execute("DELETE FROM chargeback WHERE day BETWEEN ? AND ?", [start, end])
        if out:
            conn.register("chargeback_rows", {name: np.array(values, dtype=object if name != "weight" else np.float64) for name, values in out.items()})
            conn.execute(
                "INSERT INTO chargeback SELECT CAST(day AS DATE), model, team_id, team_alias, key_hash, key_alias, basis, weight, "
                "CAST(allocated_cost AS DECIMAL(18, 2)), currency, CAST(allocated_cost_usd AS DECIMAL(18, 2)) FROM chargeback_rows")
            conn.unregister("chargeback_rows")
    return len(out["day"])
