"""pass@k and maj@k from n sampled answers per case.

**pass@k** is the unbiased estimator of Chen et al. 2021 ("Evaluating Large Language Models Trained
on Code", the Codex paper, §2.1): with ``n`` samples of which ``c`` are correct,

    pass@k = 1 - C(n - c, k) / C(n, k)

computed in the paper's numerically stable product form
``1 - prod_{i = n-c+1}^{n} (1 - k / i)`` (its numpy snippet; ``1.0`` when ``n - c < k``), averaged
over cases. pass@1 is the mean share of correct samples.

**maj@k** (majority voting, "self-consistency", Wang et al. 2023): the answer given most often among
the first ``k`` samples of a case is the case's answer; the case counts as correct when that answer
is. Samples without a parsable answer (``None``) do not vote; a case where no sample answered is
wrong; a tie goes to the answer that appeared first (deterministic).

>>> round(pass_at_k(5, 2, 2), 3)     # 1 - C(3,2)/C(5,2) = 1 - 3/10
0.7
>>> majority_vote(["B", None, "A", "B", "A"])
'B'
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

__all__ = ["majority_index", "majority_vote", "maj_at_k", "mean_pass_at_k", "pass_at_k"]

H = TypeVar("H", bound=Hashable)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one case: ``1 - C(n-c, k) / C(n, k)`` (Chen et al. 2021), product form.

    Raises:
        ValueError: not ``0 <= c <= n`` or not ``1 <= k <= n``.

    >>> pass_at_k(10, 0, 3), pass_at_k(10, 8, 3), round(pass_at_k(10, 1, 1), 3)
    (0.0, 1.0, 0.1)
    """
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    product = 1.0
    for i in range(n - c + 1, n + 1):
        product *= 1.0 - k / i
    return 1.0 - product


def mean_pass_at_k(counts: Sequence[tuple[int, int]], k: int) -> float:
    """Mean of :func:`pass_at_k` over cases given as ``(n, c)`` pairs (0.0 for no case).

    >>> mean_pass_at_k([(2, 1), (2, 0)], 1)
    0.25
    """
    return sum(pass_at_k(n, c, k) for n, c in counts) / len(counts) if counts else 0.0


def majority_index(answers: Sequence[Hashable | None]) -> int | None:
    """Index of the first sample carrying the majority answer (ties: the answer seen first);
    ``None`` when no sample has an answer.

    >>> majority_index([None, "A", "B", "B"]), majority_index([None, None])
    (2, None)
    """
    counts: dict[Hashable, int] = {}
    first: dict[Hashable, int] = {}
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        counts[answer] = counts.get(answer, 0) + 1
        first.setdefault(answer, i)
    if not counts:
        return None
    best = max(counts.values())
    return min(first[a] for a, c in counts.items() if c == best)


def majority_vote(answers: Sequence[H | None]) -> H | None:
    """The most frequent non-``None`` answer (ties: the one seen first), ``None`` if there is none."""
    index = majority_index(answers)
    return None if index is None else answers[index]


def maj_at_k(cases: Sequence[tuple[Sequence[Hashable | None], Sequence[bool]]], k: int) -> float:
    """Share of cases whose majority answer over the first ``k`` samples is correct.

    Each case is ``(answers, correct)``: the parsed answer of every sample (``None``: unparsable) and
    whether that sample is correct. Samples with the same answer are assumed equally correct; the
    correctness of the first sample carrying the majority answer is used.

    >>> maj_at_k([(["A", "B", "A"], [True, False, True]), ([None, "C", "D"], [False, False, True])], 3)
    0.5
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not cases:
        return 0.0
    hits = 0
    for answers, correct in cases:
        if len(answers) != len(correct):
            raise ValueError("answers and correct flags differ in length")
        index = majority_index(answers[:k])
        hits += index is not None and bool(correct[index])
    return hits / len(cases)
