"""The IG1 model catalogue the demo organisation uses (Qwen 3.5 family first).

`list_usd` are the gateway's list prices (USD per 1M tokens: input, output, cached
input); None means the gateway has no price for the model. `tokenizer` names the
official tokenizer family, which decides how IG1's counts differ from cl100k.
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


CATALOGUE: tuple[CatalogueModel, ...] = (
    CatalogueModel("qwen35-397b-a17b-instruct-general", "chat", "qwen35", 30, (0.60, 3.60, 0.15)),
    CatalogueModel("qwen35-122b-a10b-instruct", "chat", "qwen35", 18, (0.40, 2.40, 0.10)),
    CatalogueModel("qwen35-35b-a3b-instruct", "chat", "qwen35", 16, (0.15, 0.90, 0.04)),
    CatalogueModel("qwen3-coder-30b-a3b-instruct", "chat", "qwen3", 10, (0.20, 0.80, 0.05)),
    CatalogueModel("llama-3.3-70b-instruct", "chat", "llama3", 6, (0.50, 0.75, 0.25)),
    CatalogueModel("mistral-small-3.2-24b-instruct", "chat", "mistral", 6, (0.10, 0.30, 0.05)),
    CatalogueModel("bge-m3", "embedding", "xlmr", 9, (0.02, 0.0, 0.02)),
    CatalogueModel("bge-reranker-v2-m3", "rerank", "xlmr", 3, (0.02, 0.0, 0.02)),
    # New in the catalogue: the gateway has no price for it yet (reported as unpriced).
    CatalogueModel("qwen36-27b-instruct-preview", "chat", "qwen35", 2, None),
)

BY_NAME = {model.name: model for model in CATALOGUE}
