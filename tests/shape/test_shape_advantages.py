"""GRPO / Dr. GRPO / batch-scaled / RLOO / GDPO advantages against hand-computed values and invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medreward.compose.aggregate import normalize_then_sum
from medreward.shape import (
    dr_grpo_advantages,
    gdpo_advantages,
    grpo_advantages,
    rloo_advantages,
)


def naive_grpo(rewards, groups, eps=1e-4):
    """Per-group loop reference: TRL formula with NaN left out, NaN/constant/singleton → 0."""
    r = np.asarray(rewards, dtype=float)
    out = np.zeros_like(r)
    for g in set(groups):
        idx = [i for i, x in enumerate(groups) if x == g and not math.isnan(r[i])]
        vals = r[idx]
        if len(vals) < 2 or np.all(vals == vals[0]):
            continue
        out[idx] = (vals - vals.mean()) / (vals.std(ddof=1) + eps)
    return out


batches = (
    st.integers(1, 6)
    .flatmap(
        lambda n_groups: st.tuples(
            st.lists(
                st.one_of(st.none(), st.floats(-5, 5, allow_nan=False), st.sampled_from([0.0, 1.0])),
                min_size=n_groups,
                max_size=40,
            ),
            st.just(n_groups),
        )
    )
    .map(lambda t: (t[0], [i % t[1] for i in range(len(t[0]))]))
)


def test_grpo_trl_hand_computed():
    std = math.sqrt(1 / 3)  # unbiased std of [1, 0, 0, 1]
    adv = grpo_advantages([1.0, 0.0, 0.0, 1.0], [7, 7, 7, 7])
    np.testing.assert_allclose(adv, np.array([0.5, -0.5, -0.5, 0.5]) / (std + 1e-4), rtol=1e-12)


def test_grpo_verl_eps_and_singleton():
    std = math.sqrt(0.5)
    adv = grpo_advantages([1.0, 0.0, 3.0], [0, 0, 1], convention="verl")
    np.testing.assert_allclose(adv, [0.5 / (std + 1e-6), -0.5 / (std + 1e-6), 3.0 / (1 + 1e-6)], rtol=1e-12)
    # verl singleton without std scaling: mean 0 → A = r
    assert dr_grpo_advantages([3.0], [0], convention="verl").tolist() == [3.0]
    # TRL gives a lone rollout nothing to compare with
    assert grpo_advantages([3.0], [0]).tolist() == [0.0]


def test_grpo_batch_scaling_uses_batch_std_and_group_mean():
    r = [1.0, 0.0, 1.0, 1.0]
    adv = grpo_advantages(r, [0, 0, 1, 1], scale="batch")
    batch_std = np.std(r, ddof=1)  # 0.5
    np.testing.assert_allclose(adv, [0.5 / (batch_std + 1e-4), -0.5 / (batch_std + 1e-4), 0.0, 0.0])


def test_dr_grpo_is_mean_centred():
    assert dr_grpo_advantages([3.0, 1.0, 2.0, 4.0], ["a", "a", "b", "b"]).tolist() == [1.0, -1.0, -1.0, 1.0]


def test_custom_eps():
    adv = grpo_advantages([1.0, 0.0], [0, 0], eps=0.0)
    np.testing.assert_allclose(adv, [1 / math.sqrt(2), -1 / math.sqrt(2)])


def test_rloo_hand_computed():
    # A_i = r_i − mean of the other three
    adv = rloo_advantages([1.0, 0.0, 0.0, 0.5], [0, 0, 0, 0])
    expected = [1.0 - 0.5 / 3, 0.0 - 1.5 / 3, 0.0 - 1.5 / 3, 0.5 - 1.0 / 3]
    np.testing.assert_allclose(adv, expected, rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(batches)
def test_matches_naive_loop(batch):
    rewards, groups = batch
    np.testing.assert_allclose(grpo_advantages(rewards, groups), naive_grpo(rewards, groups), rtol=1e-9, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(batches)
def test_rloo_equals_explicit_leave_one_out(batch):
    rewards, groups = batch
    r = np.array([np.nan if x is None else x for x in rewards])
    expected = np.zeros(len(r))
    for i in range(len(r)):
        if math.isnan(r[i]):
            continue
        others = [r[j] for j in range(len(r)) if j != i and groups[j] == groups[i] and not math.isnan(r[j])]
        if others:
            expected[i] = r[i] - np.mean(others)
    np.testing.assert_allclose(rloo_advantages(rewards, groups), expected, atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(batches, st.sampled_from(["group", "batch", "none"]), st.sampled_from(["trl", "verl"]))
def test_advantages_sum_to_zero_per_group_and_are_finite(batch, scale, convention):
    rewards, groups = batch
    g = np.asarray(groups)
    for adv in (grpo_advantages(rewards, groups, scale=scale, convention=convention), rloo_advantages(rewards, groups)):
        assert np.all(np.isfinite(adv))
        for key in set(groups):
            members = g == key
            n_valid = sum(rewards[i] is not None for i in np.flatnonzero(members))
            if convention == "verl" and n_valid == 1:
                continue  # verl's lone rollout keeps r/(1+eps) by design
            assert abs(adv[members].sum()) < 1e-7


def test_none_and_nan_get_zero_and_are_left_out():
    adv = grpo_advantages([1.0, None, 0.0, float("nan")], [0, 0, 0, 0])
    std = math.sqrt(0.5)
    np.testing.assert_allclose(adv, [0.5 / (std + 1e-4), 0.0, -0.5 / (std + 1e-4), 0.0])


def test_all_equal_group_gives_exact_zero_despite_rounding():
    # mean of three 0.1s is not exactly 0.1 in float64; the advantage must still be exactly 0
    for fn in (grpo_advantages, dr_grpo_advantages, rloo_advantages):
        assert fn([0.1, 0.1, 0.1], [0, 0, 0]).tolist() == [0.0, 0.0, 0.0]
    assert grpo_advantages([0.1, 0.1, 0.1, 0.3, 0.7], [0, 0, 0, 1, 1])[:3].tolist() == [0.0, 0.0, 0.0]


def test_all_nan_group_and_empty_batch():
    assert grpo_advantages([None, None], ["a", "a"]).tolist() == [0.0, 0.0]
    for fn in (grpo_advantages, dr_grpo_advantages, rloo_advantages):
        out = fn([], [])
        assert out.shape == (0,) and out.dtype == np.float64
    assert gdpo_advantages(np.empty((0, 2)), []).shape == (0,)


def test_batch_scale_with_single_valid_value_is_finite():
    assert grpo_advantages([1.0, None], [0, 0], scale="batch").tolist() == [0.0, 0.0]
    out = grpo_advantages([2.0], [0], scale="batch", convention="verl")
    np.testing.assert_allclose(out, [2.0 / (1 + 1e-6)])


def test_string_keys_equal_integer_ids():
    r = [0.3, 0.9, 0.1, 0.5, 0.5, 0.2]
    a = grpo_advantages(r, ["p", "q", "p", "q", "r", "r"])
    b = grpo_advantages(r, [0, 1, 0, 1, 2, 2])
    np.testing.assert_array_equal(a, b)
    c = grpo_advantages(r, np.array([10**12, 5, 10**12, 5, 9, 9]))  # sparse ids are compressed
    np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("fn", [grpo_advantages, dr_grpo_advantages, rloo_advantages])
def test_mismatched_lengths_name_both(fn):
    with pytest.raises(ValueError, match=r"rewards has length 3 but groups has length 2"):
        fn([1.0, 2.0, 3.0], [0, 0])


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="scale"):
        grpo_advantages([1.0], [0], scale="std")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="convention"):
        grpo_advantages([1.0], [0], convention="openrlhf")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="eps"):
        grpo_advantages([1.0], [0], eps=-1.0)
    with pytest.raises(ValueError, match="rewards"):
        grpo_advantages([[1.0, 2.0]], [0])


def test_gdpo_hand_computed_and_matches_compose():
    c = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.5], [0.0, 0.0]])
    groups = [0, 0, 0, 0, 1, 1]
    w = np.array([1.0, 2.0])
    np.testing.assert_allclose(
        gdpo_advantages(c, groups, weights=w), normalize_then_sum(c, w, np.array(groups)), rtol=1e-12
    )
    # by hand, group 0, no batch normalisation: z of col 0 = ±0.5/(√(1/3)+1e-4)
    z = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    out = gdpo_advantages(c[:4], [0] * 4, batch_normalize=False)
    np.testing.assert_allclose(out, [0.0, -2 * z, 2 * z, 0.0], rtol=1e-12)


def test_gdpo_bad_input():
    assert gdpo_advantages([[None, None], [1.0, 0.0], [0.0, 1.0]], [0, 0, 0]).tolist()[0] == 0.0
    with pytest.raises(ValueError, match="weights"):
        gdpo_advantages([[1.0, 0.0]], [0], weights=[1.0])
    with pytest.raises(ValueError, match="length 2"):
        gdpo_advantages([[1.0, 0.0], [0.0, 1.0]], [0, 0, 0])
    assert np.all(np.isfinite(gdpo_advantages([[1.0, None], [1.0, None]], [0, 1])))
