"""One JSON-over-HTTP GET client with retries (tenacity), shared by every remote source:
IG1 billing, the gateway's management API (inventory) and its spend and activity APIs.

Retried: timeouts and connection errors, 429 and 5xx (after Retry-After when the server
gives one, capped), and a 200 whose body is not JSON (a cut-off transfer), with
exponential backoff and jitter, `max_retries` times. Not retried: every other status; the
statuses a service names in `final_status_messages` fail with that message, any other
with a generic one. The secret is sent in an `Authorization: Bearer` header and replaced
by `***` in every message, whatever a server or library echoes. Each raised error carries
`.status` (the HTTP status, or None when no answer came) so a caller can react to one
status in particular.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import tenacity

MAX_RETRY_AFTER_SECONDS = 120.0


@dataclass
class CallLog:
    """What the calls cost: attempts and why each retry happened (for metadata and tests)."""

    attempts: int = 0
    retries: list[str] = field(default_factory=list)
    waited_seconds: float = 0.0


@dataclass(frozen=True)
class JsonAnswer:
    """A 200 answer: the body exactly as sent, and its JSON value."""

    content: bytes
    document: Any


class RetryableAnswer(Exception):
    """An answer a later attempt may fix (429, 5xx, a cut-off body), and the wait the server asked for."""

    def __init__(self, problem: str, retry_after: float | None = None):
        super().__init__(problem)
        self.problem, self.retry_after = problem, retry_after


RETRYABLE = (httpx.TransportError, RetryableAnswer)  # TransportError covers timeouts and refused connections


def problem_of(exc: BaseException) -> str:
    """Why an attempt failed, in the words the logs and the give-up message use."""
    if isinstance(exc, RetryableAnswer):
        return exc.problem
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    return f"could not connect ({type(exc).__name__}: {exc})"


class BackoffOrRetryAfter(tenacity.wait.wait_base):
    """The server's Retry-After when it gave one (capped), else exponential backoff with
    jitter over the upper half of each step (never 0, never in lockstep with other clients)."""

    def __init__(self, backoff_seconds: float, max_backoff_seconds: float, max_retry_after_seconds: float, jitter: Callable[[], float]):
        self.backoff_seconds, self.max_backoff_seconds = backoff_seconds, max_backoff_seconds
        self.max_retry_after_seconds, self.jitter = max_retry_after_seconds, jitter

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        failure = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(failure, RetryableAnswer) and failure.retry_after is not None:
            return min(failure.retry_after, self.max_retry_after_seconds)
        ceiling = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** (retry_state.attempt_number - 1))
        return ceiling * (0.5 + 0.5 * self.jitter())


class RetryingJsonClient:
    """GET JSON documents from one service, retrying what a retry can fix.

    `error` is the exception class raised (the service's own, e.g. BillingError); the
    messages start with `service` ("IG1", "The gateway") and name the URL, never the secret.
    `sleep` and `jitter` are injectable so tests check the waits without waiting them."""

    def __init__(self, base_url: str, secret: str, *, service: str = "IG1", error: type[Exception] = RuntimeError,
                 final_status_messages: Mapping[int, str] | None = None, detail_statuses: frozenset[int] | None = None,
                 connect_timeout: float = 5.0, read_timeout: float = 30.0, max_retries: int = 4,
                 backoff_seconds: float = 1.0, max_backoff_seconds: float = 30.0,
                 max_retry_after_seconds: float = MAX_RETRY_AFTER_SECONDS, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, jitter: Callable[[], float] = random.random,
                 log: Callable[[str], None] | None = None):
        self._secret = secret
        self._client = httpx.Client(
            base_url=base_url, transport=transport, headers={"Authorization": f"Bearer {secret}", "Accept": "application/json"},
            timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        )
        self.base_url = base_url.rstrip("/")
        self.service = service
        self.error = error
        self.final_status_messages = dict(final_status_messages or {})
        # Statuses whose message gets the server's own reason appended (default: every 4xx but auth ones).
        self.detail_statuses = detail_statuses
        self.max_retries = max_retries
        self._wait = BackoffOrRetryAfter(backoff_seconds, max_backoff_seconds, max_retry_after_seconds, jitter)
        self._sleep, self._log = sleep, log or (lambda message: None)
        self.calls = CallLog()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> RetryingJsonClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """The decoded JSON body of `GET path`, after retries; raises `self.error` otherwise."""
        return self.get(path, params).document

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> JsonAnswer:
        """`GET path` answered 200 with a JSON body: the body's bytes as sent and its decoded value."""
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(RETRYABLE), stop=tenacity.stop_after_attempt(self.max_retries + 1),
            wait=self._wait, sleep=self._sleep, before_sleep=lambda state: self._note_retry(path, state), reraise=True,
        )
        try:
            return retrying(self._attempt, path, dict(params or {}))
        except RETRYABLE as exc:
            self.fail(f"{self.service} GET {self.base_url}{path} failed after {self.max_retries + 1} attempts; last: {problem_of(exc)}")

    def _attempt(self, path: str, params: dict[str, Any]) -> JsonAnswer:
        self.calls.attempts += 1
        response = self._client.get(path, params=params)
        status, where = response.status_code, f"{self.base_url}{path}"
        if status in self.final_status_messages:
            self.fail(f"{self.final_status_messages[status]} on GET {where}{self._detail(response)}", status)
        if status == 429:
            raise RetryableAnswer("rate limited (HTTP 429)", retry_after(response))
        if status >= 500:
            raise RetryableAnswer(f"server error (HTTP {status})", retry_after(response))
        if status != 200:
            self.fail(f"{self.service} answered HTTP {status} on GET {where}, which the product does not expect{self._detail(response)}", status)
        try:
            return JsonAnswer(response.content, response.json())
        except ValueError:
            raise RetryableAnswer(f"a body that is not JSON ({len(response.content)} bytes, starting {response.text[:40]!r})") from None

    def _note_retry(self, path: str, state: tenacity.RetryCallState) -> None:
        problem, delay = problem_of(state.outcome.exception()), state.next_action.sleep
        self.calls.retries.append(problem)
        self.calls.waited_seconds += delay
        self._log(self.clean(f"{self.service} GET {path}: {problem}; retry {state.attempt_number}/{self.max_retries} in {delay:.1f} s"))

    def fail(self, message: str, status: int | None = None):
        """Raise the service's error with the secret masked, carrying the HTTP status."""
        exc = self.error(self.clean(message))
        exc.status = status  # type: ignore[attr-defined]
        raise exc from None

    def clean(self, message: str) -> str:
        """Belt and braces: whatever a server or library echoes, the secret never leaves in a message."""
        return message.replace(self._secret, "***") if self._secret else message

    def _detail(self, response: httpx.Response) -> str:
        wanted = (response.status_code in self.detail_statuses if self.detail_statuses is not None
                  else 400 <= response.status_code < 500 and response.status_code not in (401, 403))
        return error_detail(response) if wanted else ""


