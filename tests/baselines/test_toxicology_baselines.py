"""Toxicology baseline policies under the ``toxicology`` preset, and the evaluation API."""

from __future__ import annotations

import copy
import random

import pytest

from medreward.baselines import get_policy, list_policies, run_policy
from medreward.baselines.evaluate import (
    _METRICS,
    EvaluationResult,
    MetricSet,
    accuracy,
    evaluate,
    evaluate_by_policy,
    metric_functions,
    register_metric,
    set_metrics,
)
from medreward.baselines.toxicology import history_classes, toxidrome_classes
from medreward.compose.spec import load_spec
from medreward.runner import Scorer
from medreward.tasks.toxicology import (
    CLASS_IDS,
    Findings,
    generate_toxicology,
    observed_findings,
)

POLICIES = ("toxidrome", "history", "hedge", "majority", "empty", "format_only")


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    return generate_toxicology(400, seed=2024)


@pytest.fixture(scope="module")
def results(cases) -> dict[str, EvaluationResult]:
    scorer = Scorer("toxicology")
    return {p: evaluate(scorer.score(run_policy("toxicology", p, cases)), task="toxicology", policy=p) for p in POLICIES}


def test_policies_are_registered():
    assert {p.name for p in list_policies("toxicology")} == set(POLICIES)
    assert get_policy("toxicology", "toxidrome").description


def test_every_completion_has_the_preset_format(cases):
    scorer = Scorer("toxicology")
    for policy in POLICIES:
        scored = scorer.score(run_policy("toxicology", policy, cases[:50]))
        assert all(r.status.value == "ok" and r.components["format"] == 1.0 for r in scored), policy


def test_policies_are_deterministic(cases):
    for policy in POLICIES:
        assert run_policy("toxicology", policy, cases[:30], seed=3) == run_policy("toxicology", policy, cases[:30], seed=3)


# -- the toxidrome reader ---------------------------------------------------------------------------
def test_toxidrome_recovers_single_substances_well_above_chance(cases):
    singles = [c for c in cases if len(c["reference"]["substances"]) == 1]
    assert len(singles) >= 120
    exact = sum(toxidrome_classes(observed_findings(c["case"]))[0] == c["reference"]["substances"] for c in singles)
    named = sum(c["reference"]["substances"][0] in toxidrome_classes(observed_findings(c["case"]))[0] for c in singles)
    # measured 0.678 exact / 0.766 named on this seed (0.72 / 0.78 on 3000 cases); chance is 1/14
    assert exact / len(singles) >= 0.6
    assert named / len(singles) >= 0.7


def test_toxidrome_reads_neither_the_reference_nor_the_truth(cases):
    rng_seed = 5
    for case in cases[:80]:
        blind = copy.deepcopy(case)
        del blind["reference"]
        blind["case"]["truth"] = {"profiles": [{"class": "salicylates", "profile": "salicylate"}], "mimic": None}
        policy = get_policy("toxicology", "toxidrome").policy
        assert policy(case, random.Random(rng_seed)) == policy(blind, random.Random(rng_seed))


def test_toxidrome_rules_on_textbook_findings():
    def classes(numeric, ordinal, signs=()):
        return toxidrome_classes(Findings(numeric, ordinal, frozenset(signs)))[0]

    normal = {"hr": 80, "sbp": 125, "rr": 16, "spo2": 98, "temp": 36.8, "gcs": 15}
    assert classes(normal, {}) == []
    assert classes({**normal, "rr": 6, "gcs": 8, "spo2": 85}, {"pupils": -2, "bowel": -1}) == ["opioids"]
    assert classes({**normal, "hr": 130, "temp": 38.6}, {"pupils": 2, "skin": -2, "bowel": -2, "behaviour": 2},
                   ["urinary_retention"]) == ["anticholinergics"]  # fmt: skip
    assert classes({**normal, "hr": 135, "sbp": 180}, {"pupils": 2, "skin": 2, "behaviour": 2}) == ["stimulants"]
    assert classes({**normal, "hr": 120, "qrs": 150}, {"pupils": 2, "skin": -2})[0] == "antidepressants"
    assert classes({**normal, "gcs": 13}, {}, ["odor_ethanol", "slurred_speech"]) == ["ethanol"]


# -- the history reader ---------------------------------------------------------------------------
def test_history_policy_believes_every_named_substance(cases):
    for case in cases[:150]:
        roles = case["case"]["truth"]["history"]
        items = case["case"]["history"]
        expected = {cls for item, role in zip(items, roles, strict=True) if item["stance"] != "denied" for cls in role["classes"]}
        assert set(history_classes(case)) == expected


def test_history_policy_scans_the_prompt_without_structured_history():
    record = {"prompt": [{"role": "user", "content": "Scene: Empty bottles of vodka and a bag of cocaine were found. "
                          "The patient denies heroin.\n\nVital signs: normal."}]}  # fmt: skip
    assert history_classes(record) == ["ethanol", "stimulants"]


