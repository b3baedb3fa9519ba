"""Scoring several concurrent requests in one Scorer call per spec.

A request's scoring is split in three steps (:class:`Work`): parse its body into the items each
spec scores, score, and build its response from the scored records. While every scoring thread
is busy, new requests queue; a thread that frees up takes all of them (up to ``max_bytes`` of
bodies) and scores each spec's items from all of them in one call (:func:`run_batch`). Under
load a scorer call's fixed costs — the hand-off to a scoring thread and to the runner's
time-limit worker, the Scorer's per-call work — are paid once per group of requests, not once
per request. A request that finds a thread idle is scored at once: there is no waiting window,
so a lone request's latency is unchanged.

What each request gets back is what it would get alone: its own records in its own order, its
own errors (a malformed body fails only its own request). Two things are shared within a group:
the records of one call finish together, and the ``backend/*`` cost logs of ``/get_reward`` are
the call's cost per sample.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from starlette.responses import Response

from ..integrations.scorers import SharedScorer
from ..records import ScoredRecord
from ..runner.stats import RunStats

__all__ = ["Coalescer", "Scored", "Work", "run_batch"]

log = logging.getLogger("medreward.serve")


@dataclass(frozen=True)
class Scored:
    """The records of one piece of a :class:`Work`, in its order, with the statistics of the
    scorer call they came from (which scored ``size`` samples: this piece's and other requests')."""

    records: list[ScoredRecord]
    stats: RunStats
    size: int


@dataclass
class Work:
    """One request's scoring: ``pieces`` to score (a shared scorer and its items each), and
    ``finish``, which turns their :class:`Scored` results (one per piece, in order) into the
    response."""

    pieces: list[tuple[SharedScorer, list[Any]]]
    finish: Callable[[list[Scored]], Response]


def run_batch(prepares: Sequence[Callable[[], Work]], trim: Callable[[SharedScorer], None] | None = None) -> list[Any]:
    """Parse, score and answer several requests, each spec's items in one scorer call.

    Returns one entry per request: its :class:`Response`, or the exception its parsing or
    finishing raised (which fails that request only). ``trim`` is called once per scorer used,
    after its call.
    """
    out: list[Any] = [None] * len(prepares)
    works: list[tuple[int, Work]] = []
    for i, prepare in enumerate(prepares):
        try:
            works.append((i, prepare()))
        except Exception as exc:  # noqa: BLE001 - the request's own error (ApiError: its 4xx)
            out[i] = exc
    # every piece's slice of its scorer's call: scorer id → (scorer, items, [(work, piece, start, stop)])
    calls: dict[int, tuple[SharedScorer, list[Any], list[tuple[int, int, int, int]]]] = {}
    for w, (_, work) in enumerate(works):
        for p, (scorer, items) in enumerate(work.pieces):
            _, pooled, slices = calls.setdefault(id(scorer), (scorer, [], []))
            slices.append((w, p, len(pooled), len(pooled) + len(items)))
            pooled.extend(items)
    results: list[list[Scored | None]] = [[None] * len(work.pieces) for _, work in works]
    failed: dict[int, BaseException] = {}
    for scorer, pooled, slices in calls.values():
        try:
            records, stats = scorer.score(pooled)
        except Exception as exc:  # noqa: BLE001 - not expected (bad records are error records): fail these requests
            for w, *_ in slices:
                failed.setdefault(w, exc)
            continue
        finally:
            if trim is not None:
                trim(scorer)
        for w, p, start, stop in slices:
            results[w][p] = Scored(records[start:stop], stats, len(pooled))
    for w, (i, work) in enumerate(works):
        if w in failed:
            out[i] = failed[w]
            continue
        try:
            out[i] = work.finish(results[w])  # type: ignore[arg-type]
        except Exception as exc:  # noqa: BLE001 - fails this request only
            out[i] = exc
    return out


@dataclass
class _Job:
    prepare: Callable[[], Work]
    size: int
    future: asyncio.Future


@dataclass
class Coalescer:
    """Runs requests' :class:`Work` on ``executor`` (``slots`` threads), grouping the requests
    that queue while every thread is busy (see the module docstring).

    ``max_bytes`` bounds the request bodies one group takes (a larger request goes alone);
    ``enabled=False`` scores every request in its own call; ``on_group`` is told the number of
    requests of each group sent to a thread. Used from the event loop only.
    """

    executor: Executor
    slots: int
    max_bytes: int
    trim: Callable[[SharedScorer], None] | None = None
    enabled: bool = True
    on_group: Callable[[int], None] | None = None
    _queue: deque[_Job] = field(default_factory=deque, init=False)
    _free: int = field(init=False)

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, got {self.slots}")
        self._free = self.slots

    @property
    def queued(self) -> int:
        """Requests waiting for a scoring thread."""
        return len(self._queue)

    async def run(self, prepare: Callable[[], Work], size: int) -> Response:
        """The response of one request (``size``: its body's bytes); raises what its work raised."""
        loop = asyncio.get_running_loop()
        job = _Job(prepare, size, loop.create_future())
        self._queue.append(job)
        self._dispatch(loop)
        return await job.future

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._free and self._queue:
            group = [self._queue.popleft()]
            taken = group[0].size
            while self.enabled and self._queue and taken + self._queue[0].size <= self.max_bytes:
                taken += self._queue[0].size
                group.append(self._queue.popleft())
            group = [job for job in group if not job.future.done()]  # a cancelled request is not scored
            if not group:
                continue
            try:
                done = self.executor.submit(run_batch, [job.prepare for job in group], self.trim)
            except RuntimeError as exc:  # the executor has shut down
                for job in group:
                    job.future.set_exception(exc)
                continue
            self._free -= 1
            if self.on_group is not None:
                self.on_group(len(group))
            done.add_done_callback(lambda f, group=group: self._hand_back(loop, group, f))

    def _hand_back(self, loop: asyncio.AbstractEventLoop, group: list[_Job], done: Any) -> None:
        try:  # on the scoring thread: the results go to the event loop
            loop.call_soon_threadsafe(self._finished, loop, group, done)
        except RuntimeError:  # the loop has closed: nobody waits for these requests any more
            pass

    def _finished(self, loop: asyncio.AbstractEventLoop, group: list[_Job], done: Any) -> None:
        self._free += 1
        if done.cancelled():  # the executor shut down with the group still queued
            outcomes: list[Any] = [None] * len(group)
        else:
            try:
                outcomes = done.result()
            except Exception as exc:  # noqa: BLE001 - run_batch itself failed: fail its requests
                outcomes = [exc] * len(group)
        for job, outcome in zip(group, outcomes, strict=True):
            if job.future.done():  # the request was cancelled meanwhile
                continue
            if outcome is None:
                job.future.cancel()
            elif isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)
        self._dispatch(loop)
