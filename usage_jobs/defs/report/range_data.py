"""The daily rows behind each view's from/to picker, summed in the browser by report.js.

Scripts that set a global, not JSON files fetched: browsers refuse `fetch()` of a file:// URL, and the
site must work from the file system. Each view has `range/<view>.js` (what the view is, and the months it
holds) and a script per month, `range/<view>/<YYYY-MM>.js`, which report.js loads after it: a new day
writes its month's scripts again, not the whole history (one script per view held every day: 0.5 CPU-s and
15 MB at 35 days of 3,000 keys, 2.8 CPU-s and 76 MB at 180, all written again by every new day). Money
travels as whole units of 10⁻¹⁰ USD in strings (the warehouse's precision), summed exactly as BigInt and
rounded once, like the exports; counts as numbers.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

import duckdb

from usage_jobs.defs.billing.reconcile import BUCKET_LABELS, month_span
from usage_jobs.defs.gateway.aggregates import LATENCY_BUCKET_RATIO
from usage_jobs.defs.report.insights import NO_END_USER, NO_TAG, tag_rows

MONEY_UNITS = 10**10  # DECIMAL(18, 10)
_DAYS = "day BETWEEN $start AND $end"
_USAGE = ("requests", "failed_requests", "input_tokens", "output_tokens", "total_tokens")
_USAGE_LABELS = ("Requests", "Failed", "Input tokens", "Output tokens", "Total tokens")


@dataclass(frozen=True)
class RangeView:
    """One view's picker: what a row is called, its measures (count or money), and the query giving day, id, label, measures."""

    name: str  # the page it serves, without .html
    noun: str
    measures: tuple[tuple[str, str, str], ...]  # (column, label, count | money (USD) | amount (contract currency) | percentile)
    sql: str  # over the days $start..$end
    note: str = ""


def _money(column: str) -> str:
    return f"CAST(round(coalesce(sum({column}), 0) * {MONEY_UNITS}) AS HUGEINT)::VARCHAR"


def _bucket_labels() -> str:
    return " ".join(f"WHEN '{bucket}' THEN '{label}'" for bucket, label in BUCKET_LABELS.items())


def _usage_view(name: str, noun: str, table: str, identity: str, label: str, where: str = "true", note: str = "",
                extra: tuple[tuple[str, str, str, str], ...] = ()) -> RangeView:
    sums = ", ".join(f"sum({c})::BIGINT" for c in _USAGE) + f", {_money('spend_usd')}" + "".join(f", {sql}" for _, _, _, sql in extra)
    measures = tuple((c, lbl, "count") for c, lbl in zip(_USAGE, _USAGE_LABELS)) + (("spend_usd", "Spend (USD)", "money"),)
    return RangeView(name, noun, measures + tuple((c, lbl, kind) for c, lbl, kind, _ in extra),
                     f"SELECT strftime(day, '%Y-%m-%d'), {identity}, {label}, {sums} FROM {table} WHERE ({where}) AND {_DAYS} "
                     "GROUP BY 1, 2 ORDER BY 1, 2", note)


def range_views(hide_user_agent_tags: bool) -> tuple[RangeView, ...]:
    tag_filter, tag_shared = tag_rows(hide_user_agent_tags)
    return (
        _usage_view("index", "Day", "daily_usage", "strftime(day, '%Y-%m-%d')", "any_value(strftime(day, '%Y-%m-%d'))"),
        # Teams named as the site names them: the inventory, else the logs, else the bucket's label ("no team").
        _usage_view("teams", "Team", "daily_usage d LEFT JOIN inventory_teams i USING (team_id)", "team_id",
                    f"coalesce(any_value(i.team_alias), max(d.team_alias), CASE team_id {_bucket_labels()} END, team_id)"),
        _usage_view("keys", "Key", "daily_usage", "key_hash", "coalesce(max(key_alias), '(no alias)') || ' · ' || left(key_hash, 12)"),
        _usage_view("models", "Model", "daily_usage", "model", "any_value(model)"),
        _usage_view("tags", "Tag", "daily_tag_usage", f"coalesce(tag, '{NO_TAG}')", f"any_value(coalesce(tag, '{NO_TAG}'))", tag_filter,
                    "A request under several tags is in each tag's row: the rows add up to more than the total.",
                    (("shared_requests", "Also under another tag", "count", f"sum({tag_shared})::BIGINT"),)),
        _usage_view("end-users", "End user", "daily_end_user_usage", f"coalesce(end_user, '{NO_END_USER}')",
                    f"any_value(coalesce(end_user, '{NO_END_USER}'))"),
        RangeView("errors", "Error class and code", (("failures", "Failures", "count"),),
                  "SELECT strftime(day, '%Y-%m-%d'), coalesce(error_class, '(unknown)') || ' ' || coalesce(error_code, '—'), "
                  "any_value(coalesce(error_class, '(unknown)') || ' ' || coalesce(error_code, '—')), sum(failures)::BIGINT FROM daily_errors "
                  f"WHERE {_DAYS} GROUP BY 1, 2 ORDER BY 1, 2"),
        RangeView("latency", "Model and stream", (("bucket", "bucket", "percentile"),),
                  "SELECT strftime(day, '%Y-%m-%d'), model || CASE WHEN stream THEN ' · stream' ELSE ' · non-stream' END, "
                  "any_value(model || CASE WHEN stream THEN ' · stream' ELSE ' · non-stream' END), bucket, sum(requests)::BIGINT, "
                  f"sum(duration_ms_sum) FROM daily_latency WHERE {_DAYS} GROUP BY 1, 2, 4 ORDER BY 1, 2, 4",
                  "Percentiles of the summed 5% duration buckets: within 2.5% of the exact value."),
        RangeView("cache", "Model", (("input_tokens", "Input tokens", "count"), ("cached_input_tokens", "Cached", "count"),
                                     ("cache_savings_usd", "Saved (USD)", "money"), ("cache_unpriced_tokens", "Cached tokens without a price", "count"),
                                     ("cache_hit_requests", "Response-cache hits", "count")),
                  "SELECT strftime(day, '%Y-%m-%d'), model, any_value(model), sum(input_tokens)::BIGINT, sum(cached_input_tokens)::BIGINT, "
                  f"{_money('cache_savings_usd')}, "
                  f"sum(cache_unpriced_tokens)::BIGINT, sum(cache_hit_requests)::BIGINT FROM daily_usage WHERE {_DAYS} GROUP BY 1, 2 ORDER BY 1, 2"),
    )


