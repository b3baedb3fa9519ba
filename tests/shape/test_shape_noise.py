"""Per-group reward flips (Noisy-Rewards-in-Learning-to-Reason)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medreward.shape import flip_rewards, group_flip_mask


def test_p_zero_is_identity_copy():
    r = np.array([1.0, 0.0, 1.0])
    out = flip_rewards(r, [0, 0, 1])
    assert out.tolist() == r.tolist() and out is not r


def test_p_one_flips_everything():
    assert flip_rewards([1.0, 0.0, 0.25, None], [0, 1, 2, 2], p=1.0, seed=3)[:3].tolist() == [0.0, 1.0, 0.75]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=60), st.floats(0.0, 1.0), st.integers(0, 2**32))
def test_decision_constant_within_group_and_reproducible(groups, p, seed):
    rewards = [float(i % 2) for i in range(len(groups))]
    out = flip_rewards(rewards, groups, p=p, seed=seed)
    again = flip_rewards(rewards, groups, p=p, seed=seed)
    np.testing.assert_array_equal(out, again)
    flipped = out != np.asarray(rewards)
    g = np.asarray(groups)
    for key in set(groups):
        assert len(set(flipped[g == key])) == 1


def test_rate_matches_p_and_seeds_differ():
    groups = np.repeat(np.arange(20_000), 4)
    mask = group_flip_mask(groups, p=0.3, seed=0)
    assert abs(mask[::4].mean() - 0.3) < 0.02
    assert not np.array_equal(mask, group_flip_mask(groups, p=0.3, seed=1))


def test_generator_seed_and_order_independence():
    groups = np.array([3, 1, 3, 2, 1, 2])
    a = group_flip_mask(groups, p=0.5, seed=np.random.default_rng(7))
    perm = np.array([5, 4, 3, 2, 1, 0])
    b = group_flip_mask(groups[perm], p=0.5, seed=7)
    np.testing.assert_array_equal(a[perm], b)  # decisions belong to the group, not to positions


def test_nan_stays_nan_and_bad_input():
    assert math.isnan(flip_rewards([None], [0], p=1.0)[0])
    for bad in (-0.1, 1.1, float("nan")):
        with pytest.raises(ValueError, match="p must be in"):
            flip_rewards([1.0], [0], p=bad)
    with pytest.raises(ValueError, match="seed"):
        flip_rewards([1.0], [0], p=0.5, seed="abc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rewards has length 1 but groups has length 2"):
        flip_rewards([1.0], [0, 0], p=0.5)
    assert flip_rewards([], [], p=0.5).shape == (0,)
