"""OpenAIBackend against the loopback fake server (real HTTP): requests, failure paths, limits,
circuit breaker, cache, secrets, pickling and calls from a running event loop."""

from __future__ import annotations

import asyncio
import logging
import pickle
import threading
import time
from typing import Any

import pytest
from fake_openai_server import FakeOpenAIServer
from model_backed import DictCache

from medreward.backends.base import BackendFailure, ChatRequest, ChatResponse
from medreward.backends.config import BackendConfig
from medreward.errors import SpecError


def req(content: str, **kw: Any) -> ChatRequest:
    return ChatRequest(messages=({"role": "system", "content": "grade"}, {"role": "user", "content": content}), **kw)



def test_request_body_and_parsed_response(fake_server: FakeOpenAIServer, make_backend: Any) -> None:
    backend = make_backend(fake_server.url)
    schema = {"type": "object", "properties": {"verdict": {"type": "string"}}, "required": ["verdict"]}
    request = req("is it right?", template="judge.yesno/2", max_tokens=5, seed=7, stop=("\n",), response_schema=schema, top_logprobs=3)
    [response] = backend.complete([request])
    body = fake_server.bodies[0]
    assert body["model"] == "fake-judge" and body["max_tokens"] == 5 and body["temperature"] == 0.0
    assert body["seed"] == 7 and body["stop"] == ["\n"]
    assert body["messages"] == [{"role": "system", "content": "grade"}, {"role": "user", "content": "is it right?"}]
    assert body["response_format"] == {"type": "json_schema", "json_schema": {"name": "judge_yesno", "schema": schema, "strict": True}}
    assert body["logprobs"] is True and body["top_logprobs"] == 3
    assert isinstance(response, ChatResponse)
    assert response.text == "echo: is it right?" and response.finish_reason == "stop" and not response.cached
    assert response.completion_tokens == 7 and response.prompt_tokens > 0
    assert [(t.token, t.logprob) for t in response.logprobs[0]] == [("YES", -0.1), ("NO", -2.4)]
    summary = backend.stats.summary()
    assert summary["calls"] == 1 and summary["completion_tokens"] == 7 and summary["latency_p50_s"] > 0


def test_every_failure_path_gets_its_kind_and_the_rest_of_the_batch_is_answered(
    fake_server: FakeOpenAIServer, make_backend: Any
) -> None:
    backend = make_backend(fake_server.url, max_retries=2, timeout_s=1.0)
    cases = {
        "plain": None,
        "@500*1 flaky": None,  # 500 then success
        "@drop*1 once": None,  # dropped once, then success
        "@429*2 busy": None,
        "@500 always": ("http", "HTTP 500"),
        "@malformed": ("malformed", "not JSON"),
        "@truncated": ("malformed", "not JSON"),
        "@nochoices": ("malformed", "not a chat completion"),
        "@short": ("connection", "connection dropped"),
        "@drop": ("connection", "connection dropped"),
        "@sleep=3": ("timeout", "no answer within 1 s"),
        "plain again": None,
    }
    results = backend.complete([req(c) for c in cases])
    assert len(results) == len(cases)
    for (content, expected), result in zip(cases.items(), results):
        if expected is None:
            assert isinstance(result, ChatResponse), (content, result)
            assert result.text == "echo: " + content
        else:
            assert isinstance(result, BackendFailure), (content, result)
            assert result.kind == expected[0] and expected[1] in result.message, (content, result)
    always = results[4]
    assert always.retries == 2 and "after 2 retries" in always.message and always.status == "error"
    assert results[10].status == "timeout" and results[10].retries == 0  # a timeout is not retried
    assert fake_server.attempts["@500 always"] == 3 and fake_server.attempts["@malformed"] == 1
    stats = backend.stats
    assert stats.calls == len(cases) and stats.failures == 7
    assert stats.retries == 1 + 1 + 2 + 2 + 2 + 2  # flaky, drop-once, busy, always, short, drop


def test_server_down_is_a_connection_failure(down_url: str, make_backend: Any) -> None:
    backend = make_backend(down_url, max_retries=1, circuit_failures=100)
    results = backend.complete([req("a"), req("b")])
    assert [r.kind for r in results] == ["connection", "connection"]
    assert "connection refused" in results[0].message and "after 1 retries" in results[0].message


