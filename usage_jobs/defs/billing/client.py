"""IG1 billing API client (`GET /usage`, `GET /usage/history`) over httpx, with retries.

Retried (by the shared `usage_jobs.http_retry.RetryingJsonClient`, on tenacity): timeouts and
connection errors, 429 (after Retry-After when given), 5xx and a body that is not JSON
(a cut-off transfer), with exponential backoff and jitter. Not retried: 400, 401, 402,
403, 404 and a well-formed body of the wrong shape; each fails with a message a data
engineer can act on. The master key is sent in a header and never put in a message.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections.abc import Callable
from typing import Any

import httpx

from usage_jobs.defs.billing.parse import BilledHistory, BillingFormatError, CommitStatus, parse_history, parse_usage
from usage_jobs.http_retry import MAX_RETRY_AFTER_SECONDS, CallLog, RetryingJsonClient

__all__ = ["FINAL_STATUS_MESSAGES", "MAX_RETRY_AFTER_SECONDS", "BillingClient", "BillingError", "CallLog"]

FINAL_STATUS_MESSAGES = {
    400: "IG1 refused the request as malformed (HTTP 400)",
    401: "IG1 rejected the master key (HTTP 401): IG1_MASTER_KEY is wrong or has been revoked",
    402: "IG1 answered HTTP 402: the month's commit is exhausted, so IG1 refuses requests until it is raised or the month ends",
    403: "IG1 refused access (HTTP 403): IG1_MASTER_KEY is not a master key for this organisation",
    404: "IG1 has no such endpoint (HTTP 404): check IG1_BASE_URL",
}


class BillingError(RuntimeError):
    """The billing API could not give an answer; the message says why and what to check."""


class BillingClient:
    def __init__(self, base_url: str, master_key: str, *, connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 max_retries: int = 4, backoff_seconds: float = 1.0, max_backoff_seconds: float = 30.0,
                 transport: httpx.BaseTransport | None = None, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random, log: Callable[[str], None] | None = None):
        if not master_key:
            raise BillingError("IG1_MASTER_KEY is not set: billing is not configured")
        self._http = RetryingJsonClient(
            base_url, master_key, service="IG1", error=BillingError, final_status_messages=FINAL_STATUS_MESSAGES,
            detail_statuses=frozenset({400}), connect_timeout=connect_timeout, read_timeout=read_timeout,
            max_retries=max_retries, backoff_seconds=backoff_seconds, max_backoff_seconds=max_backoff_seconds,
            transport=transport, sleep=sleep, jitter=jitter, log=log,
        )
        self.base_url = base_url
        self.max_retries = max_retries

    @property
    def calls(self) -> CallLog:
        return self._http.calls

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> BillingClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def usage(self) -> CommitStatus:
        return self._parsed("/usage", {}, parse_usage)

    def history(self, start: dt.date, end: dt.date) -> BilledHistory:
        params = {"start_date": start.isoformat(), "end_date": end.isoformat()}
        return self._parsed("/usage/history", params, lambda document: parse_history(document, start, end))

    def _parsed(self, path: str, params: dict, parse: Callable[[Any], Any]):
        try:
            return parse(self._http.get_json(path, params))
        except BillingFormatError as exc:
            raise BillingError(self._http.clean(str(exc))) from None