def retry_after(response: httpx.Response) -> float | None:
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
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())


def error_detail(response: httpx.Response) -> str:
    """The server's reason, in the shapes OpenAI-style APIs and LiteLLM/FastAPI use:
    `{"error": {"message": …}}`, `{"error": "…"}`, `{"detail": "…"}`, `{"detail": {"error": "…"}}`."""
    try:
        body = response.json()
    except ValueError:
        return ""
    message = None
    if isinstance(body, dict):
        for outer in ("error", "detail"):
            value = body.get(outer)
            if isinstance(value, dict):
                value = value.get("message") or value.get("error")
            if isinstance(value, list) and value and isinstance(value[0], dict):  # FastAPI validation errors
                value = "; ".join(str(item.get("msg", "")) + (f" ({'.'.join(map(str, item.get('loc', [])))})" if item.get("loc") else "")
                                  for item in value[:3])
            if value:
                message = value
                break
    return f": {str(message)[:200]}" if message else ""


# The gateway's (LiteLLM proxy's) admin API: key/team inventory, spend logs, daily totals.
GATEWAY_FINAL_STATUS_MESSAGES = {
    401: "The gateway answered HTTP 401: GATEWAY_ADMIN_KEY is wrong, revoked or not an admin key",
    403: "The gateway answered HTTP 403: GATEWAY_ADMIN_KEY is wrong, revoked or not an admin key",
    404: "The gateway has no such endpoint (HTTP 404): check GATEWAY_BASE_URL",
}


def gateway_client(base_url: str, admin_key: str, *, error: type[Exception], timeout: float = 30.0, max_retries: int = 2,
                   backoff_seconds: float = 0.5, transport: httpx.BaseTransport | None = None,
                   sleep: Callable[[float], None] = time.sleep, jitter: Callable[[], float] = random.random,
                   log: Callable[[str], None] | None = None) -> RetryingJsonClient:
    """A retrying client of the gateway's admin API (admin key as Bearer), raising `error`."""
    return RetryingJsonClient(
        base_url, admin_key, service="The gateway", error=error, final_status_messages=GATEWAY_FINAL_STATUS_MESSAGES,
        connect_timeout=min(5.0, timeout), read_timeout=timeout, max_retries=max_retries, backoff_seconds=backoff_seconds,
        transport=transport, sleep=sleep, jitter=jitter, log=log,
    )