def test_429_storm_honours_retry_after_seconds_and_http_dates(fake_server: FakeOpenAIServer, make_backend: Any) -> None:
    backend = make_backend(fake_server.url, max_retries=3)
    backend.retry_base_s = 0.001  # so the gaps measured are the server's Retry-After
    [first, second] = backend.complete([req("@429*2 @retry_after=0.4 one"), req("@429*1 @retry_after=date:2 two")])
    assert isinstance(first, ChatResponse) and isinstance(second, ChatResponse)
    times = {c: [] for c in ("one", "two")}
    for body, t in zip(fake_server.bodies, fake_server.arrivals):
        times[body["messages"][-1]["content"].split()[-1]].append(t)
    gaps = [b - a for a, b in zip(times["one"], times["one"][1:])]
    assert len(gaps) == 2 and all(g >= 0.39 for g in gaps)
    # an HTTP date has 1-second resolution: "2 s ahead" means at least 1 s
    assert len(times["two"]) == 2 and times["two"][1] - times["two"][0] >= 0.9
    assert backend.stats.retries == 3


def test_429_that_never_ends_is_rate_limited_and_a_huge_retry_after_fails_fast(
    fake_server: FakeOpenAIServer, make_backend: Any
) -> None:
    backend = make_backend(fake_server.url, max_retries=2)
    started = time.monotonic()
    storm, huge = backend.complete([req("@429 @retry_after=0.05 storm"), req("@429 @retry_after=3600 huge")])
    assert storm.kind == "rate_limited" and storm.message.startswith("HTTP 429") and storm.retries == 2
    assert huge.kind == "rate_limited" and "retry after 3600 s" in huge.message
    assert time.monotonic() - started < 3


def test_no_more_than_max_concurrency_requests_in_flight(fake_server: FakeOpenAIServer, make_backend: Any) -> None:
    backend = make_backend(fake_server.url, max_concurrency=4)
    results = backend.complete([req(f"@sleep=0.05 n{i}") for i in range(40)])
    assert all(isinstance(r, ChatResponse) for r in results)
    assert [r.text for r in results] == [f"echo: @sleep=0.05 n{i}" for i in range(40)]  # in order
    assert fake_server.max_in_flight == 4


