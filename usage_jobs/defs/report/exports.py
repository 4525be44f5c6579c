"""Export files for finance: the same rows as CSV and JSON, plus a manifest.

CSV: UTF-8, header row, dot decimals, text cells that a spreadsheet would run as a
formula, in any locale, neutralised with a quote (see `spreadsheet_safe`). JSON:
`{"metadata": {...}, "data": [...]}`. Nothing time-dependent is written in them, so
rebuilding a period gives byte-identical files; only the manifest says when it was built.
A file larger than COMPRESS_OVER is written gzip-compressed (`focus.json.gz`; no name or time
in the gzip header, so still byte-identical), the manifest saying so.
"""

from __future__ import annotations

import collections
import contextlib
import csv
import dataclasses
import gzip
import hashlib
import io
import itertools
import json
import numbers
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from pathlib import Path

from usage_jobs.defs.gateway.salvage import GZIP_MAGIC

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
    rows: Sequence[dict]  # a list, or DayRows
    # Money written with every decimal it has (unrounded shares, estimated costs a variance is recomputed from): wins over money_columns.
    exact_columns: frozenset[str] = frozenset()
    # Rows ordered by this text column (a day) first, a day's rows the same in every period holding the day but for the text
    # columns `period_columns` (a name the period may spell otherwise: a team's alias is its first in the period): the files
    # are assembled from each day's text, formatted once a build (ExportDays).
    day_column: str | None = None
    period_columns: tuple[str, ...] = ()


class DayRows(Sequence):
    """A day table's rows (ExportTable.rows, ordered by day) read a day at a time when asked: `counts` is each day's number of rows
    in day order, `fetch(days)` the rows of those days. Written from the days' text (ExportDays), a large period builds the rows of
    the days not formatted yet only; anything else reading them gets them all."""

    def __init__(self, counts: dict[str, int], fetch: Callable[[list[str]], dict[str, list[dict]]],
                 values: Callable[[str], tuple] | None = None):
        self.counts, self.fetch = counts, fetch
        self.values = values  # a day's `period_columns` values (as _period_values reads them from its rows), for a table with them
        self._all: list[dict] | None = None

    def __len__(self) -> int:
        return sum(self.counts.values())

    def __getitem__(self, index):
        if self._all is None:
            self._all = [row for rows in self.fetch(list(self.counts)).values() for row in rows]
        return self._all[index]


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


def _values(table: ExportTable) -> list:
    """Each column's values in row order, read once for both formats (itemgetter: one C call a row, not a `get` a cell)."""
    rows, columns = table.rows, table.columns
    if not rows:
        return [() for _ in columns]
    try:
        if len(columns) == 1:
            return [list(map(itemgetter(columns[0]), rows))]
        return list(zip(*map(itemgetter(*columns), rows)))
    except KeyError:  # a row without some column: written empty
        return [[row.get(column) for row in rows] for column in columns]


def _csv_text(rows) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    return buffer.getvalue()


_ENCODE = json.JSONEncoder(ensure_ascii=False).encode  # one encoder for every row (json.dumps with options makes one per call)
_json_text = json.encoder.encode_basestring  # what that encoder writes a str with (its C function when there is one)
_FLOATS = frozenset({int, float, type(None)})


def _json_texts(values) -> list[str]:
    """Each value as `_ENCODE` writes it, the rule chosen once for the column (json's encoder called for each of 270,000 rows
    was most of a quarter's exports): text, ints and finite floats by the functions json's C encoder calls, others by it."""
    kinds = set(map(type, values))
    if kinds <= _TEXT:
        text = {value: _json_text(value) for value in set(values) - {None}} | {None: "null"}
        return list(map(text.__getitem__, values))
    if kinds <= _FLOATS:  # exactly int and float (bool is a subclass, written true/false): their repr, as json's encoder
        texts = ["null" if value is None else repr(value) for value in values]
        if not ({float} & kinds and ("nan" in texts or "inf" in texts or "-inf" in texts)):  # json writes NaN, Infinity
            return texts
    return list(map(_ENCODE, values))


