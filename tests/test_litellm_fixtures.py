"""Every layout LiteLLM writes, read from files LiteLLM 1.110.2 wrote itself (tests/fixtures/litellm,
made by make_fixtures.sh), against totals this test computes by parsing the files on its own."""

import datetime as dt
import json
import shutil
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from usage_jobs import warehouse
from usage_jobs.defs.gateway.ingest import ingest_day
from usage_jobs.defs.gateway.layout import FOLDER, GATEWAY_API
from usage_jobs.defs.gateway.pricing import load_prices

FIXTURES = Path(__file__).parent / "fixtures" / "litellm"
MANIFEST = json.loads((FIXTURES / "manifest.json").read_text())
DAYS = (dt.date(2026, 11, 10), dt.date(2026, 11, 11))
SOURCES = {"spendlogs_v2_pages": GATEWAY_API}  # API pages are landed per report day, not per write day


def _documents(path: Path) -> list[dict]:
    text = path.read_text(encoding="utf-8")
    try:
        documents = [json.loads(text)]
    except json.JSONDecodeError:
        documents = [json.loads(line) for line in text.splitlines() if line.strip()]
    records = []
    for document in documents:
        if isinstance(document, dict) and isinstance(document.get("data"), list):
            records += document["data"]
        elif isinstance(document, list):
            records += document
        else:
            records.append(document)
    return records


def _start(value) -> dt.datetime:
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _metadata(record: dict) -> dict:
    metadata = record.get("metadata") or {}
    return json.loads(metadata) if isinstance(metadata, str) else metadata


def expected(layout: str, timezone: str = "UTC") -> dict[dt.date, dict]:
    """Per report day: the distinct requests (id, start) and their totals, parsed independently."""
    requests: dict[tuple[str, dt.datetime], dict] = {}
    read = Counter()
    for name in MANIFEST["layouts"][layout]["files"]:
        for record in _documents(FIXTURES / layout / name):
            start = _start(record["startTime"])
            read[start.astimezone(ZoneInfo(timezone)).date()] += 1
            requests.setdefault((record.get("id") or record["request_id"], start), record)
    days = {}
    for day in DAYS:
        mine = {key: r for key, r in requests.items() if key[1].astimezone(ZoneInfo(timezone)).date() == day}
        days[day] = {
            "ids": sorted(request_id for request_id, _ in mine),
            "read": read[day],
            "failed": sum(r["status"] == "failure" for r in mine.values()),
            "no_model": sum(not r.get("model") and not r.get("model_group") for r in mine.values()),
            "input_tokens": sum(r.get("prompt_tokens") or 0 for r in mine.values()),
            "output_tokens": sum(r.get("completion_tokens") or 0 for r in mine.values()),
            "logged_cost": sum((r.get("response_cost") if "response_cost" in r else r.get("spend")) or 0 for r in mine.values()),
            "end_users": sorted({r.get("end_user") or _metadata(r).get("user_api_key_end_user_id") for r in mine.values()} - {None, ""}),
            "error_classes": sorted({(r.get("error_information") or _metadata(r).get("error_information") or {}).get("error_class")
                                     for r in mine.values() if r["status"] == "failure"} - {None, ""}),
        }
    return days


# The API pages were asked per UTC day, so they are report days in UTC only.
CASES = [(layout, "UTC") for layout in sorted(MANIFEST["layouts"])] + [
    (layout, "Europe/Paris") for layout in sorted(MANIFEST["layouts"]) if layout not in SOURCES]


@pytest.mark.parametrize("layout, timezone", CASES)
def test_every_litellm_layout_is_read_completely(layout, timezone, tmp_path):
    logs = tmp_path / "logs"
    shutil.copytree(FIXTURES / layout, logs)  # a fresh copy: undated files are then modified after the day began
    conn = warehouse.connect(tmp_path / "w.duckdb")
    want = expected(layout, timezone)
    for day in DAYS:
        stats = ingest_day(conn, logs_dir=logs, day=day, timezone=timezone, prices=load_prices(), max_record_bytes=16_000_000,
                           source=SOURCES.get(layout, FOLDER))
        got = want[day]
        ids = sorted(r[0] for r in conn.execute("SELECT request_id FROM requests WHERE day = ?", [day]).fetchall())
        assert ids == got["ids"], (layout, day)
        assert (stats.rejected, stats.unrecognised_files) == (0, 0), conn.execute("SELECT * FROM rejected_records").fetchall()
        assert stats.records_read == got["read"] == stats.rows + stats.duplicates, (layout, day)
        row = conn.execute(
            "SELECT count(*) FILTER (status = 'failure'), count(*) FILTER (model = '(no model)'), sum(input_tokens), sum(output_tokens), "
            "coalesce(sum(spend_usd) FILTER (NOT spend_repriced), 0), list(DISTINCT end_user) FILTER (end_user IS NOT NULL), "
            "list(DISTINCT error_class) FILTER (status = 'failure' AND error_class IS NOT NULL), count(*) FILTER (tokens_estimated) "
            "FROM requests WHERE day = ?", [day]).fetchone()
        assert row[:2] == (got["failed"], got["no_model"]), (layout, day)
        assert row[7] == 0 and (row[2] or 0, row[3] or 0) == (got["input_tokens"], got["output_tokens"]), (layout, day)
        assert float(row[4]) == pytest.approx(got["logged_cost"], abs=1e-9), (layout, day)
        assert sorted(row[5] or []) == got["end_users"] and sorted(row[6] or []) == got["error_classes"], (layout, day)


def test_fixtures_cover_the_shapes_the_product_must_handle():
    """The files hold what the layouts promise: refused requests, a re-delivery, an id collision, cache costs."""
    records = [r for name in MANIFEST["layouts"]["gcs_batched"]["files"] for r in _documents(FIXTURES / "gcs_batched" / name)]
    assert any(not r["model"] and not r["model_group"] and r["status"] == "failure" for r in records)
    assert Counter((r["id"], r["startTime"]) for r in records).most_common(1)[0][1] == 2
    assert len({r["startTime"] for r in records if r["id"] == "chatcmpl-fx0001"}) == 2
    assert any((r.get("cost_breakdown") or {}).get("cache_read_cost") for r in records)


def test_cache_costs_and_refused_requests_are_kept(tmp_path):
    logs = tmp_path / "logs"
    shutil.copytree(FIXTURES / "gcs_batched", logs)
    conn = warehouse.connect(tmp_path / "w.duckdb")
    ingest_day(conn, logs_dir=logs, day=DAYS[0], timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
    assert conn.execute("SELECT cache_read_cost_usd > 0, cached_input_tokens > 0 FROM requests WHERE request_id = 'chatcmpl-fx0001'").fetchone() == (True, True)
    refused = conn.execute("SELECT status, error_class, error_code, spend_usd FROM requests WHERE model = '(no model)'").fetchall()
    assert refused and all(r[0] == "failure" and r[1] and r[2] == "401" and r[3] == 0 for r in refused)
