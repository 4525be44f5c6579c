"""Builds the static report site from the warehouse: the periods whose inputs changed, each published by rename.

Every period (day, ISO week, month, quarter, year, last 7 and last 30 days) gets the views global, teams, keys, models,
tags, end users, errors, latency, cache, with billing estimated vs billed and chargeback, and data quality; and its exports.
Months and the rolling periods also get a page per team used in them and one key page drawing any key used in them from the
period's key-data.js; a day's, week's, quarter's or year's tables link those of the month. A period whose fingerprint (code,
context, navigation and the warehouse's stamps of the days it reads) matches the published one's is left as it is.
"""

from __future__ import annotations

import bisect
import contextlib
import datetime as dt
import functools
import hashlib
import importlib.resources
import json
import multiprocessing
import os
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import duckdb
import jinja2

from usage_jobs import names, worker_processes
from usage_jobs.defs.billing.nowcast import MAX_AGE_DAYS as NOWCAST_HISTORY_DAYS
from usage_jobs.defs.billing.nowcast import UNBILLED_STATUS
from usage_jobs.defs.billing.reconcile import month_span
from usage_jobs.defs.billing.statement import CHARGEBACK_COLUMNS, Statement, StatementError, models_text, statement
from usage_jobs.defs.refreshes import outage_notes
from usage_jobs.defs.report import charts as chart_drawing
from usage_jobs.defs.report.billing_view import RECONCILIATION_COLUMNS, BillingView, billing_view
from usage_jobs.defs.report.exports import DayRows, ExportDays, ExportTable, write_exports
from usage_jobs.defs.report.focus import FOCUS_COLUMNS, FOCUS_MONEY, focus_day_rows, focus_rows, report_day_cells
from usage_jobs.defs.report.insights import CACHE_COLUMNS, END_USER_COLUMNS, ERROR_COLUMNS, LATENCY_COLUMNS, TAG_COLUMNS, Insights, insights
from usage_jobs.defs.report.key_data import PAGE_FILE as KEY_PAGE
from usage_jobs.defs.report.key_data import SCRIPT_FILE as KEY_DATA_FILE
from usage_jobs.defs.report.key_data import key_data
from usage_jobs.defs.report.pdf import PRINT_PAGE, PdfJob, Printer, find_chromium, hanging_line, is_pdf_kind, missing_note, pdf_name, withdraw_link
from usage_jobs.defs.report.periods import Navigation, Period, day_runs, navigation, report_periods
from usage_jobs.defs.report.quality_view import DATA_QUALITY_COLUMNS, QualityView, quality_view
from usage_jobs.defs.report.queries import (
    ANOMALY_COLUMNS,
    DAILY_COLUMNS,
    KEY_COLUMNS,
    KEY_MODEL_DAILY_COLUMNS,
    MODEL_COLUMNS,
    TEAM_COLUMNS,
    TEAM_MODEL_DAILY_COLUMNS,
    KeyModelDays,
    PeriodData,
    TeamModelDays,
    page_name,
    period_data,
)
from usage_jobs.defs.report.range_data import write_range_data
from usage_jobs.defs.report.table_data import DIMENSION_PAGES, dimension_data, keys_data
from usage_jobs.defs.report.table_data import KEYS_SCRIPT as KEYS_DATA_FILE
from usage_jobs.defs.report.table_data import script as data_script

# Templates, stylesheet, script and icon ship inside the package: an installed wheel builds the site.
TEMPLATES = importlib.resources.files("usage_jobs") / "report_templates"
STATIC_FILES = ("style.css", "favicon.svg", "report.js")
MONEY = frozenset({"spend_usd", "savings_usd",
                   "budget_spend_usd", "billed_cost", "billed_cost_usd", "billed_cost_allocated", "estimated_cost_usd", "usd_rate"}) | FOCUS_MONEY
# Written with every decimal they have: the allocated shares (unrounded: money is rounded once, on the chargeback statement), and the
# estimated and billed USD a variance is recomputed from (to 0.01 percentage point on the smallest cell).
EXACT = frozenset({"billed_cost_allocated", "estimated_cost_usd", "billed_cost_usd"})
# The statement: amounts already rounded to the cent, written as such (12.30), and the exact share beside them.
STATEMENT_EXACT = frozenset({"billed_cost", "billed_cost_usd", "exact_cost"})
FINGERPRINT_FILE = ".fingerprint"
# The kinds with a page per team and key; a day's, week's, quarter's or year's tables link the team's or key's page of the month
# holding its last day in the period, at that day's row (keys × every day and week made most of the site's pages; a quarter's and
# a year's, rendered again by every new day, listed every day of the period on each of thousands of pages: a day's cost grew with
# history).
PAGE_KINDS = frozenset({"month", "last-7-days", "last-30-days"})
INSIGHT_VIEWS = [("tags.html", "Tags"), ("end-users.html", "End users"), ("errors.html", "Errors"), ("latency.html", "Latency"), ("cache.html", "Cache")]


def _source_version() -> str:
    """Templates and the package's code: a change to either re-renders every period. The whole package, not the report's
    modules alone: the pages also run the billing statement, allocation, nowcast and budget rules, names' escaping."""
    digest = hashlib.sha256()
    package = Path(names.__file__).parent
    sources = sorted(TEMPLATES.iterdir(), key=lambda item: item.name) + sorted(package.rglob("*.py"))
    for source in sources:
        digest.update(str(source.relative_to(package)).encode() + source.read_bytes())
    return digest.hexdigest()


@dataclass
class SiteContext:
    timezone: str
    generated_at: str
    inventory_note: str | None
    billing_note: str | None
    last_day: str | None
    billing_configured: bool
    billing_timezone: str = "UTC"
    inventory_stale: bool = False  # an earlier snapshot is shown: the last refresh failed
    hide_user_agent_tags: bool = False
    pdf_note: str | None = None  # why the finance periods have no PDF (no Chromium); None: they have one


@dataclass
class BuildResult:
    pages: int
    charts: int
    export_files: int
    periods: int
    rendered_periods: int = 0
    reused_periods: int = 0
    rendered: list[str] = field(default_factory=list)
    pdfs: int = 0
    pdf_notes: list[str] = field(default_factory=list)  # no Chromium, or a period whose PDF failed


