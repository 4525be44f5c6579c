"""Export files for finance: the same rows as CSV and JSON, plus a manifest.

CSV: UTF-8, header row, dot decimals, text cells that a spreadsheet would run as a
formula, in any locale, neutralised with a quote (see `spreadsheet_safe`). JSON:
`{"metadata": {...}, "data": [...]}`. Nothing time-dependent is written in them, so
rebuilding a period gives byte-identical files; only the manifest says when it was built.
A file larger than COMPRESS_OVER is written gzip-compressed (`focus.json.gz`; no name or time
in the gzip header, so still byte-identical), the manifest saying so.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import numbers
import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

FORMULA_CHARS = "=+-@"  # what starts a formula; a cell starting with a tab or line break is neutralised too
# Where a spreadsheet may start a cell inside our text: after "," (English locales), ";"
# (French/German Excel, LibreOffice in those locales), a tab (TSV, paste) or a line break.
CELL_SEPARATORS = ",;\t\r\n"
# A cell that begins, past any quotes (a quote opening a field is dropped by the reader) and
# white space (trimmed by some readers), with = + - @ is run as a formula (OWASP: CSV injection).
_FORMULA_AHEAD = rf'[\s"]*[{re.escape(FORMULA_CHARS)}]'
_FORMULA_CELL = re.compile(rf"^(?:{_FORMULA_AHEAD}|[\t\r\n])")
_FORMULA_PIECE = re.compile(rf"(?<=[{re.escape(CELL_SEPARATORS)}])(?={_FORMULA_AHEAD})")
MONEY_PLACES = Decimal("0.000001")


@dataclass(frozen=True)
class ExportTable:
    name: str
    columns: list[str]
    money_columns: frozenset[str]  # written with 6 decimals
    rows: list[dict]
    # Money written with every decimal it has (unrounded shares, estimated costs a variance is recomputed from): wins over money_columns.
    exact_columns: frozenset[str] = frozenset()


def spreadsheet_safe(text: str) -> str:
    """Text that no spreadsheet runs as a formula, whichever separator its locale splits on.

    OWASP's advice is to prefix a dangerous cell with a single quote, and notes that the
    separators and quotes inside a value can start a new cell. Quoting the field (its other
    advice) protects only a reader that splits on the separator we quoted for: French or
    German Excel opening this comma file splits `a,"x;=cmd"` on ";" and gets a cell `=cmd"`,
    since a quote opens a field only at its start. So every piece a reader could see as a
    cell is neutralised in place: the text itself when it starts like a formula, and each
    point after a "," ";" tab or line break where one follows (past quotes and white space)
    gets a quote, e.g. `x;=cmd` → `x;'=cmd`, `b,@SUM(1)` → `b,'@SUM(1)`. The reader in a comma
    locale sees the text with those marks; JSON keeps the text exactly as it came.
    """
    text = _FORMULA_PIECE.sub("'", text)
    return "'" + text if _FORMULA_CELL.match(text) else text


def _csv_cell(value, money: bool, exact: bool = False) -> str:
    if value is None:
        return ""
    if exact:
        return format(Decimal(value), "f")  # as stored: 0.000800000000000000, never 8E-4
    if money:
        return str(Decimal(value).quantize(MONEY_PLACES))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, numbers.Number):
        return str(value)  # numbers stay numbers: a variance of -3.2 is not a formula
    return spreadsheet_safe(str(value))  # text, and anything else written as text (dates, lists)


def _json_value(value, money: bool, exact: bool = False):
    if value is None:
        return None
    if exact:
        return float(Decimal(value))
    if money:
        return float(Decimal(value).quantize(MONEY_PLACES))
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return value


# A column whose values are all of these types is written by one rule for the whole column (as `_csv_cell` would write each).
_TEXT = frozenset({str, type(None)})
_NUMBERS = frozenset({int, float, Decimal, type(None)})


def _csv_column(values: list, money: bool, exact: bool) -> list[str]:
    """A column's cells as `_csv_cell` writes them, with the rule chosen once for the column (millions of cells in a large period)."""
    kinds = set(map(type, values))
    if not (money or exact) and kinds <= _TEXT:  # each distinct text made spreadsheet-safe once (key hashes, aliases, models and dates repeat)
        safe = {text: spreadsheet_safe(text) for text in set(values) - {None}} | {None: ""}
        return list(map(safe.__getitem__, values))
    if not (money or exact) and kinds <= _NUMBERS:
        return ["" if value is None else str(value) for value in values]
    if money and not exact and kinds <= {Decimal, type(None)}:
        return ["" if value is None else str(value.quantize(MONEY_PLACES)) for value in values]
    return [_csv_cell(value, money, exact) for value in values]


def _json_column(values: list, money: bool, exact: bool) -> list:
    """A column's values as `_json_value` gives them, with the rule chosen once for the column."""
    if not (money or exact) and Decimal not in set(map(type, values)):
        return values
    return [_json_value(value, money, exact) for value in values]


def _columns(table: ExportTable, write_column) -> list[list]:
    return [write_column([row.get(column) for row in table.rows], column in table.money_columns, column in table.exact_columns)
            for column in table.columns]


def render_csv(table: ExportTable) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(table.columns)
    writer.writerows(zip(*_columns(table, _csv_column)))
    return buffer.getvalue().encode("utf-8")


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode  # one encoder for every row (json.dumps with options makes one per call)


def render_json(table: ExportTable, metadata: dict) -> bytes:
    columns = table.columns
    data = [dict(zip(columns, cells)) for cells in zip(*_columns(table, _json_column))]
    document = {"metadata": {**metadata, "export": table.name, "columns": table.columns, "rows": len(data)}, "data": data}
    # One row per line: readable, and json's C encoder (indent= falls back to pure Python, 5x slower).
    rows = ",\n".join(map(_ENCODE, data))
    head = json.dumps(document["metadata"], ensure_ascii=False)
    return f'{{"metadata": {head},\n"data": [\n{rows}\n]}}\n'.encode()


FORMATS = ("csv", "json")
# The large exports (a rolling period's focus of 3,000 keys is 83 MB, a day's keys or focus 2-3 MB): ~10× smaller compressed.
COMPRESS_OVER = 1_000_000


def write_exports(folder: Path, tables: list[ExportTable], metadata: dict, generated_at: str | None = None,
                  formats: tuple[str, ...] = FORMATS) -> list[dict]:
    """Write every table as CSV and JSON (those of `formats`), and a manifest listing each file's rows and sha256,
    the period, its source days and the generation time (the data files carry no time)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for table in tables:
        for suffix in (f for f in FORMATS if f in formats):
            content = render_csv(table) if suffix == "csv" else render_json(table, metadata)
            name, extra = f"{table.name}.{suffix}", {}
            if len(content) > COMPRESS_OVER:
                extra = {"compression": "gzip", "uncompressed_bytes": len(content), "uncompressed_sha256": hashlib.sha256(content).hexdigest()}
                name, content = name + ".gz", gzip.compress(content, compresslevel=1, mtime=0)
            (folder / name).write_bytes(content)
            entries.append({"file": name, "export": table.name, "format": suffix, "rows": len(table.rows), "bytes": len(content),
                            "sha256": hashlib.sha256(content).hexdigest(), **extra})
    manifest = {"metadata": {**metadata, "generated_at": generated_at}, "files": entries}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return entries