def test_concurrency_bound_is_shared_by_threads_calling_at_once(fake_server: FakeOpenAIServer, make_backend: Any) -> None:
    backend = make_backend(fake_server.url, max_concurrency=3)
    out: list[list[Any]] = []
    threads = [
        threading.Thread(target=lambda k=k: out.append(backend.complete([req(f"@sleep=0.05 t{k} {i}") for i in range(6)])))
        for k in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(len(o) for o in out) == 24 and all(isinstance(r, ChatResponse) for o in out for r in o)
    assert fake_server.max_in_flight <= 3
    assert backend.stats.calls == 24


def test_requests_per_minute_is_respected(fake_server: FakeOpenAIServer, make_backend: Any) -> None:
    backend = make_backend(fake_server.url, requests_per_minute=600)  # 10/s, bursts of 10
    started = time.monotonic()
    results = backend.complete([req(f"r{i}") for i in range(25)])
    elapsed = time.monotonic() - started
    assert all(isinstance(r, ChatResponse) for r in results)
    assert 1.4 <= elapsed < 3.0  # 15 requests beyond the burst at 10/s
    arrivals = sorted(fake_server.arrivals)
    # after the burst of 10, one request per 0.1 s (100 ms tolerance for connection set-up jitter)
    assert arrivals[24] - arrivals[10] >= 1.4 - 0.1
    # any window holds at most the burst + the window's refill (+2 for jitter)
    assert fake_server.max_in_window(0.5) <= 10 + 5 + 2
    assert fake_server.max_in_window(1.0) <= 10 + 10 + 2


def test_tokens_per_minute_is_respected(fake_server: FakeOpenAIServer, make_backend: Any) -> None:
    # each request reserves ~ (len(prompt)/4 + max_tokens) = 100 + 100 tokens; 12000/min = 200/s
    backend = make_backend(fake_server.url, tokens_per_minute=12000)
    started = time.monotonic()
    backend.complete([req("x" * 395, max_tokens=100) for _ in range(6)])
    assert time.monotonic() - started >= 0.9  # 1 free + 5 × 1 s, minus the 200-token burst


def test_circuit_breaker_opens_fails_fast_and_recovers(down_url: str, make_backend: Any) -> None:
    backend = make_backend(down_url, max_retries=0, circuit_failures=2, circuit_reset_s=0.5)
    assert [r.kind for r in backend.complete([req("a")])] == ["connection"]
    assert [r.kind for r in backend.complete([req("b")])] == ["connection"]
    [fast] = backend.complete([req("c")])
    assert fast.kind == "circuit_open" and "circuit open" in fast.message and "2 consecutive" in fast.message
    port = int(down_url.rsplit(":", 1)[1].split("/")[0])
    with FakeOpenAIServer().start(port) as server:
        assert [r.kind for r in backend.complete([req("d")])] == ["circuit_open"]  # still open: no call made
        assert server.requests == 0
        time.sleep(0.55)
        [trial] = backend.complete([req("e")])
        assert isinstance(trial, ChatResponse)
        assert all(isinstance(r, ChatResponse) for r in backend.complete([req(f"f{i}") for i in range(5)]))
        assert server.requests == 6


def test_a_failed_trial_reopens_the_circuit(down_url: str, make_backend: Any) -> None:
    backend = make_backend(down_url, max_retries=0, circuit_failures=1, circuit_reset_s=0.3)
    assert backend.complete([req("a")])[0].kind == "connection"
    time.sleep(0.35)
    kinds = sorted(r.kind for r in backend.complete([req("b"), req("c"), req("d")]))
    assert kinds == ["circuit_open", "circuit_open", "connection"]  # one trial, the others fail fast
    assert backend.complete([req("e")])[0].kind == "circuit_open"


def test_cache_hit_makes_no_call_and_failures_or_cut_answers_are_not_cached(
    fake_server: FakeOpenAIServer, make_backend: Any
) -> None:
    cache = DictCache()
    backend = make_backend(fake_server.url, cache=cache, max_retries=0)
    requests = [req("good"), req("@500 bad"), req("@length cut")]
    first = backend.complete(requests)
    assert isinstance(first[0], ChatResponse) and isinstance(first[1], BackendFailure) and first[2].finish_reason == "length"
    assert list(cache.data) == [requests[0].cache_key("openai", "fake-judge")]
    calls = fake_server.requests
    again = backend.complete(requests)
    assert again[0].cached and again[0].text == "echo: good"
    assert fake_server.requests == calls + 2  # only the failure and the cut answer were asked again
    assert backend.stats.cache_hits == 1 and backend.stats.calls == 5
    backend.forget([requests[0]])  # the caller could not use that answer: it is not served again
    assert cache.data == {}
    assert not backend.complete([requests[0]])[0].cached and fake_server.requests == calls + 3


def test_identical_requests_of_one_batch_make_one_call_when_cached(fake_server: FakeOpenAIServer, make_backend: Any) -> None:
    same = [req("a group's repeated answer")] * 3
    cached = make_backend(fake_server.url, cache=DictCache())
    answers = cached.complete([*same, req("@500 always"), req("@500 always")])
    assert fake_server.requests == 1 + 4  # one call for the three twins; one for the failing pair (1 + 3 retries)
    assert [a.cached for a in answers[:3]] == [False, True, True] and answers[1].text == answers[0].text
    assert isinstance(answers[3], BackendFailure) and answers[4] == answers[3]  # the twin shares the failure
    assert (cached.stats.calls, cached.stats.cache_hits, cached.stats.failures) == (2, 2, 1)
    before = fake_server.requests
    make_backend(fake_server.url).complete(same)  # no cache: every request is a call
    assert fake_server.requests == before + 3


def test_an_answer_cut_at_max_tokens_is_cached_only_when_the_caller_reads_its_start(
    fake_server: FakeOpenAIServer, make_backend: Any
) -> None:
    cache = DictCache()
    backend = make_backend(fake_server.url, cache=cache)
    whole_needed, prefix_read = req("@length verdict"), req("@length YES", reads_prefix=True)
    backend.complete([whole_needed, prefix_read])
    assert list(cache.data) == [prefix_read.cache_key("openai", "fake-judge")]


def test_server_without_response_format_or_logprobs_still_works(fake_server: FakeOpenAIServer, make_backend: Any, caplog: Any) -> None:
    fake_server.reject = {"response_format", "logprobs"}
    backend = make_backend(fake_server.url)
    schema = {"type": "object"}
    with caplog.at_level(logging.WARNING):
        [r] = backend.complete([req("q", response_schema=schema, top_logprobs=2)])
    assert isinstance(r, ChatResponse) and r.logprobs is None
    # OpenAI's json_schema form first, then the json_object form, then none
    assert backend.unsupported == {"json_schema", "response_format", "logprobs"}
    assert "rejects 'response_format'" in caplog.text
    before = fake_server.requests
    assert isinstance(backend.complete([req("q2", response_schema=schema, top_logprobs=2)])[0], ChatResponse)
    assert fake_server.requests == before + 1  # remembered: no failing first attempt
    assert "response_format" not in fake_server.bodies[-1] and "logprobs" not in fake_server.bodies[-1]
    assert backend.stats.retries == 0


def test_a_server_that_takes_only_the_json_object_form_gets_the_schema_that_way(
    fake_server: FakeOpenAIServer, make_backend: Any
) -> None:
    """llama.cpp's server answers 500 to OpenAI's json_schema form and takes
    {"type": "json_object", "schema": ...}: the backend switches form once and remembers it."""
    fake_server.reject = {"json_schema"}
    backend = make_backend(fake_server.url, max_retries=3)
    schema = {"type": "object", "properties": {"met": {"type": "boolean"}}}
    [r] = backend.complete([req("q", response_schema=schema)])
    assert isinstance(r, ChatResponse)
    assert fake_server.bodies[-1]["response_format"] == {"type": "json_object", "schema": schema}
    assert backend.unsupported == {"json_schema"} and backend.stats.retries == 0
    before = fake_server.requests
    backend.complete([req("q2", response_schema=schema)])
    assert fake_server.requests == before + 1 and fake_server.bodies[-1]["response_format"]["type"] == "json_object"


def test_requests_queued_behind_a_refusal_do_not_repeat_it(fake_server: FakeOpenAIServer, make_backend: Any) -> None:
    """A batch larger than max_concurrency: the requests waiting for a slot are built when they get
    one, so only those already in flight when the server refused json_schema send it."""
    fake_server.reject = {"json_schema"}
    backend = make_backend(fake_server.url, max_concurrency=2)
    schema = {"type": "object", "properties": {"met": {"type": "boolean"}}}
    results = backend.complete([req(f"q{i}", response_schema=schema) for i in range(12)])
    assert all(isinstance(r, ChatResponse) for r in results)
    refused = sum(b["response_format"]["type"] == "json_schema" for b in fake_server.bodies)
    assert refused <= 2 and fake_server.requests == 12 + refused


def test_a_400_for_another_reason_is_an_http_failure_and_features_stay_on(fake_server: FakeOpenAIServer, make_backend: Any) -> None:
    backend = make_backend(fake_server.url)
    [r] = backend.complete([req("@echo_headers", response_schema={"type": "object"})])
    assert r.kind == "http" and r.message.startswith("HTTP 400")
    assert backend.unsupported == set()


def test_api_key_is_sent_but_never_leaks(fake_server: FakeOpenAIServer, make_backend: Any, monkeypatch: Any, caplog: Any) -> None:
    secret = "sk-test-7f3a9c1e5b2d4f6a8c0e"
    monkeypatch.setenv("JUDGE_KEY", secret)
    backend = make_backend(fake_server.url, api_key_env="JUDGE_KEY", max_retries=0)
    with caplog.at_level(logging.DEBUG):
        results = backend.complete([req("ok"), req("@echo_headers")])
    assert fake_server.headers[0]["Authorization"] == f"Bearer {secret}"
    echoed = results[1]
    assert isinstance(echoed, BackendFailure) and "***" in echoed.message
    for text in (echoed.message, repr(echoed), repr(backend), str(vars(backend)), caplog.text):
        assert secret not in text
    assert secret.encode() not in pickle.dumps(backend)
    assert secret.encode() not in pickle.dumps(results)


def test_complete_from_inside_a_running_event_loop(fake_server: FakeOpenAIServer, make_backend: Any) -> None:
    backend = make_backend(fake_server.url)

    async def reward_fn() -> list[Any]:
        assert asyncio.get_running_loop().is_running()
        return backend.complete([req("a"), req("b")])

    results = asyncio.run(reward_fn())
    assert [r.text for r in results] == ["echo: a", "echo: b"]


def test_pickles_by_name_and_config_without_client_or_cache(fake_server: FakeOpenAIServer, make_backend: Any) -> None:
    backend = make_backend(fake_server.url, cache=DictCache(), max_concurrency=7)
    backend.complete([req("warm")])  # client, loop thread and stats exist now
    clone = pickle.loads(pickle.dumps(backend))
    assert clone.name == "judge" and clone.config == backend.config and clone.cache is None
    assert clone.stats.calls == 0
    try:
        assert clone.complete([req("again")])[0].text == "echo: again"
    finally:
        clone.close()


def test_a_huge_prompt_is_cut_in_the_middle_of_the_last_user_message(fake_server: FakeOpenAIServer, make_backend: Any) -> None:
    backend = make_backend(fake_server.url, max_context_tokens=2048)
    completion = "HEAD" + "x" * 1_000_000 + "TAIL"
    big = ChatRequest(
        messages=({"role": "user", "content": "the completion:"}, {"role": "assistant", "content": "ok"}, {"role": "user", "content": completion}),
        max_tokens=512,
    )
    small = req("short")
    cut, fine = backend.complete([big, small])
    assert isinstance(cut, ChatResponse) and cut.truncated_input and not fine.truncated_input
    sent = fake_server.bodies[0]["messages"] if fake_server.bodies[0]["messages"][-1]["content"] != "short" else fake_server.bodies[1]["messages"]
    last = sent[-1]["content"]
    assert last.startswith("HEAD") and last.endswith("TAIL") and "characters cut" in last
    assert sum(len(m["content"]) for m in sent) <= (2048 - 512) * 4
    assert sent[0]["content"] == "the completion:"


def test_missing_base_url_is_a_spec_error() -> None:
    from medreward.backends.openai import OpenAIBackend

    with pytest.raises(SpecError, match="needs base_url"):
        OpenAIBackend("judge", BackendConfig(kind="openai", model="m"))


def test_requests_go_through_the_environment_proxy_unless_no_proxy_names_the_host(
    fake_server: FakeOpenAIServer, down_url: str, make_backend: Any, monkeypatch: Any
) -> None:
    # nothing listens at down_url: only a request sent to the proxy (the fake server, which answers
    # any path) can succeed
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{fake_server.port}")
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    [via_proxy] = make_backend(down_url, max_retries=0).complete([req("proxied")])
    assert isinstance(via_proxy, ChatResponse) and via_proxy.text == "echo: proxied"
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    [direct] = make_backend(down_url, max_retries=0).complete([req("direct")])
    assert isinstance(direct, BackendFailure) and "connection refused" in direct.message


def _medreward_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("medreward-")}


