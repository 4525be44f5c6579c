"""Builds the static report site from the warehouse, into a scratch folder swapped in at the end."""

from __future__ import annotations

import datetime as dt
import shutil
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import duckdb
import jinja2

from usage_jobs.defs.report import charts
from usage_jobs.defs.report.exports import ExportTable, write_exports
from usage_jobs.defs.report.periods import Period, report_periods
from usage_jobs.defs.report.billing_view import RECONCILIATION_COLUMNS, BillingView, billing_view
from usage_jobs.defs.report.queries import DAILY_COLUMNS, MODEL_COLUMNS, TEAM_COLUMNS, PeriodData, period_data

TEMPLATES = Path(__file__).resolve().parents[3] / "report_templates"
MONEY = frozenset({"spend_usd", "billed_cost", "billed_cost_usd", "billed_cost_allocated", "estimated_cost_usd", "usd_rate"})
# The reconciliation page is published for these periods (every period comes with the full site).
RECONCILIATION_PAGES = frozenset({"last-7-days"})


@dataclass
class SiteContext:
    timezone: str
    generated_at: str
    inventory_note: str | None
    billing_note: str | None
    last_day: str | None
    billing_configured: bool


@dataclass
class BuildResult:
    pages: int
    charts: int
    export_files: int
    periods: int


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["usd"] = lambda v: "—" if v is None else f"${Decimal(v):,.2f}"
    env.filters["usd4"] = lambda v: "—" if v is None else f"${Decimal(v):,.4f}"
    env.filters["count"] = lambda v: f"{int(v or 0):,}"
    env.filters["pct"] = lambda v: f"{v:.1%}"
    env.filters["variance"] = lambda v: "—" if v is None else f"{v:+.1f}%"
    env.filters["money"] = lambda v, currency=None: "—" if v is None else f"{Decimal(v):,.2f} {currency or ''}".strip()
    env.filters["money4"] = lambda v: "—" if v is None else f"{Decimal(v):,.4f}"
    return env


def _site_context(conn: duckdb.DuckDBPyConnection, timezone: str, billing_configured: bool, generated_at: dt.datetime) -> SiteContext:
    status = conn.execute("SELECT source, keys, teams, note FROM inventory_status").fetchone()
    if status is None:
        inventory_note = "The key/team inventory has not been loaded yet: unused keys cannot be listed."
    elif status[0] == "none":
        inventory_note = "No key/team inventory is configured (USAGE_INVENTORY_FILE, or GATEWAY_BASE_URL + GATEWAY_ADMIN_KEY): unused keys cannot be listed."
    else:
        inventory_note = None
    billing_note = None if billing_configured else "IG1 billing is not configured (IG1_MASTER_KEY): figures are the gateway's estimates, not the invoice."
    last = conn.execute("SELECT strftime(max(day), '%Y-%m-%d') FROM ingest_days").fetchone()[0]
    return SiteContext(timezone, generated_at.strftime("%Y-%m-%d %H:%M UTC"), inventory_note, billing_note, last, billing_configured)


def _charts(folder: Path, data: PeriodData) -> list[dict]:
    days = [row["date"][5:] for row in data.daily]
    # Largest spender first, so it gets the palette's first colour and the bottom of the stack.
    ranked = sorted(data.spend_by_model_day.items(), key=lambda item: (-sum(item[1].values()), item[0]))
    spend_series = {model: [float(values.get(row["date"], 0)) for row in data.daily] for model, values in ranked}
    specs = [
        ("daily-spend.png", "Daily spend (USD, gateway estimate) by model", lambda p: charts.stacked_bars(
            p, days, spend_series or {"spend": [0.0] * len(days)}, ylabel="USD", title="Daily spend by model")),
        ("daily-tokens.png", "Tokens per day: input and output", lambda p: charts.stacked_bars(
            p, days, {"input": [r["input_tokens"] for r in data.daily], "output": [r["output_tokens"] for r in data.daily]}, ylabel="tokens", title="Tokens in / out")),
        ("daily-requests.png", "Requests per day: successful and failed", lambda p: charts.stacked_bars(
            p, days, {"successful": [r["successful_requests"] for r in data.daily], "failed": [r["failed_requests"] for r in data.daily]},
            ylabel="requests", title="Requests")),
        ("models-spend.png", "Spend by model (USD)", lambda p: charts.horizontal_bars(
            p, [m["model"] for m in data.models] or ["(none)"], [float(m["spend_usd"] or 0) for m in data.models] or [0.0], xlabel="USD", title="Spend by model")),
    ]
    made = []
    for name, alt, draw in specs:
        draw(folder / "charts" / name)
        made.append({"file": f"charts/{name}", "alt": alt})
    return made


