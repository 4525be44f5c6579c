"""Landing the gateway's /spend/logs/v2 pages, against a fake LiteLLM gateway on 127.0.0.1."""

import datetime as dt
import json

import httpx
import pytest

from fake_gateway import FakeGateway, Faults, day_of_traffic, spend_log_row
from usage_jobs.defs.gateway.landing import LandingError, landing_root
from usage_jobs.defs.gateway.layout import utc_day_span
from usage_jobs.defs.gateway.spend_api import land_spend_logs_day, marker_path, request_window
from usage_jobs.http_retry import gateway_client

ADMIN_KEY = "sk-admin-SPEND-7c1e9b2a44"
DAY = dt.date(2026, 11, 10)
KEY_A, KEY_B = "a1" * 32, "b2" * 32
LATER = dt.datetime(2026, 11, 20, tzinfo=dt.UTC)  # the day's span ended long before: it is complete


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def _traffic() -> list[dict]:
    """2,500 requests on DAY, plus requests on the days around it."""
    rows = day_of_traffic(DAY, {(KEY_A, "qwen35-35b-a3b-instruct"): 1500, (KEY_B, "bge-m3"): 1000})
    rows += day_of_traffic(DAY - dt.timedelta(days=1), {(KEY_A, "qwen35-35b-a3b-instruct"): 5}, prefix="before")
    rows += day_of_traffic(DAY + dt.timedelta(days=1), {(KEY_A, "qwen35-35b-a3b-instruct"): 7}, prefix="after")
    return rows


@pytest.fixture
def gateway():
    with FakeGateway(ADMIN_KEY, _traffic()) as server:
        yield server


def _pages(root, day=DAY) -> list[str]:
    return sorted(p.name for p in (root / day.isoformat()).iterdir())


def _client(url: str, key: str = ADMIN_KEY, **kwargs):
    sleeps = Sleeps()
    kwargs.setdefault("backoff_seconds", 0.01)
    return gateway_client(url, key, error=LandingError, sleep=sleeps, jitter=lambda: 0.5, **kwargs), sleeps


def test_every_page_of_the_day_is_landed_unchanged(gateway, tmp_path):
    stats = land_spend_logs_day(gateway.url, ADMIN_KEY, DAY, "UTC", tmp_path, now=LATER)
    root = landing_root(tmp_path, gateway.url)
    assert _pages(root) == [f"spend-logs-v2-page-0000{i}.json" for i in (1, 2, 3)]
    assert (stats.listed, stats.fetched, stats.already_landed, stats.retries) == (3, 3, 0, 0)
    calls = gateway.calls("/spend/logs/v2")
    assert [c["page"] for c in calls] == ["1", "2", "3"]
    assert {(c["start_date"], c["end_date"], c["page_size"], c["sort_by"], c["sort_order"]) for c in calls} == {
        ("2026-11-10 00:00:00", "2026-11-11 00:00:00", "1000", "startTime", "asc")}
    # Bodies exactly as the gateway sent them.
    for number, params in enumerate(calls, start=1):
        status, body = gateway.spend_logs_page(params)
        assert (root / "2026-11-10" / f"spend-logs-v2-page-{number:05d}.json").read_bytes() == json.dumps(body).encode()
    ids = [r["request_id"] for i in (1, 2, 3) for r in json.loads((root / "2026-11-10" / f"spend-logs-v2-page-0000{i}.json").read_text())["data"]]
    assert len(ids) == len(set(ids)) == 2500
    assert all(i.startswith("req-2026-11-10") for i in ids)
    assert json.loads(marker_path(root, DAY).read_text())["rows"] == 2500
    assert stats.bytes_fetched == sum((root / "2026-11-10" / name).stat().st_size for name in _pages(root))


def test_a_complete_day_is_not_fetched_again_unless_asked(gateway, tmp_path):
    land_spend_logs_day(gateway.url, ADMIN_KEY, DAY, "UTC", tmp_path, now=LATER)
    served = len(gateway.served)
    again = land_spend_logs_day(gateway.url, ADMIN_KEY, DAY, "UTC", tmp_path, now=LATER)
    assert len(gateway.served) == served
    assert (again.fetched, again.already_landed) == (0, 3)

    # The gateway now holds fewer rows (retention): a refetch replaces the pages, stale ones go.
    gateway.spend_logs = [r for r in gateway.spend_logs if r["api_key"] == KEY_B or not r["request_id"].startswith("req-")]
    refetched = land_spend_logs_day(gateway.url, ADMIN_KEY, DAY, "UTC", tmp_path, refetch=True, now=LATER)
    root = landing_root(tmp_path, gateway.url)
    assert refetched.fetched == 1 and _pages(root) == ["spend-logs-v2-page-00001.json"]
    assert len(json.loads((root / "2026-11-10" / "spend-logs-v2-page-00001.json").read_text())["data"]) == 1000
    assert json.loads(marker_path(root, DAY).read_text())["rows"] == 1000
    assert not [p for p in root.rglob("*") if p.name.startswith(".staging") or p.name.endswith(".tmp")]


