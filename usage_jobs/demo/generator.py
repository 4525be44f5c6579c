"""A realistic demo organisation: gateway logs in LiteLLM's layouts and the key/team inventory.

Deterministic for a seed: the same seed, days and volume give the same bytes.

Layout under `<out>/logs/` (what LiteLLM's loggers write):
* `<team_alias>/<key_alias>/YYYY-MM-DD/time-HH-MM-SS-ffffff_<id>.json`  S3, one request per file, with team/key prefixes
* `gcs/YYYY-MM-DD/batch-<epoch_ms>-<hex>.ndjson[.gz]`                  GCS batches
* `azure/YYYY-MM-DD/<id>.json`                                          Azure blob, one request per file
* `spendlogs/YYYY-MM-DD/spendlogs-<date>.jsonl.gz`                      LiteLLM_SpendLogs export rows
* `audit_logs/YYYY-MM-DD/…`                                             not request data
A folder is the day the file was written (UTC), so late requests land in the next day.
Beside the logs: `inventory.json` (the /key/list and /team/list responses),
`anomalies.json` (the ground truth of the abnormal days injected per key), and
`billing/`: IG1's billed usage of the same traffic (`ledger.json`, served by the
emulator) and a dated EUR→USD rates file.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import math
import random
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from usage_jobs.demo.catalogue import BY_NAME, CATALOGUE, CatalogueModel
from usage_jobs.demo.ig1 import BilledRequest, Ledger, LoggedText, bill_request, write_ledger, write_usd_rates

TEAM_NAMES = (
    "Customer Support", "Data Science", "Legal", "Marketing", "Platform", "Finance",
    "Search & RAG", "Mobile App", "People Ops", "Sales Ops", "Security", "Translation",
)
WORKLOADS = ("chat-en", "chat-fr", "code", "json-extract", "rag", "embed")
SINKS = ("s3", "gcs", "azure", "spendlogs")
ERRORS = (
    ("RateLimitError", "litellm.RateLimitError: Rate limit reached for model"),
    ("Timeout", "litellm.Timeout: Request timed out after 600 seconds"),
    ("BadRequestError", "litellm.BadRequestError: context length exceeded"),
    ("InternalServerError", "litellm.InternalServerError: upstream returned 502"),
)
# LiteLLM tags each request with its client's User-Agent, whole and as product name: every request carries both.
USER_AGENT_TAGS = ("User-Agent: OpenAI", "User-Agent: OpenAI/Python 1.99.9")
CUSTOMER_WORKLOADS = ("chat-en", "chat-fr")  # assistants whose callers pass their customer as `user` (LiteLLM's end user)
HOUR_WEIGHTS = (1, 1, 1, 1, 1, 2, 4, 8, 14, 18, 18, 16, 10, 13, 17, 17, 14, 10, 6, 4, 3, 2, 2, 1)
WORDS_EN = "the report shows how each team uses the models and what it costs per request while finance needs the monthly totals".split()
WORDS_FR = "le rapport montre comment chaque équipe utilise les modèles et ce que cela coûte pour chaque requête alors que la finance veut les totaux".split()
CODE_LINES = ("def total(rows):", "    return sum(r.cost for r in rows)", "for key, value in items.items():", "    print(f'{key}: {value:.2f}')",
              "if response.status_code == 429:", "    time.sleep(backoff * 2 ** attempt)")


@dataclass
class DemoKey:
    token_hash: str
    alias: str
    team_id: str | None
    team_alias: str | None
    user_id: str
    created: dt.date
    expires: dt.date | None
    blocked: bool
    never_used: bool
    workload: str
    models: list[str]
    rate: float  # mean requests per weekday
    sink: str
    max_budget: float | None
    used_after_expiry: bool = False


@dataclass
class Anomaly:
    key_hash: str
    key_alias: str
    day: dt.date
    kind: str  # volume_spike | failure_burst | new_model | new_key_spike
    detail: str


@dataclass
class DemoOrganisation:
    teams: list[dict]
    keys: list[DemoKey]
    anomalies: list[Anomaly] = field(default_factory=list)


def default_days(today: dt.date) -> int:
    """Days from the first of last month to yesterday, so two calendar months appear."""
    first_of_last_month = (today.replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    return (today - first_of_last_month).days


def _hex(rng: random.Random, n: int) -> str:
    return f"{rng.getrandbits(4 * n):0{n}x}"


def team_names(count: int) -> list[str]:
    """The demo's twelve team names, then numbered copies of them for a larger organisation."""
    return [TEAM_NAMES[i % len(TEAM_NAMES)] + (f" {i // len(TEAM_NAMES) + 1}" if i >= len(TEAM_NAMES) else "") for i in range(count)]


