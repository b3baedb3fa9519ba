"""The Scorer: a spec applied to rollouts with per-sample isolation.

Guarantees (record contract: docs/contracts.md):

* one output per input, in input order, whatever the input contains;
* a component that raises (anything, ``SystemExit`` and ``KeyboardInterrupt`` included), hangs
  past ``time_limit`` or returns NaN / a value outside its declared range affects only its own
  samples (status ``error``/``timeout``, with ``info["error"]``); the rest of the batch is scored;
* a record that breaks the rollout contract (or a malformed input line) becomes an ``error``
  record that keeps what came in;
* with worker processes, a sample that kills its worker (``os._exit``, a segfault) is found by
  bisection and only it gets ``error``; a record that cannot be pickled is scored in this process;
* time limits work on any thread and in worker processes (no ``signal.alarm``);
* a spec's model backends (``[backends.NAME]``) are built once per process on first use, bound
  to the components that name them (in worker processes too) and accounted in
  :attr:`Scorer.stats` (``stats.backends``); :meth:`Scorer.close` closes them.

What each isolation mode can stop (``Scorer(isolation=...)``):

* ``"thread"`` runs components on a watchdog thread. A sample past its limit is marked
  ``timeout`` and the batch goes on, but Python cannot kill a thread: the abandoned call keeps
  running. One that sleeps or waits on I/O costs nothing; one that spins in Python keeps a core
  busy until it returns (with worker processes, the worker is retired after that chunk; in this
  process, until the interpreter exits); and one that holds the GIL (a catastrophic regular
  expression in ``re``, a C extension) is never interrupted at all: the limit is not enforced.
* ``"process"`` runs components in worker processes and the parent enforces the limits: a worker
  past a deadline is killed and replaced, the sample is marked ``timeout`` and the rest of its
  chunk is scored again on the fresh worker. This stops anything, GIL-holding code included,
  at the cost of starting processes. It is the default when a time limit is set and
  ``workers > 1``.
"""

from __future__ import annotations

import gc
import json
import logging
import marshal
import math
import multiprocessing.util
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Literal

from ..compose.combine import combine, not_applicable_summary
from ..compose.spec import Spec, load_spec
from ..errors import RecordError, SpecError
from ..records import BadRecord, ComponentScore, Rollout, ScoredRecord, Status
from ..rewards.base import RewardComponent
from ..text import TextTypeError
from .backend_set import BackendFactory, BackendSet
from .pool import Deadline, Failed, ProcessMap, current_deadline
from .stats import RunStats
from .watchdog import TIMED_OUT, DaemonWorker, run_with_deadline

__all__ = ["BadRecord", "Isolation", "Scorer", "score"]

Isolation = Literal["thread", "process"]
#: the batch limit when none is given: a batch-first component must finish a whole batch in this
#: long (or ``time_limit``, if that is longer) before it is re-run one sample at a time
DEFAULT_BATCH_TIME_LIMIT = 60.0

