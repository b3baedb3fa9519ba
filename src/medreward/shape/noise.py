"""Reward-flip noise for robustness studies (off by default).

Source: Lv et al., "The Climb Carves Wisdom Deeper Than the Summit: On the Noisy Rewards in
Learning to Reason", trestad/Noisy-Rewards-in-Learning-to-Reason ``verl/.../reward_manager/
naive.py`` — docs/formulas.md#reward-flip-noise [CODE]: the flip is decided once per prompt group; with
probability ``p`` every rollout of the group gets ``1 − correctness``.

Decisions are drawn from a numpy ``Generator`` (seeded for reproducibility), one uniform draw
per group in ascending order of the dense group id (integer group ids are used as they are,
other keys in sorted order), so the same seed and the same groups give the same flips.
``p = 0`` returns a copy of the input and draws nothing. NaN/``None`` correctness stays NaN.
"""

from __future__ import annotations

import numpy as np

from medreward.shape._common import (
    ArrayLike,
    GroupsLike,
    as_float_array,
    as_groups,
    check_probability,
)

__all__ = ["SeedLike", "flip_rewards", "group_flip_mask"]

SeedLike = int | np.random.Generator | None


def _rng(seed: SeedLike) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int | np.integer)):
        raise ValueError(f"seed must be an int, a numpy Generator or None, got {seed!r}")
    return np.random.default_rng(seed)


def group_flip_mask(groups: GroupsLike, *, p: float, seed: SeedLike = None) -> np.ndarray:
    """Per-rollout boolean: is this rollout's group flipped? Constant within each group.

    >>> group_flip_mask([0, 0, 1, 1], p=1.0).tolist()
    [True, True, True, True]
    """
    p = check_probability(p, "p")
    keys = groups if isinstance(groups, np.ndarray) else list(groups)
    g = as_groups(keys, len(keys), name="groups", other="groups")
    if p == 0.0 or g.ids.size == 0:
        return np.zeros(g.ids.size, dtype=bool)
    flipped = _rng(seed).random(g.n_groups) < p  # random() < 1 always, so p = 1 flips every group
    return flipped[g.ids]


def flip_rewards(rewards: ArrayLike, groups: GroupsLike, *, p: float = 0.0, seed: SeedLike = None) -> np.ndarray:
    """``1 − r`` for every rollout of a flipped group, ``r`` otherwise (``r`` = correctness in [0, 1]).

    >>> flip_rewards([1.0, 0.0, 1.0, 1.0], [0, 0, 1, 1], p=1.0).tolist()
    [0.0, 1.0, 0.0, 0.0]
    >>> flip_rewards([1.0, 0.0], [0, 0], p=0.0).tolist()
    [1.0, 0.0]
    """
    p = check_probability(p, "p")
    r = as_float_array(rewards, "rewards")
    g = as_groups(groups, r.size)
    if p == 0.0:
        return r.copy()
    mask = group_flip_mask(g.ids, p=p, seed=seed)
    return np.where(mask, 1.0 - r, r)
