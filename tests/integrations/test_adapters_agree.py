"""One rollout through every adapter gets one reward: the Scorer's (and the docs' examples run)."""

from __future__ import annotations

import doctest
import importlib

import pytest

import medreward.integrations.reward_kit as rk
from medreward import Scorer
from medreward.integrations.openrlhf import handle_get_reward, make_reward_func
from medreward.integrations.trl import (
    async_reward_func,
    reward_func,
    reward_funcs_per_component,
)
from medreward.integrations.verl import compute_score, compute_score_batch

PROMPT = "Pinpoint pupils, respiratory depression, smells of alcohol. Which substances?"
CHATML = f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n"

CASES = [
    # (spec, completion, reference)
    ("toxicology", "<think>miosis, apnea</think><answer>opioids, ethanol</answer>", {"substances": ["opioids", "ethanol"]}),
    ("toxicology", "<think>miosis</think><answer>opioids, benzodiazepines</answer>", {"substances": ["opioids", "ethanol"]}),
    ("toxicology", "<answer>heroin</answer>", {"substances": ["opioids"]}),
    ("toxicology", "no tags at all: opioids", {"substances": ["opioids"]}),
    ("toxicology", "", {"substances": ["opioids"]}),
    ("toxicology", "<think>x</think><answer>opioids</answer>", {}),
    ("mcq", "<think>naloxone</think><answer>B</answer>", {"answer": "B"}),
    ("mcq", "<think>hmm</think><answer>A or B</answer>", {"answer": "B"}),
    ("mcq", "<think>x</think><answer>Naloxone</answer>", {"answer": "C", "options": {"A": "Flumazenil", "B": "Atropine", "C": "Naloxone"}}),
]


def rewards_by_adapter(spec, completion, reference, monkeypatch):
    import json

    [record] = Scorer(spec).score([{"prompt": PROMPT, "completion": completion, "reference": reference}])
    label = json.dumps(reference)
    out = {"scorer": record.reward}
    out["trl"] = reward_func(spec)(prompts=[[{"role": "user", "content": PROMPT}]],
                                   completions=[[{"role": "assistant", "content": completion}]],
                                   reference=[reference])[0]
    import asyncio

    out["trl_async"] = asyncio.run(async_reward_func(spec)(prompts=[PROMPT], completions=[completion],
                                                           reference=[label]))[0]
    funcs, weights = reward_funcs_per_component(spec)
    parts = [f(prompts=[PROMPT], completions=[completion], reference=[reference])[0] for f in funcs]
    applicable = [(w, p) for w, p in zip(weights, parts) if p is not None]
    out["trl_per_component"] = sum(w * p for w, p in applicable) if applicable else None
    verl = compute_score(spec, completion, label, {"index": 0})
    out["verl"] = verl["score"] if verl["status_ok"] else None
    [batch] = compute_score_batch([spec], [completion], [reference], [None])
    out["verl_batch"] = batch["score"] if batch["status_ok"] else None
    orl = make_reward_func(spec, as_tensors=False)([CHATML + completion + "<|im_end|>"], [CHATML], [label])
    out["openrlhf"] = orl["rewards"][0] if orl["extra_logs"]["status_ok"][0] else None
    http = handle_get_reward({"query": [CHATML + completion], "prompts": [CHATML], "labels": [label]}, spec=spec)
    out["openrlhf_http"] = http["rewards"][0] if http["extra_logs"]["status_ok"][0] else None
    monkeypatch.setattr(rk, "RESULT_PACKAGE", "dict")
    res = rk.evaluate([{"role": "user", "content": PROMPT}, {"role": "assistant", "content": completion}],
                      ground_truth=reference, spec=spec)
    out["reward_kit"] = res["score"] if res["is_score_valid"] else None
    return out


@pytest.mark.parametrize("spec, completion, reference", CASES)
def test_every_adapter_gives_the_scorer_reward(spec, completion, reference, monkeypatch):
    out = rewards_by_adapter(spec, completion, reference, monkeypatch)
    expected = out.pop("scorer")
    recombined = out.pop("trl_per_component")
    assert out == {name: expected for name in out}, out
    # TRL's weighted sum of the per-component callables is the spec's weighted_sum (no gates in presets)
    assert recombined == pytest.approx(expected) if expected is not None else recombined is None


def test_the_cases_are_not_all_alike():
    rewards = {Scorer(s).score([{"completion": c, "reference": r}])[0].reward for s, c, r in CASES}
    assert len(rewards) >= 4  # agreement on identical values would prove little


@pytest.mark.parametrize(
    "module",
    [
        "medreward.integrations.registry",
        "medreward.integrations.references",
        "medreward.integrations.verl",
        "medreward.integrations.trl",
        "medreward.integrations.verl",
        "medreward.integrations.openrlhf",
        "medreward.integrations.reward_kit",
    ],
)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