@dataclass
class ChartJob:
    draw: str  # name of a function in `charts`
    path: Path
    kwargs: dict


@dataclass
class Rendered:
    pages: int = 0
    exports: int = 0
    charts: int = 0
    pdfs: list[PdfJob] = field(default_factory=list)


CHART_DIGESTS = ".digests.json"


def _digest(value) -> str:
    """What a fingerprint or a chart's digest is: the sha256 of the value as JSON, keys sorted."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _reuse_charts(jobs: list[ChartJob], published: Path | None, version: str) -> list[ChartJob]:
    """Link each chart drawn from the same inputs by the same code into the period's new folder from its `published` one (a period
    rendered again for a key anomaly or its navigation keeps most of its charts, their files untouched); the charts to draw.
    The new folder records every chart's digest."""
    if not jobs:
        return []
    digests = {job.path.name: _digest([version, job.draw, job.kwargs]) for job in jobs}
    folder = jobs[0].path.parent
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CHART_DIGESTS).write_text(json.dumps(digests, sort_keys=True))
    before = json.loads(_read(published / "charts" / CHART_DIGESTS) or "{}") if published else {}
    to_draw = []
    for job in jobs:
        if before.get(job.path.name) == digests[job.path.name]:
            with contextlib.suppress(OSError):  # no published file: drawn
                os.link(published / "charts" / job.path.name, job.path)  # a published file is replaced or removed, never rewritten
                continue
        to_draw.append(job)
    return to_draw


