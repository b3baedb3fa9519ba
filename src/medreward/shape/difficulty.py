"""Difficulty from in-group pass rates: hard-sample mining and difficulty-weighted partial credit.

* :func:`group_pass_rate` / :func:`hard_sample_mask` — keep prompts that are neither solved by
  every rollout nor by none. Fleming-R1 mines hard samples this way, but publishes no
  formula for it ([NOT PUBLIC]; docs/formulas.md#hard-sample-mining). Chosen rule: a rollout *passes* when its reward is
  ``≥ threshold`` (0.5); a group is kept when its pass rate lies in ``(lo, hi)`` (default
  ``(0, 1)``: drop all-solved and all-failed groups, which also carry no GRPO signal), or in
  ``[lo, hi]`` with ``inclusive=True`` (e.g. PRIME's accuracy filter ``0.2 ≤ acc ≤ 0.8``,
  [CODE]).
* :func:`difficulty_weights` / :func:`dense_pass_reward` / :func:`verpo_reward` — VeRPO
  (arXiv 2601.03525), docs/formulas.md#verpo-difficulty-weights [UNVERIFIED: inferred]: per prompt group, check ``j``'s
  pass rate ``ρ_j = mean_i pass_ij``, weight ``w_j = (1 − ρ_j + ε)/Σ_k(1 − ρ_k + ε)`` (harder
  checks weigh more), dense reward ``Σ_j w_j·pass_ij`` ∈ [0, 1]. Uniform weights when every
  ρ_j = 1 or every ρ_j = 0. ε is not given by the source; we use 0.01.

``passes`` is samples × checks with values in [0, 1] (booleans, or partial credit); NaN/``None``
means "check not applicable to this rollout": it is left out of ρ_j, and a rollout's dense
reward is renormalised over the checks that apply to it (a rollout passing all its checks
scores 1). A rollout with no applicable check gets NaN.
"""

from __future__ import annotations

import numpy as np

from medreward.shape._common import (
    ArrayLike,
    GroupsLike,
    as_float_array,
    as_float_matrix,
    as_groups,
    check_finite,
    check_positive,
    check_probability,
)

__all__ = [
    "dense_pass_reward",
    "difficulty_weights",
    "group_pass_rate",
    "hard_sample_mask",
    "verpo_reward",
]

_EPS = 0.01


