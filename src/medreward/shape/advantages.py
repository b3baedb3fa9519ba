"""Group-relative advantages: GRPO, Dr. GRPO, batch-scaled GRPO, RLOO and GDPO.

All functions take ``(rewards, groups)`` where ``groups[i]`` names the prompt of rollout ``i``
(integer ids or any hashable keys) and return one advantage per rollout.

Bad input, the same everywhere:

* NaN / ``None`` reward → advantage 0 and the value is left out of its group's statistics
  (TRL applies ``nan_to_num`` after its NaN-aware statistics).
* A group whose valid rewards are all equal → advantage exactly 0 (no preference to learn).
* A group with a single valid reward → 0, except under ``convention="verl"``, where verl uses
  mean 0 and std 1 for such a group, so its advantage is ``r/(1+eps)`` (``r`` if unscaled).
* Empty batch → empty array. Lengths that differ → ``ValueError`` naming both lengths.

No advantage is ever NaN or infinite for finite rewards.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from medreward.compose.aggregate import group_mean_std, normalize_then_sum
from medreward.shape._common import (
    ArrayLike,
    GroupsLike,
    as_float_array,
    as_float_matrix,
    as_groups,
    check_choice,
    check_lengths,
    check_positive,
    group_constant,
)

__all__ = [
    "TRL_EPS",
    "VERL_EPS",
    "Convention",
    "Scale",
    "dr_grpo_advantages",
    "gdpo_advantages",
    "grpo_advantages",
    "rloo_advantages",
]

Scale = Literal["group", "batch", "none"]
Convention = Literal["trl", "verl"]

TRL_EPS = 1e-4  # TRL grpo_trainer.py
VERL_EPS = 1e-6  # verl core_algos.compute_grpo_outcome_advantage


def grpo_advantages(
    rewards: ArrayLike,
    groups: GroupsLike,
    *,
    scale: Scale = "group",
    convention: Convention = "trl",
    eps: float | None = None,
) -> np.ndarray:
    """GRPO advantage ``A_i = (r_i − mean_group(r)) / (std + eps)``.

    Source: GRPO as implemented in TRL ``grpo_trainer.py`` (eps=1e-4, NaN-aware unbiased std)
    and verl ``core_algos.compute_grpo_outcome_advantage`` (eps=1e-6; a group of size 1 gets
    mean 0, std 1) — docs/formulas.md#group-advantages [CODE].

    ``scale`` follows TRL's ``scale_rewards``: ``"group"`` divides by the group std,
    ``"batch"`` by the std of the whole batch while still centring on the group mean
    ("PPO Lite"), ``"none"`` does not divide (Dr. GRPO). ``eps`` defaults to the convention's
    (1e-4 for TRL, 1e-6 for verl). With ``"batch"`` and fewer than two valid rewards in the
    batch, the std is taken as 1 (nothing to scale against).

    >>> grpo_advantages([1.0, 0.0, 0.0, 1.0, 1.0, 1.0], [0, 0, 0, 1, 1, 1]).round(4).tolist()
    [1.1545, -0.5773, -0.5773, 0.0, 0.0, 0.0]
    >>> grpo_advantages([2.0, None, 0.0], ["a", "a", "a"], scale="none").tolist()
    [1.0, 0.0, -1.0]
    >>> grpo_advantages([0.5, 1.0, 0.0], [0, 1, 1], convention="verl").round(4).tolist()
    [0.5, 0.7071, -0.7071]
    """
    check_choice(scale, "scale", ("group", "batch", "none"))
    check_choice(convention, "convention", ("trl", "verl"))
    eps = (TRL_EPS if convention == "trl" else VERL_EPS) if eps is None else check_positive(eps, "eps", allow_zero=True)
    r = as_float_array(rewards, "rewards")
    g = as_groups(groups, r.size)
    if r.size == 0:
        return np.empty(0, dtype=np.float64)

    mean, std, count = group_mean_std(r, g.ids, ddof=1)
    valid = ~np.isnan(r)
    no_signal = group_constant(r, g)[g.ids]
    if convention == "verl":
        single = count == 1
        mean = np.where(single, 0.0, mean)
        std = np.where(single, 1.0, std)
        no_signal &= ~single  # verl keeps r/(1+eps) for a lone rollout

    centred = r - mean
    if scale == "group":
        denom = np.where(np.isnan(std), 0.0, std) + eps
    elif scale == "batch":
        batch_std = float(np.std(r[valid], ddof=1)) if valid.sum() > 1 else 1.0
        denom = batch_std + eps
    else:
        denom = 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        adv = centred / denom
    adv[no_signal | ~valid] = 0.0
    return adv


def dr_grpo_advantages(rewards: ArrayLike, groups: GroupsLike, *, convention: Convention = "trl") -> np.ndarray:
    """Dr. GRPO advantage ``A_i = r_i − mean_group(r)`` (no std scaling).

    Source: Liu et al., "Understanding R1-Zero-Like Training" (Dr. GRPO); TRL
    ``scale_rewards="none"``, verl ``norm_adv_by_std_in_grpo=False`` — docs/formulas.md#group-advantages [CODE].
    Dropping the std removes the question-level difficulty bias of GRPO.

    >>> dr_grpo_advantages([1.0, 0.0, 0.0, 1.0], [0, 0, 0, 0]).tolist()
    [0.5, -0.5, -0.5, 0.5]
    """
    return grpo_advantages(rewards, groups, scale="none", convention=convention)


def rloo_advantages(rewards: ArrayLike, groups: GroupsLike) -> np.ndarray:
    """RLOO advantage ``A_i = r_i − mean_{j≠i} r_j = (r_i − mean_group)·N/(N−1)``.

    Source: REINFORCE leave-one-out as used by VeriFree (``A_i = (R_i − mean)·N/(N−1)``) and
    PRIME ``compute_rloo_returns`` — docs/formulas.md#group-advantages [CODE]. ``N`` counts the group's
    valid (non-NaN) rewards; a group with one valid reward has no "others" and gets 0.

    >>> rloo_advantages([1.0, 0.0, 0.0, 0.0], [0, 0, 0, 0]).round(4).tolist()
    [1.0, -0.3333, -0.3333, -0.3333]
    """
    r = as_float_array(rewards, "rewards")
    g = as_groups(groups, r.size)
    if r.size == 0:
        return np.empty(0, dtype=np.float64)
    mean, _, count = group_mean_std(r, g.ids, ddof=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        adv = (r - mean) * count / (count - 1.0)
    adv[(count < 2) | np.isnan(r) | group_constant(r, g)[g.ids]] = 0.0
    return adv


def gdpo_advantages(
    components: ArrayLike,
    groups: GroupsLike,
    *,
    weights: ArrayLike | None = None,
    eps: float = TRL_EPS,
    batch_normalize: bool = True,
) -> np.ndarray:
    """GDPO normalise-then-sum advantage over reward components.

    Source: GDPO (arXiv 2601.05242) as TRL ``multi_objective_aggregation="normalize_then_sum"``
    — docs/formulas.md#gdpo-aggregation [CODE]: z-score each component within its group (eps=1e-4), take the
    weighted sum over the components that apply, then normalise over the batch. Built on
    :func:`medreward.compose.aggregate.normalize_then_sum`.

    ``components`` is samples × components (``None``/NaN = the component did not apply);
    ``weights`` defaults to 1 per component. A sample where no component applied gets 0.

    >>> c = [[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    >>> gdpo_advantages(c, [0, 0, 0, 0], batch_normalize=False).round(3).tolist()
    [0.0, -1.732, 1.732, 0.0]
    """
    eps = check_positive(eps, "eps", allow_zero=True)
    comps = as_float_matrix(components, "components")
    g = as_groups(groups, comps.shape[0], other="components")
    k = comps.shape[1]
    w = np.ones(k) if weights is None else as_float_array(weights, "weights")
    check_lengths(k, w.size, "components (columns)", "weights")
    if comps.shape[0] == 0:
        return np.empty(0, dtype=np.float64)
    adv = normalize_then_sum(comps, w, g.ids, eps=eps, batch_normalize=batch_normalize)
    return np.nan_to_num(adv, nan=0.0, posinf=0.0, neginf=0.0)
