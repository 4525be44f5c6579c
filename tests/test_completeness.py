"""The logs against the gateway's own daily totals: a fake LiteLLM gateway on 127.0.0.1,
a real DuckDB warehouse filled by the real landing and ingest, and real Dagster runs."""

import datetime as dt

import dagster as dg
import pytest

from fake_gateway import FakeGateway, day_of_traffic
from usage_jobs import warehouse
from usage_jobs.defs.gateway.completeness import (
    ANY,
    COMPLETE,
    MISSING_REQUESTS,
    NOT_IN_GATEWAY,
    TOKENS_DIFFER,
    WAREHOUSE_INCOMPLETE,
    GatewayActivityError,
    compare,
    comparisons,
    fetch_daily_activity,
    store_comparisons,
)
from usage_jobs.defs.gateway.ingest import ingest_day
from usage_jobs.defs.gateway.landing import landing_root
from usage_jobs.defs.gateway.pricing import load_prices
from usage_jobs.defs.gateway.spend_api import land_spend_logs_day

ADMIN_KEY = "sk-admin-COMPLETE-5d0c3e"
D1, D2 = dt.date(2026, 11, 10), dt.date(2026, 11, 11)
KEY_A, KEY_B = "a1" * 32, "b2" * 32
QWEN, BGE = "qwen35-35b-a3b-instruct", "bge-m3"
ALIASES = {KEY_A: "search-prod", KEY_B: "embeddings"}
LATER = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
LOST = 20  # requests of KEY_A × QWEN on D2 that never reached the logs


def _traffic() -> list[dict]:
    rows = []
    for day in (D1, D2):
        rows += day_of_traffic(day, {(KEY_A, QWEN): 120, (KEY_A, BGE): 30, (KEY_B, QWEN): 75}, aliases=ALIASES, users={KEY_A: "alice"})
    return rows


def _lost(rows: list[dict]) -> set[str]:
    chosen = [r["request_id"] for r in rows if r["api_key"] == KEY_A and r["model_group"] == QWEN and r["request_id"].startswith(f"req-{D2}")]
    return set(chosen[5:5 + LOST])


@pytest.fixture
def gateway():
    rows = _traffic()
    with FakeGateway(ADMIN_KEY, rows, missing_from_logs=_lost(rows)) as server:
        yield server


