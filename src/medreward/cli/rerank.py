"""``medreward rerank IN --spec S -k N`` (best-of-N: the N best completions of each group) and
``medreward filter IN --spec S --min X`` (reward-based data filtering, as IXC-2.5-Reward filters
SFT data with its reward model). Both score with any spec, rule-based or model-backed, through
the ``score`` command's reading, scoring, writing and summary (:func:`.score.run_scoring`), and
write scored records (docs/contracts.md#scored-record-output) for the records they keep.

Which records can be kept: only ``ok`` ones. A record whose status is ``error``, ``timeout`` or
``not_applicable`` has no reward, so it never wins and never passes; the summary and
``--stats-json`` count them by status.

Groups (``rerank``): a group is the rollouts sharing the ``group`` field, else the same prompt
(``Rollout.group_key``; docs/contracts.md#rollout-record-input). A record that breaks the rollout
contract (a malformed line, no completion) has no group: it is counted as unreadable and dropped.
Within a group the ``k`` highest rewards are kept; **ties go to the record that came first** in
the input, so a run is deterministic. Kept records are written in input order.

Memory: with ``--groups contiguous`` (the default) each group's rows must be consecutive, as a
trainer's rollout dump writes them; one group is held at a time and written when the next one
starts. A group that comes back after it was written is an error that names it (the output then
holds the groups before it), because keeping the best of each part would silently keep too many.
For that check the command remembers an 8-byte digest per group written (about 70 bytes each in
Python: 7 MB for 100,000 groups), never the records. ``--groups scattered`` accepts any order: it
spools the scored records to a temporary file and keeps only each group's top-``k`` rewards in
memory, then writes the winners in a second pass over the spool.

``filter`` streams record by record: it keeps ``ok`` records whose reward is ``>= --min``.

Both stream only as far as scoring does: records are scored ``--chunk-size`` at a time, and a spec
with ``aggregate = "normalize_then_sum"`` (GDPO) scores the whole input as one batch.
"""

from __future__ import annotations

import hashlib
import heapq
import math
import pickle
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from ..errors import InputError, RecordError
from ..records import Rollout, ScoredRecord, Status
from .console import user_errors
from .score import (
    BACKEND_URL_OPTION, CACHE_OPTION, CHUNK_SIZE_OPTION, INPUT_ARGUMENT, ISOLATION_OPTION, NO_CACHE_OPTION,
    OUTPUT_OPTION, QUIET_OPTION, SPEC_OPTION, STATS_JSON_OPTION, TIME_LIMIT_OPTION, WORKERS_OPTION, Isolation,
    build_scorer, run_scoring,
)  # fmt: skip

__all__ = ["BestOfGroups", "GroupOrder", "RewardAtLeast", "filter_command", "group_of", "rerank_command"]


class GroupOrder(str, Enum):
    contiguous = "contiguous"
    scattered = "scattered"


def group_of(record: ScoredRecord) -> str | None:
    """The group of a scored record (its ``group`` field, else a hash of its prompt), or None when
    the input record breaks the rollout contract and so has no readable group."""
    try:
        return Rollout.from_dict(record.record).group_key
    except (RecordError, TypeError, ValueError):
        return None


