"""Billing through real Dagster runs: the emulator on 127.0.0.1 serves billed counts this test
computes itself from the warehouse, so the variance and the allocation have known answers."""

import csv
import datetime as dt
import shutil
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from conftest import DEMO_DAYS, DEMO_END
from usage_jobs.definitions import BILLING_ASSETS, GATEWAY_ASSETS, SITE_ASSETS, build_resources, partitioned
from usage_jobs.defs.billing.statement import statement
from usage_jobs.demo.emulator import Faults, IG1Emulator
from usage_jobs.settings import load_settings

MASTER_KEY = "ig1-master-PIPELINE-5e4d3c2b1a"
DAYS = [DEMO_END - dt.timedelta(days=i) for i in range(DEMO_DAYS - 1, -1, -1)]
TOKEN_FACTOR = Decimal("1.10")  # IG1 counts 10% more tokens than the gateway
COST_FACTOR = Decimal("1.05")  # and bills 5% more, in EUR at 1.25 USD per EUR
USD_PER_EUR = Decimal("1.25")
GHOST_MODEL = "billed-but-never-seen"
CENT = Decimal("0.01")


def _settings(tmp_path: Path, demo_org: Path, url: str, **extra) -> object:
    return load_settings({
        "USAGE_LOGS_DIR": str(demo_org / "logs"), "USAGE_WAREHOUSE": str(tmp_path / "usage.duckdb"), "USAGE_SITE_DIR": str(tmp_path / "site"),
        "USAGE_INVENTORY_FILE": str(demo_org / "inventory.json"), "USAGE_START_DATE": "2026-01-01",
        "IG1_BASE_URL": url, "IG1_MASTER_KEY": MASTER_KEY, "IG1_USD_RATE": str(USD_PER_EUR), **extra,
    })


def _ledger_from_warehouse(warehouse: Path) -> dict:
    """What IG1 'bills': the gateway's successful usage per UTC day × model, scaled by known factors."""
    conn = duckdb.connect(str(warehouse), read_only=True)
    rows = conn.execute(
        "SELECT strftime(CAST(start_time AS DATE), '%Y-%m-%d'), model, sum(input_tokens), sum(output_tokens), count(*), sum(spend_usd) "
        "FROM requests WHERE status = 'success' GROUP BY ALL ORDER BY ALL").fetchall()
    data = []
    for day, model, input_tokens, output_tokens, requests, spend in rows:
        cost = spend * COST_FACTOR / USD_PER_EUR if spend is not None else Decimal(input_tokens + output_tokens) / 10**6
        data.append({"date": day, "model": model, "input_tokens": int(input_tokens * TOKEN_FACTOR), "output_tokens": int(output_tokens * TOKEN_FACTOR),
                     "requests": requests, "cost": float(cost.quantize(Decimal("0.000001")))})
    data.append({"date": DEMO_END.isoformat(), "model": GHOST_MODEL, "input_tokens": 100, "output_tokens": 0, "requests": 1, "cost": 0.07})
    return {"currency": "EUR", "commit": 40, "max_throughput": 100, "data": data}


def _bill(settings, instance, first: dt.date, last: dt.date) -> dg.ExecuteInProcessResult:
    return dg.materialize(partitioned(BILLING_ASSETS, settings), resources=build_resources(settings), instance=instance, raise_on_error=False,
                          tags={"dagster/asset_partition_range_start": first.isoformat(), "dagster/asset_partition_range_end": last.isoformat()})


def _checks(result) -> dict[str, tuple[bool, str]]:
    return {e.check_name: (e.passed, e.severity.value) for e in result.get_asset_check_evaluations()}


@pytest.fixture(scope="module")
def billed(demo_org, tmp_path_factory):
    """Four gateway days ingested; IG1 has billed the first three and not yet the last (held back)."""
    tmp_path = tmp_path_factory.mktemp("billing")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("IG1_MASTER_KEY", MASTER_KEY)
        plain = _settings(tmp_path, demo_org, "http://127.0.0.1:9")
        instance = dg.DagsterInstance.ephemeral()
        for day in DAYS:
            assert dg.materialize(partitioned(GATEWAY_ASSETS, plain), partition_key=day.isoformat(), resources=build_resources(plain),
                                  instance=instance).success
        ledger = _ledger_from_warehouse(plain.warehouse)
        with IG1Emulator(ledger, MASTER_KEY, today=DEMO_END + dt.timedelta(days=1), faults=Faults(missing_days={DEMO_END.isoformat()})) as emulator:
            settings = _settings(tmp_path, demo_org, emulator.url)
            result = _bill(settings, instance, DAYS[0], DAYS[-1])
            assert result.success
            assert dg.materialize(SITE_ASSETS, resources=build_resources(settings), instance=instance).success
            yield {"settings": settings, "ledger": ledger, "result": result, "instance": instance, "emulator": emulator, "demo_org": demo_org}


