import os
import subprocess
import sys


def test_cl100k_loads_offline_without_a_writable_cache(tmp_path):
    # A fresh interpreter with no network proxy and an unwritable, empty cache directory.
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o500)
    code = "from usage_jobs.defs.gateway.tokens import cl100k; print(cl100k().encode('Hello world'))"
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache), "HTTPS_PROXY": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
    output = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert output.strip() == "[9906, 1917]"
    assert not any(cache.iterdir())


def test_estimate_counts_chat_messages_and_response_shapes():
    from usage_jobs.defs.gateway.tokens import estimate_tokens

    assert estimate_tokens('[{"role": "user", "content": "Hello world"}]', '{"choices": [{"message": {"content": "Hello world"}}]}') == (2 + 3 + 3, 2)
    # SpendLogs carry them as JSON strings; embeddings log a list of inputs.
    assert estimate_tokens('"[{\\"role\\": \\"user\\", \\"content\\": [{\\"type\\": \\"text\\", \\"text\\": \\"Hello world\\"}]}]"', '"{}"') == (8, 0)
    assert estimate_tokens('["Hello world", "Hello world"]', None) == (4, 0)
