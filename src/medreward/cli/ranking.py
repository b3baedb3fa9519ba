"""Rank agreement between a reward and a task metric across policies (for ``medreward demo``).

A handful of policies means a handful of pairs, so the statistic is computed directly rather
than with scipy (which medreward does not depend on).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import combinations

__all__ = ["discordant_pairs", "kendall_tau"]


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Kendall's τ-b between two paired sequences (the tie-corrected τ, as ``scipy.stats.kendalltau``
    computes by default): ``(C - D) / sqrt((P - Tx) * (P - Ty))`` over the ``P`` pairs, with ``C``/``D``
    the concordant/discordant pairs and ``Tx``/``Ty`` the pairs tied in ``x``/``y``. 1 means the
    same order, -1 the reverse; ``None`` when it is undefined (fewer than 2 items, or one side
    all tied).

    >>> kendall_tau([1, 2, 3], [10, 20, 30]), kendall_tau([1, 2, 3], [3, 2, 1])
    (1.0, -1.0)
    """
    if len(x) != len(y):
        raise ValueError(f"kendall_tau needs paired values, got {len(x)} and {len(y)}")
    pairs = len(x) * (len(x) - 1) // 2
    score = tied_x = tied_y = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = _sign(x[i] - x[j]), _sign(y[i] - y[j])
        tied_x += dx == 0
        tied_y += dy == 0
        score += dx * dy
    denominator = math.sqrt((pairs - tied_x) * (pairs - tied_y))
    return score / denominator if denominator else None


def discordant_pairs(names: Sequence[str], x: Sequence[float], y: Sequence[float]) -> list[tuple[str, str]]:
    """The pairs of names that ``x`` and ``y`` order in opposite directions."""
    return [
        (names[i], names[j])
        for i, j in combinations(range(len(names)), 2)
        if _sign(x[i] - x[j]) * _sign(y[i] - y[j]) < 0
    ]
