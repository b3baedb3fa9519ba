"""The real OpenAI-compatible server (llama-cpp-python serving SmolLM2-135M-Instruct) does what the
judge and rubric rewards rely on: chat completions with usage, JSON-schema-constrained output,
and top log-probs; and the ``openai`` backend drives it (responses, token accounting, cache hits).

A 135M model's answers are poor: these tests assert plumbing and structure, never content.
Generations are short (``max_tokens`` small) and the model loads once per session.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os

import pytest
from llama_server import MODEL_ALIAS, LlamaServer

pytestmark = pytest.mark.slow


def _require(module: str):
    """Import ``module``; skip locally if missing, fail under CI=true (.ci/run installs it)."""
    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but {module} is not installed (.ci/run installs it)")
        pytest.skip(f"{module} is not installed")
    return importlib.import_module(module)


QUESTION = ({"role": "user", "content": "Is aspirin an antiplatelet drug? Answer YES or NO."},)

#: the shape a batched rubric verdict takes: one verdict per criterion id
VERDICTS_SCHEMA = {
    "type": "object",
    "properties": {
        "verdicts": {
            "type": "array",
            "minItems": 2,
            "maxItems": 2,
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "enum": ["c1", "c2"]},
                    "met": {"type": "boolean"},
                },
                "required": ["id", "met"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["verdicts"],
    "additionalProperties": False,
}


def _chat(server: LlamaServer, **body) -> dict:
    httpx = _require("httpx")
    payload = {"model": server.model, "messages": list(QUESTION), "temperature": 0.0, "seed": 0, **body}
    reply = httpx.post(server.base_url + "/chat/completions", json=payload, timeout=120)
    assert reply.status_code == 200, f"HTTP {reply.status_code}: {reply.text[:500]}\n{server.log_tail()}"
    return reply.json()


def test_models_endpoint_names_the_served_model(llama_server: LlamaServer) -> None:
    httpx = _require("httpx")
    reply = httpx.get(llama_server.base_url + "/models", timeout=30)
    assert reply.status_code == 200
    assert [m["id"] for m in reply.json()["data"]] == [MODEL_ALIAS]


def test_chat_completion_answers_with_usage_and_is_deterministic(llama_server: LlamaServer) -> None:
    first = _chat(llama_server, max_tokens=8)
    choice = first["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert isinstance(choice["message"]["content"], str) and choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    usage = first["usage"]
    assert usage["prompt_tokens"] > 10  # the ChatML-wrapped question
    assert 1 <= usage["completion_tokens"] <= 8
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    # temperature 0 and a fixed seed: the same request gives the same answer (what the cache assumes)
    second = _chat(llama_server, max_tokens=8)
    assert second["choices"][0]["message"]["content"] == choice["message"]["content"]


def test_json_schema_response_format_gives_json_matching_the_schema(llama_server: LlamaServer) -> None:
    # llama-cpp-python takes the schema as {"type": "json_object", "schema": ...} and compiles it
    # to a grammar, so even a 135M model emits exactly this structure
    reply = _chat(
        llama_server,
        max_tokens=80,
        messages=[
            {"role": "system", "content": "Grade the answer against criteria c1 and c2. Reply in JSON."},
            {"role": "user", "content": "c1: mentions aspirin. c2: mentions dose.\nAnswer: Take aspirin."},
        ],
        response_format={"type": "json_object", "schema": VERDICTS_SCHEMA},
    )
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "stop", f"verdict cut short: {choice['message']['content']!r}"
    data = json.loads(choice["message"]["content"])
    assert set(data) == {"verdicts"}
    assert len(data["verdicts"]) == 2
    for verdict in data["verdicts"]:
        assert set(verdict) == {"id", "met"}
        assert verdict["id"] in ("c1", "c2")
        assert isinstance(verdict["met"], bool)


def test_openai_json_schema_form_is_rejected_by_this_server(llama_server: LlamaServer) -> None:
    """OpenAI's ``{"type": "json_schema", "json_schema": {...}}`` (which vLLM and hosted APIs take) is
    refused here, as an HTTP 500 (the server reports its request-validation errors as 500): a
    backend that sends it must fall back to ``json_object`` + ``schema``. If a new server version
    accepts it, this test says so."""
    httpx = _require("httpx")
    payload = {
        "model": llama_server.model,
        "messages": list(QUESTION),
        "max_tokens": 4,
        "response_format": {"type": "json_schema", "json_schema": {"name": "v", "schema": VERDICTS_SCHEMA}},
    }
    reply = httpx.post(llama_server.base_url + "/chat/completions", json=payload, timeout=120)
    assert reply.status_code == 500, reply.text[:300]
    assert "Input should be 'text' or 'json_object'" in reply.json()["error"]["message"]


def test_top_logprobs_come_back_for_each_generated_token(llama_server: LlamaServer) -> None:
    reply = _chat(llama_server, max_tokens=3, logprobs=True, top_logprobs=5)
    choice = reply["choices"][0]
    content = choice["logprobs"]["content"]
    assert len(content) == reply["usage"]["completion_tokens"]
    for position in content:
        assert isinstance(position["token"], str)
        assert position["logprob"] <= 0.0
        top = position["top_logprobs"]
        assert len(top) == 5
        assert all(t["logprob"] <= 0.0 for t in top)
        assert sum(math.exp(t["logprob"]) for t in top) <= 1.0 + 1e-4
        # greedy decoding: the chosen token is the most likely candidate
        assert position["logprob"] == pytest.approx(max(t["logprob"] for t in top), abs=1e-4)


def test_logprobs_without_top_logprobs_returns_none(llama_server: LlamaServer) -> None:
    """This server only computes log-probs when ``top_logprobs`` is set: ``logprobs: true`` alone
    gives ``null``. A backend that wants P(YES) must always send ``top_logprobs``."""
    reply = _chat(llama_server, max_tokens=2, logprobs=True)
    assert reply["choices"][0]["logprobs"] is None


# -- the same through the openai backend ---------------------------------------------------------


@pytest.fixture
def llama_backend(llama_server: LlamaServer, tmp_path):
    """``llama_backend(cache=None)`` → an OpenAIBackend on the real server; closed after the test."""
    _require("httpx")
    from medreward.backends.config import BackendConfig
    from medreward.backends.openai import OpenAIBackend

    made = []

    def make(cache=None):
        config = BackendConfig(
            kind="openai", model=llama_server.model, base_url=llama_server.base_url, timeout_s=120, max_concurrency=2
        )
        backend = OpenAIBackend("judge", config, cache=cache)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


def _request(content: str, **fields):
    from medreward.backends.base import ChatRequest

    fields.setdefault("max_tokens", 8)
    return ChatRequest(messages=({"role": "user", "content": content},), template="test.llama/1", **fields)


def test_backend_answers_a_batch_in_order_with_token_accounting(llama_backend) -> None:
    from medreward.backends.base import ChatResponse

    backend = llama_backend()
    prompts = ["Is aspirin an antiplatelet drug?", "Name one symptom of anaemia."]
    results = backend.complete([_request(p) for p in prompts])
    assert len(results) == 2
    assert all(isinstance(r, ChatResponse) for r in results), results
    for result in results:
        assert result.text.strip()
        assert not result.cached
        assert result.prompt_tokens > 5 and 1 <= result.completion_tokens <= 8
        assert result.latency_s > 0
    # in order: each answer is what the same prompt gives alone (greedy, seeded)
    alone = backend.complete([_request(prompts[1])])[0]
    assert alone.text == results[1].text
    assert backend.stats.calls == 3 and backend.stats.cache_hits == 0 and backend.stats.failures == 0
    assert backend.stats.prompt_tokens == sum(r.prompt_tokens for r in results) + alone.prompt_tokens
    assert backend.stats.completion_tokens == sum(r.completion_tokens for r in results) + alone.completion_tokens


def test_backend_structured_output_matches_the_schema(llama_backend) -> None:
    from medreward.backends.base import ChatResponse

    backend = llama_backend()
    request = _request(
        "c1: mentions aspirin. c2: mentions dose.\nAnswer: Take aspirin.\nGive a verdict per criterion in JSON.",
        max_tokens=80,
        response_schema=VERDICTS_SCHEMA,
    )
    result = backend.complete([request])[0]
    assert isinstance(result, ChatResponse), result
    # the server can constrain output to a schema: the backend must use that, not drop it
    assert "response_format" not in backend.unsupported
    data = json.loads(result.text)
    assert len(data["verdicts"]) == 2
    assert all(set(v) == {"id", "met"} and v["id"] in ("c1", "c2") and isinstance(v["met"], bool) for v in data["verdicts"])


def test_backend_returns_top_logprobs(llama_backend) -> None:
    from medreward.backends.base import ChatResponse

    backend = llama_backend()
    result = backend.complete([_request("Is aspirin an antiplatelet drug? Answer YES or NO.", max_tokens=2, top_logprobs=5)])[0]
    assert isinstance(result, ChatResponse), result
    assert result.logprobs is not None and len(result.logprobs) == result.completion_tokens
    for position in result.logprobs:
        assert len(position) == 5
        assert all(candidate.logprob <= 0.0 and isinstance(candidate.token, str) for candidate in position)


def test_backend_second_call_is_a_cache_hit_with_no_call(llama_backend, tmp_path) -> None:
    from medreward.backends.cache import SQLiteCache

    path = tmp_path / "judge-cache.sqlite"
    # an answer cut at max_tokens is never cached: stop at the first full stop or line end
    request = _request("Is aspirin an antiplatelet drug?", max_tokens=48, stop=(".", "\n"))
    with SQLiteCache(path) as cache:
        first = llama_backend(cache).complete([request])[0]
        assert not first.cached and first.finish_reason == "stop", first
    # a new backend and a new connection (another run) over the same file
    with SQLiteCache(path) as cache:
        backend = llama_backend(cache)
        changed_request = _request("Is aspirin an antiplatelet drug?", max_tokens=47, stop=(".", "\n"))
        again, changed = backend.complete([request, changed_request])
        assert again.cached and again.text == first.text
        assert again.prompt_tokens == first.prompt_tokens and again.completion_tokens == first.completion_tokens
        assert not changed.cached  # sampling parameters are part of the key
        assert backend.stats.cache_hits == 1 and backend.stats.calls == 1
