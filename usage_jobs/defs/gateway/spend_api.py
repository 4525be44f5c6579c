"""The gateway's own API as a log source: every page of LiteLLM's `GET /spend/logs/v2`
for a report day, landed unchanged as local files that ingest reads like any export.

What the endpoint does (LiteLLM `spend_management_endpoints.ui_view_spend_logs`):
* `start_date` and `end_date` are required, UTC, as `YYYY-MM-DD HH:MM:SS` (or, on
  /v2 only, `YYYY-MM-DD`, which means that day's 00:00:00: a date-only `end_date` drops
  the whole end day). It filters on the request's **start**: `"startTime" >= start AND
  "startTime" <= end`, both ends included; `startTime` is stored to the millisecond.
* Offset paging: `page` (from 1), `page_size` (1…1000; 1…100 on older releases, which
  answer 422 past it); default order `startTime DESC` with no tie-breaker, here asked
  `sort_order=asc`. The answer is `{data, total, page, page_size, total_pages,
  total_is_capped}`; `total` stops counting at 10,000 (`total_is_capped: true`), so past
  that pages are read until a short one, not up to `total_pages`.
* `data` rows are LiteLLM_SpendLogs columns without messages/response (request_id,
  api_key = key hash, spend, tokens, startTime, model, model_group, metadata, status, …).
* A non-admin key is not refused: it silently sees only its own user's rows.

How a day is asked: the report day's UTC span [start, end) (`layout.utc_day_span`) as
`start_date = start` and `end_date = end` (whole seconds, so nothing between the last
whole second and midnight is lost). The one instant `end` itself (a request started at
exactly the next day's 00:00:00.000) is in both days' pages; ingest stores it under the
day of its startTime only. Every page is written as the gateway sent it to
`landing_root(landing_dir, base_url)/<day>/spend-logs-v2-page-00001.json`. Pages are
fetched into a hidden staging folder first and swapped in only when every page has
arrived, so a failed fetch leaves the previous landing intact; stale pages of a longer
earlier fetch are removed. A day whose span ended more than `WRITE_LAG` before the fetch
is marked complete under `.landed/` and not fetched again unless `refetch`.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from usage_jobs.defs.gateway.landing import STATE_FOLDER, LandingError, LandingStats, landing_root
from usage_jobs.defs.gateway.layout import WRITE_LAG, utc_day_span
from usage_jobs.http_retry import RetryingJsonClient, gateway_client

SPEND_LOGS_PATH = "/spend/logs/v2"
PAGE_NAME = "spend-logs-v2-page-{:05d}.json"
PAGE_PATTERN = re.compile(r"^spend-logs-v2-page-(\d{5,})\.json$")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_PAGE_SIZE = 1000
# Releases before /v2 took page_size up to 1000 capped it at 100 (HTTP 422 past it).
LEGACY_MAX_PAGE_SIZE = 100
MAX_PAGES = 100_000
# A complete day whose pages do not add up (rows shifted between page requests) is read again.
MAX_PASSES = 3


@dataclass
class _Pass:
    """One read of every page of a day, into its staging folder."""

    folder: Path
    pages: int = 0
    rows: int = 0
    request_ids: set[str] = field(default_factory=set)
    totals: list[int] = field(default_factory=list)
    capped: bool = False
    bytes: int = 0

    @property
    def consistent(self) -> bool:
        """Every row the gateway counted arrived once (only knowable while the total is not capped)."""
        if self.capped or not self.totals:
            return True
        return len(set(self.totals)) == 1 and len(self.request_ids) == self.totals[-1] == self.rows

    def describe(self) -> str:
        counted = f"{self.totals[-1]:,}{'+' if self.capped else ''}" if self.totals else "?"
        return f"{self.pages:,} pages, {self.rows:,} rows, {len(self.request_ids):,} distinct request ids, the gateway counted {counted}"


def request_window(day: dt.date, timezone: str) -> tuple[str, str]:
    """`start_date` and `end_date` for the report day, as /spend/logs/v2 parses them (UTC, whole seconds).

    The end is the next day's first instant, included by the endpoint, so that a request
    started in the last fraction of a second before midnight is not lost."""
    start, end = utc_day_span(day, timezone)
    start = start.replace(microsecond=0)
    if end.microsecond:
        end = end.replace(microsecond=0) + dt.timedelta(seconds=1)
    return start.strftime(DATE_FORMAT), end.strftime(DATE_FORMAT)


def marker_path(root: Path, day: dt.date) -> Path:
    return root / STATE_FOLDER / f"{day.isoformat()}.json"


def land_spend_logs_day(base_url: str | None, admin_key: str | None, day: dt.date, timezone: str, landing_dir: Path, *,
                        page_size: int = DEFAULT_PAGE_SIZE, refetch: bool = False, max_retries: int = 4,
                        client: RetryingJsonClient | None = None, progress: Callable[[str], None] | None = None,
                        now: dt.datetime | None = None) -> LandingStats:
    """Land every /spend/logs/v2 page of a report day; see the module's notes. Each page is retried
    `max_retries` times (`usage_jobs.http_retry`) unless a ready `client` is given."""
    if not base_url:
        raise LandingError("GATEWAY_BASE_URL is not set: the gateway's /spend/logs/v2 cannot be read")
    if not admin_key:
        raise LandingError("GATEWAY_ADMIN_KEY is not set: the gateway's /spend/logs/v2 needs an admin key")
    if not 1 <= page_size <= DEFAULT_PAGE_SIZE:
        raise LandingError(f"page_size {page_size} is outside 1…{DEFAULT_PAGE_SIZE}, what /spend/logs/v2 accepts")
    say = progress or (lambda message: None)
    started = time.monotonic()
    now = now or dt.datetime.now(dt.UTC)
    root = landing_root(Path(landing_dir), base_url)
    day_dir = root / day.isoformat()
    marker = marker_path(root, day)
    if marker.is_file() and not refetch:
        pages = len(_page_files(day_dir))
        say(f"{day}: landed completely earlier ({pages:,} pages); not fetched again")
        return LandingStats(source=base_url, day=day.isoformat(), already_landed=pages, seconds=time.monotonic() - started)

    complete = utc_day_span(day, timezone)[1] + WRITE_LAG < now
    window = request_window(day, timezone)
    own_client = client is None
    http = client or gateway_client(base_url, admin_key, error=LandingError, timeout=60.0, max_retries=max_retries, backoff_seconds=1.0,
                                    log=say)
    retries_before = len(http.calls.retries)
    passes: list[_Pass] = []
    try:
        for attempt in range(MAX_PASSES if complete else 1):
            staged = _Pass(root / f".staging-{day.isoformat()}-{uuid.uuid4().hex[:12]}")
            passes.append(staged)
            page_size = _read_pages(http, staged, day, window, page_size, say)
            if staged.consistent or not complete:  # a day still being written cannot add up: it is fetched again later
                break
            say(f"{day}: the pages did not add up ({staged.describe()}); "
                + ("reading the day again" if attempt + 1 < MAX_PASSES else "keeping the pass with the most requests"))
        best = max(passes, key=lambda p: (p.consistent, len(p.request_ids), -passes.index(p)))
        _swap_in(best, day_dir)
        if complete and best.consistent:
            _write_atomic(marker, json.dumps({
                "day": day.isoformat(), "source": f"{base_url.rstrip('/')}{SPEND_LOGS_PATH}", "start_date": window[0],
                "end_date": window[1], "timezone": timezone, "fetched_at": now.isoformat(), "pages": best.pages,
                "rows": best.rows, "distinct_request_ids": len(best.request_ids),
            }, indent=2).encode())
        elif marker.exists():
            marker.unlink()
        if complete and not best.consistent:
            say(f"{day}: landed pages may miss requests ({best.describe()}); the day is not marked complete and will be fetched again")
    finally:
        for staged in passes:
            shutil.rmtree(staged.folder, ignore_errors=True)
        if own_client:
            http.close()
    say(f"{day}: landed {best.describe()} from {base_url.rstrip('/')}{SPEND_LOGS_PATH}"
        + ("; complete" if complete and best.consistent else "; not complete yet: it will be fetched again"))
    return LandingStats(source=base_url, day=day.isoformat(), listed=best.pages, fetched=sum(p.pages for p in passes),
                        bytes_fetched=sum(p.bytes for p in passes), retries=len(http.calls.retries) - retries_before,
                        seconds=time.monotonic() - started)


def _read_pages(http: RetryingJsonClient, staged: _Pass, day: dt.date, window: tuple[str, str], page_size: int,
                say: Callable[[str], None]) -> int:
    """Fetch pages 1… into the staging folder; returns the page size that worked."""
    staged.folder.mkdir(parents=True, exist_ok=True)
    page = 1
    while True:
        params = {"start_date": window[0], "end_date": window[1], "page": page, "page_size": page_size,
                  "sort_by": "startTime", "sort_order": "asc"}
        try:
            answer = http.get(SPEND_LOGS_PATH, params)
        except LandingError as exc:
            if getattr(exc, "status", None) == 422 and page == 1 and page_size > LEGACY_MAX_PAGE_SIZE:
                say(f"{day}: the gateway refused page_size={page_size} (an older LiteLLM); asking {LEGACY_MAX_PAGE_SIZE} a page")
                page_size = LEGACY_MAX_PAGE_SIZE
                continue
            raise
        body = answer.document
        rows = body.get("data") if isinstance(body, dict) else None
        if not isinstance(rows, list):
            shape = f"an object with keys {sorted(body)[:8]}" if isinstance(body, dict) else type(body).__name__
            raise LandingError(http.clean(f"The gateway's {SPEND_LOGS_PATH} page {page} for {day} is {shape}, expected "
                                          "{data: [...], total, page, page_size, total_pages}: is GATEWAY_BASE_URL a LiteLLM proxy?"))
        if rows or page == 1:  # page 1 is kept even when empty: the day was asked and had no request
            _write_atomic(staged.folder / PAGE_NAME.format(page), answer.content)
            staged.pages = page
            staged.bytes += len(answer.content)
        staged.rows += len(rows)
        staged.request_ids.update(str(r["request_id"]) for r in rows if isinstance(r, dict) and r.get("request_id") is not None)
        total, total_pages = body.get("total"), body.get("total_pages")
        if isinstance(total, int):
            staged.totals.append(total)
        staged.capped = body.get("total_is_capped") is True
        served_size = body.get("page_size") if isinstance(body.get("page_size"), int) and body.get("page_size") > 0 else page_size
        if isinstance(total_pages, int) and total_pages > 0:
            say(f"{day}: page {page:,}/{total_pages:,}{'+' if staged.capped else ''} ({staged.rows:,} rows)")
        if len(rows) < served_size:
            return page_size
        if not staged.capped and isinstance(total_pages, int) and page >= total_pages:
            return page_size
        if page >= MAX_PAGES:
            raise LandingError(f"The gateway's {SPEND_LOGS_PATH} for {day} did not end after {MAX_PAGES:,} pages")
        page += 1


def _page_files(folder: Path) -> dict[int, Path]:
    if not folder.is_dir():
        return {}
    return {int(m.group(1)): folder / name for name in os.listdir(folder) if (m := PAGE_PATTERN.match(name))}


def _swap_in(staged: _Pass, day_dir: Path) -> None:
    """Replace the day's pages by the staged ones, page by page (each an atomic rename); drop stale pages."""
    day_dir.mkdir(parents=True, exist_ok=True)
    new = _page_files(staged.folder)
    for _, path in sorted(new.items()):
        os.replace(path, day_dir / path.name)
    for number, path in _page_files(day_dir).items():
        if number not in new:
            path.unlink()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write to a hidden temporary file beside the target, then rename it over the target."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with temporary.open("wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()
