"""Scores the abnormal-consumption method against the demo's injected ground truth.

Generates a demo organisation (default: 60 days, 60 keys), ingests it into a fresh
warehouse, runs the detection over every day and compares the flagged key-days with
`anomalies.json` (written by the generator beside the logs). Prints precision, recall,
the misses and the false alarms per 1,000 key-days. Goal: every injected anomaly found,
at most one false alarm per 1,000 key-days.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import time
from pathlib import Path

END = dt.date(2026, 11, 22)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--work", type=Path, default=Path("bench_data/anomalies"))
    args = parser.parse_args()

    from usage_jobs import warehouse
    from usage_jobs.defs.gateway.aggregates import aggregate_day
    from usage_jobs.defs.gateway.ingest import ingest_day
    from usage_jobs.defs.gateway.pricing import load_prices
    from usage_jobs.defs.inventory.parse import read_inventory_file
    from usage_jobs.defs.inventory.store import store_inventory
    from usage_jobs.defs.keys.detect import detect
    from usage_jobs.demo.generator import generate

    shutil.rmtree(args.work, ignore_errors=True)
    started = time.perf_counter()
    generate(args.work / "demo", days=args.days, end=END, seed=args.seed)
    first = END - dt.timedelta(days=args.days - 1)
    conn = warehouse.connect(args.work / "usage.duckdb")
    prices = load_prices()
    for i in range(args.days):
        day = first + dt.timedelta(days=i)
        ingest_day(conn, logs_dir=args.work / "demo" / "logs", day=day, timezone="UTC", prices=prices, max_record_bytes=16_000_000)
        aggregate_day(conn, day)
    store_inventory(conn, read_inventory_file(args.work / "demo" / "inventory.json"))
    print(f"prepared {args.days} days in {time.perf_counter() - started:.1f} s")

    started = time.perf_counter()
    findings = detect(conn, first, END)
    seconds = time.perf_counter() - started
    truth = {(a["key_hash"], a["day"]): a for a in json.loads((args.work / "demo" / "anomalies.json").read_text())["anomalies"]}
    flagged: dict[tuple[str, str], list] = {}
    for finding in findings:
        flagged.setdefault((finding.key_hash, finding.day.isoformat()), []).append(finding)
    key_days = conn.execute("SELECT count(*) FROM (SELECT DISTINCT key_hash, day FROM daily_usage)").fetchone()[0]
    found = [k for k in truth if k in flagged]
    false_alarms = [k for k in flagged if k not in truth]
    precision = len(found) / len(flagged) if flagged else 1.0
    recall = len(found) / len(truth) if truth else 1.0
    print(f"detection over {args.days} days: {seconds:.2f} s; {key_days:,} active key-days; {len(truth)} injected anomalies")
    print(f"flagged key-days: {len(flagged)}  found: {len(found)}  missed: {len(truth) - len(found)}  false alarms: {len(false_alarms)}")
    print(f"precision: {precision:.3f}")
    print(f"recall: {recall:.3f}")
    print(f"false alarms per 1,000 key-days: {1000 * len(false_alarms) / max(key_days, 1):.2f}")
    for key in truth:
        if key not in flagged:
            print(f"  missed: {truth[key]['day']} {truth[key]['key_alias']} ({truth[key]['kind']}: {truth[key]['detail']})")
    for key in false_alarms:
        print(f"  false alarm: {key[1]} {flagged[key][0].reason}")
    print("goal: recall 1.000 and at most 1 false alarm per 1,000 key-days")


if __name__ == "__main__":
    main()
