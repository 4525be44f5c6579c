"""One report day of gateway logs into the `requests` table, without Dagster.

Fast path: DuckDB's JSON reader reads whole files, projecting only the fields the
product uses, each as raw JSON so a wrong type is judged by our rules, not the
reader's. A file the reader refuses (bad line, non-UTF-8, truncated gzip) is read
record by record in Python (`salvage`), so one bad line costs one record, counted.

Every record found for the day ends in exactly one place: `requests` (de-duplicated
by request id), or `rejected_records` with its reason, file and line; duplicates are
counted in `ingest_days`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import multiprocessing
import os
import shutil
import signal
import tempfile
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing.pool import AsyncResult
from pathlib import Path

import duckdb
import numpy as np

from usage_jobs import collector, worker_processes
from usage_jobs.defs.gateway.fold import FOLD_SHARD_FILES, SOURCE_FILE_FIELD, write_shard
from usage_jobs.defs.gateway.layout import (
    FOLDER,
    GATEWAY_API,
    REPORT_DAY,
    UNDATED,
    DayFiles,
    LogFile,
    UnrecognisedFile,
    candidate_folder_days,
    files_for_day,
)
from usage_jobs.defs.gateway.pricing import ModelPrice, register_prices
from usage_jobs.defs.gateway.salvage import SOURCE_LINE_FIELD, Rejection, salvage_records, write_ndjson
from usage_jobs.defs.gateway.tokens import estimate_many
from usage_jobs.names import NAME_TRIM_SQL
from usage_jobs.warehouse import transaction

# Per-request files are folded by this many threads or processes at most (a shard DuckDB refuses sends its files back to the
# per-file reader); processes from this many files (starting them costs about what folding 20,000 files does on one core).
FOLD_THREADS = 4
FOLD_IN_PROCESSES_FROM = 20_000

MAX_TOKENS = 100_000_000
MAX_COST_USD = 10_000
COLLISION_WINDOW_DAYS = 31  # an id met again this many days before or after the day counts as a collision

# The payload fields the product uses, and their SpendLogs-export equivalents. Read as
# JSON so that a string where a number belongs is rejected by name, not coerced.
SOURCE_COLUMNS = [
    "id", "request_id", "call_type", "status", "stream", "startTime", "endTime", "model",
    "model_group", "custom_llm_provider", "api_base", "prompt_tokens", "completion_tokens",
    "response_cost", "spend", "metadata", "api_key", "team_id", "user", "request_tags",
    "cache_hit", "error_str", "error_information", "end_user", "cost_breakdown", "model_map_information",
    "messages", "response", SOURCE_LINE_FIELD, SOURCE_FILE_FIELD,
]
# Requests the gateway refused before routing (bad or missing key) name no model: they are
# real failed requests, stored under this name.
NO_MODEL = "(no model)"


class MissingLogsError(RuntimeError):
    """No log folder exists for a report day."""


@dataclass
class IngestStats:
    """Per day: where every record read went (stored + rejected + duplicates = records read)."""

    day: str
    folders: int
    files: int
    unrecognised_files: int
    records_read: int
    rows: int
    rejected: int
    duplicates: int
    tokens_estimated: int
    tokens_missing: int
    spend_repriced: int
    unpriced: int
    metadata_unreadable: int
    id_collisions: int
    unrecognised_with_data: int

    @property
    def rejected_share(self) -> float:
        return self.rejected / self.records_read if self.records_read else 0.0


# JSON values arrive minified from DuckDB's reader, so the first character gives the type
# without parsing the value again (a full json_type() per field made staging 3x slower).
# The macros run on every field of every record: they test that character with starts_with
# rather than naming the type in a CASE, which cost as much as the extraction itself.
_MACROS = f"""
CREATE OR REPLACE TEMP MACRO jtype(j) AS CASE coalesce(left(j::VARCHAR, 1), 'n')
    WHEN '"' THEN 'VARCHAR' WHEN '{{' THEN 'OBJECT' WHEN '[' THEN 'ARRAY' WHEN 't' THEN 'BOOLEAN' WHEN 'f' THEN 'BOOLEAN'
    WHEN 'n' THEN 'NULL' ELSE 'NUMBER' END;
-- Names are trimmed as usage_jobs.names does for IG1's; trim() costs ~5x the extraction, so only values whose
-- JSON text starts or ends with a space or an escape (how the reader writes tab, CR and LF) pay for it.
CREATE OR REPLACE TEMP MACRO jstr(j) AS CASE WHEN NOT starts_with(j::VARCHAR, '"') THEN NULL
    WHEN starts_with(j::VARCHAR, '" ') OR starts_with(j::VARCHAR, '"\\') OR ends_with(j::VARCHAR, ' "')
            OR ends_with(j::VARCHAR, '\\t"') OR ends_with(j::VARCHAR, '\\n"') OR ends_with(j::VARCHAR, '\\r"')
        THEN nullif(trim(j->>'$', {NAME_TRIM_SQL}), '')
    WHEN j::VARCHAR <> '""' THEN j->>'$' END;
-- Error codes come as strings ("429") or numbers (429).
CREATE OR REPLACE TEMP MACRO jscalar(j) AS CASE WHEN jtype(j) = 'NUMBER' THEN j::VARCHAR ELSE jstr(j) END;
-- Only a JSON number's text casts to a number (a string's has quotes; true, false, null, arrays and objects never do).
CREATE OR REPLACE TEMP MACRO jnum(j) AS TRY_CAST(j::VARCHAR AS DOUBLE);
CREATE OR REPLACE TEMP MACRO jbool(j) AS CASE WHEN j::VARCHAR IN ('true', 'false') THEN j::VARCHAR = 'true'
    WHEN starts_with(j::VARCHAR, '"') THEN lower(j->>'$') IN ('true', '1', 'yes') END;
CREATE OR REPLACE TEMP MACRO jpresent(j) AS coalesce(j::VARCHAR <> 'null', false);
CREATE OR REPLACE TEMP MACRO jobject(j) AS CASE
    WHEN starts_with(j::VARCHAR, '{{') THEN j
    WHEN starts_with(j::VARCHAR, '"') AND json_valid(j->>'$') AND json_type((j->>'$')::JSON) = 'OBJECT' THEN (j->>'$')::JSON END;
