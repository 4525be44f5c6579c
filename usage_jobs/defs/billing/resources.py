"""The IG1 billing API as a Dagster resource (master key from the environment only)."""


from collections.abc import Callable

import dagster as dg

from usage_jobs.defs.billing.client import BillingClient
from usage_jobs.defs.billing.fx import UsdRates


class BillingResource(dg.ConfigurableResource):
    """IG1's billing API and the rules for reconciling with it. Without a master key,
    billing assets record that billing is not configured and everything else runs."""

    base_url: str = "https://api.ig1.ai"
    master_key: str | None = None
    billing_timezone: str = "UTC"
    refresh_days: int = 3
    # IG1_USD_RATE as the settings parsed it: USD per unit by the day each rate starts (UsdRates.by_first_day).
    usd_rates: dict[str, str] = {}
    late_days: int = 2
    timeout_seconds: float = 30.0
    max_retries: int = 4
    variance_warn_pct: float = 10.0

    @property
    def configured(self) -> bool:
        return bool(self.master_key)

    def client(self, log: Callable[[str], None] | None = None) -> BillingClient:
        return BillingClient(self.base_url, self.master_key or "", read_timeout=self.timeout_seconds, max_retries=self.max_retries, log=log)

    @property
    def rates(self) -> UsdRates:
        return UsdRates.from_first_days(self.usd_rates)
