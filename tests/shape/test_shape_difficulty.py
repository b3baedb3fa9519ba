"""Hard-sample mining and VeRPO difficulty weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medreward.shape import (
    dense_pass_reward,
    difficulty_weights,
    group_pass_rate,
    hard_sample_mask,
    verpo_reward,
)


def test_pass_rate_and_default_mask_drop_solved_and_failed():
    r = [1, 1, 1, 0, 0, 0, 1, 0, 0, 0.7, None, None]
    g = [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 4, 4]
    rate = group_pass_rate(r, g)
    np.testing.assert_allclose(rate[:10], [1, 1, 1, 0, 0, 0, 1 / 3, 1 / 3, 1 / 3, 1])
    assert np.isnan(rate[10:]).all()
    assert hard_sample_mask(r, g).tolist() == [False] * 6 + [True] * 3 + [False] * 3


def test_inclusive_band_like_prime():
    r = [1, 0, 0, 0, 0, 1, 1, 1, 1, 0]
    g = [0, 0, 0, 0, 0, 1, 1, 1, 1, 1]  # pass rates 0.2 and 0.8
    assert hard_sample_mask(r, g, lo=0.2, hi=0.8, inclusive=True).all()
    assert not hard_sample_mask(r, g, lo=0.2, hi=0.8).any()
    assert hard_sample_mask([0.6, 0.4], [0, 0], threshold=0.5).tolist() == [True, True]


def test_mask_bad_parameters():
    with pytest.raises(ValueError, match="lo"):
        hard_sample_mask([1.0], [0], lo=0.9, hi=0.1)
    with pytest.raises(ValueError, match="hi"):
        hard_sample_mask([1.0], [0], hi=2.0)
    assert hard_sample_mask([], []).shape == (0,)


def test_weights_hand_computed():
    passes = [[1, 1, 0], [1, 0, 0]]  # ρ = [1, 0.5, 0]
    w = difficulty_weights(passes, [0, 0], eps=0.01)
    raw = np.array([0.01, 0.51, 1.01])
    np.testing.assert_allclose(w, np.tile(raw / raw.sum(), (2, 1)))
    np.testing.assert_allclose(dense_pass_reward(passes, [0, 0], eps=0.01), [(0.01 + 0.51) / 1.53, 0.01 / 1.53])


@pytest.mark.parametrize("value", [0.0, 1.0])
def test_uniform_fallback_even_with_zero_eps(value):
    w = difficulty_weights([[value, value], [value, value]], [0, 0], eps=0.0)
    np.testing.assert_allclose(w, 0.5)
    assert np.all(np.isfinite(dense_pass_reward([[value, value]], [0], eps=0.0)))


passes_strategy = st.integers(1, 4).flatmap(
    lambda j: st.lists(
        st.lists(st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0, 1), st.none()), min_size=j, max_size=j),
        min_size=1,
        max_size=24,
    )
)


@settings(max_examples=60, deadline=None)
@given(passes_strategy, st.integers(1, 4), st.sampled_from([0.0, 0.01, 0.5]))
def test_weight_and_dense_invariants(passes, n_groups, eps):
    groups = [i % n_groups for i in range(len(passes))]
    p = np.array([[np.nan if x is None else x for x in row] for row in passes])
    w = difficulty_weights(passes, groups, eps=eps)
    for key in set(groups):
        rows = w[np.asarray(groups) == key]
        assert np.allclose(rows, rows[0])  # constant within a group
        if (~np.isnan(p[np.asarray(groups) == key])).any():
            assert rows[0].sum() == pytest.approx(1.0)
    dense = dense_pass_reward(passes, groups, eps=eps)
    has_check = (~np.isnan(p)).any(axis=1)
    assert np.all((dense[has_check] >= -1e-12) & (dense[has_check] <= 1 + 1e-12))
    assert np.isnan(dense[~has_check]).all()
    full = np.where(np.isnan(p), 1.0, p).min(axis=1) >= 1.0
    np.testing.assert_allclose(dense[full & has_check], 1.0)


def test_harder_checks_weigh_more():
    w = difficulty_weights([[1, 1, 0], [1, 0, 0], [1, 1, 1]], [0, 0, 0])[0]
    assert w[0] < w[1] < w[2]


def test_nan_checks_are_left_out():
    passes = [[1, None], [1, 0], [None, None]]
    dense = dense_pass_reward(passes, [0, 0, 0], eps=0.0)
    # ρ = [1, 0] → w = [0, 1]; row 0 only has check 0 (weight 0) → plain mean of its checks
    assert dense[0] == 1.0 and dense[1] == 0.0 and math.isnan(dense[2])


def test_verpo_reward_combinations():
    passes = [[1, 1], [1, 0], [0, 0]]
    out = verpo_reward(passes, [0] * 3, lam=0.5, eps=0.0)
    np.testing.assert_allclose(out, [1.5, 0.5 / 3, 0.0])
    gated = verpo_reward(passes, [0] * 3, lam=0.5, eps=0.0, gated=True)
    np.testing.assert_allclose(gated, [1.0, 0.5 / 3, 0.0])
    with pytest.raises(ValueError, match="lam"):
        verpo_reward(passes, [0] * 3, lam=float("inf"))
    with pytest.raises(ValueError, match="passes has length 3 but groups has length 2"):
        verpo_reward(passes, [0, 0])
    assert difficulty_weights(np.empty((0, 3)), []).shape == (0, 3)