def _when(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")
    return str(value)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("usage_jobs", "report_templates"), autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["usd"] = lambda v: "—" if v is None else f"${Decimal(v):,.2f}"
    env.filters["usd4"] = lambda v: "—" if v is None else f"${Decimal(v):,.4f}"
    env.filters["count"] = lambda v: f"{int(v or 0):,}"
    env.filters["pct"] = lambda v: f"{v:.1%}"
    env.filters["variance"] = lambda v: "—" if v is None else f"{v:+.1f}%"
    env.filters["money"] = lambda v, currency=None: "—" if v is None else f"{Decimal(v):,.2f} {currency or ''}".strip()
    env.filters["money4"] = lambda v: "—" if v is None else f"{Decimal(v):,.4f}"
    env.filters["when"] = _when
    env.filters["day_runs"] = day_runs
    env.filters["name"] = names.name_html  # every name from the logs/inventory: escaped, in <bdi>
    env.filters["name_text"] = names.name_text  # the same in <title>, isolated with FSI … PDI
    env.filters["hanging"] = hanging_line  # a line of a preformatted list on paper
    env.filters["models_text"] = lambda models: models_text((names.name_text(model), pct) for model, pct in models)  # (model, %) pairs
    return env


@functools.cache
def compiled_templates() -> jinja2.Environment:
    """The pages' templates, every one compiled, once a process: the worker server compiles them as it starts (report/
    warm_templates.py), so that the period workers it forks start with them instead of compiling them each (0.12 s a worker)."""
    env = _environment()
    for name in env.list_templates(extensions=["j2"]):
        env.get_template(name)
    return env


def _site_context(conn: duckdb.DuckDBPyConnection, timezone: str, billing_configured: bool, generated_at: dt.datetime,
                  billing_timezone: str) -> SiteContext:
    status = conn.execute("SELECT source, keys, teams, note FROM inventory_status").fetchone()
    inventory_outage, billing_outage = outage_notes(conn)  # a source that could not be refreshed
    if status is None:
        inventory_note = inventory_outage or "The key/team inventory has not been loaded yet: unused keys cannot be listed."
    elif status[0] == "none":
        inventory_note = ("No key/team inventory is configured (USAGE_INVENTORY_FILE, or GATEWAY_BASE_URL + GATEWAY_ADMIN_KEY): "
                          "unused keys cannot be listed.")
    else:
        inventory_note = inventory_outage
    billing_note = billing_outage if billing_configured else (
        "IG1 billing is not configured (IG1_MASTER_KEY): figures are the gateway's estimates, not the invoice.")
    last = conn.execute("SELECT strftime(max(day), '%Y-%m-%d') FROM ingest_days").fetchone()[0]
    return SiteContext(timezone, generated_at.strftime("%Y-%m-%d %H:%M UTC"), inventory_note, billing_note, last, billing_configured, billing_timezone,
                       inventory_stale=bool(inventory_outage and status is not None and status[0] != "none"))


def _iso(value) -> str | None:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if isinstance(value, dt.datetime) else value


def _records(rows) -> list[dict]:
    """The fields of typed rows, as the exports read them (no copy)."""
    return [vars(row) for row in rows]


@dataclass(frozen=True)
class PeriodViews:
    """Everything a period's pages and exports show, read once from the warehouse."""

    period: Period
    data: PeriodData
    billing: BillingView
    quality: QualityView
    charges: Statement | None  # the chargeback statement (billing configured, one contract currency)
    focus: list[dict]
    insights: Insights


def period_views(conn: duckdb.DuckDBPyConnection, period: Period, *, timezone: str, billing_configured: bool,
                 billing_timezone: str = "UTC", hide_user_agent_tags: bool = False) -> PeriodViews:
    """A period's views; the statement and FOCUS rows are over its billing days with billing configured, else over its report
    days with the gateway's estimate."""
    data = period_data(conn, period, pages=period.kind in PAGE_KINDS)
    billing = billing_view(conn, period, with_forecast=period.kind.startswith("last-"))
    if not billing_configured:
        charges, focus = None, focus_rows(report_day_cells(data.team_model_daily, timezone=timezone))
    else:
        try:
            charges = statement(conn, period.start, period.end)
        except StatementError:
            charges = None  # two contract currencies in one period: no statement (the reconciliation shows both)
        focus = focus_day_rows(conn, period, billing_timezone=billing_timezone)
    extra = insights(conn, period, team_names={team.team_id: team.team_alias for team in data.teams},
                     key_aliases={key.key_hash: key.key_alias for key in data.keys}, hide_user_agent_tags=hide_user_agent_tags)
    return PeriodViews(period, data, billing, quality_view(conn, period), charges, focus, extra)


def export_metadata(views: PeriodViews, *, timezone: str, billing_configured: bool, billing_timezone: str = "UTC") -> dict:
    period = views.period
    metadata = {"period": period.slug, "start_date": period.start.isoformat(), "end_date": period.end.isoformat(),
                "timezone": timezone, "currency": "USD", "billed_currency": views.billing.currency,
                "source_days": [d.isoformat() for d in period.days], "missing_days": views.data.missing_days}
    if billing_configured:
        metadata["billing_timezone"] = billing_timezone
    return metadata


def _day_records(cells: TeamModelDays | KeyModelDays, values: Callable[[str], tuple] | None = None) -> DayRows:
    """A period's day cells as export rows, built a day at a time when asked."""
    return DayRows(cells.counts, lambda days: {day: _records(day_cells) for day, day_cells in cells.cells(days).items()}, values)


def export_tables(views: PeriodViews) -> list[ExportTable]:
    """A period's export files, the site's and `usage-report export`'s alike."""
    data, billing, quality, charges = views.data, views.billing, views.quality, views.charges
    keys = [vars(key) | {name: _iso(getattr(key, name)) for name in ("last_request_at", "first_request_at", "created_at", "expires")} for key in data.keys]
    tables = [
        ExportTable("daily", DAILY_COLUMNS, MONEY, _records(data.daily)),
        ExportTable("teams", TEAM_COLUMNS, MONEY, _records(data.teams), EXACT),
        ExportTable("keys", KEY_COLUMNS, MONEY, keys),
        ExportTable("models", MODEL_COLUMNS, MONEY, _records(data.models)),
        # A day's cells are summed over that day's rows alone (queries.py): the same in every period, but a team's alias (its first
        # in the period, a team out of the inventory); a key cell's alias and team are the cell's own.
        ExportTable("team_model_daily", TEAM_MODEL_DAILY_COLUMNS, MONEY, _day_records(data.team_model_daily, data.team_model_daily.names), EXACT,
                    day_column="date", period_columns=("team_alias",)),
        ExportTable("key_model_daily", KEY_MODEL_DAILY_COLUMNS, MONEY, _day_records(data.key_model_daily), day_column="date"),
        ExportTable("reconciliation", RECONCILIATION_COLUMNS, MONEY, _records(billing.reconciliation), EXACT),
        # Ordered by (day, team, model), a day's charge period and cells its own (focus.py); without billing, the team's name (the
        # period's alias) is written in these three columns.
        ExportTable("focus", FOCUS_COLUMNS, MONEY, views.focus, day_column="ChargePeriodStart",
                    period_columns=() if isinstance(views.focus, DayRows) else ("SubAccountName", "ChargeDescription", "Tags")),
        ExportTable("anomalies", ANOMALY_COLUMNS, MONEY, _records(data.anomalies)),
        ExportTable("data_quality", DATA_QUALITY_COLUMNS, MONEY, _records(quality.days)),
        ExportTable("tags", TAG_COLUMNS, MONEY, [vars(row) | {"tag": row.label} for row in views.insights.tags.rows]),
        ExportTable("end_users", END_USER_COLUMNS, MONEY, [vars(row) | {"end_user": row.label} for row in views.insights.end_users.rows]),
        ExportTable("errors", ERROR_COLUMNS, MONEY, _records(views.insights.errors.rows)),
        ExportTable("latency", LATENCY_COLUMNS, MONEY, _records(views.insights.latency.rows)),
        ExportTable("cache", CACHE_COLUMNS, MONEY, _records((views.insights.cache.total, *views.insights.cache.rows))),
    ]
    if charges is not None:
        tables.append(ExportTable("chargeback", CHARGEBACK_COLUMNS, MONEY, _records(charges.lines), STATEMENT_EXACT))
    return tables


def _chart_jobs(folder: Path, period: Period, data: PeriodData, billing: BillingView, extra: Insights,
                show_commit: bool) -> dict[str, tuple[ChartJob, str]]:
    """The charts of a period: name → (job, text alternative). Day periods skip per-day series of one bar."""
    jobs: dict[str, tuple[ChartJob, str]] = {}

    def add(name: str, draw: str, alt: str, **kwargs) -> None:
        jobs[name] = (ChartJob(draw, folder / "charts" / f"{name}.svg", kwargs), alt)

    if period.kind != "day":
        days = [row.date[5:] for row in data.daily]
        # Largest spender first: it gets the palette's first colour and the bottom of the stack.
        spend = {series.model: [float(value) for value in series.daily_spend] for series in data.spend_series}
        add("daily-spend", "stacked_bars", "Daily spend (USD, gateway estimate) by model", labels=days,
            series=spend or {"spend": [0.0] * len(days)}, ylabel="USD", title="Daily spend by model")
        add("daily-tokens", "stacked_bars", "Tokens per day: input and output", labels=days,
            series={"input": [r.input_tokens for r in data.daily], "output": [r.output_tokens for r in data.daily]}, ylabel="tokens", title="Tokens in / out")
        add("daily-requests", "stacked_bars", "Requests per day: successful and failed", labels=days,
            series={"successful": [r.successful_requests for r in data.daily], "failed": [r.failed_requests for r in data.daily]},
            ylabel="requests", title="Requests")
        add("failure-rate", "lines", "Share of requests that failed, per day (%)", labels=days,
            series={"failed %": [100 * r.failed_requests / r.requests if r.requests else None for r in data.daily]}, ylabel="% failed",
            title="Failure rate")
        latency = {(row.date, row.stream): row.p95_ms for row in extra.latency.by_day}
        add("latency-p95", "lines", "95th percentile of the duration of successful requests, per day (ms), streams and non-streams apart", labels=days,
            series={label: [latency.get((d.isoformat(), stream)) for d in period.days] for stream, label in ((False, "non-stream"), (True, "stream"))},
            ylabel="ms", title="Duration, 95th percentile")
    models = [m for m in data.models if m.requests]
    add("models-spend", "horizontal_bars", "Spend by model (USD, gateway estimate)", labels=[m.model for m in models] or ["(none)"],
        values=[float(m.spend_usd or 0) for m in models] or [0.0], xlabel="USD", title="Spend by model")
    tags = [t for t in extra.tags.rows if t.value is not None][:15]
    add("tags-spend", "horizontal_bars", "Spend by request tag (USD, gateway estimate), the 15 largest; a request under several tags counts under each",
        labels=[t.label for t in tags] or ["(none)"], values=[float(t.spend_usd or 0) for t in tags] or [0.0], xlabel="USD", title="Spend by tag")
    teams = [t for t in data.teams if t.requests][:15]
    add("teams-spend", "horizontal_bars", "Spend by team (USD, gateway estimate), the 15 largest",
        labels=[t.team_alias or t.team_id for t in teams] or ["(none)"], values=[float(t.spend_usd or 0) for t in teams] or [0.0], xlabel="USD",
        title="Spend by team")
    if billing.by_model:
        add("variance", "variance_bars", "Variance of billed against estimated tokens and cost, per model", labels=[m.model for m in billing.by_model],
            series={"tokens": [m.token_variance_pct for m in billing.by_model], "cost (USD)": [m.cost_variance_pct for m in billing.by_model]},
            title="Billed against estimated, by model")
    forecast = billing.forecast
    if show_commit and forecast:
        add("commit", "commit_gauge", f"Commit for {forecast.month}: spent, projected month end and the commit", spent=float(forecast.spent_total),
            projected=float(forecast.projected_month_end), commit=float(forecast.commit), currency=billing.commit_currency or "")
    return jobs


@dataclass(frozen=True)
class PeriodJob:
    period: Period
    nav: Navigation
    fingerprint: str


class SiteBuilder:
    def __init__(self, conn: duckdb.DuckDBPyConnection, context: SiteContext):
        self.conn, self.context, self.timezone = conn, context, context.timezone
        self.env = compiled_templates()
        self.version = _source_version()

    @classmethod
    def from_warehouse(cls, conn: duckdb.DuckDBPyConnection, *, timezone: str, billing_configured: bool, generated_at: dt.datetime,
                       billing_timezone: str = "UTC", hide_user_agent_tags: bool = False) -> SiteBuilder:
        context = _site_context(conn, timezone, billing_configured, generated_at, billing_timezone)
        context.hide_user_agent_tags = hide_user_agent_tags
        return cls(conn, context)

    def views(self) -> list[tuple[str, str]]:
        views = [("index.html", "Global"), ("teams.html", "Teams"), ("keys.html", "Keys"), ("models.html", "Models")] + INSIGHT_VIEWS
        billing = [("reconciliation.html", "Estimated vs billed"), ("chargeback.html", "Chargeback")] if self.context.billing_configured else []
        return views + billing + [("quality.html", "Data quality")]

    def _freshness(self, period: Period, data: PeriodData) -> str:
        text = f"logs ingested up to {data.last_ingested}" if data.last_ingested else "no logs ingested for this period"
        if self.context.billing_configured:
            billed = self.conn.execute("SELECT strftime(max(day), '%Y-%m-%d') FROM billing_days WHERE billed AND day <= ?", [period.end]).fetchone()[0]
            text += f"; IG1 billing up to {billed}" if billed else "; no IG1 billing yet"
        return text

    def period_views(self, period: Period) -> PeriodViews:
        return period_views(self.conn, period, timezone=self.timezone, billing_configured=self.context.billing_configured,
                            billing_timezone=self.context.billing_timezone, hide_user_agent_tags=self.context.hide_user_agent_tags)

    def fingerprint(self, stamps: Stamps, period: Period, nav: Navigation, reach: dt.timedelta) -> str:
        """What a period's pages and exports are made of, without reading them: code, site context, navigation, and the stamps of
        the days it reads (a rolling period: of every day, and the commit)."""
        context = {k: v for k, v in vars(self.context).items() if k not in ("generated_at", "last_day")}
        rolling = period.kind.startswith("last-")
        document = {"version": self.version, "context": context, "period": [period.slug, period.start.isoformat(), period.end.isoformat()],
                    "days": period_reads(stamps, period, reach), "global": stamps.global_digest,
                    "rolling": stamps.rolling_digest if rolling else None,
                    "nav": [nav.previous and nav.previous.slug, nav.next and nav.next.slug, [(label, p and p.slug) for label, p in nav.kinds]]}
        return _digest(document)

    def render_period(self, scratch: Path, job: PeriodJob, export_days: ExportDays, published: Path | None) -> Rendered:
        """One period rendered into `scratch`, with its fingerprint and counts (what a period worker does)."""
        views = self.period_views(job.period)
        rendered = self.render(scratch, views, job.nav, self._freshness(job.period, views.data), published=published, export_days=export_days)
        folder = scratch / "periods" / job.period.slug
        (folder / FINGERPRINT_FILE).write_text(job.fingerprint)
        own_pages = rendered.pages - int(job.period.slug == "last-7-days")  # the front page is the site's, not the period's
        (folder / COUNTS_FILE).write_text(json.dumps({"pages": own_pages, "charts": rendered.charts, "exports": rendered.exports}))
        return rendered

    def _write(self, path: Path, template: str, **values) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.env.get_template(template).render(site=self.context, **values), encoding="utf-8")

    def render(self, scratch: Path, views: PeriodViews, nav: Navigation, freshness: str, published: Path | None = None,
               export_days: ExportDays | None = None) -> Rendered:
        """The period's pages, exports and chart jobs in `scratch`; the charts drawn alike in the `published` folder linked from it;
        the exports assembled from the build's `export_days`."""
        period, data, billing, quality, charges = views.period, views.data, views.billing, views.quality, views.charges
        folder = scratch / "periods" / period.slug
        show_commit = period.kind.startswith("last-")
        jobs = _chart_jobs(folder, period, data, billing, views.insights, show_commit)
        metadata = export_metadata(views, timezone=self.timezone, billing_configured=self.context.billing_configured,
                                   billing_timezone=self.context.billing_timezone)
        exports = write_exports(folder / "exports", export_tables(views), metadata, generated_at=self.context.generated_at, days=export_days)
        charts = [job for job, _ in jobs.values()]
        for chart in _reuse_charts(charts, published, self.version):
            getattr(chart_drawing, chart.draw)(chart.path, **chart.kwargs)
        result = Rendered(exports=len(exports) + 1, charts=len(charts))

        def chart_refs(here: str) -> dict:
            return {name: {"src": f"{here}charts/{name}.svg", "alt": alt} for name, (_, alt) in jobs.items()}

        common = dict(period=period, nav=nav, data=data, exports=exports, views=self.views(), freshness=freshness,
                      pdf=pdf_name(period.slug) if is_pdf_kind(period.kind) else None, page_href=_page_links(period, data),
                      export_files={f"{entry['export']}.{entry['format']}": entry["file"] for entry in exports})
        top_level = [("index.html", "global.html.j2"), ("teams.html", "teams.html.j2"), ("keys.html", "keys.html.j2"), ("models.html", "models.html.j2")]
        status_counts = _status_counts(data)
        (folder / KEYS_DATA_FILE).parent.mkdir(parents=True, exist_ok=True)
        (folder / KEYS_DATA_FILE).write_text(data_script("KEYS_DATA", keys_data(period, data.keys, common["page_href"], _when)), encoding="ascii")
        for file, template in top_level:
            self._write(folder / file, template, **common, charts=chart_refs(""), here="", root="../../", view_file=file, status_counts=status_counts,
                        range_view=file.removesuffix(".html"))
        if self.context.billing_configured:
            self._write(folder / "reconciliation.html", "reconciliation.html.j2", **common, billing=billing, charts=chart_refs(""), here="",
                        root="../../", view_file="reconciliation.html", range_view="reconciliation", show_commit=show_commit)
            self._write(folder / "chargeback.html", "chargeback.html.j2", **common, statement=charges, here="", root="../../",
                        view_file="chargeback.html", range_view="chargeback", billing_currency=billing.currency)
        self._write(folder / "quality.html", "quality.html.j2", **common, quality=quality, here="", root="../../", view_file="quality.html",
                    range_view="quality")
        for file, _ in INSIGHT_VIEWS:
            self._write(folder / file, file.replace(".html", ".html.j2"), **common, insights=views.insights, charts=chart_refs(""), here="",
                        root="../../", view_file=file, range_view=file.removesuffix(".html"))
        result.pages += len(top_level) + len(INSIGHT_VIEWS) + 2 * int(self.context.billing_configured) + 1
        for name, view_file, dimension in (("tags", "tags.html", views.insights.tags), ("end-users", "end-users.html", views.insights.end_users)):
            page_file, data_file, data_var, param = DIMENSION_PAGES[name]  # one page drawing any tag (end user) from the period's data
            (folder / data_file).write_text(data_script(data_var, dimension_data(period, dimension)), encoding="ascii")
            self._write(folder / page_file, "dimension.html.j2", **common, dimension=name, data_file=data_file, data_var=data_var, param=param,
                        here="", root="../../", view_file=view_file)
            result.pages += 1
        for team_page in data.team_pages:
            self._write(folder / "teams" / f"{team_page.team.page}.html", "team.html.j2", **common, page=team_page, here="../", root="../../../",
                        view_file="teams.html")
        result.pages += len(data.team_pages)
        if period.kind in PAGE_KINDS:  # one page for every key, drawn in the browser from the period's key data
            (folder / KEY_DATA_FILE).write_text(data_script("KEY_DATA", key_data(data, _when)), encoding="ascii")
            self._write(folder / KEY_PAGE, "key.html.j2", **common, here="", root="../../", view_file="keys.html")
            result.pages += 1
        if is_pdf_kind(period.kind):  # a finance period: its print page, printed to its PDF once every chart is drawn
            self._write(folder / PRINT_PAGE, "print.html.j2", period=period, data=data, exports=exports, freshness=freshness, charts=chart_refs(""),
                        statement=charges, billing_currency=billing.currency, here="", root="../../", pdf=None, page_href=common["page_href"])
            result.pages += 1
            if self.context.pdf_note is None:
                result.pdfs.append(PdfJob(period.slug, folder / PRINT_PAGE, folder / pdf_name(period.slug)))
        if period.slug == "last-7-days":  # the site's front page, with links rebased to the site root
            self._write(scratch / "index.html", "global.html.j2", **common, charts=chart_refs(f"periods/{period.slug}/"), here=f"periods/{period.slug}/",
                        root="", view_file="index.html", range_view="index")
            result.pages += 1
        return result


