"""A day of per-request files (LiteLLM's S3/Azure default: one JSON object per request) beside the
same records as one NDJSON file, end to end, each in a fresh process.

Generates N requests (default 200,000) with the ingest benchmark's generator, writes them as
`2026-11-10/time-HH-MM-SS-ffffff_<id>.json` files and as one `2026-11-10/day.ndjson`, then runs
`ingest_day` (which folds per-request files into NDJSON shards once and reads those) on each.
A third case is the same files folded as landing folds a bucket's complete date folder
(`fold.fold_tree`, timed: done once per day), then ingested. Prints seconds, peak RSS and
each case's ratio to the one NDJSON file.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ingest import PRODUCT  # noqa: E402

DAY = dt.date(2026, 11, 10)


def _run(*args: str) -> dict:
    output = subprocess.run([sys.executable, "-c", PRODUCT, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--work", type=Path, default=Path("bench_data/files"))
    parser.add_argument("--keep", action="store_true", help="keep the generated files (and reuse them next time)")
    args = parser.parse_args()

    from usage_jobs.defs.gateway.fold import fold_tree
    from usage_jobs.demo.generator import write_benchmark_day

    work = args.work
    one = work / "one" / DAY.isoformat() / "day.ndjson"
    many = work / "many" / DAY.isoformat()
    marker = work / f"generated-{args.requests}"
    started = time.perf_counter()
    if not (args.keep and marker.exists()):
        shutil.rmtree(work, ignore_errors=True)
        write_benchmark_day(one, day=DAY, requests=args.requests)
        many.mkdir(parents=True)
        with open(one, encoding="utf-8") as stream:
            for number, line in enumerate(stream):
                record = json.loads(line)
                stamp = str(record.get("startTime", ""))[11:26].replace(":", "-").replace(".", "-")
                (many / f"time-{stamp}_{number:07d}-{record.get('id', number)}.json").write_text(line.rstrip("\n"), encoding="utf-8")
        marker.touch()
    for stale in work.glob("*.duckdb*"):
        stale.unlink()
    print(f"generated {args.requests:,} requests as one NDJSON and as per-request files in {time.perf_counter() - started:.1f} s")
    results = {}
    for label, root in (("one NDJSON file", work / "one"), (f"{args.requests:,} per-request files", work / "many")):
        results[label] = _run(str(root), str(work / f"{label.split()[0]}.duckdb"), DAY.isoformat())
        r = results[label]
        print(f"  {label}: {r['seconds']:.2f} s, peak RSS {r['rss_mb']:,.0f} MB "
              f"({r['rows']:,} rows, {r['rejected']:,} rejected, {r['estimated']:,} estimated)")
    folded = work / "folded"
    shutil.rmtree(folded, ignore_errors=True)
    shutil.copytree(work / "many", folded / DAY.isoformat(), copy_function=os.link)
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as temp:
        tree = fold_tree(folded, folded, Path(temp))
    for path in tree.folded:
        os.remove(path)
    fold_seconds = time.perf_counter() - began
    results["folded at landing"] = r = _run(str(folded), str(work / "folded.duckdb"), DAY.isoformat())
    print(f"  folded at landing ({tree.files:,} files into {len(tree.shards)} shards in {fold_seconds:.2f} s, once per day), then ingest: "
          f"{r['seconds']:.2f} s, peak RSS {r['rss_mb']:,.0f} MB ({r['rows']:,} rows, {r['rejected']:,} rejected)")
    one_r, many_r, folded_r = results.values()
    print(f"  ratio: files / one NDJSON = {many_r['seconds'] / one_r['seconds']:.2f}; "
          f"folded at landing, then ingest / one NDJSON = {folded_r['seconds'] / one_r['seconds']:.2f}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
