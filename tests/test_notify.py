"""The admins' digest and the failure alerts: built from a small warehouse this file writes, sent to a
real SMTP server on 127.0.0.1 (aiosmtpd) and a local webhook receiver, once per report day."""

import datetime as dt
import email
import email.policy
import json
import logging
import socket
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from helpers import KEY, local_http_server, payload, write
from usage_jobs import warehouse
from usage_jobs.definitions import DAILY_JOB, SITE_JOB, build_definitions
from usage_jobs.defs.gateway.aggregates import aggregate_day
from usage_jobs.defs.gateway.ingest import ingest_day
from usage_jobs.defs.gateway.pricing import load_prices
from usage_jobs.defs.notify.command import digest_command
from usage_jobs.defs.notify.digest import FailedCheck, build_digest
from usage_jobs.defs.notify.jobs import DIGEST_JOB
from usage_jobs.defs.notify.render import Links, digest_message
from usage_jobs.defs.notify.resources import NOT_CONFIGURED
from usage_jobs.defs.report.queries import page_name
from usage_jobs.settings import SettingsError, load_settings

DAY = dt.date(2026, 11, 20)  # a Friday
# Requests a day and the cost of each: the report day, the four Fridays before it, and a Thursday that is not "the usual".
TRAFFIC = {DAY: (12, Decimal("0.25")), DAY - dt.timedelta(days=7): (4, Decimal("0.10")), DAY - dt.timedelta(days=14): (6, Decimal("0.10")),
           DAY - dt.timedelta(days=21): (5, Decimal("0.10")), DAY - dt.timedelta(days=28): (9, Decimal("0.10")),
           DAY - dt.timedelta(days=1): (500, Decimal("0.10"))}
USUAL_REQUESTS = (5 + 6) / 2  # median of the Fridays 4, 6, 5, 9
SPIKY = "b" * 64  # the key with an anomaly on DAY, its alias full of HTML
# Its page: the month's one key page, the key in the query, at DAY's row (a day has no key page).
SPIKY_PATH = f"periods/{DAY:%Y-%m}/key.html?k={page_name(SPIKY)}#d-{DAY}"
SPIKY_ALIAS = "<b>bob & co</b>"
EXPIRED, OVER_BUDGET = "c" * 64, "d" * 64
SITE_URL = "https://reports.example.org/ig1"
PASSWORD, WEBHOOK_PATH = "smtp-secret-password", "/services/T000/B000/webhook-secret-token"


def _records(day: dt.date, count: int, cost: Decimal, key: str, alias: str, prefix: str) -> list[dict]:
    metadata = {"user_api_key_hash": key, "user_api_key_alias": alias, "user_api_key_team_id": "team-1", "user_api_key_team_alias": "Team One"}
    return [payload(f"{prefix}-{day}-{i}", start=f"{day} 10:00:{i % 60:02d}.000000", response_cost=float(cost), metadata=metadata)
            for i in range(count)]


@pytest.fixture(scope="module")
def warehouse_path(tmp_path_factory) -> Path:
    """Six days of logs ingested; on DAY also an expired key and one over its budget used, an anomaly, billing and the commit."""
    root = tmp_path_factory.mktemp("notify")
    logs, path = root / "logs", root / "w.duckdb"
    for day, (count, cost) in TRAFFIC.items():
        records = _records(day, count, cost, KEY, "alias", "main")
        if day == DAY:
            records += _records(day, 1, Decimal("0.05"), SPIKY, SPIKY_ALIAS, "spiky") + _records(day, 1, Decimal("0.05"), EXPIRED, "old", "expired")
            records += _records(day, 2, Decimal("1.50"), OVER_BUDGET, "spender", "budget")
        write(logs / day.isoformat() / "batch.ndjson", "\n".join(json.dumps(r) for r in records) + "\n")
    conn = warehouse.connect(path)
    for day in TRAFFIC:
        ingest_day(conn, logs_dir=logs, day=day, timezone="UTC", prices=load_prices(), max_record_bytes=16_000_000)
        aggregate_day(conn, day)
    conn.executemany("INSERT INTO inventory_keys (key_hash, key_alias, team_id, max_budget, budget_duration, blocked, expires) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [[EXPIRED, "old", "team-1", None, None, False, dt.datetime(2026, 11, 18, tzinfo=dt.UTC)],
                      [OVER_BUDGET, "spender", "team-1", 2.0, "1d", False, None]])
    conn.execute("INSERT INTO key_anomalies VALUES (?, ?, 'requests', 40, 2, 12.5, 'requests 40 against a median of 2')", [SPIKY, DAY])
    reconciled = [(DAY - dt.timedelta(days=1), "qwen-big", 25.0, 30.0), (DAY - dt.timedelta(days=2), "qwen-small", 4.0, 5.0),
                  (DAY - dt.timedelta(days=9), "qwen-old", 80.0, 80.0)]  # outside the 3 billing days the daily run reconciles again
    conn.executemany("INSERT INTO reconciliation (day, model, status, token_variance_pct, cost_variance_pct) VALUES (?, ?, 'reconciled', ?, ?)", reconciled)
    billed = [DAY - dt.timedelta(days=i) for i in (0, 1, 2, 3, 7)]
    conn.executemany("INSERT INTO billed_usage VALUES (?, 'qwen-big', 1, 1, 1, 50, 'EUR')", [[day] for day in billed])
    conn.execute("INSERT INTO commit_status VALUES (?, '2026-11', 600, 1000, NULL, 'EUR')", [DAY + dt.timedelta(days=1)])
    conn.close()
    return path


