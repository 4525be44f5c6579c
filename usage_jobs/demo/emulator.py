"""A local IG1 billing API: `GET /usage` and `GET /usage/history` over the demo's ledger.

A real HTTP server on 127.0.0.1 (a free port unless one is given). It answers like IG1:
bearer master key required (401 otherwise), history per UTC day × model in the
contract currency, 402 once the commit is exhausted. `Faults` makes it misbehave on
purpose for tests: latency, 429 with Retry-After, bursts of 503, malformed JSON, a day
missing, a day restated, a day that arrives late.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


@dataclass
class Faults:
    """What the emulator does wrong; counters (`*_left`) are spent one request at a time."""

    latency_seconds: float = 0.0
    rate_limited_left: int = 0
    retry_after_seconds: float = 1.0
    unavailable_left: int = 0
    malformed_left: int = 0
    wrong_shape_left: int = 0
    commit_exhausted: bool = False
    missing_days: set[str] = field(default_factory=set)
    restated: dict[str, float] = field(default_factory=dict)  # day → factor applied to its counts and cost
    delay_days: int = 0  # the last N days before `today` are not billed yet


class IG1Emulator:
    """Serves a ledger document (`{"currency", "commit", "max_throughput", "data": [...]}`)."""

    def __init__(self, ledger: dict, master_key: str, *, today: dt.date | None = None, port: int = 0, faults: Faults | None = None):
        self.ledger = ledger
        self.master_key = master_key
        self.today = today
        self.faults = faults or Faults()
        self.requests_served: list[tuple[str, int]] = []  # (path, status) of every request
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._thread: threading.Thread | None = None

    @classmethod
    def from_file(cls, path: Path, master_key: str, **kwargs) -> IG1Emulator:
        return cls(json.loads(path.read_text(encoding="utf-8")), master_key, **kwargs)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> IG1Emulator:
        self._thread = threading.Thread(target=self._server.serve_forever, name="ig1-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> IG1Emulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- what IG1 answers ----------------------------------------------------------

    def _today(self) -> dt.date:
        return self.today or dt.date.today()

    def _rows(self) -> list[dict]:
        """The ledger as IG1 would report it now: late days held back, restatements applied."""
        newest = self._today() - dt.timedelta(days=1 + self.faults.delay_days)
        rows = []
        for row in self.ledger["data"]:
            if row["date"] in self.faults.missing_days or dt.date.fromisoformat(row["date"]) > newest:
                continue
            factor = self.faults.restated.get(row["date"])
            if factor:
                row = {**row, "input_tokens": round(row["input_tokens"] * factor), "output_tokens": round(row["output_tokens"] * factor),
                       "cost": round(row["cost"] * factor, 6)}
            rows.append(row)
        return rows

    def usage(self) -> dict:
        month = self._today().strftime("%Y-%m")
        current = sum(row["cost"] for row in self._rows() if row["date"].startswith(month))
        return {"current": round(current, 4), "commit": self.ledger["commit"], "max_throughput": self.ledger["max_throughput"]}

    def history(self, start: dt.date, end: dt.date) -> dict:
        rows = [row for row in self._rows() if start.isoformat() <= row["date"] <= end.isoformat()]
        return {"currency": self.ledger["currency"], "data": rows}

    def _spend_fault(self, name: str) -> bool:
        with self._lock:
            left = getattr(self.faults, name)
            if left > 0:
                setattr(self.faults, name, left - 1)
                return True
            return False


def _handler(emulator: IG1Emulator) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # quiet: the tests and the demo print their own lines
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            emulator.requests_served.append((urlsplit(self.path).path, status))
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, document: dict, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(document).encode(), headers)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            faults = emulator.faults
            if faults.latency_seconds:
                threading.Event().wait(faults.latency_seconds)
            url = urlsplit(self.path)
            if self.headers.get("Authorization") != f"Bearer {emulator.master_key}":
                return self._json(401, {"error": {"message": "Invalid API key", "type": "authentication_error"}})
            if emulator._spend_fault("rate_limited_left"):
                return self._json(429, {"error": {"message": "Too many requests"}}, {"Retry-After": f"{faults.retry_after_seconds:g}"})
            if emulator._spend_fault("unavailable_left"):
                return self._json(503, {"error": {"message": "Service temporarily unavailable"}})
            if faults.commit_exhausted:
                return self._json(402, {"error": {"message": "Monthly commit exhausted"}})
            if url.path == "/usage":
                document = emulator.usage()
            elif url.path == "/usage/history":
                query = parse_qs(url.query)
                try:
                    start = dt.date.fromisoformat(query["start_date"][0])
                    end = dt.date.fromisoformat(query["end_date"][0])
                except (KeyError, ValueError):
                    return self._json(400, {"error": {"message": "start_date and end_date are required, as YYYY-MM-DD"}})
                if end < start:
                    return self._json(400, {"error": {"message": "end_date is before start_date"}})
                document = emulator.history(start, end)
            else:
                return self._json(404, {"error": {"message": f"Not found: {url.path}"}})
            if emulator._spend_fault("malformed_left"):
                return self._send(200, json.dumps(document).encode()[:40])
            if emulator._spend_fault("wrong_shape_left"):
                return self._json(200, {"usage": document})
            return self._json(200, document)

    return Handler
