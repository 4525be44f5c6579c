"""Record-by-record reading of a log file DuckDB could not read in one go.

The fast path hands whole files to DuckDB's JSON reader; one bad line makes it
refuse the file. This module then reads that file line by line (or as one JSON
document), keeps every record that is a JSON object and turns everything else into
a rejection with its reason and line number, so a bad line never costs the file.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

SOURCE_LINE_FIELD = "__source_line"
UTF8_BOM = b"\xef\xbb\xbf"
GZIP_MAGIC = b"\x1f\x8b"
PAGE_KEYS = {"total", "page", "page_size", "total_pages"}


@dataclass(frozen=True)
class Rejection:
    line: int | None
    reason: str
    request_id: str | None = None


def _reject_constant(name: str) -> str:
    # NaN / Infinity are not JSON; keep them as text so validation rejects the field by name.
    return name


def _describe_type(value: Any) -> str:
    if isinstance(value, list):
        return "a JSON array"
    if isinstance(value, str):
        return "a JSON string"
    if isinstance(value, bool):
        return "a JSON boolean"
    if value is None:
        return "JSON null"
    return "a JSON number"


def _parse(text: bytes, line: int | None, max_bytes: int) -> tuple[dict | None, Rejection | None]:
    if len(text) > max_bytes:
        return None, Rejection(line, f"record is {len(text) / 1e6:.1f} MB, above the {max_bytes / 1e6:g} MB limit (USAGE_MAX_RECORD_MB)")
    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, Rejection(line, f"not valid UTF-8 (byte 0x{text[exc.start]:02x} at offset {exc.start})")
    try:
        value = json.loads(decoded, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        return None, Rejection(line, f"invalid JSON: {exc.msg} at column {exc.colno}")
    except RecursionError:
        return None, Rejection(line, "invalid JSON: nested too deeply")
    if not isinstance(value, dict):
        return None, Rejection(line, f"{_describe_type(value)} where a JSON object was expected")
    return value, None


def _lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    for number, raw in enumerate(stream, start=1):
        raw = raw.rstrip(b"\r\n")
        yield number, raw.removeprefix(UTF8_BOM) if number == 1 else raw


def _is_gzip(path: str) -> bool:
    """Compressed or not by the file's first bytes, whatever its name says."""
    with open(path, "rb") as stream:
        return stream.read(2) == GZIP_MAGIC


def _open(path: str) -> IO[bytes]:
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")


def salvage_records(path: str, *, line_delimited: bool, max_bytes: int) -> tuple[list[dict], list[Rejection]]:
    """Read one file record by record: (records with their line number, rejections).

    A file is read for what it is: gzip by its first bytes, a UTF-8 byte-order mark skipped,
    several JSON documents one after the other read as several records."""
    records: list[dict] = []
    rejections: list[Rejection] = []
    seen_content = False
    last_line = 0
    try:
        with _open(path) as stream:
            if not line_delimited:
                content = stream.read().removeprefix(UTF8_BOM)
                seen_content = bool(content.strip())
                whole = _parse_document(content, max_bytes)
                if whole is not None:
                    return whole
                stream = _open(path)
            with stream:
                for number, raw in _lines(stream):
                    last_line = number
                    if not raw.strip():
                        continue
                    seen_content = True
                    record, rejection = _parse(raw, number, max_bytes)
                    if rejection:
                        rejections.append(rejection)
                    else:
                        record[SOURCE_LINE_FIELD] = number
                        records.append(record)
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        rejections.append(Rejection(last_line + 1 if last_line else None, f"compressed file is truncated or corrupt after line {last_line}: {exc}"))
        seen_content = True
    except OSError as exc:
        rejections.append(Rejection(None, f"file cannot be read: {exc.strerror or exc}"))
        seen_content = True
    if not seen_content:
        rejections.append(Rejection(None, "empty file"))
    return records, rejections


def is_spend_logs_page(value: Any) -> bool:
    """A page of the gateway's `GET /spend/logs/v2`: `{data: [rows], total, page, page_size, total_pages}`."""
    return isinstance(value, dict) and isinstance(value.get("data"), list) and bool(PAGE_KEYS & value.keys())


def _documents(text: str) -> list[Any] | None:
    """The JSON documents of a text, one or several one after the other; None if any part is not JSON."""
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    values, index = [], 0
    try:
        while True:
            while index < len(text) and text[index].isspace():
                index += 1
            if index == len(text):
                return values
            value, index = decoder.raw_decode(text, index)
            values.append(value)
    except (json.JSONDecodeError, RecursionError):
        return None


def _parse_document(content: bytes, max_bytes: int) -> tuple[list[dict], list[Rejection]] | None:
    """A whole-file JSON document: one object, the records of an array or an API page (SpendLogs),
    or several objects written one after the other.

    None when the file is not JSON throughout (then it is read line by line)."""
    if not content.strip():
        return [], [Rejection(None, "empty file")]
    try:
        documents = _documents(content.decode("utf-8"))
    except UnicodeDecodeError:
        return None
    if documents is None:
        return None
    if len(documents) == 1 and isinstance(documents[0], dict) and not is_spend_logs_page(documents[0]) and len(content) > max_bytes:
        return [], [Rejection(1, f"record is {len(content) / 1e6:.1f} MB, above the {max_bytes / 1e6:g} MB limit (USAGE_MAX_RECORD_MB)")]
    records, rejections = [], []
    index = 0
    for document in documents:
        in_array = is_spend_logs_page(document) or isinstance(document, list)
        for item in (document["data"] if is_spend_logs_page(document) else document if in_array else [document]):
            index += 1
            if isinstance(item, dict):
                item[SOURCE_LINE_FIELD] = index
                records.append(item)
            else:
                element = f"array element {index} is " if in_array else ""
                rejections.append(Rejection(index, f"{element}{_describe_type(item)} where a JSON object was expected"))
    return records, rejections


def write_ndjson(records: list[dict], stream: IO[str]) -> None:
    """Write salvaged records as NDJSON for DuckDB's reader (NaN kept as text by the parser)."""
    for record in records:
        stream.write(json.dumps(record, ensure_ascii=False, allow_nan=False))
        stream.write("\n")