def _export_tables(data: PeriodData, billing: BillingView) -> list[ExportTable]:
    return [ExportTable("daily", DAILY_COLUMNS, MONEY, data.daily), ExportTable("teams", TEAM_COLUMNS, MONEY, data.teams),
            ExportTable("models", MODEL_COLUMNS, MONEY, data.models),
            ExportTable("reconciliation", RECONCILIATION_COLUMNS, MONEY, billing.reconciliation)]


def _reconciliation_charts(folder: Path, billing: BillingView) -> list[dict]:
    made = []
    if billing.by_model:
        charts.variance_bars(folder / "charts" / "variance.png", [m["model"] for m in billing.by_model],
                             {"tokens": [m["token_variance_pct"] for m in billing.by_model], "cost (USD)": [m["cost_variance_pct"] for m in billing.by_model]},
                             title="Billed against estimated, by model")
        made.append({"file": "charts/variance.png", "alt": "Variance of billed against estimated tokens and cost, per model"})
    forecast = billing.forecast
    if forecast:
        charts.commit_gauge(folder / "charts" / "commit.png", spent=float(forecast.spent), projected=float(forecast.projected_month_end),
                            commit=float(forecast.commit), currency=billing.commit_currency or "")
        made.append({"file": "charts/commit.png", "alt": f"Commit for {forecast.month}: spent, projected month end and the commit"})
    return made


def _render_period(env: jinja2.Environment, conn: duckdb.DuckDBPyConnection, site: Path, period: Period, periods: list[Period],
                   data: PeriodData, context: SiteContext) -> tuple[int, int, int]:
    folder = site / "periods" / period.slug
    chart_list = _charts(folder, data)
    metadata = {"period": period.slug, "start_date": period.start.isoformat(), "end_date": period.end.isoformat(),
                "timezone": context.timezone, "currency": "USD", "source_days": [d.isoformat() for d in period.days],
                "missing_days": data.missing_days}
    reconciliation_page = period.slug in RECONCILIATION_PAGES and context.billing_configured
    billing = billing_view(conn, period, with_forecast=reconciliation_page)
    metadata["billed_currency"] = billing.currency
    exports = write_exports(folder / "exports", _export_tables(data, billing), metadata)
    template = env.get_template("global.html.j2")
    # The site's front page is the last-7-days page, with links rebased to the site root.
    targets = [(folder / "index.html", "", "../../")]
    if period.slug == "last-7-days":
        targets.append((site / "index.html", f"periods/{period.slug}/", ""))
    for page, here, root in targets:
        page.write_text(template.render(period=period, periods=periods, data=data, charts=chart_list, exports=exports, site=context,
                                        here=here, root=root, reconciliation_page=reconciliation_page), encoding="utf-8")
    pages = len(targets)
    if reconciliation_page:
        billing_charts = _reconciliation_charts(folder, billing)
        chart_list += billing_charts
        (folder / "reconciliation.html").write_text(env.get_template("reconciliation.html.j2").render(
            period=period, periods=periods, billing=billing, charts=billing_charts, exports=exports, site=context, here="", root="../../"),
            encoding="utf-8")
        pages += 1
    return pages, len(chart_list), len(exports) + 1  # + the manifest


def build_site(conn: duckdb.DuckDBPyConnection, site_dir: Path, *, timezone: str, billing_configured: bool,
               generated_at: dt.datetime | None = None, progress=None) -> BuildResult:
    """Render every period into a scratch folder, then swap it in; a failure leaves the old site."""
    generated_at = generated_at or dt.datetime.now(dt.UTC)
    env = _environment()
    days = [row[0] for row in conn.execute("SELECT day FROM ingest_days ORDER BY day").fetchall()]
    periods = report_periods(days)
    context = _site_context(conn, timezone, billing_configured, generated_at)
    scratch = site_dir.with_name(site_dir.name + ".building")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    (scratch / ".gitkeep").touch()
    shutil.copy(TEMPLATES / "style.css", scratch / "style.css")
    pages = chart_count = export_count = 0
    if not periods:
        (scratch / "index.html").write_text(env.get_template("empty.html.j2").render(site=context, root=""), encoding="utf-8")
        pages = 1
    for index, period in enumerate(periods):
        made_pages, made_charts, made_exports = _render_period(env, conn, scratch, period, periods, period_data(conn, period), context)
        pages += made_pages
        chart_count += made_charts
        export_count += made_exports
        if progress:
            progress(index + 1, len(periods), period.slug)
    _swap(scratch, site_dir)
    return BuildResult(pages=pages, charts=chart_count, export_files=export_count, periods=len(periods))


def _swap(built: Path, site_dir: Path) -> None:
    previous = site_dir.with_name(site_dir.name + ".previous")
    shutil.rmtree(previous, ignore_errors=True)
    if site_dir.exists():
        site_dir.rename(previous)
    built.rename(site_dir)
    shutil.rmtree(previous, ignore_errors=True)