@pytest.fixture(scope="module")
def digest(warehouse_path):
    with warehouse.session(warehouse_path, read_only=True) as conn:
        return build_digest(conn, DAY, variance_warn_pct=10.0, refresh_days=3, billing_configured=True,
                            failed_checks=(FailedCheck("billing_reconciliation", "billing_arrived", "ERROR", "IG1 billing is missing for 2026-11-17"),))


def test_the_digest_compares_the_day_with_the_median_of_the_same_weekday(digest):
    requests = TRAFFIC[DAY][0] + 4
    assert digest.ingested
    assert digest.totals.requests == requests
    assert digest.totals.spend_usd == TRAFFIC[DAY][0] * TRAFFIC[DAY][1] + 2 * Decimal("0.05") + 2 * Decimal("1.50")
    assert digest.usual.requests == USUAL_REQUESTS and digest.usual_days == 4  # the 500-request Thursday is not a Friday
    assert digest.usual.spend_usd == Decimal("0.55")  # median of 0.40, 0.60, 0.50, 0.90


def test_the_digest_lists_the_anomaly_the_key_over_budget_and_the_expired_key_still_used(digest):
    by_kind = {item.kind: item for item in digest.attention}
    assert by_kind["abnormal consumption"].subject == SPIKY_ALIAS
    assert by_kind["abnormal consumption"].text == f"{DAY}: requests 40 against a median of 2"
    assert by_kind["abnormal consumption"].path == SPIKY_PATH
    assert by_kind["over budget"].subject == "spender" and "$3.00 of its $2.00 budget" in by_kind["over budget"].text
    assert by_kind["expired but still used"].subject == "old"


def test_the_digest_has_the_variance_outliers_of_the_days_reconciled_again_and_the_commit_forecast(digest):
    assert [(item.subject, item.text) for item in digest.outliers] == [("qwen-big", f"{DAY - dt.timedelta(days=1)}: tokens +25.0%, cost +30.0%")]
    assert digest.forecast.spent == 600 and digest.forecast.commit == 1000 and digest.commit_currency == "EUR"
    assert digest.forecast.run_rate_per_day == 50  # five billed days at 50
    assert digest.forecast.exhausted_on == DAY + dt.timedelta(days=1 + 400 // 50)


def test_the_messages_link_into_the_site_and_escape_names(digest):
    message = digest_message(digest, Links(SITE_URL, "/srv/site"))
    assert message.subject == f"IG1 usage {DAY}: 5 items need attention"  # anomaly, over budget, expired key, outlier, failed check
    key_url = f"{SITE_URL}/{SPIKY_PATH}"
    assert f"{SPIKY_ALIAS}: abnormal consumption" in message.text and key_url in message.text
    assert f"requests: {TRAFFIC[DAY][0] + 4:,} (+{(TRAFFIC[DAY][0] + 4 - USUAL_REQUESTS) / USUAL_REQUESTS * 100:.0f}% vs 5.5)" in message.text
    assert "&lt;b&gt;bob &amp; co&lt;/b&gt;" in message.html and SPIKY_ALIAS not in message.html
    assert f'<a href="{key_url}">' in message.html
    assert f"<{key_url}|*&lt;b&gt;bob &amp; co&lt;/b&gt;*>" in message.slack["text"]
    assert "estimated spend: $6.10 (+1009% vs $0.55)" in message.text
    assert "600.00 EUR of 1,000.00 EUR (60%)" in message.text
    without_url = digest_message(digest, Links(None, "/srv/site"))
    assert "http" not in without_url.text and "published in /srv/site (set REPORT_SITE_URL" in without_url.text



# --- Delivery: a real SMTP server and a local webhook receiver, through the definitions' digest job ---------------

def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """An aiosmtpd handler keeping what it was sent, and the logins it saw."""

    def __init__(self):
        self.mails: list[email.message.EmailMessage] = []
        self.recipients: list[list[str]] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server, session, envelope):
        self.mails.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        self.recipients.append(envelope.rcpt_tos)
        return "250 Message accepted for delivery"

    def authenticate(self, server, session, envelope, mechanism, auth_data):
        self.logins.append((auth_data.login.decode(), auth_data.password.decode()))
        return AuthResult(success=auth_data.password.decode() == PASSWORD)


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port(), authenticator=inbox.authenticate, auth_require_tls=False)
    controller.start()
    yield controller.port, inbox
    controller.stop()


