"""The IG1 model catalogue the demo organisation uses (Qwen 3.5 family first).

`list_usd` are the gateway's list prices (USD per 1M tokens: input, output, cached
input); None means the gateway has no price for the model. `ig1_eur` is what IG1
bills under the demo contract (EUR per 1M tokens: input, output, cached input), for
every model. `tokenizer` names the official tokenizer family IG1 counts with
(`usage_jobs.demo.vocab`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CatalogueModel:
    name: str
    kind: str  # chat | embedding | rerank
    tokenizer: str  # qwen35 | qwen3 | llama3 | mistral | xlmr
    popularity: float
    list_usd: tuple[float, float, float] | None
    ig1_eur: tuple[float, float, float]


CATALOGUE: tuple[CatalogueModel, ...] = (
    CatalogueModel("qwen35-397b-a17b-instruct-general", "chat", "qwen35", 30, (0.60, 3.60, 0.15), (0.52, 3.10, 0.13)),
    CatalogueModel("qwen35-122b-a10b-instruct", "chat", "qwen35", 18, (0.40, 2.40, 0.10), (0.35, 2.05, 0.09)),
    CatalogueModel("qwen35-35b-a3b-instruct", "chat", "qwen35", 16, (0.15, 0.90, 0.04), (0.13, 0.78, 0.035)),
    CatalogueModel("qwen3-coder-30b-a3b-instruct", "chat", "qwen3", 10, (0.20, 0.80, 0.05), (0.17, 0.70, 0.045)),
    CatalogueModel("llama-3.3-70b-instruct", "chat", "llama3", 6, (0.50, 0.75, 0.25), (0.44, 0.66, 0.22)),
    CatalogueModel("mistral-small-3.2-24b-instruct", "chat", "mistral", 6, (0.10, 0.30, 0.05), (0.09, 0.26, 0.045)),
    CatalogueModel("bge-m3", "embedding", "xlmr", 9, (0.02, 0.0, 0.02), (0.018, 0.0, 0.018)),
    CatalogueModel("bge-reranker-v2-m3", "rerank", "xlmr", 3, (0.02, 0.0, 0.02), (0.018, 0.0, 0.018)),
    # New in the catalogue: the gateway has no price for it yet (reported as unpriced).
    CatalogueModel("qwen36-27b-instruct-preview", "chat", "qwen35", 2, None, (0.11, 0.66, 0.03)),
)

BY_NAME = {model.name: model for model in CATALOGUE}