@pytest.fixture
def filled(gateway, tmp_path):
    """The warehouse as the pipeline fills it from the gateway's /spend/logs/v2 (which lost 20 requests)."""
    conn = warehouse.connect(tmp_path / "usage.duckdb")
    root = landing_root(tmp_path / "landing", gateway.url)
    for day in (D1, D2):
        land_spend_logs_day(gateway.url, ADMIN_KEY, day, "UTC", tmp_path / "landing", now=LATER)
        stats = ingest_day(conn, logs_dir=root, day=day, timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
        assert stats.rejected == 0
    yield conn
    conn.close()


def test_the_gap_is_named_with_numbers_and_complete_days_pass(gateway, filled):
    # A small page size makes a date span several pages, as LiteLLM pages the table rows.
    rows = fetch_daily_activity(gateway.url, ADMIN_KEY, D1, D2, page_size=2)
    assert len(gateway.calls("/user/daily/activity")) == 3
    assert {(r.day, r.key_hash, r.model, r.naming) for r in rows} == {
        (d, k, m, "model_group") for d in (D1, D2) for k, m in ((KEY_A, QWEN), (KEY_A, BGE), (KEY_B, QWEN))}
    gateway_qwen = next(r for r in rows if (r.day, r.key_hash, r.model) == (D2, KEY_A, QWEN))
    assert (gateway_qwen.requests, gateway_qwen.successful_requests, gateway_qwen.failed_requests) == (120, 118, 2)
    assert gateway_qwen.key_alias == "search-prod"

    gaps = compare(filled, rows, [D1, D2])
    assert len(gaps) == 1
    gap = gaps[0]
    assert (gap.day, gap.key_hash, gap.model, gap.status) == (D2, KEY_A, QWEN, MISSING_REQUESTS)
    assert (gap.gateway_requests, gap.logged_requests, gap.missing_requests) == (120, 100, LOST)
    assert gap.gateway_tokens > gap.logged_tokens > 0
    assert gap.describe().startswith("2026-11-11 (UTC) · key search-prod (a1a1a1a1…a1a1) · model qwen35-35b-a3b-instruct: "
                                     "the gateway counted 120 requests, the logs hold 100 (20 missing")

    lines = comparisons(filled, rows, [D1, D2])
    assert {c.status for c in lines if (c.day, c.key_hash, c.model) != (D2, KEY_A, QWEN)} == {COMPLETE}
    assert store_comparisons(filled, lines, [D1, D2]) == 6
    assert store_comparisons(filled, lines, [D1, D2]) == 6  # re-running replaces
    stored = filled.execute("SELECT day, key_hash, model, gateway_requests, logged_requests, status FROM gateway_completeness "
                            "WHERE status <> 'complete'").fetchall()
    assert stored == [(D2, KEY_A, QWEN, 120, 100, MISSING_REQUESTS)]


def test_a_gateway_without_model_groups_is_compared_by_deployment(gateway, filled):
    gateway.breakdown = "models"
    rows = fetch_daily_activity(gateway.url, ADMIN_KEY, D1, D2)
    assert {r.naming for r in rows} == {"model"} and {r.model for r in rows} == {f"hosted_vllm/{QWEN}", f"hosted_vllm/{BGE}"}
    gaps = compare(filled, rows, [D1, D2])
    assert [(g.day, g.key_hash, g.model, g.gateway_requests, g.logged_requests) for g in gaps] == [(D2, KEY_A, f"hosted_vllm/{QWEN}", 120, 100)]


def test_without_a_key_by_model_cross_models_and_keys_are_compared_apart(gateway, filled):
    gateway.breakdown = "no_cross"
    rows = fetch_daily_activity(gateway.url, ADMIN_KEY, D1, D2)
    gaps = compare(filled, rows, [D1, D2])
    assert sorted((g.key_hash, g.model, g.gateway_requests, g.logged_requests) for g in gaps) == [
        (ANY, f"hosted_vllm/{QWEN}", 195, 175), (KEY_A, ANY, 150, 130)]


def test_a_gateway_without_user_totals_falls_back_to_team_totals(gateway, filled):
    gateway.has_user_activity = False
    said = []
    rows = fetch_daily_activity(gateway.url, ADMIN_KEY, D1, D2, log=said.append)
    assert "reading /team/daily/activity" in said[0]
    assert [(g.day, g.key_hash, g.model, g.missing_requests) for g in compare(filled, rows, [D1, D2])] == [(D2, KEY_A, QWEN, LOST)]


def test_tokens_that_differ_are_a_gap_and_days_not_ingested_are_not_judged(gateway, filled):
    # The gateway counted 500 more tokens for one request of KEY_B on D1 than its log says.
    row = next(r for r in gateway.spend_logs if r["api_key"] == KEY_B and r["request_id"].startswith(f"req-{D1}"))
    row["completion_tokens"] += 500
    d3 = D2 + dt.timedelta(days=1)
    gateway.spend_logs += day_of_traffic(d3, {(KEY_B, BGE): 4})
    rows = fetch_daily_activity(gateway.url, ADMIN_KEY, D1, d3)
    lines = comparisons(filled, rows, [D1, D2, d3])
    by_status = {(c.day, c.key_hash, c.model): c.status for c in lines if c.status != COMPLETE}
    assert by_status == {(D1, KEY_B, QWEN): TOKENS_DIFFER, (D2, KEY_A, QWEN): MISSING_REQUESTS, (d3, KEY_B, BGE): WAREHOUSE_INCOMPLETE}
    # The logs' own view when the gateway has nothing for a key × model.
    only = comparisons(filled, [r for r in rows if r.key_hash != KEY_B], [D1])
    assert {c.status for c in only if c.key_hash == KEY_B} == {NOT_IN_GATEWAY}


def test_errors_name_the_setting_and_never_the_key(gateway):
    with pytest.raises(GatewayActivityError, match="HTTP 401: GATEWAY_ADMIN_KEY is wrong") as failure:
        fetch_daily_activity(gateway.url, "sk-wrong-SECRET-77", D1, D2)
    assert "sk-wrong-SECRET-77" not in str(failure.value)


# ---------------------------------------------------------------------------------------
# The asset, on a real (ephemeral) Dagster instance


def _daily(*assets) -> list[dg.AssetsDefinition]:
    from usage_jobs.defs.partitions import with_partitions

    return [with_partitions(asset, dg.DailyPartitionsDefinition(start_date="2026-01-01")) for asset in assets]


def _resources(tmp_path, gateway_url: str | None, admin_key: str | None):
    from usage_jobs.defs.gateway.completeness_assets import GatewayApiResource
    from usage_jobs.defs.resources import GatewayLogsResource, WarehouseResource

    return {
        "warehouse": WarehouseResource(path=str(tmp_path / "usage.duckdb")),
        "gateway_logs": GatewayLogsResource(logs_dir=str(tmp_path / "unused"), source="gateway-api", landing_dir=str(tmp_path / "landing"),
                                            gateway_base_url=gateway_url, gateway_admin_key=admin_key, timezone="UTC"),
        "gateway_api": GatewayApiResource(base_url=gateway_url, admin_key=admin_key),
    }


def test_the_asset_lands_ingests_and_warns_naming_the_missing_requests(gateway, tmp_path):
    from usage_jobs.defs.gateway.assets import gateway_requests, raw_gateway_logs
    from usage_jobs.defs.gateway.completeness_assets import LOGS_COMPLETE_CHECK, gateway_completeness

    instance = dg.DagsterInstance.ephemeral()
    resources = _resources(tmp_path, gateway.url, ADMIN_KEY)
    assets = _daily(raw_gateway_logs, gateway_requests, gateway_completeness)

    result = dg.materialize(assets, resources=resources, instance=instance, partition_key=D1.isoformat())
    assert result.success
    (passed,) = [e for e in result.get_asset_check_evaluations() if e.check_name == LOGS_COMPLETE_CHECK]
    assert passed.passed and passed.severity == dg.AssetCheckSeverity.WARN

    result = dg.materialize(assets, resources=resources, instance=instance, partition_key=D2.isoformat())
    assert result.success  # a WARN check does not fail the run
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == LOGS_COMPLETE_CHECK]
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    assert "2026-11-11 (UTC) · key search-prod (a1a1a1a1…a1a1) · model qwen35-35b-a3b-instruct: the gateway counted 120 requests, " \
           "the logs hold 100 (20 missing" in check.description
    assert check.metadata["missing requests"].value == LOST and check.metadata["gaps"].value == 1
    (materialization,) = [m for m in result.asset_materializations_for_node("gateway_completeness")]
    assert materialization.metadata["dagster/row_count"].value == 3
    assert "qwen35-35b-a3b-instruct" in materialization.metadata["preview"].value
    with warehouse.session(tmp_path / "usage.duckdb", read_only=True) as conn:
        assert conn.execute("SELECT day, status, count(*) FROM gateway_completeness GROUP BY ALL ORDER BY ALL").fetchall() == [
            (D1, COMPLETE, 3), (D2, COMPLETE, 2), (D2, MISSING_REQUESTS, 1)]


def test_the_asset_skips_cleanly_without_a_gateway(tmp_path):
    from usage_jobs.defs.gateway.completeness_assets import LOGS_COMPLETE_CHECK, gateway_completeness

    result = dg.materialize(_daily(gateway_completeness), resources=_resources(tmp_path, None, None), instance=dg.DagsterInstance.ephemeral(),
                            partition_key=D1.isoformat())
    assert result.success
    (materialization,) = result.asset_materializations_for_node("gateway_completeness")
    assert materialization.metadata["gateway"].value == "not configured"
    (check,) = [e for e in result.get_asset_check_evaluations() if e.check_name == LOGS_COMPLETE_CHECK]
    assert check.passed