@pytest.fixture
def webhook():
    with local_http_server() as server:
        server.expect_request(WEBHOOK_PATH, method="POST").respond_with_data("ok")
        yield server


def _env(warehouse_path: Path, tmp_path: Path, smtp_port: int | None, webhook_url: str | None) -> dict[str, str]:
    env = {"USAGE_WAREHOUSE": str(warehouse_path), "USAGE_SITE_DIR": str(tmp_path / "site"), "USAGE_START_DATE": "2026-10-01",
           "REPORT_SITE_URL": SITE_URL, "USAGE_DAGSTER_URL": "http://dagster.example.org:3000", "IG1_MASTER_KEY": "ig1-test-master-key"}
    if smtp_port:
        env |= {"USAGE_SMTP_HOST": "127.0.0.1", "USAGE_SMTP_PORT": str(smtp_port), "USAGE_SMTP_SECURITY": "none", "USAGE_SMTP_USERNAME": "reports",
                "USAGE_SMTP_PASSWORD": PASSWORD, "USAGE_MAIL_FROM": "usage@example.org", "USAGE_MAIL_TO": "admin@example.org, finance@example.org"}
    if webhook_url:
        env["USAGE_WEBHOOK_URL"] = webhook_url
    return env


@pytest.fixture
def definitions(monkeypatch):
    """The definitions of an environment: the secrets are also in the process environment, where Dagster's EnvVar reads them."""

    def build(env: dict[str, str]) -> dg.Definitions:
        for name in ("USAGE_SMTP_PASSWORD", "USAGE_WEBHOOK_URL", "IG1_MASTER_KEY"):
            if name in env:
                monkeypatch.setenv(name, env[name])
        return build_definitions(load_settings(env))

    return build


def _send_digest(defs: dg.Definitions, instance: dg.DagsterInstance, day: dt.date = DAY) -> dg.ExecuteInProcessResult:
    return defs.resolve_job_def(DIGEST_JOB).execute_in_process(run_config={"ops": {"send_digest": {"config": {"day": day.isoformat()}}}},
                                                               instance=instance, raise_on_error=False)


def _every_log_text(instance: dg.DagsterInstance, run_id: str) -> str:
    return "\n".join(str(entry) for entry in instance.all_logs(run_id)) + str(instance.get_run_by_id(run_id).run_config)


def test_the_digest_job_emails_the_admins_and_posts_to_the_webhook(warehouse_path, tmp_path, smtp, webhook, definitions):
    port, inbox = smtp
    defs = definitions(_env(warehouse_path, tmp_path, port, webhook.url_for(WEBHOOK_PATH)))
    with dg.DagsterInstance.ephemeral() as instance:
        result = _send_digest(defs, instance)
        assert result.success
        logs = _every_log_text(instance, result.run_id)
    (mail,) = inbox.mails
    assert mail["Subject"] == f"IG1 usage {DAY}: 4 items need attention"  # no daily run on this instance: no failed check
    assert mail["From"] == "usage@example.org" and inbox.recipients == [["admin@example.org", "finance@example.org"]]
    assert inbox.logins == [("reports", PASSWORD)]
    text, html = mail.get_body(("plain",)).get_content(), mail.get_body(("html",)).get_content()
    assert f"requests: {TRAFFIC[DAY][0] + 4:,}" in text and f"{SITE_URL}/{SPIKY_PATH}" in text
    assert "&lt;b&gt;bob &amp; co&lt;/b&gt;" in html
    ((request, _),) = webhook.log
    slack = request.get_json()
    assert set(slack) == {"text"} and slack["text"].startswith(f"*IG1 usage {DAY}: 4 items need attention*")
    assert f"<{SITE_URL}/{SPIKY_PATH}|*&lt;b&gt;bob &amp; co&lt;/b&gt;*>" in slack["text"]
    for secret in (PASSWORD, WEBHOOK_PATH, "webhook-secret-token"):
        assert secret not in logs and secret not in text and secret not in slack["text"]


