"""Token-budget batching for local models: sort by length, pack under a token budget, split a batch
that fails (out of memory) and retry its halves; results come back in input order.

A fixed batch size in dataset order pads every row of a batch to its longest row: on mixed-length
data most of the compute goes to padding. Sorting by length puts similar lengths together, and a
*token* budget (rows × longest row ≤ ``max_batch_tokens``) lets short texts share big batches while
long ones go in small batches, so memory per batch stays flat. :class:`PackingStats` measures the
padding either way (``benchmarks/bench_batching.py`` compares the two).

>>> pack([5, 100, 7, 98], max_batch_tokens=200)
[[1, 3], [2, 0]]
>>> pack_fixed(5, 2)
[[0, 1], [2, 3], [4]]
>>> stats = PackingStats()
>>> run_packed(["a", "bb", "ccc"], [1, 2, 3], lambda batch: [s.upper() for s in batch], max_batch_tokens=4, stats=stats)
['A', 'BB', 'CCC']
>>> stats.batches, stats.real_tokens, stats.padded_tokens
(2, 6, 7)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

from .base import BackendFailure

__all__ = ["PackingStats", "pack", "pack_fixed", "run_packed"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

#: characters of an exception quoted in a failure message
_MESSAGE_CHARS = 300


@dataclass
class PackingStats:
    """What batching cost: ``padded_tokens`` = Σ over batches of rows × longest row (the tokens the
    model computed); ``real_tokens`` = Σ of the rows' own lengths; ``splits`` = batches that failed
    and were split in two."""

    batches: int = 0
    real_tokens: int = 0
    padded_tokens: int = 0
    splits: int = 0

    @property
    def padding_fraction(self) -> float:
        """Share of the computed tokens that were padding (0 when nothing ran)."""
        return 1.0 - self.real_tokens / self.padded_tokens if self.padded_tokens else 0.0

    def merge(self, other: PackingStats) -> None:
        self.batches += other.batches
        self.real_tokens += other.real_tokens
        self.padded_tokens += other.padded_tokens
        self.splits += other.splits


def pack(lengths: Sequence[int], max_batch_tokens: int, *, max_batch_size: int | None = None) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, longest first: each batch's rows × its longest
    row stays within ``max_batch_tokens`` (an item longer than the budget is a batch alone), and at
    most ``max_batch_size`` rows. Longest first: a batch that does not fit in memory fails at once,
    not after the short ones ran."""
    if max_batch_tokens < 1:
        raise ValueError(f"max_batch_tokens must be >= 1, not {max_batch_tokens}")
    if max_batch_size is not None and max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1 or None, not {max_batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in order:
        length = max(1, lengths[i])
        new_width = max(width, length)
        full = max_batch_size is not None and len(current) >= max_batch_size
        if current and (full or (len(current) + 1) * new_width > max_batch_tokens):
            batches.append(current)
            current, new_width = [], length
        current.append(i)
        width = new_width
    if current:
        batches.append(current)
    return batches


def pack_fixed(count: int, batch_size: int) -> list[list[int]]:
    """The naive batching: ``batch_size`` items at a time, in input order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    return [list(range(start, min(start + batch_size, count))) for start in range(0, count, batch_size)]


def run_packed(
    items: Sequence[T],
    lengths: Sequence[int],
    run: Callable[[list[T]], Sequence[R]],
    *,
    max_batch_tokens: int,
    max_batch_size: int | None = None,
    batches: list[list[int]] | None = None,
    stats: PackingStats | None = None,
    label: str = "batch",
) -> list[R | BackendFailure]:
    """``run`` over ``items`` packed by :func:`pack` (or over the given ``batches`` of indices), one
    result per item in input order.

    A batch whose ``run`` raises (out of memory, most often) is split in two and each half retried,
    down to single items; an item that fails alone gets a ``BackendFailure("other", ...)`` naming
    the exception, and the other items are unaffected. ``run`` must return one result per item of
    its batch, in order.
    """
    if len(items) != len(lengths):
        raise ValueError(f"{len(items)} items but {len(lengths)} lengths")
    if batches is None:
        batches = pack(lengths, max_batch_tokens, max_batch_size=max_batch_size)
    out: list[R | BackendFailure | None] = [None] * len(items)
    pending = [list(b) for b in reversed(batches) if b]
    while pending:
        batch = pending.pop()
        try:
            results = list(run([items[i] for i in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"{label} returned {len(results)} results for {len(batch)} inputs")
        except Exception as exc:  # noqa: BLE001 - out of memory or a bad input: split to find out which
            if len(batch) == 1:
                out[batch[0]] = BackendFailure("other", f"{label} failed: {_short(exc)}")
                continue
            if stats is not None:
                stats.splits += 1
            log.warning("%s of %d failed (%s); splitting it in two", label, len(batch), _short(exc))
            half = len(batch) // 2
            pending.append(batch[half:])
            pending.append(batch[:half])  # popped first: results stay roughly in the packed order
            continue
        for i, result in zip(batch, results):
            out[i] = result
        if stats is not None:
            stats.batches += 1
            stats.real_tokens += sum(max(1, lengths[i]) for i in batch)
            stats.padded_tokens += len(batch) * max(max(1, lengths[i]) for i in batch)
    return out  # type: ignore[return-value]


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)[:_MESSAGE_CHARS]
