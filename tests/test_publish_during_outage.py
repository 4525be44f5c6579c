"""`usage-report run` while IG1 billing and the gateway's inventory are down: the newly ingested
days are published from what the warehouse holds, every page states the outage, and the
command exits non-zero naming the assets that failed (their own messages in its output)."""

import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
from werkzeug import Request, Response

from conftest import DEMO_END
from helpers import local_http_server
from usage_jobs.demo.emulator import IG1Emulator

USAGE_REPORT = Path(sys.executable).with_name("usage-report")
ADMIN_KEY = "sk-admin-outage-test"
MASTER_KEY = "ig1-outage-test-master-key"
INVENTORY_PARTS = {"/key/list": "keys", "/team/list": "teams"}  # endpoint → its part of the demo's inventory.json


class InventoryGateway:
    """The gateway's /key/list and /team/list over the demo inventory; `down` makes it answer 503."""

    def __init__(self, inventory: dict):
        self.inventory, self.down = inventory, False
        self._serving = contextlib.ExitStack()
        server = self._serving.enter_context(local_http_server(threaded=True))
        server.expect_request("").respond_with_handler(self._respond)  # "": every path
        self.url = server.url_for("").rstrip("/")

    def _respond(self, request: Request) -> Response:
        if self.down:
            status, body = 503, {"error": {"message": "Service Unavailable"}}
        elif request.headers.get("Authorization") != f"Bearer {ADMIN_KEY}":
            status, body = 401, {"error": {"message": "Authentication Error"}}
        elif request.path in INVENTORY_PARTS:
            status, body = 200, self.inventory[INVENTORY_PARTS[request.path]]
        else:
            status, body = 404, {"detail": "Not Found"}
        return Response(json.dumps(body), status, content_type="application/json")

    def stop(self):
        self._serving.close()


def _run(env: dict, start: dt.date, end: dt.date) -> subprocess.CompletedProcess:
    return subprocess.run([str(USAGE_REPORT), "run", "--start", start.isoformat(), "--end", end.isoformat()],
                          env=env, capture_output=True, text=True, timeout=300)


def test_site_is_published_from_the_warehouse_while_billing_and_the_inventory_are_down(demo_org, tmp_path):
    inventory = InventoryGateway(json.loads((demo_org / "inventory.json").read_text()))
    emulator = IG1Emulator.from_file(demo_org / "billing" / "ledger.json", MASTER_KEY, today=DEMO_END + dt.timedelta(days=1)).start()
    site = tmp_path / "site"
    env = {**os.environ, "USAGE_LOGS_DIR": str(demo_org / "logs"), "USAGE_WAREHOUSE": str(tmp_path / "w.duckdb"), "USAGE_SITE_DIR": str(site),
           "DAGSTER_HOME": str(tmp_path / "dagster"), "USAGE_START_DATE": "2026-01-01", "USAGE_TIMEZONE": "UTC",
           "GATEWAY_BASE_URL": inventory.url, "GATEWAY_ADMIN_KEY": ADMIN_KEY, "IG1_BASE_URL": emulator.url, "IG1_MASTER_KEY": MASTER_KEY,
           "IG1_USD_RATE": str(demo_org / "billing" / "usd_per_eur.csv"), "IG1_MAX_RETRIES": "1", "GATEWAY_MAX_RETRIES": "1"}
    env.pop("USAGE_INVENTORY_FILE", None)
    ig1_up = True
    try:
        # Everything up: two days, billing, inventory and commit status, the site.
        first = _run(env, DEMO_END - dt.timedelta(days=3), DEMO_END - dt.timedelta(days=2))
        assert first.returncode == 0, first.stdout + first.stderr
        asked_on = dt.datetime.now(dt.UTC).date()  # IG1_BILLING_TIMEZONE is UTC
        assert "could not be" not in (site / "index.html").read_text()

        # IG1 stopped, the gateway answering 503: two more days.
        emulator.stop()
        ig1_up = False
        inventory.down = True
        second = _run(env, DEMO_END - dt.timedelta(days=1), DEMO_END)
    finally:
        inventory.stop()
        if ig1_up:
            emulator.stop()
    out = second.stdout
    assert second.returncode == 1, out + second.stderr
    assert "Traceback" not in out + second.stderr
    # Each source fails on its own, visibly, with its own message; the days are ingested all the same.
    assert f"[2/2] {DEMO_END}" in out and "2/2 days ingested" in out
    inventory_line = next(line for line in out.splitlines() if line.startswith("Key inventory FAILED (key_inventory): "))
    assert "503" in inventory_line
    assert any(line.startswith("IG1 commit status FAILED (commit_status): ") and "IG1" in line for line in out.splitlines())
    assert "Billing FAILED: billed_usage: " in out
    assert "Site built in" in out
    failed_line = next(line for line in out.splitlines() if "asset(s) failed: " in line)
    assert {"billed_usage", "key_inventory", "commit_status"} <= set(failed_line.split(": ", 1)[1].split(";")[0].split(", "))
    assert "the site was published from what the warehouse holds" in failed_line

    # The site holds the new days, and every page states both outages.
    assert (site / "periods" / DEMO_END.isoformat() / "index.html").is_file()
    index = (site / "index.html").read_text()
    assert f"up to {DEMO_END}" in index
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 50
    for page in pages:
        text = page.read_text()
        assert "IG1 billing could not be reached at " in text and f"commit figures are from {asked_on}" in text, page
        assert "The key inventory could not be refreshed at " in text and "unused keys are as of " in text, page
    keys_page = (site / "periods" / "last-7-days" / "keys.html").read_text()
    assert "Without the inventory" not in keys_page  # the previous snapshot is shown, as of its time
    with duckdb.connect(str(tmp_path / "w.duckdb"), read_only=True) as conn:
        assert conn.execute("SELECT count(*) FROM inventory_keys").fetchone()[0] == 60
        assert conn.execute("SELECT max(day) FROM ingest_days").fetchone()[0] == DEMO_END


def test_under_dagster_the_site_is_rebuilt_after_every_daily_run_even_a_failed_one():
    """The schedule's path: daily run (success or failure) → refresh_sources_job → site_job, the site alone in its run."""
    import dagster as dg

    from usage_jobs.definitions import build_definitions
    from usage_jobs.settings import load_settings

    defs = build_definitions(load_settings({}))
    assert sorted(node.name for node in defs.resolve_job_def("site_job").graph.nodes) == ["usage_report_site"]
    assert sorted(node.name for node in defs.resolve_job_def("refresh_sources_job").graph.nodes) == ["commit_status", "key_inventory"]
    instance = dg.DagsterInstance.ephemeral()
    for name, status, event in (("rebuild_site_after_daily_run", dg.DagsterRunStatus.SUCCESS, "PIPELINE_SUCCESS"),
                                ("rebuild_site_after_failed_run", dg.DagsterRunStatus.FAILURE, "PIPELINE_FAILURE")):
        sensor = defs.resolve_sensor_def(name)
        assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
        for job, then in (("daily_usage_job", "refresh_sources_job"), ("refresh_sources_job", "site_job")):
            context = dg.build_run_status_sensor_context(
                sensor_name=name, dagster_instance=instance, dagster_run=dg.DagsterRun(job_name=job, run_id=f"run-of-{job}", status=status),
                dagster_event=dg.DagsterEvent(event_type_value=event, job_name=job), repository_def=defs.get_repository_def())
            request = sensor(context)
            assert request.job_name == then and request.run_key.endswith(f"-after-run-of-{job}")
