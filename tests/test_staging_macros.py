"""The staging macros judge a JSON value by its first character and its edges: what each gives for the awkward cases."""

import json

import duckdb
import pytest

from usage_jobs.defs.gateway.ingest import _MACROS


@pytest.fixture(scope="module")
def conn():
    conn = duckdb.connect()
    conn.execute(_MACROS)
    return conn


def _value(conn, macro: str, value):
    """`macro` applied to `value` as DuckDB's reader hands it over (a JSON column, minified)."""
    return conn.execute(f"SELECT {macro}(json(?)) ", [json.dumps(value)]).fetchone()[0]


@pytest.mark.parametrize("value, expected", [
    ("team-1", "team-1"), (" team-1 ", "team-1"), ("\tteam-1\r\n", "team-1"), ("", None), (" \t ", None),
    ("a\\t", "a\\t"), ("\\", "\\"), ("é ", "é"), ("\u00a0x", "\u00a0x"), (5, None), (True, None), (None, None), ({"a": 1}, None), (["a"], None),
])
def test_jstr_reads_strings_only_trimmed_as_names_are(conn, value, expected):
    assert _value(conn, "jstr", value) == expected


@pytest.mark.parametrize("value, expected", [
    (100, 100.0), (1.5, 1.5), (-0.0, 0.0), ("100", None), (True, None), (None, None), ([1], None), ({"n": 1}, None),
])
def test_jnum_reads_json_numbers_only(conn, value, expected):
    assert _value(conn, "jnum", value) == expected


@pytest.mark.parametrize("value, expected", [
    (True, True), (False, False), ("true", True), ("Yes", True), ("1", True), ("no", False), (1, None), (None, None),
])
def test_jbool(conn, value, expected):
    assert _value(conn, "jbool", value) == expected


def test_a_long_error_message_is_cut_to_160_characters_with_an_ellipsis(conn):
    assert conn.execute("SELECT masked_error(?)", ["é" * 160]).fetchone()[0] == "é" * 160
    assert conn.execute("SELECT masked_error(?)", ["é" * 161]).fetchone()[0] == "é" * 159 + "…"