def test_a_day_still_being_written_is_fetched_again_and_not_marked(gateway, tmp_path):
    soon = utc_day_span(DAY, "UTC")[1] + dt.timedelta(hours=2)
    land_spend_logs_day(gateway.url, ADMIN_KEY, DAY, "UTC", tmp_path, now=soon)
    root = landing_root(tmp_path, gateway.url)
    assert not marker_path(root, DAY).exists()
    assert land_spend_logs_day(gateway.url, ADMIN_KEY, DAY, "UTC", tmp_path, now=soon).fetched == 3


def test_the_span_edges_are_asked_inclusively_in_utc(tmp_path):
    start, end = utc_day_span(DAY, "Europe/Paris")
    assert request_window(DAY, "Europe/Paris") == ("2026-11-09 23:00:00", "2026-11-10 23:00:00")
    rows = [spend_log_row(name, when, api_key=KEY_A, model_group="m") for name, when in (
        ("before", start - dt.timedelta(milliseconds=1)), ("first", start), ("last", end - dt.timedelta(milliseconds=1)), ("edge", end))]
    with FakeGateway(ADMIN_KEY, rows) as server:
        land_spend_logs_day(server.url, ADMIN_KEY, DAY, "Europe/Paris", tmp_path, now=LATER)
        page = json.loads((landing_root(tmp_path, server.url) / "2026-11-10" / "spend-logs-v2-page-00001.json").read_text())
    # Nothing of the day is lost; the next day's first instant is in both days' pages (ingest keeps it once, in its own day).
    assert [r["request_id"] for r in page["data"]] == ["first", "last", "edge"]


def test_rows_written_while_paging_a_complete_day_make_it_read_again(gateway, tmp_path):
    """Offset paging shifts when a row lands mid-read (a late write): the pages no longer add up, so the day is read again."""
    late = spend_log_row("late-write", dt.datetime(2026, 11, 10, 0, 0, 1, tzinfo=dt.UTC), api_key=KEY_A, model_group="m")

    def write_late(path, query):
        if path == "/spend/logs/v2" and query["page"] == "1" and late not in gateway.spend_logs:
            gateway.spend_logs.append(late)

    gateway.after_answer = write_late
    said = []
    stats = land_spend_logs_day(gateway.url, ADMIN_KEY, DAY, "UTC", tmp_path, now=LATER, progress=said.append)
    assert any("did not add up" in line and "reading the day again" in line for line in said)
    assert (stats.listed, stats.fetched) == (3, 6)
    root = landing_root(tmp_path, gateway.url)
    ids = [r["request_id"] for n in _pages(root) for r in json.loads((root / "2026-11-10" / n).read_text())["data"]]
    assert len(ids) == len(set(ids)) == 2501 and "late-write" in ids
    assert json.loads(marker_path(root, DAY).read_text())["distinct_request_ids"] == 2501


def test_an_empty_day_lands_one_empty_page(tmp_path):
    with FakeGateway(ADMIN_KEY, []) as server:
        stats = land_spend_logs_day(server.url, ADMIN_KEY, DAY, "UTC", tmp_path, now=LATER)
        page = json.loads((landing_root(tmp_path, server.url) / "2026-11-10" / "spend-logs-v2-page-00001.json").read_text())
    assert stats.listed == 1 and page["data"] == [] and page["total"] == 0


def test_rate_limits_server_errors_and_cut_off_bodies_are_retried(gateway, tmp_path):
    gateway.faults = Faults(rate_limited_left=1, retry_after_seconds=3, server_error_left=2, cut_off_left=1, after_good_answers=1)
    client, sleeps = _client(gateway.url, backoff_seconds=1.0, max_retries=4)
    with client:
        stats = land_spend_logs_day(gateway.url, ADMIN_KEY, DAY, "UTC", tmp_path, client=client, now=LATER)
    assert stats.listed == 3 and stats.retries == 4
    assert client.calls.retries[:3] == ["rate limited (HTTP 429)", "server error (HTTP 500)", "server error (HTTP 500)"]
    assert client.calls.retries[3].startswith("a body that is not JSON")
    assert sleeps == [3.0, 1.5, 3.0, 6.0]  # Retry-After honoured, then 1 s × 2^attempt with jitter at its middle
    assert [s for _, _, s in gateway.served] == [200, 429, 500, 500, 200, 200, 200]  # the cut-off body came with a 200
    root = landing_root(tmp_path, gateway.url)
    assert sum(len(json.loads((root / "2026-11-10" / n).read_text())["data"]) for n in _pages(root)) == 2500


