"""Every setting of the product, in one place.

Each setting is read from an environment variable; the defaults make the demo work
from the repository root. `usage-report check-config` prints the effective values
(secrets masked) and fails with a message naming the first bad setting.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from usage_jobs.defs.billing.fx import FxError, load_usd_rates
from usage_jobs.defs.gateway.landing import is_bucket_url


class SettingsError(ValueError):
    """A setting has a value the product cannot use; the message names the setting."""


@dataclass(frozen=True)
class SettingDoc:
    env: str
    default: str
    help: str
    secret: bool = False


SETTINGS_DOCS: tuple[SettingDoc, ...] = (
    SettingDoc("USAGE_LOGS_DIR", "demo_data/logs", "Where the gateway request logs are: a local folder, or the bucket itself (s3://bucket/prefix, gs://…, az://container/prefix; credentials from the cloud's standard chain)."),
    SettingDoc("USAGE_LOGS_SOURCE", "logs-dir", "logs-dir: read USAGE_LOGS_DIR; gateway-api: read each day from the gateway's GET /spend/logs/v2 (GATEWAY_BASE_URL + GATEWAY_ADMIN_KEY)."),
    SettingDoc("USAGE_LANDING_DIR", "landing", "Local raw landing folder: a bucket's or the API's objects are copied here per day, and ingest reads them from here."),
    SettingDoc("USAGE_S3_ENDPOINT_URL", "", "Endpoint of an S3-compatible store (MinIO, Ceph, Scaleway…) for s3:// logs; AWS S3 when empty."),
    SettingDoc("USAGE_FETCH_CONCURRENCY", "32", "Objects fetched at once from a bucket."),
    SettingDoc("USAGE_WAREHOUSE", "warehouse/usage.duckdb", "DuckDB warehouse file (created if missing)."),
    SettingDoc("USAGE_SITE_DIR", "site_output", "Folder the static report site is written to."),
    SettingDoc("USAGE_TIMEZONE", "UTC", "IANA time zone of report days (daily partitions, dates in exports)."),
    SettingDoc("USAGE_START_DATE", "(earliest day folder in the logs, else 90 days ago)", "First daily partition, YYYY-MM-DD."),
    SettingDoc("USAGE_INVENTORY_FILE", "demo_data/inventory.json if it exists", "Key/team inventory exported from the gateway's /key/list and /team/list (JSON)."),
    SettingDoc("GATEWAY_BASE_URL", "", "Gateway (LiteLLM proxy) URL; with GATEWAY_ADMIN_KEY the inventory is read from its API instead of a file."),
    SettingDoc("GATEWAY_ADMIN_KEY", "", "Gateway admin key for /key/list and /team/list.", secret=True),
    SettingDoc("IG1_BASE_URL", "https://api.ig1.ai", "IG1 billing API base URL."),
    SettingDoc("IG1_MASTER_KEY", "", "IG1 master key for /usage and /usage/history (billing is off without it).", secret=True),
    SettingDoc("IG1_BILLING_TIMEZONE", "UTC", "IANA time zone of IG1's billing days; gateway requests are reconciled by the billing day they started in."),
    SettingDoc("IG1_REFRESH_DAYS", "3", "Days of billing each daily run asks IG1 for again (the day and the ones before it), as billing arrives late and can be restated."),
    SettingDoc("IG1_USD_RATE", "(none; 1 when IG1 bills in USD)", "USD per unit of the contract currency: a number (1.08), or a CSV file of date,usd_per_unit (latest rate on or before each day is used)."),
    SettingDoc("IG1_LATE_DAYS", "2", "Billing still missing this many days after a day fails the billing check (before that it is a warning)."),
    SettingDoc("IG1_TIMEOUT_SECONDS", "30", "Read timeout of one IG1 API call, in seconds (connect timeout: 5 s)."),
    SettingDoc("IG1_MAX_RETRIES", "4", "Retries of an IG1 API call after a timeout, 429 or 5xx (exponential backoff with jitter)."),
    SettingDoc("USAGE_VARIANCE_WARN_PCT", "10", "Estimated-versus-billed variance (tokens or cost, %) beyond which the variance check warns."),
    SettingDoc("USAGE_PRICES_FILE", "(built-in IG1 list prices)", "JSON price table used to re-price requests logged without a cost."),
    SettingDoc("USAGE_MAX_REJECTED_SHARE", "0.02", "Blocking check: largest share of a day's input records that may be rejected (0..1)."),
    SettingDoc("USAGE_DUCKDB_MEMORY_LIMIT", "1GB", "Memory DuckDB may use per connection (e.g. 800MB, 4GB); beyond it, it spills to disk."),
    SettingDoc("USAGE_MAX_RECORD_MB", "16", "Largest accepted log record (one JSON object), in MB; longer ones are rejected."),
    SettingDoc("USAGE_SCHEDULE_TIME", "01:15", "Time of day (HH:MM, USAGE_TIMEZONE) the daily run ingests the previous day."),
    SettingDoc("USAGE_SERVE_HOST", "127.0.0.1", "Address `usage-report serve` listens on (keep 127.0.0.1 behind your own web server or SSO)."),
    SettingDoc("USAGE_SERVE_PORT", "8080", "Port `usage-report serve` listens on."),
    SettingDoc("USAGE_ADMIN_TOKENS", "", "Comma-separated tokens that `usage-report serve` admits as admins without asking the gateway.", secret=True),
    SettingDoc("USAGE_AUTH_CACHE_SECONDS", "60", "How long `usage-report serve` remembers the gateway's answer about a reader's key."),
    SettingDoc("DAGSTER_HOME", ".dagster_home", "Dagster instance folder (run history, schedules); telemetry is off there."),
)

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
LOGS_SOURCES = ("logs-dir", "gateway-api")
DEMO_INVENTORY = Path("demo_data/inventory.json")


def _env(name: str, env: dict[str, str]) -> str | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    return value.strip()


def _parse_date(name: str, value: str) -> dt.date:
    if not _DATE.match(value):
        raise SettingsError(f"{name}={value!r} is not a date in YYYY-MM-DD form")
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise SettingsError(f"{name}={value!r} is not a valid date: {exc}") from None


def _parse_float(name: str, value: str, low: float, high: float, whole: bool = False) -> float:
    try:
        number = float(value)
    except ValueError:
        raise SettingsError(f"{name}={value!r} is not a number") from None
    if whole and number != int(number):
        raise SettingsError(f"{name}={value!r} must be a whole number")
    if not low <= number <= high:
        raise SettingsError(f"{name}={value!r} must be between {low:g} and {high:g}")
    return number


def _parse_url(name: str, value: str) -> str:
    if not re.match(r"^https?://[^\s/]+", value):
        raise SettingsError(f"{name}={value!r} is not an http(s) URL")
    return value.rstrip("/")


def earliest_log_day(logs_dir: Path) -> dt.date | None:
    """The earliest YYYY-MM-DD folder name found under the log root (shallow walk)."""
    from usage_jobs.defs.gateway.layout import iter_day_folders

    days = [day for day, _ in iter_day_folders(logs_dir)]
    return min(days) if days else None


@dataclass(frozen=True)
class Settings:
    logs_dir: str
    warehouse: Path
    site_dir: Path
    timezone: str
    start_date: dt.date
    inventory_file: Path | None
    gateway_base_url: str | None
    gateway_admin_key: str | None = field(repr=False)
    ig1_base_url: str
    ig1_master_key: str | None = field(repr=False)
    billing_timezone: str
    billing_refresh_days: int
    usd_rate: str | None
    billing_late_days: int
    billing_timeout_seconds: float
    billing_max_retries: int
    variance_warn_pct: float
    prices_file: Path | None
    max_rejected_share: float
    max_record_bytes: int
    duckdb_memory_limit: str
    schedule_time: dt.time
    dagster_home: Path
    logs_source: str = "logs-dir"
    landing_dir: Path = Path("landing")
    s3_endpoint_url: str | None = None
    fetch_concurrency: int = 32
    serve_host: str = "127.0.0.1"
    serve_port: int = 8080
    admin_tokens: tuple[str, ...] = field(default=(), repr=False)
    auth_cache_seconds: float = 60.0

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def logs_in_bucket(self) -> bool:
        return is_bucket_url(self.logs_dir)

    @property
    def inventory_source(self) -> str:
        if self.gateway_base_url and self.gateway_admin_key:
            return "gateway"
        if self.inventory_file:
            return "file"
        return "none"

    @property
    def billing_configured(self) -> bool:
        return bool(self.ig1_master_key)

    def describe(self) -> list[tuple[str, str]]:
        """(env name, effective value) pairs, secrets masked, for check-config and the report."""
        secret = lambda v: "(set)" if v else "(not set)"  # noqa: E731
        return [
            ("USAGE_LOGS_DIR", self.logs_dir),
            ("USAGE_LOGS_SOURCE", self.logs_source),
            ("USAGE_LANDING_DIR", str(self.landing_dir)),
            ("USAGE_S3_ENDPOINT_URL", self.s3_endpoint_url or "(not set)"),
            ("USAGE_FETCH_CONCURRENCY", str(self.fetch_concurrency)),
            ("USAGE_WAREHOUSE", str(self.warehouse)),
            ("USAGE_SITE_DIR", str(self.site_dir)),
            ("USAGE_TIMEZONE", self.timezone),
            ("USAGE_START_DATE", self.start_date.isoformat()),
            ("USAGE_INVENTORY_FILE", str(self.inventory_file) if self.inventory_file else "(not set)"),
            ("GATEWAY_BASE_URL", self.gateway_base_url or "(not set)"),
            ("GATEWAY_ADMIN_KEY", secret(self.gateway_admin_key)),
            ("IG1_BASE_URL", self.ig1_base_url),
            ("IG1_MASTER_KEY", secret(self.ig1_master_key)),
            ("IG1_BILLING_TIMEZONE", self.billing_timezone),
            ("IG1_REFRESH_DAYS", str(self.billing_refresh_days)),
            ("IG1_USD_RATE", self.usd_rate or "(not set)"),
            ("IG1_LATE_DAYS", str(self.billing_late_days)),
            ("IG1_TIMEOUT_SECONDS", f"{self.billing_timeout_seconds:g}"),
            ("IG1_MAX_RETRIES", str(self.billing_max_retries)),
            ("USAGE_VARIANCE_WARN_PCT", f"{self.variance_warn_pct:g}"),
            ("USAGE_PRICES_FILE", str(self.prices_file) if self.prices_file else "(built-in)"),
            ("USAGE_MAX_REJECTED_SHARE", f"{self.max_rejected_share:g}"),
            ("USAGE_DUCKDB_MEMORY_LIMIT", self.duckdb_memory_limit),
            ("USAGE_MAX_RECORD_MB", f"{self.max_record_bytes / 1e6:g}"),
            ("USAGE_SCHEDULE_TIME", self.schedule_time.strftime("%H:%M")),
            ("DAGSTER_HOME", str(self.dagster_home)),
            ("USAGE_SERVE_HOST", self.serve_host),
            ("USAGE_SERVE_PORT", str(self.serve_port)),
            ("USAGE_ADMIN_TOKENS", f"({len(self.admin_tokens)} set)" if self.admin_tokens else "(not set)"),
            ("USAGE_AUTH_CACHE_SECONDS", f"{self.auth_cache_seconds:g}"),
        ]


def load_settings(env: dict[str, str] | None = None, today: dt.date | None = None) -> Settings:
    """Read and validate every setting; raise SettingsError naming the first bad one."""
    env = dict(os.environ if env is None else env)
    today = today or dt.date.today()

    timezone = _env("USAGE_TIMEZONE", env) or "UTC"
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"USAGE_TIMEZONE={timezone!r} is not a known IANA time zone (e.g. UTC, Europe/Paris)") from None

    logs_raw = _env("USAGE_LOGS_DIR", env) or "demo_data/logs"
    local_logs = None if is_bucket_url(logs_raw) else Path(logs_raw)
    if "://" in logs_raw and local_logs is not None:
        raise SettingsError(f"USAGE_LOGS_DIR={logs_raw!r}: a local folder or a bucket (s3://bucket/prefix, gs://bucket/prefix, az://container/prefix) is expected")
    if local_logs is not None and local_logs.exists() and not local_logs.is_dir():
        raise SettingsError(f"USAGE_LOGS_DIR={logs_raw!r} is a file, not a folder")
    logs_source = _env("USAGE_LOGS_SOURCE", env) or "logs-dir"
    if logs_source not in LOGS_SOURCES:
        raise SettingsError(f"USAGE_LOGS_SOURCE={logs_source!r} must be one of {', '.join(LOGS_SOURCES)}")
    s3_endpoint = _env("USAGE_S3_ENDPOINT_URL", env)
    if s3_endpoint:
        s3_endpoint = _parse_url("USAGE_S3_ENDPOINT_URL", s3_endpoint)

    warehouse = Path(_env("USAGE_WAREHOUSE", env) or "warehouse/usage.duckdb")
    if warehouse.is_dir():
        raise SettingsError(f"USAGE_WAREHOUSE={str(warehouse)!r} is a folder; give the path of a .duckdb file")

    site_dir = Path(_env("USAGE_SITE_DIR", env) or "site_output")
    if site_dir.exists() and not site_dir.is_dir():
        raise SettingsError(f"USAGE_SITE_DIR={str(site_dir)!r} is a file, not a folder")

    start_raw = _env("USAGE_START_DATE", env)
    if start_raw:
        start_date = _parse_date("USAGE_START_DATE", start_raw)
    else:
        start_date = earliest_log_day(local_logs) if local_logs is not None and local_logs.is_dir() else None
        start_date = start_date or today - dt.timedelta(days=90)

    inventory_raw = _env("USAGE_INVENTORY_FILE", env)
    if inventory_raw:
        inventory_file: Path | None = Path(inventory_raw)
        if not inventory_file.is_file():
            raise SettingsError(f"USAGE_INVENTORY_FILE={inventory_raw!r} does not exist or is not a file")
    else:
        inventory_file = DEMO_INVENTORY if DEMO_INVENTORY.is_file() else None

    gateway_base_url = _env("GATEWAY_BASE_URL", env)
    gateway_admin_key = _env("GATEWAY_ADMIN_KEY", env)
    if gateway_base_url:
        gateway_base_url = _parse_url("GATEWAY_BASE_URL", gateway_base_url)
        if not gateway_admin_key:
            raise SettingsError("GATEWAY_BASE_URL is set but GATEWAY_ADMIN_KEY is not: the gateway API needs an admin key")
    if logs_source == "gateway-api" and not gateway_base_url:
        raise SettingsError("USAGE_LOGS_SOURCE=gateway-api needs GATEWAY_BASE_URL and GATEWAY_ADMIN_KEY")

    ig1_base_url = _parse_url("IG1_BASE_URL", _env("IG1_BASE_URL", env) or "https://api.ig1.ai")

    billing_timezone = _env("IG1_BILLING_TIMEZONE", env) or "UTC"
    try:
        ZoneInfo(billing_timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(f"IG1_BILLING_TIMEZONE={billing_timezone!r} is not a known IANA time zone (e.g. UTC)") from None
    usd_rate = _env("IG1_USD_RATE", env)
    try:
        load_usd_rates(usd_rate)
    except FxError as exc:
        raise SettingsError(str(exc)) from None

    prices_raw = _env("USAGE_PRICES_FILE", env)
    prices_file = Path(prices_raw) if prices_raw else None
    if prices_file and not prices_file.is_file():
        raise SettingsError(f"USAGE_PRICES_FILE={prices_raw!r} does not exist or is not a file")

    max_share = _parse_float("USAGE_MAX_REJECTED_SHARE", _env("USAGE_MAX_REJECTED_SHARE", env) or "0.02", 0.0, 1.0)
    max_record_mb = _parse_float("USAGE_MAX_RECORD_MB", _env("USAGE_MAX_RECORD_MB", env) or "16", 0.001, 1024.0)

    memory_limit = _env("USAGE_DUCKDB_MEMORY_LIMIT", env) or "1GB"
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", memory_limit, re.IGNORECASE):
        raise SettingsError(f"USAGE_DUCKDB_MEMORY_LIMIT={memory_limit!r} is not a size such as 800MB or 4GB")

    schedule_raw = _env("USAGE_SCHEDULE_TIME", env) or "01:15"
    if not re.match(r"^\d{2}:\d{2}$", schedule_raw):
        raise SettingsError(f"USAGE_SCHEDULE_TIME={schedule_raw!r} is not a time in HH:MM form")
    try:
        schedule_time = dt.time.fromisoformat(schedule_raw)
    except ValueError:
        raise SettingsError(f"USAGE_SCHEDULE_TIME={schedule_raw!r} is not a valid time of day") from None

    return Settings(
        logs_dir=logs_raw,
        logs_source=logs_source,
        landing_dir=Path(_env("USAGE_LANDING_DIR", env) or "landing"),
        s3_endpoint_url=s3_endpoint,
        fetch_concurrency=int(_parse_float("USAGE_FETCH_CONCURRENCY", _env("USAGE_FETCH_CONCURRENCY", env) or "32", 1, 1024, whole=True)),
        warehouse=warehouse,
        site_dir=site_dir,
        timezone=timezone,
        start_date=start_date,
        inventory_file=inventory_file,
        gateway_base_url=gateway_base_url,
        gateway_admin_key=gateway_admin_key,
        ig1_base_url=ig1_base_url,
        ig1_master_key=_env("IG1_MASTER_KEY", env),
        billing_timezone=billing_timezone,
        billing_refresh_days=int(_parse_float("IG1_REFRESH_DAYS", _env("IG1_REFRESH_DAYS", env) or "3", 1, 90, whole=True)),
        usd_rate=usd_rate,
        billing_late_days=int(_parse_float("IG1_LATE_DAYS", _env("IG1_LATE_DAYS", env) or "2", 0, 3650, whole=True)),
        billing_timeout_seconds=_parse_float("IG1_TIMEOUT_SECONDS", _env("IG1_TIMEOUT_SECONDS", env) or "30", 0.1, 600),
        billing_max_retries=int(_parse_float("IG1_MAX_RETRIES", _env("IG1_MAX_RETRIES", env) or "4", 0, 20, whole=True)),
        variance_warn_pct=_parse_float("USAGE_VARIANCE_WARN_PCT", _env("USAGE_VARIANCE_WARN_PCT", env) or "10", 0, 1000),
        prices_file=prices_file,
        max_rejected_share=max_share,
        max_record_bytes=int(max_record_mb * 1_000_000),
        duckdb_memory_limit=memory_limit,
        schedule_time=schedule_time,
        dagster_home=Path(_env("DAGSTER_HOME", env) or ".dagster_home"),
        serve_host=_env("USAGE_SERVE_HOST", env) or "127.0.0.1",
        serve_port=int(_parse_float("USAGE_SERVE_PORT", _env("USAGE_SERVE_PORT", env) or "8080", 1, 65535, whole=True)),
        admin_tokens=tuple(t.strip() for t in (_env("USAGE_ADMIN_TOKENS", env) or "").split(",") if t.strip()),
        auth_cache_seconds=_parse_float("USAGE_AUTH_CACHE_SECONDS", _env("USAGE_AUTH_CACHE_SECONDS", env) or "60", 0, 3600),
    )
