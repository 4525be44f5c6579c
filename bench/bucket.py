"""Landing a day from a bucket: `land_bucket_day` beside a plain sequential fetch, in the same run.

Puts a day of N per-request objects (LiteLLM's S3 default layout,
`<prefix>/2026-11-10/time-HH-MM-SS-ffffff_<id>.json`, ~1 KB of realistic payload each) into a
moto S3 server on 127.0.0.1: N/5 under prefix `a/`, the rest under `b/`. Then, each in a fresh
child process (seconds, objects/s, peak RSS):
  * sequential: boto3 `list_objects_v2` pages + `get_object` one by one, each written to a file;
  * threads:    the same with a pool of --concurrency threads (a reference for the design choice);
  * landing:    `land_bucket_day` (fsspec/s3fs async API, --concurrency requests in flight),
first on `a/` (N/5 objects), then on the whole bucket (N objects): the two peak RSS show whether
memory grows with the number of objects. With --latency-ms X the fetches are repeated through a
TCP proxy on 127.0.0.1 that holds every request X ms before forwarding it, as a real store's
first-byte latency; the sequential fetch is then timed on a sample (--sample objects).

moto's server is CPU-bound and closes the connection after every response (one TCP connection
per request), and shares the 2 cores with the client: without latency the ratio measures CPU
per object more than concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from emulators import S3_TEST_ENV, moto_server  # noqa: E402

DAY = dt.date(2026, 11, 10)
BUCKET = "bench-gateway-logs"

SEQUENTIAL = """
import json, os, sys, time
import boto3
endpoint, prefix, out, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
client = boto3.client("s3", endpoint_url=endpoint)
started, cpu_started = time.perf_counter(), cpu_seconds()
count = size = 0
for page in client.get_paginator("list_objects_v2").paginate(Bucket=sys.argv[5], Prefix=prefix):
    for item in page.get("Contents", []):
        body = client.get_object(Bucket=sys.argv[5], Key=item["Key"])["Body"].read()
        path = os.path.join(out, item["Key"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as stream:
            stream.write(body)
        count += 1
        size += len(body)
        if count >= limit:
            break
    if count >= limit:
        break
seconds = time.perf_counter() - started
print(json.dumps({"objects": count, "bytes": size, "seconds": seconds, "rss_mb": peak_rss_mb(), "cpu_s": cpu_seconds() - cpu_started}))
"""

THREADS = """
import json, os, sys, time
from concurrent.futures import ThreadPoolExecutor
import boto3
from botocore.config import Config
endpoint, prefix, out, limit, bucket, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], int(sys.argv[6])
client = boto3.client("s3", endpoint_url=endpoint, config=Config(max_pool_connections=threads + 4))
started, cpu_started = time.perf_counter(), cpu_seconds()
def fetch(key):
    body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
    path = os.path.join(out, key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as stream:
        stream.write(body)
    return len(body)
count = size = 0
with ThreadPoolExecutor(threads) as pool:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [item["Key"] for item in page.get("Contents", [])][: limit - count]
        for n in pool.map(fetch, keys):
            count += 1
            size += n
        if count >= limit:
            break
seconds = time.perf_counter() - started
print(json.dumps({"objects": count, "bytes": size, "seconds": seconds, "rss_mb": peak_rss_mb(), "cpu_s": cpu_seconds() - cpu_started}))
"""

LANDING = """
import datetime as dt, json, sys, time
from pathlib import Path
from usage_jobs.defs.gateway.landing import land_bucket_day
endpoint, url, out, concurrency = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
started, cpu_started = time.perf_counter(), cpu_seconds()
stats = land_bucket_day(url, dt.date(2026, 11, 10), "UTC", Path(out), endpoint_url=endpoint, concurrency=concurrency,
                        progress=lambda line: print(line, file=sys.stderr, flush=True))
seconds = time.perf_counter() - started
print(json.dumps({"objects": stats.fetched, "bytes": stats.bytes_fetched, "listed": stats.listed, "retries": stats.retries,
                  "seconds": seconds, "rss_mb": peak_rss_mb(), "cpu_s": cpu_seconds() - cpu_started}))
"""


# Peak RSS of the child itself: VmHWM of its own memory map. (ru_maxrss is not used: Linux carries
# it over exec from the forked copy of the parent, so a child would report the bench's own peak.)
PEAK_RSS = """
def peak_rss_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024

def cpu_seconds():
    import resource
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
"""


def _run(code: str, *args) -> dict:
    done = subprocess.run([sys.executable, "-c", PEAK_RSS + code, *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"benchmark step failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _key(record: dict, prefix: str) -> str:
    start = record["startTime"]
    moment = (dt.datetime.fromtimestamp(start, dt.UTC) if isinstance(start, (int, float))
              else dt.datetime.fromisoformat(str(start).replace("Z", "+00:00")))
    return f"{prefix}/{DAY}/time-{moment:%H-%M-%S-%f}_{record['id']}.json"


def fill_bucket(endpoint: str, objects: int, work: Path) -> tuple[int, int]:
    """N objects of realistic payloads: the first N/5 under `a/`, the rest under `b/`. Returns (count under a/, bytes)."""
    import boto3
    from botocore.config import Config

    from usage_jobs.demo.generator import write_benchmark_day

    source = work / "day.ndjson"
    write_benchmark_day(source, day=DAY, requests=objects)
    client = boto3.client("s3", endpoint_url=endpoint, config=Config(max_pool_connections=20))
    client.create_bucket(Bucket=BUCKET)
    small = objects // 5
    total = 0
    seen = set()

    def put(item):
        index, line = item
        key = _key(json.loads(line), "a" if index < small else "b")
        client.put_object(Bucket=BUCKET, Key=key, Body=line)
        return key, len(line)

    with open(source, "rb") as lines, ThreadPoolExecutor(16) as pool:
        for key, size in pool.map(put, enumerate(line.rstrip(b"\n") for line in lines)):
            seen.add(key)
            total += size
    if len(seen) != objects:
        raise SystemExit(f"{objects - len(seen)} object keys collided")
    return small, total


class LatencyProxy:
    """A TCP proxy on 127.0.0.1 that holds each request (the first client bytes after a response) X ms."""

    def __init__(self, upstream_port: int, latency_ms: float):
        self.upstream_port, self.latency = upstream_port, latency_ms / 1000
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)
        self.url = f"http://127.0.0.1:{self.port}"

    def _serve(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0, backlog=512))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        state = {"new_request": True}

        async def client_to_store():
            while data := await reader.read(1 << 16):
                if state["new_request"]:
                    state["new_request"] = False
                    await asyncio.sleep(self.latency)
                up_writer.write(data)
                await up_writer.drain()
            up_writer.close()

        async def store_to_client():
            while data := await up_reader.read(1 << 16):
                state["new_request"] = True
                writer.write(data)
                await writer.drain()
            writer.close()

        try:
            await asyncio.gather(client_to_store(), store_to_client())
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()
            up_writer.close()

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def _line(name: str, result: dict) -> str:
    rate = result["objects"] / result["seconds"]
    return (f"  {name:<40} {result['objects']:>8,} objects {result['seconds']:>7.1f} s {rate:>7,.0f} objects/s "
            f"peak RSS {result['rss_mb']:>4.0f} MB, client CPU {1000 * result['cpu_s'] / max(result['objects'], 1):.1f} ms/object")


def measure(endpoint: str, work: Path, small: int, objects: int, concurrency: int, sample: int | None, label: str,
            whole: bool, threads: bool) -> None:
    print(f"{label}:", flush=True)
    limit = min(small, sample) if sample else small
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    sequential = _run(SEQUENTIAL, endpoint, "a/", out / "sequential", limit, BUCKET)
    print(_line("sequential boto3 get_object" + (" (sample)" if limit < small else ""), sequential), flush=True)
    if threads:
        pooled = _run(THREADS, endpoint, "a/", out / "threads", small, BUCKET, concurrency)
        print(_line(f"boto3, {concurrency} threads", pooled), flush=True)
    landing = _run(LANDING, endpoint, f"s3://{BUCKET}/a", out / "landing-a", concurrency)
    print(_line(f"land_bucket_day, a/ ({concurrency} in flight)", landing), flush=True)
    ratio = (landing["objects"] / landing["seconds"]) / (sequential["objects"] / sequential["seconds"])
    print(f"  ratio: land_bucket_day / sequential = {ratio:.1f}x", flush=True)
    if whole:
        everything = _run(LANDING, endpoint, f"s3://{BUCKET}", out / "landing-all", concurrency)
        print(_line("land_bucket_day, whole day", everything), flush=True)
        print(f"  memory: peak RSS {landing['rss_mb']:.0f} MB at {landing['objects']:,} objects, "
              f"{everything['rss_mb']:.0f} MB at {everything['objects']:,} objects "
              f"({everything['rss_mb'] - landing['rss_mb']:+.0f} MB for {everything['objects'] / max(landing['objects'], 1):.0f}x the objects)",
              flush=True)
    shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=20_000, help="objects in the day (N); N/5 of them under a/ (default 20,000)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="also measure through a proxy adding this first-byte latency")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--sample", type=int, default=1_000, help="objects the sequential fetch is timed on through the proxy")
    parser.add_argument("--no-threads", action="store_true", help="skip the thread-pool reference")
    args = parser.parse_args()

    os.environ.update(S3_TEST_ENV)
    with tempfile.TemporaryDirectory(prefix="bench-bucket-") as tmp, moto_server() as s3:
        work = Path(tmp)
        started = time.perf_counter()
        small, size = fill_bucket(s3.url, args.objects, work)
        seconds = time.perf_counter() - started
        print(f"bucket: {args.objects:,} objects ({size / 1e6:.1f} MB, {size / args.objects:.0f} B each) put into moto on 127.0.0.1 "
              f"in {seconds:.0f} s ({args.objects / seconds:,.0f} puts/s); a/ holds {small:,}", flush=True)
        measure(s3.url, work, small, args.objects, args.concurrency, None, "no added latency", whole=True, threads=not args.no_threads)
        if args.latency_ms:
            proxy = LatencyProxy(s3.port, args.latency_ms)
            try:
                measure(proxy.url, work, small, args.objects, args.concurrency, args.sample, f"through a proxy adding {args.latency_ms:g} ms per request",
                        whole=False, threads=not args.no_threads)
            finally:
                proxy.close()


if __name__ == "__main__":
    main()
