"""Zero-variance group detection: GRPO groups that give no gradient.

A group whose rewards are all equal has every advantage 0 (GRPO, Dr. GRPO, RLOO alike), so
its rollouts cost compute and teach nothing; a rising fraction of such groups is the usual
sign that a task is too easy or too hard for the policy, or that a reward saturates (DAPO's
dynamic sampling and MedLoc-R1's curriculum both react to it — docs/formulas.md#zero-variance-groups).

A group counts as zero-variance when its valid (non-NaN) rewards are all equal within
``atol``, including groups with fewer than two valid rewards (they give no signal either).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from dataclasses import dataclass, field

import numpy as np

from medreward.shape._common import (
    ArrayLike,
    GroupsLike,
    as_float_array,
    as_groups,
    check_positive,
    group_constant,
)

__all__ = ["ZeroVarianceReport", "zero_variance_groups"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZeroVarianceReport:
    """Which groups of a batch carry no learning signal.

    ``group_ids`` are the caller's group keys (sorted for string keys, ascending for ints);
    ``sample_mask[i]`` is True when rollout ``i`` is in such a group.
    """

    n_groups: int
    n_zero_variance: int
    group_ids: tuple[Hashable, ...]
    sample_mask: np.ndarray = field(repr=False, compare=False)

    @property
    def fraction(self) -> float:
        """Share of groups with zero variance (0.0 for an empty batch)."""
        return self.n_zero_variance / self.n_groups if self.n_groups else 0.0

    @property
    def count(self) -> int:
        """Number of zero-variance groups (alias of ``n_zero_variance``)."""
        return self.n_zero_variance


def zero_variance_groups(rewards: ArrayLike, groups: GroupsLike, *, atol: float = 0.0) -> ZeroVarianceReport:
    """Report the groups whose rewards are all equal (within ``atol``).

    >>> rep = zero_variance_groups([1, 1, 0, 1, 0, 0], ["a", "a", "b", "b", "c", "c"])
    >>> rep.n_zero_variance, rep.fraction, rep.group_ids
    (2, 0.6666666666666666, ('a', 'c'))
    """
    atol = check_positive(atol, "atol", allow_zero=True)
    r = as_float_array(rewards, "rewards")
    g = as_groups(groups, r.size)
    if r.size == 0:
        return ZeroVarianceReport(0, 0, (), np.zeros(0, dtype=bool))
    present = g.present()
    constant = group_constant(r, g, atol=atol)
    zero_ids = present[constant[present]]
    report = ZeroVarianceReport(
        n_groups=int(present.size),
        n_zero_variance=int(zero_ids.size),
        group_ids=tuple(g.key(int(d)) for d in zero_ids),
        sample_mask=constant[g.ids],
    )
    logger.debug("zero-variance groups: %d/%d (%.1f%%)", report.n_zero_variance, report.n_groups, 100 * report.fraction)
    return report
