"""Site build speed: the whole site for 60 days of a 60-key, 12-team organisation, then the
rebuild after one new day (only the periods that day touches are rendered again), then a
rebuild with nothing changed (nothing rendered, nothing rewritten).

Sets up with the real pipeline (Dagster runs into a fresh warehouse, IG1 billing from the
local emulator), then times `build_site` alone; prints both times, pages, charts, files
and the output size. Goal on 2 cores: full build under 60 s, one-day update under 15 s, nothing changed under 3 s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

END = dt.date(2026, 11, 22)  # the new day; the first build covers the days before it


def _size_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--requests-per-day", type=int, default=1500)
    parser.add_argument("--work", type=Path, default=Path("bench_data/site"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    work = args.work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    first = END - dt.timedelta(days=args.days)
    master_key = "bench-master-key"
    os.environ["IG1_MASTER_KEY"] = master_key  # the billing resource reads it from the environment (dg.EnvVar)

    import dagster as dg

    from usage_jobs import warehouse
    from usage_jobs.cli import CLI_RUN_CONFIG
    from usage_jobs.definitions import DAILY_JOB, REFRESH_JOB, build_definitions
    from usage_jobs.defs.report.build import build_site, warehouse_stamps
    from usage_jobs.demo.emulator import IG1Emulator
    from usage_jobs.demo.generator import generate
    from usage_jobs.settings import load_settings

    started = time.perf_counter()
    generate(work / "demo", days=args.days + 1, end=END, requests_per_day=args.requests_per_day)
    print(f"generated {args.days + 1} days in {time.perf_counter() - started:.1f} s", flush=True)

    with IG1Emulator.from_file(work / "demo" / "billing" / "ledger.json", master_key, today=END + dt.timedelta(days=1)) as emulator:
        settings = load_settings({"USAGE_START_DATE": first.isoformat(), "USAGE_TIMEZONE": "UTC", "IG1_MASTER_KEY": master_key,
                                  "USAGE_LOGS_DIR": str(work / "demo" / "logs"), "USAGE_WAREHOUSE": str(work / "usage.duckdb"),
                                  "USAGE_SITE_DIR": str(work / "site"), "USAGE_INVENTORY_FILE": str(work / "demo" / "inventory.json"),
                                  "IG1_BASE_URL": emulator.url, "IG1_USD_RATE": str(work / "demo" / "billing" / "usd_per_eur.csv")})
        defs = build_definitions(settings)
        instance = dg.DagsterInstance.ephemeral()

        def materialise(start: dt.date, end: dt.date) -> None:
            result = defs.resolve_job_def(DAILY_JOB).execute_in_process(instance=instance, run_config=CLI_RUN_CONFIG, tags={
                "dagster/asset_partition_range_start": start.isoformat(), "dagster/asset_partition_range_end": end.isoformat()})
            assert result.success

        started = time.perf_counter()
        materialise(first, END - dt.timedelta(days=1))
        assert defs.resolve_job_def(REFRESH_JOB).execute_in_process(instance=instance, run_config=CLI_RUN_CONFIG).success
        print(f"ingested and reconciled {args.days} days in {time.perf_counter() - started:.1f} s", flush=True)

        stamps: list = []

        def timed_build(label: str) -> None:
            with warehouse.session(settings.warehouse, read_only=True) as conn:
                stamps.append(warehouse_stamps(conn))
                if len(stamps) > 1:  # which days' tables the daily run changed: the periods ending on or after them are rendered
                    before, after = stamps[-2], stamps[-1]
                    changed = sorted({(day.isoformat(), table) for day in set(before.by_day) | set(after.by_day)
                                      for table in {t for t, *_ in before.by_day.get(day, [])} | {t for t, *_ in after.by_day.get(day, [])}
                                      if [r for r in before.by_day.get(day, []) if r[0] == table] != [r for r in after.by_day.get(day, []) if r[0] == table]})
                    days = sorted({day for day, _ in changed})
                    print(f"\n  stamps changed: {len(days)} days ({', '.join(days[:3])}{' …' if len(days) > 3 else ''}), tables "
                          f"{', '.join(sorted({table for _, table in changed}))}; inventory {before.global_digest != after.global_digest}, "
                          f"commit {before.rolling_digest != after.rolling_digest}")
                began = time.perf_counter()
                result = build_site(conn, settings.site_dir, timezone="UTC", billing_configured=True)
                seconds = time.perf_counter() - began
            print(f"\n{label}: {seconds:.1f} s")
            print(f"  periods: {result.periods} ({result.rendered_periods} rendered, {result.reused_periods} unchanged and left in place)")
            if result.reused_periods:
                print(f"  rendered again: {', '.join(result.rendered)}")
            print(f"  pages: {result.pages:,}  charts: {result.charts:,}  export files: {result.export_files:,}  "
                  f"output: {_size_mb(settings.site_dir):,.0f} MB in {sum(1 for p in settings.site_dir.rglob('*') if p.is_file()):,} files", flush=True)

        timed_build(f"full build, {args.days} days")
        materialise(END, END)  # the daily run: the new day, its billing and the days IG1 may restate
        timed_build(f"update after one new day ({END})")
        timed_build("rebuild with nothing changed")
    print("\ngoal: full build under 60 s, one-day update under 15 s, nothing changed under 3 s (2 cores)")


if __name__ == "__main__":
    sys.exit(main())