def test_variance_equals_the_factors_the_billed_counts_were_made_with(billed):
    conn = duckdb.connect(str(billed["settings"].warehouse), read_only=True)
    rows = conn.execute("SELECT day, model, status, token_variance_pct, cost_variance_pct, billed_cost, billed_cost_usd, usd_rate, "
                        "estimated_input_tokens, billed_input_tokens, estimated_cost_usd, estimated_output_tokens "
                        "FROM reconciliation ORDER BY day, model").fetchall()
    reconciled = [r for r in rows if r[2] == "reconciled"]
    assert {r[0] for r in reconciled} == set(DAYS[:-1])
    ledger = {(row["date"], row["model"]): Decimal(str(row["cost"])) for row in billed["ledger"]["data"]}
    spend = {(day, model): total for day, model, total in conn.execute(
        "SELECT CAST(start_time AS DATE), model, sum(spend_usd) FROM requests WHERE status = 'success' GROUP BY ALL").fetchall()}
    for day, model, _, tokens, cost, billed_cost, billed_usd, rate, estimated_input, billed_input, estimated_usd, estimated_output in reconciled:
        assert billed_input == int(estimated_input * TOKEN_FACTOR)
        billed_tokens = int(estimated_input * TOKEN_FACTOR) + int(estimated_output * TOKEN_FACTOR)
        assert tokens == pytest.approx((billed_tokens - estimated_input - estimated_output) / (estimated_input + estimated_output) * 100, abs=1e-4)
        assert tokens == pytest.approx(10.0, abs=0.5), (day, model)  # +10% but for whole-token rounding
        # +5% before the ledger rounded the cost to 6 decimals (visible on tiny amounts): computed from the ledger's own value.
        estimated = spend[(day, model)]
        assert estimated_usd == estimated  # every decimal the gateway's costs have: a variance recomputes from it
        assert cost == pytest.approx(float((ledger[(day.isoformat(), model)] * USD_PER_EUR - estimated) / estimated * 100), abs=1e-4)
        assert rate == USD_PER_EUR and billed_usd == billed_cost * USD_PER_EUR
    unpriced = [r for r in rows if r[2] == "unpriced at the gateway"]
    assert unpriced and all(r[3] == pytest.approx(10.0, abs=0.5) and r[4] is None for r in unpriced)
    assert {r[2] for r in rows if r[0] == DEMO_END} == {"not billed yet"}


def test_the_shares_add_up_to_each_billed_amount_exactly(billed):
    conn = duckdb.connect(str(billed["settings"].warehouse), read_only=True)
    billed_rows = conn.execute("SELECT day, model, cost FROM billed_usage").fetchall()
    assert billed_rows
    for day, model, cost in billed_rows:
        allocated, allocated_usd, shares, basis = conn.execute(
            "SELECT sum(allocated_cost), sum(allocated_cost_usd), count(*), any_value(basis) FROM chargeback WHERE day = ? AND model = ?",
            [day, model]).fetchone()
        assert allocated == cost, (day, model)  # full precision: nothing rounded per day × model
        assert allocated_usd == cost * USD_PER_EUR, (day, model)
        expected_basis = "tokens" if model == "qwen36-27b-instruct-preview" else "estimated cost"
        assert basis == expected_basis and shares >= 1
    # Each key's share follows its estimated cost: the biggest spender gets the biggest share.
    day, model = conn.execute("SELECT day, model FROM chargeback GROUP BY ALL ORDER BY count(*) DESC, day, model LIMIT 1").fetchone()
    order = conn.execute("SELECT key_hash FROM chargeback WHERE day = ? AND model = ? ORDER BY weight DESC, key_hash", [day, model]).fetchall()
    assert order[0] == conn.execute("SELECT key_hash FROM chargeback WHERE day = ? AND model = ? ORDER BY allocated_cost DESC, weight DESC, key_hash LIMIT 1",
                                    [day, model]).fetchone()


