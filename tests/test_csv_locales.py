"""CSV exports are safe in every spreadsheet locale (DESIGN §7, issue 10 item 4).

English locales split a CSV line on ",", French and German Excel (the contract is in EUR)
on ";", a paste or a TSV import on tabs. A text cell from the logs must not become a
formula in any of them: every CSV line of a real site build is split each way and no
resulting cell may start (past quotes and white space) with = + - @ unless it is a number."""

import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

from helpers import DAY, ingest, payload, write
from usage_jobs.defs.gateway.aggregates import aggregate_day
from usage_jobs.defs.report.build import build_site
from usage_jobs.defs.report.exports import ExportTable, render_csv, spreadsheet_safe

HOSTILE = [
    "x;=cmd|' /C calc'!A0",
    "a\t=1+1",
    "b,@SUM(1)",
    'c;"=2+3',
    "d;\t-1+cmd",
    "e, +1",
    "f\r\n=line",
    '=HYPERLINK("http://evil.example","click")',
    "g;\u202e=1",
]
NUMBER = re.compile(r"[+-]?\d+(\.\d+)?([eE][+-]?\d+)?")
FORMULA = tuple("=+-@")


def _cells(text: str) -> dict[str, list[str]]:
    """What a spreadsheet would see as cells in each locale: "," honouring quotes (the csv
    module), and naive splits on ",", ";" and tab of every physical line (Excel in a ";"
    locale honours a quote only at the start of a field, so a split piece can begin anywhere)."""
    lines = re.split(r"\r\n|\r|\n", text)
    return {
        "comma (quoted)": [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row],
        "comma (naive)": [cell for line in lines for cell in line.split(",")],
        "semicolon": [cell for line in lines for cell in line.split(";")],
        "tab": [cell for line in lines for cell in line.split("\t")],
    }


def _formulas(text: str) -> list[tuple[str, str]]:
    found = []
    for locale, cells in _cells(text).items():
        for cell in cells:
            start = cell.lstrip(' \t\r\n"')  # a quote opening a field is dropped; some readers trim white space
            if start.startswith(FORMULA) and not NUMBER.fullmatch(start.rstrip('"')):
                found.append((locale, cell))
    return found


def test_hostile_text_is_neutralised_after_every_separator_and_numbers_stay_numbers():
    columns = ["key_alias", "team_alias", "model", "requests", "spend_usd", "token_variance_pct", "cost_variance_pct"]
    rows = [{"key_alias": name, "team_alias": name, "model": name, "requests": 3, "spend_usd": Decimal("-1.5"),
             "token_variance_pct": -3.2, "cost_variance_pct": Decimal("-0.25")} for name in HOSTILE]
    text = render_csv(ExportTable("keys", columns, frozenset({"spend_usd"}), rows)).decode("utf-8")
    assert _formulas(text) == []
    parsed = list(csv.DictReader(io.StringIO(text, newline="")))
    assert [row["token_variance_pct"] for row in parsed] == ["-3.2"] * len(HOSTILE)  # a negative number is a number
    assert [row["cost_variance_pct"] for row in parsed] == ["-0.25"] * len(HOSTILE)
    assert [row["spend_usd"] for row in parsed] == ["-1.500000"] * len(HOSTILE)
    assert [row["requests"] for row in parsed] == ["3"] * len(HOSTILE)
    # The text is still readable: only quote marks were added.
    for row, name in zip(parsed, HOSTILE):
        assert row["key_alias"].replace("'", "") == name.replace("'", "")


@pytest.mark.parametrize("text, safe", [
    ("x;=cmd|' /C calc'!A0", "x;'=cmd|' /C calc'!A0"),
    ("a\t=1+1", "a\t'=1+1"),
    ("b,@SUM(1)", "b,'@SUM(1)"),
    ('c;"=2', "c;'\"=2"),
    ("+cmd", "'+cmd"),
    ("plain; text, with - dashes", "plain; text, with - dashes"),
    ("gpt-4o-mini", "gpt-4o-mini"),
])
def test_each_piece_that_starts_like_a_formula_gets_a_quote(text, safe):
    assert spreadsheet_safe(text) == safe


@pytest.fixture
def hostile_exports(tmp_path) -> Path:
    """A real day of logs whose aliases, team names, models, tags and end users are hostile, built into a site."""
    lines = []
    for index, name in enumerate(HOSTILE):
        metadata = {"user_api_key_hash": f"{index + 1:064x}", "user_api_key_alias": name, "user_api_key_team_id": f"team;={index}",
                    "user_api_key_team_alias": name}
        lines.append(json.dumps(payload(f"req-{index}", metadata=metadata, model_group=name, request_tags=[name], end_user=name)))
    write(tmp_path / "logs" / "gcs" / DAY.isoformat() / "batch.ndjson", "\n".join(lines) + "\n")
    conn, stats = ingest(tmp_path / "logs", tmp_path)
    assert stats.rows == len(HOSTILE) and stats.rejected == 0
    aggregate_day(conn, DAY)
    build_site(conn, tmp_path / "site", timezone="UTC", billing_configured=False, generated_at=dt.datetime(2026, 11, 11, tzinfo=dt.UTC))
    return tmp_path / "site" / "periods" / DAY.isoformat() / "exports"


def test_no_export_of_a_real_build_holds_a_formula_in_any_locale(hostile_exports):
    checked = 0
    for path in sorted(hostile_exports.glob("*.csv")):
        text = path.read_bytes().decode("utf-8")
        assert _formulas(text) == [], path.name
        checked += 1
    assert checked >= 8
    # The hostile names did reach the exports, and JSON keeps them exactly as they came.
    keys = json.loads((hostile_exports / "keys.json").read_text(encoding="utf-8"))["data"]
    assert {row["key_alias"] for row in keys} >= {name.strip() for name in HOSTILE}
    models = json.loads((hostile_exports / "models.json").read_text(encoding="utf-8"))["data"]
    assert {row["model"] for row in models} >= {name.strip() for name in HOSTILE}
