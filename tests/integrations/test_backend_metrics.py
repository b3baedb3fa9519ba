"""Trainer adapters with a spec that declares a model backend: the real OpenAI-compatible backend
against a loopback fake server; the TRL callable logs the backend's calls and cache hits per batch,
threads share the process's backends, and rule-only specs log no backend keys."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")
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


def test_verl_results_carry_backend_accounting_per_sample(server):
    from medreward.integrations.registry import register_data_source, unregister_data_source
    from medreward.integrations.verl import compute_score_batch, result_keys

    register_data_source("judged_verl", spec_for(server.url, "judged_verl"))
    try:
        keys = result_keys(["judged_verl"])
        assert keys[-5:] == tuple(f"backend/judge/{f}" for f in ("calls", "cache_hits", "failures", "prompt_tokens", "completion_tokens"))
        completions = ["<answer>a</answer>", "<answer>b</answer>", "@500 broken", "<answer>a</answer>"]
        results = compute_score_batch(["judged_verl"] * 4, completions, [None] * 4, active_data_sources=["judged_verl"])
        assert all(tuple(r) == keys for r in results)  # verl needs one key set for every sample
        # 3 distinct requests (the repeated answer is asked once): 3 calls, 1 failure, over 4 samples
        assert [r["backend/judge/calls"] for r in results] == [0.75] * 4
        assert sum(r["backend/judge/failures"] for r in results) == pytest.approx(1.0)
        assert sum(r["backend/judge/cache_hits"] for r in results) == pytest.approx(1.0)
        assert results[0]["backend/judge/prompt_tokens"] > 0
        assert server.requests == 3
        # a rule-only data source in the same run reports zeros for the judge's keys
        mixed = compute_score_batch(["judged_verl", "toxicology"], ["<answer>c</answer>", "<answer>opioids</answer>"],
                                    [None, "opioids"], active_data_sources=["judged_verl", "toxicology"])
        assert mixed[0]["backend/judge/calls"] == 1.0 and mixed[1]["backend/judge/calls"] == 0.0
        assert tuple(mixed[0]) == tuple(mixed[1])
    finally:
        unregister_data_source("judged_verl")


def test_openrlhf_extra_logs_carry_backend_accounting(server):
    from medreward.integrations.openrlhf import make_reward_func

    f = make_reward_func(spec_for(server.url, "judged_openrlhf"), as_tensors=False)
    out = f(queries=["p<answer>x</answer>", "p@500 broken"], prompts=["p", "p"], labels=[None, None])
    logs = out["extra_logs"]
    assert logs["backend/judge/calls"] == [1.0, 1.0]  # 2 calls over 2 samples
    assert logs["backend/judge/failures"] == [0.5, 0.5]
    again = f(queries=["p<answer>x</answer>"], prompts=["p"], labels=[None])["extra_logs"]
    assert again["backend/judge/calls"] == [0.0] and again["backend/judge/cache_hits"] == [1.0]


def test_a_component_named_like_a_backend_key_is_refused():
    from medreward.integrations.results import check_component_keys

    with pytest.raises(ValueError, match="backend/"):
        check_component_keys(["backend/judge/calls"])
