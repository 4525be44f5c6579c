"""Resources shared by every domain: the warehouse and the settings the assets read."""


import contextlib
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import duckdb

from usage_jobs import warehouse
from usage_jobs.defs.gateway.landing import is_bucket_url, landing_root
from usage_jobs.defs.gateway.layout import BUCKET, FOLDER, GATEWAY_API

# DuckDB allows one writing process per file: every asset that opens the warehouse is in this pool (limit 1).
WAREHOUSE_POOL = "duckdb_warehouse"


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file."""

    path: str
    memory_limit: str = warehouse.DEFAULT_MEMORY_LIMIT

    @contextlib.contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.session(Path(self.path), read_only=read_only, memory_limit=self.memory_limit) as conn:
            yield conn


class GatewayLogsResource(dg.ConfigurableResource):
    """Where the gateway's request logs are and how to read them.

    `logs_dir` is a local folder or a bucket URL; with `source="gateway-api"` the logs come
    from the gateway's /spend/logs/v2. Remote logs are landed under `landing_dir` first."""

    logs_dir: str
    source: str = "logs-dir"
    landing_dir: str = "landing"
    s3_endpoint_url: str | None = None
    fetch_concurrency: int = 32
    # Fetch a remote day again even where it is already landed (run config, or `usage-report run --refetch`).
    refetch: bool = False
    gateway_base_url: str | None = None
    gateway_admin_key: str | None = None
    gateway_max_retries: int = 4
    timezone: str = "UTC"
    prices_file: str | None = None
    max_record_mb: float = 16.0
    max_rejected_share: float = 0.02

    @property
    def remote_source(self) -> str | None:
        """The bucket URL or gateway URL logs are landed from; None for a local folder read in place."""
        if self.source == GATEWAY_API:
            return self.gateway_base_url
        return self.logs_dir if is_bucket_url(self.logs_dir) else None

    @property
    def source_kind(self) -> str:
        """layout.FOLDER, BUCKET or GATEWAY_API: what the local root's dates and times mean."""
        if self.source == GATEWAY_API:
            return GATEWAY_API
        return BUCKET if self.remote_source else FOLDER

    def local_root(self) -> Path:
        """The local folder ingest reads: the logs folder itself, or the source's landing folder."""
        remote = self.remote_source
        return landing_root(Path(self.landing_dir), remote) if remote else Path(self.logs_dir)


class InventoryResource(dg.ConfigurableResource):
    """Where the key/team inventory comes from: the gateway API (admin key) or a file."""

    gateway_base_url: str | None = None
    gateway_admin_key: str | None = None
    max_retries: int = 4
    inventory_file: str | None = None


class SiteResource(dg.ConfigurableResource):
    """The static report site's output folder and presentation settings."""

    site_dir: str
    timezone: str = "UTC"
    billing_configured: bool = False
    billing_timezone: str = "UTC"
    hide_user_agent_tags: bool = False
    chromium: str | None = None  # REPORT_CHROMIUM, prints the finance periods' PDFs; None: `chromium` or `google-chrome` on PATH
