"""Every setting of the product, declared once: environment name, default, meaning, validation.

The model is a pydantic-settings `BaseSettings`: each field's alias is its environment
variable, its description the README's and `check-config`'s text. `load_settings()` reads
the process environment (or a given mapping) once; nothing else reads it. A bad value
fails with a `SettingsError` naming the variable and the value.

`python -m usage_jobs.settings --markdown` prints the README's settings table.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BeforeValidator, Field, PrivateAttr, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, EnvSettingsSource, NoDecode, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

from usage_jobs.defs.billing.fx import FxError, UsdRates, load_usd_rates
from usage_jobs.defs.gateway.landing import is_bucket_url


class SettingsError(ValueError):
    """A setting has a value the product cannot use; the message names the setting."""


LOGS_SOURCES = ("logs-dir", "gateway-api")
SMTP_SECURITY = ("starttls", "ssl", "none")
DEMO_INVENTORY = Path("demo_data/inventory.json")


def _number(low: float, high: float, whole: bool = False):
    """A before-validator: the text as a number in [low, high] (a whole one if `whole`), with a clear message."""

    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{value!r} is not a number") from None
        if whole and number != int(number):
            raise ValueError(f"{value!r} must be a whole number")
        if not low <= number <= high:
            raise ValueError(f"{value!r} must be between {low:g} and {high:g}")
        return int(number) if whole else number

    return BeforeValidator(parse)


def _http_url(value: str | None) -> str | None:
    if value is None:
        return None
    if not re.match(r"^https?://[^\s/]+", value):
        raise ValueError(f"{value!r} is not an http(s) URL")
    return value.rstrip("/")


def _time_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a known IANA time zone (e.g. UTC, Europe/Paris)") from None
    return value


def _date(value: Any) -> Any:
    if isinstance(value, str):
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"{value!r} is not a date in YYYY-MM-DD form")
        try:
            return dt.date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a valid date: {exc}") from None
    return value


def _time_of_day(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return dt.datetime.strptime(value, "%H:%M").time()
        except ValueError:
            raise ValueError(f"{value!r} is not a valid time of day (HH:MM, 24-hour)") from None
    return value


def _existing_file(value: Any) -> Any:
    if value is not None and not Path(value).is_file():
        raise ValueError(f"{str(value)!r} does not exist or is not a file")
    return value


def _comma_list(value: Any) -> Any:
    return tuple(item.strip() for item in value.split(",") if item.strip()) if isinstance(value, str) else value


HttpUrl = Annotated[str | None, BeforeValidator(_http_url)]
TimeZone = Annotated[str, BeforeValidator(_time_zone)]
ExistingFile = Annotated[Path | None, BeforeValidator(_existing_file)]


def setting(default: Any, env: str, description: str, shown_default: str | None = None, secret: bool = False) -> Any:
    """One setting: its environment variable, default and meaning (and how the README shows the default)."""
    extra = {"secret": secret} | ({"shown_default": shown_default} if shown_default else {})
    return Field(default, validation_alias=env, description=description, json_schema_extra=extra)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=True, env_ignore_empty=True)

    logs_dir: str = setting("demo_data/logs", "USAGE_LOGS_DIR",
                            "the gateway request logs: a local folder or a bucket (`s3://bucket/prefix`, `gs://…`, `az://container/prefix`; "
                            "credentials from the cloud's standard chain)")
    logs_source: str = setting("logs-dir", "USAGE_LOGS_SOURCE",
                               "`logs-dir` reads `USAGE_LOGS_DIR`; `gateway-api` reads each day from the gateway's `GET /spend/logs/v2`")
    landing_dir: Path = setting(Path("landing"), "USAGE_LANDING_DIR",
                                "local raw landing folder: a bucket's or the API's objects are copied here per day, and ingest reads them from here")
    s3_endpoint_url: HttpUrl = setting(None, "USAGE_S3_ENDPOINT_URL", "endpoint of an S3-compatible store (MinIO, Ceph…); AWS S3 when empty")
    fetch_concurrency: Annotated[int, _number(1, 1024, whole=True)] = setting(32, "USAGE_FETCH_CONCURRENCY", "objects fetched at once from a bucket")
    warehouse: Path = setting(Path("warehouse/usage.duckdb"), "USAGE_WAREHOUSE", "the DuckDB warehouse file (created if missing)")
    site_dir: Path = setting(Path("site_output"), "USAGE_SITE_DIR", "where the site is published")
    timezone: TimeZone = setting("UTC", "USAGE_TIMEZONE", "IANA time zone of report days (partitions, dates in exports)")
    start_date: Annotated[dt.date | None, BeforeValidator(_date)] = setting(
        None, "USAGE_START_DATE", "first daily partition, YYYY-MM-DD", shown_default="`USAGE_HISTORY_DAYS` days ago")
    history_days: Annotated[int, _number(1, 36500, whole=True)] = setting(
        90, "USAGE_HISTORY_DAYS", "without `USAGE_START_DATE`, the first daily partition is this many days before today")
    inventory_file: ExistingFile = setting(None, "USAGE_INVENTORY_FILE", "key/team inventory file (the gateway's `/key/list` and `/team/list`, JSON)",
                                           shown_default="`demo_data/inventory.json` if present")
    gateway_base_url: HttpUrl = setting(None, "GATEWAY_BASE_URL", "gateway URL, to read the inventory (and, with `gateway-api`, the logs) from its API")
    gateway_max_retries: Annotated[int, _number(0, 20, whole=True)] = setting(
        4, "GATEWAY_MAX_RETRIES", "retries of a gateway API call (inventory, daily activity, spend logs) after a timeout, a connection error, 429 or 5xx")
    gateway_admin_key: SecretStr | None = setting(None, "GATEWAY_ADMIN_KEY", "gateway admin key for `/key/list`, `/team/list` and `/spend/logs/v2`",
                                                  secret=True)
    ig1_base_url: HttpUrl = setting("https://api.ig1.ai", "IG1_BASE_URL", "IG1 billing API")
    ig1_master_key: SecretStr | None = setting(None, "IG1_MASTER_KEY", "IG1 master key (billing reconciliation; the report says when it is absent)",
                                               secret=True)
    billing_timezone: TimeZone = setting("UTC", "IG1_BILLING_TIMEZONE",
                                         "time zone of IG1's billing days; requests are reconciled by the billing day they started in")
    billing_refresh_days: Annotated[int, _number(1, 90, whole=True)] = setting(
        3, "IG1_REFRESH_DAYS", "days of billing each daily run asks for again (the day and the ones before): billing arrives late and can be restated; "
        "a month is fetched whole again at month close")
    usd_rate: str | None = setting(None, "IG1_USD_RATE",
                                   "USD per unit of the contract currency: a number (`1.08`) or a CSV file `date,usd_per_unit` "
                                   "(latest rate on or before each day)", shown_default="none (1 when IG1 bills in USD)")
    billing_late_days: Annotated[int, _number(0, 3650, whole=True)] = setting(
        2, "IG1_LATE_DAYS", "billing still missing this many days after a day fails the `billing_arrived` check (a warning before that)")
    billing_timeout_seconds: Annotated[float, _number(0.1, 600)] = setting(30.0, "IG1_TIMEOUT_SECONDS",
                                                                           "read timeout of one IG1 call (connect timeout 5 s)")
    billing_max_retries: Annotated[int, _number(0, 20, whole=True)] = setting(
        4, "IG1_MAX_RETRIES", "retries after a timeout, a connection error, 429 (honouring Retry-After), 5xx or a cut-off body")
    variance_warn_pct: Annotated[float, _number(0, 1000)] = setting(
        10.0, "USAGE_VARIANCE_WARN_PCT", "the `variance_within_threshold` check warns beyond this estimated-vs-billed variance (%)")
    prices_file: ExistingFile = setting(None, "USAGE_PRICES_FILE",
                                        "JSON price table (USD per 1M tokens) used to re-price requests logged without a cost",
                                        shown_default="built-in IG1 list prices")
    max_rejected_share: Annotated[float, _number(0, 1)] = setting(
        0.02, "USAGE_MAX_REJECTED_SHARE", "blocking check: largest share of a day's records that may be rejected")
    duckdb_memory_limit: str = setting("1GB", "USAGE_DUCKDB_MEMORY_LIMIT", "memory DuckDB may use per connection; beyond it, it spills to disk")
    max_record_mb: Annotated[float, _number(0.001, 1024)] = setting(
        16.0, "USAGE_MAX_RECORD_MB", "largest accepted log record (MB); longer ones are rejected with that reason")
    schedule_time: Annotated[dt.time, BeforeValidator(_time_of_day)] = setting(
        dt.time(1, 15), "USAGE_SCHEDULE_TIME", "time of day (report time zone) the schedule ingests the previous day")
    freshness_deadline: Annotated[dt.time, BeforeValidator(_time_of_day)] = setting(
        dt.time(6, 0), "USAGE_FRESHNESS_DEADLINE",
        "time of day (report time zone) by which yesterday's partition of the daily assets must exist, else their freshness check fails")
    hide_user_agent_tags: bool = setting(False, "REPORT_HIDE_USER_AGENT_TAGS",
                                         "leave LiteLLM's automatic `User-Agent: …` request tags out of the tags view and export")
    chromium: Path | None = setting(None, "REPORT_CHROMIUM", "Chromium (or Chrome) used to print each month's, quarter's and year's PDF",
                                    shown_default="`chromium` or `google-chrome` on PATH; no PDF without one")
    site_url: HttpUrl = setting(None, "REPORT_SITE_URL", "public address of the published site; the digest and alerts link into it",
                                shown_default="none (messages name `USAGE_SITE_DIR`)")
    smtp_host: str | None = setting(None, "USAGE_SMTP_HOST", "SMTP server the daily digest and the alerts are e-mailed through (with `USAGE_MAIL_TO`)")
    smtp_port: Annotated[int, _number(1, 65535, whole=True)] = setting(587, "USAGE_SMTP_PORT", "port of the SMTP server")
    smtp_security: str = setting("starttls", "USAGE_SMTP_SECURITY", "`starttls`, `ssl` (SMTPS, usually port 465) or `none`")
    smtp_username: str | None = setting(None, "USAGE_SMTP_USERNAME", "SMTP login; none: no authentication")
    smtp_password: SecretStr | None = setting(None, "USAGE_SMTP_PASSWORD", "SMTP password", secret=True)
    mail_from: str = setting("ig1-usage-reports@localhost", "USAGE_MAIL_FROM", "sender address of the digest and alerts")
    mail_to: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)] = setting(
        (), "USAGE_MAIL_TO", "comma-separated addresses the digest and alerts are e-mailed to")
    webhook_url: SecretStr | None = setting(None, "USAGE_WEBHOOK_URL",
                                            "Slack-compatible incoming webhook the digest and alerts are posted to (its URL embeds a token)",
                                            secret=True)
    dagster_url: HttpUrl = setting(None, "USAGE_DAGSTER_URL", "address of the Dagster UI; a run failure alert links to the run")
    serve_host: str = setting("127.0.0.1", "USAGE_SERVE_HOST", "address `usage-report serve` listens on")
    serve_port: Annotated[int, _number(1, 65535, whole=True)] = setting(8080, "USAGE_SERVE_PORT", "port `usage-report serve` listens on")
    admin_tokens: Annotated[tuple[str, ...], NoDecode, BeforeValidator(_comma_list)] = setting(
        (), "USAGE_ADMIN_TOKENS", "comma-separated tokens `usage-report serve` admits as admins without asking the gateway", secret=True)
    auth_cache_seconds: Annotated[float, _number(0, 3600)] = setting(
        60.0, "USAGE_AUTH_CACHE_SECONDS", "how long `usage-report serve` remembers the gateway's answer about a reader's key")
    dagster_home: Path = setting(Path(".dagster_home"), "DAGSTER_HOME", "Dagster instance folder (`dagster.yaml` with telemetry off)")

    # IG1_USD_RATE parsed once, when the settings are validated.
    _usd_rates: UsdRates = PrivateAttr(default_factory=UsdRates)

    @field_validator("logs_dir")
    @classmethod
    def _logs_location(cls, value: str) -> str:
        if "://" in value and not is_bucket_url(value):
            raise ValueError(f"{value!r}: a local folder or a bucket (s3://bucket/prefix, gs://bucket/prefix, az://container/prefix) is expected")
        if not is_bucket_url(value) and Path(value).exists() and not Path(value).is_dir():
            raise ValueError(f"{value!r} is a file, not a folder")
        return value

    @field_validator("logs_source", "smtp_security")
    @classmethod
    def _one_of(cls, value: str, info: ValidationInfo) -> str:
        allowed = {"logs_source": LOGS_SOURCES, "smtp_security": SMTP_SECURITY}[info.field_name]
        if value not in allowed:
            raise ValueError(f"{value!r} must be one of {', '.join(allowed)}")
        return value

    @field_validator("warehouse")
    @classmethod
    def _warehouse_file(cls, value: Path) -> Path:
        if value.is_dir():
            raise ValueError(f"{str(value)!r} is a folder; give the path of a .duckdb file")
        return value

    @field_validator("site_dir")
    @classmethod
    def _site_folder(cls, value: Path) -> Path:
        if value.exists() and not value.is_dir():
            raise ValueError(f"{str(value)!r} is a file, not a folder")
        return value

    @field_validator("duckdb_memory_limit")
    @classmethod
    def _memory_size(cls, value: str) -> str:
        if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", value, re.IGNORECASE):
            raise ValueError(f"{value!r} is not a size such as 800MB or 4GB")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.gateway_base_url and not self.gateway_admin_key:
            raise ValueError("GATEWAY_BASE_URL is set but GATEWAY_ADMIN_KEY is not: the gateway API needs an admin key")
        if self.logs_source == "gateway-api" and not self.gateway_base_url:
            raise ValueError("USAGE_LOGS_SOURCE=gateway-api needs GATEWAY_BASE_URL and GATEWAY_ADMIN_KEY")
        if self.smtp_host and not self.mail_to:
            raise ValueError("USAGE_SMTP_HOST is set but USAGE_MAIL_TO is not: the digest needs recipients")
        if self.mail_to and not self.smtp_host:
            raise ValueError("USAGE_MAIL_TO is set but USAGE_SMTP_HOST is not: the digest needs an SMTP server")
        try:
            self._usd_rates = load_usd_rates(self.usd_rate)
        except FxError as exc:
            raise ValueError(str(exc)) from None
        return self

    @property
    def first_day(self) -> dt.date:
        """The first daily partition: USAGE_START_DATE, else USAGE_HISTORY_DAYS before today."""
        return self.start_date or dt.date.today() - dt.timedelta(days=self.history_days)

    @property
    def inventory(self) -> Path | None:
        """USAGE_INVENTORY_FILE, else the demo's inventory when it is there."""
        return self.inventory_file or (DEMO_INVENTORY if DEMO_INVENTORY.is_file() else None)

    @property
    def usd_rates(self) -> UsdRates:
        return self._usd_rates

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
        return "file" if self.inventory else "none"

    @property
    def billing_configured(self) -> bool:
        return bool(self.ig1_master_key)

    @property
    def notify_configured(self) -> bool:
        """Whether the digest and alerts have somewhere to go (e-mail or webhook)."""
        return bool(self.smtp_host or self.webhook_url)

    def describe(self) -> list[tuple[str, str]]:
        """(env name, effective value) pairs, secrets masked, for check-config."""
        return [(info.validation_alias, _shown(name, getattr(self, name), info.json_schema_extra["secret"], self))
                for name, info in type(self).model_fields.items()]


