"""The chargeback on a small real warehouse: shares at full precision, the statement rounded once,
billing days kept apart from report days (UTC and Europe/Paris, requests around both midnights),
the two buckets, restated and withdrawn days, and the months fetched again at month close.
Every expected figure is computed here, independently of the product's code."""

import datetime as dt
import json
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from helpers import payload, write
from usage_jobs import warehouse
from usage_jobs.defs.billing.allocation import round_once, share_exactly
from usage_jobs.defs.billing.fx import UsdRates
from usage_jobs.defs.billing.parse import parse_history
from usage_jobs.defs.billing.reconcile import (
    NOT_SEEN,
    UNASSIGNED,
    WITHDRAWN,
    chargeback,
    months_covered,
    months_to_refetch,
    reconcile,
    record_refetch,
    store_history,
)
from usage_jobs.defs.billing.statement import statement
from usage_jobs.defs.gateway.aggregates import aggregate_day
from usage_jobs.defs.gateway.ingest import ingest_day
from usage_jobs.defs.gateway.pricing import load_prices
from usage_jobs.defs.report.focus import focus_day_rows
from usage_jobs.defs.report.periods import day_period
from usage_jobs.defs.report.queries import period_data

CHAT = "qwen35-35b-a3b-instruct"
EMBED = "bge-m3"
GHOST = "billed-but-never-seen"
RATE = Decimal("1.25")
CENT = Decimal("0.01")


def _key(name: str) -> str:
    return (name * 64)[:64]


def _request(rid: str, start: str, team: str | None, key: str, model: str = CHAT, cost: float = 0.001, tokens: tuple[int, int] = (100, 20)) -> dict:
    metadata = {"user_api_key_hash": _key(key), "user_api_key_alias": f"key-{key}"}
    if team:
        metadata |= {"user_api_key_team_id": team, "user_api_key_team_alias": team.title()}
    return payload(rid, start=start, model_group=model, model=f"hosted_vllm/{model}", response_cost=cost, metadata=metadata,
                   prompt_tokens=tokens[0], completion_tokens=tokens[1], total_tokens=sum(tokens))


def _warehouse(tmp_path: Path, records: list[dict], timezone: str, days: list[dt.date]):
    """Records written in the folder of their UTC date (as LiteLLM does), every report day ingested and aggregated."""
    by_folder = defaultdict(list)
    for record in records:
        by_folder[record["startTime"][:10]].append(json.dumps(record))
    for folder, lines in by_folder.items():
        write(tmp_path / "logs" / folder / "batch.ndjson", "\n".join(lines) + "\n")
    conn = warehouse.connect(tmp_path / "w.duckdb")
    for day in days:
        ingest_day(conn, logs_dir=tmp_path / "logs", day=day, timezone=timezone, prices=load_prices(), max_record_bytes=16_000_000)
        aggregate_day(conn, day)
    return conn


def _bill(conn, rows: list[dict], start: dt.date, end: dt.date, timezone: str):
    history = parse_history({"currency": "EUR", "data": rows}, start, end)
    stored = store_history(conn, history, start, end)
    rates = UsdRates(constant=RATE)
    reconcile(conn, start, end, billing_timezone="UTC", report_timezone=timezone, rates=rates)
    chargeback(conn, start, end, billing_timezone="UTC", rates=rates)
    return stored


def _row(day: str, model: str, cost: str, tokens: tuple[int, int] = (1000, 100)) -> dict:
    return {"date": day, "model": model, "input_tokens": tokens[0], "output_tokens": tokens[1], "cost": float(cost)}


def test_an_amount_is_shared_exactly_and_rounded_once():
    parts = share_exactly(Decimal("0.0008"), [1, 1, 1])
    assert sum(parts) == Decimal("0.0008") and all(part > 0 for part in parts)
    # Thirty days of €0.0008 among three equal users: €0.024 for the month, rounded once: two get a cent, one none.
    month = [sum(share_exactly(Decimal("0.0008"), [1, 1, 1])[i] for _ in range(30)) for i in range(3)]
    assert sum(month) == Decimal("0.024")
    assert sorted(round_once(sum(month), month)) == [Decimal("0.00"), Decimal("0.01"), Decimal("0.01")]
    # One cent among many: to the largest exact share, the rest get nothing, the total holds.
    assert round_once(Decimal("0.01"), [Decimal("0.001")] * 9 + [Decimal("0.0011")]) == [Decimal("0.00")] * 9 + [Decimal("0.01")]
    # Zero weights take nothing; nothing to share gives zeros; a total with only zero shares is refused.
    assert share_exactly(Decimal("1.5065"), [0, 1, 0, 3]) == [0, Decimal("0.376625"), 0, Decimal("1.129875")]
    assert round_once(Decimal(0), [Decimal(0), Decimal(0)]) == [Decimal("0.00"), Decimal("0.00")]
    with pytest.raises(ValueError):
        round_once(Decimal("1.00"), [Decimal(0)])


