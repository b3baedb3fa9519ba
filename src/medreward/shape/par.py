"""Preference-as-Reward (PAR) and log-sigmoid-centred (LSC) reward shaping.

Both compare a rollout's raw reward-model score ``r`` with the scores ``r_ref`` of responses
to the same prompt sampled from the reference (SFT) policy. ``ref_rewards`` is samples ×
references, one row per rollout (repeat a prompt's row for each of its rollouts, e.g.
``refs_per_prompt[groups]``); ragged Python rows are padded with NaN, and NaN marks a missing
reference.

Bad input: a NaN/``None`` reward, or a row with no reference, gives NaN ("not applicable"),
never a made-up value. Empty batch → empty array.
"""

from __future__ import annotations

from statistics import NormalDist

import numpy as np

from medreward.shape._common import (
    ArrayLike,
    as_float_array,
    as_float_matrix,
    check_positive,
    check_positive_int,
    log_sigmoid,
    sigmoid,
)

__all__ = ["lsc_reward", "par_reward"]


def par_reward(rewards: ArrayLike, ref_rewards: ArrayLike, *, k: float = 1.0, max_refs: int = 10) -> np.ndarray:
    """PAR: ``r_RL = (1/M) Σ_m σ(k·(r − r_ref^m))``, bounded in (0, 1).

    Source: PorUna-byte/PAR ``trainers/reward_shaper.py::calculate_relative_sigmoid``,
    arXiv 2502.18770 — docs/formulas.md#par-and-lsc [CODE]. Defaults as the repo: ``k`` = ``sigmoid_k`` = 1,
    ``max_refs`` = ``reward_maxref`` = 10 (the first M references of each row are used).
    M counts the non-NaN references among those. Float64 rounds σ to exactly 1.0 once
    ``k·(r − r_ref) > ~36``, so the open bound holds only for moderate score gaps.

    >>> par_reward([1.0, 0.0], [[0.0, 1.0], [0.0, None]]).round(4).tolist()
    [0.6155, 0.5]
    """
    k = check_positive(k, "k")
    max_refs = check_positive_int(max_refs, "max_refs")
    r = as_float_array(rewards, "rewards")
    refs = as_float_matrix(ref_rewards, "ref_rewards", n_rows=r.size)[:, :max_refs]
    valid = ~np.isnan(refs)
    s = sigmoid(k * (r[:, None] - refs))
    count = valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(valid, s, 0.0).sum(axis=1) / count
    out[(count == 0) | np.isnan(r)] = np.nan
    return out


def lsc_reward(rewards: ArrayLike, ref_rewards: ArrayLike, *, quantile: float = 0.85) -> np.ndarray:
    """LSC: ``log σ(r − r_ref)``, ``r_ref`` = the ``quantile`` of a normal fitted to the references.

    Source: PorUna-byte/PAR ``reward_shaper.py`` (``reward_lsc``) — docs/formulas.md#par-and-lsc [CODE]. As
    the repo: all of a row's references are used (no ``max_refs`` cap), the fit is their mean
    and sample std (ddof=1; 0 for a single reference), and the normal's scale is ``std + 1e-5``:
    ``r_ref = mean + Φ⁻¹(quantile)·(std + 1e-5)``. Output is ≤ 0.

    >>> lsc_reward([2.0], [[0.0, 2.0]]).round(4).tolist()
    [-0.9529]
    """
    q = float(quantile)
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    r = as_float_array(rewards, "rewards")
    refs = as_float_matrix(ref_rewards, "ref_rewards", n_rows=r.size)
    valid = ~np.isnan(refs)
    count = valid.sum(axis=1)
    filled = np.where(valid, refs, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=1) / count
        sq = np.where(valid, refs - mean[:, None], 0.0) ** 2
        std = np.sqrt(sq.sum(axis=1) / np.maximum(count - 1, 1))
    r_ref = mean + NormalDist().inv_cdf(q) * (std + 1e-5)
    out = log_sigmoid(r - r_ref)
    out[(count == 0) | np.isnan(r)] = np.nan
    return out
