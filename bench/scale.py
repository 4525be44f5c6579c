"""Scale: the same traffic over organisations of growing size (issue 14's table).

For each organisation (60 keys / 12 teams, 600 / 60, 3,000 / 200 by default) it generates
`--days` + 1 days of `--requests-per-day` requests with the demo generator, ingests the
first `--days` days into a fresh warehouse with `usage-report run --no-site` (Dagster runs,
IG1 billing from the local emulator), then times, each as the product's own command in a
process of its own:

* full site build: `usage-report site` on a fresh site folder;
* one new day: `usage-report run` of the next day (ingest, aggregates, billing, site);
* rebuild with nothing changed: `usage-report site` again;

With `--new-day-repeats N` the new day is timed N times, each from the same state (the run folder as the
full build left it, copied aside and put back): this machine's timings of one command vary by ±10%, and the median
of N is the figure the table gives.

It prints seconds, the site build's own seconds (from the command's `Site built in` line),
pages (HTML files), files, size and peak RSS (the largest single process of the command,
from `wait4`) beside the baseline figures of issue 14 and its goals. Only public entry points
are called, so it measures whatever the site build is.

Generated data is kept under `--work` and reused by a later run with the same organisation,
days and volume (`--regenerate` to write it again); the warehouse, Dagster instance and site
are always new. A quick run: `--orgs 60 --days 8 --requests-per-day 2000`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

END = dt.date(2026, 11, 22)  # the new day; the first days end the day before
TEAMS = {60: 12, 600: 60, 3000: 200}  # keys -> teams, issue 14's table
# issue 14, measured on this 2-core machine (35 days x 20,000 requests): full site, one new day, nothing changed (s), pages, bytes
BASELINE = {60: (57, 29, 11, 3_345, 70e6), 600: (123, 77, 54, 29_212, 474e6), 3000: (369, 272, 194, 127_899, 1.8e9)}
GOAL = {3000: (90, 15, 3, None, 400e6)}  # issue 14's goals (3,000 keys / 200 teams / 35 days)
MASTER_KEY = "bench-master-key"


@dataclass
class Step:
    label: str
    seconds: float
    peak_rss_mb: float
    site_seconds: float | None = None
    pdfs: int | None = None
    lines: list[str] = field(default_factory=list)


def _command(args: list[str], env: dict[str, str], log: Path, label: str) -> Step:
    """Run a `usage-report` command in a process of its own; its output goes to `log`."""
    usage_report = Path(sys.executable).with_name("usage-report")
    with open(log, "a", encoding="utf-8") as out:
        out.write(f"\n$ usage-report {' '.join(args)}\n")
        out.flush()
        began = time.perf_counter()
        process = subprocess.Popen([str(usage_report), *args], env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text(encoding="utf-8").rsplit(f"$ usage-report {' '.join(args)}\n", 1)[-1]
    if process.returncode != 0:
        raise SystemExit(f"{label}: usage-report {' '.join(args)} exited {process.returncode}; see {log}\n{text[-3000:]}")
    built = re.search(r"^Site built in ([\d.]+) s.*?(\d+) PDFs", text, re.MULTILINE)
    lines = [line for line in text.splitlines() if re.match(r"^(Site built in|\d+/\d+ days ingested|Billing|\[)", line)]
    return Step(label, seconds, usage.ru_maxrss / 1024, float(built.group(1)) if built else None, int(built.group(2)) if built else None, lines)


def _site_figures(site: Path) -> tuple[int, int, int]:
    pages = files = size = 0
    for path in site.rglob("*"):
        if path.is_file():
            files += 1
            size += path.stat().st_size
            pages += path.suffix == ".html"
    return pages, files, size


def _data(work: Path, keys: int, teams: int, days: int, requests_per_day: int, lean: bool, regenerate: bool) -> Path:
    from usage_jobs.demo.generator import generate

    params = {"keys": keys, "teams": teams, "days": days + 1, "end": END.isoformat(), "requests_per_day": requests_per_day, "lean": lean}
    folder = work / f"data-{keys}k-{days + 1}d-{requests_per_day}rpd{'-lean' if lean else ''}"
    stamp = folder / "bench-params.json"
    if not regenerate and stamp.is_file() and json.loads(stamp.read_text()) == params:
        print(f"  data: reusing {folder}", flush=True)
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    began = time.perf_counter()
    summary = generate(folder, days=days + 1, end=END, requests_per_day=requests_per_day, keys=keys, teams=teams, lean=lean)
    stamp.write_text(json.dumps(params))
    print(f"  data: generated {summary['requests']:,} requests over {days + 1} days in {time.perf_counter() - began:.1f} s", flush=True)
    return folder


def _ratio(now: float, before: float | None) -> str:
    return f"{now / before:.2f}x" if before else ""


def _restore(run: Path, saved: Path) -> None:
    """The run folder back to the `saved` copy of it (its commands log kept)."""
    for entry in run.iterdir():
        if entry.name != "commands.log":
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for entry in saved.iterdir():
        (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, run / entry.name)


def _new_day(run: Path, env: dict[str, str], log: Path, repeats: int) -> Step:
    """The new day's run, `repeats` times from the same state; the step of the median time, all the times in its lines."""
    saved = run.with_name(run.name + ".before-new-day")
    shutil.rmtree(saved, ignore_errors=True)
    if repeats > 1:
        shutil.copytree(run, saved, ignore=shutil.ignore_patterns("commands.log"))
    steps = []
    try:
        for attempt in range(repeats):
            if attempt:
                _restore(run, saved)
            steps.append(_command(["run", "--start", END.isoformat(), "--end", END.isoformat()], env, log, "one new day"))
    finally:
        shutil.rmtree(saved, ignore_errors=True)
    median = sorted(steps, key=lambda step: step.seconds)[(len(steps) - 1) // 2]
    if repeats > 1:
        median.label = f"one new day, median of {repeats} ({', '.join(f'{step.seconds:.1f}' for step in steps)} s; " \
                       f"site builds {', '.join(f'{step.site_seconds:.1f}' for step in steps)} s)"
    return median


def bench_org(work: Path, keys: int, days: int, requests_per_day: int, lean: bool, regenerate: bool, new_day_repeats: int = 1) -> dict:
    from usage_jobs.demo.emulator import IG1Emulator

    teams = TEAMS.get(keys, max(1, keys // 5))
    print(f"\n== {keys:,} keys / {teams} teams, {days} days + 1 of {requests_per_day:,} requests ==", flush=True)
    data = _data(work, keys, teams, days, requests_per_day, lean, regenerate)
    run = work / f"run-{keys}k"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    log = run / "commands.log"
    first = END - dt.timedelta(days=days)
    with IG1Emulator.from_file(data / "billing" / "ledger.json", MASTER_KEY, today=END + dt.timedelta(days=1)) as emulator:
        env = {**os.environ, "USAGE_START_DATE": first.isoformat(), "USAGE_TIMEZONE": "UTC", "IG1_MASTER_KEY": MASTER_KEY,
               "USAGE_LOGS_DIR": str(data / "logs"), "USAGE_WAREHOUSE": str(run / "usage.duckdb"), "USAGE_SITE_DIR": str(run / "site"),
               "USAGE_INVENTORY_FILE": str(data / "inventory.json"), "IG1_BASE_URL": emulator.url,
               "IG1_USD_RATE": str(data / "billing" / "usd_per_eur.csv"), "DAGSTER_HOME": str(run / "dagster_home"),
               "USAGE_LANDING_DIR": str(run / "landing")}
        ingest = _command(["run", "--start", first.isoformat(), "--end", (END - dt.timedelta(days=1)).isoformat(), "--no-site"],
                          env, log, "ingest")
        print(f"  ingest of {days} days (usage-report run --no-site): {ingest.seconds:.1f} s, peak RSS {ingest.peak_rss_mb:,.0f} MB", flush=True)
        steps = [_command(["site"], env, log, "full site build")]
        _print_step(steps[-1])
        steps.append(_new_day(run, env, log, new_day_repeats))
        _print_step(steps[-1])
        figures = _site_figures(run / "site")
        steps.append(_command(["site"], env, log, "rebuild, nothing changed"))
        _print_step(steps[-1])
    pages, files, size = figures
    print(f"  site after the new day: {pages:,} pages, {files:,} files, {size / 1e6:,.0f} MB (log: {log})", flush=True)
    return {"keys": keys, "teams": teams, "days": days, "requests_per_day": requests_per_day, "ingest_s": ingest.seconds,
            "steps": [(s.label, s.seconds, s.site_seconds, s.peak_rss_mb) for s in steps], "pages": pages, "files": files, "bytes": size}


def _print_step(step: Step) -> None:
    site = f" (site build {step.site_seconds:.1f} s, {step.pdfs} PDFs)" if step.site_seconds is not None else ""
    print(f"  {step.label}: {step.seconds:.1f} s{site}, peak RSS {step.peak_rss_mb:,.0f} MB", flush=True)


def _table(results: list[dict], comparable: bool) -> None:
    print("\n| keys / teams | | full site | one new day | nothing changed | pages | files | size | peak RSS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        (_, full, _, rss1), (_, new, _, rss2), (_, same, _, rss3) = r["steps"]
        print(f"| {r['keys']:,} / {r['teams']} | now | {full:.1f} s | {new:.1f} s | {same:.1f} s | {r['pages']:,} | {r['files']:,} | "
              f"{r['bytes'] / 1e6:,.0f} MB | {max(rss1, rss2, rss3):,.0f} MB |")
        base = BASELINE.get(r["keys"]) if comparable else None
        if base:
            print(f"| | baseline | {base[0]} s | {base[1]} s | {base[2]} s | {base[3]:,} | | {base[4] / 1e6:,.0f} MB | |")
            print(f"| | ratio | {_ratio(full, base[0])} | {_ratio(new, base[1])} | {_ratio(same, base[2])} | {_ratio(r['pages'], base[3])} | | "
                  f"{_ratio(r['bytes'], base[4])} | |")
        goal = GOAL.get(r["keys"]) if comparable else None
        if goal:
            met = [full <= goal[0], new <= goal[1], same <= goal[2], r["bytes"] <= goal[4]]
            print(f"| | goal | ≤ {goal[0]} s {'met' if met[0] else 'MISSED'} | ≤ {goal[1]} s {'met' if met[1] else 'MISSED'} | "
                  f"≤ {goal[2]} s {'met' if met[2] else 'MISSED'} | | | ≤ {goal[4] / 1e6:,.0f} MB {'met' if met[3] else 'MISSED'} | |")
    if not comparable:
        print("(not issue 14's volume (35 days x 20,000 requests a day) or no PDFs printed: baseline and goals not shown)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orgs", default="60,600,3000", help="key counts, comma-separated (teams: 12, 60, 200; else keys / 5)")
    parser.add_argument("--days", type=int, default=35, help="days in the first build (one more is the new day)")
    parser.add_argument("--requests-per-day", type=int, default=20_000)
    parser.add_argument("--work", type=Path, default=Path("bench_data/scale"))
    parser.add_argument("--lean", action="store_true", help="leaner records (~0.9 KB: the ingest benchmark's), faster to generate")
    parser.add_argument("--regenerate", action="store_true", help="write the organisations' logs again even if kept from a run before")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--new-day-repeats", type=int, default=1, help="time the new day this many times from the same state; the median is shown")
    parser.add_argument("--without-pdfs", action="store_true", help="measure even without a Chromium to print the PDFs (figures not comparable)")
    args = parser.parse_args()
    from usage_jobs.defs.report.pdf import find_chromium

    printer = find_chromium(os.environ.get("REPORT_CHROMIUM"))
    if printer is None and not args.without_pdfs:
        # Without one the builds skip the finance PDFs: a third of a new day's site at 3,000 keys, so the figures would flatter.
        raise SystemExit("bench/scale.py: no Chromium to print the PDFs (`make browser` installs Debian's, or set REPORT_CHROMIUM); "
                         "--without-pdfs measures without them, not comparable with the goals")
    warnings.filterwarnings("ignore")
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    orgs = [int(value) for value in args.orgs.split(",") if value.strip()]
    load = os.getloadavg()
    print(f"bench/scale.py: orgs {orgs}, {args.days} days + 1, {args.requests_per_day:,} requests a day; "
          f"{os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    results = []
    for keys in orgs:
        results.append(bench_org(work, keys, args.days, args.requests_per_day, args.lean, args.regenerate, max(args.new_day_repeats, 1)))
        if args.json:
            args.json.write_text(json.dumps(results, indent=2))
    comparable = args.days == 35 and args.requests_per_day == 20_000 and printer is not None
    _table(results, comparable)
    load = os.getloadavg()
    print(f"\nload average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; peak RSS is the largest single process of a command")
    print("goals (3,000 keys / 200 teams / 35 days): full site ≤ 90 s, one new day ≤ 15 s, nothing changed ≤ 3 s, size ≤ 400 MB")


if __name__ == "__main__":
    sys.exit(main())
