"""What every backend does around its model calls: the response cache and the accounting.

A backend subclasses :class:`CachingBackend` and implements :meth:`CachingBackend._call`, which
answers the requests the cache did not; :meth:`complete` looks each request up first (a hit makes
no call; with a cache, identical deterministic requests of one batch are asked once), stores what :func:`~medreward.backends.base.cacheable` allows, and records every result
in :attr:`stats`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .base import BackendFailure, BackendStats, ChatRequest, ChatResponse, ResponseCache, cacheable
from .config import BackendConfig

__all__ = ["CachingBackend"]

log = logging.getLogger(__name__)


class CachingBackend:
    """Base of the built-in backends: name, config, cache and statistics; pickles by (name, config)."""

    kind = ""

    def __init__(self, name: str, config: BackendConfig, *, cache: ResponseCache | None = None) -> None:
        self.name = name
        self.config = config
        self.model = config.model
        self.cache = cache
        self.stats = BackendStats()
        self._stats_lock = threading.Lock()

    def __reduce__(self) -> tuple[Any, ...]:
        # a worker process rebuilds clients or models itself; the Scorer re-binds the cache there
        return (type(self), (self.name, self.config))

    def bind_cache(self, cache: ResponseCache | None) -> None:
        """Use ``cache`` from now on (a worker process re-binds the run's cache after unpickling)."""
        self.cache = cache

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResponse | BackendFailure]:
        """One :class:`ChatResponse` or :class:`BackendFailure` per request, in order."""
        requests = list(requests)
        results: list[ChatResponse | BackendFailure | None] = [None] * len(requests)
        keys: list[str | None] = [None] * len(requests)
        todo: list[int] = []
        for i, request in enumerate(requests):
            if self.cache is not None:
                keys[i] = request.cache_key(self.kind, self.model)
                hit = self._cache_get(keys[i])
                if hit is not None:
                    results[i] = replace(hit, cached=True, latency_s=0.0)
                    continue
            todo.append(i)
        unrecorded: set[int] = set()  # twins of a failed call: one failure, counted once
        if todo:
            # with a cache, identical deterministic requests of one batch (a GRPO group's repeated
            # answers) make one call, as they would one after another; without one, each is a call
            first: dict[str | None, int] = {}
            calls: list[int] = []
            twins: list[tuple[int, int]] = []
            for i in todo:
                key = keys[i]
                if key is not None and key in first and _repeatable(requests[i]):
                    twins.append((i, first[key]))
                else:
                    first.setdefault(key, i)
                    calls.append(i)
            answers = self._call([requests[i] for i in calls])
            if len(answers) != len(calls):  # a miscount would shift verdicts between samples
                raise RuntimeError(f"backend {self.name!r} answered {len(answers)} of {len(calls)} requests")
            for i, result in zip(calls, answers):
                results[i] = result
                if self.cache is not None and cacheable(requests[i], result):
                    self._cache_put(keys[i], result)  # type: ignore[arg-type]
            for i, source in twins:
                answer = results[source]
                if isinstance(answer, ChatResponse):
                    results[i] = replace(answer, cached=True, latency_s=0.0)  # answered without a call
                else:
                    results[i] = answer
                    unrecorded.add(i)
        done: list[ChatResponse | BackendFailure] = [r for r in results if r is not None]
        with self._stats_lock:
            for i, r in enumerate(done):
                if i not in unrecorded:
                    self.stats.record(r)
        return done

    def account(self, results: list[Any]) -> list[Any]:
        """Record ``results`` (responses or failures of any call kind) in :attr:`stats`; returns them."""
        with self._stats_lock:
            for r in results:
                self.stats.record(r)
        return results

    def account_packing(self, before: tuple[int, int]) -> None:
        """Add the token-budget batches run since ``before`` (``(real, padded)`` tokens of
        ``self.packing`` at the call's start) to :attr:`stats`, so a run reports its padding."""
        packing = getattr(self, "packing", None)
        if packing is None:
            return
        with self._stats_lock:
            self.stats.real_tokens += packing.real_tokens - before[0]
            self.stats.padded_tokens += packing.padded_tokens - before[1]

    def packing_mark(self) -> tuple[int, int]:
        """``(real, padded)`` tokens of ``self.packing`` so far (see :meth:`account_packing`)."""
        packing = getattr(self, "packing", None)
        return (0, 0) if packing is None else (packing.real_tokens, packing.padded_tokens)

    def forget(self, requests: Sequence[ChatRequest]) -> None:
        """Drop these requests' cached answers (an answer the caller could not use must not be served again)."""
        if self.cache is None:
            return
        for request in requests:
            try:
                self.cache.delete(request.cache_key(self.kind, self.model))
            except Exception as exc:  # noqa: BLE001 - a broken cache must not fail the batch
                log.warning("backend %s: cache delete failed (%s)", self.name, type(exc).__name__)

    def _call(self, requests: list[ChatRequest]) -> list[ChatResponse | BackendFailure]:
        """Answer ``requests`` (none of them cached), one result each, in order."""
        raise NotImplementedError

    def _cache_get(self, key: str | None) -> ChatResponse | None:
        try:
            return self.cache.get(key) if self.cache is not None and key else None
        except Exception as exc:  # noqa: BLE001 - a broken cache is a miss, not a failed batch
            log.warning("backend %s: cache read failed (%s); calling the model", self.name, type(exc).__name__)
            return None

    def _cache_put(self, key: str, response: ChatResponse) -> None:
        try:
            self.cache.put(key, response, kind=self.kind)  # type: ignore[union-attr]
        except Exception as exc:  # noqa: BLE001 - a broken cache must not fail the batch
            log.warning("backend %s: cache write failed (%s)", self.name, type(exc).__name__)


def _repeatable(request: ChatRequest) -> bool:
    """Whether asking ``request`` twice must give the same answer (greedy, or a fixed seed)."""
    return request.temperature == 0 or request.seed is not None