def test_a_day_not_billed_warns_while_recent_and_fails_once_too_late(billed):
    # The run measures lateness from the real date: 2026-11-20 is more than IG1_LATE_DAYS=2 days before it.
    assert _checks(billed["result"])["billing_arrived"] == (False, "ERROR")
    assert _checks(billed["result"])["variance_within_threshold"] == (True, "WARN")
    patient = _settings(billed["settings"].warehouse.parent, billed["demo_org"], billed["emulator"].url, IG1_LATE_DAYS="3650", USAGE_VARIANCE_WARN_PCT="5")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("IG1_MASTER_KEY", MASTER_KEY)
        result = _bill(patient, dg.DagsterInstance.ephemeral(), DEMO_END, DEMO_END)
    assert _checks(result)["billing_arrived"] == (False, "WARN")
    assert _checks(result)["variance_within_threshold"] == (False, "WARN")  # 10% > 5%
    variance = next(e for e in result.get_asset_check_evaluations() if e.check_name == "variance_within_threshold")
    assert {"worst day", "worst model", "token variance %"} <= set(variance.metadata)


def test_a_late_day_then_a_restated_day_replace_the_earlier_figures(billed, tmp_path):
    shutil.copy(billed["settings"].warehouse, tmp_path / "usage.duckdb")
    with pytest.MonkeyPatch.context() as env, IG1Emulator(billed["ledger"], MASTER_KEY, today=DEMO_END + dt.timedelta(days=1)) as emulator:
        env.setenv("IG1_MASTER_KEY", MASTER_KEY)
        settings = _settings(tmp_path, billed["demo_org"], emulator.url)
        instance = dg.DagsterInstance.ephemeral()
        assert _bill(settings, instance, DEMO_END, DEMO_END).success  # the daily run: the day and the two before it
        conn = duckdb.connect(str(settings.warehouse), read_only=True)
        first_cost = conn.execute("SELECT sum(cost) FROM billed_usage WHERE day = ?", [DEMO_END]).fetchone()[0]
        assert conn.execute("SELECT billed, restated FROM billing_days WHERE day = ?", [DEMO_END]).fetchone() == (True, False)
        ghost = conn.execute("SELECT team_id, key_hash, basis, allocated_cost FROM chargeback WHERE model = ?", [GHOST_MODEL]).fetchall()
        assert ghost == [("not-seen-by-gateway", "not-seen-by-gateway", "no gateway traffic", Decimal("0.07"))]
        assert conn.execute("SELECT status FROM reconciliation WHERE model = ?", [GHOST_MODEL]).fetchone()[0] == "no gateway traffic"
        conn.close()

        emulator.faults.restated = {DEMO_END.isoformat(): 1.5}
        result = _bill(settings, instance, DEMO_END, DEMO_END)
        assert result.success
        assert result.asset_materializations_for_node("billed_usage")[0].metadata["restated days"].value == DEMO_END.isoformat()
        conn = duckdb.connect(str(settings.warehouse), read_only=True)
        restated_cost = conn.execute("SELECT sum(cost) FROM billed_usage WHERE day = ?", [DEMO_END]).fetchone()[0]
        assert restated_cost == pytest.approx(first_cost * Decimal("1.5"), abs=Decimal("0.00001"))
        assert conn.execute("SELECT count(*) FROM billed_usage WHERE day = ?", [DEMO_END]).fetchone()[0] == \
            sum(1 for row in billed["ledger"]["data"] if row["date"] == DEMO_END.isoformat())
        assert conn.execute("SELECT restated FROM billing_days WHERE day = ?", [DEMO_END]).fetchone()[0] is True
        tokens = conn.execute("SELECT min(token_variance_pct), max(token_variance_pct) FROM reconciliation "
                              "WHERE day = ? AND status = 'reconciled'", [DEMO_END]).fetchone()
        assert tokens == pytest.approx((65.0, 65.0), abs=0.1)  # 1.1 × 1.5
        for model, cost in conn.execute("SELECT model, cost FROM billed_usage WHERE day = ?", [DEMO_END]).fetchall():
            assert conn.execute("SELECT sum(allocated_cost) FROM chargeback WHERE day = ? AND model = ?", [DEMO_END, model]).fetchone()[0] == cost


