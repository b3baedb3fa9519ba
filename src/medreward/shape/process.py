"""Clip and Delta refinements of process (per-step) rewards, on ragged step lists.

A batch of trajectories with different numbers of steps is a :class:`RaggedSteps`: all step
values in one flat array plus ``offsets`` (trajectory ``t`` owns ``values[offsets[t]:offsets[t+1]]``),
so every transform is one vectorised pass over the flat array.

Source of both refinements: Gao et al., "On Designing Effective RL Reward at Training Time for
LLM Reasoning", arXiv 2410.15115 — docs/formulas.md#prm-clip-and-delta. The paper states (abstract) that Clip and
Delta bound the cumulative reward; the exact formulas are [UNVERIFIED: recalled] and are
implemented as docs/formulas.md states them.

Bad input: a NaN step value stays NaN through Clip and turns the Delta of its own step and of
the step before it NaN (it is not silently treated as 0). Empty trajectories are allowed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from medreward.shape._common import (
    ArrayLike,
    as_float_array,
    check_finite,
    check_lengths,
)

__all__ = [
    "RaggedSteps",
    "add_final_reward",
    "prm_clip",
    "prm_clip_delta",
    "prm_delta",
]


@dataclass(frozen=True, eq=False)
class RaggedSteps:
    """Step rewards of a batch of trajectories: flat ``values`` and ``offsets`` (length n+1).

    >>> s = RaggedSteps.from_lists([[0.9, 0.8], [], [0.4]])
    >>> s.lengths.tolist(), s.offsets.tolist()
    ([2, 0, 1], [0, 2, 2, 3])
    >>> s.sums().tolist()
    [1.7000000000000002, 0.0, 0.4]
    """

    values: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        values = as_float_array(self.values, "values")
        offsets = np.asarray(self.offsets, dtype=np.int64)
        if offsets.ndim != 1 or offsets.size == 0 or offsets[0] != 0:
            raise ValueError("offsets must be a 1-D array that starts with 0")
        if np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must be non-decreasing")
        check_lengths(int(offsets[-1]), values.size, "offsets[-1]", "values")
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "offsets", offsets)

    @classmethod
    def from_lists(cls, steps: Sequence[Sequence[float | None]]) -> RaggedSteps:
        """From one list of step rewards per trajectory (``None`` → NaN)."""
        lengths = np.fromiter((len(s) for s in steps), dtype=np.int64, count=len(steps))
        flat = [v for s in steps for v in s]
        return cls.from_lengths(np.asarray(flat, dtype=np.float64), lengths)

    @classmethod
    def from_lengths(cls, values: ArrayLike, lengths: ArrayLike) -> RaggedSteps:
        """From flat values and the number of steps of each trajectory."""
        lengths = np.asarray(lengths, dtype=np.int64)
        if lengths.ndim != 1 or np.any(lengths < 0):
            raise ValueError("lengths must be a 1-D array of non-negative integers")
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        return cls(as_float_array(values, "values"), offsets)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    @property
    def n_trajectories(self) -> int:
        return int(self.offsets.size - 1)

    def trajectory_ids(self) -> np.ndarray:
        """``ids[j]`` = the trajectory that step ``j`` belongs to."""
        return np.repeat(np.arange(self.n_trajectories), self.lengths)

    def with_values(self, values: np.ndarray) -> RaggedSteps:
        """Same layout, new values."""
        return RaggedSteps(values, self.offsets)

    def sums(self) -> np.ndarray:
        """Cumulative (undiscounted) reward of each trajectory; 0 for an empty one."""
        return np.bincount(self.trajectory_ids(), weights=self.values, minlength=self.n_trajectories)

    def returns_to_go(self) -> RaggedSteps:
        """``G_k = Σ_{j≥k} r_j`` within each trajectory (γ = 1).

        One global cumsum (vectorised), so the absolute error grows like 1e-16 × the batch's
        running total; compare with a tolerance.
        """
        v = self.values
        if v.size == 0:
            return self.with_values(v.copy())
        ids = self.trajectory_ids()
        # reverse cumsum per trajectory: total of the trajectory minus what came before step k
        before = np.cumsum(v) - v
        start = np.concatenate([[0.0], np.cumsum(v)])[self.offsets[:-1]]
        within_before = before - start[ids]
        return self.with_values(self.sums()[ids] - within_before)

    def round(self, decimals: int = 0) -> RaggedSteps:
        """Values rounded to ``decimals`` (for display and doctests)."""
        return self.with_values(np.round(self.values, decimals))

    def to_lists(self) -> list[list[float]]:
        return [self.values[a:b].tolist() for a, b in zip(self.offsets[:-1], self.offsets[1:])]


StepsLike = RaggedSteps | Sequence[Sequence[float | None]]


def _as_steps(steps: StepsLike) -> RaggedSteps:
    return steps if isinstance(steps, RaggedSteps) else RaggedSteps.from_lists(steps)


def prm_clip(steps: StepsLike, *, eta: float | str = 0.5) -> RaggedSteps:
    """Clip: ``r_clip(k) = min(r_process(k) − η, 0)``.

    Every step reward becomes ≤ 0, so adding steps can never raise a trajectory's return: a
    policy cannot farm a PRM by repeating good-looking steps. ``eta`` is a constant (0.5 suits
    sigmoid PRMs) or ``"mean"``: the mean of all valid step rewards in the batch (the source
    offers "the mean PRM score or a constant"; the batch mean is our reading of "mean").

    >>> prm_clip([[0.9, 0.2], [0.5]], eta=0.5).to_lists()
    [[0.0, -0.3], [0.0]]
    """
    s = _as_steps(steps)
    if isinstance(eta, str):
        if eta != "mean":
            raise ValueError(f"eta must be a number or 'mean', got {eta!r}")
        valid = ~np.isnan(s.values)
        eta_value = float(s.values[valid].mean()) if valid.any() else 0.0
    else:
        eta_value = check_finite(eta, "eta")
    return s.with_values(np.minimum(s.values - eta_value, 0.0))


def prm_delta(steps: StepsLike) -> RaggedSteps:
    """Delta: ``r_Δ(k) = r_process(k) − r_process(k+1)`` for k < K, and 0 for the last step.

    The return from step t telescopes to ``r_process(t) − r_process(K)``, bounded whatever the
    number of steps.

    >>> prm_delta([[0.9, 0.6, 0.7], [0.4]]).round(3).to_lists()
    [[0.3, -0.1, 0.0], [0.0]]
    """
    s = _as_steps(steps)
    v = s.values
    out = np.zeros_like(v)
    if v.size > 1:
        out[:-1] = v[:-1] - v[1:]
    ends = s.offsets[1:][s.lengths > 0] - 1
    out[ends] = 0.0  # the last step has no successor (and must not read the next trajectory)
    return s.with_values(out)


def prm_clip_delta(steps: StepsLike, *, eta: float | str = 0.5) -> RaggedSteps:
    """Clip, then Delta (the combination docs/formulas.md#prm-clip-and-delta describes).

    >>> prm_clip_delta([[0.9, 0.2, 0.4]], eta=0.5).round(3).to_lists()
    [[0.3, -0.2, 0.0]]
    """
    return prm_delta(prm_clip(steps, eta=eta))


def add_final_reward(steps: StepsLike, rewards: ArrayLike) -> RaggedSteps:
    """Add an outcome reward (e.g. success ∈ {0, 1}) to the last step of each trajectory.

    The sparse success reward that Clip/Delta are combined with (docs/formulas.md#prm-clip-and-delta). A NaN
    outcome adds nothing. A trajectory with no steps cannot carry an outcome: ValueError.

    >>> add_final_reward([[-0.1, 0.0], [0.2]], [1.0, 0.0]).to_lists()
    [[-0.1, 1.0], [0.2]]
    """
    s = _as_steps(steps)
    r = as_float_array(rewards, "rewards")
    check_lengths(s.n_trajectories, r.size, "steps (trajectories)", "rewards")
    empty = s.lengths == 0
    if np.any(empty & ~np.isnan(r)):
        bad = np.flatnonzero(empty & ~np.isnan(r))[:5].tolist()
        raise ValueError(f"trajectories {bad} have no steps to carry their final reward")
    out = s.values.copy()
    ends = s.offsets[1:][~empty] - 1
    out[ends] += np.nan_to_num(r[~empty], nan=0.0)
    return s.with_values(out)