def _bodies(table: ExportTable, formats: tuple[str, ...] = ("csv", "json")) -> tuple[str | None, str | None]:
    """The CSV lines of the rows (no header) and the JSON text of the rows (one a line, joined by ",\\n"), those of `formats`,
    from one read of the values."""
    values = _values(table)
    flags = [(column in table.money_columns, column in table.exact_columns) for column in table.columns]
    csv_body = json_body = None
    if "csv" in formats:
        csv_body = _csv_text(zip(*[_csv_column(column, *flag) for column, flag in zip(values, flags)]))
    if "json" in formats:
        # Each row as json's encoder writes the dict of its columns: the keys' text fixed, each value encoded a column at a time.
        row = "{" + ", ".join(_json_text(column).replace("%", "%%") + ": %s" for column in table.columns) + "}"
        cells = zip(*[_json_texts(_json_column(column, *flag)) for column, flag in zip(values, flags)])
        json_body = ",\n".join(map(row.__mod__, cells))
    return csv_body, json_body


def _csv_head(table: ExportTable) -> str:
    return _csv_text([table.columns])


def _json_head(table: ExportTable, metadata: dict) -> str:
    head = json.dumps({**metadata, "export": table.name, "columns": table.columns, "rows": len(table.rows)}, ensure_ascii=False)
    # One row per line: readable, and json's C encoder (indent= falls back to pure Python, 5x slower).
    return f'{{"metadata": {head},{JSON_DATA}'


# What a JSON file's rows follow (its metadata is one line before), separates them and ends it.
JSON_DATA, JSON_SEPARATOR, JSON_TAIL = '\n"data": [\n', ",\n", "\n]}\n"


def render_csv(table: ExportTable) -> bytes:
    return "".join(_pieces(table, "csv", {}, [_bodies(table, ("csv",))[0]])).encode("utf-8")


def render_json(table: ExportTable, metadata: dict) -> bytes:
    return "".join(_pieces(table, "json", metadata, [_bodies(table, ("json",))[1]])).encode("utf-8")


@dataclass(eq=False)
class DayText:
    """A day's rows of a table as text (CSV lines; JSON rows, one a line, joined by ",\n") and, once compressed, as gzip members."""

    key: tuple  # (table, day, the day's `period_columns` values)
    csv: str | None  # None once its member alone is kept (ExportDays over its budget)
    json: str | None
    members: dict[str, bytes] = dataclasses.field(default_factory=dict)  # format -> its text as one gzip member

    @property
    def size(self) -> int:
        return len(self.csv or "") + len(self.json or "") + sum(map(len, self.members.values()))

    def encoded(self, suffix: str) -> bytes:
        """The text of format `suffix` as UTF-8: the text kept, else its gzip member inflated."""
        text = getattr(self, suffix)
        return text.encode("utf-8") if text is not None else gzip.decompress(self.members[suffix])

    def byte_size(self, suffix: str) -> int:
        """The length of `encoded(suffix)`, read from its gzip member's trailer (ISIZE) when it has one: not inflated."""
        member = self.members.get(suffix)
        return int.from_bytes(member[-4:], "little") if member is not None else len(self.encoded(suffix))

    def compact(self) -> int:
        """Keep the gzip members alone when there is one for every format: the bytes freed."""
        if self.csv is None or set(self.members) != set(FORMATS):
            return 0
        freed = len(self.csv) + len(self.json)
        self.csv = self.json = None
        return freed


