"""IG1 billing API client (`GET /usage`, `GET /usage/history`) over httpx, with retries.

Retried: timeouts and connection errors, 429 (after Retry-After when given), 5xx and a
body that is not JSON (a cut-off transfer), with exponential backoff and jitter. Not
retried: 400, 401, 402, 403, 404 and a well-formed body of the wrong shape; each fails
with a message a data engineer can act on. The master key is sent in a header and
never put in a message.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from usage_jobs.defs.billing.parse import BilledHistory, BillingFormatError, CommitStatus, parse_history, parse_usage

FINAL_STATUS_MESSAGES = {
    400: "IG1 refused the request as malformed (HTTP 400)",
    401: "IG1 rejected the master key (HTTP 401): IG1_MASTER_KEY is wrong or has been revoked",
    402: "IG1 answered HTTP 402: the month's commit is exhausted, so IG1 refuses requests until it is raised or the month ends",
    403: "IG1 refused access (HTTP 403): IG1_MASTER_KEY is not a master key for this organisation",
    404: "IG1 has no such endpoint (HTTP 404): check IG1_BASE_URL",
}
MAX_RETRY_AFTER_SECONDS = 120.0


class BillingError(RuntimeError):
    """The billing API could not give an answer; the message says why and what to check."""


@dataclass
class CallLog:
    """What each call cost: attempts and why each retry happened (for metadata and tests)."""

    attempts: int = 0
    retries: list[str] = field(default_factory=list)
    waited_seconds: float = 0.0


class BillingClient:
    def __init__(self, base_url: str, master_key: str, *, connect_timeout: float = 5.0, read_timeout: float = 30.0,
                 max_retries: int = 4, backoff_seconds: float = 1.0, max_backoff_seconds: float = 30.0,
                 transport: httpx.BaseTransport | None = None, sleep: Callable[[float], None] = time.sleep,
                 jitter: Callable[[], float] = random.random, log: Callable[[str], None] | None = None):
        if not master_key:
            raise BillingError("IG1_MASTER_KEY is not set: billing is not configured")
        self._secret = master_key
        self._client = httpx.Client(
            base_url=base_url, transport=transport, headers={"Authorization": f"Bearer {master_key}", "Accept": "application/json"},
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        )
        self.base_url = base_url
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self._sleep, self._jitter, self._log = sleep, jitter, log or (lambda message: None)
        self.calls = CallLog()

    def close(self) -> None:
        self._client.close()

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
            return parse(self._get_json(path, params))
        except BillingFormatError as exc:
            raise BillingError(self._clean(str(exc))) from None

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with full jitter over its upper half (never 0, never in lockstep)."""
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** attempt)
        return ceiling * (0.5 + 0.5 * self._jitter())

    def _get_json(self, path: str, params: dict) -> Any:
        where = f"{self.base_url}{path}"
        for attempt in range(self.max_retries + 1):
            self.calls.attempts += 1
            last = attempt == self.max_retries
            try:
                response = self._client.get(path, params=params)
            except httpx.TimeoutException as exc:
                problem, wait = f"timed out ({type(exc).__name__})", None
            except httpx.TransportError as exc:
                problem, wait = f"could not connect ({type(exc).__name__}: {exc})", None
            else:
                status = response.status_code
                if status in FINAL_STATUS_MESSAGES:
                    detail = _error_detail(response) if status == 400 else ""
                    raise BillingError(self._clean(f"{FINAL_STATUS_MESSAGES[status]} on GET {where}{detail}"))
                if status == 429:
                    problem, wait = "rate limited (HTTP 429)", _retry_after(response)
                elif status >= 500:
                    problem, wait = f"server error (HTTP {status})", None
                elif status != 200:
                    raise BillingError(self._clean(f"IG1 answered HTTP {status} on GET {where}, which the product does not expect"))
                else:
                    try:
                        return response.json()
                    except ValueError:
                        problem, wait = f"a body that is not JSON ({len(response.content)} bytes, starting {response.text[:40]!r})", None
            if last:
                raise BillingError(self._clean(f"IG1 GET {where} failed after {attempt + 1} attempts; last: {problem}"))
            delay = self._delay(attempt) if wait is None else min(wait, MAX_RETRY_AFTER_SECONDS)
            self.calls.retries.append(problem)
            self.calls.waited_seconds += delay
            self._log(f"IG1 GET {path}: {problem}; retry {attempt + 1}/{self.max_retries} in {delay:.1f} s")
            self._sleep(delay)
        raise AssertionError("unreachable")

    def _clean(self, message: str) -> str:
        """Belt and braces: whatever a server or library echoes, the key never leaves in a message."""
        return message.replace(self._secret, "***")


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), if usable."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def _error_detail(response: httpx.Response) -> str:
    try:
        message = response.json().get("error", {}).get("message")
    except (ValueError, AttributeError):
        message = None
    return f": {str(message)[:200]}" if message else ""