# Requests around both midnights: UTC's (the billing day's) and Paris's (the report day's, UTC+1 in November).
MIDNIGHTS = [
    _request("b-1030pm", "2026-11-10 22:30:00", "team-b", "b", cost=0.002),  # Paris 23:30 on the 10th; billed on the 10th
    _request("a-1130pm", "2026-11-10 23:30:00", "team-a", "a", cost=0.001),  # Paris 00:30 on the 11th; billed on the 10th
    _request("b-0030am", "2026-11-11 00:30:00", "team-b", "b", cost=0.003),  # Paris 01:30 on the 11th; billed on the 11th
    _request("a-1130pm2", "2026-11-11 23:30:00", "team-a", "a", cost=0.001),  # Paris 00:30 on the 12th; billed on the 11th
    _request("d-noteam", "2026-11-11 12:00:00", None, "d", cost=0.004),  # no team; billed on the 11th
    _request("c-9th", "2026-11-09 12:00:00", "team-c", "c"),
    _request("c-12th", "2026-11-12 12:00:00", "team-c", "c"),
]
BILLED = [_row("2026-11-10", CHAT, "1.0000"), _row("2026-11-11", CHAT, "0.5000"), _row("2026-11-11", GHOST, "0.0300")]
REPORT_DAYS = [dt.date(2026, 11, 9) + dt.timedelta(days=i) for i in range(4)]


@pytest.fixture(params=["UTC", "Europe/Paris"])
def midnights(request, tmp_path):
    conn = _warehouse(tmp_path, MIDNIGHTS, request.param, REPORT_DAYS)
    _bill(conn, BILLED, dt.date(2026, 11, 10), dt.date(2026, 11, 11), request.param)
    yield conn, request.param
    conn.close()


def test_each_share_stays_on_its_billing_day_and_follows_its_requests_to_their_report_day(midnights):
    conn, timezone = midnights
    rows = conn.execute("SELECT day, team_id, report_day, allocated_cost, allocated_cost_usd FROM chargeback ORDER BY day, team_id").fetchall()
    d10, d11, d12 = dt.date(2026, 11, 10), dt.date(2026, 11, 11), dt.date(2026, 11, 12)
    paris = timezone == "Europe/Paris"
    by = {(day, team): (report_day, cost, usd) for day, team, report_day, cost, usd in rows}
    assert by[(d10, "team-a")][0] == (d11 if paris else d10) and by[(d10, "team-b")][0] == d10
    assert by[(d11, "team-b")][0] == d11 and by[(d11, "team-a")][0] == (d12 if paris else d11) and by[(d11, UNASSIGNED)][0] == d11
    assert by[(d11, NOT_SEEN)][0] is None and by[(d11, NOT_SEEN)][1] == Decimal("0.03")
    # Billing day 10: b 0.002 and a 0.001 of estimated cost share €1.00 as 2:1, exactly.
    assert by[(d10, "team-a")][1] + by[(d10, "team-b")][1] == Decimal("1.0000")
    assert abs(by[(d10, "team-a")][1] - Decimal(1) / 3) < Decimal("1e-17")
    # Billing day 11: €0.50 among b 0.003, a 0.001, no team 0.004 (8 parts), exactly.
    assert (by[(d11, "team-b")][1], by[(d11, "team-a")][1], by[(d11, UNASSIGNED)][1]) == (Decimal("0.1875"), Decimal("0.0625"), Decimal("0.25"))
    assert all(abs(usd - cost * RATE) < Decimal("1e-17") for _, cost, usd in by.values())  # each shared exactly on its own