def _billing_views() -> tuple[RangeView, ...]:
    return (
        RangeView("reconciliation", "Model", (("estimated_tokens", "Estimated tokens", "count"), ("billed_tokens", "Billed tokens", "count"),
                                              ("estimated_cost_usd", "Estimated (USD)", "money"), ("billed_cost", "Billed (contract currency)", "amount")),
                  "SELECT strftime(day, '%Y-%m-%d'), model, any_value(model), "
                  "coalesce(sum(estimated_input_tokens + estimated_output_tokens), 0)::BIGINT, "
                  "coalesce(sum(billed_input_tokens + billed_output_tokens), 0)::BIGINT, "
                  f"{_money('estimated_cost_usd')}, {_money('billed_cost')} FROM reconciliation WHERE {_DAYS} GROUP BY 1, 2 ORDER BY 1, 2",
                  "Billing days (IG1_BILLING_TIMEZONE)."),
        RangeView("chargeback", "Team", (("allocated_cost", "Billed share (contract currency)", "amount"),
                                         ("allocated_cost_usd", "Billed share (USD)", "money")),
                  "SELECT strftime(day, '%Y-%m-%d'), team_id, coalesce(any_value(i.team_alias), max(c.team_alias), "
                  f"CASE team_id {_bucket_labels()} END, team_id), {_money('allocated_cost')}, {_money('allocated_cost_usd')} "
                  f"FROM chargeback c LEFT JOIN inventory_teams i USING (team_id) WHERE {_DAYS} GROUP BY 1, 2 ORDER BY 1, 2",
                  "Exact shares over billing days, rounded here once per row; the statement of a range (usage-report export --type chargeback) "
                  "rounds its lines so that they add up to the billed total to the cent."),
        RangeView("quality", "Day", (("records_read", "Records read", "count"), ("rows", "Stored", "count"), ("rejected", "Rejected", "count"),
                                     ("duplicates", "Duplicates", "count"), ("tokens_estimated", "Tokens estimated", "count")),
                  "SELECT strftime(day, '%Y-%m-%d'), strftime(day, '%Y-%m-%d'), strftime(day, '%Y-%m-%d'), records_read, rows, rejected, duplicates, "
                  f"tokens_estimated FROM ingest_days WHERE {_DAYS} ORDER BY 1"),
    )


def write_range_data(conn: duckdb.DuckDBPyConnection, folder: Path, *, hide_user_agent_tags: bool, months: list[str],
                     write: Collection[str] | None = None) -> int:
    """Write `range/<view>.js` for every view, naming `months` (in order), and `range/<view>/<month>.js` for each month of
    `write` (None: all of them; the others are already in `folder`, and written too if not); returns the number of files written."""
    written = 0
    for view in range_views(hide_user_agent_tags) + _billing_views():
        (folder / view.name).mkdir(parents=True, exist_ok=True)
        head = {"view": view.name, "noun": view.noun, "note": view.note, "bucket_ratio": LATENCY_BUCKET_RATIO,
                "measures": [{"column": c, "label": label, "kind": kind} for c, label, kind in view.measures], "months": months}
        (folder / f"{view.name}.js").write_text(f"window.usageRange = {_json(head)};\n", encoding="utf-8")
        written += 1
        for month in months:
            if write is not None and month not in write and (folder / view.name / f"{month}.js").is_file():
                continue
            first, last = month_span(month)
            rows = conn.execute(view.sql, {"start": first, "end": last}).fetchall()
            days = sorted({row[0] for row in rows})
            index = {day: i for i, day in enumerate(days)}
            document = {"view": view.name, "month": month, "days": days, "rows": [[index[day], *values] for day, *values in rows]}
            (folder / view.name / f"{month}.js").write_text(f"window.usageRangeMonth({_json(document)});\n", encoding="utf-8")
            written += 1
    return written


def _json(document: dict) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=float)
