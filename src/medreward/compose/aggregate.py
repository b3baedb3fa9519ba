"""Vectorised group statistics and the two aggregations a spec can name.

Groups are given as an integer array (``groups[i]`` = index of sample i's group, as
returned by :func:`group_index`), so every statistic is a ``np.bincount`` over the batch:
no Python loop per group, and 1M rewards aggregate in milliseconds.

NaN marks "not applicable" and is left out of every statistic (TRL's ``nanmean``/
``nanstd`` semantics). A group whose values are all NaN has mean NaN and std NaN; callers
decide what that means (the aggregations below leave such samples at NaN).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

__all__ = [
    "group_index",
    "group_mean_std",
    "group_zscore",
    "normalize_then_sum",
    "weighted_sum",
]


def group_index(keys: Sequence[Hashable] | np.ndarray) -> np.ndarray:
    """Map group keys (strings, ints…) to dense integer ids ``0..G-1`` in first-seen order.

    >>> group_index(["a", "b", "a", "c"]).tolist()
    [0, 1, 0, 2]
    """
    ids: dict[Hashable, int] = {}
    out = np.empty(len(keys), dtype=np.int64)
    for i, key in enumerate(keys):
        out[i] = ids.setdefault(key, len(ids))
    return out


def group_mean_std(
    values: np.ndarray, groups: np.ndarray, *, ddof: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-sample group mean, std and count, ignoring NaN.

    Returns three arrays aligned with ``values``: the mean of the sample's group, its
    standard deviation (``ddof=1``: unbiased, as TRL and verl use) and the number of
    non-NaN values in the group. The std of a group with ``count <= ddof`` is NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    if values.shape != groups.shape:
        raise ValueError(f"values has shape {values.shape} but groups has shape {groups.shape}")
    if values.size == 0:
        empty = np.empty(0, dtype=np.float64)
        return empty, empty.copy(), empty.copy()
    valid = ~np.isnan(values)
    filled = np.where(valid, values, 0.0)
    n_groups = int(groups.max()) + 1
    count = np.bincount(groups, weights=valid.astype(np.float64), minlength=n_groups)
    total = np.bincount(groups, weights=filled, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        dev = np.where(valid, values - mean[groups], 0.0)
        sq = np.bincount(groups, weights=dev * dev, minlength=n_groups)
        var = sq / (count - ddof)
    var[count <= ddof] = np.nan
    return mean[groups], np.sqrt(var)[groups], count[groups]


def group_zscore(values: np.ndarray, groups: np.ndarray, *, eps: float = 1e-4, ddof: int = 1) -> np.ndarray:
    """``(r - mean_group) / (std_group + eps)``, NaN-aware.

    Source: GRPO advantage (TRL ``grpo_trainer.py``, eps=1e-4; verl ``compute_grpo_outcome_advantage``,
    eps=1e-6). A group with a single valid value, or all-equal values, gets 0 (its std is NaN
    or 0, so there is nothing to normalise against). NaN inputs stay NaN.
    """
    values = np.asarray(values, dtype=np.float64)
    mean, std, _ = group_mean_std(values, groups, ddof=ddof)
    std = np.where(np.isnan(std), 0.0, std)
    with np.errstate(invalid="ignore"):
        z = (values - mean) / (std + eps)
    z[(std == 0.0) & ~np.isnan(values)] = 0.0
    return z


def weighted_sum(components: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row-wise ``Σ_k w_k · c_k`` over the non-NaN entries (TRL's ``nansum`` over reward functions).

    A row whose entries are all NaN sums to NaN (nothing applied), not to 0.
    """
    components = np.asarray(components, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    valid = ~np.isnan(components)
    total = np.where(valid, components, 0.0) @ weights
    total[~valid.any(axis=1)] = np.nan
    return total


def normalize_then_sum(
    components: np.ndarray,
    weights: np.ndarray,
    groups: np.ndarray,
    *,
    eps: float = 1e-4,
    batch_normalize: bool = True,
) -> np.ndarray:
    """GDPO aggregation: z-score each component within its group, weighted-sum, then batch-normalise.

    Source: GDPO (arXiv 2601.05242) as implemented by TRL ``multi_objective_aggregation=
    "normalize_then_sum"``: each reward is normalised within its group (eps=1e-4), the weighted
    sum is taken, and the result is normalised over the batch ``(r - mean_batch)/std_batch``.
    Normalising each component first keeps a high-variance component from drowning the others.

    >>> import numpy as np
    >>> c = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    >>> normalize_then_sum(c, np.array([1.0, 1.0]), np.array([0, 0, 0, 0]), batch_normalize=False).round(3).tolist()
    [0.0, -1.732, 1.732, 0.0]
    """
    components = np.asarray(components, dtype=np.float64)
    if components.ndim != 2:
        raise ValueError("components must be a 2-D array (samples × components)")
    normalised = np.column_stack(
        [group_zscore(components[:, k], groups, eps=eps) for k in range(components.shape[1])]
    ) if components.shape[1] else components
    total = weighted_sum(normalised, weights)
    if batch_normalize and total.size:
        valid = ~np.isnan(total)
        if valid.sum() > 1:
            mu = total[valid].mean()
            sd = total[valid].std(ddof=1)
            total = (total - mu) / (sd + eps)
    return total