def test_no_export_joins_a_billing_day_to_a_report_day_by_its_date(midnights):
    conn, timezone = midnights
    for day in REPORT_DAYS:
        data = period_data(conn, day_period(day))
        for cell in data.team_model_daily:
            if cell.billed_cost_allocated is not None and cell.team_id != NOT_SEEN:
                assert cell.successful_requests > 0, (day, cell)  # a charge sits only where its requests are
        for team in data.teams:
            if team.successful_requests and day in (dt.date(2026, 11, 10), dt.date(2026, 11, 11)):
                assert team.billed_cost_allocated, (day, team.team_id)  # a team's usage of a billed day carries its allocation
        assert sum((t.billed_cost_allocated or 0 for t in data.teams), Decimal(0)) == \
            sum((c.billed_cost_allocated or 0 for c in data.team_model_daily), Decimal(0))
    if timezone == "Europe/Paris":
        # team-a's request at Paris 00:30 on the 11th was billed on UTC's 10th: its share is on the Paris 11th, with its request.
        eleventh = {t.team_id: t for t in period_data(conn, day_period(dt.date(2026, 11, 11))).teams}
        assert eleventh["team-a"].billed_cost_allocated == conn.execute(
            "SELECT allocated_cost FROM chargeback WHERE day = '2026-11-10' AND team_id = 'team-a'").fetchone()[0]
    labels = {t.team_id: t.team_alias for t in period_data(conn, day_period(dt.date(2026, 11, 11))).teams}
    assert labels[UNASSIGNED] == "no team" and labels[NOT_SEEN] == "not seen by the gateway"


def test_focus_rows_carry_the_span_of_the_day_the_cost_was_billed_for(midnights):
    conn, _ = midnights
    for day in (dt.date(2026, 11, 10), dt.date(2026, 11, 11)):
        rows = list(focus_day_rows(conn, day_period(day), billing_timezone="UTC"))
        billed = [row for row in rows if row["BillingCurrency"] == "EUR"]
        assert billed and all(row["ChargePeriodStart"] == f"{day}T00:00:00Z" for row in rows)
        assert all(row["ChargePeriodEnd"] == f"{day + dt.timedelta(days=1)}T00:00:00Z" for row in rows)
        expected = sum(Decimal(str(r["cost"])) for r in BILLED if r["date"] == day.isoformat())
        assert sum(row["BilledCost"] for row in billed) == expected
    # The 12th is not billed: the gateway's estimate of that UTC day, in USD, on that UTC day's span.
    rows = list(focus_day_rows(conn, day_period(dt.date(2026, 11, 12)), billing_timezone="UTC"))
    assert rows and {row["BillingCurrency"] for row in rows} == {"USD"} and {row["ChargePeriodStart"] for row in rows} == {"2026-11-12T00:00:00Z"}


def test_the_statement_equals_the_billed_total_to_the_cent_with_both_buckets(midnights):
    conn, _ = midnights
    result = statement(conn, dt.date(2026, 11, 10), dt.date(2026, 11, 11))
    expected = sum(Decimal(str(r["cost"])) for r in BILLED).quantize(CENT, ROUND_HALF_UP)
    assert result.billed_total == expected == sum(team.billed_cost for team in result.teams) == sum(line.billed_cost for line in result.lines)
    assert result.billed_total_usd == (sum(Decimal(str(r["cost"])) for r in BILLED) * RATE).quantize(CENT, ROUND_HALF_UP)
    teams = {team.team_id: team for team in result.teams}
    assert teams[NOT_SEEN].billed_cost == Decimal("0.03") and teams[NOT_SEEN].team_alias == "not seen by the gateway"
    assert teams[UNASSIGNED].team_alias == "no team" and teams[UNASSIGNED].billed_cost == Decimal("0.25")
    # team-a: 1/3 + 0.0625 = 0.3958…; team-b: 2/3 + 0.1875 = 0.8541…: 0.39 / 0.85 by floor, the last cent to the larger remainder (a: .58)
    assert (teams["team-a"].billed_cost, teams["team-b"].billed_cost) == (Decimal("0.40"), Decimal("0.85"))
    for team in result.teams:
        assert sum(key.billed_cost for key in team.keys) == team.billed_cost


