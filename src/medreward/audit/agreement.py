"""Agreement of a reward with human or reference ratings: Spearman, Kendall τ-b, Pearson,
Cohen's κ and quadratic-weighted κ, each with a percentile bootstrap interval.

Definitions (numpy; the tests check each against scipy.stats / scikit-learn on the same data):

- Pearson ``r = Σ(x−x̄)(y−ȳ) / sqrt(Σ(x−x̄)² Σ(y−ȳ)²)`` (scipy.stats.pearsonr).
- Spearman ``ρ`` = Pearson of the ranks, ties given their average rank (scipy.stats.spearmanr).
- Kendall ``τ_b = (P − Q) / sqrt((n₀ − n₁)(n₀ − n₂))`` with P/Q the concordant/discordant pairs,
  ``n₀ = n(n−1)/2`` and ``n₁``/``n₂`` the pairs tied in x/in y (Kendall 1945; scipy.stats.kendalltau's
  default ``variant="b"``). Computed in O(n log² n) by counting inversions with a bottom-up merge.
- Cohen's κ ``= (p_o − p_e) / (1 − p_e)`` (Cohen 1960); weighted κ ``= 1 − Σ w·O / Σ w·E`` with
  quadratic weights ``w_ij = (i − j)²`` on the positions ``i, j`` of the categories in sorted
  order (Cohen 1968; sklearn.metrics.cohen_kappa_score, which also weights by position, not value).

κ needs categories. :func:`agreement` takes the categories from the ratings (``truth``): each
reward is mapped to the **nearest rating category** (a tie between two goes to the lower one), so
rewards and ratings must be on the same scale (e.g. rewards in [0, 1], ratings 0 / 0.5 / 1). For
other scales pass ``kappa_bins``: ``k − 1`` increasing edges for the ``k`` rating categories; a
reward ``r`` goes to the ``i``-th category when ``edges[i−1] ≤ r < edges[i]``.

Undefined statistics are ``None`` with a note, never 0: fewer than 2 pairs, or a constant input
(all rewards equal, or all ratings equal — agreement with a constant says nothing). Pairs where
either value is missing (None) are left out and counted.

Bootstrap: ``n_boot`` resamples of the pairs with replacement (numpy ``default_rng(seed)``), the
statistic recomputed on each; the interval is the 2.5th–97.5th percentile of the resamples where
it is defined (resamples where it is undefined are counted in the note).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

__all__ = [
    "AgreementReport", "AgreementStat", "agreement", "agreement_stat", "bin_to_categories", "bootstrap_ci",
    "cohen_kappa", "kendall_tau_b", "pearson", "rank_average", "spearman",
]  # fmt: skip

Stat = Callable[[np.ndarray, np.ndarray], "float | None"]


@dataclass(frozen=True)
class AgreementStat:
    """One agreement statistic: its value (None when undefined), its bootstrap interval, the
    number of pairs it was computed on, and a note (why it is undefined, resamples left out)."""

    name: str
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "n": self.n, "note": self.note}  # fmt: skip


@dataclass(frozen=True)
class AgreementReport:
    """Every agreement statistic of one reward against one set of ratings."""

    spearman: AgreementStat
    kendall: AgreementStat
    pearson: AgreementStat
    cohen_kappa: AgreementStat
    quadratic_kappa: AgreementStat
    n: int
    n_missing: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        stats = {s.name: s.to_dict() for s in (self.spearman, self.kendall, self.pearson, self.cohen_kappa, self.quadratic_kappa)}
        return {**stats, "n": self.n, "n_missing": self.n_missing, "note": self.note}


# -- the statistics -----------------------------------------------------------------------------
def _pair(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray] | None:
    """Both as float arrays, or None when the statistic is undefined (n < 2 or a constant side)."""
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"expected two flat sequences of the same length, not {a.shape} and {b.shape}")
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    return a, b


def pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson correlation; None for fewer than 2 pairs or a constant input.

    >>> pearson([1, 2, 3], [2, 4, 7])
    0.9933992677987828
    >>> pearson([1, 1, 1], [1, 2, 3]) is None
    True
    """
    pair = _pair(x, y)
    if pair is None:
        return None
    a, b = pair[0] - pair[0].mean(), pair[1] - pair[1].mean()
    r = float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return max(-1.0, min(1.0, r))