def group_pass_rate(rewards: ArrayLike, groups: GroupsLike, *, threshold: float = 0.5) -> np.ndarray:
    """Per rollout, the fraction of valid rollouts of its group with ``reward ≥ threshold``.

    A group with no valid reward gets NaN.

    >>> group_pass_rate([1, 0, 0, 0, 1, 1], [0, 0, 0, 0, 1, 1]).tolist()
    [0.25, 0.25, 0.25, 0.25, 1.0, 1.0]
    """
    threshold = check_finite(threshold, "threshold")
    r = as_float_array(rewards, "rewards")
    g = as_groups(groups, r.size)
    if r.size == 0:
        return np.empty(0, dtype=np.float64)
    valid = ~np.isnan(r)
    count = np.bincount(g.ids, weights=valid, minlength=g.n_groups)
    passed = np.bincount(g.ids, weights=valid & (r >= threshold), minlength=g.n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = passed / count
    return rate[g.ids]


def hard_sample_mask(
    rewards: ArrayLike,
    groups: GroupsLike,
    *,
    lo: float = 0.0,
    hi: float = 1.0,
    inclusive: bool = False,
    threshold: float = 0.5,
) -> np.ndarray:
    """Per rollout: keep it (its group's pass rate is in ``(lo, hi)``, or ``[lo, hi]`` if inclusive)?

    Constant within a group; a group with no valid reward is dropped.

    >>> hard_sample_mask([1, 0, 1, 1, 0, 0], [0, 0, 1, 1, 2, 2]).tolist()
    [True, True, False, False, False, False]
    """
    lo = check_probability(lo, "lo")
    hi = check_probability(hi, "hi")
    if lo > hi:
        raise ValueError(f"lo must be <= hi, got lo={lo}, hi={hi}")
    rate = group_pass_rate(rewards, groups, threshold=threshold)
    with np.errstate(invalid="ignore"):
        keep = (rate >= lo) & (rate <= hi) if inclusive else (rate > lo) & (rate < hi)
    return keep


def _group_check_rates(passes: np.ndarray, ids: np.ndarray, n_groups: int) -> np.ndarray:
    """ρ: n_groups × checks, NaN where a check never applied in the group."""
    valid = ~np.isnan(passes)
    filled = np.where(valid, passes, 0.0)
    rho = np.empty((n_groups, passes.shape[1]))
    for j in range(passes.shape[1]):  # one bincount per check, vectorised over samples
        count = np.bincount(ids, weights=valid[:, j], minlength=n_groups)
        total = np.bincount(ids, weights=filled[:, j], minlength=n_groups)
        with np.errstate(invalid="ignore", divide="ignore"):
            rho[:, j] = total / count
    return rho


def difficulty_weights(passes: ArrayLike, groups: GroupsLike, *, eps: float = _EPS) -> np.ndarray:
    """VeRPO check weights per rollout (samples × checks; identical rows within a group).

    Checks that never applied in a group get weight 0 there; the rest sum to 1.

    >>> difficulty_weights([[1, 1], [1, 0]], [0, 0], eps=0.0).tolist()
    [[0.0, 1.0], [0.0, 1.0]]
    >>> difficulty_weights([[1, 1], [1, 1]], [0, 0]).tolist()
    [[0.5, 0.5], [0.5, 0.5]]
    """
    eps = check_positive(eps, "eps", allow_zero=True)
    p = as_float_matrix(passes, "passes")
    g = as_groups(groups, p.shape[0], other="passes")
    if p.shape[0] == 0:
        return np.empty((0, p.shape[1]))
    rho = _group_check_rates(p, g.ids, g.n_groups)
    applies = ~np.isnan(rho)
    raw = np.where(applies, 1.0 - rho + eps, 0.0)
    total = raw.sum(axis=1, keepdims=True)
    n_applies = applies.sum(axis=1, keepdims=True)
    # all ρ = 1 (or ε = 0 and nothing failed) → no difficulty signal: uniform over applicable checks
    all_solved = np.where(applies, rho == 1.0, True).all(axis=1, keepdims=True)
    all_failed = np.where(applies, rho == 0.0, True).all(axis=1, keepdims=True)
    uniform = all_solved | all_failed | (total <= 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where(uniform, applies / np.maximum(n_applies, 1), raw / np.where(total > 0, total, 1.0))
    return w[g.ids]


def dense_pass_reward(passes: ArrayLike, groups: GroupsLike, *, eps: float = _EPS) -> np.ndarray:
    """VeRPO dense reward ``Σ_j w_j·pass_ij`` (renormalised over the checks that apply), in [0, 1].

    >>> dense_pass_reward([[1, 1], [1, 0], [0, 0]], [0, 0, 0], eps=0.0).round(3).tolist()
    [1.0, 0.333, 0.0]
    """
    p = as_float_matrix(passes, "passes")
    w = difficulty_weights(p, groups, eps=eps)
    valid = ~np.isnan(p)
    w_valid = np.where(valid, w, 0.0)
    num = (w_valid * np.where(valid, p, 0.0)).sum(axis=1)
    den = w_valid.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    # every applicable check has weight 0 (cannot happen with ε > 0): fall back to the plain mean
    zero = (den == 0) & valid.any(axis=1)
    if zero.any():
        out[zero] = np.nanmean(p[zero], axis=1)
    out[~valid.any(axis=1)] = np.nan
    return out


def verpo_reward(
    passes: ArrayLike, groups: GroupsLike, *, lam: float = 0.5, gated: bool = False, eps: float = _EPS
) -> np.ndarray:
    """VeRPO total reward: ``1[all pass] + λ·dense``, or gated: ``1`` if all pass else ``λ·dense``.

    docs/formulas.md#verpo-difficulty-weights [UNVERIFIED: inferred] (λ ≈ 0.5). "All pass" = every
    applicable check ≥ 1.

    >>> verpo_reward([[1, 1], [1, 0], [0, 0]], [0, 0, 0], eps=0.0).round(3).tolist()
    [1.5, 0.167, 0.0]
    >>> verpo_reward([[1, 1], [1, 0]], [0, 0], gated=True, eps=0.0).round(3).tolist()
    [1.0, 0.0]
    """
    lam = check_finite(lam, "lam")
    p = as_float_matrix(passes, "passes")
    dense = dense_pass_reward(p, groups, eps=eps)
    all_pass = np.where(np.isnan(p), True, p >= 1.0).all(axis=1) & ~np.isnan(dense)
    out = np.where(all_pass, 1.0, lam * dense) if gated else all_pass + lam * dense
    return np.where(np.isnan(dense), np.nan, out)