def _page_links(period: Period, data: PeriodData):
    """`page_href(folder, page, here, root)`: the link to a team's ("teams") or key's ("keys") page from a page of this period.
    A key's page is the period's one key page, the key named in its query (`key.html?k=<page>`). `page_href.day(folder, page)` is
    the day a link opens the page at (None in a month or rolling period) and `page_href.pattern(folder, here, root)` the link with
    "{page}", "{month}" and "{day}" for the page, the day's month and the day, which keys-data.js holds once (table_data.keys_data)."""

    def page_of(folder: str, page: str) -> str:
        return f"{KEY_PAGE}?k={page}" if folder == "keys" else f"{folder}/{page}.html"

    def link(folder: str, page: str, here: str, root: str, month: str | None, day: str | None) -> str:
        return f"{here}{page_of(folder, page)}" if day is None else f"{root}periods/{month}/{page_of(folder, page)}#d-{day}"

    days: dict[tuple[str, str], str] = {}
    fallback = None
    if period.kind not in PAGE_KINDS:
        last = {("teams", team_id): day for team_id, day in data.team_model_daily.last_days().items()}
        last |= {("keys", key_hash): day for key_hash, day in data.key_model_daily.last_days().items()}
        days = {(folder, page_name(identifier)): date for (folder, identifier), date in last.items()}
        fallback = data.last_ingested or period.end.isoformat()

    def day_of(folder: str, page: str) -> str | None:
        return days.get((folder, page), fallback)

    def href(folder: str, page: str, here: str, root: str) -> str:
        day = day_of(folder, page)
        return link(folder, page, here, root, day and day[:7], day)

    href.day = day_of
    href.pattern = lambda folder, here, root: link(folder, "{page}", here, root, "{month}", None if period.kind in PAGE_KINDS else "{day}")
    return href


