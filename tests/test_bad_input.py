"""Every bad record is either stored or counted with a reason; nothing stops the day."""

import datetime as dt
import gzip
import json

import pytest

from helpers import DAY, ingest, payload, write
from usage_jobs.defs.gateway.ingest import MAX_TOKENS


def test_bad_input_corpus_is_counted_with_reasons(tmp_path):
    logs = tmp_path / "logs"
    folder = logs / "gcs" / "2026-11-10"
    good = json.dumps(payload("good-1"))
    lines = [
        good,
        '{"id": "truncated", "prompt_tokens": 1',
        "[1, 2, 3]",
        "42",
        json.dumps(payload(None)),
        json.dumps(payload("")),
        json.dumps(payload("tokens-as-string", prompt_tokens="100")),
        json.dumps(payload("negative", completion_tokens=-5)),
        json.dumps(payload("absurd", prompt_tokens=MAX_TOKENS * 10)),
        json.dumps(payload("fractional", prompt_tokens=1.5)),
        json.dumps(payload("garbage-time", start="yesterday-ish")),
        json.dumps(payload("bad-cost", response_cost="free")),
        json.dumps(payload("bad-status", status="maybe")),
        json.dumps(payload("metadata-string", metadata=json.dumps({"user_api_key_hash": "b" * 64, "user_api_key_team_id": "team-2"}))),
        json.dumps(payload("metadata-garbage", metadata="{{{not json")),
        json.dumps(payload("good-2", extra_unknown={"deep": {"deeper": [None]}})),
    ]
    write(folder / "batch-mixed.ndjson", "\n".join(lines) + "\n")
    write(folder / "batch-nan.ndjson",
          json.dumps(payload("ok-before-nan")) + '\n{"id": "nan", "startTime": "2026-11-10 09:00:00.0", "model_group": "m", "prompt_tokens": NaN}\n')
    write(folder / "batch-utf8.ndjson", json.dumps(payload("ok-utf8")).encode() + b'\n{"id": "bad-bytes-\xff\xfe", "x": 1}\n')
    write(folder / "batch-huge.ndjson", json.dumps(payload("ok-huge")) + "\n" + json.dumps(payload("huge", response="x" * 50_000_000)) + "\n")
    write(folder / "empty.ndjson", "")
    full = gzip.compress(("\n".join(json.dumps(payload(f"gz-{i}")) for i in range(200)) + "\n").encode())
    write(folder / "truncated.ndjson.gz", full[: len(full) // 2])
    write(folder / "dup-a.ndjson", json.dumps(payload("twice")) + "\n")
    write(logs / "azure" / "2026-11-10" / "twice.json", json.dumps(payload("twice")))
    write(logs / "azure" / "2026-11-10" / "scalar.json", '"just a string"')

    conn, stats = ingest(logs, tmp_path)
    reasons = dict(conn.execute("SELECT coalesce(request_id, source_file || ':' || coalesce(source_line::VARCHAR, '-')), reason "
                                "FROM rejected_records").fetchall())
    stored = {r[0] for r in conn.execute("SELECT request_id FROM requests").fetchall()}

    assert {"good-1", "good-2", "metadata-string", "metadata-garbage", "ok-before-nan", "ok-utf8", "ok-huge", "twice"} <= stored
    assert reasons["gcs/2026-11-10/batch-mixed.ndjson:2"].startswith("invalid JSON")
    assert reasons["gcs/2026-11-10/batch-mixed.ndjson:3"] == "a JSON array where a JSON object was expected"
    assert reasons["gcs/2026-11-10/batch-mixed.ndjson:4"] == "a JSON number where a JSON object was expected"
    assert reasons["tokens-as-string"].startswith("prompt_tokens is not a whole number")
    assert reasons["negative"].startswith("completion_tokens is not a whole number")
    assert reasons["absurd"].startswith("prompt_tokens is not a whole number")
    assert reasons["fractional"].startswith("prompt_tokens is not a whole number")
    assert reasons["garbage-time"].startswith("startTime is missing or not a timestamp")
    assert reasons["bad-cost"].startswith("response_cost is not a number")
    assert reasons["bad-status"].startswith("status is neither success nor failure")
    assert reasons["nan"].startswith("prompt_tokens is not a whole number")
    assert reasons["gcs/2026-11-10/batch-utf8.ndjson:2"].startswith("not valid UTF-8")
    assert "above the 16 MB limit" in reasons["gcs/2026-11-10/batch-huge.ndjson:2"]
    assert reasons["gcs/2026-11-10/empty.ndjson:-"] == "empty file"
    assert any(k.startswith("gcs/2026-11-10/truncated.ndjson.gz") and "truncated or corrupt" in v for k, v in reasons.items())
    assert reasons["azure/2026-11-10/scalar.json:1"] == "a JSON string where a JSON object was expected"
    missing_id = [v for v in reasons.values() if v == "missing or empty request id"]
    assert len(missing_id) == 2

    # Metadata as a JSON string is read; garbage metadata keeps the request, attributed to `unassigned` and flagged.
    assert conn.execute("SELECT key_hash, team_id FROM requests WHERE request_id = 'metadata-string'").fetchone() == ("b" * 64, "team-2")
    assert conn.execute("SELECT key_hash, metadata_unreadable FROM requests WHERE request_id = 'metadata-garbage'").fetchone() == ("unassigned", True)
    # The salvaged part of the truncated gzip is kept.
    salvaged = conn.execute("SELECT count(*) FROM requests WHERE request_id LIKE 'gz-%'").fetchone()[0]
    assert 0 < salvaged < 200
    # Every record is accounted for: stored, rejected, or a counted duplicate.
    assert stats.duplicates == 1
    assert stats.rows + stats.rejected + stats.duplicates == stats.records_read
    assert stats.rows == len(stored) and stats.rejected == len(reasons)


def test_record_outside_its_folder_window_is_rejected_once(tmp_path):
    logs = tmp_path / "logs"
    write(logs / "gcs" / "2026-11-10" / "b.ndjson", json.dumps(payload("ok")) + "\n" + json.dumps(payload("stale", start="2026-10-01 10:00:00.0")) + "\n")
    write(logs / "gcs" / "2026-11-11" / "b.ndjson", json.dumps(payload("next-day", start="2026-11-11 10:00:00.0")) + "\n")
    conn, stats = ingest(logs, tmp_path)
    assert conn.execute("SELECT request_id, reason FROM rejected_records").fetchall() == [
        (("stale", "startTime 2026-10-01 10:00:00 UTC is outside the days folder 2026-11-10 can hold"))]
    # The next day's run reads folder 2026-11-10 again but does not count its rejection twice.
    from usage_jobs.defs.gateway.ingest import ingest_day
    from usage_jobs.defs.gateway.pricing import load_prices

    ingest_day(conn, logs_dir=logs, day=DAY + dt.timedelta(days=1), timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
    assert conn.execute("SELECT count(*) FROM rejected_records").fetchone()[0] == 1


def test_refused_requests_without_a_model_are_stored_as_failures_not_rejected(tmp_path):
    logs = tmp_path / "logs"
    refused = [payload(f"refused-{i}", status="failure", model="", model_group="", prompt_tokens=0, completion_tokens=0, response_cost=0,
                       metadata={"user_api_key_hash": None}, error_str="Authentication Error, No api key passed in.",
                       error_information={"error_class": "ProxyException", "error_code": 401}) for i in range(40)]
    write(logs / "gcs" / "2026-11-10" / "b.ndjson", "\n".join(json.dumps(r) for r in refused + [payload("ok")]) + "\n")
    conn, stats = ingest(logs, tmp_path)
    assert stats.rejected == 0 and stats.rows == 41
    assert conn.execute("SELECT count(*), min(status), min(error_class), min(error_code), min(key_hash) FROM requests "
                        "WHERE model = '(no model)'").fetchone() == (
        40, "failure", "ProxyException", "401", "unassigned")


@pytest.mark.parametrize("days_later, collision", [(1, 1), (31, 1), (32, 0)])
def test_an_id_met_on_two_days_is_two_requests_and_a_counted_collision_within_31_days(tmp_path, days_later, collision):
    logs, later = tmp_path / "logs", DAY + dt.timedelta(days=days_later)
    write(logs / "gcs" / "2026-11-10" / "b.ndjson", json.dumps(payload("reused", start="2026-11-10 10:00:00.0")) + "\n")
    # A re-delivery of the same request (same id, same start) in another file is a duplicate.
    write(logs / "gcs" / "2026-11-10" / "c.ndjson", json.dumps(payload("reused", start="2026-11-10 10:00:00.0")) + "\n")
    write(logs / "gcs" / later.isoformat() / "b.ndjson", json.dumps(payload("reused", start=f"{later} 08:00:00.0")) + "\n")
    conn, first = ingest(logs, tmp_path)
    from usage_jobs.defs.gateway.ingest import ingest_day
    from usage_jobs.defs.gateway.pricing import load_prices

    second = ingest_day(conn, logs_dir=logs, day=later, timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
    assert (first.rows, first.duplicates, first.id_collisions) == (1, 1, 0)
    assert (second.rows, second.duplicates, second.id_collisions) == (1, 0, collision)
    assert conn.execute("SELECT count(*) FROM requests WHERE request_id = 'reused'").fetchone()[0] == 2
    # The earlier day ingested again finds the later one alike.
    again = ingest_day(conn, logs_dir=logs, day=DAY, timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
    assert again.id_collisions == collision


@pytest.mark.parametrize("name, content, holds_data", [
    ("export.csv", "request_id,spend\nabc,0.1\n", True),
    ("notes.txt", json.dumps(payload("hidden-in-a-txt")), True),
    ("placeholder.md", "", False),
])
def test_a_file_that_is_not_a_request_log_is_named_and_counted(tmp_path, name, content, holds_data):
    logs = tmp_path / "logs"
    write(logs / "gcs" / "2026-11-10" / "b.ndjson", json.dumps(payload("ok")) + "\n")
    write(logs / "gcs" / "2026-11-10" / name, content)
    conn, stats = ingest(logs, tmp_path)
    assert (stats.unrecognised_files, stats.unrecognised_with_data) == (1, int(holds_data))
    assert conn.execute("SELECT source_file, bytes, holds_data FROM unrecognised_files").fetchall() == [
        (f"gcs/2026-11-10/{name}", len(content.encode()), holds_data)]


def test_an_empty_object_is_rejected_with_its_reason(tmp_path):
    logs = tmp_path / "logs"
    write(logs / "azure" / "2026-11-10" / "empty-object.json", "{}")
    write(logs / "azure" / "2026-11-10" / "ok.json", json.dumps(payload("ok")))
    conn, stats = ingest(logs, tmp_path)
    assert (stats.rows, stats.rejected, stats.records_read) == (1, 1, 2)
    assert conn.execute("SELECT source_file, reason FROM rejected_records").fetchall() == [
        ("azure/2026-11-10/empty-object.json", "missing or empty request id")]


def _odd_files(folder, logs):
    """Files that are not what their name or shape promise, each with the records it holds (id → expected)."""
    record = lambda request_id: json.dumps(payload(request_id))  # noqa: E731
    write(folder / "bom.json", b"\xef\xbb\xbf" + record("bom").encode())
    write(folder / "two-in-one.json", record("two-1") + record("two-2"))
    write(folder / "two-lines.json", record("line-1") + "\n" + record("line-2"))
    write(folder / "plain-named.ndjson.gz", record("plain-gz") + "\n")
    write(folder / "packed-named.json", gzip.compress(record("packed").encode()))
    write(folder / "truncated.json", record("truncated")[:-40])
    write(folder / "empty.json", "")
    write(folder / "empty.json.gz", b"")
    write(folder / "empty.ndjson", "")
    (folder / "looping").symlink_to(folder / "looping")
    (folder / "dangling.json").symlink_to(logs / "nowhere" / "gone.json")
    (folder / "a-folder.json").mkdir()
    return {"bom", "two-1", "two-2", "line-1", "line-2", "plain-gz", "packed"}


def test_no_odd_file_stops_a_day_and_each_is_counted(tmp_path):
    logs = tmp_path / "logs"
    folder = logs / "azure" / "2026-11-10"
    write(logs / "gcs" / "2026-11-10" / "good.ndjson", "\n".join(json.dumps(payload(f"good-{i}")) for i in range(100)) + "\n")
    readable = _odd_files(folder, logs)
    conn, stats = ingest(logs, tmp_path)
    stored = {r[0] for r in conn.execute("SELECT request_id FROM requests").fetchall()}
    assert stored == readable | {f"good-{i}" for i in range(100)}
    reasons = dict(conn.execute("SELECT source_file, reason FROM rejected_records").fetchall())
    assert reasons == {
        "azure/2026-11-10/truncated.json": reasons["azure/2026-11-10/truncated.json"],
        "azure/2026-11-10/empty.json": "empty file", "azure/2026-11-10/empty.json.gz": "empty file", "azure/2026-11-10/empty.ndjson": "empty file",
        "azure/2026-11-10/looping": "file cannot be read: Too many levels of symbolic links",
        "azure/2026-11-10/dangling.json": "file cannot be read: No such file or directory",
    }
    assert reasons["azure/2026-11-10/truncated.json"].startswith("invalid JSON")
    assert (stats.rows, stats.rejected, stats.records_read) == (107, 6, 113)