class ExportDays:
    """One build's text of each day's rows of the tables with a `day_column` (DayText). A quarter, a year and the rolling periods
    hold the same days as their months, weeks and day periods: each day is formatted once a build, not once in each period holding
    it (~6 times in a full build; a month, quarter, year and the rolling periods all re-formatted every old day when a new day
    came), and compressed once (a compressed file of such a table is a gzip member a day, see write_exports). `published`: the
    export folders of the day periods whose published files are current (their fingerprint matched), read instead of formatting
    their day, their members kept as they are.

    At most `budget` characters and bytes are kept: a day of 3,000 keys is ~8 MB of text, and a full build of a year's history, or
    the published days a year period reads, would otherwise keep every day of it. Past the budget the least recently used days
    keep their gzip members alone (~6x smaller; the text inflated when asked, ~20x cheaper than formatting and compressing it
    again: a year period at 180 days of 3,000 keys re-formatted most of its days, 25 CPU-s, with whole days dropped), then the
    least recently used are dropped (formatted again if a later period needs them)."""

    def __init__(self, published: list[Path] | None = None, budget: int = 1_000_000_000):
        self.bodies: collections.OrderedDict[tuple, DayText] = collections.OrderedDict()
        self.published = published or []
        self.budget, self.size = budget, 0
        self._read: set[str] = set()
        self._day_members: dict[Path, dict] = {}  # a published folder's DAY_MEMBERS record, read once for all its tables

    def lookup(self, table: ExportTable, key: tuple) -> DayText | None:
        if table.name not in self._read:  # the published day files of this table, once
            self._read.add(table.name)
            for folder in self.published:
                self._read_published(table, folder)
                self.fit()
        day = self.bodies.get(key)
        if day is not None:
            self.bodies.move_to_end(key)
        return day

    def keep(self, day: DayText) -> None:
        """Kept until `fit` (a table's files written: its new days have their members by then)."""
        self.bodies[day.key] = day
        self.size += day.size

    def fit(self) -> None:
        """Back within the budget."""
        if self.size <= self.budget:
            return
        for kept in self.bodies.values():  # least recently used first
            self.size -= kept.compact()
            if self.size <= self.budget:
                return
        while self.size > self.budget and len(self.bodies) > 1:
            _, dropped = self.bodies.popitem(last=False)
            self.size -= dropped.size

    def member(self, day: DayText, suffix: str) -> bytes:
        """The day's text of format `suffix` as a gzip member, compressed the first time only."""
        if suffix not in day.members:
            day.members[suffix] = _member(day.encoded(suffix))
            if self.bodies.get(day.key) is day:
                self.size += len(day.members[suffix])
        return day.members[suffix]

    def _read_published(self, table: ExportTable, folder: Path) -> None:
        if self._read_members(table, folder):
            return
        texts, members = {}, {}
        for suffix in FORMATS:
            for name in (f"{table.name}.{suffix}", f"{table.name}.{suffix}.gz"):
                with contextlib.suppress(OSError, zlib.error, EOFError):
                    content = (folder / name).read_bytes()
                    if not name.endswith(".gz"):
                        texts[suffix] = content.decode("utf-8")
                        continue
                    split = _members(content)
                    texts[suffix] = b"".join(text for _, text in split).decode("utf-8")
                    if len(split) == (3 if suffix == "json" else 2):  # as write_exports writes a day: head, the rows[, tail]
                        members[suffix] = split[1]
        header = _csv_head(table)
        if len(texts) < 2 or not texts["csv"].startswith(header) or JSON_DATA not in texts["json"] or not texts["json"].endswith(JSON_TAIL):
            return  # not there, or not written as this code writes it: the day is formatted
        csv_body = texts["csv"][len(header):]
        json_body = texts["json"][texts["json"].index(JSON_DATA) + len(JSON_DATA):-len(JSON_TAIL)]  # the metadata is one line
        if not json_body:
            return
        # A row a line: the first and last rows name the day, unless every row is read for the period's columns.
        rows = json.loads(f"[{json_body}]") if table.period_columns else \
            [json.loads(json_body.partition("\n")[0].removesuffix(",")), json.loads(json_body.rpartition("\n")[2])]
        days = {row.get(table.day_column) for row in rows}
        if len(days) != 1 or not isinstance(day := days.pop(), str):
            return
        text = DayText((table.name, day, _period_values(table, rows)), csv_body, json_body)
        # a member kept when it holds exactly the day's rows
        text.members = {suffix: member for suffix, (member, rows_text) in members.items() if rows_text == getattr(text, suffix).encode("utf-8")}
        self.keep(text)

    def _record(self, folder: Path) -> dict:
        if folder not in self._day_members:
            try:
                self._day_members[folder] = json.loads((folder / DAY_MEMBERS).read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self._day_members[folder] = {}
        return self._day_members[folder]

    def _read_members(self, table: ExportTable, folder: Path) -> bool:
        """The day's members read where DAY_MEMBERS places them in its compressed files, without inflating them (a published day
        read whole was inflated by every period worker: a cost growing with the days a year holds); False without that record."""
        try:
            entry = self._record(folder)[table.name]
            members = {}
            for suffix in FORMATS:
                start, length, *held_in = entry[suffix]
                if held_in not in ([], [DAY_MEMBER_FILE]):
                    return False
                with (folder / (held_in[0] if held_in else f"{table.name}.{suffix}.gz")).open("rb") as file:
                    file.seek(start)
                    members[suffix] = file.read(length)
                if len(members[suffix]) != length or not members[suffix].startswith(GZIP_MAGIC):
                    return False
        except (OSError, ValueError, KeyError, TypeError):
            return False
        text = DayText((table.name, entry["day"], tuple(tuple(values) for values in entry["values"])), None, None)
        text.members = members
        self.keep(text)
        return True


def _member(text: bytes) -> bytes:
    """`text` as one gzip member: no name or time in its header, so the same bytes every build."""
    return gzip.compress(text, compresslevel=COMPRESS_LEVEL, mtime=0)


def _members(content: bytes) -> list[tuple[bytes, bytes]]:
    """A gzip file's members in order, each as (its bytes, its text)."""
    members = []
    while content:
        inflater = zlib.decompressobj(wbits=31)  # one gzip member
        text = inflater.decompress(content) + inflater.flush()
        if not inflater.eof:
            raise EOFError("a gzip member ends early")
        rest = inflater.unused_data
        members.append((content[:len(content) - len(rest)], text))
        content = rest
    return members


def _period_values(table: ExportTable, rows: list[dict]) -> tuple:
    """The day's values of the columns a period may write otherwise (text: the same read back from a JSON file)."""
    return tuple(tuple(row.get(column) for column in table.period_columns) for row in rows) if table.period_columns else ()


def _assembled(table: ExportTable, days: ExportDays) -> list[DayText] | None:
    """The table's rows as each day's text (formatted once a build), in row order; None when its rows are not grouped by day (each
    day one run of rows)."""
    lazy = table.rows if isinstance(table.rows, DayRows) else None
    if lazy and (lazy.values or not table.period_columns):  # the rows of the days without text only
        keys = {day: (table.name, day, lazy.values(day) if table.period_columns else ()) for day in lazy.counts}
        texts = {day: days.lookup(table, key) for day, key in keys.items()}
        for day, rows in lazy.fetch([day for day, text in texts.items() if text is None]).items():
            if len(rows) != lazy.counts[day]:  # the file's row count (its manifest, its JSON head) is taken from the counts
                raise ValueError(f"{table.name}: {len(rows)} rows built for {day}, {lazy.counts[day]} counted")
            if keys[day][2] != _period_values(table, rows):
                raise ValueError(f"{table.name}: the rows built for {day} name other {', '.join(table.period_columns)} than counted")
            texts[day] = DayText(keys[day], *_bodies(dataclasses.replace(table, rows=rows)))
            days.keep(texts[day])
        return list(texts.values())
    parts, seen = [], set()
    for day, group in itertools.groupby(table.rows, key=itemgetter(table.day_column)):
        if day in seen or not isinstance(day, str):
            return None
        seen.add(day)
        rows = list(group)
        key = (table.name, day, _period_values(table, rows))
        text = days.lookup(table, key)
        if text is None:
            text = DayText(key, *_bodies(dataclasses.replace(table, rows=rows)))
            days.keep(text)
        parts.append(text)
    return parts


FORMATS = ("csv", "json")
# Beside a day period's exports: where its day's gzip member is in each day-grain file, its day and its period values. A file
# written plain has its day's member in DAY_MEMBER_FILE instead: a period holding the day would otherwise compress it again.
DAY_MEMBERS = ".day-members.json"
DAY_MEMBER_FILE = ".day-members.gz"
# The large exports, ~5-10× smaller compressed: at 3,000 keys a day's keys, focus, latency and chargeback are 0.5-1 MB each in
# every one of the 35+ day periods (about half the site's bytes), a rolling period's focus 83 MB. A file below this, what a
# smaller organisation's exports mostly are, stays plain for a spreadsheet to open as it is.
COMPRESS_OVER = 256_000
# zlib's default level: at 3,000 keys the site is 51 MB smaller than at level 1 (455 -> 404 MB) for 8.9 CPU-s more over a full
# build's 1,584 files, spread over the period workers; a new day rewrites the large periods' files, ~1 CPU-s more.
COMPRESS_LEVEL = 6


def _pieces(table: ExportTable, suffix: str, metadata: dict, bodies: list) -> list:
    """A file's text as the pieces it is written from (str, or a DayText's text of that format): its head, the bodies (JSON's
    joined by a separator), its tail."""
    if suffix == "csv":
        return [_csv_head(table), *bodies]
    return [_json_head(table, metadata), *[piece for body in bodies for piece in (JSON_SEPARATOR, body)][1:], JSON_TAIL]


def write_exports(folder: Path, tables: list[ExportTable], metadata: dict, generated_at: str | None = None,
                  formats: tuple[str, ...] = FORMATS, days: ExportDays | None = None) -> list[dict]:
    """Write every table as CSV and JSON (those of `formats`), and a manifest listing each file's rows and sha256,
    the period, its source days and the generation time (the data files carry no time). A table with a `day_column` is
    assembled from its days' text, kept in `days` for the next periods (the same bytes as its rows formatted whole).

    A file over COMPRESS_OVER is written as a gzip member a piece of its text (head, each day's rows, tail; RFC 1952 allows
    several, and gzip, zcat, Python, pandas, DuckDB read them as one text): a day's rows are compressed once a build, or not
    at all when its day period's published file has them so, where a month, quarter, year and the rolling periods compressed
    every day again (2 of a quarter's 10 CPU-s at 3,000 keys)."""
    folder.mkdir(parents=True, exist_ok=True)
    record = days is not None  # the build's: its day periods record their members for the periods holding their day
    days = ExportDays() if days is None else days  # a day table's file is made of its days' pieces however it is written
    entries, day_members, plain_members = [], {}, []
    for table in tables:
        parts = _assembled(table, days) if table.day_column else None
        whole = None if parts is not None else _bodies(table, formats)  # the values read once for both files
        day_file = record and parts is not None and len(parts) == 1  # a day period's: where its day's member is, for ExportDays
        for index, suffix in enumerate(FORMATS):
            if suffix not in formats:
                continue
            pieces = [piece.encode("utf-8") if isinstance(piece, str) else piece
                      for piece in _pieces(table, suffix, metadata, parts if parts is not None else [whole[index]])]
            sizes = [len(piece) if isinstance(piece, bytes) else piece.byte_size(suffix) for piece in pieces]
            name, size, extra, place = f"{table.name}.{suffix}", sum(sizes), {}, None
            if size > COMPRESS_OVER:
                # A day's member is taken as it is, never inflated: a year's file is its days' members joined, its size their trailers'.
                extra = {"compression": "gzip", "uncompressed_bytes": size}
                members, offset = [], 0
                for piece in (piece for piece, piece_size in zip(pieces, sizes) if piece_size):
                    members.append(_member(piece) if isinstance(piece, bytes) else days.member(piece, suffix))
                    place = place if isinstance(piece, bytes) else [offset, len(members[-1])]
                    offset += len(members[-1])
                name, content = name + ".gz", b"".join(members)
            else:
                content = b"".join(piece if isinstance(piece, bytes) else piece.encoded(suffix) for piece in pieces)
                if day_file and sizes[1]:
                    member = days.member(parts[0], suffix)
                    place = [sum(map(len, plain_members)), len(member), DAY_MEMBER_FILE]
                    plain_members.append(member)
            if day_file and place:
                day_members.setdefault(table.name, {"day": parts[0].key[1], "values": parts[0].key[2]})[suffix] = place
            (folder / name).write_bytes(content)
            entries.append({"file": name, "export": table.name, "format": suffix, "rows": len(table.rows), "bytes": len(content),
                            "sha256": hashlib.sha256(content).hexdigest(), **extra})
        days.fit()
    manifest = {"metadata": {**metadata, "generated_at": generated_at}, "files": entries}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    for stale in (DAY_MEMBERS, DAY_MEMBER_FILE):
        (folder / stale).unlink(missing_ok=True)
    if plain_members:
        (folder / DAY_MEMBER_FILE).write_bytes(b"".join(plain_members))
    if day_members:
        (folder / DAY_MEMBERS).write_text(json.dumps(day_members, sort_keys=True), encoding="utf-8")
    return entries
