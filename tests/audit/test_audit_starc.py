"""STARC distance (medreward.audit.starc): golden values on hand-built rewards, the invariances
the one-step canonicalisation promises, the identity with the per-prompt Pearson correlation
(checked against scipy), and the prompts where the distance is undefined."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr

from medreward.audit.starc import standardise, starc_distance


def _random_rewards(seed: int = 0, n_groups: int = 12, size: int = 6):
    rng = np.random.default_rng(seed)
    groups = [f"p{g}" for g in range(n_groups) for _ in range(size)]
    return rng.normal(size=n_groups * size), groups


def test_identical_rewards_are_at_distance_zero():
    r, groups = _random_rewards()
    result = starc_distance(r, r, groups)
    assert result.distance == pytest.approx(0.0, abs=1e-12)
    assert result.n_groups == result.n_groups_used == 12 and result.n_groups_skipped == 0


def test_positive_affine_transforms_are_at_distance_zero():
    r, groups = _random_rewards(1)
    assert starc_distance(r, 3.5 * r - 7.0, groups).distance == pytest.approx(0.0, abs=1e-12)
    # a different positive scale and offset per prompt (the one-step canonicalisation removes the
    # offset, the per-prompt normalisation the scale)
    scale = {g: 0.1 + i for i, g in enumerate(dict.fromkeys(groups))}
    shift = {g: -3.0 * i for i, g in enumerate(dict.fromkeys(groups))}
    other = [scale[g] * v + shift[g] for v, g in zip(r, groups)]
    assert starc_distance(r, other, groups).distance == pytest.approx(0.0, abs=1e-12)


def test_opposite_rewards_are_at_distance_one():
    r, groups = _random_rewards(2)
    assert starc_distance(r, -r, groups).distance == pytest.approx(1.0, abs=1e-12)
    assert starc_distance(r, 5.0 - 2.0 * r, groups).distance == pytest.approx(1.0, abs=1e-12)


def test_hand_computed_example():
    # p1: a = [1,0,0], b = [0,1,0]: centred a = [2,-1,-1]/3, unit a = [2,-1,-1]/√6, unit b = [-1,2,-1]/√6,
    #     ‖â − b̂‖ = ‖[3,-3,0]‖/√6 = √3, halved: √3/2
    # p2: a = [1,2,3], b = [1,3,2]: unit a = [-1,0,1]/√2, unit b = [-1,1,0]/√2, ‖â − b̂‖ = ‖[0,-1,1]‖/√2 = 1 → 0.5
    # p3: a = [0,1], b = [0,2]: same after normalising → 0
    # p4: a constant ([1,1]) → skipped; p5: one rollout → skipped
    a = [1, 0, 0, 1, 2, 3, 0, 1, 1, 1, 4]
    b = [0, 1, 0, 1, 3, 2, 0, 2, 0, 1, 9]
    groups = ["p1"] * 3 + ["p2"] * 3 + ["p3"] * 2 + ["p4"] * 2 + ["p5"]
    result = starc_distance(a, b, groups)
    assert result.distance == pytest.approx((math.sqrt(3) / 2 + 0.5 + 0.0) / 3, abs=1e-12)
    assert result.n_groups == 5 and result.n_groups_used == 3 and result.n_groups_skipped == 2
    assert result.skipped == {"constant_a": 1, "single_rollout": 1}
    assert "2 of 5 prompt(s) skipped" in result.note and "1 constant_a" in result.note


def test_equals_the_pearson_form_per_prompt_checked_against_scipy():
    rng = np.random.default_rng(3)
    a, groups = _random_rewards(4, n_groups=8, size=5)
    b = a + rng.normal(scale=0.8, size=a.size)
    expected = []
    for g in dict.fromkeys(groups):
        idx = [i for i, h in enumerate(groups) if h == g]
        rho = pearsonr(a[idx], b[idx]).statistic
        expected.append(math.sqrt((1 - rho) / 2))
    assert starc_distance(a, b, groups).distance == pytest.approx(float(np.mean(expected)), abs=1e-12)


def test_result_lies_in_zero_one_and_ignores_the_order_of_rollouts():
    rng = np.random.default_rng(5)
    for seed in range(20):
        a, groups = _random_rewards(seed, n_groups=4, size=3)
        b = rng.integers(0, 3, size=a.size).astype(float)  # ties and constant groups too
        d = starc_distance(a, b, groups)
        if d.distance is not None:
            assert 0.0 <= d.distance <= 1.0
        order = rng.permutation(a.size)
        shuffled = starc_distance(a[order], b[order], [groups[i] for i in order])
        assert shuffled.distance == pytest.approx(d.distance, abs=1e-12) if d.distance is not None else shuffled.distance is None
        assert shuffled.skipped == d.skipped


def test_constant_and_single_rollout_prompts_leave_the_distance_undefined_not_zero():
    result = starc_distance([0.1, 0.1, 0.1, 1.0, 0.0, 7.0], [0, 1, 2, 5, 5, 1], ["a", "a", "a", "b", "b", "c"])
    assert result.distance is None
    assert result.skipped == {"constant_a": 1, "constant_b": 1, "single_rollout": 1}
    assert result.n_groups_used == 0 and "distance undefined" in result.note
    both = starc_distance([2, 2], [3, 3], ["a", "a"])
    assert both.distance is None and both.skipped == {"constant_both": 1}
    assert starc_distance([], [], []).distance is None
    assert result.to_dict()["distance"] is None


def test_standardise_is_unit_norm_and_centred():
    s = standardise([3.0, 1.0, 2.0, 10.0])
    assert float(np.linalg.norm(s)) == pytest.approx(1.0) and float(s.sum()) == pytest.approx(0.0, abs=1e-12)
    assert standardise([5.0]) is None and standardise([0.1] * 7) is None


def test_bootstrap_interval_is_seeded_and_brackets_the_distance():
    a, groups = _random_rewards(6, n_groups=30, size=4)
    b = a + np.random.default_rng(7).normal(size=a.size)
    first = starc_distance(a, b, groups, n_boot=500, seed=1)
    again = starc_distance(a, b, groups, n_boot=500, seed=1)
    assert (first.ci_low, first.ci_high) == (again.ci_low, again.ci_high)
    assert first.ci_low < first.distance < first.ci_high
    assert starc_distance(a, b, groups).ci_low is None  # no bootstrap unless asked


@pytest.mark.parametrize(
    ("a", "b", "groups", "message"),
    [
        ([1.0, float("nan")], [1.0, 2.0], ["x", "x"], "finite"),
        ([1.0, None], [1.0, 2.0], ["x", "x"], "rewards_a"),
        ([1.0, 2.0], [1.0, 2.0], ["x"], "same length"),
    ],
)
def test_bad_input_is_a_clear_error(a, b, groups, message):
    with pytest.raises(ValueError, match=message):
        starc_distance(a, b, groups)
