"""Trainer adapters with a spec that declares a model backend: the real OpenAI-compatible backend
against a loopback fake server; the TRL callable logs the backend's calls and cache hits per batch,
threads share the process's backends, and rule-only specs log no backend keys."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("httpx")
sys.path.insert(0, str(Path(__file__).parents[1] / "backends"))
from fake_openai_server import FakeOpenAIServer  # noqa: E402

from medreward.integrations.scorers import get_scorer  # noqa: E402
from medreward.integrations.trl import reward_func, reward_funcs_per_component  # noqa: E402


@pytest.fixture
def server(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDREWARD_CACHE", str(tmp_path / "responses.sqlite"))
    with FakeOpenAIServer() as fake:
        yield fake


def spec_for(url: str, name: str) -> dict:
    return {
        "name": name,
        "backends": {"judge": {"kind": "openai", "model": "fake", "base_url": url, "max_retries": 0}},
        "components": [
            {"name": "format", "kind": "format.tags", "weight": 0.5},
            {"name": "yes", "kind": "model_backed:YesJudge", "weight": 0.5},
        ],
    }


def test_trl_logs_backend_metrics_per_batch(server):
    f = reward_func(spec_for(server.url, "judged_trl"))
    logged: list[tuple[str, float]] = []
    completions = ["<think>a</think><answer>x</answer>", "plain", "@500 broken"]
    rewards = f(prompts=["p"] * 3, completions=completions, log_metric=lambda k, v: logged.append((k, v)))
    assert rewards[2] is None and rewards[0] is not None
    first = dict(logged)
    prefix = "medreward/judged_trl/backend/judge/"
    assert first[prefix + "calls"] == 3.0 and first[prefix + "cache_hits"] == 0.0 and first[prefix + "failures"] == 1.0
    assert first[prefix + "prompt_tokens"] > 0 and prefix + "latency_p95_s" in first
    logged.clear()
    f(prompts=["p"] * 3, completions=completions, log_metric=lambda k, v: logged.append((k, v)))
    second = dict(logged)  # the batch's own numbers, not the run's totals
    assert (second[prefix + "calls"], second[prefix + "cache_hits"]) == (1.0, 2.0)
    assert server.requests == 4
    total = get_scorer(f.spec, time_limit=f.time_limit).total.backends["judge"]
    assert (total.calls, total.cache_hits) == (4, 2)


def test_per_component_functions_log_their_own_backend_calls(server):
    funcs, _ = reward_funcs_per_component(spec_for(server.url, "judged_per"))
    fmt, yes = funcs
    assert fmt.spec.backends == {}  # the format function's scorer builds no backend
    logged: dict[str, float] = {}
    for func in funcs:
        func(prompts=["p"], completions=["<answer>x</answer>"], log_metric=logged.__setitem__)
    assert logged[f"medreward/{yes.__name__}/backend/judge/calls"] == 1.0
    assert not any(key.startswith(f"medreward/{fmt.__name__}/backend") for key in logged)
    assert server.requests == 1


def test_threads_share_the_backends_and_totals_add_up(server):
    shared = get_scorer(spec_for(server.url, "judged_threads"))
    items = [{"completion": f"answer {i}"} for i in range(4)]
    batches = []

    def run(k: int) -> None:
        batches.append(shared.score([{"completion": f"{k}: {item['completion']}"} for item in items])[1])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(b.backends["judge"].calls for b in batches) == 12 == server.requests
    assert shared.total.backends["judge"].calls == 12
    siblings = {id(s._backends) for s in [shared.scorer, shared.scorer.sibling()]}
    assert len(siblings) == 1


def test_rule_only_spec_logs_no_backend_keys():
    f = reward_func("mcq")
    logged: dict[str, float] = {}
    f(prompts=["p"], completions=["<answer>A</answer>"], answer=["A"], log_metric=logged.__setitem__)
    assert logged and not any("/backend/" in key for key in logged)
