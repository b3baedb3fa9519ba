"""pass@k / maj@k estimators, per-task answers and evaluate_policy with scripted policies (no model)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medreward.errors import InputError
from medreward.evaluation.answers import correctness_rule, judge_samples
from medreward.evaluation.estimators import maj_at_k, majority_index, majority_vote, mean_pass_at_k, pass_at_k
from medreward.evaluation.policy_eval import (
    HELDOUT_SEED,
    check_cases,
    check_spec_fits,
    evaluate_policy,
    heldout_cases,
    prompt_messages,
)
from medreward.runner import Scorer
from medreward.tasks import get_task


def codex_pass_at_k(n: int, c: int, k: int) -> float:
    """The reference: the numpy snippet of Chen et al. 2021 (openai/human-eval, human_eval/evaluation.py)."""
    if n - c < k:
        return 1.0
    return 1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1))


# -- pass@k ---------------------------------------------------------------------------------
def test_pass_at_k_hand_values():
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    assert pass_at_k(10, 1, 1) == pytest.approx(0.1)  # pass@1 = c/n
    assert pass_at_k(3, 0, 3) == 0.0
    assert pass_at_k(3, 1, 3) == 1.0  # n - c < k: every draw of 3 holds the correct one
    assert pass_at_k(2, 2, 1) == 1.0


@pytest.mark.parametrize("n", [1, 2, 5, 10, 37])
def test_pass_at_k_equals_the_binomial_formula_and_the_codex_snippet(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            exact = 1 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)
            assert pass_at_k(n, c, k) == pytest.approx(codex_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_stable_for_large_n():
    # math.comb ratios overflow float; the product form stays exact enough
    assert pass_at_k(2000, 3, 100) == pytest.approx(codex_pass_at_k(2000, 3, 100), rel=1e-12)
    assert 0 < pass_at_k(2000, 3, 100) < 1


@pytest.mark.parametrize("n,c,k", [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)])
def test_pass_at_k_rejects_impossible_counts(n, c, k):
    with pytest.raises(ValueError):
        pass_at_k(n, c, k)


def test_mean_pass_at_k():
    assert mean_pass_at_k([(4, 1), (4, 0), (4, 4)], 2) == pytest.approx((0.5 + 0 + 1) / 3)
    assert mean_pass_at_k([], 1) == 0.0


# -- maj@k ----------------------------------------------------------------------------------
def test_majority_vote_counts_ties_and_abstentions():
    assert majority_vote(["A", "B", "B", "A", "C"]) == "A"  # 2-2 tie: A was seen first
    assert majority_vote([None, None, "C"]) == "C"  # unparsable samples do not vote
    assert majority_vote([None]) is None
    assert majority_index(["x", "y", "y"]) == 1
    assert majority_vote([frozenset({"a", "b"}), frozenset({"b", "a"}), frozenset()]) == frozenset({"a", "b"})


def test_maj_at_k_hand_values():
    cases = [
        (["A", "B", "A", "B", "B"], [True, False, True, False, False]),  # first 3: A wins → correct; all 5: B
        ([None, None, "C"], [False, False, True]),  # only C votes → correct
        ([None, None, None], [False, False, False]),  # nobody answered → wrong
    ]
    assert maj_at_k(cases, 3) == pytest.approx(2 / 3)
    assert maj_at_k(cases, 5) == pytest.approx(1 / 3)  # case 1 flips to B
    assert maj_at_k(cases, 1) == pytest.approx(1 / 3)  # first sample: A (right), None, None
    with pytest.raises(ValueError):
        maj_at_k(cases, 0)
    with pytest.raises(ValueError):
        maj_at_k([(["A"], [True, False])], 1)


# -- per-task answers -----------------------------------------------------------------------
def _scored(task, completions, references):
    preset = get_task(task).preset
    return Scorer(preset).score([{"completion": c, "reference": r} for c, r in zip(completions, references)])


def test_toxicology_answers_are_class_sets_with_synonyms():
    ref = {"substances": ["opioids", "ethanol"]}
    judged = judge_samples("toxicology", _scored("toxicology", [
        "<think>x</think><answer>heroin, alcohol</answer>",   # synonyms of both classes
        "<think>x</think><answer>ethanol; opioids</answer>",
        "<think>x</think><answer>opioids</answer>",
        "no answer tags at all",
        "<think>x</think><answer>none</answer>",
    ], [ref] * 5))  # fmt: skip
    assert [j.correct for j in judged] == [True, True, False, False, False]
    assert judged[0].answer == judged[1].answer == frozenset({"opioids", "ethanol"})
    assert judged[3].answer is None and judged[3].predicted_labels is None
    assert [j.predicted_labels for j in judged] == [2, 2, 1, None, 0]
    assert {j.reference_labels for j in judged} == {2}
    empty = judge_samples("toxicology", _scored("toxicology", ["<think>x</think><answer>none</answer>"], [{"substances": []}]))
    assert empty[0].correct and empty[0].answer == frozenset()


def test_mcq_calculator_icd_answers():
    mcq = judge_samples("mcq", _scored("mcq", ["<think>x</think><answer>C</answer>", "<think>x</think><answer>B</answer>"],
                                       [{"answer": "C", "options": {"A": "a", "B": "b", "C": "c", "D": "d"}}] * 2))
    assert [(j.answer, j.correct) for j in mcq] == [("C", True), ("B", False)]
    calc_ref = {"value": 23.4, "unit": "mL/min"}
    calc = judge_samples("calculator", _scored("calculator", [
        "<think>x</think><answer>23.1 mL/min</answer>", "<think>x</think><answer>23.14 mL/min</answer>",
        "<think>x</think><answer>40 mL/min</answer>", "<think>x</think><answer>unknown</answer>",
    ], [calc_ref] * 4))  # fmt: skip
    assert [j.correct for j in calc] == [True, True, False, False]
    assert calc[0].answer == calc[1].answer == 23.1  # 3 significant digits: the two vote together
    assert calc[3].answer is None
    icd = judge_samples("icd_coding", _scored("icd_coding", [
        "<think>x</think><answer>E11.9, I10</answer>", "<think>x</think><answer>i10; e11.9</answer>",
        "<think>x</think><answer>I10</answer>", "<think>x</think><answer>I10, not E11.9</answer>",
    ], [{"codes": ["I10", "E11.9"]}] * 4))  # fmt: skip
    assert [j.correct for j in icd] == [True, True, False, False]  # a negated code is not predicted, as in the reward
    assert icd[0].answer == icd[1].answer and [j.predicted_labels for j in icd] == [2, 2, 1, 1]


def test_correct_threshold_replaces_the_task_rule():
    scored = _scored("toxicology", ["<think>x</think><answer>opioids</answer>"], [{"substances": ["opioids", "ethanol"]}])
    reward = scored[0].reward
    assert 0 < reward < 1
    assert not judge_samples("toxicology", scored)[0].correct
    assert judge_samples("toxicology", scored, correct_threshold=reward)[0].correct
    assert not judge_samples("toxicology", scored, correct_threshold=reward + 1e-6)[0].correct
    assert correctness_rule("toxicology", 0.5) == "reward >= 0.5"
    assert "exact match" in correctness_rule("toxicology")


# -- evaluate_policy ------------------------------------------------------------------------
TOX_CASES = [
    {"id": "a", "prompt": [{"role": "user", "content": "case a"}], "task": "toxicology", "reference": {"substances": ["opioids"]}},
    {"id": "b", "prompt": "case b", "reference": {"substances": ["ethanol", "opioids"]}},
]
SCRIPT = {
    # case a: 1 of 3 correct; majority of the first 2 is {opioids, ethanol} (wrong)
    "case a": ["<think>r</think><answer>opioids, ethanol</answer>", "<think>r</think><answer>opioids, ethanol</answer>",
               "<think>r</think><answer>opioids</answer>"],
    # case b: 2 of 3 correct (one without tags), majority right
    "case b": ["<think>r</think><answer>ethanol, opioids</answer>", "<answer>opioids, ethanol</answer>", "I do not know"],
}  # fmt: skip


def scripted(prompts, n, seed):
    return [SCRIPT[p[-1]["content"]][:n] for p in prompts]


def test_evaluate_policy_hand_computed_report():
    kept = []
    report = evaluate_policy(scripted, TOX_CASES, task="toxicology", k=2, samples=3, seed=5, keep=kept, batch_size=1)
    assert report.n_cases == 2 and report.n_samples == 6 and report.samples_per_case == 3
    # pass@1 = mean(c/n) = (1/3 + 2/3) / 2; pass@2 = mean(1 - C(n-c,2)/C(3,2)) = ((1 - 1/3) + 1) / 2
    assert report.pass_at_1 == pytest.approx(0.5)
    assert report.pass_at_k == pytest.approx((2 / 3 + 1) / 2)
    assert report.maj_at_k == pytest.approx(0.5)
    # format: 4 of 6 are exactly <think>…</think><answer>…</answer>
    assert report.format_rate == pytest.approx(4 / 6)
    texts = [t for k in ("case a", "case b") for t in SCRIPT[k]]
    assert report.mean_length_chars == pytest.approx(sum(map(len, texts)) / 6)
    assert report.mean_length_tokens is None
    # hedge: predicted labels over the 5 answered samples = (2+2+1+2+2)/5; reference over all 6 = (1*3+2*3)/6
    assert report.mean_predicted_labels == pytest.approx(9 / 5)
    assert report.mean_reference_labels == pytest.approx(1.5)
    assert report.hedge_ratio == pytest.approx((9 / 5) / 1.5)
    # the task metric is the registered toxicology metric over every sample
    # a: TP 3, FP 2 (ethanol twice); b: TP 4, FN 2 (the sample without tags predicts nothing)
    assert report.metrics["micro_f1"] == pytest.approx(2 * 7 / (2 * 7 + 2 + 2))
    assert report.statuses == {"ok": 6}
    assert report.spec == "toxicology" and report.seed == 5
    assert [r.record["id"] for r in kept] == ["a#0", "a#1", "a#2", "b#0", "b#1", "b#2"]
    assert {r.record["group"] for r in kept} == {"a", "b"}
    assert report.mean_reward == pytest.approx(sum(r.reward for r in kept) / 6)
    d = report.to_dict()
    assert d["pass_at_k"] == report.pass_at_k and d["metrics"] == report.metrics and d["k"] == 2


def test_evaluate_policy_passes_seed_and_batches():
    calls = []

    def spy(prompts, n, seed):
        calls.append((len(prompts), n, seed))
        return [["<think>r</think><answer>A</answer>"] * n for _ in prompts]

    cases = get_task("mcq").generate(5, 1)
    progress = []
    evaluate_policy(spy, cases, task="mcq", k=2, seed=100, batch_size=2, on_progress=progress.append)
    assert calls == [(2, 2, 100), (2, 2, 102), (1, 2, 104)]
    assert progress == [2, 2, 1]


def test_evaluate_policy_count_tokens_and_threshold():
    report = evaluate_policy(scripted, TOX_CASES, task="toxicology", k=1, samples=3, count_tokens=lambda t: len(t.split()),
                             correct_threshold=0.0)
    assert report.pass_at_1 == 1.0 and report.correct_definition == "reward >= 0"
    texts = [t for k in ("case a", "case b") for t in SCRIPT[k]]
    assert report.mean_length_tokens == pytest.approx(sum(len(t.split()) for t in texts) / 6)


@pytest.mark.parametrize("bad", [
    lambda prompts, n, seed: [["x"] * n],                      # too few rows
    lambda prompts, n, seed: [["x"] * (n + 1) for _ in prompts],  # wrong count per prompt
    lambda prompts, n, seed: "x",
])  # fmt: skip
def test_generate_of_the_wrong_shape_is_an_input_error(bad):
    with pytest.raises(InputError, match="completions"):
        evaluate_policy(bad, TOX_CASES, task="toxicology", k=1, samples=2)


def test_bad_cases_and_settings():
    with pytest.raises(InputError, match="no reference"):
        check_cases([{"prompt": "p", "reference": {}}], "toxicology")
    with pytest.raises(InputError, match="no prompt"):
        check_cases([{"reference": {"substances": []}}], "toxicology")
    with pytest.raises(InputError, match="'mcq' case"):
        check_cases([{"prompt": "p", "task": "mcq", "reference": {"answer": "A"}}], "toxicology")
    with pytest.raises(InputError, match="no cases"):
        check_cases([], "toxicology")
    with pytest.raises(InputError, match="k <= samples"):
        evaluate_policy(scripted, TOX_CASES, task="toxicology", k=3, samples=2)
    assert prompt_messages({"prompt": "hi"}) == [{"role": "user", "content": "hi"}]


def test_spec_that_does_not_fit_the_task():
    cases = get_task("toxicology").generate(2, 0)
    with pytest.raises(InputError, match="does not fit task 'toxicology'.*answer"):
        check_spec_fits(Scorer("mcq"), "toxicology", cases)
    check_spec_fits(Scorer("toxicology"), "toxicology", cases)  # fits: no error


def test_heldout_cases_are_disjoint_from_training_draws():
    for task in ("toxicology", "mcq"):
        train = get_task(task).generate(60, 0)
        held = heldout_cases(task, 30, exclude=train)
        assert len(held) == 30
        assert all(c["id"].startswith(f"{task}-{HELDOUT_SEED}-") for c in held)
        train_prompts = {str(c["prompt"]) for c in train}
        assert not any(str(c["prompt"]) in train_prompts for c in held)
    # without exclude the finite MCQ bank can repeat a training question; exclude removes exactly those
    train = get_task("mcq").generate(200, 0)
    plain = heldout_cases("mcq", 100)
    overlap = sum(str(c["prompt"]) in {str(t["prompt"]) for t in train} for c in plain)
    filtered = heldout_cases("mcq", 100, exclude=train)
    assert not any(str(c["prompt"]) in {str(t["prompt"]) for t in train} for c in filtered)
    assert overlap == 0 or filtered != plain
    with pytest.raises(InputError):
        heldout_cases("mcq", 0)