# -- ordering under the toxicology preset -----------------------------------------------------
def test_toxidrome_outscores_hedge_and_empty(results):
    toxidrome = results["toxidrome"]
    for weaker in ("hedge", "empty", "format_only", "majority"):
        assert toxidrome.mean_reward > results[weaker].mean_reward + 0.3, weaker
        assert toxidrome.metrics["micro_f1"] > results[weaker].metrics["micro_f1"] + 0.3, weaker
    assert toxidrome.mean_reward > results["history"].mean_reward
    assert toxidrome.metrics["micro_f1"] >= 0.65  # measured 0.726


def test_hedge_has_full_recall_but_low_reward_and_micro_f1(results):
    hedge = results["hedge"]
    assert hedge.metrics["recall"] == 1.0
    assert hedge.metrics["precision"] < 0.15
    assert hedge.metrics["micro_f1"] < 0.25  # measured 0.195
    assert hedge.mean_reward < 0.35  # measured 0.270


def test_constant_policies_score_as_the_preset_says(cases, results):
    spec = load_spec("toxicology")
    format_weight = next(c.weight for c in spec.components if c.kind == "format.tags")
    label_weight = next(c.weight for c in spec.components if c.kind == "multilabel")
    share_none = sum(not c["reference"]["substances"] for c in cases) / len(cases)
    assert results["format_only"].mean_reward == pytest.approx(format_weight)
    assert results["empty"].mean_reward == pytest.approx(format_weight + label_weight * share_none)
    assert results["empty"].metrics["micro_f1"] == 0.0
    assert results["empty"].metrics["exact_match"] == pytest.approx(share_none)


def test_per_class_f1_covers_the_vocabulary(results):
    per_class = results["toxidrome"].per_class
    assert per_class is not None and list(per_class) == [c for c in CLASS_IDS if c in per_class]
    assert len(per_class) == 14
    assert results["toxidrome"].metrics["macro_f1"] == pytest.approx(sum(per_class.values()) / 14)


# -- evaluation API ---------------------------------------------------------------------------
def test_set_metrics_by_hand():
    pairs = [({"a", "b"}, {"a"}), (set(), {"b"}), (set(), set()), ({"c"}, {"c"})]
    m = set_metrics(pairs, labels=["a", "b", "c"])
    # TP a,c = 2; FP b = 1; FN b = 1 -> micro 4/6; per class a 1, b 0, c 1
    assert m.metrics["micro_f1"] == pytest.approx(4 / 6)
    assert m.per_class == {"a": 1.0, "b": 0.0, "c": 1.0}
    assert m.metrics["macro_f1"] == pytest.approx(2 / 3)
    assert m.metrics["exact_match"] == 0.5
    assert m.metrics["sample_f1"] == pytest.approx((2 / 3 + 0 + 1 + 1) / 4)
    assert m.metrics["precision"] == pytest.approx(2 / 3) and m.metrics["recall"] == pytest.approx(2 / 3)
    assert set_metrics([({"zzz"}, {"a"})], labels=["a"]).metrics["precision"] == 0.0  # outside labels: ignored
    assert accuracy([]) == 0.0 and accuracy([True, False]) == 0.5


def test_other_tasks_plug_in_metrics(monkeypatch):
    monkeypatch.setitem(_METRICS, "dummy", [])

    @register_metric("dummy")
    def exact(records):
        return MetricSet({"accuracy": accuracy(r.record["completion"] == r.record["reference"]["answer"] for r in records)})

    @register_metric("dummy")
    def length(records):
        return MetricSet({"mean_length": sum(len(r.record["completion"]) for r in records) / len(records)})

    assert metric_functions("dummy") == [exact, length]
    scored = Scorer({"name": "d", "components": [{"name": "f", "kind": "format.tags", "params": {"tags": ["x"]}}]}).score(
        [{"completion": "A", "reference": {"answer": "A"}, "policy": "p1"},
         {"completion": "B", "reference": {"answer": "A"}, "policy": "p1"},
         {"completion": "<x>A</x>", "reference": {"answer": "A"}, "policy": "p2"}]
    )  # fmt: skip
    by_policy = {r.policy: r for r in evaluate_by_policy(scored, task="dummy")}
    assert by_policy["p1"].metrics == {"accuracy": 0.5, "mean_length": 1.0}
    assert by_policy["p1"].mean_reward == 0.0 and by_policy["p2"].mean_reward == 1.0
    assert by_policy["p2"].n == 1 and by_policy["p2"].per_class is None

    @register_metric("dummy")
    def clash(records):
        return MetricSet({"accuracy": 0.0})

    with pytest.raises(ValueError, match="accuracy"):
        evaluate(scored, task="dummy", policy="p1")


def test_evaluation_result_serialises(results):
    d = results["hedge"].to_dict()
    assert d["policy"] == "hedge" and d["n"] == 400 and d["statuses"] == {"ok": 400}
    assert set(d["metrics"]) >= {"micro_f1", "macro_f1", "exact_match", "sample_f1"}
