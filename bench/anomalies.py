"""Scores the abnormal-consumption method against the demo's injected ground truth.

Generates a demo organisation (default: 60 days, 60 keys), ingests it into a fresh
warehouse, runs the detection over every day and compares the flagged key-days with
`anomalies.json` (written by the generator beside the logs). Prints precision, recall,
the misses and the false alarms per 1,000 key-days. Goal: every injected anomaly found,
at most one false alarm per 1,000 key-days.

`--history 10,60` instead measures the daily cost against the length of history (issue 14):
for each length it fills a warehouse with that many days of the same size (`--keys` keys × 3
models in `daily_usage`, `--requests-per-day` rows in `requests`), then times the last day's
`requests_unique` check query and its key anomaly step (detect + store, as the asset runs it),
best of 3. Both should be flat once the history is longer than the 28-day window.
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
    parser.add_argument("--history", default=None, help="days of history, comma-separated: time one day's check and anomaly step on each")
    parser.add_argument("--keys", type=int, default=3000, help="with --history: keys")
    parser.add_argument("--requests-per-day", type=int, default=100_000, help="with --history: rows a day in requests")
    args = parser.parse_args()
    if args.history:
        history_cost(args.work, [int(d) for d in args.history.split(",")], args.keys, args.requests_per_day)
        return

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


def history_cost(work: Path, lengths: list[int], keys: int, per_day: int) -> None:
    from usage_jobs import warehouse
    from usage_jobs.defs.gateway.assets import requests_stored_twice
    from usage_jobs.defs.keys.anomalies import FIRST_DAY_FOLLOWING
    from usage_jobs.defs.keys.detect import detect, store

    work.mkdir(parents=True, exist_ok=True)
    first = dt.date(2026, 1, 1)

    def best(step, *arguments) -> float:
        seconds = []
        for _ in range(3):
            began = time.perf_counter()
            step(*arguments)
            seconds.append(time.perf_counter() - began)
        return min(seconds)

    def one_day(conn, day: dt.date, since: dt.date) -> None:  # as the asset runs it
        store(conn, detect(conn, day, day, first_day_from=since), day, day, first_day_from=since)

    for days in lengths:
        path = work / f"history-{days}d-{keys}k-{per_day}.duckdb"
        path.unlink(missing_ok=True)
        conn = warehouse.connect(path)
        started = time.perf_counter()
        for index in range(days):
            day = first + dt.timedelta(days=index)
            conn.execute("""INSERT INTO requests (day, request_id, start_time, status, model, key_hash, team_id, input_tokens, output_tokens,
                total_tokens, cached_input_tokens, cache_creation_tokens, tokens_estimated, tokens_missing, spend_repriced, unpriced,
                metadata_unreadable, source_file)
                SELECT $day, 'chatcmpl-' || md5($day::VARCHAR || i::VARCHAR), $day::TIMESTAMPTZ + to_milliseconds(i * (86400000 // $n)), 'success',
                       'm' || (i % 5)::VARCHAR, 'key-' || (i % $keys)::VARCHAR, 't', 1, 1, 2, 0, 0, false, false, false, false, false, 'f'
                FROM range($n) t(i)""", {"day": day, "n": per_day, "keys": keys})
            conn.execute("""INSERT INTO daily_usage (day, team_id, key_hash, model, requests, successful_requests, failed_requests, input_tokens,
                output_tokens, total_tokens, cached_input_tokens, spend_usd, unpriced_requests, estimated_requests, repriced_requests)
                SELECT $day, 't', 'key-' || k::VARCHAR, 'm' || m::VARCHAR, 1 + (hash(k, m, $day) % 20)::BIGINT, 1, 0, 0, 0, 0, 0,
                       (hash(k, m, $day) % 1000)::DECIMAL(18, 10) / 1000, 0, 0, 0
                FROM range($keys) a(k), range(3) b(m)""", {"day": day, "keys": keys})
        last = first + dt.timedelta(days=days - 1)
        since = max(last - dt.timedelta(days=FIRST_DAY_FOLLOWING), first)
        rows = conn.execute("SELECT count(*) FROM requests").fetchone()[0]
        check = best(requests_stored_twice, conn, last, last)
        anomalies = best(one_day, conn, last, since)
        whole = best(detect, conn, since, last)
        print(f"{days:>4} days of history ({rows:,} requests, {keys:,} keys, filled in {time.perf_counter() - started:.0f} s): "
              f"requests_unique {check * 1000:,.0f} ms; key anomalies of the day {anomalies * 1000:,.0f} ms "
              f"(judging the {FIRST_DAY_FOLLOWING} days before it again too, as before: {whole * 1000:,.0f} ms)", flush=True)
        conn.close()
        path.unlink()


if __name__ == "__main__":
    main()
