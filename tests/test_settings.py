import datetime as dt
import re
from decimal import Decimal
from pathlib import Path

import pytest

from usage_jobs.settings import ENV_NAMES, SettingsError, load_settings, markdown_table


@pytest.mark.parametrize("env, message", [
    ({"USAGE_TIMEZONE": "Mars/Base"}, "USAGE_TIMEZONE='Mars/Base' is not a known IANA time zone"),
    ({"USAGE_START_DATE": "2026-13-01"}, "USAGE_START_DATE='2026-13-01' is not a valid date"),
    ({"USAGE_START_DATE": "01/11/2026"}, "USAGE_START_DATE='01/11/2026' is not a date in YYYY-MM-DD form"),
    ({"USAGE_MAX_REJECTED_SHARE": "5"}, "USAGE_MAX_REJECTED_SHARE='5' must be between 0 and 1"),
    ({"USAGE_MAX_REJECTED_SHARE": "lots"}, "USAGE_MAX_REJECTED_SHARE='lots' is not a number"),
    ({"USAGE_INVENTORY_FILE": "/nope/inventory.json"}, "USAGE_INVENTORY_FILE='/nope/inventory.json' does not exist"),
    ({"GATEWAY_BASE_URL": "http://127.0.0.1:4000"}, "GATEWAY_BASE_URL is set but GATEWAY_ADMIN_KEY is not"),
    ({"GATEWAY_BASE_URL": "gateway.local", "GATEWAY_ADMIN_KEY": "k"}, "GATEWAY_BASE_URL='gateway.local' is not an http"),
    ({"IG1_BASE_URL": "ftp://x"}, "IG1_BASE_URL='ftp://x' is not an http"),
    ({"USAGE_SCHEDULE_TIME": "25:00"}, "USAGE_SCHEDULE_TIME='25:00' is not a valid time of day"),
    ({"USAGE_LOGS_DIR": "ftp://logs/gw"}, "USAGE_LOGS_DIR='ftp://logs/gw': a local folder or a bucket"),
    ({"USAGE_LOGS_SOURCE": "kafka"}, "USAGE_LOGS_SOURCE='kafka' must be one of logs-dir, gateway-api"),
    ({"USAGE_LOGS_SOURCE": "gateway-api"}, "USAGE_LOGS_SOURCE=gateway-api needs GATEWAY_BASE_URL and GATEWAY_ADMIN_KEY"),
    ({"USAGE_S3_ENDPOINT_URL": "minio:9000"}, "USAGE_S3_ENDPOINT_URL='minio:9000' is not an http"),
    ({"USAGE_FETCH_CONCURRENCY": "0"}, "USAGE_FETCH_CONCURRENCY='0' must be between 1 and 1024"),
    ({"USAGE_HISTORY_DAYS": "2.5"}, "USAGE_HISTORY_DAYS='2.5' must be a whole number"),
    ({"USAGE_FRESHNESS_DEADLINE": "6h"}, "USAGE_FRESHNESS_DEADLINE='6h' is not a valid time of day"),
    ({"IG1_USD_RATE": "/nope/rates.csv"}, "IG1_USD_RATE='/nope/rates.csv' is neither a number nor an existing rates file"),
])
def test_a_bad_setting_fails_fast_naming_it(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env)


@pytest.mark.parametrize("url", ["s3://gateway-logs/litellm", "gs://gateway-logs", "az://logs/gateway"])
def test_a_bucket_url_is_a_logs_location(url):
    settings = load_settings({"USAGE_LOGS_DIR": url})
    assert settings.logs_in_bucket and settings.logs_dir == url


def test_defaults_make_the_demo_work_and_every_setting_is_described():
    settings = load_settings({})
    assert settings.timezone == "UTC" and str(settings.site_dir) == "site_output"
    assert [name for name, _ in settings.describe()] == list(ENV_NAMES)


def test_the_readme_settings_table_is_the_models():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    table = re.search(r"^\| variable \| default \| meaning \|\n(?:\|.*\n)+", readme, re.MULTILINE).group(0).rstrip("\n")
    assert table == markdown_table(), "regenerate it: python -m usage_jobs.settings --markdown"


@pytest.mark.parametrize("env, first_day", [
    ({"USAGE_START_DATE": "2026-03-01"}, dt.date(2026, 3, 1)),
    ({}, dt.date.today() - dt.timedelta(days=90)),
    ({"USAGE_HISTORY_DAYS": "7"}, dt.date.today() - dt.timedelta(days=7)),
])
def test_the_first_partition_is_the_start_date_else_a_number_of_days_back(env, first_day):
    assert load_settings(env).first_day == first_day


def test_the_usd_rate_is_parsed_once_into_rates(tmp_path):
    rates = tmp_path / "rates.csv"
    rates.write_text("date,usd_per_unit\n2026-01-01,1.08\n")
    assert load_settings({"IG1_USD_RATE": str(rates)}).usd_rates.rate(dt.date(2026, 2, 1)) == Decimal("1.08")


def test_secrets_are_masked_in_the_description():
    settings = load_settings({"IG1_MASTER_KEY": "ig1-master-SECRET", "GATEWAY_BASE_URL": "http://127.0.0.1:4000", "GATEWAY_ADMIN_KEY": "sk-admin-SECRET"})
    described = repr(settings) + str(settings.describe())
    assert "SECRET" not in described and settings.ig1_master_key.get_secret_value() == "ig1-master-SECRET"


def test_check_config_prints_every_setting_of_the_model_with_secrets_masked(monkeypatch, capsys):
    from usage_jobs import cli

    monkeypatch.setenv("IG1_MASTER_KEY", "ig1-master-SECRET")
    assert cli.main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()[:len(ENV_NAMES)]] == list(ENV_NAMES)
    assert "IG1_MASTER_KEY" in out and "SECRET" not in out and out.rstrip().endswith("configuration OK")
