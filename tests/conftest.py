"""Shared fixtures."""

import datetime as dt
import gzip
import json
from pathlib import Path

import pytest

DEMO_END = dt.date(2026, 11, 20)
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
DEMO_DAYS = 4


@pytest.fixture(scope="session")
def demo_org(tmp_path_factory) -> Path:
    """A small generated organisation: 4 days ending 2026-11-20, ~150 requests per weekday."""
    from usage_jobs.demo.generator import generate

    out = tmp_path_factory.mktemp("demo")
    generate(out, days=DEMO_DAYS, end=DEMO_END, seed=3, requests_per_day=150, duplicate_share=0.02)
    return out


def read_all_records(logs: Path) -> list[dict]:
    """Every request record under a log root, parsed independently of the product's reader."""
    records = []
    for path in sorted(logs.rglob("*")):
        if not path.is_file() or "audit_logs" in path.parts:
            continue
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        text = raw.decode("utf-8")
        try:
            documents = [json.loads(text)]
        except json.JSONDecodeError:
            documents = [json.loads(line) for line in text.splitlines() if line.strip()]
        for document in documents:
            records += document if isinstance(document, list) else [document]
    return records


@pytest.fixture(scope="session")
def demo_site(demo_org, tmp_path_factory):
    """The demo organisation through every asset, with IG1 billing from the emulator: a full site."""
    import dagster as dg

    from usage_jobs.definitions import DAILY_ASSETS, SITE_ASSETS, build_resources, partitioned
    from usage_jobs.demo.emulator import IG1Emulator
    from usage_jobs.settings import load_settings

    out = tmp_path_factory.mktemp("site")
    key = "site-test-master-key"
    first = DEMO_END - dt.timedelta(days=DEMO_DAYS - 1)
    ledger = demo_org / "billing" / "ledger.json"
    with pytest.MonkeyPatch.context() as env, IG1Emulator.from_file(ledger, key, today=DEMO_END + dt.timedelta(days=1)) as emulator:
        env.setenv("IG1_MASTER_KEY", key)
        settings = load_settings({
            "USAGE_LOGS_DIR": str(demo_org / "logs"), "USAGE_WAREHOUSE": str(out / "usage.duckdb"), "USAGE_SITE_DIR": str(out / "site"),
            "USAGE_INVENTORY_FILE": str(demo_org / "inventory.json"), "USAGE_START_DATE": "2026-01-01", "IG1_BASE_URL": emulator.url,
            "IG1_MASTER_KEY": key, "IG1_USD_RATE": str(demo_org / "billing" / "usd_per_eur.csv"),
        })
        resources = build_resources(settings)
        instance = dg.DagsterInstance.ephemeral()
        tags = {"dagster/asset_partition_range_start": first.isoformat(), "dagster/asset_partition_range_end": DEMO_END.isoformat()}
        assert dg.materialize(partitioned(DAILY_ASSETS, settings), resources=resources, instance=instance, tags=tags).success
        assert dg.materialize(SITE_ASSETS, resources=resources, instance=instance).success
    return settings


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium (Debian's) driven by selenium, its console and network logs kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "Chromium is installed by `make test` (Debian packages chromium, chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    # Without the background-networking flags Chromium calls Google's hosts, which this machine refuses.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,1600",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def cli_env(demo_org, tmp_path, monkeypatch) -> Path:
    """The settings of a `usage-report` command over the small organisation, its files in tmp_path."""
    monkeypatch.setenv("USAGE_LOGS_DIR", str(demo_org / "logs"))
    monkeypatch.setenv("USAGE_WAREHOUSE", str(tmp_path / "w.duckdb"))
    monkeypatch.setenv("USAGE_SITE_DIR", str(tmp_path / "site"))
    monkeypatch.setenv("USAGE_INVENTORY_FILE", str(demo_org / "inventory.json"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    return tmp_path
