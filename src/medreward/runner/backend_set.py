"""A spec's model backends in one process: built on first use, shared, accounted, closed once.

The :class:`~medreward.runner.Scorer` of a spec with ``[backends.NAME]`` tables holds one
:class:`BackendSet`; the scorers that a trainer adapter makes for its other threads share it
(:meth:`Scorer.sibling`), and each worker process builds its own. Nothing is built until the
first batch is scored, so a parent that hands all scoring to worker processes never loads a
model or opens a connection. See docs/contracts.md#model-backed-rewards.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..backends.base import Backend, BackendStats, ResponseCache
from ..backends.config import BackendConfig
from ..backends.factory import build_backend

__all__ = ["BackendFactory", "BackendSet"]

log = logging.getLogger(__name__)

#: builds one backend: ``factory(name, config, cache=cache)`` (default :func:`~medreward.backends.factory.build_backend`)
BackendFactory = Callable[..., Backend]

_FIELDS = tuple(f.name for f in dataclasses.fields(BackendStats))


class BackendSet:
    """The backends declared by a spec, with their URLs resolved and one response cache.

    Args:
        configs: the spec's ``backends`` tables, by name.
        cache: path of the SQLite response cache (``None``: the default path).
        use_cache: ``False`` makes every request a call (``--no-cache``).
        urls: ``--backend-url`` overrides by backend name (else ``MEDREWARD_<NAME>_BASE_URL``, else the spec).
        factory: how to build one backend (tests and custom backends; it must pickle by reference
            to reach worker processes).
    """

    def __init__(
        self,
        configs: Mapping[str, BackendConfig],
        *,
        cache: str | Path | None = None,
        use_cache: bool = True,
        urls: Mapping[str, str] | None = None,
        factory: BackendFactory | None = None,
    ) -> None:
        urls = dict(urls or {})
        self.configs = {name: config.resolved(name, urls.get(name)) for name, config in configs.items()}
        self.cache_path = cache
        self.use_cache = use_cache
        self.factory = factory
        self._lock = threading.Lock()
        self._backends: dict[str, Backend] | None = None
        self._cache: ResponseCache | None = None
        self._seen: dict[str, tuple[int, dict[str, Any]]] = {}
        self._closed = False

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.configs)

    def get(self) -> dict[str, Backend]:
        """The built backends by name (built on the first call, in this process)."""
        backends = self._backends
        if backends is not None:
            return backends
        with self._lock:
            if self._backends is None:
                if self._closed:
                    raise RuntimeError("the scorer was closed: its backends cannot be used again")
                self._backends = self._build()
            return self._backends

    def _build(self) -> dict[str, Backend]:
        cache = self._open_cache()
        factory = self.factory or build_backend
        built: dict[str, Backend] = {}
        try:
            for name, config in self.configs.items():
                built[name] = factory(name, config, cache=cache)
        except BaseException:
            _close_all(built.values(), cache)
            raise
        self._cache = cache
        log.debug("built backends %s (cache: %s)", sorted(built), "off" if cache is None else self.cache_path or "default")
        return built

    def _open_cache(self) -> ResponseCache | None:
        if not self.use_cache:
            return None
        from ..backends.cache import open_cache  # SQLite: only when a spec has backends

        return open_cache(None if self.cache_path is None else Path(self.cache_path), True)

    def take_stats(self) -> dict[str, BackendStats]:
        """Each backend's accounting since the previous call (all of it on the first).

        Backends accumulate their :class:`BackendStats`; the scorers sharing this set each take
        the increments at the end of a batch, so their totals add up to every call exactly once.
        """
        backends = self._backends
        if backends is None:
            return {}
        out: dict[str, BackendStats] = {}
        with self._lock:
            for name, backend in backends.items():
                now = backend.stats
                ident, before = self._seen.get(name, (0, None))
                if before is None or ident != id(now):  # first look, or the backend replaced its stats
                    before = dict.fromkeys(_FIELDS, 0)
                current = {f: getattr(now, f) for f in _FIELDS}
                delta: dict[str, Any] = {}
                for f, v in current.items():
                    if isinstance(v, list):
                        # a list (latencies) is handed over and emptied, so a long-lived backend does not
                        # keep one float per call forever; appends after the slice are kept for next time
                        n = len(v)
                        delta[f] = v[:n]
                        del v[:n]
                        current[f] = []
                    else:
                        delta[f] = v - before[f]
                self._seen[name] = (id(now), {f: 0 if isinstance(v, list) else v for f, v in current.items()})
                out[name] = BackendStats(**delta)
        return out

    def close(self) -> None:
        """Close the backends and the cache (idempotent)."""
        with self._lock:
            self._closed = True
            backends, self._backends = self._backends, None
            cache, self._cache = self._cache, None
        if backends is not None:
            _close_all(backends.values(), cache)


def _close_all(backends: Any, cache: ResponseCache | None) -> None:
    for backend in backends:
        try:
            backend.close()
        except Exception as exc:  # noqa: BLE001 - closing the others matters more
            log.warning("closing backend %r failed: %s", getattr(backend, "name", backend), exc)
    if cache is not None:
        try:
            cache.close()
        except Exception as exc:  # noqa: BLE001
            log.warning("closing the response cache failed: %s", exc)
