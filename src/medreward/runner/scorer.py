"""The Scorer: a spec applied to rollouts with per-sample isolation.

Guarantees (DESIGN.md, reliability rules):

* one output per input, in input order, whatever the input contains;
* a component that raises, hangs past ``time_limit`` or returns NaN / a value outside its
  declared range affects only its own samples (status ``error``/``timeout``, with
  ``info["error"]``); the rest of the batch is scored;
* a record that breaks the rollout contract (or a malformed input line) becomes an ``error``
  record that keeps what came in;
* time limits work on any thread and in worker processes (no ``signal.alarm``).
"""

from __future__ import annotations

import gc
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

from ..compose.combine import combine
from ..compose.spec import Spec, load_spec
from ..errors import RecordError
from ..parse.text import TextTypeError
from ..records import BadRecord, ComponentScore, Rollout, ScoredRecord, Status
from ..rewards.base import RewardComponent
from .stats import RunStats
from .watchdog import TIMED_OUT, DaemonWorker, run_with_deadline

__all__ = ["BadRecord", "Scorer", "score"]

log = logging.getLogger(__name__)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Scorer:
    """Score rollouts with a spec.

    Args:
        spec: a preset name, a TOML path, a dict or a :class:`~medreward.compose.Spec`.
        time_limit: seconds one component may spend on one sample (``None``: no limit).
        workers: worker processes; 0 or 1 scores in this process.
        chunk_size: records per batch handed to components (and to each worker).

    >>> scorer = Scorer("toxicology")
    >>> [r] = scorer.score([{"completion": "<think>miosis, apnea</think><answer>opioids</answer>",
    ...                      "reference": {"substances": ["opioids"]}}])
    >>> r.status.value, r.reward, r.components
    ('ok', 1.0, {'format': 1.0, 'substances': 1.0})
    """

    def __init__(
        self,
        spec: str | Path | Spec | Mapping[str, Any],
        *,
        time_limit: float | None = 10.0,
        workers: int = 0,
        chunk_size: int = 256,
    ) -> None:
        if time_limit is not None and not (time_limit > 0):
            raise ValueError(f"time_limit must be > 0 seconds or None, got {time_limit!r}")
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.spec = load_spec(spec if not isinstance(spec, Mapping) else dict(spec))
        self.components: list[RewardComponent] = self.spec.build()
        self.time_limit = time_limit
        self.workers = workers
        self.chunk_size = chunk_size
        self.stats = RunStats.empty(self.spec.component_names)
        self._worker: list[DaemonWorker] | None = None

    # -- public API ----------------------------------------------------------------------
    def score(self, records: Iterable[Rollout | Mapping[str, Any] | BadRecord]) -> list[ScoredRecord]:
        """Score records (dicts in the rollout format, :class:`Rollout` objects, or :class:`BadRecord`).

        The whole list is kept, so the cyclic garbage collector stays paused until it is built
        (see :func:`_gc_paused`); :meth:`iter_score` pauses it per chunk only.
        """
        with _gc_paused():
            return list(self.iter_score(records))

    def iter_score(
        self,
        records: Iterable[Rollout | Mapping[str, Any] | BadRecord],
        *,
        on_progress: Callable[[int], None] | None = None,
    ) -> Iterator[ScoredRecord]:
        """Score a stream chunk by chunk, yielding results in input order.

        With ``aggregate = "normalize_then_sum"`` the whole input is one batch (GDPO
        normalises over the batch), so it is held in memory; ``weighted_sum`` streams.
        """
        started = time.perf_counter()
        try:
            if self.spec.aggregate == "normalize_then_sum":
                chunks: Iterable[list[Any]] = [list(records)]
            else:
                chunks = _chunks(records, self.chunk_size)
            if self.workers > 1:
                from .pool import score_in_workers

                for batch in score_in_workers(self, chunks):
                    yield from batch
                    if on_progress:
                        on_progress(len(batch))
            else:
                for chunk in chunks:
                    batch = self.score_chunk(chunk)
                    yield from batch
                    if on_progress:
                        on_progress(len(batch))
        finally:
            self.stats.seconds += time.perf_counter() - started

    def score_chunk(self, items: Sequence[Rollout | Mapping[str, Any] | BadRecord]) -> list[ScoredRecord]:
        """Score one batch in this process, updating :attr:`stats`."""
        with _gc_paused():
            out: list[ScoredRecord | None] = [None] * len(items)
            valid: list[Rollout] = []
            where: list[int] = []
            admit = self._admit
            for i, item in enumerate(items):
                admitted = admit(item)
                if type(admitted) is ScoredRecord:  # rejected before scoring
                    out[i] = admitted
                else:
                    valid.append(admitted)
                    where.append(i)
            if valid:
                scores = []
                for component in self.components:
                    t0 = time.perf_counter()
                    results = self._checked(component, self._run_component(component, valid))
                    self.stats.components[component.name].seconds += time.perf_counter() - t0
                    scores.append(results)
                if len(valid) == len(items):
                    out = combine(self.spec, valid, scores)
                else:
                    for i, record in zip(where, combine(self.spec, valid, scores)):
                        out[i] = record
            final = [r for r in out if r is not None]
            assert len(final) == len(items)
            self.stats.add_records(final)
            return final

    # -- internals -------------------------------------------------------------------------
    def _admit(self, item: Any) -> Rollout | ScoredRecord:
        """The rollout to score, or an ``error`` record for input that cannot be scored at all."""
        if type(item) is dict or isinstance(item, Mapping):  # per sample: plain dicts skip the ABC check
            try:
                rollout = Rollout.from_dict(item)
            except RecordError as exc:
                return self._rejected(dict(item), str(exc))
        elif isinstance(item, Rollout):
            rollout = item
        elif isinstance(item, BadRecord):
            return self._rejected(item.to_record(), item.error)
        else:
            return self._rejected({"raw": repr(item)[:1000]}, f"a record must be an object, got {type(item).__name__}")
        if not isinstance(rollout.completion, (str, list)):
            kind = "null" if rollout.completion is None else type(rollout.completion).__name__
            return self._rejected(rollout.record_dict(), f"completion must be text or a list of messages, got {kind}")
        return rollout

    def _rejected(self, record: dict[str, Any], error: str) -> ScoredRecord:
        empty: dict[str, float | None] = {n: None for n in self.spec.component_names}
        return ScoredRecord(record, None, empty, Status.ERROR, {"error": error})

    def _run_component(self, component: RewardComponent, rollouts: list[Rollout]) -> list[Any]:
        """Raw results of one component on the batch (a value, an exception or TIMED_OUT each)."""
        if self.time_limit is None:
            raw = self._run_unlimited(component, rollouts)
        else:
            if self._worker is None:
                self._worker = [DaemonWorker()]
            per_sample = type(component).score_batch is RewardComponent.score_batch
            if per_sample:
                result = run_with_deadline(rollouts, component.score_one, self.time_limit, self._worker)
                raw = result.results
                self.stats.abandoned_threads += result.abandoned_threads
            else:
                batch = run_with_deadline(
                    [rollouts], component.score_batch, self.time_limit * len(rollouts), self._worker
                )
                self.stats.abandoned_threads += batch.abandoned_threads
                whole = batch.results[0]
                if isinstance(whole, list) and len(whole) == len(rollouts):
                    raw = whole
                else:  # raised, hung or miscounted: find the culprits one sample at a time
                    single = run_with_deadline(
                        rollouts, lambda r: _only(component.score_batch([r])), self.time_limit, self._worker
                    )
                    self.stats.abandoned_threads += single.abandoned_threads
                    raw = single.results
        return raw

    def _run_unlimited(self, component: RewardComponent, rollouts: list[Rollout]) -> list[Any]:
        try:
            out = component.score_batch(rollouts)
            if isinstance(out, list) and len(out) == len(rollouts):
                return out
        except Exception:  # noqa: BLE001, S110 - the per-sample pass below finds and records the culprit
            pass
        raw: list[Any] = []
        for r in rollouts:
            try:
                raw.append(_only(component.score_batch([r])))
            except Exception as exc:  # noqa: BLE001 - isolated per sample
                raw.append(exc.with_traceback(None))  # the message is all we keep (see watchdog)
        return raw

    def _checked(self, component: RewardComponent, raw: list[Any]) -> list[ComponentScore]:
        """Valid ComponentScores for raw results, counted into the component's stats.

        The loop runs once per sample: well-behaved results (an ``ok`` score with a float in
        range) pass with a few comparisons; anything else goes through :meth:`_check`.
        """
        low, high = component.output_range
        low, high = low - 1e-9, high + 1e-9
        finite_bounds = math.isfinite(low) and math.isfinite(high)  # then the range test rejects nan/inf
        ok = Status.OK
        n_ok, total = 0, 0.0
        out: list[ComponentScore] = []
        append = out.append
        check = self._check
        for result in raw:
            if type(result) is ComponentScore and result.status is ok:
                value = result.value
                if type(value) is float and low <= value <= high and (finite_bounds or math.isfinite(value)):
                    n_ok += 1
                    total += value
                    append(result)
                    continue
            result = check(component, result)
            if result.status is ok:
                n_ok += 1
                total += result.value  # type: ignore[operator]
            append(result)
        comp_stats = self.stats.components[component.name]
        comp_stats.total += total
        if n_ok:
            comp_stats.counts[ok.value] += n_ok
        if n_ok != len(out):
            comp_stats.counts.update(r.status.value for r in out if r.status is not ok)
        return out

    def _check(self, component: RewardComponent, result: Any) -> ComponentScore:
        """Turn a raw result into a valid ComponentScore (errors for anything off-contract)."""
        if isinstance(result, ComponentScore):
            if result.status is not Status.OK:
                return result if result.value is None else ComponentScore(None, result.status, result.info)
            value = result.value
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                return ComponentScore.error(f"component returned a non-finite value {value!r}")
            low, high = component.output_range
            if not (low - 1e-9 <= value <= high + 1e-9):
                return ComponentScore.error(f"component returned {value!r}, outside its range [{low:g}, {high:g}]")
            return result
        if result is TIMED_OUT:
            return ComponentScore.error(f"exceeded the time limit of {self.time_limit:g} s", Status.TIMEOUT)
        if isinstance(result, TextTypeError):
            return ComponentScore.error(f"completion is not text: {result}")
        if isinstance(result, BaseException):
            return ComponentScore.error(_describe(result))
        return ComponentScore.error(f"component returned {type(result).__name__}, not a ComponentScore")


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Defer cyclic garbage collection while records are scored.

    Scoring allocates many small acyclic objects (records, scores, info dicts) that reference
    counting frees. The cyclic collector finds nothing among them, but the allocation count
    triggers it again and again, and each full pass re-traverses every live record: in
    ``benchmarks/bench_scoring.py`` that was a quarter of the scoring time. Collection resumes
    afterwards, and only if it was enabled before, so nested or concurrent scorers leave it
    as they found it. Scoring itself leaves no cycles (a caught exception is kept without
    its traceback); any that a custom component makes are collected then.
    """
    was_enabled = gc.isenabled()
    if was_enabled:
        gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _only(results: Any) -> ComponentScore:
    if not isinstance(results, list) or len(results) != 1:
        raise RuntimeError(f"score_batch returned {type(results).__name__} of the wrong length for one sample")
    return results[0]


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def score(
    records: Iterable[Rollout | Mapping[str, Any]],
    spec: str | Path | Spec | Mapping[str, Any],
    **options: Any,
) -> list[ScoredRecord]:
    """Score records with a spec in one call: ``score(records, "toxicology")``."""
    return Scorer(spec, **options).score(records)
