"""Clip and Delta process-reward refinements on ragged step lists."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from medreward.shape import (
    RaggedSteps,
    add_final_reward,
    prm_clip,
    prm_clip_delta,
    prm_delta,
)

trajectories = st.lists(st.lists(st.floats(0.0, 1.0), min_size=0, max_size=8), min_size=1, max_size=10)


def test_ragged_layout_roundtrip():
    lists = [[0.1, 0.2], [], [0.3, 0.4, 0.5]]
    s = RaggedSteps.from_lists(lists)
    assert s.offsets.tolist() == [0, 2, 2, 5]
    assert s.to_lists() == lists
    same = RaggedSteps.from_lengths([0.1, 0.2, 0.3, 0.4, 0.5], [2, 0, 3])
    assert same.to_lists() == lists
    np.testing.assert_allclose(s.sums(), [0.3, 0.0, 1.2])


def test_ragged_validation():
    with pytest.raises(ValueError, match="offsets"):
        RaggedSteps(np.array([1.0, 2.0]), np.array([1, 2]))
    with pytest.raises(ValueError, match="non-decreasing"):
        RaggedSteps(np.array([1.0, 2.0]), np.array([0, 2, 1, 2]))
    with pytest.raises(ValueError, match=r"offsets\[-1\] has length 3 but values has length 2"):
        RaggedSteps.from_lengths([1.0, 2.0], [3])
    with pytest.raises(ValueError, match="lengths"):
        RaggedSteps.from_lengths([1.0], [-1, 2])


def test_clip_hand_computed():
    out = prm_clip([[0.9, 0.3], [0.5, 0.1]], eta=0.5)
    np.testing.assert_allclose(out.values, [0.0, -0.2, 0.0, -0.4])
    assert out.offsets.tolist() == [0, 2, 4]
    mean_eta = prm_clip([[0.9, 0.3], [0.6]], eta="mean")  # η = 0.6
    np.testing.assert_allclose(mean_eta.values, [0.0, -0.3, 0.0])
    with pytest.raises(ValueError, match="eta"):
        prm_clip([[0.1]], eta="median")
    with pytest.raises(ValueError, match="eta"):
        prm_clip([[0.1]], eta=float("nan"))


def test_delta_hand_computed_and_no_leak_between_trajectories():
    out = prm_delta([[0.9, 0.6, 0.7], [], [0.4], [0.2, 0.8]])
    np.testing.assert_allclose(out.values, [0.3, -0.1, 0.0, 0.0, -0.6, 0.0])


def test_clip_then_delta():
    steps = [[0.9, 0.2, 0.4], [0.1, 0.7]]
    np.testing.assert_allclose(prm_clip_delta(steps, eta=0.5).values, prm_delta(prm_clip(steps, eta=0.5)).values)
    np.testing.assert_allclose(prm_clip_delta(steps, eta=0.5).values, [0.3, -0.2, 0.0, -0.4, 0.0])


@settings(max_examples=80, deadline=None)
@given(trajectories, st.floats(0.0, 1.0))
def test_clip_keeps_every_prefix_return_nonpositive_and_extra_steps_never_help(lists, eta):
    s = prm_clip(lists, eta=eta)
    assert np.all(s.values <= 0.0)
    assert np.all(s.sums() <= 0.0)
    # repeating a step (the hack Clip targets) never raises a trajectory's return
    longer = prm_clip([t + t[-1:] for t in lists], eta=eta)
    assert np.all(longer.sums() <= s.sums() + 1e-12)


@settings(max_examples=80, deadline=None)
@given(trajectories)
def test_delta_telescopes(lists):
    steps = RaggedSteps.from_lists(lists)
    rtg = prm_delta(steps).returns_to_go().to_lists()
    for traj, g in zip(lists, rtg):
        for t in range(len(traj)):
            assert g[t] == pytest.approx(traj[t] - traj[-1], abs=1e-9)
    assert np.all(prm_delta(steps).values[steps.offsets[1:][steps.lengths > 0] - 1] == 0.0)


@settings(max_examples=50, deadline=None)
@given(trajectories)
def test_returns_to_go_matches_naive(lists):
    got = RaggedSteps.from_lists(lists).returns_to_go().to_lists()
    for traj, g in zip(lists, got):
        expected = [sum(traj[t:]) for t in range(len(traj))]
        np.testing.assert_allclose(g, expected, atol=1e-9)


def test_nan_step_propagates():
    out = prm_delta([[0.5, float("nan"), 0.2]])
    assert np.isnan(out.values[0]) and np.isnan(out.values[1]) and out.values[2] == 0.0
    assert np.isnan(prm_clip([[None]]).values[0])


def test_add_final_reward():
    out = add_final_reward([[-0.1, 0.0], [], [0.2]], [1.0, None, 0.5])
    assert out.to_lists() == [[-0.1, 1.0], [], [0.7]]
    with pytest.raises(ValueError, match="no steps"):
        add_final_reward([[0.1], []], [1.0, 1.0])
    with pytest.raises(ValueError, match="length 2"):
        add_final_reward([[0.1], [0.2]], [1.0])


def test_empty_batch():
    empty = RaggedSteps.from_lists([])
    assert prm_clip_delta(empty).values.shape == (0,)
    assert empty.sums().shape == (0,)
