"""The process-wide scorer cache that every trainer adapter scores through.

One :class:`SharedScorer` per (spec, time limit) per process, built on first use and safe
to call from several threads (verl scores each sample from a thread pool). A forked child
starts with an empty cache: it inherits the scorers but not their threads.

A spec's model backends (docs/contracts.md#model-backed-rewards) are built once per process and
shared by the threads' scorers; their endpoints come from ``MEDREWARD_<NAME>_BASE_URL`` or the
spec, their cache from ``MEDREWARD_CACHE`` or the default path. They are closed at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from medreward.compose.spec import Spec
from medreward.integrations.references import to_builtin
from medreward.integrations.registry import SpecLike, load_spec_like
from medreward.records import ScoredRecord
from medreward.runner import RunStats, Scorer

__all__ = ["SharedScorer", "get_scorer"]


@dataclass
class SharedScorer:
    """A :class:`~medreward.runner.Scorer` that several threads may call at once.

    Each calling thread scores with its own Scorer, built from the same spec, so a sample
    that runs to its time limit holds up only its own thread. One lock guards just the merge
    of ``total``, which accumulates statistics over every call. :meth:`score` also returns
    the statistics of its own batch, for per-step trainer metrics.
    """

    scorer: Scorer
    lock: threading.Lock = field(default_factory=threading.Lock)
    total: RunStats = field(init=False)
    _local: threading.local = field(default_factory=threading.local, init=False, repr=False)

    def __post_init__(self) -> None:
        self.total = self.scorer.new_stats()
        self._local.scorer = self.scorer  # the thread that built it scores with it

    @property
    def spec(self) -> Spec:
        return self.scorer.spec

    @cached_property
    def reference_keys(self) -> tuple[str, ...]:
        """The spec's reference keys (:meth:`Spec.reference_keys`), from the built components."""
        return self.spec.reference_keys(self.scorer.components)

    def _thread_scorer(self) -> Scorer:
        mine: Scorer | None = getattr(self._local, "scorer", None)
        if mine is None:  # another thread: its own Scorer from the same spec, sharing the backends
            mine = self._local.scorer = self.scorer.sibling()
        return mine

    def score(self, items: Sequence[Any]) -> tuple[list[ScoredRecord], RunStats]:
        """Score ``items`` (record dicts or :class:`~medreward.records.BadRecord`) in order."""
        scorer = self._thread_scorer()
        scorer.stats = scorer.new_stats()
        records = scorer.score_chunk(list(items))
        batch = scorer.stats
        with self.lock:
            self.total.merge(batch)
        if len(records) != len(items):  # the Scorer guarantees this; a trainer would silently misalign
            raise RuntimeError(f"scorer returned {len(records)} records for {len(items)} inputs")
        return records, batch


class _ScorerCache:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.scorers: dict[tuple[str, float | None], SharedScorer] = {}
        self.inherited: list[SharedScorer] = []

    def get(self, spec: SpecLike, time_limit: float | None) -> SharedScorer:
        key = _cache_key(spec, time_limit)
        hit = self.scorers.get(key)
        if hit is not None:
            return hit
        with self.lock:
            hit = self.scorers.get(key)
            if hit is None:
                hit = self.scorers[key] = SharedScorer(Scorer(load_spec_like(spec), time_limit=time_limit))
            return hit

    def after_fork(self) -> None:
        # A forked child inherits the cache but not the scorers' worker threads: start afresh.
        # The parent's scorers stay referenced (never used, never closed): closing an inherited
        # connection or SQLite handle in the child would disturb the parent's.
        self.inherited.extend(self.scorers.values())
        self.scorers = {}
        self.lock = threading.Lock()

    def close(self) -> None:
        """Close every scorer's backends (at interpreter exit)."""
        for shared in list(self.scorers.values()):
            shared.scorer.close()


#: id(spec) → (a weak reference to it, its cache identity): a Spec is immutable, and its JSON
#: (about 12 µs for a preset) would otherwise be rebuilt on every lookup, i.e. every request served.
_SPEC_IDENTS: dict[int, tuple[weakref.ref, str]] = {}


def _spec_ident(spec: Spec) -> str:
    key = id(spec)
    entry = _SPEC_IDENTS.get(key)
    if entry is not None and entry[0]() is spec:
        return entry[1]
    ident = "spec:" + json.dumps(spec.to_dict(), sort_keys=True)
    # the entry goes when the spec does (before its id can be reused)
    _SPEC_IDENTS[key] = (weakref.ref(spec, lambda _, key=key: _SPEC_IDENTS.pop(key, None)), ident)
    return ident


def _cache_key(spec: SpecLike, time_limit: float | None) -> tuple[str, float | None]:
    if isinstance(spec, Spec):
        ident = _spec_ident(spec)
    elif isinstance(spec, Mapping):
        ident = "dict:" + json.dumps(to_builtin(spec), sort_keys=True, default=str)
    else:
        ident = "name:" + str(spec)
    return ident, time_limit


_CACHE = _ScorerCache()
atexit.register(_CACHE.close)

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_CACHE.after_fork)


def get_scorer(spec: SpecLike, *, time_limit: float | None = 10.0) -> SharedScorer:
    """The process-wide scorer of ``spec`` (built once; thread-safe; rebuilt after a fork).

    A name is looked up in the data-source registry first (so an alias scores with its spec).
    """
    return _CACHE.get(spec, time_limit)
