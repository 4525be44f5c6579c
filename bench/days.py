"""Days in parallel, one writer (issue 14, item 4): a range of days ingested by `usage-report run --no-site` against
a run per day, on the same generated data, in turn, each on a fresh warehouse and Dagster instance.

* range: `usage-report run --start S --end E --no-site`, one run (a single-run backfill): worker processes read and
  validate the days ahead into Parquet files, the run's one connection stores them, then aggregates, completeness and
  key anomalies over the range;
* baseline: the same command's per-day path, `run_days` of one day at a time in one session, which is how every range
  ran before: a Dagster run per day, each day read, validated and stored in turn.

Prints each one's seconds, peak RSS (largest single process), each day's seconds (first, median, last: does a day
cost more as the history grows?) and the ratio. Data are the scale benchmark's (`bench/scale.py`'s generator and
folder, reused when present). A quick run: `--days 6 --requests-per-day 2000`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from scale import END, TEAMS, _data  # noqa: E402  (the scale benchmark's organisations and their generated logs)

PER_DAY = """
import datetime as dt, os, sys
from usage_jobs import cli
first, last = dt.date.fromisoformat(sys.argv[1]), dt.date.fromisoformat(sys.argv[2])
with cli.Session(os.environ, "bench/days.py baseline") as session:
    for offset in range((last - first).days + 1):
        cli.run_days(session, first + dt.timedelta(days=offset), first + dt.timedelta(days=offset))
"""
DAY_LINE = re.compile(r"^\[\s*\d+/\d+\] (\d{4}-\d{2}-\d{2}) .*\(([\d.]+) s\)")


def _timed(command: list[str], env: dict, log: Path) -> tuple[float, float, dict[str, float]]:
    """Seconds, peak RSS (MB) and each day's seconds (from its progress line) of one command."""
    with open(log, "w", encoding="utf-8") as out:
        began = time.perf_counter()
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - began
    text = log.read_text(encoding="utf-8")
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed; see {log}\n{text[-3000:]}")
    days = {m.group(1): float(m.group(2)) for line in text.splitlines() if (m := DAY_LINE.match(line))}
    return seconds, usage.ru_maxrss / 1024, days


def _run(mode: str, data: Path, work: Path, first: dt.date, last: dt.date) -> tuple[float, float, dict[str, float]]:
    folder = work / f"days-{mode}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = {**os.environ, "USAGE_START_DATE": first.isoformat(), "USAGE_TIMEZONE": "UTC", "USAGE_LOGS_DIR": str(data / "logs"),
           "USAGE_WAREHOUSE": str(folder / "usage.duckdb"), "USAGE_SITE_DIR": str(folder / "site"), "USAGE_INVENTORY_FILE": str(data / "inventory.json"),
           "DAGSTER_HOME": str(folder / "dagster_home"), "USAGE_LANDING_DIR": str(folder / "landing")}
    for name in ("IG1_MASTER_KEY", "GATEWAY_BASE_URL", "GATEWAY_ADMIN_KEY"):
        env.pop(name, None)  # gateway logs only: the billing run is the same in both
    if mode == "range":
        command = [str(Path(sys.executable).with_name("usage-report")), "run", "--start", first.isoformat(), "--end", last.isoformat(), "--no-site"]
    else:
        command = [sys.executable, "-c", PER_DAY, first.isoformat(), last.isoformat()]
    return _timed(command, env, folder / "output.log")


def _days_line(days: dict[str, float]) -> str:
    values = list(days.values())
    if not values:
        return "no day lines"
    return f"per day: first {values[0]:.1f} s, median {statistics.median(values):.1f} s, last {values[-1]:.1f} s ({len(values)} days)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=60)
    parser.add_argument("--days", type=int, default=35)
    parser.add_argument("--requests-per-day", type=int, default=20_000)
    parser.add_argument("--lean", action="store_true", help="leaner records (~0.9 KB), faster to generate")
    parser.add_argument("--work", type=Path, default=Path("bench_data/scale"))
    parser.add_argument("--skip-baseline", action="store_true", help="only the range run (the baseline of a long range takes long)")
    args = parser.parse_args()
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    data = _data(work, args.keys, TEAMS.get(args.keys, max(1, args.keys // 5)), args.days, args.requests_per_day, args.lean, False)
    first, last = END - dt.timedelta(days=args.days), END - dt.timedelta(days=1)
    load = os.getloadavg()
    print(f"bench/days.py: {args.days} days ({first} to {last}) of {args.requests_per_day:,} requests, {args.keys:,} keys; "
          f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    seconds, rss, days = _run("range", data, work, first, last)
    print(f"  range, one run:     {seconds:7.1f} s, peak RSS {rss:,.0f} MB; {_days_line(days)}", flush=True)
    if not args.skip_baseline:
        base_seconds, base_rss, base_days = _run("per-day", data, work, first, last)
        print(f"  baseline, run/day:  {base_seconds:7.1f} s, peak RSS {base_rss:,.0f} MB; {_days_line(base_days)}", flush=True)
        print(f"  ratio range / run per day: {seconds / base_seconds:.2f}x", flush=True)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")


if __name__ == "__main__":
    sys.exit(main())