def _status_counts(data: PeriodData) -> list[str]:
    counts: dict[str, int] = {}
    for key in data.keys:
        counts[key.status] = counts.get(key.status, 0) + 1
    return [f"{n} {status}" for status, n in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


# The state of a period worker process: its builder (a read-only connection of its own) and the day text it formatted.
_RENDERER: dict = {}


def _start_renderer(database: str, context: SiteContext, published_days: list[Path], build: int) -> None:
    from usage_jobs import collector, warehouse

    collector.tune()
    threading.Thread(target=_exit_with, args=(build,), name="exit-with-build", daemon=True).start()
    _RENDERER.update(builder=SiteBuilder(warehouse.connect(Path(database), read_only=True), context), days=ExportDays(published_days))


def _exit_with(build: int) -> None:
    """A period worker whose build's process was killed (SIGKILL, out of memory) would wait on its pool's queue for ever, its
    read-only connection locking every writer out of the warehouse: it exits within a second of that process instead."""
    while True:
        time.sleep(1)
        try:
            os.kill(build, 0)
        except ProcessLookupError:
            os._exit(1)


def _render_in_worker(scratch: Path, job: PeriodJob, published: Path | None) -> Rendered:
    return _RENDERER["builder"].render_period(scratch, job, _RENDERER["days"], published)


def _render_periods(builder: SiteBuilder, scratch: Path, jobs: list[PeriodJob], published_days: list[Path], site_dir: Path | None):
    """Each period rendered, (job, Rendered) as they are done: in worker processes, each with its own read-only connection, when
    the build's connection is a read-only one to a file (a writing connection locks other processes out) and there are two periods
    or more; else here. `site_dir`: the published site whose charts drawn alike are linked (None: a full build draws them all).
    The periods are rendered on every core (up to 4), the longest first: their Python (queries into rows, exports, templates)
    made the build single-threaded."""
    def published(job: PeriodJob) -> Path | None:
        return site_dir / "periods" / job.period.slug if site_dir else None

    database = _read_only_file(builder.conn)
    workers = min(os.cpu_count() or 1, 4, len(jobs))
    if database is None or workers < 2 or multiprocessing.current_process().daemon:  # a daemon process cannot start workers
        export_days = ExportDays(published_days)
        for job in jobs:
            yield job, builder.render_period(scratch, job, export_days, published(job))
        return
    with ProcessPoolExecutor(workers, mp_context=worker_processes.context(), initializer=_start_renderer,
                             initargs=(database, builder.context, published_days, os.getpid())) as pool:
        by_length = sorted(jobs, key=lambda job: -job.period.length)
        futures = {pool.submit(_render_in_worker, scratch, job, published(job)): job for job in by_length}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        finally:
            pool.shutdown(cancel_futures=True)


def _read_only_file(conn: duckdb.DuckDBPyConnection) -> str | None:
    """The database file of a read-only connection; None for a writing one or one in memory."""
    mode, path = conn.execute("SELECT current_setting('access_mode'), "
                              "(SELECT path FROM duckdb_databases() WHERE database_name = current_database())").fetchone()
    return path if mode == "read_only" and path else None


# Each table with a `day` column is digested per day (a count and a sum of row hashes, one pass over each table); a period's
# fingerprint takes, per table, the sums over the days it reads of it (running totals: one lookup per table). `requests` is
# digested on the columns the report reads from it (the other tables are per-day aggregates, digested whole). Any write to any of
# them re-renders exactly the periods that read its day, whoever wrote it: no writer has to remember a stamp.
REQUEST_COLUMNS = "key_hash, start_time, team_id, team_alias, model, total_tokens, spend_usd, unpriced"
# The tables the pages read over the period's own days only (queries.py, insights.py, billing_view.py, quality_view.py, focus.py,
# billing/statement.py read them `WHERE day BETWEEN` its bounds). Every other table is read from its first day: key statuses read
# every request up to the period's end, budgets the spend of their window in `daily_usage`, the freshness line the last billed
# day in `billing_days`; a table not named here counts as read from its first day (a new reader cannot make a page stale).
IN_PERIOD_TABLES = frozenset({"billed_usage", "chargeback", "daily_end_user_usage", "daily_errors", "daily_latency", "daily_tag_usage",
                              "gateway_completeness", "key_anomalies", "rejected_records", "unrecognised_files"})
# Read before the period's own days: the days the KPI deltas count (the span before), and, in a period holding a day IG1 has not
# billed yet, the reconciled days its calibrated estimate learns from (nowcast.py).
SPAN_BEFORE_TABLES = frozenset({"ingest_days"})
NOWCAST_TABLE = "reconciliation"
# The tables without days the pages read: the inventory's columns shown (not the gateway's running spend), its status; the commit
# only on the rolling periods (its forecast). Not `billing_months` (when each invoice month was fetched again: the billing writer's
# own bookkeeping, rewritten by every run; what it fetched lands in the day tables) nor `source_refreshes` (the outage notes are in
# the site's context).
GLOBAL_SOURCES = ("SELECT count(*), sum(hash(team_id, team_alias, max_budget, budget_duration)::HUGEINT) FROM inventory_teams",
                  "SELECT count(*), sum(hash(key_hash, key_alias, team_id, user_id, blocked, expires, created_at, max_budget, budget_duration)"
                  "::HUGEINT) FROM inventory_keys",
                  "SELECT count(*), sum(hash(t)::HUGEINT) FROM inventory_status t")
ROLLING_SOURCES = ("SELECT count(*), sum(hash(t)::HUGEINT) FROM commit_status t",)
COUNTS_FILE = ".counts.json"


@dataclass
class TableStamps:
    """One table's days and its running totals of rows and row hashes up to each of them."""

    days: list[dt.date]
    running: list[tuple[int, int]]

    def over(self, first: dt.date, last: dt.date) -> tuple[int, int]:
        """Rows and hash sum of the days first..last."""
        high, low = bisect.bisect_right(self.days, last) - 1, bisect.bisect_left(self.days, first) - 1
        (rows, total), (rows_before, total_before) = (self.running[high] if high >= 0 else (0, 0)), (self.running[low] if low >= 0 else (0, 0))
        return rows - rows_before, total - total_before


@dataclass
class Stamps:
    """The warehouse's change stamps: per table and day, and of the global tables."""

    tables: dict[str, TableStamps]
    by_day: dict[dt.date, list]  # each day's (table, rows, hash sum): what changed between two builds
    unbilled_days: list[dt.date]  # reconciled days IG1 has not billed yet
    global_digest: str
    rolling_digest: str

    def over(self, first: dt.date, last: dt.date, first_by_table: dict[str, dt.date] | None = None) -> dict[str, tuple[int, int]]:
        """Every table's rows and hash sum from its first day read (`first_by_table`, else `first`) to `last`."""
        return {table: stamps.over((first_by_table or {}).get(table, first), last) for table, stamps in self.tables.items()}


def warehouse_stamps(conn: duckdb.DuckDBPyConnection) -> Stamps:
    tables = [row[0] for row in conn.execute(
        "SELECT table_name FROM information_schema.columns c JOIN information_schema.tables t USING (table_schema, table_name) "
        "WHERE c.table_schema = 'main' AND c.column_name = 'day' AND c.data_type = 'DATE' AND t.table_type = 'BASE TABLE' ORDER BY table_name").fetchall()]
    parts = [f"SELECT '{table}' AS source, day, count(*) AS n, sum(hash({REQUEST_COLUMNS if table == 'requests' else 't'})::HUGEINT) AS h "
             f"FROM {table} t WHERE day IS NOT NULL GROUP BY day" for table in tables]
    by_day: dict[dt.date, list] = {}
    by_table = {table: TableStamps([], []) for table in tables}  # an empty table too: its first row changes only the periods reading it
    if parts:
        for source, day, n, h in conn.execute(" UNION ALL ".join(parts) + " ORDER BY day, source").fetchall():
            by_day.setdefault(day, []).append((source, n, str(h)))
            stamps = by_table[source]
            rows, total = stamps.running[-1] if stamps.running else (0, 0)
            stamps.days.append(day)
            stamps.running.append((rows + n, total + int(h)))
    unbilled = [row[0] for row in conn.execute(f"SELECT DISTINCT day FROM {NOWCAST_TABLE} WHERE status = ? ORDER BY day", [UNBILLED_STATUS]).fetchall()] \
        if NOWCAST_TABLE in by_table else []

    def digest(queries) -> str:
        return _digest([[str(v) for v in conn.execute(query).fetchone()] for query in queries])

    return Stamps(by_table, by_day, unbilled, digest(GLOBAL_SOURCES), digest(ROLLING_SOURCES))


def period_reads(stamps: Stamps, period: Period, reach: dt.timedelta) -> dict[str, tuple[int, int]]:
    """The stamps of the days a period's pages and exports read, per table (a rolling period: every day, for its forecast)."""
    if period.kind.startswith("last-"):
        return stamps.over(dt.date.min, dt.date.max)
    first, last = period.start - reach, period.end + reach
    first_by_table = {table: first for table in IN_PERIOD_TABLES} | {table: period.previous_span()[0] - reach for table in SPAN_BEFORE_TABLES}
    holds_unbilled = bisect.bisect_right(stamps.unbilled_days, last) > bisect.bisect_left(stamps.unbilled_days, first)
    first_by_table[NOWCAST_TABLE] = first - dt.timedelta(days=NOWCAST_HISTORY_DAYS) if holds_unbilled else first
    return stamps.over(dt.date.min, last, first_by_table)


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def build_site(conn: duckdb.DuckDBPyConnection, site_dir: Path, *, timezone: str, billing_configured: bool, billing_timezone: str = "UTC",
               generated_at: dt.datetime | None = None, progress=None, full: bool = False, hide_user_agent_tags: bool = False,
               chromium: Path | str | None = None) -> BuildResult:
    """Render the periods whose inputs changed into a scratch folder beside the site, then publish each by rename.

    A period whose fingerprint (code, site context, navigation and the warehouse's stamps of the days it reads) matches the
    published one's is left in place, untouched (unless `full`). Publishing renames each rendered period's folder over the
    published one, then the picker's data, the static files and the front page; a failure before that leaves every published
    period as it was. The finance periods are printed to PDF with `chromium` (REPORT_CHROMIUM; None: found on PATH); without
    one, or should one fail, the build goes on and says so. `progress(done, total, slug)` is called as each period to render is done
    (not for the unchanged ones: a Dagster log event each was 0.25 s of a rebuild with nothing changed)."""
    builder = SiteBuilder.from_warehouse(conn, timezone=timezone, billing_configured=billing_configured,
                          generated_at=generated_at or dt.datetime.now(dt.UTC), billing_timezone=billing_timezone,
                          hide_user_agent_tags=hide_user_agent_tags)
    printer = find_chromium(chromium)
    builder.context.pdf_note = None if printer else missing_note(chromium)  # before any fingerprint: the pages say it
    days = [row[0] for row in conn.execute("SELECT day FROM ingest_days ORDER BY day").fetchall()]
    periods = report_periods(days)
    stamps = warehouse_stamps(conn)
    # A report day in another zone than UTC reads UTC-dated rows (billing days, the gateway's totals) of the day after too.
    reach = dt.timedelta(days=0 if timezone == "UTC" and (billing_timezone == "UTC" or not billing_configured) else 1)
    with _scratch_beside(site_dir) as scratch:
        (scratch / ".gitkeep").touch()
        for name in STATIC_FILES:
            (scratch / name).write_bytes((TEMPLATES / name).read_bytes())
        result = BuildResult(pages=0, charts=0, export_files=0, periods=len(periods))
        if not periods:
            builder._write(scratch / "index.html", "empty.html.j2", root="")
            result.pages = 1
        navs = navigation(periods) if periods else {}
        fingerprints = {period.slug: builder.fingerprint(stamps, period, navs[period.slug], reach) for period in periods}
        current = {period.slug for period in periods if not full and _read(site_dir / "periods" / period.slug / FINGERPRINT_FILE) == fingerprints[period.slug]}
        for period in periods:
            if period.slug in current:
                published = site_dir / "periods" / period.slug
                try:
                    known = json.loads((published / COUNTS_FILE).read_text())
                except (OSError, ValueError):
                    known = {"pages": sum(1 for _ in published.rglob("*.html")), "charts": sum(1 for _ in published.glob("charts/*.svg")),
                             "exports": sum(1 for _ in published.glob("exports/*"))}
                result.reused_periods += 1
                result.pages += known["pages"]
                result.charts += known["charts"]
                result.export_files += known["exports"]
        # Each day's export rows formatted once for every period holding it; a day period left as published gives its own files.
        published_days = [site_dir / "periods" / period.slug / "exports" for period in periods if period.kind == "day" and period.slug in current]
        to_render = [PeriodJob(period, navs[period.slug], fingerprints[period.slug]) for period in periods if period.slug not in current]
        by_slug: dict[str, Rendered] = {}
        done = 0
        range_plan = _range_plan(builder, stamps, site_dir / "range", hide_user_agent_tags, timezone, full)
        with contextlib.ExitStack() as stack:
            # A browser started only for a build that prints: a rebuild with nothing changed starts none.
            printing = stack.enter_context(Printer(printer)) if printer and any(is_pdf_kind(job.period.kind) for job in to_render) else None
            # The range picker's data is written beside the periods, on its own cursor: at the end it kept one core idle.
            range_data = stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="range")).submit(
                _write_range, conn.cursor(), scratch / "range", site_dir / "range", range_plan, hide_user_agent_tags) if range_plan else None
            for job, rendered in _render_periods(builder, scratch, to_render, published_days, None if full else site_dir):
                by_slug[job.period.slug] = rendered
                if printing:  # its print page complete: printed while the others render
                    for pdf_job in rendered.pdfs:
                        printing.submit(pdf_job)
                done += 1
                if progress:
                    progress(done, len(to_render), job.period.slug)
            result.rendered = [job.period.slug for job in to_render]
            for rendered in map(by_slug.__getitem__, result.rendered):  # in the periods' order, however the workers finished
                result.rendered_periods += 1
                result.pages += rendered.pages
                result.charts += rendered.charts
                result.export_files += rendered.exports
            if "last-7-days" not in result.rendered and (site_dir / "index.html").is_file() and periods:
                result.pages += 1  # the published front page stays
            if range_data:
                range_data.result()
            failures = sorted(printing.failures(), key=lambda failure: result.rendered.index(failure.slug)) if printing else []
        if printer is None and any(is_pdf_kind(period.kind) for period in periods):
            result.pdf_notes.append(builder.context.pdf_note)
        for failure in failures:
            withdraw_link(scratch / "periods" / failure.slug, str(failure))
            (scratch / "periods" / failure.slug / FINGERPRINT_FILE).unlink()  # rendered and printed again by the next build
            result.pdf_notes.append(str(failure))
        if full or not (site_dir / "periods").is_dir():
            result.pdfs = sum(1 for _ in scratch.glob(f"periods/*/{pdf_name('*')}"))
            _swap(scratch, site_dir)  # a first (or full) build: the whole site at once
        else:
            _publish(scratch, site_dir, rendered=result.rendered, keep={period.slug for period in periods}, new_range=range_plan is not None)
            result.pdfs = sum(1 for _ in site_dir.glob(f"periods/*/{pdf_name('*')}"))
        return result


