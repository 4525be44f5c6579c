"""Export files for finance: the same rows as CSV and JSON, plus a manifest.

CSV: UTF-8, header row, dot decimals, text cells that a spreadsheet would run as a
formula (starting with = + - @ or a control character) prefixed with a quote. JSON:
`{"metadata": {...}, "data": [...]}`. Nothing time-dependent is written in them, so
rebuilding a period gives byte-identical files; only the manifest says when it was built.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n")
MONEY_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class ExportTable:
    name: str
    columns: list[str]
    money_columns: frozenset[str]
    rows: list[dict]


def spreadsheet_safe(text: str) -> str:
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _csv_cell(value, money: bool) -> str:
    if value is None:
        return ""
    if money:
        return str(Decimal(value).quantize(MONEY_PLACES))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return spreadsheet_safe(value)
    return str(value)


def _json_value(value, money: bool):
    if value is None:
        return None
    if money:
        return float(Decimal(value).quantize(MONEY_PLACES))
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


def render_csv(table: ExportTable) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow([_csv_cell(row.get(c), c in table.money_columns) for c in table.columns])
    return buffer.getvalue().encode("utf-8")


def render_json(table: ExportTable, metadata: dict) -> bytes:
    data = [{c: _json_value(row.get(c), c in table.money_columns) for c in table.columns} for row in table.rows]
    document = {"metadata": {**metadata, "export": table.name, "columns": table.columns, "rows": len(data)}, "data": data}
    # One row per line: readable, and json's C encoder (indent= falls back to pure Python, 5x slower).
    rows = ",\n".join(json.dumps(row, ensure_ascii=False) for row in data)
    head = json.dumps(document["metadata"], ensure_ascii=False)
    return f'{{"metadata": {head},\n"data": [\n{rows}\n]}}\n'.encode("utf-8")


def write_exports(folder: Path, tables: list[ExportTable], metadata: dict, generated_at: str | None = None) -> list[dict]:
    """Write every table as CSV and JSON, and a manifest listing each file's rows and sha256,
    the period, its source days and the generation time (the data files carry no time)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for table in tables:
        for suffix, content in (("csv", render_csv(table)), ("json", render_json(table, metadata))):
            name = f"{table.name}.{suffix}"
            (folder / name).write_bytes(content)
            entries.append({"file": name, "export": table.name, "format": suffix, "rows": len(table.rows), "bytes": len(content),
                            "sha256": hashlib.sha256(content).hexdigest()})
    manifest = {"metadata": {**metadata, "generated_at": generated_at}, "files": entries}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return entries