def test_the_site_shows_the_reconciliation_and_fills_the_billed_columns(billed):
    site = billed["settings"].site_dir / "periods" / "last-7-days"
    page = (site / "reconciliation.html").read_text()
    assert "Estimated vs billed" in page and "EUR" in page and f"IG1 has not billed {DEMO_END}" in page
    assert "Monthly commit" in page and "Projected month end" in page
    conn = duckdb.connect(str(billed["settings"].warehouse), read_only=True)
    teams = list(csv.DictReader((site / "exports" / "teams.csv").open(encoding="utf-8")))
    assert sum(Decimal(t["billed_cost_allocated"] or 0) for t in teams) == conn.execute("SELECT sum(allocated_cost) FROM chargeback").fetchone()[0]
    models = {m["model"]: m for m in csv.DictReader((site / "exports" / "models.csv").open(encoding="utf-8"))}
    for model, cost, billed_input in conn.execute("SELECT model, sum(cost), sum(input_tokens) FROM billed_usage GROUP BY model").fetchall():
        assert Decimal(models[model]["billed_cost"]) == cost and int(models[model]["billed_input_tokens"]) == billed_input
    reconciliation = list(csv.DictReader((site / "exports" / "reconciliation.csv").open(encoding="utf-8")))
    assert list(reconciliation[0])[:12] == ["date", "model", "estimated_input_tokens", "billed_input_tokens", "estimated_output_tokens",
                                            "billed_output_tokens", "token_variance_pct", "estimated_cost_usd", "billed_cost", "billed_currency",
                                            "billed_cost_usd", "cost_variance_pct"]
    assert len(reconciliation) == conn.execute("SELECT count(*) FROM reconciliation").fetchone()[0]


def test_the_master_key_never_leaves_the_environment(billed, caplog, capsys):
    billed["emulator"].faults = Faults(unavailable_left=1, wrong_shape_left=1)
    with pytest.MonkeyPatch.context() as env, caplog.at_level("DEBUG"):
        env.setenv("IG1_MASTER_KEY", MASTER_KEY)
        failed = _bill(billed["settings"], billed["instance"], DEMO_END, DEMO_END)
    assert not failed.success  # a retried 503, then a body of the wrong shape: the partition fails, clearly
    instance = billed["instance"]
    events = [str(event) for run in instance.get_run_records() for event in instance.all_logs(run.dagster_run.run_id)]
    assert events and any("unexpected response" in e for e in events)
    assert not any(MASTER_KEY in e for e in events)
    assert MASTER_KEY not in caplog.text
    captured = capsys.readouterr()
    assert MASTER_KEY not in captured.out + captured.err
    assert MASTER_KEY.encode() not in billed["settings"].warehouse.read_bytes()
    for path in billed["settings"].site_dir.rglob("*"):
        if path.is_file():
            assert MASTER_KEY.encode() not in path.read_bytes(), path


def test_refetching_a_month_on_demand_clears_a_day_ig1_withdrew(billed, tmp_path):
    """`refetch_month` (run config of billed_usage) asks IG1 for the whole month: a day it no longer bills is cleared and marked."""
    shutil.copy(billed["settings"].warehouse, tmp_path / "usage.duckdb")
    withdrawn = DAYS[0]
    faults = Faults(missing_days={withdrawn.isoformat(), DEMO_END.isoformat()})
    with pytest.MonkeyPatch.context() as env, IG1Emulator(billed["ledger"], MASTER_KEY, today=DEMO_END + dt.timedelta(days=1), faults=faults) as emulator:
        env.setenv("IG1_MASTER_KEY", MASTER_KEY)
        settings = _settings(tmp_path, billed["demo_org"], emulator.url)
        month = DEMO_END.strftime("%Y-%m")
        result = dg.materialize(partitioned(BILLING_ASSETS, settings), resources=build_resources(settings), instance=dg.DagsterInstance.ephemeral(),
                                partition_key=DEMO_END.isoformat(), run_config={"ops": {"billed_usage": {"config": {"refetch_month": month}}}})
        assert result.success
        metadata = result.asset_materializations_for_node("billed_usage")[0].metadata
        assert metadata["months fetched again"].value == month and metadata["withdrawn days"].value == withdrawn.isoformat()
    conn = duckdb.connect(str(settings.warehouse), read_only=True)
    assert conn.execute("SELECT count(*) FROM billed_usage WHERE day = ?", [withdrawn]).fetchone()[0] == 0
    assert conn.execute("SELECT billed, withdrawn FROM billing_days WHERE day = ?", [withdrawn]).fetchone() == (True, True)
    assert conn.execute("SELECT count(*) FROM chargeback WHERE day = ?", [withdrawn]).fetchone()[0] == 0
    assert {r[0] for r in conn.execute("SELECT DISTINCT status FROM reconciliation WHERE day = ?", [withdrawn]).fetchall()} == {"withdrawn by IG1"}
    # The days IG1 still bills are untouched; the month's statement is their total, to the cent.
    kept = sum((Decimal(str(row["cost"])) for row in billed["ledger"]["data"] if withdrawn.isoformat() < row["date"] < DEMO_END.isoformat()), Decimal(0))
    assert statement(conn, DEMO_END.replace(day=1), DEMO_END).billed_total == kept.quantize(CENT, ROUND_HALF_UP)


