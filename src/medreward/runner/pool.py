"""Scoring in worker processes (``Scorer(workers=N)``, ``medreward score --workers N``).

Each worker builds its own :class:`~medreward.runner.Scorer` from the spec once (spawn
start method: safe with the scorer's threads, and the same on every platform), scores
whole chunks and sends back records plus statistics. Results come back in input order;
at most ``2 × workers`` chunks are in flight, so a large file streams.

A worker that dies (a component that segfaults or calls ``os._exit``) breaks the pool:
the pool is rebuilt and the lost chunks are retried once; a chunk that kills a worker
twice is reported as ``error`` for each of its samples, and the run goes on.
"""

from __future__ import annotations

import logging
import marshal
import multiprocessing
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any

from ..records import ScoredRecord, Status
from .stats import RunStats

if TYPE_CHECKING:
    from .scorer import Scorer

__all__ = ["score_in_workers"]

log = logging.getLogger(__name__)

_worker_scorer: Scorer | None = None


def _init_worker(spec_dict: dict[str, Any], time_limit: float | None, chunk_size: int) -> None:
    global _worker_scorer
    from .scorer import Scorer

    _worker_scorer = Scorer(spec_dict, time_limit=time_limit, workers=0, chunk_size=chunk_size)


#: what a worker sends back per record: reward, components, status value, info, and the echoed
#: input record, or None when it equals the input the parent still holds (the usual case: a
#: 2 KB completion need not travel back)
_Result = tuple[float | None, dict[str, float | None], str, dict[str, Any], dict[str, Any] | None]
_STATUS = {s.value: s for s in Status}


def _score_in_worker(chunk: list[Any]) -> tuple[bytes | list[_Result], RunStats]:
    scorer = _worker_scorer
    assert scorer is not None, "worker not initialised"
    scorer.stats = RunStats.empty(scorer.spec.component_names)
    results = _results(chunk, scorer.score_chunk(chunk))
    try:  # plain data (the usual case) travels as marshal bytes: about 4× cheaper to load than pickle
        return marshal.dumps(results), scorer.stats
    except ValueError:  # a component put something marshal cannot carry into info: pickle it
        return results, scorer.stats


def _results(chunk: list[Any], records: list[ScoredRecord]) -> list[_Result]:
    return [
        (r.reward, r.components, r.status.value, r.info, None if type(item) is dict and r.record == item else r.record)
        for item, r in zip(chunk, records)
    ]


def _rebuild(chunk: list[Any], payload: bytes | list[_Result]) -> list[ScoredRecord]:
    results = marshal.loads(payload) if isinstance(payload, bytes) else payload
    return [
        ScoredRecord(dict(item) if record is None else record, reward, components, _STATUS[status], info)
        for item, (reward, components, status, info, record) in zip(chunk, results)
    ]


def score_in_workers(scorer: Scorer, chunks: Iterable[list[Any]]) -> Iterator[list[ScoredRecord]]:
    """Score ``chunks`` in ``scorer.workers`` processes, yielding each chunk's records in order."""
    context = multiprocessing.get_context("spawn")
    init_args = (scorer.spec.to_dict(), scorer.time_limit, scorer.chunk_size)

    def new_pool() -> ProcessPoolExecutor:
        return ProcessPoolExecutor(scorer.workers, mp_context=context, initializer=_init_worker, initargs=init_args)

    pool = new_pool()
    pending: deque[tuple[list[Any], Future, int]] = deque()  # chunk, future, tries
    iterator = iter(chunks)
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < 2 * scorer.workers:
                chunk = next(iterator, None)
                if chunk is None:
                    exhausted = True
                    break
                pending.append((chunk, pool.submit(_score_in_worker, chunk), 1))
            if not pending:
                return
            chunk, future, tries = pending.popleft()
            try:
                results, stats = future.result()
            except BrokenProcessPool:
                log.warning("a worker process died; rebuilding the pool and retrying the lost chunks")
                pool.shutdown(wait=False, cancel_futures=True)
                pool = new_pool()
                retry = [(chunk, tries)] + [(c, t) for c, _, t in pending]
                pending.clear()
                for c, t in retry:
                    if t >= 2:  # killed a worker twice: report it, keep its place in the order
                        dead = _dead_chunk(scorer, c)
                        dead_stats = RunStats.empty(scorer.spec.component_names)
                        dead_stats.add_records(dead)
                        done: Future = Future()
                        done.set_result((_results(c, dead), dead_stats))
                        pending.append((c, done, t))
                    else:
                        pending.append((c, pool.submit(_score_in_worker, c), t + 1))
                continue
            scorer.stats.merge(stats)
            yield _rebuild(chunk, results)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _dead_chunk(scorer: Scorer, chunk: list[Any]) -> list[ScoredRecord]:
    """Error records for a chunk that killed its worker twice."""
    from ..records import BadRecord

    empty = {n: None for n in scorer.spec.component_names}
    out = []
    for item in chunk:
        if isinstance(item, BadRecord):
            record = item.to_record()
        elif hasattr(item, "to_dict"):
            record = item.to_dict()
        else:
            record = dict(item) if isinstance(item, dict) else {"raw": repr(item)[:1000]}
        out.append(ScoredRecord(record, None, dict(empty), Status.ERROR,
                                {"error": "a worker process died while scoring this chunk (twice)"}))
    return out
