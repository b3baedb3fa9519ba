"""PAR and LSC against the formulas of PorUna-byte/PAR reward_shaper.py."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medreward.shape import lsc_reward, par_reward


def sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_par_hand_computed():
    out = par_reward([1.0, -0.5], [[0.0, 1.0, 2.0], [0.5, 0.5, 0.5]], k=2.0)
    expected = [(sig(2.0) + sig(0.0) + sig(-2.0)) / 3, sig(-2.0)]
    np.testing.assert_allclose(out, expected, rtol=1e-12)


def test_par_uses_first_max_refs():
    out = par_reward([1.0], [[0.0, 100.0, 100.0]], max_refs=1)
    np.testing.assert_allclose(out, [sig(1.0)])


def test_par_ragged_and_missing_refs():
    out = par_reward([1.0, 1.0, None], [[0.0], [0.0, None, 2.0], [0.0]])
    np.testing.assert_allclose(out[:2], [sig(1.0), (sig(1.0) + sig(-1.0)) / 2])
    assert math.isnan(out[2])
    assert math.isnan(par_reward([1.0], [[None, None]])[0])


def test_par_one_dimensional_refs_mean_one_reference():
    np.testing.assert_allclose(par_reward([0.0, 2.0], [1.0, 1.0]), [sig(-1.0), sig(1.0)])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.floats(-15, 15), min_size=1, max_size=20).flatmap(
        lambda r: st.tuples(
            st.just(r),
            st.lists(st.lists(st.floats(-15, 15), min_size=1, max_size=5), min_size=len(r), max_size=len(r)),
        )
    ),
    st.floats(0.1, 1.0),
)
def test_par_strictly_inside_unit_interval_and_monotone(batch, k):
    rewards, refs = batch
    out = par_reward(rewards, refs, k=k)
    assert np.all((out > 0.0) & (out < 1.0))
    higher = par_reward(np.asarray(rewards) + 0.5, refs, k=k)
    assert np.all(higher > out)


def test_par_saturates_within_closed_interval_for_huge_gaps():
    out = par_reward([1e6, -1e6], [[0.0], [0.0]])
    assert out.tolist() == [1.0, 0.0]


def test_par_bad_input():
    with pytest.raises(ValueError, match="k"):
        par_reward([1.0], [[0.0]], k=0.0)
    with pytest.raises(ValueError, match="max_refs"):
        par_reward([1.0], [[0.0]], max_refs=0)
    with pytest.raises(ValueError, match="rewards has length 2 but ref_rewards has length 1"):
        par_reward([1.0, 2.0], [[0.0]])
    assert par_reward([], np.empty((0, 3))).shape == (0,)


def test_lsc_hand_computed():
    refs = [1.0, 2.0, 4.0]
    mean, std = np.mean(refs), np.std(refs, ddof=1)
    r_ref = NormalDist(mean, std + 1e-5).inv_cdf(0.85)
    out = lsc_reward([3.0], [refs])
    np.testing.assert_allclose(out, [math.log(sig(3.0 - r_ref))], rtol=1e-12)
    # no max_refs cap and single reference: std 0
    single = lsc_reward([3.0], [[1.0]])
    np.testing.assert_allclose(single, [math.log(sig(3.0 - (1.0 + NormalDist().inv_cdf(0.85) * 1e-5)))])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-50, 50), min_size=1, max_size=10), st.lists(st.floats(-50, 50), min_size=1, max_size=6))
def test_lsc_is_nonpositive_and_finite(rewards, refs):
    out = lsc_reward(rewards, [refs] * len(rewards))
    assert np.all(out <= 0.0) and np.all(np.isfinite(out))


def test_lsc_bad_input():
    with pytest.raises(ValueError, match="quantile"):
        lsc_reward([1.0], [[0.0]], quantile=1.0)
    assert math.isnan(lsc_reward([None], [[0.0]])[0])