def test_a_backfill_over_a_whole_ended_month_is_its_month_close_fetch(billed, tmp_path):
    """A backfill from the first day (2026-10-30) to DEMO_END asks IG1 for all of October in its own window: October is closed by
    it, and the next daily run does not ask for the month a second time."""
    shutil.copy(billed["settings"].warehouse, tmp_path / "usage.duckdb")
    october = {"date": "2026-10-30", "model": GHOST_MODEL, "input_tokens": 10, "output_tokens": 0, "cost": 2.0}
    ledger = {**billed["ledger"], "data": [*billed["ledger"]["data"], october]}
    with pytest.MonkeyPatch.context() as env, IG1Emulator(ledger, MASTER_KEY, today=DEMO_END + dt.timedelta(days=1)) as emulator:
        env.setenv("IG1_MASTER_KEY", MASTER_KEY)
        settings = _settings(tmp_path, billed["demo_org"], emulator.url, USAGE_START_DATE="2026-10-30")
        instance = dg.DagsterInstance.ephemeral()
        backfill = _bill(settings, instance, dt.date(2026, 10, 30), DEMO_END)
        assert backfill.success
        metadata = backfill.asset_materializations_for_node("billed_usage")[0].metadata
        assert (metadata["months fetched again"].value, metadata["months closed"].value) == ("none", "2026-10")
        asked = len(emulator.requests_served)
        daily = _bill(settings, instance, DEMO_END, DEMO_END).asset_materializations_for_node("billed_usage")[0].metadata
        assert daily["months fetched again"].value == "none"
        assert [path for path, _ in emulator.requests_served[asked:] if path.endswith("/usage/history")] == ["/usage/history"]  # its own window only
    conn = duckdb.connect(str(settings.warehouse), read_only=True)
    assert conn.execute("SELECT month, closed FROM billing_months").fetchall() == [("2026-10", True)]
    assert statement(conn, dt.date(2026, 10, 1), dt.date(2026, 10, 31)).billed_total == Decimal("2.00")
    conn.close()


def test_a_restatement_of_an_ended_month_is_picked_up_at_month_close(billed, tmp_path):
    """October was billed €2.00 on the 30th; IG1 restates it to €2.50 weeks later, far outside IG1_REFRESH_DAYS.
    The first run of a day in November asks for the whole of October again, once (then the month is closed)."""
    shutil.copy(billed["settings"].warehouse, tmp_path / "usage.duckdb")
    october = {"date": "2026-10-30", "model": GHOST_MODEL, "input_tokens": 10, "output_tokens": 0, "cost": 2.0}
    conn = duckdb.connect(str(tmp_path / "usage.duckdb"))
    conn.execute("INSERT INTO billed_usage VALUES ('2026-10-30', ?, 10, 0, NULL, 2.0, 'EUR')", [GHOST_MODEL])
    conn.execute("INSERT INTO billing_days VALUES ('2026-10-30', true, 1, 2.0, 'EUR', false, false)")
    conn.close()
    ledger = {**billed["ledger"], "data": [*billed["ledger"]["data"], {**october, "cost": 2.5}]}
    with pytest.MonkeyPatch.context() as env, IG1Emulator(ledger, MASTER_KEY, today=DEMO_END + dt.timedelta(days=1)) as emulator:
        env.setenv("IG1_MASTER_KEY", MASTER_KEY)
        settings = _settings(tmp_path, billed["demo_org"], emulator.url)
        instance = dg.DagsterInstance.ephemeral()
        first = _bill(settings, instance, DEMO_END, DEMO_END)
        assert first.success
        metadata = first.asset_materializations_for_node("billed_usage")[0].metadata
        assert metadata["months fetched again"].value == "2026-10" and metadata["months closed"].value == "2026-10"
        assert "2026-10-30" in metadata["restated days"].value
        again = _bill(settings, instance, DEMO_END, DEMO_END).asset_materializations_for_node("billed_usage")[0].metadata
        assert again["months fetched again"].value == "none"  # closed: asked once
    conn = duckdb.connect(str(settings.warehouse), read_only=True)
    assert conn.execute("SELECT cost FROM billed_usage WHERE day = '2026-10-30'").fetchone()[0] == Decimal("2.5")
    assert conn.execute("SELECT sum(allocated_cost), any_value(team_id) FROM chargeback WHERE day = '2026-10-30'").fetchone() == \
        (Decimal("2.5"), "not-seen-by-gateway")
    assert statement(conn, dt.date(2026, 10, 1), dt.date(2026, 10, 31)).billed_total == Decimal("2.50")