def test_server_errors_beyond_the_budget_fail_and_keep_the_earlier_landing(gateway, tmp_path):
    land_spend_logs_day(gateway.url, ADMIN_KEY, DAY, "UTC", tmp_path, now=LATER)
    root = landing_root(tmp_path, gateway.url)
    before = {n: (root / "2026-11-10" / n).read_bytes() for n in _pages(root)}
    gateway.faults = Faults(server_error_left=100, after_good_answers=1)
    client, _ = _client(gateway.url, max_retries=2)
    with pytest.raises(LandingError, match=r"GET http://127\.0\.0\.1:\d+/spend/logs/v2 failed after 3 attempts; last: server error \(HTTP 500\)"):
        land_spend_logs_day(gateway.url, ADMIN_KEY, DAY, "UTC", tmp_path, refetch=True, client=client, now=LATER)
    assert {n: (root / "2026-11-10" / n).read_bytes() for n in _pages(root)} == before
    assert not [p for p in root.iterdir() if p.name.startswith(".staging")]


def test_a_wrong_admin_key_fails_at_once_naming_the_setting_not_the_key(gateway, tmp_path):
    client, sleeps = _client(gateway.url, key="sk-wrong-SECRET-0001")
    with pytest.raises(LandingError, match="HTTP 401: GATEWAY_ADMIN_KEY is wrong") as failure:
        land_spend_logs_day(gateway.url, "sk-wrong-SECRET-0001", DAY, "UTC", tmp_path, client=client, now=LATER)
    assert "sk-wrong-SECRET-0001" not in str(failure.value) and sleeps == [] and client.calls.attempts == 1
    with pytest.raises(LandingError, match="GATEWAY_ADMIN_KEY is not set"):
        land_spend_logs_day(gateway.url, None, DAY, "UTC", tmp_path)


def test_the_key_never_appears_in_a_message_even_when_the_server_echoes_it(tmp_path):
    echoing = httpx.MockTransport(lambda request: httpx.Response(400, json={"error": {"message": f"bad {request.headers['Authorization']}"}}))
    client, _ = _client("https://gateway.invalid", transport=echoing)
    with pytest.raises(LandingError) as failure:
        land_spend_logs_day("https://gateway.invalid", ADMIN_KEY, DAY, "UTC", tmp_path, client=client, now=LATER)
    assert ADMIN_KEY not in str(failure.value) and "***" in str(failure.value)
    garbage = httpx.MockTransport(lambda request: httpx.Response(200, json={"keys": [ADMIN_KEY]}))
    client, _ = _client("https://gateway.invalid", transport=garbage)
    with pytest.raises(LandingError, match="expected {data: \\[...\\], total") as failure:
        land_spend_logs_day("https://gateway.invalid", ADMIN_KEY, DAY, "UTC", tmp_path, client=client, now=LATER)
    assert ADMIN_KEY not in str(failure.value)


def test_an_older_gateway_that_caps_page_size_at_100_is_paged_by_100(tmp_path):
    with FakeGateway(ADMIN_KEY, _traffic(), spend_logs_max_page_size=100) as server:
        stats = land_spend_logs_day(server.url, ADMIN_KEY, DAY, "UTC", tmp_path, now=LATER)
        assert [s for _, _, s in server.served][:2] == [422, 200]
    assert stats.listed == 25


def test_past_the_10000_count_cap_pages_are_read_until_a_short_one(tmp_path):
    rows = day_of_traffic(DAY, {(KEY_A, "m"): 10_250}, hour=0)
    with FakeGateway(ADMIN_KEY, rows) as server:
        stats = land_spend_logs_day(server.url, ADMIN_KEY, DAY, "UTC", tmp_path, now=LATER)
        first = json.loads((landing_root(tmp_path, server.url) / "2026-11-10" / "spend-logs-v2-page-00001.json").read_text())
    assert (first["total"], first["total_pages"], first["total_is_capped"]) == (10_000, 10, True)
    assert stats.listed == 11
