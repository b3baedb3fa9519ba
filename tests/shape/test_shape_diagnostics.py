"""Zero-variance group report."""

from __future__ import annotations

import numpy as np
import pytest

from medreward.shape import ZeroVarianceReport, grpo_advantages, zero_variance_groups


def test_report_hand_computed():
    rep = zero_variance_groups([1, 1, 0, 1, 0.5, 0.5, 7, None, None], ["a", "a", "b", "b", "c", "c", "d", "e", "e"])
    assert isinstance(rep, ZeroVarianceReport)
    assert rep.n_groups == 5
    assert rep.group_ids == ("a", "c", "d", "e")  # singleton d and all-None e give no signal either
    assert rep.count == rep.n_zero_variance == 4
    assert rep.fraction == pytest.approx(0.8)
    assert rep.sample_mask.tolist() == [True, True, False, False, True, True, True, True, True]


def test_integer_ids_with_gaps_and_atol():
    rep = zero_variance_groups([0.5, 0.5000001, 1.0, 0.0], [10, 10, 3, 3])
    assert rep.n_groups == 2 and rep.group_ids == ()
    rep = zero_variance_groups([0.5, 0.5000001, 1.0, 0.0], [10, 10, 3, 3], atol=1e-3)
    assert rep.group_ids == (10,)


def test_masked_groups_are_exactly_those_with_zero_advantage():
    rng = np.random.default_rng(0)
    r = rng.integers(0, 2, 400).astype(float)
    g = np.repeat(np.arange(100), 4)
    rep = zero_variance_groups(r, g)
    adv = grpo_advantages(r, g)
    zero_groups = np.array([np.all(adv[g == k] == 0) for k in range(100)])
    assert rep.group_ids == tuple(np.flatnonzero(zero_groups).tolist())


def test_empty_and_mismatched():
    rep = zero_variance_groups([], [])
    assert (rep.n_groups, rep.n_zero_variance, rep.fraction, rep.group_ids) == (0, 0, 0.0, ())
    with pytest.raises(ValueError, match="rewards has length 2 but groups has length 3"):
        zero_variance_groups([1.0, 2.0], [0, 0, 1])
    with pytest.raises(ValueError, match="atol"):
        zero_variance_groups([1.0], [0], atol=-1.0)