@pytest.mark.parametrize("broken", ["smtp", "webhook"])
def test_a_channel_down_fails_the_digest_run_naming_it_and_the_other_channel_still_delivers(warehouse_path, tmp_path, smtp, webhook, definitions,
                                                                                               broken):
    port, inbox = smtp
    if broken == "smtp":
        port = _free_port()  # nothing listens there
    else:
        webhook.clear_all_handlers()
        webhook.expect_request(WEBHOOK_PATH, method="POST").respond_with_data("down", status=503)
    defs = definitions(_env(warehouse_path, tmp_path, port, webhook.url_for(WEBHOOK_PATH)))
    with dg.DagsterInstance.ephemeral() as instance:
        result = _send_digest(defs, instance)
        logs = _every_log_text(instance, result.run_id)
    assert not result.success  # the digest's own run: the daily pipeline's runs are not touched
    (failure,) = [event for event in result.all_events if event.is_step_failure]
    message = failure.step_failure_data.user_failure_data.description
    if broken == "smtp":
        assert f"could not send e-mail through the SMTP server 127.0.0.1:{port} (none): ConnectionRefusedError" in message
        assert len(webhook.log) == 1 and not inbox.mails
    else:
        assert "the webhook http://127.0.0.1/… answered HTTP 503: down" in message
        assert len(inbox.mails) == 1
    assert PASSWORD not in logs and "webhook-secret-token" not in logs


def test_the_digest_of_a_day_is_sent_once_even_when_its_job_runs_again(warehouse_path, tmp_path, smtp, definitions):
    port, inbox = smtp
    defs = definitions(_env(warehouse_path, tmp_path, port, None))
    with dg.DagsterInstance.ephemeral() as instance:
        first, again = _send_digest(defs, instance), _send_digest(defs, instance)
        assert first.success and again.success
        other_day = _send_digest(defs, instance, DAY - dt.timedelta(days=7))
    assert [mail["Subject"].split(":")[0] for mail in inbox.mails] == [f"IG1 usage {DAY}", f"IG1 usage {DAY - dt.timedelta(days=7)}"]
    (output,) = [e for e in again.all_events if e.is_successful_output]
    assert output.step_output_data.metadata["sent"].value == f"nothing: already sent by run {first.run_id}"
    assert other_day.success


# --- The sensors ------------------------------------------------------------------------------------------------

def _finished_run(instance: dg.DagsterInstance, job_name: str, error: str | None = None) -> dg.ExecuteInProcessResult:
    """A run of a stand-in job named like one of the product's, failing in its step `fetch_billing` with `error` if given."""

    @dg.op
    def fetch_billing():
        if error:
            raise dg.Failure(description=error)

    @dg.job(name=job_name)
    def stand_in():
        fetch_billing()

    return stand_in.execute_in_process(instance=instance, raise_on_error=False)


def _evaluate(defs: dg.Definitions, sensor_name: str, instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult):
    sensor = defs.resolve_sensor_def(sensor_name)
    event = result.get_run_success_event() if result.success else result.get_run_failure_event()
    context = dg.build_run_status_sensor_context(sensor_name=sensor_name, dagster_event=event, dagster_instance=instance, dagster_run=result.dagster_run,
                                                 resources={"notify": defs.get_repository_def().get_top_level_resources()["notify"]})
    return sensor(context.for_run_failure() if not result.success else context)


