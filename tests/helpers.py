"""Builders of gateway log files for the reader tests."""

import contextlib
import datetime as dt
import gzip
from collections.abc import Iterator
from pathlib import Path

from pytest_httpserver import HTTPServer

from usage_jobs import warehouse
from usage_jobs.defs.gateway.ingest import ingest_day
from usage_jobs.defs.gateway.pricing import load_prices

DAY = dt.date(2026, 11, 10)
KEY = "a" * 64


def payload(request_id: str, start="2026-11-10 09:20:46.847371", **extra) -> dict:
    record = {
        "id": request_id, "call_type": "acompletion", "status": "success", "stream": False,
        "startTime": start, "endTime": start, "model": "hosted_vllm/qwen35-35b-a3b-instruct", "model_group": "qwen35-35b-a3b-instruct",
        "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120, "response_cost": 0.001,
        "metadata": {"user_api_key_hash": KEY, "user_api_key_alias": "alias", "user_api_key_team_id": "team-1", "user_api_key_team_alias": "Team One"},
        "request_tags": ["a"], "some_unknown_field": {"nested": [1, 2, 3]},
    }
    record.update(extra)
    return record


def write(path: Path, text: str | bytes, compress: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode() if isinstance(text, str) else text
    path.write_bytes(gzip.compress(data) if compress else data)


def ingest(logs: Path, tmp_path: Path, day=DAY, timezone="UTC"):
    conn = warehouse.connect(tmp_path / "w.duckdb")
    stats = ingest_day(conn, logs_dir=logs, day=day, timezone=timezone, prices=load_prices(), max_record_bytes=16_000_000)
    return conn, stats


@contextlib.contextmanager
def local_http_server(*, threaded: bool = False) -> Iterator[HTTPServer]:
    """A real HTTP server on 127.0.0.1 (pytest-httpserver) that a test teaches what to answer.

    `threaded` answers requests concurrently (for tests that send many at once)."""
    server = HTTPServer(host="127.0.0.1", threaded=threaded)
    with server:
        yield server


def export_text(path: Path) -> str:
    """An export file's text by its plain name: the file itself, or its `.gz` when it was written compressed (exports.COMPRESS_OVER)."""
    if path.is_file():
        return path.read_text(encoding="utf-8")
    return gzip.decompress(path.with_name(path.name + ".gz").read_bytes()).decode("utf-8")
