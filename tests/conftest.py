"""Shared fixtures. The daily partitions are defined from the environment at import,
so the settings the definitions read are fixed here, before any test imports them."""

import datetime as dt
import gzip
import json
import os
from pathlib import Path

import pytest

os.environ.update({"USAGE_START_DATE": "2026-01-01", "USAGE_TIMEZONE": "UTC"})
for name in ("USAGE_LOGS_DIR", "USAGE_WAREHOUSE", "USAGE_SITE_DIR", "USAGE_INVENTORY_FILE", "GATEWAY_BASE_URL", "GATEWAY_ADMIN_KEY", "IG1_MASTER_KEY"):
    os.environ.pop(name, None)

DEMO_END = dt.date(2026, 11, 20)
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