def build_organisation(seed: int, first_day: dt.date, last_day: dt.date, requests_per_day: int, *,
                       n_keys: int = 60, n_teams: int = len(TEAM_NAMES)) -> DemoOrganisation:
    """The teams and keys; `n_keys` and `n_teams` scale the organisation (the defaults are the demo's)."""
    rng = random.Random(f"org-{seed}")
    teams = []
    for name in team_names(n_teams):
        teams.append({
            "team_id": str(uuid.UUID(int=rng.getrandbits(128))),
            "team_alias": name,
            "max_budget": rng.choice([None, 500.0, 1000.0, 2500.0]),
            "budget_duration": "30d",
            "models": [],
            "blocked": False,
            "created_at": (first_day - dt.timedelta(days=rng.randint(60, 400))).isoformat() + "T09:00:00Z",
        })
    keys: list[DemoKey] = []
    for i in range(n_keys):
        if i == n_keys - 1:
            team = None  # one key with no team
        else:
            team = teams[i % len(teams)]
        workload = WORKLOADS[rng.randrange(len(WORKLOADS))] if team is None or team["team_alias"] != "Translation" else "chat-fr"
        if team and team["team_alias"] == "Platform":
            workload = "code"
        token = "sk-" + _hex(rng, 32)
        span = (last_day - first_day).days
        created = first_day - dt.timedelta(days=rng.randint(10, 300))
        if i % 11 == 5 and span > 20:
            created = first_day + dt.timedelta(days=rng.randint(span // 2, span - 3))  # a new key during the period
        expires = None
        if i % 17 == 3:
            expires = first_day + dt.timedelta(days=max(1, span // 3))  # expired during the period
        keys.append(DemoKey(
            token_hash=hashlib.sha256(token.encode()).hexdigest(),
            alias=f"{(team['team_alias'] if team else 'shared').lower().replace(' & ', '-').replace(' ', '-')}-{workload}-{i:02d}",
            team_id=team["team_id"] if team else None,
            team_alias=team["team_alias"] if team else None,
            user_id=f"user-{rng.randint(1, 40):03d}@example.org",
            created=created,
            expires=expires,
            blocked=i == 23,
            never_used=i % 10 == 7,
            workload=workload,
            models=_models_for(workload, rng),
            rate=rng.lognormvariate(0, 0.9),
            sink=SINKS[i % len(SINKS)] if i % 7 else "s3",
            max_budget=rng.choice([None, None, 50.0, 200.0]),
            used_after_expiry=i == 3,
        ))
    # Scale rates so a weekday averages the requested volume.
    used = [k for k in keys if not k.never_used]
    total_rate = sum(k.rate for k in used)
    for key in used:
        key.rate *= requests_per_day / total_rate
    org = DemoOrganisation(teams=teams, keys=keys)
    org.anomalies = _plan_anomalies(org, first_day, last_day, rng)
    return org


def _models_for(workload: str, rng: random.Random) -> list[str]:
    if workload == "embed":
        return ["bge-m3", "bge-reranker-v2-m3"]
    if workload == "code":
        return ["qwen3-coder-30b-a3b-instruct", "qwen35-397b-a17b-instruct-general"]
    chat = [m for m in CATALOGUE if m.kind == "chat" and m.list_usd is not None]
    picks = rng.sample(chat, k=3)
    models = [m.name for m in picks]
    if workload == "rag":
        models.append("bge-m3")
    if rng.random() < 0.25:
        models.append("qwen36-27b-instruct-preview")
    return models


def _plan_anomalies(org: DemoOrganisation, first_day: dt.date, last_day: dt.date, rng: random.Random) -> list[Anomaly]:
    """A few abnormal days per chosen key, late enough to have 28 days of history before them."""
    span = (last_day - first_day).days
    if span < 35:
        return []
    candidates = [k for k in org.keys if not k.never_used and k.created < first_day and not k.blocked and k.expires is None and k.rate > 3]
    rng.shuffle(candidates)
    anomalies = []
    kinds = ("volume_spike", "failure_burst", "new_model")
    for index, key in enumerate(candidates[:6]):
        day = first_day + dt.timedelta(days=rng.randint(30, span - 1))
        kind = kinds[index % len(kinds)]
        detail = {"volume_spike": "requests and spend x8", "failure_burst": "60% of requests fail",
                  "new_model": "first use of qwen35-397b-a17b-instruct-general, heavy"}[kind]
        if kind == "new_model" and "qwen35-397b-a17b-instruct-general" in key.models:
            kind, detail = "volume_spike", "requests and spend x8"
        anomalies.append(Anomaly(key.token_hash, key.alias, day, kind, detail))
    for key in org.keys:
        if first_day < key.created <= last_day and not key.never_used:
            anomalies.append(Anomaly(key.token_hash, key.alias, key.created, "new_key_spike", "first day of a new key, x6 volume"))
    return sorted(anomalies, key=lambda a: (a.day, a.key_alias))


# --- one request --------------------------------------------------------------------

def _text(workload: str, tokens: int, rng: random.Random) -> str:
    words = max(1, int(tokens * 0.75))
    if workload == "code":
        return "\n".join(rng.choices(CODE_LINES, k=max(1, words // 6)))
    if workload == "json-extract":
        items = [{"invoice": rng.randint(10000, 99999), "amount": round(rng.uniform(1, 5000), 2), "currency": "EUR"} for _ in range(max(1, words // 12))]
        return json.dumps(items, indent=2)
    vocabulary = WORDS_FR if workload == "chat-fr" else WORDS_EN
    return " ".join(rng.choices(vocabulary, k=words))


def _tokens(model: CatalogueModel, workload: str, rng: random.Random) -> tuple[int, int]:
    if model.kind == "embedding":
        return max(4, int(rng.lognormvariate(5.5, 0.7))), 0
    if model.kind == "rerank":
        return max(20, int(rng.lognormvariate(7.0, 0.5))), 0
    prompt = max(8, int(rng.lognormvariate(7.6 if workload in ("rag", "json-extract") else 7.0, 0.8)))
    completion = max(1, int(rng.lognormvariate(5.9, 0.7)))
    return prompt, completion


def _list_cost(model: CatalogueModel, prompt: int, completion: int, cached: int) -> float:
    assert model.list_usd is not None
    price_in, price_out, price_cached = model.list_usd
    return ((prompt - cached) * price_in + cached * price_cached + completion * price_out) / 1e6


def make_request(key: DemoKey, model_name: str, start: dt.datetime, rng: random.Random, *, fail: bool, string_times: bool) -> tuple[dict, BilledRequest | None]:
    """One StandardLoggingPayload as LiteLLM logs it (only plausible, not every field), and what IG1 bills for it."""
    model = BY_NAME[model_name]
    request_id = ("chatcmpl-" if model.kind == "chat" else model.kind + "-") + str(uuid.UUID(int=rng.getrandbits(128)))
    prompt, completion = _tokens(model, key.workload, rng)
    stream = model.kind == "chat" and rng.random() < 0.3
    latency = rng.uniform(0.2, 2.0) if model.kind != "chat" else rng.uniform(0.8, 25.0) + (completion / 60 if stream else 0)
    end = start + dt.timedelta(seconds=latency)
    cached = int(prompt * rng.uniform(0.3, 0.9)) if model.kind == "chat" and rng.random() < 0.15 else 0
    call_type = {"chat": "acompletion", "embedding": "aembedding", "rerank": "arerank"}[model.kind]
    # Drawn from the id, not the shared random stream: adding end users left every other generated value as it was.
    end_user = f"customer-{int(request_id[-6:], 16) % 37:02d}" if key.workload in CUSTOMER_WORKLOADS else ""
    record: dict = {
        "id": request_id,
        "trace_id": str(uuid.UUID(int=rng.getrandbits(128))),
        "call_type": call_type,
        "stream": stream,
        "status": "success",
        "startTime": _time(start, string_times),
        "endTime": _time(end, string_times),
        "completionStartTime": _time(start + dt.timedelta(seconds=min(latency, 0.4)), string_times),
        "response_time": round(latency, 6),
        "model": f"hosted_vllm/{model.name}",
        "model_id": _hex(rng, 16),
        "model_group": model.name,
        "custom_llm_provider": "openai",
        "api_base": "https://api.ig1.ai/v1",
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "response_cost": round(_list_cost(model, prompt, completion, cached), 10) if model.list_usd else 0.0,
        "cache_hit": False,
        "cache_key": None,
        "saved_cache_cost": 0.0,
        "request_tags": [f"workload:{key.workload}", "env:prod" if rng.random() < 0.8 else "env:dev", *USER_AGENT_TAGS],
        "end_user": end_user,
        "requester_ip_address": f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        "metadata": {
            "user_api_key_hash": key.token_hash,
            "user_api_key_alias": key.alias,
            "user_api_key_team_id": key.team_id,
            "user_api_key_team_alias": key.team_alias,
            "user_api_key_user_id": key.user_id,
            "user_api_key_org_id": None,
            "user_api_key_end_user_id": end_user or None,
            "spend_logs_metadata": None,
            "requester_ip_address": None,
            "requester_metadata": {},
            "usage_object": {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                             "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0},
        },
        "model_parameters": {"temperature": 0.7, "max_tokens": 2048} if model.kind == "chat" else {},
        "hidden_params": {"model_id": _hex(rng, 16), "cache_key": None, "api_base": "https://api.ig1.ai/v1",
                          "response_cost": None, "additional_headers": {"llm_provider-x-request-id": _hex(rng, 24)},
                          "litellm_overhead_time_ms": round(rng.uniform(1, 9), 3)},
        "model_map_information": {"model_map_key": model.name, "model_map_value": None},
        "error_str": None,
        "error_information": {"error_code": "", "error_class": "", "llm_provider": "", "traceback": "", "error_message": ""},
        "response": {},
        "messages": [],
        "guardrail_information": None,
    }
    if fail:
        error_class, message = ERRORS[rng.randrange(len(ERRORS))]
        record.update({
            "status": "failure", "prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "response_cost": 0.0,
            "error_str": message, "stream": False,
            "error_information": {"error_code": "429" if error_class == "RateLimitError" else "500", "error_class": error_class,
                                  "llm_provider": "openai", "traceback": "", "error_message": message},
        })
        record["metadata"]["usage_object"] = None
    elif stream and rng.random() < 0.35:
        # The upstream stream carried no usage: the gateway logged the text, not the counts.
        record.update({"prompt_tokens": None, "completion_tokens": None, "total_tokens": None, "response_cost": None})
        record["metadata"]["usage_object"] = None
        record["messages"] = [{"role": "system", "content": "You are a helpful assistant for the " + (key.team_alias or "shared") + " team."},
                              {"role": "user", "content": _text(key.workload, prompt, rng)}]
        record["response"] = {"id": request_id, "object": "chat.completion", "model": model.name,
                              "choices": [{"index": 0, "finish_reason": "stop",
                                           "message": {"role": "assistant", "content": _text(key.workload, completion, rng)}}]}
    elif model.list_usd and rng.random() < 0.02:
        record["response_cost"] = None  # the gateway's price map missed the model at that moment
    if fail:
        return record, None  # IG1 does not bill failed requests
    logged = None
    if record["messages"]:  # IG1 counts the very text the gateway logged
        logged = LoggedText(record["messages"][0]["content"], record["messages"][1]["content"],
                            record["response"]["choices"][0]["message"]["content"])
    return record, bill_request(model, key.workload, request_id, prompt=prompt, completion=completion, cached=cached, logged=logged)


def _time(moment: dt.datetime, as_string: bool) -> float | str:
    if as_string:
        return moment.strftime("%Y-%m-%d %H:%M:%S.%f")
    return round(moment.timestamp(), 6)


def to_spendlogs_row(record: dict) -> dict:
    """The same request as a row of LiteLLM's LiteLLM_SpendLogs table, exported to JSON."""
    metadata = dict(record["metadata"])
    return {
        "request_id": record["id"],
        "call_type": record["call_type"],
        "api_key": metadata.pop("user_api_key_hash"),
        "spend": record["response_cost"],
        "total_tokens": record["total_tokens"],
        "prompt_tokens": record["prompt_tokens"],
        "completion_tokens": record["completion_tokens"],
        "startTime": _iso(record["startTime"]),
        "endTime": _iso(record["endTime"]),
        "model": record["model"],
        "model_group": record["model_group"],
        "model_id": record.get("model_id"),
        "api_base": record["api_base"],
        "custom_llm_provider": record["custom_llm_provider"],
        "user": metadata.get("user_api_key_user_id"),
        "team_id": metadata.get("user_api_key_team_id"),
        "end_user": record.get("end_user", ""),
        "status": record["status"],
        "cache_hit": str(record["cache_hit"]),
        "request_tags": json.dumps(record["request_tags"]),
        "metadata": json.dumps({**metadata, "error_information": record["error_information"]} if record["status"] == "failure" else metadata),
        "messages": json.dumps(record["messages"]) if record["messages"] else "{}",
        "response": json.dumps(record["response"]) if record["response"] else "{}",
        "requester_ip_address": record["requester_ip_address"],
    }


def _iso(value: float | str) -> str:
    return _moment(value).isoformat()


# --- a day of traffic ---------------------------------------------------------------

def day_requests(org: DemoOrganisation, day: dt.date, seed: int) -> list[tuple[dict, BilledRequest | None]]:
    """Every request of one UTC day, in start order, with what IG1 bills for it."""
    rng = random.Random(f"day-{seed}-{day.isoformat()}")
    weekday_factor = 0.25 if day.weekday() >= 5 else 1.0
    anomalies = {(a.key_hash, a.kind): a for a in org.anomalies if a.day == day}
    records = []
    for key in org.keys:
        if key.never_used or key.created > day:
            continue
        if key.expires and day > key.expires and not key.used_after_expiry:
            continue
        rate = key.rate * weekday_factor
        models = list(key.models)
        failure_rate = 0.03
        extra_model = None
        if (key.token_hash, "volume_spike") in anomalies:
            rate *= 8
        if (key.token_hash, "new_key_spike") in anomalies:
            rate = max(rate, 1) * 6
        if (key.token_hash, "failure_burst") in anomalies:
            failure_rate = 0.6
            rate = max(rate, 10) * 1.5
        if (key.token_hash, "new_model") in anomalies:
            extra_model = "qwen35-397b-a17b-instruct-general"
        count = _poisson(rate, rng)
        weights = [BY_NAME[m].popularity for m in models]
        for _ in range(count):
            model = rng.choices(models, weights)[0]
            start = _start_time(day, rng)
            fail = rng.random() < failure_rate
            string_times = key.sink in ("gcs", "spendlogs") and rng.random() < 0.7
            records.append(make_request(key, model, start, rng, fail=fail, string_times=string_times))
        if extra_model:
            for _ in range(max(20, count)):
                records.append(make_request(key, extra_model, _start_time(day, rng), rng, fail=False, string_times=False))
    records.sort(key=lambda pair: (_moment(pair[0]["startTime"]), pair[0]["id"]))
    return records


def _poisson(mean: float, rng: random.Random) -> int:
    if mean <= 0:
        return 0
    if mean > 50:
        return max(0, int(round(rng.gauss(mean, math.sqrt(mean)))))
    threshold, count, product = math.exp(-mean), 0, rng.random()
    while product > threshold:
        count += 1
        product *= rng.random()
    return count


def _start_time(day: dt.date, rng: random.Random) -> dt.datetime:
    hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
    seconds = rng.uniform(0, 3600)
    return dt.datetime.combine(day, dt.time(hour), dt.UTC) + dt.timedelta(seconds=seconds)


def _moment(value: float | str) -> dt.datetime:
    if isinstance(value, str):
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=dt.UTC)
    return dt.datetime.fromtimestamp(value, dt.UTC)


# --- writing the files --------------------------------------------------------------

def _dump(record: dict) -> str:
    return json.dumps(record, ensure_ascii=False, separators=(", ", ": "))


def _safe(name: str) -> str:
    return name.replace("/", "_")


class LogWriter:
    """Writes requests where LiteLLM's loggers would, by the day each file is written."""

    def __init__(self, root: Path, rng: random.Random):
        self.root = root
        self.rng = rng
        self.batches: dict[tuple[str, dt.date], list[str]] = defaultdict(list)

    def write(self, key: DemoKey, record: dict) -> None:
        written = _moment(record["endTime"]) + dt.timedelta(seconds=self.rng.uniform(0.05, 2.0))
        folder_day = written.date().isoformat()
        if key.sink == "s3":
            team = _safe(key.team_alias or "no-team")
            folder = self.root / team / _safe(key.alias) / folder_day
            name = f"time-{written.strftime('%H-%M-%S-%f')}_{record['id']}.json"
            self._write_file(folder / name, _dump(record))
        elif key.sink == "azure":
            self._write_file(self.root / "azure" / folder_day / f"{record['id']}.json", _dump(record))
        elif key.sink == "gcs":
            self.batches[("gcs", written.date())].append(_dump(record))
        else:
            self.batches[("spendlogs", written.date())].append(_dump(to_spendlogs_row(record)))

    def _write_file(self, path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")

    def flush(self) -> None:
        for (sink, day), lines in sorted(self.batches.items()):
            folder = self.root / sink / day.isoformat()
            folder.mkdir(parents=True, exist_ok=True)
            if sink == "spendlogs":
                _write_gzip(folder / f"spendlogs-{day.isoformat()}.jsonl.gz", lines)
                continue
            epoch_ms = int(dt.datetime.combine(day, dt.time(), dt.UTC).timestamp() * 1000)
            for index in range(0, len(lines), 400):
                chunk = lines[index:index + 400]
                name = f"batch-{epoch_ms + index * 1000}-{_hex(self.rng, 8)}.ndjson"
                if (index // 400) % 2:
                    _write_gzip(folder / (name + ".gz"), chunk)
                else:
                    (folder / name).write_text("\n".join(chunk) + "\n", encoding="utf-8")
        self.batches.clear()


def _write_gzip(path: Path, lines: list[str]) -> None:
    # mtime=0 keeps the bytes identical from one generation to the next.
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as stream:
        stream.write(("\n".join(lines) + "\n").encode("utf-8"))


def inventory_document(org: DemoOrganisation, as_of: dt.date) -> dict:
    """The gateway's /key/list (return_full_object=true) and /team/list responses, side by side."""
    keys = []
    for key in org.keys:
        keys.append({
            "token": key.token_hash,
            "key_name": "sk-..." + key.token_hash[-4:],
            "key_alias": key.alias,
            "team_id": key.team_id,
            "user_id": key.user_id,
            "spend": 0.0,
            "max_budget": key.max_budget,
            "budget_duration": "30d" if key.max_budget else None,
            "models": key.models,
            "blocked": key.blocked or None,
            "expires": f"{key.expires.isoformat()}T00:00:00Z" if key.expires else None,
            "created_at": f"{key.created.isoformat()}T08:30:00Z",
            "metadata": {},
        })
    teams = [dict(team, models=sorted({m for k in org.keys if k.team_id == team["team_id"] for m in k.models})) for team in org.teams]
    return {
        "generated_for": as_of.isoformat(),
        "keys": {"keys": keys, "total_count": len(keys), "current_page": 1, "total_pages": 1},
        "teams": teams,
    }


def generate(out: Path, *, days: int, end: dt.date, seed: int = 7, requests_per_day: int = 1500, duplicate_share: float = 0.005, progress=None,
             keys: int = 60, teams: int = len(TEAM_NAMES), lean: bool = False) -> dict:
    """Write `days` days of logs ending on `end` (inclusive) plus inventory and ground truth under `out`.

    `keys` and `teams` size the organisation (bench/scale.py); `lean` logs less per request
    (`_lean`: no hidden params, short logged text), as the ingest benchmark's records. The
    defaults write the demo, byte for byte as before."""
    first_day = end - dt.timedelta(days=days - 1)
    org = build_organisation(seed, first_day, end, requests_per_day, n_keys=keys, n_teams=teams)
    by_hash = {k.token_hash: k for k in org.keys}
    logs = out / "logs"
    rng = random.Random(f"files-{seed}")
    writer = LogWriter(logs, rng)
    ledger = Ledger()
    total = duplicates = 0
    for index in range(days):
        day = first_day + dt.timedelta(days=index)
        records = day_requests(org, day, seed)
        for record, billed in records:
            if billed:
                ledger.add(_moment(record["startTime"]).date(), record["model_group"], billed)
            key = by_hash[record["metadata"]["user_api_key_hash"]]
            if lean:
                record = _lean(record)
            writer.write(key, record)
            if rng.random() < duplicate_share:
                writer.write(key, record)  # the logger delivered the same request twice
                duplicates += 1
        total += len(records)
        writer.flush()
        audit = logs / "audit_logs" / day.isoformat()
        audit.mkdir(parents=True, exist_ok=True)
        (audit / "audit-0001.json").write_text(json.dumps({"action": "key.update", "changed_by": "admin", "updated_at": day.isoformat()}))
        if progress:
            progress(index + 1, days, day, len(records))
    (out / "inventory.json").write_text(json.dumps(inventory_document(org, end), indent=2))
    truth = [{"key_hash": a.key_hash, "key_alias": a.key_alias, "day": a.day.isoformat(), "kind": a.kind, "detail": a.detail} for a in org.anomalies]
    (out / "anomalies.json").write_text(json.dumps({"method": "injected by the demo generator", "anomalies": truth}, indent=2))
    summary = {"first_day": first_day.isoformat(), "last_day": end.isoformat(), "requests": total, "duplicate_deliveries": duplicates,
               "teams": len(org.teams), "keys": len(org.keys), "anomalies": len(truth), "seed": seed}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    write_ledger(out / "billing" / "ledger.json", ledger, end)
    write_usd_rates(out / "billing" / "usd_per_eur.csv", first_day, end, seed)
    return summary


BENCHMARK_DROPPED_FIELDS = ("trace_id", "completionStartTime", "hidden_params", "model_map_information", "guardrail_information",
                            "model_parameters", "cache_key", "saved_cache_cost", "end_user", "model_id")


def _lean(record: dict) -> dict:
    """A gateway configured to log less (~0.9 KB per request): no hidden params, short logged text."""
    for name in BENCHMARK_DROPPED_FIELDS:
        record.pop(name, None)
    record["metadata"] = {name: value for name, value in record["metadata"].items() if value not in (None, {})}
    if not record["error_information"]["error_class"]:
        record.pop("error_information")
    for message in record["messages"]:
        message["content"] = message["content"][:160]
    for choice in record["response"].get("choices", []):
        choice["message"]["content"] = choice["message"]["content"][:160]
    return record


def write_benchmark_day(path: Path, *, day: dt.date, requests: int, seed: int = 11) -> int:
    """One day of `requests` records as a single NDJSON file (the ingest benchmark's input)."""
    org = build_organisation(seed, day - dt.timedelta(days=40), day, requests)
    keys = [k for k in org.keys if not k.never_used]
    rng = random.Random(f"bench-{seed}")
    weights = [k.rate for k in keys]
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with open(path, "w", encoding="utf-8") as stream:
        for _ in range(requests):
            key = rng.choices(keys, weights)[0]
            model = rng.choice(key.models)
            record, _ = make_request(key, model, _start_time(day, rng), rng, fail=rng.random() < 0.03, string_times=rng.random() < 0.5)
            stream.write(json.dumps(_lean(record), ensure_ascii=False, separators=(",", ":")))
            stream.write("\n")
            written += 1
    return written