def test_a_withdrawn_day_is_cleared_and_marked_and_a_restated_one_replaced(midnights):
    conn, timezone = midnights
    start, end = dt.date(2026, 11, 10), dt.date(2026, 11, 11)
    stored = _bill(conn, [_row("2026-11-11", CHAT, "0.6000")], start, end, timezone)  # IG1 withdrew the 10th and the ghost, restated the 11th
    assert stored.withdrawn_days == [start] and stored.restated_days == [end]
    assert conn.execute("SELECT count(*) FROM billed_usage WHERE day = ?", [start]).fetchone()[0] == 0
    assert conn.execute("SELECT billed, withdrawn, cost FROM billing_days WHERE day = ?", [start]).fetchone() == (True, True, Decimal(0))
    assert {row[0] for row in conn.execute("SELECT status FROM reconciliation WHERE day = ?", [start]).fetchall()} == {WITHDRAWN}
    assert conn.execute("SELECT count(*) FROM chargeback WHERE day = ?", [start]).fetchone()[0] == 0
    assert conn.execute("SELECT sum(allocated_cost) FROM chargeback WHERE day = ?", [end]).fetchone()[0] == Decimal("0.6")
    result = statement(conn, start, end)
    assert result.billed_total == Decimal("0.60") == sum(team.billed_cost for team in result.teams)
    assert result.withdrawn_days == ("2026-11-10",) and NOT_SEEN not in {team.team_id for team in result.teams}
    stored = _bill(conn, BILLED, start, end, timezone)  # billed again: restated, no longer withdrawn
    assert start in stored.restated_days and not stored.withdrawn_days
    assert conn.execute("SELECT withdrawn, restated FROM billing_days WHERE day = ?", [start]).fetchone() == (False, True)
    assert statement(conn, start, end).billed_total == Decimal("1.53")


def test_a_month_of_awkward_amounts_is_charged_whole_to_the_cent(tmp_path):
    """November: an embedding model at €0.0008 a day shared 1:3, and a chat model with amounts that do not split evenly.
    Rounded per day × model, the embedding model would be charged to nobody and the month would drift from the bill."""
    days = [dt.date(2026, 11, 1) + dt.timedelta(days=i) for i in range(30)]
    records, billed = [], []
    chat_costs = [Decimal("1.5065"), Decimal("0.0049"), Decimal("0.3333"), Decimal("0.26075")]
    for index, day in enumerate(days):
        records += [_request(f"x-{day}", f"{day} 08:00:00", "embed-small", "x", model=EMBED, cost=0.000001),
                    _request(f"y-{day}", f"{day} 09:00:00", "embed-large", "y", model=EMBED, cost=0.000003),
                    _request(f"z-{day}", f"{day} 10:00:00", "chat-1", "z", cost=0.01),
                    _request(f"w-{day}", f"{day} 11:00:00", "chat-2", "w", cost=0.02)]
        billed += [_row(day.isoformat(), EMBED, "0.0008"), _row(day.isoformat(), CHAT, str(chat_costs[index % 4]))]
    conn = _warehouse(tmp_path, records, "UTC", days)
    _bill(conn, billed, days[0], days[-1], "UTC")
    result = statement(conn, days[0], days[-1])
    total = sum(Decimal(str(row["cost"])) for row in billed)  # IG1's figures, summed here
    assert result.billed_total == total.quantize(CENT, ROUND_HALF_UP) == sum(team.billed_cost for team in result.teams)
    teams = {team.team_id: team for team in result.teams}
    # €0.024 of embeddings: 0.006 and 0.018 exactly; rounded once with the rest of the bill, the larger user is charged.
    assert teams["embed-small"].billed_cost + teams["embed-large"].billed_cost >= CENT
    assert teams["embed-large"].billed_cost == Decimal("0.02")
    assert conn.execute("SELECT sum(allocated_cost) FROM chargeback WHERE model = ?", [EMBED]).fetchone()[0] == Decimal("0.024")
    # Each chat team's exact share of the month, within a cent of what it is charged.
    for team_id in ("chat-1", "chat-2"):
        exact = conn.execute("SELECT sum(allocated_cost) FROM chargeback WHERE team_id = ?", [team_id]).fetchone()[0]
        assert abs(teams[team_id].billed_cost - exact) < CENT


def test_an_ended_month_is_fetched_again_until_once_after_the_late_days(tmp_path):
    conn = warehouse.connect(tmp_path / "w.duckdb")
    october = parse_history({"currency": "EUR", "data": [_row("2026-10-30", CHAT, "1.00")]}, dt.date(2026, 10, 30), dt.date(2026, 10, 31))
    store_history(conn, october, dt.date(2026, 10, 30), dt.date(2026, 10, 31))
    earliest = dt.date(2026, 1, 1)
    assert months_to_refetch(conn, dt.date(2026, 10, 31), earliest) == []  # the month has not ended
    assert months_to_refetch(conn, dt.date(2026, 11, 1), earliest) == ["2026-10"]
    assert record_refetch(conn, "2026-10", dt.date(2026, 11, 1), late_days=2) is False  # IG1 may still bill the 31st
    assert months_to_refetch(conn, dt.date(2026, 11, 2), earliest) == ["2026-10"]
    assert record_refetch(conn, "2026-10", dt.date(2026, 11, 3), late_days=2) is True
    assert months_to_refetch(conn, dt.date(2026, 11, 4), earliest) == []