@dataclass(frozen=True)
class RangePlan:
    """The range picker's data to write: its months and their fingerprints, and the months whose scripts change."""

    fingerprints: dict  # {"head": …, "months": {month: …}}
    months: list[str]
    changed: list[str]


def _range_plan(builder: SiteBuilder, stamps: Stamps, published: Path, hide_user_agent_tags: bool, timezone: str, full: bool) -> RangePlan | None:
    """What of the range picker's data to write again (None: nothing). A month's scripts change with the stamps of its days
    and the names of teams (inventory), so a new day writes its month's again, not every month's."""
    months = sorted({day.strftime("%Y-%m") for day in stamps.by_day})
    head = [builder.version, hide_user_agent_tags, timezone]
    fingerprints = {"head": _digest([*head, months]), "months": {
        month: _digest([*head, stamps.over(*month_span(month)), stamps.global_digest]) for month in months}}
    try:
        recorded = {} if full else json.loads(_read(published / FINGERPRINT_FILE) or "{}")
    except ValueError:
        recorded = {}
    if recorded == fingerprints:
        return None
    known = recorded.get("months", {}) if isinstance(recorded, dict) else {}
    return RangePlan(fingerprints, months, [month for month in months if known.get(month) != fingerprints["months"][month]])


def _write_range(conn: duckdb.DuckDBPyConnection, folder: Path, published: Path, plan: RangePlan, hide_user_agent_tags: bool) -> None:
    """The range picker's data in `folder`: the published scripts of the unchanged months linked (no copy: same file system),
    the others written (an unchanged month's script missing too)."""
    kept = set(plan.months) - set(plan.changed)
    for view_folder in published.iterdir() if published.is_dir() else ():
        for script in view_folder.glob("*.js") if view_folder.is_dir() else ():
            if script.stem in kept:
                (folder / view_folder.name).mkdir(parents=True, exist_ok=True)
                os.link(script, folder / view_folder.name / script.name)  # a published file is replaced or removed, never rewritten
    write_range_data(conn, folder, hide_user_agent_tags=hide_user_agent_tags, months=plan.months, write=plan.changed)
    (folder / FINGERPRINT_FILE).write_text(json.dumps(plan.fingerprints))