def rank_average(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, tied values sharing their average rank (scipy.stats.rankdata's default).

    >>> rank_average([10, 20, 20, 5]).tolist()
    [2.0, 3.5, 3.5, 1.0]
    """
    a = np.asarray(x, dtype=float)
    order = np.argsort(a, kind="mergesort")
    ranks = np.empty(a.size, dtype=float)
    if a.size == 0:
        return ranks
    sorted_a = a[order]
    starts = np.flatnonzero(np.r_[True, sorted_a[1:] != sorted_a[:-1]])
    ends = np.r_[starts[1:], a.size]
    averages = (starts + ends + 1) / 2.0  # mean of the 1-based positions start+1 .. end
    ranks[order] = np.repeat(averages, ends - starts)
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's ρ (Pearson of average ranks); None for fewer than 2 pairs or a constant input.

    >>> spearman([1, 2, 3, 4], [10, 20, 20, 40])
    0.9486832980505138
    """
    pair = _pair(x, y)
    return None if pair is None else pearson(rank_average(pair[0]), rank_average(pair[1]))


def _dense(a: np.ndarray) -> np.ndarray:
    return np.unique(a, return_inverse=True)[1].astype(np.int64)


def _tied_pairs(labels: np.ndarray) -> int:
    counts = np.bincount(labels)
    return int((counts * (counts - 1) // 2).sum())


def _strict_inversions(values: np.ndarray) -> int:
    """Pairs i < j with values[i] > values[j] (ties are not inversions), by bottom-up merging:
    at each level every element of a right half counts the larger elements of its left half."""
    n = values.size
    span = int(values.max(initial=0)) + 1
    index = np.arange(n)
    current = values.astype(np.int64)
    total = 0
    width = 1
    while width < n:
        block = index // (2 * width)
        right = (index // width) % 2 == 1
        keyed = block * span + current  # each block's left half is sorted: keyed left values are sorted overall
        left_keys = keyed[~right]
        right_keys = keyed[right]
        block_end = np.searchsorted(left_keys, (block[right] + 1) * span, side="left")
        total += int((block_end - np.searchsorted(left_keys, right_keys, side="right")).sum())
        current = np.sort(keyed) - block * span  # merge: sort within blocks of 2·width
        width *= 2
    return total


def kendall_tau_b(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's τ-b (ties in either variable corrected); None for fewer than 2 pairs or a
    constant input.

    >>> kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4])
    0.6666666666666666
    """
    pair = _pair(x, y)
    if pair is None:
        return None
    xs, ys = _dense(pair[0]), _dense(pair[1])
    order = np.lexsort((ys, xs))  # by x, then y: pairs tied in x are never counted as discordant
    n = xs.size
    n0 = n * (n - 1) // 2
    n1, n2 = _tied_pairs(xs), _tied_pairs(ys)
    n3 = _tied_pairs(_dense(xs * (int(ys.max()) + 1) + ys))  # tied in both
    discordant = _strict_inversions(ys[order])
    concordant_minus_discordant = n0 - n1 - n2 + n3 - 2 * discordant
    tau = concordant_minus_discordant / np.sqrt(float(n0 - n1) * float(n0 - n2))
    return max(-1.0, min(1.0, float(tau)))


def cohen_kappa(a: Sequence[Any], b: Sequence[Any], weights: Literal["quadratic"] | None = None) -> float | None:
    """Cohen's κ of two raters' categorical labels (unweighted, or quadratic-weighted on the
    categories' positions in sorted order); None for fewer than 2 items, a rater who uses a single
    category, or a zero denominator.

    >>> cohen_kappa([0, 1, 1, 2], [0, 1, 2, 2])
    0.6363636363636364
    >>> cohen_kappa([0, 1, 1, 2], [0, 1, 2, 2], weights="quadratic")
    0.8
    """
    if weights not in (None, "quadratic"):
        raise ValueError(f"weights must be None or 'quadratic', not {weights!r}")
    if len(a) != len(b):
        raise ValueError(f"expected two sequences of the same length, not {len(a)} and {len(b)}")
    if len(a) < 2:
        return None
    labels, positions = np.unique(np.concatenate([np.asarray(a), np.asarray(b)]), return_inverse=True)
    ia, ib = positions[: len(a)].astype(np.int64), positions[len(a) :].astype(np.int64)
    if ia.min() == ia.max() or ib.min() == ib.max():
        return None
    # from the marginals, never a k×k table (continuous values give thousands of categories)
    n = float(ia.size)
    rows = np.bincount(ia, minlength=labels.size).astype(float)
    cols = np.bincount(ib, minlength=labels.size).astype(float)
    if weights is None:  # w_ij = 1 − [i = j]
        disagree_observed = n - float(np.count_nonzero(ia == ib))
        disagree_expected = n - float(rows @ cols) / n
    else:  # w_ij = (i − j)²: Σ r_i c_j (i − j)² / n expands into moments of the marginals
        grid = np.arange(labels.size, dtype=float)
        diff = (ia - ib).astype(float)
        disagree_observed = float(diff @ diff)
        disagree_expected = (
            float(rows @ grid**2) * cols.sum() + rows.sum() * float(cols @ grid**2) - 2.0 * float(rows @ grid) * float(cols @ grid)
        ) / n
    if disagree_expected <= 0.0:
        return None
    return float(1.0 - disagree_observed / disagree_expected)


def bin_to_categories(values: Sequence[float], categories: Sequence[float], edges: Sequence[float] | None = None) -> np.ndarray:
    """Map continuous rewards onto rating categories (sorted): the nearest category (a tie goes
    to the lower one), or with ``edges`` (``k − 1`` increasing edges for ``k`` categories) the
    ``i``-th category when ``edges[i−1] ≤ value < edges[i]``.

    >>> bin_to_categories([0.1, 0.25, 0.8], [0.0, 0.5, 1.0]).tolist()
    [0.0, 0.0, 1.0]
    >>> bin_to_categories([0.1, 0.45, 0.8], [1, 2, 3], edges=[0.3, 0.6]).tolist()
    [1.0, 2.0, 3.0]
    """
    v = np.asarray(values, dtype=float)
    cats = np.unique(np.asarray(categories, dtype=float))
    if cats.size == 0:
        raise ValueError("no categories to bin into")
    if edges is not None:
        e = np.asarray(edges, dtype=float)
        if e.size != cats.size - 1:
            raise ValueError(f"kappa_bins: {cats.size} rating categories need {cats.size - 1} edges, not {e.size}")
        if e.size and not (np.diff(e) > 0).all():
            raise ValueError("kappa_bins: edges must be strictly increasing")
        return cats[np.searchsorted(e, v, side="right")]
    upper = np.clip(np.searchsorted(cats, v, side="left"), 0, cats.size - 1)
    lower = np.clip(upper - 1, 0, cats.size - 1)
    take_lower = np.abs(v - cats[lower]) <= np.abs(cats[upper] - v)
    return np.where(take_lower, cats[lower], cats[upper])


def bootstrap_ci(
    stat: Stat, x: Sequence[float], y: Sequence[float], *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float | None, float | None, int]:
    """Percentile bootstrap interval of ``stat(x, y)`` over resampled pairs: ``(low, high,
    n_undefined)``, where ``n_undefined`` resamples gave None and were left out; ``(None, None, n)``
    when fewer than half of the resamples are defined.

    >>> low, high, undefined = bootstrap_ci(pearson, [1, 2, 3, 4, 5, 6], [1, 3, 2, 5, 4, 6], n_boot=200)
    >>> low < pearson([1, 2, 3, 4, 5, 6], [1, 3, 2, 5, 4, 6]) < high
    True
    """
    a, b = np.asarray(x), np.asarray(y)
    if n_boot <= 0 or a.size < 2:
        return None, None, 0
    rng = np.random.default_rng(seed)
    values = []
    undefined = 0
    for _ in range(n_boot):
        idx = rng.integers(0, a.size, size=a.size)
        v = stat(a[idx], b[idx])
        if v is None:
            undefined += 1
        else:
            values.append(v)
    if len(values) < max(1, n_boot // 2):
        return None, None, undefined
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high), undefined


# -- the report ---------------------------------------------------------------------------------
def _undefined_reason(x: np.ndarray, y: np.ndarray, kinds: tuple[str, str]) -> str:
    if x.size < 2:
        return f"undefined: {x.size} pair(s), need at least 2"
    if np.ptp(y) == 0:
        return f"undefined: the {kinds[1]} are constant"
    if np.ptp(x) == 0:
        return f"undefined: the {kinds[0]} are constant"
    return "undefined: zero expected disagreement"


def agreement_stat(
    name: str, fn: Stat, x: np.ndarray, y: np.ndarray, n_boot: int, seed: int,
    kinds: tuple[str, str] = ("rewards", "ratings"),
) -> AgreementStat:  # fmt: skip
    """``fn(x, y)`` as an :class:`AgreementStat` with its bootstrap interval, or None with why it
    is undefined (``kinds`` names x and y in that reason)."""
    value = fn(x, y)
    if value is None:
        return AgreementStat(name, None, n=int(x.size), note=_undefined_reason(x, y, kinds))
    low, high, undefined = bootstrap_ci(fn, x, y, n_boot=n_boot, seed=seed)
    note = f"{undefined} of {n_boot} bootstrap resamples undefined (left out)" if undefined else ""
    return AgreementStat(name, value, low, high, int(x.size), note)


def agreement(
    pred: Sequence[float | None],
    truth: Sequence[float | None],
    *,
    kappa_bins: Sequence[float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> AgreementReport:
    """Agreement of rewards (``pred``) with ratings (``truth``), aligned by position; pairs with a
    None on either side are left out and counted. κ bins the rewards onto the rating categories
    (module docstring); the correlations use the raw values.

    >>> r = agreement([0.9, 0.2, 0.6, 0.1], [1, 0, 1, 0], n_boot=0)
    >>> round(r.spearman.value, 4), r.cohen_kappa.value
    (0.8944, 1.0)
    >>> agreement([0.9, 0.2, 0.6], [1, 1, 1], n_boot=0).kendall.note
    'undefined: the ratings are constant'
    """
    if len(pred) != len(truth):
        raise ValueError(f"pred and truth must have the same length, not {len(pred)} and {len(truth)}")
    keep = [i for i, (p, t) in enumerate(zip(pred, truth)) if p is not None and t is not None]
    x = np.asarray([pred[i] for i in keep], dtype=float)
    y = np.asarray([truth[i] for i in keep], dtype=float)
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("pred and truth must be finite numbers or None")
    n_missing = len(pred) - len(keep)
    stats = {
        "spearman": agreement_stat("spearman", spearman, x, y, n_boot, seed),
        "kendall": agreement_stat("kendall", kendall_tau_b, x, y, n_boot, seed),
        "pearson": agreement_stat("pearson", pearson, x, y, n_boot, seed),
    }
    if y.size:
        binned = bin_to_categories(x, y, kappa_bins)
        kinds = ("binned rewards", "ratings")
        stats["cohen_kappa"] = agreement_stat("cohen_kappa", _kappa(None), binned, y, n_boot, seed, kinds)
        stats["quadratic_kappa"] = agreement_stat("quadratic_kappa", _kappa("quadratic"), binned, y, n_boot, seed, kinds)
    else:
        for name in ("cohen_kappa", "quadratic_kappa"):
            stats[name] = AgreementStat(name, None, n=0, note="undefined: 0 pair(s), need at least 2")
    notes = [f"{n_missing} pair(s) with a missing reward or rating left out"] if n_missing else []
    how = "kappa_bins edges" if kappa_bins is not None else "the nearest rating category"
    notes.append(f"kappa: rewards binned onto the rating categories by {how}")
    return AgreementReport(**stats, n=int(x.size), n_missing=n_missing, note="; ".join(notes))


def _kappa(weights: Literal["quadratic"] | None) -> Stat:
    def stat(a: np.ndarray, b: np.ndarray) -> float | None:
        return cohen_kappa(a, b, weights=weights)

    return stat
