import datetime as dt

import pytest

from usage_jobs.settings import SETTINGS_DOCS, SettingsError, load_settings


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
])

def test_a_bad_setting_fails_fast_naming_it(env, message):
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_settings(env)


@pytest.mark.parametrize("url", ["s3://gateway-logs/litellm", "gs://gateway-logs", "az://logs/gateway"])
def test_a_bucket_url_is_a_logs_location(url):
    settings = load_settings({"USAGE_LOGS_DIR": url})
    assert settings.logs_in_bucket and settings.logs_dir == url


def test_defaults_make_the_demo_work_and_every_setting_is_documented(tmp_path):
    settings = load_settings({}, today=dt.date(2026, 11, 24))
    assert settings.timezone == "UTC" and str(settings.site_dir) == "site_output"
    assert {name for name, _ in settings.describe()} == {doc.env for doc in SETTINGS_DOCS}
    readme = (__import__("pathlib").Path(__file__).parents[1] / "README.md").read_text()
    assert all(doc.env in readme for doc in SETTINGS_DOCS)


def test_secrets_are_masked_in_the_description():
    settings = load_settings({"IG1_MASTER_KEY": "ig1-master-SECRET", "GATEWAY_BASE_URL": "http://127.0.0.1:4000", "GATEWAY_ADMIN_KEY": "sk-admin-SECRET"})
    described = repr(settings) + str(settings.describe())
    assert "SECRET" not in described
