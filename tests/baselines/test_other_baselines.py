"""Baselines of the calculator, ICD coding and MCQ tasks, scored with their presets: what the
rewards pay for each kind of policy (and for each kind of slip), and the task metrics."""

from __future__ import annotations

import copy

import pytest

from medreward.baselines import list_policies, run_policy
from medreward.baselines.base import policy_rng
from medreward.baselines.calculators import (
    ARITHMETIC_SLIP_RATE,
    UNIT_SLIP_RATE,
    plan_answer,
)
from medreward.baselines.evaluate import evaluate, metric_functions
from medreward.baselines.icd_coding import answer_codes
from medreward.parse.numbers import final_number
from medreward.parse.tags import extract_section
from medreward.runner import Scorer
from medreward.tasks.calculators import generate_calculators
from medreward.tasks.icd_coding import generate_icd_coding
from medreward.tasks.mcq import generate_mcq


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values)


# -- calculator ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calc_cases() -> list[dict]:
    return generate_calculators(400, seed=31)


@pytest.fixture(scope="module")
def slips(calc_cases):
    rollouts = run_policy("calculator", "correct_with_slips", calc_cases, seed=0)
    rng = policy_rng("calculator", "correct_with_slips", 0)  # the generator run_policy handed the policy
    plans = [plan_answer(case, rng) for case in calc_cases]
    return rollouts, plans, Scorer("calculator").score(rollouts)


def test_correct_with_slips_scores_high_but_imperfect(slips):
    _, plans, scored = slips
    assert all(s.status.value == "ok" for s in scored)
    mean = _mean(s.reward for s in scored)
    assert 0.8 < mean < 0.99
    slipped = [p for p in plans if p.slip]
    # the slip rates bound how many answers can be wrong
    assert 0 < len(slipped) <= (UNIT_SLIP_RATE + ARITHMETIC_SLIP_RATE + 0.06) * len(plans)
    for plan, record in zip(plans, scored):
        if plan.slip is None:
            assert record.components["value"] == 1.0, record.info


def test_unit_slips_score_zero_on_the_unit_aware_numeric_component(slips):
    rollouts, plans, scored = slips
    kinds = {p.slip for p in plans}
    assert {"input_unit", "output_unit", "off_by_one", "rounding"} <= kinds
    for plan, rollout, record in zip(plans, rollouts, scored):
        if plan.slip in ("input_unit", "output_unit"):
            assert record.components["value"] == 0.0, (plan, record.info)
        if plan.slip == "output_unit":
            # the number alone is right: a unit-blind number match would have paid this answer
            answer = extract_section(rollout["completion"], "answer").content
            assert final_number(answer).value == pytest.approx(rollout["reference"]["value"])
        if plan.slip == "off_by_one":
            assert record.components["value"] == 0.0


def test_constant_policy_is_far_below_the_oracle(calc_cases, slips):
    scored = Scorer("calculator").score(run_policy("calculator", "constant", calc_cases))
    constant = evaluate(scored, task="calculator", policy="constant")
    oracle = evaluate(slips[2], task="calculator", policy="correct_with_slips")
    assert constant.metrics["accuracy"] < 0.3
    assert oracle.metrics["accuracy"] > 0.85
    assert oracle.metrics["accuracy"] == pytest.approx(_mean(s.components["value"] == 1.0 for s in slips[2]))
    assert oracle.metrics["answered"] == 1.0


def test_policies_describe_themselves_and_oracles_say_so():
    names = {(p.task, p.name): p.description for p in list_policies()}
    assert "ORACLE" in names[("calculator", "correct_with_slips")]
    assert "ORACLE" in names[("icd_coding", "parent_code")]
    for key in [("calculator", "constant"), ("icd_coding", "exact_lookup"), ("icd_coding", "common_codes"),
                ("mcq", "always_a"), ("mcq", "random"), ("mcq", "keyword_overlap")]:  # fmt: skip
        assert key in names and "ORACLE" not in names[key]
    for task in ("calculator", "icd_coding", "mcq"):
        assert metric_functions(task)


# -- ICD coding ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def icd_cases() -> list[dict]:
    return generate_icd_coding(200, seed=5)


def test_parent_code_gets_partial_credit(icd_cases):
    rollouts = run_policy("icd_coding", "parent_code", icd_cases)
    scored = Scorer("icd_coding").score(rollouts)
    codes = _mean(s.components["codes"] for s in scored)
    assert 0.3 < codes < 0.75  # same category (0.5 each) but not the billable code
    result = evaluate(scored, task="icd_coding", policy="parent_code")
    assert result.metrics["code_micro_f1"] < 0.1  # exact-match F1: a parent is not the code
    assert 0.0 < _mean(s.reward for s in scored) < 1.0


def test_icd_baselines_order_and_metrics(icd_cases):
    results = {}
    for name in ("exact_lookup", "common_codes"):
        scored = Scorer("icd_coding").score(run_policy("icd_coding", name, icd_cases))
        results[name] = evaluate(scored, task="icd_coding", policy=name)
    # the notes use the classification's own wording: a verbatim lookup solves the task
    assert results["exact_lookup"].metrics["code_micro_f1"] > 0.95
    assert results["common_codes"].metrics["code_micro_f1"] < 0.05
    assert results["exact_lookup"].mean_reward > results["common_codes"].mean_reward


def test_icd_metric_reads_only_the_answer_section():
    assert answer_codes("I think E11.9 <answer>I10</answer>") == ["I10"]
    assert answer_codes("no tags E11.9") == []
    assert answer_codes("<answer>e119, S72.001a, HbA1c, I10-I15</answer>") == ["E11.9", "S72.001A"]


def test_non_oracle_policies_ignore_the_reference(icd_cases, calc_cases):
    mcq_cases = generate_mcq(30, seed=2)
    for task, name, cases in [("icd_coding", "exact_lookup", icd_cases[:30]), ("calculator", "constant", calc_cases[:30]),
                              ("mcq", "keyword_overlap", mcq_cases), ("mcq", "random", mcq_cases)]:  # fmt: skip
        blind = [{k: v for k, v in copy.deepcopy(c).items() if k != "reference"} for c in cases]
        assert [r["completion"] for r in run_policy(task, name, cases)] == [
            r["completion"] for r in run_policy(task, name, blind)
        ]


# -- MCQ ----------------------------------------------------------------------------------------------
def test_mcq_baselines_sit_at_chance():
    cases = generate_mcq(500, seed=9)  # 500 = 100 blocks of 5: every letter is correct 100 times
    accuracy = {}
    for name in ("always_a", "random", "keyword_overlap"):
        scored = Scorer("mcq").score(run_policy("mcq", name, cases))
        result = evaluate(scored, task="mcq", policy=name)
        accuracy[name] = result.metrics["accuracy"]
        assert result.metrics["answered"] == 1.0
        assert result.mean_reward == pytest.approx(0.1 + 0.9 * accuracy[name])
    assert accuracy["always_a"] == 0.2  # letters are balanced exactly
    assert 0.12 < accuracy["random"] < 0.28
    assert accuracy["keyword_overlap"] < 0.5