log = logging.getLogger(__name__)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = text[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Scorer:
    """Score rollouts with a spec.

    Args:
        spec: a preset name, a TOML path, a dict or a :class:`~medreward.compose.Spec`.
        time_limit: seconds one component may spend on one sample (``None`` or ``inf``: no limit).
        workers: worker processes; 0 or 1 scores in this process (unless ``isolation="process"``).
        chunk_size: records per batch handed to components (and to each worker).
        isolation: ``"thread"`` or ``"process"`` (see the module docstring for what each can
            stop); default ``"process"`` when a time limit is set and ``workers > 1``, else
            ``"thread"``. ``"process"`` with ``workers`` 0 or 1 uses one worker process.
        batch_time_limit: seconds a batch-first component (one that overrides ``score_batch``)
            may spend on one whole batch before it is re-run one sample at a time, each sample
            under ``time_limit`` (default: ``max(60, time_limit)``; ``None``/``inf``: no limit).
        cache: path of the persistent response cache of the spec's model backends (default: the
            user cache folder); ``use_cache=False`` turns it off (every request is a call).
        backend_urls: endpoint overrides by backend name (``--backend-url``); otherwise
            ``MEDREWARD_<NAME>_BASE_URL``, otherwise the spec's ``base_url``.
        backend_factory: builds one backend, ``factory(name, config, cache=...)`` (default
            :func:`~medreward.backends.factory.build_backend`); a module-level function, so that
            worker processes can use it too.

    A spec without backends ignores the backend options. With backends, close the scorer when
    done (``with Scorer(...) as scorer:`` or :meth:`close`) to close its connections and cache.

    With ``workers > 1`` or ``isolation="process"``, a script that calls the scorer must guard its
    entry point with ``if __name__ == "__main__":`` (worker processes are spawned and import it).

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
        isolation: Isolation | None = None,
        batch_time_limit: float | None | Literal["default"] = "default",
        cache: str | Path | None = None,
        use_cache: bool = True,
        backend_urls: Mapping[str, str] | None = None,
        backend_factory: BackendFactory | None = None,
    ) -> None:
        time_limit = _limit("time_limit", time_limit)
        if batch_time_limit == "default":
            batch_time_limit = None if time_limit is None else max(DEFAULT_BATCH_TIME_LIMIT, time_limit)
        else:
            batch_time_limit = _limit("batch_time_limit", batch_time_limit)
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if isolation is None:
            isolation = "process" if time_limit is not None and workers > 1 else "thread"
        elif isolation not in ("thread", "process"):
            raise ValueError(f"isolation must be 'thread' or 'process', got {isolation!r}")
        self.spec = load_spec(spec if not isinstance(spec, Mapping) else dict(spec))
        self.components: list[RewardComponent] = self.spec.build()
        # components that score one sample at a time (no score_batch of their own), by index
        self._per_sample = [c for c, comp in enumerate(self.components) if type(comp).score_batch is RewardComponent.score_batch]
        self._batch_components = [c for c in range(len(self.components)) if c not in self._per_sample]
        self.time_limit = time_limit
        self.batch_time_limit = batch_time_limit
        self.workers = workers
        self.chunk_size = chunk_size
        self.isolation: Isolation = isolation
        self._backends = _backend_set(self.spec, cache, use_cache, backend_urls, backend_factory)
        self._owns_backends = True
        self._unbound = self._backends is not None  # components get their backends before the first batch
        self.stats = self.new_stats()
        self._worker: list[DaemonWorker] | None = None
        # set only inside a worker process under process isolation: the parent enforces limits
        self._deadline: Deadline | None = None
        self._task: _Task | None = None
        self._where: list[int] | None = None

    # -- public API ----------------------------------------------------------------------
    def new_stats(self) -> RunStats:
        """Empty statistics for this scorer's spec (its components and backends)."""
        return RunStats.empty(
            self.spec.component_names,
            self._backends.names if self._backends is not None else (),
            observe=tuple(c.name for c in self.components if c.has_batch_metrics),
        )

    def sibling(self) -> Scorer:
        """A scorer for another thread: the same spec and limits, its own components, and this
        scorer's backends (built once per process and safe to share across threads). Its
        statistics are its own; closing it leaves the shared backends open."""
        other = Scorer(self.spec, time_limit=self.time_limit, chunk_size=self.chunk_size,
                       batch_time_limit=self.batch_time_limit)  # fmt: skip
        other._backends, other._owns_backends = self._backends, False
        other._unbound = self._backends is not None
        other.stats = other.new_stats()
        return other

    def close(self) -> None:
        """Close the model backends this scorer built (and their cache). Idempotent."""
        if self._backends is not None and self._owns_backends:
            self._backends.close()

    def __enter__(self) -> Scorer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        if isinstance(records, (Mapping, Rollout, str, bytes)):
            what = "one record" if isinstance(records, (Mapping, Rollout)) else f"a {type(records).__name__}"
            raise TypeError(f"pass a list (or any iterable) of records, not {what}: score([record])")
        started = time.perf_counter()
        try:
            if self.spec.aggregate == "normalize_then_sum":
                chunks: Iterable[list[Any]] = [list(records)]
            elif any(c.needs_whole_groups for c in self.components):
                chunks = _group_chunks(records, self.chunk_size)
            else:
                chunks = _chunks(records, self.chunk_size)
            if self.workers > 1 or self.isolation == "process":
                for batch in self._score_in_workers(chunks):
                    _warn_not_applicable(batch)
                    self.stats.observe(batch)
                    yield from batch
                    if on_progress:
                        on_progress(len(batch))
            else:
                for chunk in chunks:
                    batch = self.score_chunk(chunk)
                    _warn_not_applicable(batch)
                    self.stats.observe(batch)
                    yield from batch
                    if on_progress:
                        on_progress(len(batch))
        finally:
            self.stats.seconds += time.perf_counter() - started
            self._batch_metrics()

    def _batch_metrics(self) -> None:
        """Each observing component's run-level metrics over the infos kept so far (a failure is
        logged and leaves that component's metrics out: scores are never lost to them)."""
        for component in self.components:
            seen = self.stats.observations.get(component.name)
            if seen is None:
                continue
            try:
                self.stats.batch_metrics[component.name] = component.batch_metrics(seen)
            except Exception as exc:  # noqa: BLE001 - a metric must not fail the run
                log.warning("component %r: run-level metrics failed: %s", component.name, exc)
                self.stats.batch_metrics.pop(component.name, None)

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
                if self._unbound:
                    self._bind_backends()
                self._where = where
                scores = []
                with _interrupt_watch(self.time_limit is None and self._deadline is None):
                    together = self._run_together(valid)
                    for c, component in enumerate(self.components):
                        if c in together:
                            scores.append(self._checked(component, together[c]))
                            continue
                        t0 = time.perf_counter()
                        results = self._checked(component, self._run_component(c, component, valid))
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
            if self._backends is not None:
                self.stats.merge_backends(self._backends.take_stats())
            return final

    def _bind_backends(self) -> None:
        """Hand each component the built backends it names (built on first use in this process)."""
        assert self._backends is not None
        backends = self._backends.get()
        for component in self.components:
            names = component.backend_names()
            if names:
                missing = [n for n in names if n not in backends]
                if missing:  # a spec loaded from a file says so at load; a hand-made Spec here
                    raise SpecError(
                        f"spec {self.spec.name!r}: component {component.name!r} uses backend {missing[0]!r}, "
                        f"which the spec does not declare (declared: {', '.join(backends) or 'none'})"
                    )
                component.bind_backends({n: backends[n] for n in names})
                try:
                    component.prepare()  # load local weights here, not under the first batch's time limit
                except Exception as exc:  # noqa: BLE001 - the samples report it; scoring goes on
                    log.warning("component %r: preparing its model failed: %s", component.name, exc)
        self._unbound = False

    # -- worker processes ---------------------------------------------------------------------
    def _score_in_workers(self, chunks: Iterable[list[Any]]) -> Iterator[list[ScoredRecord]]:
        """Score chunks in worker processes (:class:`~medreward.runner.pool.ProcessMap`), in order."""
        options: dict[str, Any] = {
            "time_limit": self.time_limit,
            "batch_time_limit": self.batch_time_limit,
            "chunk_size": self.chunk_size,
            "isolation": self.isolation,
        }
        if self._backends is not None:  # each worker builds its own, with the same endpoints and cache
            backends = self._backends
            options["backend_options"] = {
                "cache": backends.cache_path,
                "use_cache": backends.use_cache,
                "backend_urls": {name: c.base_url for name, c in backends.configs.items() if c.base_url},
                "backend_factory": backends.factory,
            }
        watched = self.isolation == "process" and (self.time_limit is not None or self.batch_time_limit is not None)
        pool: ProcessMap[_Task] = ProcessMap(
            _score_task,
            max(self.workers, 1),
            initializer=_init_worker,
            initargs=(self.spec.to_dict(), options),
            split=_Task.split,
            amend=_Task.amend if watched else None,
        )
        with pool:
            for task, result in pool.map(_Task(chunk) for chunk in chunks):
                if isinstance(result, Failed):
                    records = self._recover(task, result)
                else:
                    self.stats.merge(result.stats)
                    records = _rebuild(task.items, result.payload)
                yield records
        self.stats.restarted_workers += pool.restarts

    def _recover(self, task: _Task, failure: Failed) -> list[ScoredRecord]:
        """Records for a task of one item that the workers could not score."""
        if failure.kind == "unsendable":  # it cannot reach a worker, but it can be scored here
            log.warning("a record could not be sent to a worker process (%s); scoring it in this process", failure.message)
            return self.score_chunk(task.items)
        records = []
        for item in task.items:
            admitted = self._admit(item)  # an item rejected on admission keeps its own error
            records.append(admitted if isinstance(admitted, ScoredRecord) else self._rejected(admitted.record_dict(), failure.message))
        self.stats.add_records(records)
        return records

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

    def _run_together(self, rollouts: list[Rollout]) -> dict[int, list[Any]]:
        """Raw results of the components that share a hand-off to the time-limit worker, as
        ``{component index: results}``; the others run through :meth:`_run_component`.

        Under thread isolation with a per-sample time limit, every hand-off to the worker thread
        and back costs about 60-80 µs of CPU on a 2-core VM: as much as scoring several samples,
        which matters for small batches (a reward server scores 16 rollouts a request). So the
        per-sample components (``score_one`` only) run in one hand-off, and the batch components
        in another when there is a batch time limit, instead of one hand-off each. The limits are
        those of :meth:`_run_component`: ``time_limit`` per (component, sample) call,
        ``batch_time_limit`` per whole-batch call, and a batch that raises, hangs or miscounts is
        re-run one sample at a time to find the culprits."""
        if self.time_limit is None or self._deadline is not None:
            return {}
        per_sample = self._per_sample
        batched = self._batch_components if self.batch_time_limit else []
        out: dict[int, list[Any]] = {}
        if len(per_sample) >= 2:
            n = len(rollouts)
            calls = [(self.components[c].score_one, r) for c in per_sample for r in rollouts]
            raw = self._timed_hand_off(calls, per_sample, n, self.time_limit)
            out.update((c, raw[j * n : (j + 1) * n]) for j, c in enumerate(per_sample))
        if len(batched) >= 2:
            assert self.batch_time_limit is not None
            calls = [(self.components[c].score_batch, rollouts) for c in batched]
            wholes = self._timed_hand_off(calls, batched, 1, self.batch_time_limit)
            for c, whole in zip(batched, wholes):
                ok = isinstance(whole, list) and len(whole) == len(rollouts)
                out[c] = whole if ok else self._one_at_a_time(self.components[c], rollouts)
        return out

    def _timed_hand_off(
        self, calls: list[tuple[Callable[[Any], Any], Any]], owners: list[int], per_owner: int, limit: float
    ) -> list[Any]:
        """``fn(arg)`` for each call, on the time-limit worker in one hand-off, ``limit`` seconds
        each (a value, the exception raised, or TIMED_OUT). The calls come in runs of
        ``per_owner``, one run per component index in ``owners``; each run's time is added to
        that component's stats (a timed-out call counts the whole limit)."""
        if self._worker is None:
            self._worker = [DaemonWorker()]
        seconds = [0.0] * len(calls)
        clock = time.perf_counter

        def one(k: int) -> Any:
            fn, arg = calls[k]
            t0 = clock()
            try:
                return fn(arg)
            finally:
                seconds[k] = clock() - t0

        result = run_with_deadline(range(len(calls)), one, limit, self._worker)
        self.stats.abandoned_threads += result.abandoned_threads
        for j, c in enumerate(owners):
            run = range(j * per_owner, (j + 1) * per_owner)
            spent = sum(limit if result.results[k] is TIMED_OUT else seconds[k] for k in run)
            self.stats.components[self.components[c].name].seconds += spent
        return result.results

    def _one_at_a_time(self, component: RewardComponent, rollouts: list[Rollout]) -> list[Any]:
        """A batch component's results one sample at a time, under the per-sample limit: after its
        whole batch raised, hung or miscounted, this finds the samples that did."""
        assert self._worker is not None and self.time_limit is not None
        single = run_with_deadline(rollouts, lambda r: _only(component.score_batch([r])), self.time_limit, self._worker)
        self.stats.abandoned_threads += single.abandoned_threads
        return single.results

    def _run_component(self, c: int, component: RewardComponent, rollouts: list[Rollout]) -> list[Any]:
        """Raw results of component ``c`` on the batch (a value, an exception or TIMED_OUT each)."""
        if self._deadline is not None:
            return self._run_armed(c, component, rollouts, self._deadline)
        per_sample = c in self._per_sample
        if self.time_limit is None:
            return self._run_unlimited(component, rollouts, per_sample)
        if self._worker is None:
            self._worker = [DaemonWorker()]
        if per_sample:
            result = run_with_deadline(rollouts, component.score_one, self.time_limit, self._worker)
            self.stats.abandoned_threads += result.abandoned_threads
            return result.results
        if self.batch_time_limit is None:
            whole = _call_batch(component, rollouts)
        else:
            batch = run_with_deadline([rollouts], component.score_batch, self.batch_time_limit, self._worker)
            self.stats.abandoned_threads += batch.abandoned_threads
            whole = batch.results[0]
        if isinstance(whole, list) and len(whole) == len(rollouts):
            return whole
        return self._one_at_a_time(component, rollouts)  # raised, hung or miscounted: find the culprits

    def _run_unlimited(self, component: RewardComponent, rollouts: list[Rollout], per_sample: bool) -> list[Any]:
        if not per_sample:
            whole = _call_batch(component, rollouts)
            if isinstance(whole, list) and len(whole) == len(rollouts):
                return whole
        score_one = component.score_one if per_sample else lambda r: _only(component.score_batch([r]))
        raw: list[Any] = []
        for r in rollouts:
            try:
                raw.append(score_one(r))
            except BaseException as exc:  # noqa: BLE001 - isolated per sample, SystemExit included
                _reraise_interrupt(exc)
                raw.append(exc.with_traceback(None))  # the message is all we keep (see watchdog)
        return raw

    def _run_armed(self, c: int, component: RewardComponent, rollouts: list[Rollout], deadline: Deadline) -> list[Any]:
        """In a worker under process isolation: run plainly, with the parent watching the deadline.

        The slot says which chunk item and component are running; the parent kills this process
        when a deadline passes and re-runs the chunk with that (item, component) marked
        ``timeout`` (or, for a whole batch, with the component run one sample at a time).
        """
        task = self._task
        where = self._where
        assert task is not None and where is not None
        per_sample = c in self._per_sample
        if not per_sample and c not in task.per_sample:
            if self.batch_time_limit is not None:
                deadline.arm(self.batch_time_limit, -1, c)
            whole = _call_batch(component, rollouts)
            deadline.disarm()
            if isinstance(whole, list) and len(whole) == len(rollouts):
                return whole
        score_one = component.score_one if per_sample else lambda r: _only(component.score_batch([r]))
        limit = self.time_limit
        timed_out = task.timed_out
        raw: list[Any] = []
        for i, r in enumerate(rollouts):
            if timed_out and c in timed_out.get(where[i], ()):
                raw.append(TIMED_OUT)
                continue
            if limit is not None:
                deadline.arm(limit, where[i], c)
            try:
                raw.append(score_one(r))
            except BaseException as exc:  # noqa: BLE001 - isolated per sample; workers ignore SIGINT
                raw.append(exc.with_traceback(None))
        deadline.disarm()
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


def _warn_not_applicable(batch: Sequence[ScoredRecord]) -> None:
    """One warning per batch for records that got no reward because a required component did
    not apply (usually a reference without the answer): silent, they would shrink the batch."""
    count, reason = not_applicable_summary(batch)
    if count:
        log.warning("%d of %d records are not_applicable (no reward); first: %s", count, len(batch), reason)


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


def _backend_set(
    spec: Spec,
    cache: str | Path | None,
    use_cache: bool,
    urls: Mapping[str, str] | None,
    factory: BackendFactory | None,
) -> BackendSet | None:
    """The spec's backends (not built yet), or None for a rule-based spec."""
    urls = dict(urls or {})
    unknown = sorted(set(urls) - set(spec.backends))
    if unknown:
        declared = ", ".join(sorted(spec.backends)) or "none"
        raise SpecError(f"spec {spec.name!r}: a URL is given for backend {unknown[0]!r}, which the spec does not declare (declared: {declared})")
    if not spec.backends:
        return None
    return BackendSet(spec.backends, cache=cache, use_cache=use_cache, urls=urls, factory=factory)


def _limit(name: str, value: float | None) -> float | None:
    """A time limit in seconds: ``None`` and ``inf`` mean none."""
    if value is None or value == math.inf:
        return None
    if not (value > 0):
        raise ValueError(f"{name} must be > 0 seconds, inf or None, got {value!r}")
    return float(value)


def _call_batch(component: RewardComponent, rollouts: list[Rollout]) -> Any:
    """``component.score_batch(rollouts)``, or the exception it raised."""
    try:
        return component.score_batch(rollouts)
    except BaseException as exc:  # noqa: BLE001 - the per-sample pass finds and records the culprit
        _reraise_interrupt(exc)
        return exc.with_traceback(None)


# A KeyboardInterrupt raised by a component is that sample's error; one raised by a real SIGINT
# (Ctrl-C) stops the run. They can only be confused when components run on the main thread (no
# time limit, no workers): there, while components run, a SIGINT handler notes that it fired.
_sigint_fired = [False]


def _on_sigint(signum: int, frame: Any) -> None:
    _sigint_fired[0] = True
    raise KeyboardInterrupt


@contextmanager
def _interrupt_watch(wanted: bool) -> Iterator[None]:
    if not wanted or threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    _sigint_fired[0] = False
    signal.signal(signal.SIGINT, _on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _reraise_interrupt(exc: BaseException) -> None:
    if isinstance(exc, KeyboardInterrupt) and _sigint_fired[0]:
        raise exc


def _only(results: Any) -> ComponentScore:
    if not isinstance(results, list) or len(results) != 1:
        raise RuntimeError(f"score_batch returned {type(results).__name__} of the wrong length for one sample")
    return results[0]


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


#: a chunk grows past ``chunk_size`` to keep a group whole, up to this many times ``chunk_size``
_GROUP_SLACK = 8


def _group_chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Chunks of about ``size`` items that never cut a run of consecutive items of one GRPO group
    (same ``group`` field, else same prompt): components that compare a group's members
    (``pairwise``) see the whole group. A group longer than ``_GROUP_SLACK × size`` is cut, with a
    warning; members of one group that are not consecutive in the input are scored apart."""
    chunk: list[Any] = []
    last: Any = None
    for item in items:
        key = _group_of(item)
        if len(chunk) >= size and (key is None or key != last or len(chunk) >= _GROUP_SLACK * size):
            if key is not None and key == last:
                log.warning("a group of more than %d consecutive records was split between batches", len(chunk))
            yield chunk
            chunk = []
        chunk.append(item)
        last = key
    if chunk:
        yield chunk


def _group_of(item: Any) -> Any:
    """The group key of a record as read (Rollout or mapping), without validating it."""
    if isinstance(item, Rollout):
        return item.group_key
    if isinstance(item, Mapping):
        group = item.get("group")
        if group is not None:
            return ("group", str(group))
        try:
            return ("prompt", json.dumps(item.get("prompt"), sort_keys=True, ensure_ascii=False, default=str))
        except (TypeError, ValueError):
            return None
    return None


def score(
    records: Iterable[Rollout | Mapping[str, Any]],
    spec: str | Path | Spec | Mapping[str, Any],
    **options: Any,
) -> list[ScoredRecord]:
    """Score records with a spec in one call: ``score(records, "toxicology")``."""
    return Scorer(spec, **options).score(records)


# -- worker processes: the scorer's side of runner.pool ---------------------------------------
@dataclass
class _Task:
    """A chunk for a worker, with what earlier attempts learned: components to run one sample at a
    time (their batch overran ``batch_time_limit``) and (item, component) pairs that overran
    ``time_limit`` (marked ``timeout`` without running them again)."""

    items: list[Any]
    per_sample: frozenset[int] = frozenset()
    timed_out: dict[int, frozenset[int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.items)

    def split(self) -> list[_Task]:
        if len(self.items) < 2:
            return [self]
        middle = len(self.items) // 2
        right = {i - middle: c for i, c in self.timed_out.items() if i >= middle}
        left = {i: c for i, c in self.timed_out.items() if i < middle}
        return [_Task(self.items[:middle], self.per_sample, left), _Task(self.items[middle:], self.per_sample, right)]

    def amend(self, index: int, component: int) -> _Task:
        if index < 0:
            return _Task(self.items, self.per_sample | {component}, self.timed_out)
        timed_out = dict(self.timed_out)
        timed_out[index] = timed_out.get(index, frozenset()) | {component}
        return _Task(self.items, self.per_sample, timed_out)


#: what a worker sends back per record: reward, components, status value, info, and the echoed
#: input record, or None when it equals the input the parent still holds (the usual case: a
#: 2 KB completion need not travel back)
_Result = tuple[float | None, dict[str, float | None], str, dict[str, Any], dict[str, Any] | None]
_STATUS = {s.value: s for s in Status}


@dataclass
class _TaskResult:
    payload: bytes | list[_Result]
    stats: RunStats
    #: the worker abandoned a runaway thread (thread isolation): a fresh process replaces it
    retire_worker: bool = False


_worker_scorer: Scorer | None = None


def _init_worker(spec_dict: dict[str, Any], options: dict[str, Any]) -> None:
    global _worker_scorer
    options = dict(options)
    backend_options = options.pop("backend_options", {})
    scorer = Scorer(spec_dict, workers=0, **{**options, "isolation": "thread"}, **backend_options)
    if options["isolation"] == "process":
        scorer._deadline = current_deadline()
    if backend_options:  # close connections and the cache when the worker exits normally
        multiprocessing.util.Finalize(scorer, scorer.close, exitpriority=10)
    _worker_scorer = scorer


def _score_task(task: _Task) -> _TaskResult:
    scorer = _worker_scorer
    assert scorer is not None, "worker not initialised"
    scorer.stats = scorer.new_stats()
    scorer._task = task
    results = _results(task.items, scorer.score_chunk(task.items))
    retire = scorer.stats.abandoned_threads > 0
    try:  # plain data (the usual case) travels as marshal bytes: about 4x cheaper to load than pickle
        return _TaskResult(marshal.dumps(results), scorer.stats, retire)
    except ValueError:  # a component put something marshal cannot carry into info: pickle it
        return _TaskResult(results, scorer.stats, retire)


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
