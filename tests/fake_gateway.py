"""A fake LiteLLM gateway on 127.0.0.1 (a real HTTP server in a thread) for the tests.

It serves, in LiteLLM's own response shapes (litellm/proxy, release 1.110):
* `GET /spend/logs/v2` (`spend_management_endpoints.ui_view_spend_logs`): `start_date` /
  `end_date` required, UTC, `YYYY-MM-DD HH:MM:SS` or `YYYY-MM-DD`; rows with
  `startTime >= start AND startTime <= end`; `page` ≥ 1, `page_size` 1…1000 (FastAPI's 422
  past it); `sort_by=startTime`, `sort_order` asc|desc (default desc); the page
  `{data, total, page, page_size, total_pages, total_is_capped}` with `total` capped at
  10,000; rows hold the LiteLLM_SpendLogs list columns (no messages / response).
* `GET /user/daily/activity` and `/team/daily/activity` (`common_daily_activity.get_daily_activity`):
  the daily table rows (UTC date of startTime × user or team × api_key × model × provider ×
  endpoint) paged by (date desc, id asc), each page aggregated into
  `SpendAnalyticsPaginatedResponse` `{results: [{date, metrics, breakdown}], metadata}`.
  The daily table is built from *all* the gateway's requests, including those deleted
  from its spend logs (`missing_from_logs`), as happens when logs are lost.
Only the admin key is let in (LiteLLM's 401 body otherwise). Faults can be injected for
the retry tests: 429 with Retry-After, 500, a cut-off body. Served by pytest-httpserver.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from helpers import local_http_server

SPEND_LOGS_COUNT_CAP = 10_000
METRIC_FIELDS = (
    "spend", "flat_cost", "ptu_hours", "prompt_tokens", "completion_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
    "compression_saved_tokens", "compression_savings_spend", "prompt_caching_savings_spend", "gateway_injected_caching_savings_spend",
    "autorouter_savings_spend", "total_tokens", "successful_requests", "failed_requests", "api_requests", "total_response_time_ms",
    "timed_requests",
)
FLOAT_METRICS = {"spend", "flat_cost", "ptu_hours", "compression_savings_spend", "prompt_caching_savings_spend",
                 "gateway_injected_caching_savings_spend", "autorouter_savings_spend"}
ENDPOINTS = {"acompletion": "/chat/completions", "completion": "/chat/completions", "aembedding": "/embeddings", "embedding": "/embeddings"}


def spend_log_row(request_id: str, start: dt.datetime, *, api_key: str, model_group: str | None, model: str | None = None,
                  provider: str | None = "hosted_vllm", prompt_tokens: int = 100, completion_tokens: int = 20, spend: float = 0.001,
                  status: str = "success", user: str | None = None, team_id: str | None = "team-1", key_alias: str | None = None,
                  team_alias: str | None = None, call_type: str = "acompletion", duration_ms: int = 800) -> dict:
    """One LiteLLM_SpendLogs row as the gateway stores it (startTime a UTC datetime, to the millisecond)."""
    start = start.astimezone(dt.UTC).replace(microsecond=start.microsecond // 1000 * 1000)
    end = start + dt.timedelta(milliseconds=duration_ms)
    deployment = model if model is not None else (f"{provider}/{model_group}" if model_group else "")
    metadata = {
        "user_api_key": api_key, "user_api_key_alias": key_alias, "user_api_key_team_id": team_id, "user_api_key_team_alias": team_alias,
        "user_api_key_user_id": user, "user_api_key_org_id": None, "spend_logs_metadata": None, "requester_ip_address": None,
        "status": status, "usage_object": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                           "total_tokens": prompt_tokens + completion_tokens},
        "error_information": {"error_class": "RateLimitError", "error_code": "429"} if status == "failure" else None,
    }
    return {
        "request_id": request_id, "call_type": call_type, "api_key": api_key, "spend": spend,
        "total_tokens": prompt_tokens + completion_tokens, "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
        "startTime": start, "endTime": end, "completionStartTime": end, "model": deployment, "model_id": "deployment-1",
        "model_group": model_group or "", "custom_llm_provider": provider, "api_base": "http://vllm:8000/v1", "user": user or "",
        "metadata": metadata, "cache_hit": "False", "cache_key": "Cache OFF", "request_tags": [], "team_id": team_id,
        "organization_id": None, "end_user": "", "requester_ip_address": "", "session_id": None, "status": status,
        "mcp_namespaced_tool_name": None, "agent_id": None, "litellm_call_id": request_id, "request_duration_ms": duration_ms,
    }


def _as_json(row: dict) -> dict:
    """A row as FastAPI serialises it (datetimes in ISO format with their offset)."""
    return {k: (v.isoformat() if isinstance(v, dt.datetime) else v) for k, v in row.items()}


@dataclass
class Faults:
    rate_limited_left: int = 0
    retry_after_seconds: float = 3.0
    server_error_left: int = 0
    cut_off_left: int = 0
    # Leaves the N-th … answers of /spend/logs/v2 alone: faults start after this many good answers.
    after_good_answers: int = 0


@dataclass
class FakeGateway:
    admin_key: str
    spend_logs: list[dict] = field(default_factory=list)
    # Request ids the daily totals count but /spend/logs/v2 no longer returns.
    missing_from_logs: set[str] = field(default_factory=set)
    # "current" (model_groups with api_key_breakdown), "models" (no model_groups), "no_cross" (no api_key_breakdown).
    breakdown: str = "current"
    has_user_activity: bool = True
    spend_logs_max_page_size: int = 1000
    faults: Faults = field(default_factory=Faults)
    # Called with (path, query) after each good answer: lets a test change the data between pages.
    after_answer: Callable[[str, dict], None] | None = None

    def __post_init__(self):
        self.served: list[tuple[str, dict, int]] = []
        self._good_answers = 0
        self._lock = threading.Lock()
        self._serving = contextlib.ExitStack()
        self._server: HTTPServer | None = None

    # -- lifecycle --------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._server is not None
        return self._server.url_for("").rstrip("/")

    def start(self) -> FakeGateway:
        self._server = self._serving.enter_context(local_http_server())
        self._server.expect_request("").respond_with_handler(self.respond)  # "" matches every path: the routing is below
        return self

    def stop(self) -> None:
        self._serving.close()
        self._server = None

    def __enter__(self) -> FakeGateway:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def respond(self, request: Request) -> Response:
        query = dict(request.args)  # the last value of a repeated parameter, as FastAPI reads it
        status, body, headers = self._answer(request, query)
        with self._lock:
            self.served.append((request.path, query, status))
        data = json.dumps(body).encode()
        if headers.pop("cut-off", None):
            data = data[: len(data) // 2]
        return Response(data, status=status, headers=headers, content_type="application/json")

    def _answer(self, request: Request, query: dict) -> tuple[int, dict, dict]:
        if request.headers.get("Authorization") != f"Bearer {self.admin_key}":
            return 401, _proxy_error("Authentication Error, Invalid proxy server token passed. valid_token=None.", "auth_error", 401), {}
        faults, cut = self.faults, False
        with self._lock:
            if self._good_answers >= faults.after_good_answers:
                if faults.rate_limited_left:
                    faults.rate_limited_left -= 1
                    return 429, _proxy_error("Rate limit exceeded", "throttling_error", 429), {"Retry-After": str(faults.retry_after_seconds)}
                if faults.server_error_left:
                    faults.server_error_left -= 1
                    return 500, _proxy_error("Internal Server Error", "internal_error", 500), {}
                if faults.cut_off_left:
                    faults.cut_off_left -= 1
                    cut = True
        if request.path == "/spend/logs/v2":
            status, body = self.spend_logs_page(query)
        elif request.path == "/user/daily/activity" and self.has_user_activity:
            status, body = self.daily_activity(query, "user_id")
        elif request.path == "/team/daily/activity":
            status, body = self.daily_activity(query, "team_id")
        else:
            return 404, {"detail": "Not Found"}, {}
        if status == 200:
            with self._lock:
                self._good_answers += 1
            if self.after_answer is not None:
                self.after_answer(request.path, query)
        return status, body, {"cut-off": "1"} if cut and status == 200 else {}

    def calls(self, path: str) -> list[dict]:
        return [params for p, params, _ in self.served if p == path]

    # -- /spend/logs/v2 ---------------------------------------------------------------
    def spend_logs_page(self, query: dict[str, str]) -> tuple[int, dict]:
        if "start_date" not in query or "end_date" not in query:
            return 400, _proxy_error("Start date and end date are required", "bad_request", 400)
        try:
            start, end = _parse_v2_date(query["start_date"]), _parse_v2_date(query["end_date"])
        except ValueError as exc:
            return 400, _proxy_error(str(exc), "bad_request", 400)
        page, page_size = int(query.get("page", 1)), int(query.get("page_size", 50))
        if page < 1:
            return 422, _validation_error("page", "greater_than_equal", "Input should be greater than or equal to 1", query["page"], {"ge": 1})
        if not 1 <= page_size <= self.spend_logs_max_page_size:
            return 422, _validation_error("page_size", "less_than_equal", f"Input should be less than or equal to {self.spend_logs_max_page_size}",
                                          query["page_size"], {"le": self.spend_logs_max_page_size})
        if query.get("sort_by", "startTime") != "startTime":
            return 400, _proxy_error(f"Invalid sort_by: {query['sort_by']}", "bad_request", 400)
        descending = query.get("sort_order", "desc").lower() != "asc"
        rows = [r for r in self.spend_logs if r["request_id"] not in self.missing_from_logs and start <= r["startTime"] <= end]
        rows.sort(key=lambda r: r["startTime"], reverse=descending)
        total = min(len(rows), SPEND_LOGS_COUNT_CAP)
        chosen = rows[(page - 1) * page_size: page * page_size]
        return 200, {"data": [_as_json(r) for r in chosen], "total": total, "page": page, "page_size": page_size,
                     "total_pages": (total + page_size - 1) // page_size, "total_is_capped": len(rows) > SPEND_LOGS_COUNT_CAP}

    # -- /user/daily/activity, /team/daily/activity ---------------------------------------
    def daily_rows(self, entity_field: str) -> list[dict]:
        """The LiteLLM_DailyUserSpend (or team) table, as the proxy's spend writer fills it."""
        table: dict[tuple, dict] = {}
        for r in self.spend_logs:
            entity = r["user"] or None if entity_field == "user_id" else r["team_id"]
            if entity_field == "team_id" and not entity:
                continue  # team totals only count keys that belong to a team
            day = r["startTime"].astimezone(dt.UTC).isoformat().split("T")[0]
            key = (entity, day, r["api_key"], r["model"], r["custom_llm_provider"], ENDPOINTS.get(r["call_type"]))
            row = table.get(key)
            if row is None:
                row = table[key] = {
                    "id": str(uuid.uuid5(uuid.NAMESPACE_URL, repr(key))), entity_field: entity, "date": day, "api_key": r["api_key"],
                    "model": r["model"], "model_group": r["model_group"] or None, "custom_llm_provider": r["custom_llm_provider"],
                    "endpoint": ENDPOINTS.get(r["call_type"]), "key_alias": r["metadata"].get("user_api_key_alias"),
                    **{name: 0 for name in ("prompt_tokens", "completion_tokens", "spend", "api_requests", "successful_requests",
                                            "failed_requests", "cache_read_input_tokens", "cache_creation_input_tokens")},
                }
            row["prompt_tokens"] += r["prompt_tokens"]
            row["completion_tokens"] += r["completion_tokens"]
            row["spend"] += r["spend"]
            row["api_requests"] += 1
            row["successful_requests" if r["metadata"]["status"] != "failure" else "failed_requests"] += 1
        return list(table.values())

    def daily_activity(self, query: dict[str, str], entity_field: str) -> tuple[int, dict]:
        start, end = query.get("start_date"), query.get("end_date")
        if not start or not end:
            return 400, {"detail": {"error": "Please provide start_date and end_date"}}
        try:
            if dt.date.fromisoformat(start).isoformat() != start or dt.date.fromisoformat(end).isoformat() != end:
                raise ValueError
        except ValueError:
            return 400, {"detail": {"error": "start_date and end_date must be valid YYYY-MM-DD dates"}}
        page, page_size = int(query.get("page", 1)), int(query.get("page_size", 50 if entity_field == "user_id" else 10))
        if entity_field == "user_id" and not 1 <= page_size <= 1000:
            return 422, _validation_error("page_size", "less_than_equal", "Input should be less than or equal to 1000", query["page_size"], {"le": 1000})
        rows = [r for r in self.daily_rows(entity_field) if start <= r["date"] <= end]
        rows.sort(key=lambda r: r["id"])
        rows.sort(key=lambda r: r["date"], reverse=True)
        chosen = rows[(page - 1) * page_size: page * page_size]
        results, totals = self._aggregate(chosen, entity_field)
        return 200, {
            "results": results,
            "metadata": {**{f"total_{name}": totals[name] for name in METRIC_FIELDS if name != "total_tokens"},
                         "total_tokens": totals["total_tokens"], "page": page, "total_pages": -(-len(rows) // page_size),
                         "has_more": page * page_size < len(rows), "api_key_limit": None, "total_api_keys": None,
                         "entity_total_api_keys": None},
        }

    def _aggregate(self, rows: list[dict], entity_field: str) -> tuple[list[dict], dict]:
        by_date: dict[str, dict] = {}
        totals = _metrics()
        for r in rows:
            day = by_date.setdefault(r["date"], {"date": r["date"], "metrics": _metrics(), "breakdown": {
                "mcp_servers": {}, "models": {}, "model_groups": {}, "providers": {}, "endpoints": {}, "api_keys": {}, "entities": {},
                "guardrails": {}}})
            key = r["api_key"] or "unattributed"
            key_meta = {"key_alias": r["key_alias"], "team_id": None, "user_id": None, "user_email": None, "key_exists": True} if r["api_key"] \
                else {"key_alias": "Unattributed", "team_id": None, "user_id": None, "user_email": None, "key_exists": False}
            _add(day["metrics"], r)
            _add(totals, r)
            b = day["breakdown"]
            for name, bucket in (("models", r["model"] or "unknown-model"),
                                 ("model_groups", r["model_group"] or r["model"] or "unknown-model-group"),
                                 ("providers", r["custom_llm_provider"] or "unknown"), ("endpoints", r["endpoint"]),
                                 ("entities", r[entity_field] or "Unassigned")):
                if bucket is None:
                    continue
                entry = b[name].setdefault(bucket, {"metrics": _metrics(), "metadata": {}, "api_key_breakdown": {}})
                _add(entry["metrics"], r)
                per_key = entry["api_key_breakdown"].setdefault(key, {"metrics": _metrics(), "metadata": key_meta})
                _add(per_key["metrics"], r)
            _add(b["api_keys"].setdefault(key, {"metrics": _metrics(), "metadata": key_meta})["metrics"], r)
        results = sorted(by_date.values(), key=lambda d: d["date"], reverse=True)
        for day in results:
            if self.breakdown != "current":
                del day["breakdown"]["model_groups"]
            if self.breakdown == "no_cross":
                for name in ("models", "providers", "endpoints", "entities"):
                    for entry in day["breakdown"][name].values():
                        entry["api_key_breakdown"] = {}
        return results, totals


def _metrics() -> dict:
    return {name: (0.0 if name in FLOAT_METRICS else 0) for name in METRIC_FIELDS}


def _add(metrics: dict, row: dict) -> None:
    metrics["spend"] += row["spend"]
    metrics["prompt_tokens"] += row["prompt_tokens"]
    metrics["completion_tokens"] += row["completion_tokens"]
    metrics["total_tokens"] += row["prompt_tokens"] + row["completion_tokens"]
    for name in ("api_requests", "successful_requests", "failed_requests", "cache_read_input_tokens", "cache_creation_input_tokens"):
        metrics[name] += row[name]


def _parse_v2_date(value: str) -> dt.datetime:
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(value.strip(), fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    raise ValueError(f"Invalid date format: {value}. Expected: 'YYYY-MM-DD' or 'YYYY-MM-DD HH:MM:SS'")


def _proxy_error(message: str, kind: str, code: int) -> dict:
    """LiteLLM's ProxyException body."""
    return {"error": {"message": message, "type": kind, "param": "None", "code": str(code)}}


def _validation_error(name: str, kind: str, message: str, value: str, ctx: dict) -> dict:
    """FastAPI's 422 body for a query parameter out of range."""
    return {"detail": [{"type": kind, "loc": ["query", name], "msg": message, "input": value, "ctx": ctx}]}


def day_of_traffic(day: dt.date, per_key_model: dict[tuple[str, str], int], *, prefix: str = "req", hour: int = 9,
                   aliases: dict[str, str] | None = None, users: dict[str, str] | None = None) -> list[dict]:
    """Spend-log rows for one UTC day: `per_key_model[(key_hash, model_group)] = requests`, spread over the day."""
    rows = []
    counter: defaultdict[str, int] = defaultdict(int)
    for (key, model), count in sorted(per_key_model.items()):
        for i in range(count):
            counter[key] += 1
            start = dt.datetime.combine(day, dt.time(hour), dt.UTC) + dt.timedelta(seconds=7 * len(rows), milliseconds=i % 1000)
            failed = i % 50 == 49
            rows.append(spend_log_row(f"{prefix}-{day.isoformat()}-{key[:6]}-{model}-{i:05d}", start, api_key=key, model_group=model,
                                      prompt_tokens=0 if failed else 100 + i % 7, completion_tokens=0 if failed else 20 + i % 3,
                                      spend=0.0 if failed else round(0.0001 * (1 + i % 5), 6), status="failure" if failed else "success",
                                      key_alias=(aliases or {}).get(key), user=(users or {}).get(key)))
    return rows