def _digest(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


@dataclass
class _Counts:
    """What a selection saw: records, the kept ones, and why the others were dropped."""

    scored: int = 0
    kept: int = 0
    unranked: Counter[str] = field(default_factory=Counter)  # not ok, by status: never kept

    def see(self, record: ScoredRecord) -> bool:
        """Count a scored record; whether it can be kept (it is ``ok``, with a reward)."""
        self.scored += 1
        if record.status is Status.OK and record.reward is not None:
            return True
        self.unranked[record.status.value] += 1
        return False

    def dropped_line(self) -> str:
        unranked = sum(self.unranked.values())
        if not unranked:
            return ""
        parts = ", ".join(f"{n} {status}" for status, n in sorted(self.unranked.items()))
        return f"; {unranked} without a reward never kept ({parts})"

    def to_dict(self) -> dict[str, Any]:
        return {"scored": self.scored, "kept": self.kept, "dropped_without_reward": dict(sorted(self.unranked.items()))}


class BestOfGroups:
    """The ``k`` best ``ok`` records of each group (ties: the earlier record), in input order.

    >>> def rec(group, reward):
    ...     status = Status.OK if reward is not None else Status.ERROR
    ...     return ScoredRecord({"group": group, "completion": "x"}, reward, {}, status)
    >>> best = BestOfGroups(k=1)
    >>> [(r.record["group"], r.reward) for r in best.select([rec("a", 0.2), rec("a", 0.9), rec("a", 0.9), rec("b", None)])]
    [('a', 0.9)]
    >>> best.summary_lines()[0]
    'rerank: kept 1 of 4 scored records (best 1 of each of 2 groups); 1 without a reward never kept (1 error)'
    """

    def __init__(self, k: int, order: GroupOrder = GroupOrder.contiguous) -> None:
        if k < 1:
            raise InputError(f"-k must be at least 1, not {k}")
        self.k = k
        self.order = GroupOrder(order)
        self.counts = _Counts()
        self.groups = 0
        self.unreadable = 0  # records with no readable group (they break the rollout contract)
        self._read = 0  # scored records taken from the stream so far

    def select(self, scored: Iterable[ScoredRecord]) -> Iterator[ScoredRecord]:
        if self.order is GroupOrder.scattered:
            return self._scattered(scored)
        return self._contiguous(scored)

    def _grouped(self, scored: Iterable[ScoredRecord]) -> Iterator[tuple[str, ScoredRecord]]:
        for record in scored:
            self._read += 1
            key = group_of(record)
            if key is None:
                self.counts.see(record)
                self.unreadable += 1
                continue
            yield key, record

    def _best(self, group: list[ScoredRecord]) -> list[ScoredRecord]:
        ranked = [(i, r) for i, r in enumerate(group) if self.counts.see(r)]
        chosen = heapq.nsmallest(self.k, ranked, key=lambda item: (-item[1].reward, item[0]))  # type: ignore[operator]
        self.counts.kept += len(chosen)
        return [r for _, r in sorted(chosen, key=lambda item: item[0])]

    def _contiguous(self, scored: Iterable[ScoredRecord]) -> Iterator[ScoredRecord]:
        written: set[int] = set()
        current: str | None = None
        group: list[ScoredRecord] = []
        for key, record in self._grouped(scored):
            if key != current:
                if current is not None:
                    yield from self._best(group)
                    written.add(_digest(current))
                digest = _digest(key)
                if digest in written:
                    raise InputError(
                        f"rerank: group {key!r} comes back at record {self._read} after "
                        "its rows were written: its rows are not consecutive. Sort the input by group, or pass "
                        "--groups scattered (any order). The output holds only the groups before it."
                    )
                self.groups += 1
                current, group = key, []
            group.append(record)
        if current is not None:
            yield from self._best(group)

    def _scattered(self, scored: Iterable[ScoredRecord]) -> Iterator[ScoredRecord]:
        # pass 1: spool every record; keep each group's top k as a min-heap of (reward, -position)
        tops: dict[str, list[tuple[float, int]]] = {}
        with tempfile.TemporaryFile(prefix="medreward-rerank-") as spool:
            position = 0
            for key, record in self._grouped(scored):
                pickle.dump(record, spool, protocol=pickle.HIGHEST_PROTOCOL)
                heap = tops.setdefault(key, [])
                if self.counts.see(record):
                    entry = (record.reward, -position)  # higher reward, then earlier position, wins
                    if len(heap) < self.k:
                        heapq.heappush(heap, entry)  # type: ignore[arg-type]
                    elif entry > heap[0]:
                        heapq.heapreplace(heap, entry)  # type: ignore[arg-type]
                position += 1
            self.groups = len(tops)
            keep = {-p for heap in tops.values() for _, p in heap}
            del tops
            self.counts.kept = len(keep)
            # pass 2: the winners, in input order
            spool.seek(0)
            for index in range(position):
                record = pickle.load(spool)
                if index in keep:
                    yield record

    def summary_lines(self) -> list[str]:
        c = self.counts
        line = (
            f"rerank: kept {c.kept} of {c.scored} scored records (best {self.k} of each of {self.groups} "
            f"group{'s' if self.groups != 1 else ''}){c.dropped_line()}"
        )
        lines = [line]
        if self.unreadable:
            lines.append(f"{self.unreadable} record(s) break the rollout contract and have no group: dropped")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"command": "rerank", "k": self.k, "groups": self.groups, "order": self.order.value,
                "no_group": self.unreadable, **self.counts.to_dict()}  # fmt: skip