@contextlib.contextmanager
def _scratch_beside(site_dir: Path):
    """An empty folder beside the site to build in; removed should the build fail or be stopped (a build stopped by SIGTERM left
    what it had rendered there, up to a whole site, until the next build)."""
    scratch = site_dir.with_name(site_dir.name + ".building")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise


def _publish(scratch: Path, site_dir: Path, *, rendered: list[str], keep: set[str], new_range: bool) -> None:
    """Each rendered period renamed over its published folder (the old one moved aside first, then removed), periods no longer
    in the site removed, then the picker's data, the static files and the front page: a reader sees a period whole, old or new."""
    trash = site_dir.with_name(site_dir.name + ".previous")
    shutil.rmtree(trash, ignore_errors=True)
    (trash / "periods").mkdir(parents=True)
    periods = site_dir / "periods"
    for slug in rendered:
        target = periods / slug
        if target.exists():
            target.rename(trash / "periods" / slug)
        (scratch / "periods" / slug).rename(target)
    for folder in list(periods.iterdir()):
        if folder.name not in keep:
            folder.rename(trash / "periods" / folder.name)
    if new_range:
        if (site_dir / "range").exists():
            (site_dir / "range").rename(trash / "range")
        (scratch / "range").rename(site_dir / "range")
    for item in scratch.iterdir():  # static files and the front page (if rendered): each replaced by one rename
        if item.is_file():
            os.replace(item, site_dir / item.name)
    shutil.rmtree(trash, ignore_errors=True)
    shutil.rmtree(scratch, ignore_errors=True)


def _swap(built: Path, site_dir: Path) -> None:
    previous = site_dir.with_name(site_dir.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    if site_dir.exists():
        site_dir.rename(previous)
    built.rename(site_dir)
    shutil.rmtree(previous, ignore_errors=True)