CREATE OR REPLACE TEMP MACRO bad_count(present, n) AS present AND NOT coalesce(
    isfinite(n) AND n >= 0 AND n = floor(n) AND n <= {MAX_TOKENS}, false);
CREATE OR REPLACE TEMP MACRO shown(j) AS left(j::VARCHAR, 40);
CREATE OR REPLACE TEMP MACRO ts_value(j) AS CASE WHEN starts_with(j::VARCHAR, '"') THEN TRY_CAST(j->>'$' AS TIMESTAMPTZ)
    ELSE to_timestamp(CASE WHEN jnum(j) BETWEEN 946684800 AND 4102444800 THEN jnum(j) END) END;
-- An error message as the report may show it: its first line, quoted or bracketed text (where a prompt could be echoed)
-- and long numbers (token counts) masked, so that messages group; at most 160 characters, a longer one cut to 159 and an
-- ellipsis by the last replacement (a subquery naming the masked text once made DuckDB join and sort every record).
CREATE OR REPLACE TEMP MACRO masked_error(t) AS CASE WHEN nullif(trim(t), '') IS NOT NULL THEN regexp_replace(regexp_replace(
    regexp_replace(regexp_replace(split_part(trim(t), chr(10), 1), '''[^'']*''|"[^"]*"|`[^`]*`', '"…"', 'g'),
    '\\[[^\\]]*\\]|\\{{[^}}]*\\}}', '[…]', 'g'), '[0-9]{{4,}}', 'N', 'g'), '^(.{{159}}).{{2,}}$', '\\1…') END;
CREATE OR REPLACE TEMP MACRO plausible(ts) AS CASE WHEN ts BETWEEN TIMESTAMPTZ '2000-01-01' AND TIMESTAMPTZ '2100-01-01' THEN ts END;
"""


def _staging_sql(source: str) -> str:
    """Stage the records of `source` (a table or a read) for the report day $day in time zone $tz."""
    return f"""
CREATE OR REPLACE TEMP TABLE staged AS
WITH src AS (
    SELECT coalesce(r."{SOURCE_FILE_FIELD}"->>'$', f.source_file) AS source_file, f.folder_day, f.folder_kind,
        TRY_CAST(r."{SOURCE_LINE_FIELD}"::VARCHAR AS BIGINT) AS source_line,
        coalesce(jstr(r.id), jstr(r.request_id)) AS request_id,
        r.startTime AS start_raw,
        ts_value(r.startTime) AS start_parsed,
        ts_value(r.endTime) AS end_parsed,
        jstr(r.call_type) AS call_type,
        -- Old SpendLogs rows have no status; their error is in metadata.error_information.
        coalesce(lower(jstr(r.status)), CASE WHEN jpresent(r.error_str) OR jpresent(r.error_information)
            OR json_extract(jobject(r.metadata), '$.error_information.error_class') IS NOT NULL THEN 'failure' ELSE 'success' END) AS status,
        jbool(r.stream) AS stream,
        coalesce(jstr(r.model_group), jstr(r.model)) AS model,
        json_extract(jobject(r.model_map_information), ['$.model_map_value.input_cost_per_token', '$.model_map_value.output_cost_per_token']) AS model_prices,
        jstr(r.model) AS deployment,
        jstr(r.custom_llm_provider) AS provider,
        jstr(r.api_base) AS api_base,
        r.prompt_tokens AS prompt_raw, r.completion_tokens AS completion_raw,
        coalesce(r.response_cost, r.spend) AS cost_raw,
        json_extract(jobject(r.metadata), ['$.user_api_key_hash', '$.user_api_key_alias', '$.user_api_key_team_id',
            '$.user_api_key_team_alias', '$.user_api_key_user_id', '$.usage_object.cache_read_input_tokens',
            '$.usage_object.prompt_tokens_details.cached_tokens', '$.usage_object.cache_creation_input_tokens',
            '$.user_api_key_end_user_id', '$.error_information.error_class', '$.error_information.error_code',
            -- SpendLogs rows keep these in metadata; payloads at the top level.
            '$.model_map_information.model_map_value.input_cost_per_token', '$.model_map_information.model_map_value.output_cost_per_token',
            '$.cost_breakdown.cache_read_cost', '$.cost_breakdown.cache_creation_cost', '$.error_information.error_message']) AS meta,
        r.metadata AS metadata_raw,
        r.api_key AS api_key_raw, r.team_id AS team_id_raw, r."user" AS user_raw,
        r.request_tags AS tags_raw,
        jbool(r.cache_hit) AS cache_hit,
        jobject(r.error_information) AS error_information,
        jstr(r.end_user) AS end_user_raw,
        json_extract(jobject(r.cost_breakdown), ['$.cache_read_cost', '$.cache_creation_cost']) AS cache_costs,
        r.error_str AS error_raw,
        -- Cheap text tests: the prompt/response is parsed only where an estimate needs it.
        coalesce(r.messages::VARCHAR NOT IN ('null', '[]', '{{}}', '""', '"{{}}"', '"[]"'), false)
            OR coalesce(r.response::VARCHAR NOT IN ('null', '[]', '{{}}', '""', '"{{}}"', '"[]"'), false) AS has_text,
        r.messages AS messages_raw, r.response AS response_raw
    FROM {source} r JOIN read_paths f ON f.read_path = r.filename
),
timed AS (
    SELECT *, plausible(start_parsed) AS start_time, plausible(end_parsed) AS end_time FROM src
),
typed AS (
    SELECT *, CAST(timezone($tz, start_time) AS DATE) AS local_day FROM timed
),
judged AS (
    SELECT *,
        -- A logger's date folder holds requests written that day: those started in its span or just before;
        -- an API page's folder, the report day it was asked for; an undated file, any day.
        local_day IS NOT NULL AND CASE folder_kind
            WHEN $undated THEN true
            WHEN $report_day THEN folder_day = local_day
            ELSE folder_day BETWEEN CAST(timezone($tz, local_day::TIMESTAMP) AS DATE)
                AND CAST(timezone($tz, (local_day + 1)::TIMESTAMP) - INTERVAL 1 MICROSECOND + INTERVAL 1 DAY AS DATE) END AS in_window,
        coalesce(meta[6], meta[7]) AS cached_raw,
        meta[8] AS cache_creation_raw,
        -- Each number is read once here; the rules below use these columns.
        jnum(prompt_raw) AS prompt_n, jnum(completion_raw) AS completion_n, jnum(cost_raw) AS cost_n,
        jnum(coalesce(meta[6], meta[7])) AS cached_n, jnum(meta[8]) AS cache_creation_n,
        jnum(coalesce(cache_costs[1], meta[14])) AS cache_read_cost_n, jnum(coalesce(cache_costs[2], meta[15])) AS cache_creation_cost_n,
        -- A cost of 0 with a model map of zero prices is "priced at zero" at the gateway (LiteLLM also
        -- registers deployments it has no price for that way, so a known list price still re-prices it);
        -- without a model map the gateway knew no price at all.
        coalesce(jnum(coalesce(model_prices[1], meta[12])) = 0 AND jnum(coalesce(model_prices[2], meta[13])) = 0, false) AS priced_at_zero
    FROM typed
),
reasoned AS (
    SELECT *,
        CASE
            WHEN request_id IS NULL THEN 'missing or empty request id'
            WHEN start_time IS NULL THEN 'startTime is missing or not a timestamp (got ' || coalesce(shown(start_raw), 'nothing') || ')'
            WHEN bad_count(jpresent(prompt_raw), prompt_n)
                THEN 'prompt_tokens is not a whole number between 0 and {MAX_TOKENS:,} (got ' || shown(prompt_raw) || ')'
            WHEN bad_count(jpresent(completion_raw), completion_n)
                THEN 'completion_tokens is not a whole number between 0 and {MAX_TOKENS:,} (got ' || shown(completion_raw) || ')'
            WHEN bad_count(jpresent(cached_raw), cached_n)
                THEN 'cache_read_input_tokens is not a whole number between 0 and {MAX_TOKENS:,} (got ' || shown(cached_raw) || ')'
            WHEN bad_count(jpresent(cache_creation_raw), cache_creation_n)
                THEN 'cache_creation_input_tokens is not a whole number (got ' || shown(cache_creation_raw) || ')'
            WHEN jpresent(cost_raw) AND NOT coalesce(isfinite(cost_n) AND cost_n BETWEEN 0 AND {MAX_COST_USD}, false)
                THEN 'response_cost is not a number between 0 and {MAX_COST_USD} USD (got ' || shown(cost_raw) || ')'
            WHEN status NOT IN ('success', 'failure') THEN 'status is neither success nor failure (got ' || left(status, 40) || ')'
            WHEN model IS NULL AND status <> 'failure' THEN 'missing model and model_group on a successful request'
            WHEN NOT in_window THEN 'startTime ' || strftime(start_time, '%Y-%m-%d %H:%M:%S') || ' UTC is outside the days folder ' || folder_day || ' can hold'
        END AS reason,
        status = 'success' AND (prompt_n IS NULL OR completion_n IS NULL OR (prompt_n = 0 AND completion_n = 0))
            AND NOT coalesce(cache_hit, false) AS tokens_absent
    FROM judged
)
SELECT
    CASE WHEN in_window THEN local_day ELSE folder_day END AS owner_day,
    source_file, source_line, folder_day, request_id, reason, start_time, end_time, call_type, status, stream,
    coalesce(model, $no_model) AS model, deployment, provider, api_base, cache_hit, priced_at_zero,
    coalesce(jstr(error_information->'error_class'), jstr(meta[10])) AS error_class,
    coalesce(jscalar(error_information->'error_code'), jscalar(meta[11])) AS error_code,
    CASE WHEN status = 'failure' THEN masked_error(coalesce(jstr(error_information->'error_message'), jstr(error_raw), jstr(meta[16]))) END AS error_message,
    coalesce(end_user_raw, jstr(meta[9])) AS end_user,
    CAST(CASE WHEN isfinite(cache_read_cost_n) AND cache_read_cost_n >= 0 THEN cache_read_cost_n END AS DECIMAL(18, 10)) AS cache_read_cost_usd,
    CAST(CASE WHEN isfinite(cache_creation_cost_n) AND cache_creation_cost_n >= 0 THEN cache_creation_cost_n END AS DECIMAL(18, 10)) AS cache_creation_cost_usd,
    TRY_CAST(prompt_n AS BIGINT) AS prompt_tokens,
    TRY_CAST(completion_n AS BIGINT) AS completion_tokens,
    coalesce(TRY_CAST(cached_n AS BIGINT), 0) AS cached_input_tokens,
    coalesce(TRY_CAST(cache_creation_n AS BIGINT), 0) AS cache_creation_tokens,
    cost_n AS cost,
    coalesce(jstr(meta[1]), jstr(api_key_raw), 'unassigned') AS key_hash,
    jstr(meta[2]) AS key_alias,
    coalesce(jstr(meta[3]), jstr(team_id_raw), 'unassigned') AS team_id,
    jstr(meta[4]) AS team_alias,
    coalesce(jstr(meta[5]), jstr(user_raw)) AS user_id,
    CASE jtype(tags_raw)
        WHEN 'ARRAY' THEN TRY(CAST(from_json(tags_raw, '["VARCHAR"]') AS VARCHAR[]))
        WHEN 'VARCHAR' THEN CASE WHEN json_valid(tags_raw->>'$') THEN TRY(CAST(from_json((tags_raw->>'$')::JSON, '["VARCHAR"]') AS VARCHAR[])) END
    END AS request_tags,
    -- A CASE, not AND: DuckDB evaluated every operand of the AND, trimming every record's whole metadata text.
    CASE WHEN meta IS NULL AND jpresent(metadata_raw)
        THEN coalesce(trim(metadata_raw->>'$') NOT IN ('', 'null', '{{}}'), true) ELSE false END AS metadata_unreadable,
    has_text,
    tokens_absent,
    -- Only the text an estimate needs is kept; the rest is dropped here.
    CASE WHEN has_text AND tokens_absent AND reason IS NULL THEN messages_raw::VARCHAR END AS messages_text,
    CASE WHEN has_text AND tokens_absent AND reason IS NULL THEN response_raw::VARCHAR END AS response_text
FROM reasoned
WHERE (CASE WHEN in_window THEN local_day ELSE folder_day END) = $day
    -- An API page asked for one report day may hold a request of the next at the span's edge:
    -- that request is on the next day's pages too, and is read there.
    AND NOT (folder_kind = $report_day AND local_day IS NOT NULL AND local_day <> folder_day)
"""


_PUBLISH_SQL = """
SELECT
    s.owner_day AS day, s.request_id, s.start_time, s.end_time, s.call_type, s.status, s.stream,
    s.model, s.deployment, s.provider, s.api_base, s.key_hash, s.key_alias, s.team_id, s.team_alias, s.user_id, s.end_user,
    s.request_tags, s.cache_hit,
    t.input_tokens, t.output_tokens, t.input_tokens + t.output_tokens AS total_tokens, s.cached_input_tokens, s.cache_creation_tokens,
    CAST(CASE
        WHEN s.status = 'failure' THEN coalesce(s.cost, 0)
        WHEN s.cost > 0 THEN s.cost
        WHEN coalesce(s.cache_hit, false) THEN 0
        WHEN p.model IS NOT NULL THEN (t.input_tokens - least(s.cached_input_tokens, t.input_tokens)) * p.input
            + least(s.cached_input_tokens, t.input_tokens) * p.cached_input + t.output_tokens * p.output
        WHEN s.priced_at_zero THEN 0
    END AS DECIMAL(18, 10)) AS spend_usd,
    s.cache_read_cost_usd, s.cache_creation_cost_usd,
    -- What the cached input tokens would have cost more at the model's full input price (unknown for an unpriced model).
    CAST(CASE WHEN s.cached_input_tokens = 0 OR t.input_tokens = 0 THEN 0
        WHEN p.model IS NOT NULL THEN least(s.cached_input_tokens, t.input_tokens) * (p.input - p.cached_input) END AS DECIMAL(18, 10)) AS cache_savings_usd,
    s.estimate_used AS tokens_estimated,
    s.tokens_absent AND NOT s.estimate_used AS tokens_missing,
    r.needs_price AND p.model IS NOT NULL AND t.input_tokens + t.output_tokens > 0 AS spend_repriced,
    r.needs_price AND p.model IS NULL AND NOT s.priced_at_zero AS unpriced,
    s.metadata_unreadable, s.error_class, s.error_code, s.error_message, s.source_file, s.source_line
FROM deduplicated s
CROSS JOIN LATERAL (SELECT coalesce(s.prompt_tokens, 0) AS input_tokens, coalesce(s.completion_tokens, 0) AS output_tokens) t
CROSS JOIN LATERAL (SELECT s.status = 'success' AND NOT coalesce(s.cost > 0, false) AND NOT coalesce(s.cache_hit, false) AS needs_price) r
LEFT JOIN prices p ON p.model = s.model
"""


_JSON_COLUMNS = {name: "JSON" for name in SOURCE_COLUMNS}
_READ_LINE_FILES = "SELECT * FROM read_json($files, format = 'newline_delimited', columns = $columns, filename = true, maximum_object_size = $max_object)"


def _object_limit(max_bytes: int) -> int:
    return max(max_bytes, 1_048_576)


def _refused_by_bisection(read, paths: list[str]) -> list[str]:
    """Run `read` on all paths; where it fails, split the list to find the files it refuses."""
    if not paths:
        return []
    try:
        read(paths)
        return []
    except duckdb.Error:
        if len(paths) == 1:
            return paths
    middle = len(paths) // 2
    return _refused_by_bisection(read, paths[:middle]) + _refused_by_bisection(read, paths[middle:])


def _read_files(conn: duckdb.DuckDBPyConnection, paths: list[str], line_delimited: bool, max_bytes: int) -> list[str]:
    """Insert what DuckDB's JSON reader accepts; return the files it refused."""
    return _refused_by_bisection(lambda batch: conn.execute(
        "INSERT INTO raw_records BY NAME SELECT * FROM read_json(?, format = ?, columns = ?, filename = true, maximum_object_size = ?)",
        [batch, "newline_delimited" if line_delimited else "auto", _JSON_COLUMNS, _object_limit(max_bytes)],
    ), paths)


_EXTRACT = ", ".join(f"""'$."{name}"'""" for name in SOURCE_COLUMNS)
_DOCUMENT_COLUMNS = ", ".join(f'fields[{i + 1}] AS "{name}"' for i, name in enumerate(SOURCE_COLUMNS))


def _read_documents(conn: duckdb.DuckDBPyConnection, paths: list[str], max_bytes: int) -> list[str]:
    """One-request-per-file JSON (S3, Azure, GCS unbatched): read_text costs ~50x less per file than read_json.

    Files that are not a single request object within the size limit (arrays, API pages,
    several objects) are returned for salvage."""
    if not paths:
        return []
    conn.execute("CREATE OR REPLACE TEMP TABLE documents (filename VARCHAR, content VARCHAR)")
    unreadable = _refused_by_bisection(
        lambda batch: conn.execute("INSERT INTO documents SELECT filename, content FROM read_text(?)", [batch]), paths)
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE documents AS SELECT filename, content, "
        "octet_length(encode(content)) <= ? AND CASE WHEN json_valid(content) AND json_type(content) = 'OBJECT' "
        # A /spend/logs/v2 page holds its records in `data`: salvage unpacks it.
        "THEN NOT coalesce(json_type(content, '$.data') = 'ARRAY' AND (json_exists(content, '$.total') OR json_exists(content, '$.page')), false) "
        "ELSE false END AS readable FROM documents",
        [max_bytes],
    )
    conn.execute(
        f"INSERT INTO raw_records BY NAME SELECT {_DOCUMENT_COLUMNS}, filename "
        f"FROM (SELECT filename, json_extract(content, [{_EXTRACT}]) AS fields FROM documents WHERE readable)"
    )
    refused = [row[0] for row in conn.execute("SELECT filename FROM documents WHERE NOT readable ORDER BY filename").fetchall()]
    conn.execute("DROP TABLE documents")
    return unreadable + refused


def _estimate(conn: duckdb.DuckDBPyConnection) -> None:
    """Fill missing token counts from logged text with cl100k (the text is then dropped)."""
    rows = conn.execute(
        "SELECT DISTINCT ON (request_id, start_time) request_id, epoch_us(start_time), messages_text, response_text, prompt_tokens, completion_tokens "
        "FROM staged WHERE reason IS NULL AND tokens_absent AND has_text ORDER BY request_id, start_time"
    ).fetchall()
    conn.execute("ALTER TABLE staged ADD COLUMN estimate_used BOOLEAN DEFAULT false")
    if not rows:
        return
    estimated = estimate_many([(messages, response) for _, _, messages, response, _, _ in rows])
    ids, starts, prompts, completions = [], [], [], []
    for (request_id, start_us, _, _, prompt, completion), (est_prompt, est_completion) in zip(rows, estimated):
        both_zero = not prompt and not completion
        ids.append(request_id)
        starts.append(start_us)
        prompts.append(est_prompt if prompt is None or both_zero else prompt)
        completions.append(est_completion if completion is None or both_zero else completion)
    estimates = {"request_id": np.array(ids, dtype=object), "start_us": np.array(starts, dtype=np.int64),
                 "p": np.array(prompts, dtype=np.int64), "c": np.array(completions, dtype=np.int64)}
    conn.register("token_estimates", estimates)
    conn.execute(
        "UPDATE staged SET prompt_tokens = e.p, completion_tokens = e.c, estimate_used = true "
        "FROM token_estimates e WHERE staged.request_id = e.request_id AND epoch_us(staged.start_time) = e.start_us "
        "AND staged.reason IS NULL AND staged.tokens_absent AND staged.has_text"
    )
    conn.unregister("token_estimates")


@dataclass(frozen=True)
class DaySource:
    """Where a day's logs are and how to read them: everything staging a day needs (picklable, for a worker process)."""

    logs_dir: Path
    timezone: str
    prices: dict[str, ModelPrice]
    max_record_bytes: int
    source: str = FOLDER  # layout.FOLDER, BUCKET or GATEWAY_API: what the folder dates and modification times mean
    # A folder shared by the days of one run: each day also reads the next day's date folder, whose one-request files the
    # next day folds again; with this, a slice of files (the same paths and sizes) is folded once and its shard read by both.
    fold_cache: str | None = None


@dataclass(frozen=True)
class StagedDay:
    """A day read and validated but not stored: its rows in the connection's temp tables STAGED_TABLES."""

    day: dt.date
    folders: int
    files: int
    unrecognised_files: int
    unrecognised_with_data: int
    records_read: int
    rejected: int


# What staging leaves for store_day: the day's request rows, its rejections, its files that are not request logs.
STAGED_TABLES = ("day_requests", "day_rejections", "day_unrecognised")
# Processes staging days ahead of the writer in a multi-day run (each holds a day in memory).
MAX_STAGING_WORKERS = 4


def ingest_day(
    conn: duckdb.DuckDBPyConnection,
    *,
    logs_dir: Path,
    day: dt.date,
    timezone: str,
    prices: dict[str, ModelPrice],
    max_record_bytes: int,
    source: str = FOLDER,
) -> IngestStats:
    """Read, validate, de-duplicate and store one report day; replace what was there.

    `source`: where `logs_dir` comes from (layout.FOLDER, BUCKET or GATEWAY_API), which says
    what its folder dates and modification times mean."""
    where = DaySource(logs_dir, timezone, prices, max_record_bytes, source)
    return store_day(conn, stage_day(conn, where, day))


def stage_day(conn: duckdb.DuckDBPyConnection, where: DaySource, day: dt.date) -> StagedDay:
    """Read and validate one report day into the connection's temp tables (STAGED_TABLES); nothing is stored."""
    found = files_for_day(where.logs_dir, day, where.timezone, where.source)
    required = {day} if where.source == GATEWAY_API else set(candidate_folder_days(day, where.timezone)[:-1])
    if not _has_folder(found.folders_found, required) and not any(f.folder_kind == UNDATED for f in found.files):
        wanted = ", ".join(d.isoformat() for d in sorted(required))
        raise MissingLogsError(f"No gateway logs for {day}: no folder named {wanted} under {where.logs_dir}, "
                               "and no log file outside date folders modified since the day began")

    conn.execute(_MACROS)
    # Nothing below depends on the order rows are read in (every choice has its ORDER BY); keeping it costs
    # memory and time on many files.
    insertion_order = conn.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    conn.execute("SET preserve_insertion_order = false")
    try:
        return _stage_day(conn, where, day, found)
    finally:
        conn.execute(f"SET preserve_insertion_order = {'true' if insertion_order else 'false'}")


def _stage_day(conn, where: DaySource, day: dt.date, found: DayFiles) -> StagedDay:
    logs_dir, max_record_bytes = where.logs_dir, where.max_record_bytes
    register_prices(conn, where.prices)
    columns = ", ".join(f'"{name}" JSON' for name in SOURCE_COLUMNS)
    conn.execute(f"CREATE OR REPLACE TEMP TABLE raw_records ({columns}, filename VARCHAR)")

    with tempfile.TemporaryDirectory(prefix="usage-ingest-") as scratch:
        loader = _Loader(conn, logs_dir, day, max_record_bytes, Path(scratch), where.fold_cache)
        loader.add_paths(found.files)
        loader.rejections += [(_relative(entry.path, logs_dir), Rejection(None, entry.reason)) for entry in found.unreadable
                              if entry.folder_day in (day, None)]
        loader.load_documents([f for f in found.files if not f.line_delimited and f.size > 0])
        line_files = [f.location for f in found.files if f.line_delimited and f.size > 0]
        loader.salvage([f for f in found.files if f.size == 0])  # an empty file reads as zero rows; salvage names it
        loader.publish_paths()
        values = {"tz": where.timezone, "day": day, "undated": UNDATED, "report_day": REPORT_DAY, "no_model": NO_MODEL}
        try:
            # Clean files (the usual case) are parsed once, straight into the staging table.
            if line_files:
                conn.execute(_staging_sql(f"(SELECT * FROM raw_records UNION ALL BY NAME {_READ_LINE_FILES})"),
                             values | {"files": line_files, "columns": _JSON_COLUMNS, "max_object": _object_limit(max_record_bytes)})
            else:
                conn.execute(_staging_sql("raw_records"), values)
        except duckdb.Error:
            loader.load_lines(line_files)
            loader.publish_paths()
            conn.execute(_staging_sql("raw_records"), values)
        rejections = loader.rejections
    conn.execute("DROP TABLE raw_records")
    _estimate(conn)
    # A re-delivery repeats the id and the start time; the same id with another start is another request.
    # A day without any (the usual case) skips the window, which sorts every record.
    repeated = conn.execute("SELECT count(*) > count(DISTINCT (request_id, start_time)) FROM staged WHERE reason IS NULL").fetchone()[0]
    conn.execute(
        "CREATE OR REPLACE TEMP VIEW deduplicated AS SELECT * FROM staged WHERE reason IS NULL "
        + ("QUALIFY row_number() OVER (PARTITION BY request_id, start_time "
           "ORDER BY source_file, source_line NULLS LAST, end_time, prompt_tokens, completion_tokens, cost) = 1" if repeated else "")
    )
    conn.register("file_rejections", _rejection_arrays(rejections, day))
    own_unrecognised = [f for f in found.unrecognised if f.folder_day == day]
    conn.register("unrecognised_arrays", _unrecognised_arrays(own_unrecognised, logs_dir))
    conn.execute(f"CREATE OR REPLACE TEMP TABLE day_requests AS {_PUBLISH_SQL}")
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE day_rejections AS "
        "SELECT owner_day AS day, source_file, source_line, request_id, reason FROM staged WHERE reason IS NOT NULL "
        "UNION ALL SELECT CAST(day AS DATE), source_file, nullif(source_line, -1), NULL, reason FROM file_rejections")
    conn.execute("CREATE OR REPLACE TEMP TABLE day_unrecognised AS SELECT CAST($day AS DATE) AS day, source_file, bytes, holds_data "
                 "FROM unrecognised_arrays", {"day": day})
    staged_rows, staged_rejected = conn.execute("SELECT count(*), count(*) FILTER (reason IS NOT NULL) FROM staged").fetchall()[0]
    conn.unregister("file_rejections")
    conn.unregister("unrecognised_arrays")
    conn.execute("DROP VIEW deduplicated")
    conn.execute("DROP TABLE staged")
    return StagedDay(day=day, folders=len(found.folders_found), files=len(found.files), unrecognised_files=len(own_unrecognised),
                     unrecognised_with_data=sum(f.holds_data for f in own_unrecognised),
                     records_read=staged_rows + len(rejections), rejected=staged_rejected + len(rejections))


def ingest_days(conn: duckdb.DuckDBPyConnection, where: DaySource, days: list[dt.date], *, workers: int | None = None) -> Iterator[IngestStats]:
    """Each day ingested as by ingest_day, yielded in order. With several days, `workers` processes (default: one a core, at
    most 4) read and validate the days ahead, each into Parquet files of its own, while this connection, the warehouse's
    only writer, stores them one at a time. A day that fails (no logs) raises when its turn comes: the days before it are
    stored, the ones after it are not."""
    workers = min(workers or os.cpu_count() or 1, MAX_STAGING_WORKERS, len(days))
    with tempfile.TemporaryDirectory(prefix="usage-fold-") as fold_cache:
        yield from _ingest_days(conn, replace(where, fold_cache=fold_cache) if len(days) > 1 else where, days, workers)


def _ingest_days(conn: duckdb.DuckDBPyConnection, where: DaySource, days: list[dt.date], workers: int) -> Iterator[IngestStats]:
    if workers < 2:
        for day in days:
            yield store_day(conn, stage_day(conn, where, day))
        return
    context = worker_processes.context()
    threads = max(1, (os.cpu_count() or 1) // workers)
    ahead: deque[tuple[dt.date, Path, AsyncResult]] = deque()
    queue = iter(days)
    # Leaving the block (done, failed or interrupted) terminates the workers, whatever they were staging.
    with tempfile.TemporaryDirectory(prefix="usage-staging-") as scratch, context.Pool(workers, initializer=_start_worker) as pool:

        def submit() -> None:
            day = next(queue, None)
            if day is not None:
                folder = Path(scratch) / day.isoformat()
                folder.mkdir()
                ahead.append((day, folder, pool.apply_async(_stage_to_files, (where, day, folder, threads))))

        for _ in range(workers + 1):  # a bounded look-ahead: at most this many staged days wait on disk
            submit()
        while ahead:
            day, folder, staging = ahead.popleft()
            staged = staging.get()
            for table in STAGED_TABLES:
                conn.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM read_parquet(?)", [str(folder / f"{table}.parquet")])
            shutil.rmtree(folder)
            submit()
            yield store_day(conn, staged)


def _start_worker() -> None:
    """A staging or folding worker ignores Ctrl-C (sent to the whole terminal's process group): the parent decides, and
    terminates it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    collector.tune()


def _stage_to_files(where: DaySource, day: dt.date, folder: Path, threads: int) -> StagedDay:
    """A worker's part: one day staged in a DuckDB of its own, its tables written to `folder` as Parquet."""
    with duckdb.connect(config={"threads": threads, "temp_directory": str(folder / "spill")}) as conn:
        conn.execute("SET enable_progress_bar = false")  # a worker's long queries would draw it over the run's own output
        staged = stage_day(conn, where, day)
        for table in STAGED_TABLES:
            conn.execute(f"COPY {table} TO '{folder / table}.parquet' (FORMAT parquet)")
    return staged


def store_day(conn: duckdb.DuckDBPyConnection, staged: StagedDay) -> IngestStats:
    """Replace the day's stored rows by its staged ones (the temp tables STAGED_TABLES, dropped after)."""
    day_sql = staged.day.isoformat()
    # Re-running a day replaces it in one transaction, so a day is never counted twice.
    with transaction(conn):
        conn.execute("DELETE FROM requests WHERE day = ?", [day_sql])
        conn.execute("DELETE FROM rejected_records WHERE day = ?", [day_sql])
        conn.execute("DELETE FROM ingest_days WHERE day = ?", [day_sql])
        conn.execute("DELETE FROM unrecognised_files WHERE day = ?", [day_sql])
        conn.execute("INSERT INTO unrecognised_files SELECT day, source_file, bytes, holds_data FROM day_unrecognised")
        conn.execute("INSERT INTO requests BY NAME SELECT * FROM day_requests")
        conn.execute("INSERT INTO rejected_records SELECT day, source_file, source_line, request_id, reason FROM day_rejections")
        stats = _stats(conn, staged)
        conn.execute(f"INSERT INTO ingest_days BY NAME SELECT {', '.join(f'? AS {name}' for name in asdict(stats))}", list(asdict(stats).values()))
    for table in STAGED_TABLES:
        conn.execute(f"DROP TABLE {table}")
    return stats


def _has_folder(folders: list[Path], required: set[dt.date]) -> bool:
    names = {d.isoformat() for d in required}
    return any(folder.name in names for folder in folders)


class _Loader:
    """Fills `raw_records` from files DuckDB reads whole, salvaging the ones it refuses."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, logs_dir: Path, day: dt.date, max_bytes: int, scratch: Path,
                 fold_cache: str | None = None):
        self.conn, self.logs_dir, self.day, self.max_bytes, self.scratch = conn, logs_dir, day, max_bytes, scratch
        self.fold_cache = fold_cache
        self.paths: list[tuple[str, str, str, str]] = []  # (path read, source file, folder day, folder kind)
        self.by_path: dict[str, LogFile] = {}
        self.rejections: list[tuple[str, Rejection]] = []

    def add_paths(self, files: list[LogFile]) -> None:
        """Know every file; map those DuckDB reads as they are (a file to fold is mapped only if it is not folded)."""
        for log_file in files:
            self.by_path[log_file.location] = log_file
        self._map([f for f in files if not self._to_fold(f)])

    def _map(self, files: list[LogFile]) -> None:
        self.paths += [(f.location, _relative(f.location, self.logs_dir), f.folder_day.isoformat(), f.folder_kind) for f in files]

    def _to_fold(self, log_file: LogFile) -> bool:
        return not log_file.line_delimited and not log_file.gzip and 0 < log_file.size <= self.max_bytes

    def load_documents(self, files: list[LogFile]) -> None:
        refused = _read_files(self.conn, [f.location for f in files if f.gzip], False, self.max_bytes)
        plain = [f for f in files if not f.gzip]
        left = self.fold([f for f in plain if self._to_fold(f)])
        refused += _read_documents(self.conn, [f.location for f in left + [f for f in plain if f.size > self.max_bytes]], self.max_bytes)
        self.salvage([self.by_path[p] for p in refused])

    def fold(self, files: list[LogFile]) -> list[LogFile]:
        """Fold one-request-per-file JSON into NDJSON shards (one line per file, its name in SOURCE_FILE_FIELD).

        Reading 200,000 small files is one open and read each here, against a reader set up
        per file in DuckDB. A file that is not plainly one object on one line (pretty-printed,
        a page of the API, not UTF-8) is left to the per-file reader and returned, as are the
        files of a shard DuckDB refuses, so rejections still name the original object."""
        groups: dict[tuple[dt.date, str], list[LogFile]] = {}
        for log_file in files:
            groups.setdefault((log_file.folder_day, log_file.folder_kind), []).append(log_file)
        slices = [(folder_day, folder_kind, members[start:start + FOLD_SHARD_FILES])
                  for (folder_day, folder_kind), members in groups.items() for start in range(0, len(members), FOLD_SHARD_FILES)]
        tasks = [(self._shard_path(number, piece[2]), *piece) for number, piece in enumerate(slices)]

        written = [self._folded_before(shard) for shard, *_ in tasks]
        todo = [index for index, done in enumerate(written) if done is None]
        jobs = [(_partial(tasks[index][0]), [(f.location, _relative(f.location, self.logs_dir)) for f in tasks[index][3]]) for index in todo]
        for index, files in zip(todo, _fold_slices(jobs)):
            written[index] = set(files)
            self._keep(tasks[index][0], written[index])
        left: list[LogFile] = []
        shards: dict[str, list[LogFile]] = {}
        for (shard, folder_day, folder_kind, members), done in zip(tasks, written):
            left += [f for f in members if f.location not in done]
            folded = [f for f in members if f.location in done]
            if folded:
                shards[str(shard)] = folded
                self.paths.append((str(shard), "", folder_day.isoformat(), folder_kind))
        for shard in _read_files(self.conn, list(shards), True, self.max_bytes):
            left += shards[shard]
        self._map(left)
        return left

    def _shard_path(self, number: int, members: list[LogFile]) -> Path:
        """Where a slice's shard is written: in the run's fold cache, named by the slice's paths and sizes, else in scratch."""
        if self.fold_cache is None:
            return self.scratch / f"folded-{len(self.paths)}-{number}.ndjson"
        digest = hashlib.sha256(f"{self.logs_dir}\n".encode())
        for log_file in members:
            digest.update(f"{log_file.location}\t{log_file.size}\n".encode())
        return Path(self.fold_cache) / f"{digest.hexdigest()}.ndjson"

    def _folded_before(self, shard: Path) -> set[str] | None:
        """The files an earlier day of the run folded into `shard` (its list, written last, says the shard is whole)."""
        if self.fold_cache is None:
            return None
        try:
            return set(json.loads(shard.with_suffix(".json").read_text()))
        except OSError:
            return None

    def _keep(self, shard: Path, written: set[str]) -> None:
        """Publish a slice's shard, then its list of folded files (two days folding the same slice write the same files)."""
        os.replace(_partial(shard), shard)
        if self.fold_cache is not None:
            listing = shard.with_suffix(f".{os.getpid()}.list")
            listing.write_text(json.dumps(sorted(written)))
            os.replace(listing, shard.with_suffix(".json"))

    def load_lines(self, paths: list[str]) -> None:
        self.salvage([self.by_path[p] for p in _read_files(self.conn, paths, True, self.max_bytes)])

    def salvage(self, files: list[LogFile]) -> None:
        for log_file in files:
            records, problems = salvage_records(log_file.location,
                                                line_delimited=log_file.line_delimited, max_bytes=self.max_bytes)
            source = _relative(log_file.location, self.logs_dir)
            # Records that cannot be dated belong to the day their folder is named after.
            if log_file.folder_day == self.day:
                self.rejections += [(source, problem) for problem in problems]
            if not records:
                continue
            salvaged = self.scratch / f"salvaged-{len(self.paths)}.ndjson"
            with salvaged.open("w", encoding="utf-8") as stream:
                write_ndjson(records, stream)
            self.paths.append((str(salvaged), source, log_file.folder_day.isoformat(), log_file.folder_kind))
            if _read_files(self.conn, [str(salvaged)], True, self.max_bytes) and log_file.folder_day == self.day:
                self.rejections.append((source, Rejection(None, f"{len(records)} records readable by Python but not by DuckDB")))

    def publish_paths(self) -> None:
        """Expose the (path read → source file, folder day, folder kind) map to SQL as `read_paths`."""
        columns = list(zip(*self.paths)) if self.paths else [(), (), (), ()]
        arrays = {name: np.array(values, dtype=object) for name, values in zip(("read_path", "source_file", "folder_day", "folder_kind"), columns)}
        self.conn.register("read_paths_np", arrays)
        self.conn.execute("CREATE OR REPLACE TEMP TABLE read_paths AS SELECT read_path, source_file, CAST(folder_day AS DATE) AS folder_day, "
                          "CAST(folder_kind AS VARCHAR) AS folder_kind FROM read_paths_np")
        self.conn.unregister("read_paths_np")


def _fold_slices(jobs: list[tuple[Path, list[tuple[str, str]]]]) -> list[list[str]]:
    """Each slice's files written to its shard (write_shard); the files each holds. Folding is Python per file, bound by one
    core: many files are folded by processes when this one may start them (a run's staging worker, a daemon, may not; it
    folds in threads, whose waits on a cold file system overlap)."""
    files = sum(len(pairs) for _, pairs in jobs)
    cores = min(os.cpu_count() or 1, FOLD_THREADS)
    if files >= FOLD_IN_PROCESSES_FROM and cores > 1 and not multiprocessing.current_process().daemon:
        with ProcessPoolExecutor(cores, mp_context=worker_processes.context(), initializer=_start_worker) as pool:
            return list(pool.map(write_shard, *zip(*jobs)))
    with ThreadPoolExecutor(max_workers=FOLD_THREADS) as pool:
        return list(pool.map(write_shard, *zip(*jobs)))


def _partial(shard: Path) -> Path:
    """A shard while it is written: this process's own file (two workers may fold the same slice at once)."""
    return shard.with_suffix(f".{os.getpid()}.partial")


def _relative(path: Path | str, root: Path) -> str:
    text, prefix = str(path), f"{root}{'' if str(root).endswith('/') else '/'}"
    if text.startswith(prefix) and "/../" not in text and "/./" not in text:
        return text[len(prefix):]  # what relative_to gives, without parsing a Path per file
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return Path(path).as_posix()


def _rejection_arrays(rejections: list[tuple[str, Rejection]], day: dt.date) -> dict:
    return {
        "day": np.array([day.isoformat()] * len(rejections), dtype=object),
        "source_file": np.array([source for source, _ in rejections], dtype=object),
        "source_line": np.array([r.line if r.line is not None else -1 for _, r in rejections], dtype=np.int64),
        "reason": np.array([r.reason for _, r in rejections], dtype=object),
    }


def _unrecognised_arrays(files: list[UnrecognisedFile], root: Path) -> dict:
    return {
        "source_file": np.array([_relative(f.path, root) for f in files], dtype=object),
        "bytes": np.array([f.size for f in files], dtype=np.int64),
        "holds_data": np.array([f.holds_data for f in files], dtype=bool),
    }


def _stats(conn: duckdb.DuckDBPyConnection, staged: StagedDay) -> IngestStats:
    rows, estimated, missing, repriced, unpriced, unreadable = conn.execute(
        "SELECT count(*), count(*) FILTER (tokens_estimated), count(*) FILTER (tokens_missing), count(*) FILTER (spend_repriced), "
        "count(*) FILTER (unpriced), count(*) FILTER (metadata_unreadable) FROM requests WHERE day = ?",
        [staged.day.isoformat()],
    ).fetchone()
    # Ids of the day met with another start time, that day or on another day ingested within COLLISION_WINDOW_DAYS of it: the
    # days are stored in order, so the window's row groups alone are read, however long the history (all of it grew every day).
    collisions = conn.execute(
        "SELECT count(*) FROM (SELECT request_id FROM requests WHERE day BETWEEN $day::DATE - $window AND $day::DATE + $window "
        "AND request_id IN (SELECT request_id FROM requests WHERE day = $day) GROUP BY request_id HAVING count(*) > 1)",
        {"day": staged.day.isoformat(), "window": COLLISION_WINDOW_DAYS},
    ).fetchone()[0]
    return IngestStats(
        day=staged.day.isoformat(),
        folders=staged.folders,
        files=staged.files,
        unrecognised_files=staged.unrecognised_files,
        records_read=staged.records_read,
        rows=rows,
        rejected=staged.rejected,
        duplicates=staged.records_read - staged.rejected - rows,
        tokens_estimated=estimated,
        tokens_missing=missing,
        spend_repriced=repriced,
        unpriced=unpriced,
        metadata_unreadable=unreadable,
        id_collisions=collisions,
        unrecognised_with_data=staged.unrecognised_with_data,
    )