@pytest.mark.parametrize(("start", "end", "earliest", "covered"), [
    ("2026-10-01", "2026-11-21", "2026-01-01", ["2026-10"]),  # a backfill over the whole of October
    ("2026-10-18", "2026-11-21", "2026-10-18", ["2026-10"]),  # October from the first day there is
    ("2026-10-18", "2026-11-21", "2026-01-01", []),  # October's first days were not asked
    ("2026-09-01", "2026-10-31", "2026-01-01", ["2026-09"]),  # October has not ended before the run's last day's month
    ("2026-11-19", "2026-11-21", "2026-01-01", []),  # a daily run
    ("2025-12-01", "2026-02-10", "2025-01-01", ["2025-12", "2026-01"]),  # across a year's end
])
def test_a_window_holding_an_ended_month_whole_counts_as_its_month_close_fetch(start, end, earliest, covered):
    assert months_covered(dt.date.fromisoformat(start), dt.date.fromisoformat(end), dt.date.fromisoformat(earliest)) == covered


@pytest.mark.parametrize("record", ["missing", "another version"])
def test_a_warehouse_without_this_versions_schema_record_is_brought_to_the_schema(tmp_path, record):
    """The schema and its migrations run once per file and version; a file not recorded at this version gets them again."""
    path = tmp_path / "w.duckdb"
    conn = warehouse.connect(path)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(warehouse.SCHEMA_VERSION,)]
    conn.execute("DROP TABLE billing_months")
    conn.execute("DROP TABLE schema_version" if record == "missing" else "UPDATE schema_version SET version = 'older'")
    conn.close()
    conn = warehouse.connect(path)
    assert conn.execute("SELECT count(*) FROM billing_months").fetchone() == (0,)
    assert conn.execute("SELECT version FROM schema_version").fetchall() == [(warehouse.SCHEMA_VERSION,)]
    conn.close()


def test_a_warehouse_with_cent_rounded_shares_is_upgraded_in_place(tmp_path):
    """A warehouse of the previous version: chargeback keyed without the report day, shares and USD to the cent or 6 places."""
    import duckdb

    old = duckdb.connect(str(tmp_path / "w.duckdb"))
    old.execute("CREATE TABLE chargeback (day DATE NOT NULL, model VARCHAR NOT NULL, team_id VARCHAR NOT NULL, team_alias VARCHAR, "
                "key_hash VARCHAR NOT NULL, key_alias VARCHAR, basis VARCHAR NOT NULL, weight DOUBLE NOT NULL, allocated_cost DECIMAL(18, 2) NOT NULL, "
                "currency VARCHAR NOT NULL, allocated_cost_usd DECIMAL(18, 2), PRIMARY KEY (day, model, team_id, key_hash))")
    old.execute("CREATE TABLE billing_days (day DATE PRIMARY KEY, billed BOOLEAN NOT NULL, models INTEGER NOT NULL, cost DECIMAL(18, 6), "
                "currency VARCHAR, restated BOOLEAN NOT NULL)")
    old.execute("INSERT INTO chargeback VALUES ('2026-11-10', 'm', 't', 'T', 'k', 'K', 'estimated cost', 1.0, 1.23, 'EUR', 1.54)")
    old.execute("INSERT INTO billing_days VALUES ('2026-11-10', true, 1, 1.23, 'EUR', false)")
    old.close()
    conn = warehouse.connect(tmp_path / "w.duckdb")
    assert conn.execute("SELECT day, team_id, allocated_cost, report_day FROM chargeback").fetchall() == \
        [(dt.date(2026, 11, 10), "t", Decimal("1.23"), dt.date(2026, 11, 10))]
    assert conn.execute("SELECT withdrawn FROM billing_days").fetchone() == (False,)
    types = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_name IN ('chargeback', 'reconciliation') "
                              "AND column_name IN ('allocated_cost', 'estimated_cost_usd', 'billed_cost_usd')").fetchall())
    assert types == {"allocated_cost": "DECIMAL(38,18)", "estimated_cost_usd": "DECIMAL(38,10)", "billed_cost_usd": "DECIMAL(38,12)"}
    conn.close()
    warehouse.connect(tmp_path / "w.duckdb").close()  # and opens again as it is
