"""Calibration of probability-like rewards against binary outcomes: expected calibration error
(ECE) with equal-mass bins, the Brier score, and the reliability curve.

- **Brier score** (Brier 1950): ``mean((p − o)²)`` (sklearn.metrics.brier_score_loss).
- **Equal-mass bins**: the edges are the ``0, 1/B, …, 1`` quantiles of the rewards
  (``numpy.percentile``, linear interpolation) and a reward equal to an inner edge goes to the
  lower bin — exactly sklearn.calibration.calibration_curve(strategy="quantile"), so tied rewards
  always share a bin (bins can then hold unequal counts, and empty bins are dropped).
- **Reliability curve**: per bin the mean reward (``mean_pred``), the fraction of positive
  outcomes (``frac_pos``) and the count.
- **ECE** (Naeini et al. 2015; Guo et al. 2017): ``Σ_b (n_b / n)·|frac_pos_b − mean_pred_b|``.

Rewards outside [0, 1] are not probability-like and outcomes other than 0/1 (or booleans) are not
binary: the report is then undefined (None values with a note), not an error. Pairs with a None
on either side are left out and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["CalibrationReport", "brier_score", "calibration", "equal_mass_bins"]


@dataclass(frozen=True)
class CalibrationReport:
    """ECE, Brier and the reliability curve (``bins``: ``{"mean_pred", "frac_pos", "count"}``,
    lowest rewards first); None values with a ``note`` when calibration is undefined."""

    ece: float | None
    brier: float | None
    bins: list[dict[str, float | int]] = field(default_factory=list)
    n: int = 0
    n_bins: int = 0
    n_missing: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"ece": self.ece, "brier": self.brier, "bins": [dict(b) for b in self.bins], "n": self.n,
                "n_bins": self.n_bins, "n_missing": self.n_missing, "note": self.note}  # fmt: skip


def brier_score(probs: Sequence[float], outcomes: Sequence[float]) -> float:
    """Mean squared difference of probabilities and 0/1 outcomes.

    >>> brier_score([0.9, 0.2, 0.6], [1, 0, 0])
    0.13666666666666666
    """
    p, o = np.asarray(probs, dtype=float), np.asarray(outcomes, dtype=float)
    return float(np.mean((p - o) ** 2))


def equal_mass_bins(probs: Sequence[float], n_bins: int) -> np.ndarray:
    """The bin of each probability (0 … n_bins−1) with quantile edges; a value on an inner edge
    goes to the lower bin, so ties share a bin.

    >>> equal_mass_bins([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], 3).tolist()
    [0, 0, 1, 1, 2, 2]
    """
    p = np.asarray(probs, dtype=float)
    edges = np.percentile(p, np.linspace(0.0, 100.0, n_bins + 1))
    return np.searchsorted(edges[1:-1], p)


def calibration(
    probs: Sequence[float | None], outcomes: Sequence[float | bool | None], *, n_bins: int = 10
) -> CalibrationReport:
    """ECE (equal-mass bins), Brier score and reliability curve of probability-like rewards
    against 0/1 outcomes.

    >>> r = calibration([0.1, 0.3, 0.7, 0.9], [0, 1, 1, 1], n_bins=2)
    >>> r.bins
    [{'mean_pred': 0.2, 'frac_pos': 0.5, 'count': 2}, {'mean_pred': 0.8, 'frac_pos': 1.0, 'count': 2}]
    >>> round(r.ece, 4), round(r.brier, 4)
    (0.25, 0.15)
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, not {n_bins}")
    if len(probs) != len(outcomes):
        raise ValueError(f"probs and outcomes must have the same length, not {len(probs)} and {len(outcomes)}")
    keep = [i for i, (p, o) in enumerate(zip(probs, outcomes)) if p is not None and o is not None]
    n_missing = len(probs) - len(keep)
    p = np.asarray([probs[i] for i in keep], dtype=float)
    o = np.asarray([float(outcomes[i]) for i in keep], dtype=float)
    missing = f"{n_missing} pair(s) with a missing reward or outcome left out" if n_missing else ""

    def undefined(reason: str) -> CalibrationReport:
        note = "; ".join(x for x in (f"undefined: {reason}", missing) if x)
        return CalibrationReport(None, None, [], int(p.size), n_bins, n_missing, note)

    if p.size == 0:
        return undefined("no pairs")
    if not np.isfinite(p).all() or p.min() < 0.0 or p.max() > 1.0:
        return undefined("rewards outside [0, 1] are not probability-like")
    if not np.isin(o, (0.0, 1.0)).all():
        return undefined("outcomes must be 0/1")
    ids = equal_mass_bins(p, n_bins)
    count = np.bincount(ids, minlength=n_bins)
    sum_pred = np.bincount(ids, weights=p, minlength=n_bins)
    sum_pos = np.bincount(ids, weights=o, minlength=n_bins)
    used = count > 0
    mean_pred = sum_pred[used] / count[used]
    frac_pos = sum_pos[used] / count[used]
    bins = [{"mean_pred": float(m), "frac_pos": float(f), "count": int(c)}
            for m, f, c in zip(mean_pred, frac_pos, count[used])]  # fmt: skip
    ece = float(np.sum(count[used] / p.size * np.abs(frac_pos - mean_pred)))
    notes = [missing] if missing else []
    if used.sum() < n_bins:
        notes.append(f"{int(used.sum())} non-empty bin(s) of {n_bins} (ties or fewer rewards than bins)")
    return CalibrationReport(ece, brier_score(p, o), bins, int(p.size), n_bins, n_missing, "; ".join(notes))
