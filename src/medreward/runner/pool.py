"""An ordered process map that survives its workers: retry, bisection, deadlines, no orphans.

:class:`ProcessMap` applies a picklable function to tasks (lists of items, by default) in worker
processes and yields ``(task, result)`` in input order. It knows nothing of what the tasks mean;
the scorer's side lives in :mod:`medreward.runner.scorer`.

Faults are attributed exactly, because each worker holds one task at a time on its own pipe:

* **A worker dies** (``os._exit``, a segfault, the OOM killer, ``kill -9``): only the task it held is
  affected. A task of several items is split in halves and each half is retried on a fresh worker,
  so the bisection ends at the culprit item; one item is retried once, and if it kills a worker
  again it is reported as :class:`Failed`. The other items come back with their results.
* **The function raises, or a task or result cannot be pickled or unpickled**: bisected the same
  way (a task that cannot be sent never reaches a worker; one that cannot be read there is
  reported by the worker, which stays alive); the single item left is reported as :class:`Failed`.
* **A deadline passes** (see :class:`Deadline`): the worker is killed and replaced, and the task is
  re-run as ``amend(task, index, tag)`` says (the caller marks what overran and skips it).

Workers exit when the parent goes: they block on the parent's pipe when idle, a watcher thread
ends them when the parent process ends, and on Linux the kernel kills them too
(``PR_SET_PDEATHSIG``), which also covers a worker stuck in C code that holds the GIL. Workers
ignore SIGINT: a Ctrl-C in the terminal reaches the parent, which stops and shuts them down.
No queues or locks are used. (Spawning still starts ``multiprocessing``'s resource tracker; it
exits by itself once the parent and every worker have gone.)
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.sharedctypes import RawArray
from typing import Any, Generic, TypeVar

from ..errors import MedrewardError

__all__ = ["Deadline", "Failed", "ProcessMap", "WorkerStartError", "current_deadline", "halves"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Failed:
    """The result of a task of one item that could not be run.

    ``kind`` is ``"died"`` (its worker died twice), ``"error"`` (the function raised, or the
    result could not be sent back) or ``"unsendable"`` (the item cannot be pickled);
    ``message`` says what happened.
    """

    kind: str
    message: str


class WorkerStartError(MedrewardError, RuntimeError):
    """Worker processes cannot start: the initializer failed in one (the same failure would hit
    every worker), or workers keep exiting before they are ready (:data:`START_ATTEMPTS` in a row)."""


#: workers in a row that may exit before they are ready before the map gives up
START_ATTEMPTS = 3

#: what makes workers exit while starting, in practice: spawn imports the caller's script
START_HINT = (
    "worker processes import the main script (multiprocessing's spawn start method): if you call "
    "medreward from a script, put that call under `if __name__ == \"__main__\":`"
)


def halves(task: list[Any]) -> list[list[Any]]:
    """The default split: two halves of a list (a list of one item cannot be split)."""
    middle = len(task) // 2
    return [task[:middle], task[middle:]] if len(task) > 1 else [task]


# -- worker side -------------------------------------------------------------------------------
class Deadline:
    """A worker's deadline slot, shared with the parent: ``[deadline, index, tag]``.

    A worker's function arms it before work that may overrun (``arm(seconds, index, tag)``) and
    disarms it after; the parent kills the worker once an armed deadline has passed and asks
    ``amend(task, index, tag)`` what to run instead. ``time.monotonic`` is system-wide, so the
    two processes agree on the clock.
    """

    def __init__(self, shared: Any) -> None:
        self._shared = shared

    def arm(self, seconds: float, index: int, tag: int) -> None:
        shared = self._shared
        shared[1] = index
        shared[2] = tag
        shared[0] = time.monotonic() + seconds  # written last: the parent reads it first

    def disarm(self) -> None:
        self._shared[0] = 0.0

    def expired(self, now: float) -> tuple[int, int] | None:
        """``(index, tag)`` if the armed deadline has passed (read in the parent)."""
        shared = self._shared
        deadline = shared[0]
        if deadline == 0.0 or now < deadline:
            return None
        index, tag = int(shared[1]), int(shared[2])
        return (index, tag) if shared[0] == deadline else None  # re-armed meanwhile: not stuck


_deadline: Deadline | None = None


def current_deadline() -> Deadline | None:
    """The deadline slot of this worker process, or None outside a :class:`ProcessMap` worker."""
    return _deadline


def _exit_with_parent(parent_pid: int) -> None:
    """End this worker when the parent process ends, whatever the worker is doing."""
    if sys.platform.startswith("linux"):
        try:  # the kernel sends SIGKILL when the parent dies, even while we hold the GIL in C code
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # noqa: S110 - the watcher thread below still works
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)
    parent = multiprocessing.parent_process()
    if parent is not None:

        def watch() -> None:
            wait([parent.sentinel])
            os._exit(1)

        threading.Thread(target=watch, name="medreward-parent-watch", daemon=True).start()


@dataclass(frozen=True)
class _Unreadable:
    message: str


def _worker_main(
    conn: Connection,
    shared: Any,
    parent_pid: int,
    fn: Callable[[Any], Any],
    initializer: Callable[..., None] | None,
    initargs: tuple[Any, ...],
) -> None:
    global _deadline
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _exit_with_parent(parent_pid)
    _deadline = Deadline(shared)
    init_error = None
    if initializer is not None:
        try:
            initializer(*initargs)
        except BaseException as exc:  # noqa: BLE001 - reported to the parent, which raises it
            init_error = f"{type(exc).__name__}: {exc}"
    # the handshake tells the parent a death from here on is the task's, not the start's
    conn.send(("ready", init_error))
    if init_error is not None:
        return
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):  # the parent closed the pipe or died
            return
        except Exception as exc:  # noqa: BLE001 - the task arrived whole but cannot be unpickled here
            task = _Unreadable(f"the task could not be read in the worker: {type(exc).__name__}: {exc}")
        if task is None:
            return
        if isinstance(task, _Unreadable):  # reported like a failed task; this worker stays usable
            conn.send(("error", task.message))
            continue
        try:
            result = fn(task)
        except BaseException as exc:  # noqa: BLE001 - any failure of one task is reported, never fatal
            conn.send(("error", f"{type(exc).__name__}: {exc}"))
            continue
        retire = getattr(result, "retire_worker", False)
        try:
            conn.send(("ok", result))
        except Exception as exc:  # noqa: BLE001 - e.g. a result that cannot be pickled
            conn.send(("error", f"the result could not be sent back: {type(exc).__name__}: {exc}"))
        if retire:  # the function asked for a fresh process (e.g. it abandoned a runaway thread)
            return


# -- parent side -------------------------------------------------------------------------------
_QUEUED, _RUNNING, _DONE = 0, 1, 2


class _Job(Generic[T]):
    __slots__ = ("deaths", "result", "state", "task")

    def __init__(self, task: T, deaths: int = 0) -> None:
        self.task = task
        self.state = _QUEUED
        self.result: Any = None
        self.deaths = deaths


class _Worker:
    def __init__(self, context: Any, fn: Callable, initializer: Callable | None, initargs: tuple) -> None:
        self.conn, child = context.Pipe(duplex=True)
        self.shared = RawArray("d", 3)
        self.deadline = Deadline(self.shared)
        self.process = context.Process(
            target=_worker_main,
            args=(child, self.shared, os.getpid(), fn, initializer, initargs),
            name="medreward-worker",
            daemon=True,
        )
        self.process.start()
        child.close()
        self.job: _Job | None = None
        self.ready = False  # set by the worker's handshake; a death before it is a failed start

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.process.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:  # noqa: S110 - already gone
                pass
        self.conn.close()


class ProcessMap(Generic[T]):
    """Apply ``fn`` to tasks in ``workers`` processes; results in input order.

    Args:
        fn: a picklable (module-level) function of one task.
        workers: processes to run.
        initializer, initargs: run once in each worker before its first task.
        split: how to bisect a failed task (default: :func:`halves`; one piece = indivisible).
        amend: ``amend(task, index, tag)``: the task to run after its worker was killed at an
            armed deadline (see :class:`Deadline`). Without it, deadlines are not watched.
        max_in_flight: tasks read ahead of the oldest unfinished one (default ``2 × workers``).
        poll: seconds between deadline checks while a task runs.

    Use it as a context manager or call :meth:`close`; workers are stopped either way when the
    iterator from :meth:`map` is closed.
    """

    def __init__(
        self,
        fn: Callable[[T], Any],
        workers: int,
        *,
        initializer: Callable[..., None] | None = None,
        initargs: tuple[Any, ...] = (),
        split: Callable[[T], list[T]] = halves,  # type: ignore[assignment]
        amend: Callable[[T, int, int], T] | None = None,
        max_in_flight: int | None = None,
        poll: float = 0.05,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.fn = fn
        self.n_workers = workers
        self.initializer = initializer
        self.initargs = initargs
        self.split = split
        self.amend = amend
        self.max_in_flight = max_in_flight or 2 * workers
        self.poll = poll
        self.context = multiprocessing.get_context("spawn")  # safe with threads; the same on every platform
        self.workers: list[_Worker] = []
        self.restarts = 0  # workers replaced after a death or a deadline
        self._failed_starts = 0  # workers in a row that exited before their handshake

    def __enter__(self) -> ProcessMap[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop every worker (killing any that is still busy) and wait for them briefly."""
        workers, self.workers = self.workers, []
        for worker in workers:
            worker.stop(kill=worker.job is not None)
        deadline = time.monotonic() + 2.0
        for worker in workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join(1.0)

    # -- the loop ------------------------------------------------------------------------------
    def map(self, tasks: Iterable[T]) -> Iterator[tuple[T, Any]]:
        """Yield ``(task, result)`` for every task, in input order.

        A task that had to be bisected yields its pieces, in order, each with its result; a piece
        of one item that could not be run yields a :class:`Failed` result.
        """
        window: list[_Job[T]] = []
        source = iter(tasks)
        exhausted = False
        try:
            while True:
                while not exhausted and len(window) < self.max_in_flight:
                    task = next(source, _END)
                    if task is _END:
                        exhausted = True
                    else:
                        window.append(_Job(task))
                self._dispatch(window)  # before handing results out: workers stay busy meanwhile
                while window and window[0].state == _DONE:
                    job = window.pop(0)
                    yield job.task, job.result
                if not window:
                    if exhausted:
                        return
                    continue
                if window[0].state != _DONE:
                    self._collect(window)
        finally:
            self.close()

    def _dispatch(self, window: list[_Job[T]]) -> None:
        """Hand queued jobs to idle workers, starting workers as needed."""
        while len(self.workers) < self.n_workers:
            self.workers.append(_Worker(self.context, self.fn, self.initializer, self.initargs))
        idle = [w for w in self.workers if w.job is None]
        i = 0
        while idle and i < len(window):
            job = window[i]
            if job.state != _QUEUED:
                i += 1
                continue
            worker = idle[-1]
            try:
                worker.conn.send(job.task)
            except (OSError, EOFError):  # the idle worker died: replace it, try again
                self._lost(worker)
                idle = [w for w in self.workers if w.job is None]
                continue
            except Exception as exc:  # noqa: BLE001 - the task cannot be pickled: bisect without a worker
                self._failed(window, job, Failed("unsendable", f"could not be sent to a worker: {type(exc).__name__}: {exc}"))
                continue  # the pieces take this job's place at index i
            idle.pop()
            worker.job = job
            job.state = _RUNNING
            i += 1

    def _collect(self, window: list[_Job[T]]) -> None:
        """Wait for results, deaths or an expired deadline, and act on them."""
        busy = [w for w in self.workers if w.job is not None]
        if not busy:
            return
        by_handle: dict[Any, _Worker] = {}
        for worker in busy:
            by_handle[worker.conn] = worker
            by_handle[worker.process.sentinel] = worker
        ready = wait(list(by_handle), timeout=self.poll if self.amend is not None else None)
        seen: set[int] = set()
        for handle in ready:
            worker = by_handle[handle]
            if id(worker) in seen:
                continue
            seen.add(id(worker))
            self._receive(window, worker)
        if self.amend is not None:
            now = time.monotonic()
            for worker in busy:
                if worker.job is None or worker not in self.workers:
                    continue
                expired = worker.deadline.expired(now)
                if expired is not None:
                    job = worker.job
                    log.warning("a worker ran past its deadline (item %d, tag %d); replacing it", *expired)
                    self._replace(worker, kill=True)
                    job.task = self.amend(job.task, *expired)
                    job.state = _QUEUED

    def _receive(self, window: list[_Job[T]], worker: _Worker) -> None:
        job = worker.job
        assert job is not None
        if not worker.ready:
            self._handshake(worker)
            if worker.ready and not worker.conn.poll():  # started; the task is still running
                return
        message = self._read(worker)
        if message is None:  # no result: the worker died holding this job
            if not worker.ready:  # it never started: not the task's fault, so it is not bisected
                job.state = _QUEUED
                self._lost(worker)
                return
            self._replace(worker, kill=True)  # joins it, so its exit code is known below
            log.warning("a worker process died (exit code %s); retrying its task", worker.process.exitcode)
            self._died(window, job)
            return
        status, payload = message
        worker.job = None
        if status == "ok":
            job.result = payload
            job.state = _DONE
            if getattr(payload, "retire_worker", False):
                self._replace(worker)
        else:
            self._failed(window, job, Failed("error", payload))

    @staticmethod
    def _read(worker: _Worker) -> tuple[str, Any] | None:
        """The worker's next message, or None when there is none because the worker has gone."""
        try:
            return worker.conn.recv() if worker.conn.poll() else None
        except (EOFError, OSError):
            return None
        except Exception as exc:  # noqa: BLE001 - a result that cannot be unpickled here
            return ("error", f"the result could not be read: {type(exc).__name__}: {exc}")

    def _handshake(self, worker: _Worker) -> None:
        """Read the worker's start message if it has come: ready, or the initializer's error."""
        if not worker.conn.poll():
            return
        message = self._read(worker)
        if message is None:
            return
        status, init_error = message
        if init_error is not None:
            raise WorkerStartError(f"a worker process could not start: {init_error}")
        worker.ready = True
        self._failed_starts = 0

    def _lost(self, worker: _Worker) -> None:
        """Replace a worker that has gone; raise once workers keep exiting before they start."""
        if not worker.ready:
            self._handshake(worker)  # its initializer's error, if it said one before exiting
        self._replace(worker, kill=True)
        if worker.ready:
            return
        self._failed_starts += 1
        if self._failed_starts >= START_ATTEMPTS:
            raise WorkerStartError(
                f"{START_ATTEMPTS} worker processes in a row exited while starting "
                f"(last exit code {worker.process.exitcode}); {START_HINT}"
            )

    def _replace(self, worker: _Worker, kill: bool = False) -> None:
        worker.job = None
        worker.stop(kill=kill)
        worker.process.join(5.0 if kill else 0.0)
        self.workers.remove(worker)
        self.restarts += 1

    def _died(self, window: list[_Job[T]], job: _Job[T]) -> None:
        pieces = self.split(job.task)
        if len(pieces) > 1:
            self._replace_job(window, job, [_Job(p) for p in pieces])
        elif job.deaths == 0:  # once more: the death may have come from outside (OOM killer, kill)
            job.deaths = 1
            job.state = _QUEUED
        else:
            job.result = Failed("died", "a worker process died while running this item (twice)")
            job.state = _DONE

    def _failed(self, window: list[_Job[T]], job: _Job[T], failure: Failed) -> None:
        pieces = self.split(job.task)
        if len(pieces) > 1:
            self._replace_job(window, job, [_Job(p) for p in pieces])
        else:
            job.result = failure
            job.state = _DONE

    @staticmethod
    def _replace_job(window: list[_Job[T]], job: _Job[T], pieces: list[_Job[T]]) -> None:
        i = window.index(job)
        window[i : i + 1] = pieces


_END: Any = object()
