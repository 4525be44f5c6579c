"""The reader accepts every layout LiteLLM writes, plain or gzip, and both timestamp forms."""

import datetime as dt
import json

import pytest

from helpers import KEY, ingest, payload, write
from usage_jobs.defs.gateway.ingest import MissingLogsError
from usage_jobs.defs.gateway.pricing import load_prices


def test_every_layout_and_timestamp_form_is_read(tmp_path):
    logs = tmp_path / "logs"
    epoch = dt.datetime(2026, 11, 10, 9, 0, tzinfo=dt.UTC).timestamp()
    write(logs / "Team One" / "alias" / "2026-11-10" / "time-09-00-00-000000_s3.json", json.dumps(payload("s3", start=epoch)))
    write(logs / "azure" / "2026-11-10" / "pretty.json", json.dumps(payload("azure-pretty"), indent=2))
    write(logs / "gcs" / "2026-11-10" / "batch-1-ab.ndjson", "\n".join(json.dumps(payload(f"gcs-{i}")) for i in range(3)) + "\n")
    write(logs / "gcs" / "2026-11-10" / "batch-2-cd.ndjson.gz", json.dumps(payload("gcs-gz")) + "\n", compress=True)
    write(logs / "azure" / "2026-11-10" / "gz.json.gz", json.dumps(payload("azure-gz")), compress=True)
    spendlog = {"request_id": "spendlog", "api_key": KEY, "spend": 0.002, "team_id": "team-1", "user": "u1",
                "startTime": "2026-11-10T10:00:00+00:00", "endTime": "2026-11-10T10:00:01+00:00", "model_group": "qwen35-35b-a3b-instruct",
                "prompt_tokens": 10, "completion_tokens": 5, "status": "success", "cache_hit": "False",
                "metadata": json.dumps({"user_api_key_alias": "alias", "user_api_key_team_alias": "Team One"}), "request_tags": "[\"x\"]"}
    write(logs / "spendlogs" / "2026-11-10" / "export.jsonl", json.dumps(spendlog) + "\n")
    write(logs / "spendlogs" / "2026-11-10" / "export-array.json", json.dumps([dict(spendlog, request_id="array-1"), dict(spendlog, request_id="array-2")]))
    # Started before midnight, written after it into the next day's folder.
    write(logs / "gcs" / "2026-11-11" / "batch-3-ef.ndjson", json.dumps(payload("late", start="2026-11-10 23:59:59.900000")) + "\n")
    write(logs / "audit_logs" / "2026-11-10" / "audit.json", json.dumps({"action": "key.update"}))
    write(logs / "gcs" / "2026-11-10" / "notes.txt", "not a log file")

    conn, stats = ingest(logs, tmp_path)
    ids = {row[0] for row in conn.execute("SELECT request_id FROM requests").fetchall()}
    assert ids == {"s3", "azure-pretty", "gcs-0", "gcs-1", "gcs-2", "gcs-gz", "azure-gz", "spendlog", "array-1", "array-2", "late"}
    assert stats.rejected == 0 and stats.unrecognised_files == 1 and stats.unrecognised_with_data == 1
    row = conn.execute("SELECT key_hash, key_alias, team_id, team_alias, user_id, input_tokens, output_tokens, spend_usd, request_tags "
                       "FROM requests WHERE request_id = 'spendlog'").fetchone()
    assert row[:7] == (KEY, "alias", "team-1", "Team One", "u1", 10, 5)
    assert float(row[7]) == 0.002 and row[8] == ["x"]
    start = conn.execute("SELECT start_time FROM requests WHERE request_id = 's3'").fetchone()[0]
    assert start == dt.datetime(2026, 11, 10, 9, 0, tzinfo=dt.UTC)


def test_request_belongs_to_its_report_time_zone_day(tmp_path):
    logs = tmp_path / "logs"
    # 23:30 UTC on the 9th is 00:30 on the 10th in Paris.
    write(logs / "gcs" / "2026-11-09" / "b.ndjson", json.dumps(payload("paris", start="2026-11-09 23:30:00.000000")) + "\n")
    write(logs / "gcs" / "2026-11-10" / "b.ndjson", json.dumps(payload("utc-morning", start="2026-11-10 08:00:00.000000")) + "\n")
    conn, _ = ingest(logs, tmp_path, timezone="Europe/Paris")
    assert {r[0] for r in conn.execute("SELECT request_id FROM requests WHERE day = '2026-11-10'").fetchall()} == {"paris", "utc-morning"}


def test_missing_folder_is_a_day_specific_message(tmp_path):
    logs = tmp_path / "logs"
    write(logs / "gcs" / "2026-11-09" / "b.ndjson", json.dumps(payload("x")) + "\n")
    with pytest.raises(MissingLogsError, match="No gateway logs for 2026-11-10: no folder named 2026-11-10"):
        ingest(logs, tmp_path)


def test_missing_tokens_are_estimated_from_text_and_text_is_not_stored(tmp_path):
    logs = tmp_path / "logs"
    secret_prompt = "The quarterly numbers of project NIGHTINGALE are confidential"
    record = payload("stream", stream=True, prompt_tokens=None, completion_tokens=None, response_cost=None,
                     messages=[{"role": "user", "content": secret_prompt}],
                     response={"choices": [{"message": {"role": "assistant", "content": "Understood."}}]})
    write(logs / "gcs" / "2026-11-10" / "b.ndjson", json.dumps(record) + "\n")
    conn, stats = ingest(logs, tmp_path)
    from usage_jobs.defs.gateway.tokens import cl100k

    expected_prompt = len(cl100k().encode_ordinary(secret_prompt)) + 3 + 3
    row = conn.execute("SELECT input_tokens, output_tokens, tokens_estimated, spend_repriced, spend_usd FROM requests").fetchone()
    assert row[:4] == (expected_prompt, len(cl100k().encode_ordinary("Understood.")), True, True)
    price = load_prices()["qwen35-35b-a3b-instruct"]
    assert float(row[4]) == pytest.approx((row[0] * price.input + row[1] * price.output) / 1e6)
    assert stats.tokens_estimated == 1 and stats.spend_repriced == 1
    conn.close()
    assert b"NIGHTINGALE" not in (tmp_path / "w.duckdb").read_bytes()


def test_model_without_price_is_unpriced_not_zero(tmp_path):
    logs = tmp_path / "logs"
    write(logs / "gcs" / "2026-11-10" / "b.ndjson", json.dumps(payload("u", model_group="brand-new-model", response_cost=0.0)) + "\n")
    conn, stats = ingest(logs, tmp_path)
    assert conn.execute("SELECT spend_usd, unpriced FROM requests").fetchone() == (None, True)
    assert stats.unpriced == 1