def test_close_and_collection_stop_the_loop_thread_without_unclosed_session_warnings(
    fake_server: FakeOpenAIServer, caplog: Any, recwarn: Any
) -> None:
    import gc

    from medreward.backends.openai import OpenAIBackend

    before = _medreward_threads()
    config = BackendConfig(kind="openai", model="fake-judge", base_url=fake_server.url)
    closed = OpenAIBackend("closed", config)
    assert closed.complete([req("a")])[0].text == "echo: a"
    closed.close()
    closed.close()  # twice is fine
    assert closed.complete([req("b")])[0].text == "echo: b"  # and it restarts when used again
    closed.close()
    dropped = OpenAIBackend("dropped", config)
    assert dropped.complete([req("c")])[0].text == "echo: c"
    del dropped
    gc.collect()
    deadline = time.monotonic() + 10
    while _medreward_threads() - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _medreward_threads() - before, "a backend's loop thread outlived it"
    assert "Unclosed" not in caplog.text
    assert not [w for w in recwarn if "Unclosed" in str(w.message)]


def test_a_forked_child_makes_its_own_connections_and_leaves_the_parents_alone(
    fake_server: FakeOpenAIServer, make_backend: Any
) -> None:
    import multiprocessing

    backend = make_backend(fake_server.url)
    assert backend.complete([req("parent")])[0].text == "echo: parent"
    _FORKED["backend"] = backend  # inherited by the fork, not pickled (a pickle rebuilds the backend)
    try:
        with multiprocessing.get_context("fork").Pool(1) as pool:
            assert pool.apply(_complete_in_forked_child) == "echo: child"
    finally:
        _FORKED.clear()
    assert backend.complete([req("parent again")])[0].text == "echo: parent again"


_FORKED: dict[str, Any] = {}


def _complete_in_forked_child() -> str:
    backend = _FORKED["backend"]
    text = backend.complete([req("child")])[0].text
    backend.close()  # closes the child's own loop and session only
    return text
