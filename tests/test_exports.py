from dataclasses import fields
from decimal import Decimal

import pytest

from usage_jobs.defs.report import queries
from usage_jobs.defs.report.exports import ExportTable, render_csv, render_json
from usage_jobs.defs.report.quality_view import DATA_QUALITY_COLUMNS, QualityDay


def test_csv_neutralises_formulas_and_keeps_dot_decimals():
    table = ExportTable("keys", ["key_alias", "spend_usd", "requests"], frozenset({"spend_usd"}), [
        {"key_alias": '=HYPERLINK("http://evil","x")', "spend_usd": Decimal("1234.5"), "requests": 3},
        {"key_alias": "+cmd", "spend_usd": None, "requests": 0},
        {"key_alias": "normal, with \"quotes\"", "spend_usd": Decimal("0.0000004"), "requests": 1},
    ])
    lines = render_csv(table).decode("utf-8").splitlines()
    assert lines[0] == "key_alias,spend_usd,requests"
    assert lines[1] == "\"'=HYPERLINK(\"\"http://evil\"\",\"\"x\"\")\",1234.500000,3"
    assert lines[2] == "'+cmd,,0"
    assert lines[3] == '"normal, with ""quotes""",0.000000,1'


def test_json_has_metadata_and_the_same_rows():
    table = ExportTable("daily", ["date", "spend_usd"], frozenset({"spend_usd"}), [{"date": "2026-11-01", "spend_usd": Decimal("2.5")}])
    document = __import__("json").loads(render_json(table, {"period": "2026-11-01"}))
    assert document["metadata"]["rows"] == 1 and document["metadata"]["period"] == "2026-11-01"
    assert document["data"] == [{"date": "2026-11-01", "spend_usd": 2.5}]


@pytest.mark.parametrize(("columns", "row"), [
    (queries.DAILY_COLUMNS, queries.DayUsage), (queries.MODEL_COLUMNS, queries.ModelUsage), (queries.TEAM_COLUMNS, queries.TeamUsage),
    (queries.KEY_COLUMNS, queries.KeyUsage), (queries.ANOMALY_COLUMNS, queries.Anomaly), (queries.TEAM_MODEL_DAILY_COLUMNS, queries.TeamModelDay),
    (queries.KEY_MODEL_DAILY_COLUMNS, queries.KeyModelDay), (DATA_QUALITY_COLUMNS, QualityDay),
])
def test_every_export_column_is_a_field_of_its_row(columns, row):
    """An export reads its columns from the row's fields: a misspelt column would be written empty."""
    assert set(columns) <= {f.name for f in fields(row)}


@pytest.mark.parametrize(("unpriced_requests", "spend_usd", "flagged"), [
    (0, Decimal("0.25"), False),  # a priced model
    (3, None, True),  # only unpriced requests
    (3, Decimal(0), True),  # unpriced successes beside failures priced at 0
    (0, Decimal(0), False),  # only failures of a priced model
])
def test_focus_marks_a_row_holding_unpriced_requests_whatever_its_failures_cost(unpriced_requests, spend_usd, flagged):
    from usage_jobs.defs.report.focus import focus_rows, report_day_cells

    cell = queries.TeamModelDay(date="2026-11-20", team_id="t1", team_alias="Team", model="m", requests=4, total_tokens=100,
                                unpriced_requests=unpriced_requests, spend_usd=spend_usd)
    [row] = focus_rows(report_day_cells([cell], timezone="UTC"))
    assert row["x_Unpriced"] is flagged
    assert row["BilledCost"] == (spend_usd or Decimal(0))


def test_a_column_of_mixed_values_writes_each_value_as_its_type():
    """Columns are formatted a column at a time: one holding several types still writes each cell by its own type's rule."""
    table = ExportTable("mixed", ["value", "cost", "share"], frozenset({"cost", "share"}), [
        {"value": True, "cost": Decimal("1.5"), "share": Decimal("0.000800000000000000")},
        {"value": 1, "cost": 2, "share": None},
        {"value": Decimal("1.50"), "cost": None, "share": Decimal("8E-4")},
        {"value": "-1", "cost": 0.25, "share": 3},
        {"value": [1, 2], "cost": Decimal("7"), "share": Decimal("1.10")},
        {"value": None},
    ], frozenset({"share"}))
    lines = render_csv(table).decode("utf-8").splitlines()
    assert lines[1:] == ["true,1.500000,0.000800000000000000", "1,2.000000,", "1.50,,0.0008", "'-1,0.250000,3", '"[1, 2]",7.000000,1.10', ",,"]
    data = __import__("json").loads(render_json(table, {}))["data"]
    assert [row["value"] for row in data] == [True, 1, 1.5, "-1", [1, 2], None]
    assert [row["share"] for row in data] == [0.0008, None, 0.0008, 3.0, 1.1, None]


def test_json_rows_are_written_as_the_json_encoder_writes_each_row():
    """Values are encoded a column at a time: every type, text needing escapes and floats json writes apart give the encoder's text."""
    import json

    rows = [{"text": 'quote " back\\ slash\nline é 漢 \u2028', "number": 3, "real": 0.1, "flag": True, "list": [1, "a"], "odd%s": None},
            {"text": None, "number": 10**30, "real": float("nan"), "flag": None, "list": None, "odd%s": {"k": 1.5}},
            {"text": "", "number": -1, "real": float("-inf"), "flag": False, "list": [], "odd%s": 2},
            {"text": "x", "number": None, "real": 1e300, "flag": True, "list": (1, 2), "odd%s": "y"}]
    table = ExportTable("mixed", list(rows[0]), frozenset(), rows)
    body = render_json(table, {}).decode()
    expected = ",\n".join(json.dumps(row, ensure_ascii=False) for row in rows)
    assert body.endswith(f'"data": [\n{expected}\n]}}\n')
    assert json.loads(body)["data"][0] == rows[0]