def test_a_failed_run_alerts_with_its_job_run_failed_step_error_and_a_link_to_the_run(warehouse_path, tmp_path, smtp, webhook, definitions):
    port, inbox = smtp
    defs = definitions(_env(warehouse_path, tmp_path, port, webhook.url_for(WEBHOOK_PATH)))
    with dg.DagsterInstance.ephemeral() as instance:
        failed = _finished_run(instance, DAILY_JOB, error="IG1 answered HTTP 500 on GET https://api.ig1.ai/usage/history")
        assert _evaluate(defs, "alert_on_run_failure", instance, failed) is None
    run_id = failed.run_id
    ((request, _),) = webhook.log
    text = request.get_json()["text"]
    assert text.startswith(f"*IG1 usage: {DAILY_JOB} failed*")
    assert f"*<http://dagster.example.org:3000/runs/{run_id}|Run {run_id} of {DAILY_JOB} failed>*" in text
    assert "• *fetch_billing*: IG1 answered HTTP 500 on GET https://api.ig1.ai/usage/history" in text
    (mail,) = inbox.mails
    assert mail["Subject"] == f"IG1 usage: {DAILY_JOB} failed"
    assert "fetch_billing: IG1 answered HTTP 500" in mail.get_body(("plain",)).get_content()


@pytest.mark.parametrize("sensor_name, job_name, error", [("digest_after_site_run", SITE_JOB, None), ("alert_on_run_failure", SITE_JOB, "boom")])
def test_with_no_channel_configured_the_sensors_skip_saying_so(warehouse_path, tmp_path, definitions, sensor_name, job_name, error):
    defs = definitions(_env(warehouse_path, tmp_path, None, None))
    with dg.DagsterInstance.ephemeral() as instance:
        skipped = _evaluate(defs, sensor_name, instance, _finished_run(instance, job_name, error))
    assert isinstance(skipped, dg.SkipReason) and skipped.skip_message == NOT_CONFIGURED


def test_every_site_run_of_a_day_requests_the_digest_of_the_last_complete_day_under_one_run_key(warehouse_path, tmp_path, smtp, definitions):
    zone = "Pacific/Kiritimati"  # UTC+14: its yesterday is often not UTC's
    defs = definitions(_env(warehouse_path, tmp_path, smtp[0], None) | {"USAGE_TIMEZONE": zone})
    yesterday = (dt.datetime.now(ZoneInfo(zone)) - dt.timedelta(days=1)).date().isoformat()
    with dg.DagsterInstance.ephemeral() as instance:
        requests = [_evaluate(defs, "digest_after_site_run", instance, _finished_run(instance, SITE_JOB)) for _ in range(2)]
    assert [r.run_key for r in requests] == [f"digest-{yesterday}"] * 2
    assert requests[0].run_config == {"ops": {"send_digest": {"config": {"day": yesterday}}}}


# The code location of the daemon test: the product's digest job, sensor and resources, and a stand-in site_job
# (a step that publishes nothing) that a `kick` sensor requests whenever the test leaves a file for it.
DAEMON_LOCATION = """
from pathlib import Path

import dagster as dg

from usage_jobs.definitions import DAILY_JOB, SITE_JOB, build_resources
from usage_jobs.defs.notify.jobs import digest_job
from usage_jobs.defs.notify.sensors import digest_sensor
from usage_jobs.settings import SettingsError, load_settings

settings = load_settings()
KICK = Path(__file__).with_name("kick")


@dg.op
def publish():
    pass


@dg.job(name=SITE_JOB, executor_def=dg.in_process_executor)
def site_job():
    publish()


@dg.sensor(job=site_job, minimum_interval_seconds=1, default_status=dg.DefaultSensorStatus.RUNNING)
def kick():
    if KICK.exists():
        KICK.unlink()
        return dg.RunRequest()
    return dg.SkipReason("no kick")


digest = digest_job(DAILY_JOB)
defs = dg.Definitions(jobs=[site_job, digest], sensors=[kick, digest_sensor(settings, site_job, digest)], resources=build_resources(settings))
"""


