"""Kendall's τ-b for the demo's one-line verdict, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from medreward.cli.demo import rank_agreement
from medreward.cli.ranking import discordant_pairs, kendall_tau
from medreward.baselines.evaluate import EvaluationResult


def test_same_and_reversed_order():
    assert kendall_tau([1, 2, 3, 4], [0.1, 0.5, 0.7, 0.9]) == 1.0
    assert kendall_tau([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0


def test_the_demo_case_by_hand():
    """Six baselines (the demo's numbers): 15 pairs; hedge/majority discordant, empty/format_only
    tied in micro-F1 only. C = 13, D = 1, Tx = 0, Ty = 1: τ-b = 12 / sqrt(15 * 14)."""
    names = ["empty", "format_only", "hedge", "history", "majority", "toxidrome"]
    reward = [0.1765, 0.1, 0.2751, 0.6101, 0.2605, 0.7811]
    micro_f1 = [0.0, 0.0, 0.2005, 0.6087, 0.2109, 0.75]
    assert kendall_tau(reward, micro_f1) == pytest.approx(12 / math.sqrt(15 * 14))
    assert discordant_pairs(names, reward, micro_f1) == [("hedge", "majority")]


def test_ties_on_both_sides_by_hand():
    """x = [1, 1, 2, 3], y = [1, 2, 2, 3]: 6 pairs; (0,1) tied in x, (1,2) tied in y, the other four
    concordant: τ-b = 4 / sqrt(5 * 5) = 0.8 (scipy.stats.kendalltau gives 0.8 too)."""
    assert kendall_tau([1, 1, 2, 3], [1, 2, 2, 3]) == pytest.approx(0.8)


def test_undefined_cases():
    assert kendall_tau([1.0], [2.0]) is None
    assert kendall_tau([1, 1, 1], [1, 2, 3]) is None
    with pytest.raises(ValueError, match="paired"):
        kendall_tau([1, 2], [1])


def _result(policy: str, reward: float | None, f1: float) -> EvaluationResult:
    return EvaluationResult(policy, "toxicology", 10, reward, {"micro_f1": f1})


def test_the_demo_line():
    same = [_result("a", 0.9, 0.8), _result("b", 0.5, 0.4), _result("c", None, 0.9)]  # c: no ok record
    assert rank_agreement(same) == (
        "Kendall τ between mean reward and micro-F1 across the baselines: +1.00 (1 = same order); "
        "the reward orders the 2 policies as micro-F1 does"
    )
    swapped = [_result("a", 0.9, 0.4), _result("b", 0.5, 0.8), _result("c", 0.1, 0.1)]
    assert rank_agreement(swapped).endswith(": +0.33 (1 = same order); ordered the other way round by the reward: a/b")