class RewardAtLeast:
    """The ``ok`` records whose reward is at least ``minimum``, streamed in input order.

    >>> keep = RewardAtLeast(0.5)
    >>> rows = [ScoredRecord({}, r, {}, Status.OK) for r in (0.2, 0.5, 0.9)] + [ScoredRecord({}, None, {}, Status.TIMEOUT)]
    >>> [r.reward for r in keep.select(rows)]
    [0.5, 0.9]
    >>> keep.summary_lines()
    ['filter: kept 2 of 4 scored records (reward >= 0.5); 1 below the threshold; 1 without a reward never kept (1 timeout)']
    """

    def __init__(self, minimum: float) -> None:
        if math.isnan(minimum):
            raise InputError("--min must be a number, not NaN")
        self.minimum = minimum
        self.counts = _Counts()
        self.below = 0

    def select(self, scored: Iterable[ScoredRecord]) -> Iterator[ScoredRecord]:
        for record in scored:
            if not self.counts.see(record):
                continue
            if record.reward >= self.minimum:  # type: ignore[operator]
                self.counts.kept += 1
                yield record
            else:
                self.below += 1

    def summary_lines(self) -> list[str]:
        c = self.counts
        return [
            f"filter: kept {c.kept} of {c.scored} scored records (reward >= {self.minimum:g}); "
            f"{self.below} below the threshold{c.dropped_line()}"
        ]

    def to_dict(self) -> dict[str, Any]:
        return {"command": "filter", "min": self.minimum, "below_min": self.below, **self.counts.to_dict()}


@user_errors
def rerank_command(
    input: Path = INPUT_ARGUMENT,
    spec: str = SPEC_OPTION,
    k: int = typer.Option(..., "-k", "--keep", min=1, help="Completions to keep per group (the best k; ties: the earlier one)."),
    groups: GroupOrder = typer.Option(
        GroupOrder.contiguous, "--groups", case_sensitive=False,
        help="'contiguous': each group's rows are consecutive (one group in memory; a group that comes back is an "
        "error). 'scattered': any order (records spooled to a temporary file, two passes).",
    ),
    output: str | None = OUTPUT_OPTION,
    workers: int = WORKERS_OPTION,
    time_limit: float = TIME_LIMIT_OPTION,
    isolation: Isolation | None = ISOLATION_OPTION,
    chunk_size: int = CHUNK_SIZE_OPTION,
    quiet: bool = QUIET_OPTION,
    backend_url: list[str] = BACKEND_URL_OPTION,
    cache: Path | None = CACHE_OPTION,
    no_cache: bool = NO_CACHE_OPTION,
    stats_json: Path | None = STATS_JSON_OPTION,
) -> None:
    """Best-of-N: score rollouts and keep the k best completions of each group (same `group`, else same prompt).

    Only `ok` records can be kept; ties go to the record that came first; kept records are written
    in input order, as scored records."""
    selector = BestOfGroups(k, groups)
    scorer = build_scorer(spec, workers, time_limit, isolation, chunk_size, backend_url, cache, no_cache, stats_json)
    try:
        run_scoring(scorer, input, output, quiet=quiet, stats_json=stats_json, selector=selector, command="rerank")
    finally:
        scorer.close()


@user_errors
def filter_command(
    input: Path = INPUT_ARGUMENT,
    spec: str = SPEC_OPTION,
    minimum: float = typer.Option(..., "--min", help="Keep records whose reward is at least this."),
    output: str | None = OUTPUT_OPTION,
    workers: int = WORKERS_OPTION,
    time_limit: float = TIME_LIMIT_OPTION,
    isolation: Isolation | None = ISOLATION_OPTION,
    chunk_size: int = CHUNK_SIZE_OPTION,
    quiet: bool = QUIET_OPTION,
    backend_url: list[str] = BACKEND_URL_OPTION,
    cache: Path | None = CACHE_OPTION,
    no_cache: bool = NO_CACHE_OPTION,
    stats_json: Path | None = STATS_JSON_OPTION,
) -> None:
    """Reward-based data filtering: score rollouts and keep those whose reward is at least --min.

    Records without a reward (error, timeout, not_applicable) never pass; the summary counts them."""
    selector = RewardAtLeast(minimum)
    scorer = build_scorer(spec, workers, time_limit, isolation, chunk_size, backend_url, cache, no_cache, stats_json)
    try:
        run_scoring(scorer, input, output, quiet=quiet, stats_json=stats_json, selector=selector, command="filter")
    finally:
        scorer.close()
