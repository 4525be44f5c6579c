"""The IG1 billing client against the local emulator (a real HTTP server on 127.0.0.1), every fault mode."""

import datetime as dt
import json

import httpx
import pytest

from usage_jobs.defs.billing.client import BillingClient, BillingError
from usage_jobs.defs.billing.parse import BillingFormatError, parse_history, parse_usage
from usage_jobs.demo.emulator import Faults, IG1Emulator

MASTER_KEY = "ig1-master-TEST-9f8e7d6c5b4a"
LEDGER = {
    "currency": "EUR", "commit": 500, "max_throughput": 100,
    "data": [
        {"date": "2026-11-18", "model": "qwen35-397b-a17b-instruct-general", "input_tokens": 1000, "output_tokens": 200, "requests": 10, "cost": 1.25},
        {"date": "2026-11-19", "model": "qwen35-397b-a17b-instruct-general", "input_tokens": 2000, "output_tokens": 400, "requests": 20, "cost": 2.5},
        {"date": "2026-11-19", "model": "bge-m3", "input_tokens": 500, "output_tokens": 0, "requests": 5, "cost": 0.01},
    ],
}
START, END = dt.date(2026, 11, 18), dt.date(2026, 11, 19)


class Sleeps(list):
    """Records each backoff wait instead of waiting it."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def emulator():
    with IG1Emulator(json.loads(json.dumps(LEDGER)), MASTER_KEY, today=dt.date(2026, 11, 20)) as server:
        yield server


def _client(url: str, key: str = MASTER_KEY, **kwargs) -> tuple[BillingClient, Sleeps]:
    sleeps = Sleeps()
    kwargs.setdefault("backoff_seconds", 0.01)
    return BillingClient(url, key, sleep=sleeps, jitter=lambda: 0.5, **kwargs), sleeps


def test_history_and_usage_are_read_as_the_emulator_serves_them(emulator):
    client, _ = _client(emulator.url)
    history = client.history(START, END)
    assert history.currency == "EUR"
    assert [(r.day.isoformat(), r.model, r.input_tokens, r.output_tokens, r.requests, str(r.cost)) for r in history.rows] == [
        ("2026-11-18", "qwen35-397b-a17b-instruct-general", 1000, 200, 10, "1.25"),
        ("2026-11-19", "qwen35-397b-a17b-instruct-general", 2000, 400, 20, "2.5"),
        ("2026-11-19", "bge-m3", 500, 0, 5, "0.01")]
    usage = client.usage()
    assert (str(usage.current), str(usage.commit), usage.max_throughput) == ("3.76", "500", 100.0)
    assert client.calls.attempts == 2 and client.calls.retries == []


def test_a_wrong_key_fails_at_once_with_a_message_that_says_so(emulator):
    client, sleeps = _client(emulator.url, key="ig1-revoked-key-000")
    with pytest.raises(BillingError, match="IG1_MASTER_KEY is wrong or has been revoked") as failure:
        client.history(START, END)
    assert client.calls.attempts == 1 and sleeps == []
    assert "ig1-revoked-key-000" not in str(failure.value)


def test_an_exhausted_commit_fails_at_once_naming_it(emulator):
    emulator.faults.commit_exhausted = True
    client, sleeps = _client(emulator.url)
    with pytest.raises(BillingError, match="402: the month's commit is exhausted"):
        client.usage()
    assert client.calls.attempts == 1 and sleeps == []


def test_rate_limits_are_retried_after_the_retry_after_the_server_gives(emulator):
    emulator.faults = Faults(rate_limited_left=2, retry_after_seconds=7)
    client, sleeps = _client(emulator.url)
    assert len(client.history(START, END).rows) == 3
    assert client.calls.attempts == 3
    assert client.calls.retries == ["rate limited (HTTP 429)"] * 2
    assert sleeps == [7.0, 7.0]  # Retry-After honoured, not the (much shorter) backoff
    assert [status for _, status in emulator.requests_served] == [429, 429, 200]


def test_a_burst_of_503_is_retried_with_growing_jittered_backoff(emulator):
    emulator.faults = Faults(unavailable_left=3)
    client, sleeps = _client(emulator.url, backoff_seconds=1.0)
    assert len(client.history(START, END).rows) == 3
    assert client.calls.retries == ["server error (HTTP 503)"] * 3
    assert sleeps == [0.75, 1.5, 3.0]  # 1 s × 2^attempt, jitter at its middle (0.5 + 0.5 × 0.5)


def test_503_beyond_the_retry_budget_fails_with_the_last_cause(emulator):
    emulator.faults = Faults(unavailable_left=10)
    client, sleeps = _client(emulator.url, max_retries=2)
    with pytest.raises(BillingError, match=r"failed after 3 attempts; last: server error \(HTTP 503\)"):
        client.history(START, END)
    assert len(sleeps) == 2 and emulator.faults.unavailable_left == 7


def test_a_cut_off_body_is_retried_then_read(emulator):
    emulator.faults = Faults(malformed_left=1)
    client, _ = _client(emulator.url)
    assert len(client.history(START, END).rows) == 3
    assert client.calls.attempts == 2 and client.calls.retries[0].startswith("a body that is not JSON")


def test_a_well_formed_body_of_the_wrong_shape_fails_without_retrying(emulator):
    emulator.faults = Faults(wrong_shape_left=1)
    client, _ = _client(emulator.url)
    with pytest.raises(BillingError, match="unexpected response: currency is missing"):
        client.history(START, END)
    assert client.calls.attempts == 1


def test_slow_answers_time_out_and_are_retried(emulator):
    emulator.faults = Faults(latency_seconds=0.5)
    client, sleeps = _client(emulator.url, read_timeout=0.1, max_retries=1)
    with pytest.raises(BillingError, match=r"failed after 2 attempts; last: timed out \(ReadTimeout\)"):
        client.history(START, END)
    assert len(sleeps) == 1


def test_an_unreachable_server_is_retried_then_named(emulator):
    url = emulator.url
    emulator.stop()
    client, _ = _client(url, max_retries=1)
    with pytest.raises(BillingError, match=f"IG1 GET {url}/usage failed after 2 attempts; last: could not connect"):
        client.usage()


def test_a_wrong_base_url_gives_404_naming_the_setting(emulator):
    client, _ = _client(emulator.url + "/v9")
    with pytest.raises(BillingError, match="HTTP 404.*check IG1_BASE_URL"):
        client.usage()
    assert client.calls.attempts == 1


def test_a_missing_day_is_simply_absent_and_a_late_day_appears_later(emulator):
    emulator.faults = Faults(missing_days={"2026-11-18"})
    client, _ = _client(emulator.url)
    assert {r.day for r in client.history(START, END).rows} == {END}
    emulator.faults = Faults(delay_days=1)  # today is the 20th: the 19th is not billed yet
    assert {r.day for r in client.history(START, END).rows} == {START}


def test_400_shows_the_servers_reason_and_a_retry_after_date_is_understood():
    """Faults the emulator cannot be asked for: injected with httpx.MockTransport."""
    answers = iter([
        httpx.Response(429, headers={"Retry-After": "Thu, 01 Jan 2015 00:00:00 GMT"}),  # a date in the past: retry now
        httpx.Response(400, json={"error": {"message": "end_date is too far in the future"}}),
    ])
    client, sleeps = _client("https://ig1.invalid", transport=httpx.MockTransport(lambda request: next(answers)))
    with pytest.raises(BillingError, match="HTTP 400.*: end_date is too far in the future"):
        client.history(START, END)
    assert sleeps == [0.0]


def test_the_master_key_never_appears_in_any_message(emulator):
    echoing = httpx.MockTransport(lambda request: httpx.Response(400, json={"error": {"message": f"bad header {request.headers['Authorization']}"}}))
    client, _ = _client("https://ig1.invalid", transport=echoing)
    with pytest.raises(BillingError) as failure:
        client.usage()
    assert MASTER_KEY not in str(failure.value) and "***" in str(failure.value)


@pytest.mark.parametrize(("document", "message"), [
    ([], r"the body is \[\]: Input should be a valid dictionary"),
    ({"currency": "euro", "data": []}, "currency is 'euro': String should match pattern"),
    ({"currency": "EUR"}, "data is missing"),
    ({"currency": "EUR", "data": [{"date": "2026-13-01", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost": 1}]}, r"data\[0\].date is '2026-13-01'"),
    ({"currency": "EUR", "data": [{"date": "2026-11-30", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost": 1}]}, "outside the requested"),
    ({"currency": "EUR", "data": [{"date": "2026-11-18", "model": "m", "input_tokens": "12", "output_tokens": 1, "cost": 1}]}, r"input_tokens is '12': Input"),
    ({"currency": "EUR", "data": [{"date": "2026-11-18", "model": "m", "input_tokens": 1, "output_tokens": -1, "cost": 1}]}, "output_tokens is -1"),
    ({"currency": "EUR", "data": [{"date": "2026-11-18", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost": float("nan")}]}, "cost is nan"),
    ({"currency": "EUR", "data": [{"date": "2026-11-18", "model": "", "input_tokens": 1, "output_tokens": 1, "cost": 1}]}, "model is ''"),
    ({"currency": "EUR", "data": [{"date": "2026-11-18", "model": "m", "input_tokens": 1, "output_tokens": 1, "cost": 1}] * 2}, "repeats 2026-11-18 × m"),
])
def test_the_history_adapter_refuses_anything_else_naming_the_field(document, message):
    with pytest.raises(BillingFormatError, match=message):
        parse_history(document, START, END)


def test_requests_may_be_absent_from_history_and_usage_needs_current_and_commit():
    history = parse_history({"currency": "EUR", "data": [{"date": "2026-11-18", "model": "m", "input_tokens": 1, "output_tokens": 2, "cost": 0}]}, START, END)
    assert history.rows[0].requests is None
    with pytest.raises(BillingFormatError, match="commit is missing"):
        parse_usage({"current": 1.0})
    with pytest.raises(BillingFormatError, match="current is '1': Input should be a JSON number"):
        parse_usage({"current": "1", "commit": 5})