def test_the_sensor_daemon_launches_one_digest_run_per_day_however_often_the_site_is_rebuilt(warehouse_path, tmp_path, smtp, monkeypatch, caplog):
    """Dagster's own sensor daemon (one iteration at a time, runs launched in process): two site runs, one digest run and one e-mail."""
    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.test_utils import create_test_daemon_workspace_context, freeze_time
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget
    from dagster._daemon.sensor import execute_sensor_iteration

    caplog.set_level(logging.INFO, logger="sensor-daemon")
    for name, value in _env(warehouse_path, tmp_path, smtp[0], None).items():
        monkeypatch.setenv(name, value)
    location = tmp_path / "location"
    location.mkdir()
    (location / "defs.py").write_text(DAEMON_LOCATION)
    target = InProcessWorkspaceLoadTarget(InProcessCodeLocationOrigin(LoadableTargetOrigin(python_file=str(location / "defs.py"), attribute="defs")))
    start = dt.datetime.now(dt.UTC)
    with dg.instance_for_test(synchronous_run_launcher=True, synchronous_run_coordinator=True) as instance, \
            create_test_daemon_workspace_context(target, instance) as workspace:

        def tick(minute: int) -> None:
            with freeze_time(start + dt.timedelta(minutes=minute)):
                list(execute_sensor_iteration(workspace, logging.getLogger("sensor-daemon"), threadpool_executor=None, submit_threadpool_executor=None))

        def runs(job: str) -> list[dg.DagsterRun]:
            return instance.get_runs(filters=dg.RunsFilter(job_name=job))

        tick(0)  # the run status sensor starts watching from here
        for minute in (1, 3):  # the site published twice the same day
            (location / "kick").touch()
            tick(minute)
            tick(minute + 1)
        assert [run.status for run in runs(SITE_JOB)] == [dg.DagsterRunStatus.SUCCESS] * 2
        (digest_run,) = runs(DIGEST_JOB)
        assert digest_run.status == dg.DagsterRunStatus.SUCCESS
        yesterday = (start - dt.timedelta(days=1)).date().isoformat()
        assert digest_run.tags["dagster/run_key"] == f"digest-{yesterday}"
    # The second site run's digest request was Dagster's to drop, by its run key.
    assert f'Skipping 1 run for sensor digest_after_site_run already completed with run keys: ["digest-{yesterday}"]' in caplog.text
    (mail,) = smtp[1].mails
    assert mail["Subject"].startswith(f"IG1 usage {yesterday}: ")


def test_the_checks_the_days_daily_run_did_not_pass_are_in_its_digest(warehouse_path, tmp_path, smtp, definitions):
    """A stand-in daily job (the product's job name, one asset and a non-blocking check failing at ERROR) run for DAY and the day before."""
    port, inbox = smtp
    partitions = dg.DailyPartitionsDefinition(start_date="2026-11-01")

    @dg.asset(partitions_def=partitions, name="billing_reconciliation")
    def reconciliation():
        pass

    @dg.asset_check(asset=reconciliation, name="billing_arrived")
    def arrived(context: dg.AssetCheckExecutionContext):
        return dg.AssetCheckResult(passed=False, severity=dg.AssetCheckSeverity.ERROR,
                                   description=f"IG1 billing is missing in the run of {context.run.tags['dagster/partition']}")

    daily = dg.Definitions(assets=[reconciliation], asset_checks=[arrived], jobs=[dg.define_asset_job(DAILY_JOB, partitions_def=partitions)])
    defs = definitions(_env(warehouse_path, tmp_path, port, None))
    with dg.DagsterInstance.ephemeral() as instance:
        for day in (DAY - dt.timedelta(days=1), DAY):
            assert daily.resolve_job_def(DAILY_JOB).execute_in_process(partition_key=day.isoformat(), instance=instance).success
        assert _send_digest(defs, instance).success
    (mail,) = inbox.mails
    assert mail["Subject"] == f"IG1 usage {DAY}: 5 items need attention"
    assert f"billing_reconciliation: billing_arrived (ERROR): IG1 billing is missing in the run of {DAY}\r\n" in mail.get_body(("plain",)).get_content()


@pytest.mark.parametrize("dry_run", [True, False])
def test_the_digest_command_previews_a_day_and_sends_it_unless_dry_run(warehouse_path, tmp_path, smtp, capsys, dry_run):
    port, inbox = smtp
    assert digest_command(load_settings(_env(warehouse_path, tmp_path, port, None)), DAY, dry_run=dry_run) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Subject: IG1 usage {DAY}: 4 items need attention\n\n{DAY} (against the usual")
    assert [mail["Subject"] for mail in inbox.mails] == ([] if dry_run else [f"IG1 usage {DAY}: 4 items need attention"])
    assert dry_run or inbox.logins == [("reports", PASSWORD)]


@pytest.mark.parametrize("env, message", [
    ({"USAGE_SMTP_SECURITY": "tls"}, "USAGE_SMTP_SECURITY='tls' must be one of starttls, ssl, none"),
    ({"USAGE_SMTP_HOST": "smtp.example.org"}, "USAGE_SMTP_HOST is set but USAGE_MAIL_TO is not"),
    ({"USAGE_MAIL_TO": "admin@example.org"}, "USAGE_MAIL_TO is set but USAGE_SMTP_HOST is not"),
    ({"REPORT_SITE_URL": "reports.example.org"}, "REPORT_SITE_URL='reports.example.org' is not an http"),
])
def test_a_bad_notification_setting_fails_fast_naming_it(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)
