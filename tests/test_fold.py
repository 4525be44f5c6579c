"""Per-request files are folded into NDJSON shards and read once; every record still names its own file."""

import json

import pytest

from helpers import ingest, payload, write


def test_folded_files_keep_their_names_and_rules(tmp_path):
    logs = tmp_path / "logs"
    folder = logs / "s3" / "2026-11-10"
    for i in range(30):
        write(folder / f"time-09-00-00-{i:06d}_ok-{i}.json", json.dumps(payload(f"ok-{i}")))
    write(folder / "time-09-00-01-000000_str.json", json.dumps(payload("tokens-as-string", prompt_tokens="100")))
    write(folder / "time-09-00-01-000001_frac.json", json.dumps(payload("fractional", prompt_tokens=1.5)))
    write(folder / "time-09-00-01-000002_pretty.json", json.dumps(payload("pretty"), indent=2))
    write(folder / "time-09-00-01-000003_dup.json", json.dumps(payload("ok-3")))
    write(folder / "time-09-00-01-000004_empty-object.json", "{}")

    conn, stats = ingest(logs, tmp_path)
    stored = {r[0] for r in conn.execute("SELECT request_id FROM requests").fetchall()}
    assert stored == {f"ok-{i}" for i in range(30)} | {"pretty"}
    rejected = {r[0]: (r[1], r[2]) for r in conn.execute("SELECT request_id, source_file, reason FROM rejected_records").fetchall()}
    assert rejected["tokens-as-string"][0] == "s3/2026-11-10/time-09-00-01-000000_str.json"
    assert rejected["tokens-as-string"][1].startswith("prompt_tokens is not a whole number")
    assert rejected["fractional"][0] == "s3/2026-11-10/time-09-00-01-000001_frac.json"
    assert rejected["fractional"][1].startswith("prompt_tokens is not a whole number")
    sources = dict(conn.execute("SELECT request_id, source_file FROM requests").fetchall())
    assert sources["ok-7"] == "s3/2026-11-10/time-09-00-00-000007_ok-7.json"
    assert sources["pretty"] == "s3/2026-11-10/time-09-00-01-000002_pretty.json"
    assert stats.duplicates == 1
    assert stats.records_read == stats.rows + stats.rejected + stats.duplicates


def test_a_shard_duckdb_refuses_falls_back_to_its_files(tmp_path):
    logs = tmp_path / "logs"
    folder = logs / "s3" / "2026-11-10"
    for i in range(5):
        write(folder / f"time-09-00-00-{i:06d}_ok-{i}.json", json.dumps(payload(f"ok-{i}")))
    write(folder / "time-09-00-02-000000_broken.json", '{"id": "broken", "prompt_tokens": 1,,}')

    conn, stats = ingest(logs, tmp_path)
    stored = {r[0] for r in conn.execute("SELECT request_id FROM requests").fetchall()}
    assert stored == {f"ok-{i}" for i in range(5)}
    files = [r[0] for r in conn.execute("SELECT source_file FROM rejected_records").fetchall()]
    assert files == ["s3/2026-11-10/time-09-00-02-000000_broken.json"]
    assert stats.records_read == stats.rows + stats.rejected + stats.duplicates


@pytest.mark.parametrize("folded_in", ["threads", "processes"])
def test_every_shard_is_read(tmp_path, monkeypatch, folded_in):
    from usage_jobs.defs.gateway import ingest as ingest_module

    monkeypatch.setattr(ingest_module, "FOLD_SHARD_FILES", 7)
    monkeypatch.setattr(ingest_module, "FOLD_IN_PROCESSES_FROM", 1 if folded_in == "processes" else 10**9)
    logs = tmp_path / "logs"
    for day in ("2026-11-10", "2026-11-11"):
        for i in range(40):
            write(logs / "s3" / day / f"time-09-00-00-{i:06d}_{day}-{i}.json", json.dumps(payload(f"{day}-{i}")))
    write(logs / "s3" / "2026-11-10" / "time-09-00-02-000000_broken.json", '{"id": "broken", "prompt_tokens": 1,,}')

    conn, stats = ingest(logs, tmp_path)
    stored = {r[0] for r in conn.execute("SELECT request_id FROM requests").fetchall()}
    # The payloads start on the 10th: the 11th's folder holds requests written a day late.
    assert stored == {f"{day}-{i}" for day in ("2026-11-10", "2026-11-11") for i in range(40)}
    assert stats.records_read == 81
    assert stats.rejected == 1
