"""Every HTTP client (IG1 billing, the gateway's inventory, the gateway as a log source) retries
alike, through the one tenacity-based client of `usage_jobs.http_retry`: against a real HTTP
server on 127.0.0.1 (pytest-httpserver), with the waits recorded instead of slept."""

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pytest

from helpers import local_http_server
from usage_jobs.defs.billing.client import BillingClient, BillingError
from usage_jobs.defs.gateway.landing import LandingError
from usage_jobs.defs.gateway.spend_api import SPEND_LOGS_PATH, land_spend_logs_day
from usage_jobs.defs.inventory.client import fetch_inventory
from usage_jobs.defs.inventory.parse import InventoryError
from usage_jobs.http_retry import gateway_client

SECRET = "sk-retry-SECRET-5f4e3d"
DAY = dt.date(2026, 11, 10)
LATER = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)
MIDDLE_JITTER = 0.5  # each backoff step waits 0.5 + 0.5 × 0.5 of its ceiling


class Sleeps(list):
    """Records each wait instead of waiting it."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def read_billing(url: str, sleeps: Sleeps, max_retries: int, tmp_path) -> Any:
    with BillingClient(url, SECRET, max_retries=max_retries, sleep=sleeps, jitter=lambda: MIDDLE_JITTER) as client:
        return client.usage()


def read_inventory(url: str, sleeps: Sleeps, max_retries: int, tmp_path) -> Any:
    return fetch_inventory(url, SECRET, max_retries=max_retries, backoff_seconds=1.0, sleep=sleeps, jitter=lambda: MIDDLE_JITTER)


def land_spend_logs(url: str, sleeps: Sleeps, max_retries: int, tmp_path) -> Any:
    with gateway_client(url, SECRET, error=LandingError, max_retries=max_retries, backoff_seconds=1.0, sleep=sleeps,
                        jitter=lambda: MIDDLE_JITTER) as client:
        return land_spend_logs_day(url, SECRET, DAY, "UTC", tmp_path, client=client, now=LATER)


@dataclass(frozen=True)
class Source:
    read: Any
    path: str  # the endpoint the faults are injected on
    answers: dict[str, Any]  # every endpoint's good answer
    error: type[Exception]
    service: str


SOURCES = {
    "billing": Source(read_billing, "/usage", {"/usage": {"current": 1.5, "commit": 100, "max_throughput": 10}}, BillingError, "IG1"),
    "inventory": Source(read_inventory, "/key/list", {"/key/list": {"keys": [], "total_pages": 1}, "/team/list": []}, InventoryError,
                        "The gateway"),
    "spend logs": Source(land_spend_logs, SPEND_LOGS_PATH, {SPEND_LOGS_PATH: {"data": [], "total": 0, "page": 1, "page_size": 1000,
                                                                            "total_pages": 0, "total_is_capped": False}},
                         LandingError, "The gateway"),
}
every_source = pytest.mark.parametrize("source", SOURCES.values(), ids=SOURCES.keys())


@pytest.fixture
def server():
    with local_http_server() as http:
        yield http


def _answer_well(server, source: Source) -> None:
    for path, body in source.answers.items():
        server.expect_request(path).respond_with_json(body)


def _statuses(server, path: str) -> list[int]:
    return [response.status_code for request, response in server.log if request.path == path]


@every_source
def test_a_503_is_retried_after_a_backoff_then_the_answer_is_read(server, source, tmp_path):
    server.expect_oneshot_request(source.path).respond_with_json({"error": "busy"}, status=503)
    _answer_well(server, source)
    sleeps = Sleeps()
    source.read(server.url_for(""), sleeps, 2, tmp_path)
    assert _statuses(server, source.path) == [503, 200]
    assert sleeps == [0.75]  # 1 s ceiling for the first retry, jitter at its middle


@every_source
def test_retry_after_is_honoured_instead_of_the_backoff(server, source, tmp_path):
    server.expect_oneshot_request(source.path).respond_with_json({"error": "slow down"}, status=429, headers={"Retry-After": "7"})
    server.expect_oneshot_request(source.path).respond_with_json({"error": "down"}, status=503, headers={"Retry-After": "2"})
    _answer_well(server, source)
    sleeps = Sleeps()
    source.read(server.url_for(""), sleeps, 2, tmp_path)
    assert _statuses(server, source.path) == [429, 503, 200]
    assert sleeps == [7.0, 2.0]


@every_source
def test_giving_up_names_the_url_the_attempts_and_the_last_status_never_the_secret(server, source, tmp_path):
    server.expect_request(source.path).respond_with_json({"error": f"upstream rejected {SECRET}"}, status=502)
    sleeps = Sleeps()
    with pytest.raises(source.error) as failure:
        source.read(server.url_for(""), sleeps, 2, tmp_path)
    message = str(failure.value)
    assert message.startswith(f"{source.service} GET {server.url_for(source.path)} failed after 3 attempts; last: server error (HTTP 502)")
    assert SECRET not in message and len(sleeps) == 2 and _statuses(server, source.path) == [502] * 3


@every_source
def test_a_refused_connection_is_retried_then_named(source, tmp_path):
    with local_http_server() as gone:
        url = gone.url_for("")
    sleeps = Sleeps()
    with pytest.raises(source.error, match=r"failed after 2 attempts; last: could not connect \(ConnectError"):
        source.read(url, sleeps, 1, tmp_path)
    assert len(sleeps) == 1