def _shown(name: str, value: Any, secret: bool, settings: Settings) -> str:
    if secret:
        return (f"({len(value)} set)" if isinstance(value, tuple) else "(set)") if value else "(not set)"
    if name == "start_date":
        return settings.first_day.isoformat() + ("" if value else f" ({settings.history_days} days ago)")
    if name == "inventory_file":
        value = settings.inventory
    if isinstance(value, tuple):
        return ", ".join(value) or "(not set)"
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    if isinstance(value, float):
        return f"{value:g}"
    return "(not set)" if value is None else str(value)


ENV_NAMES = tuple(info.validation_alias for info in Settings.model_fields.values())
SECRET_ENV_NAMES = tuple(info.validation_alias for info in Settings.model_fields.values() if info.json_schema_extra["secret"])


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (the process environment by
    default), values stripped so that a blank one counts as unset."""

    def __init__(self, environ: Mapping[str, str]):
        self.environ = environ
        super().__init__(Settings)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        stripped = {name: value.strip() for name, value in self.environ.items() if name in ENV_NAMES}
        return parse_env_vars(stripped, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting from `env` (default: the process environment).

    Raise SettingsError naming each bad setting and its value."""
    try:
        return Settings(_build_sources=((_Environment(os.environ if env is None else env),), {}))
    except ValidationError as exc:
        raise SettingsError("; ".join(_message(error) for error in exc.errors())) from None


def _message(error: dict) -> str:
    """`NAME=value …` from a field error, the bare message from a cross-setting one."""
    message = str(error.get("ctx", {}).get("error", error["msg"]))
    if not error["loc"]:
        return message
    name = error["loc"][0]
    # The validators' messages start with the value they refuse.
    return f"{name}={message}" if message.startswith("'") else f"{name}={error['input']!r}: {message}"


def markdown_table() -> str:
    """The README's settings table, from the model."""
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for info in Settings.model_fields.values():
        extra = info.json_schema_extra
        default = extra.get("shown_default") or ("—" if info.default in (None, ()) else f"`{_shown('', info.default, False, None)}`")
        meaning = ("**secret**: " if extra["secret"] else "") + info.description
        lines.append(f"| `{info.validation_alias}` | {default} | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] != ["--markdown"]:
        sys.exit("usage: python -m usage_jobs.settings --markdown")
    print(markdown_table())
