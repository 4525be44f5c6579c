"""A new day's cost against the length of history: the periods that grow with it (the year, the quarter), rendered from
warehouses holding the same traffic over a short and a long history.

Takes a warehouse (by default the 3,000-key one `bench/scale.py --orgs 3000` leaves), copies it, and lengthens the copy's history
by repeating its days earlier: each day table's rows (and the requests, their times shifted alike) again `span`, 2 × `span`, …
days before, up to `--times` copies (a synthetic history: the same days over again, enough to weigh what grows with it).
Then, in a fresh process for each history, for each period of `--periods`: its data and views (queries, statement, FOCUS
rows, insights), its pages, charts and exports rendered once (every day formatted and compressed: a full build) and again
(each day's text at hand, as a new day's build has them from the day periods: what the daily update pays). Prints
CPU seconds beside those of the original history and the ratio.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import duckdb

WAREHOUSE = Path("bench_data/scale/run-3000k/usage.duckdb")
SHIFTED = ("start_time", "end_time")  # timestamps moved with their day
WORKER = """
import datetime as dt, json, shutil, sys, time
from pathlib import Path
from usage_jobs import collector, warehouse
from usage_jobs.defs.report import build
from usage_jobs.defs.report.exports import ExportDays
from usage_jobs.defs.report.periods import navigation, report_periods
collector.tune()
conn = warehouse.connect(Path(sys.argv[1]), read_only=True)
builder = build.SiteBuilder.from_warehouse(conn, timezone="UTC", billing_configured=True, generated_at=dt.datetime.now(dt.UTC))
builder.context.pdf_note = "not printed"  # the print page is rendered, the PDF is not this benchmark's
days = [row[0] for row in conn.execute("SELECT day FROM ingest_days ORDER BY day").fetchall()]
periods = {period.slug: period for period in report_periods(days)}
navs = navigation(list(periods.values()))
figures = {"days": len(days)}
for slug in sys.argv[2].split(","):
    period = periods[slug]
    began = time.process_time(); views = builder.period_views(period); data = time.process_time() - began
    texts, scratch = ExportDays(), Path(sys.argv[3]) / slug
    began = time.process_time(); builder.render(scratch, views, navs[slug], "", None, texts); first = time.process_time() - began
    shutil.rmtree(scratch)
    began = time.process_time(); builder.render(scratch, views, navs[slug], "", None, texts); again = time.process_time() - began
    figures[slug] = {"data": data, "render_full": first, "render_daily": again, "days": len([d for d in days if period.start <= d <= period.end])}
print(json.dumps(figures))
"""


def lengthen(source: Path, target: Path, times: int) -> None:
    """`target`: `source` with its days repeated `times` more times before them."""
    shutil.copy(source, target)
    conn = duckdb.connect(str(target))
    first, last = conn.execute("SELECT min(day), max(day) FROM ingest_days").fetchone()
    span = (last - first).days + 1
    tables = [row[0] for row in conn.execute(
        "SELECT table_name FROM information_schema.columns WHERE table_schema = 'main' AND column_name = 'day' AND data_type = 'DATE'").fetchall()]
    for table in tables:
        columns = conn.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'main' AND table_name = ? "
                               "ORDER BY ordinal_position", [table]).fetchall()
        for copy in range(1, times + 1):
            shift = span * copy
            values = ", ".join(f"CAST({name} - INTERVAL {shift} DAY AS DATE)" if kind == "DATE" else
                               f"{name} - INTERVAL {shift} DAY" if name in SHIFTED else name for name, kind in columns)
            conn.execute(f"INSERT INTO {table} SELECT {values} FROM {table} WHERE day BETWEEN ? AND ?", [first, last])
    conn.close()


def measure(database: Path, periods: str, work: Path) -> dict:
    output = subprocess.run([sys.executable, "-c", WORKER, str(database), periods, str(work)], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", type=Path, default=WAREHOUSE, help="a warehouse with billing (default: bench/scale.py's 3,000-key one)")
    parser.add_argument("--times", type=int, default=4, help="copies of its days added before them (4: 5 times the history)")
    parser.add_argument("--periods", default="2026,2026-11", help="the periods to render, comma-separated")
    args = parser.parse_args()
    if not args.warehouse.is_file():
        raise SystemExit(f"{args.warehouse} not found: run `python bench/scale.py --orgs 3000` first, or give --warehouse")
    with tempfile.TemporaryDirectory(prefix="bench-history-") as folder:
        work = Path(folder)
        short, long = work / "short.duckdb", work / "long.duckdb"
        shutil.copy(args.warehouse, short)
        lengthen(args.warehouse, long, args.times)
        baseline, now = measure(short, args.periods, work / "short-site"), measure(long, args.periods, work / "long-site")
    print(f"bench/history.py: {args.warehouse}, {baseline['days']} days of history against {now['days']} (the same days repeated)")
    print("| period | history | days in it | data + views | pages, charts + exports, all days formatted | the same, day texts at hand |")
    print("|---|---|---|---|---|---|")
    for slug in args.periods.split(","):
        for label, figures in ((f"{baseline['days']} days", baseline), (f"{now['days']} days", now)):
            f = figures[slug]
            print(f"| {slug} | {label} | {f['days']} | {f['data']:.2f} CPU-s | {f['render_full']:.2f} CPU-s | {f['render_daily']:.2f} CPU-s |")
        b, n = baseline[slug], now[slug]
        print(f"| {slug} | ratio | {n['days'] / b['days']:.1f}x | {n['data'] / b['data']:.2f}x | {n['render_full'] / b['render_full']:.2f}x | "
              f"{n['render_daily'] / b['render_daily']:.2f}x |")
    print("A new day re-renders the year and the quarter holding it: their data and their pages with the day texts at hand are what the "
          "daily update pays for them; flat in history would be a ratio of 1.")


if __name__ == "__main__":
    main()
