"""Prometheus metrics of one server process (``GET /metrics``).

Request-level metrics are recorded by :class:`RequestMetrics` (an ASGI middleware, so requests
refused by the auth or body limits count too): ``medreward_requests_total{endpoint,code}`` and
``medreward_request_seconds{endpoint}`` (a histogram). ``medreward_coalesced_requests`` is a
histogram of how many requests each scoring call served together (:mod:`medreward.serve.coalesce`):
its ``_count`` is the scoring calls, its ``_sum`` the requests. The scoring counters are read at scrape
time from each route's shared scorer totals (:class:`ScorerCollector`), so the ``/v1/score`` and
``/get_reward`` paths are counted alike: rollouts and record statuses per spec, statuses per
component, and for specs with model backends the backend calls, cache hits, failures and tokens.

With ``--workers N`` each worker process keeps its own metrics; a scrape reads the worker that
answers it (run one worker per port, or sum over scrapes, when that matters).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from ..records import Status
from .limits import ASGIApp, Message, Receive, Scope, Send

__all__ = ["ENDPOINTS", "RequestMetrics", "ScorerCollector", "coalescing_histogram", "endpoint_of", "new_registry"]

#: Requests per scoring call.
_GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Latency buckets in seconds: a scoring request takes milliseconds; a judge call, seconds.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

#: The endpoint label of each path prefix (anything else is ``other``: no label per path typed).
ENDPOINTS: tuple[str, ...] = ("/v1/score", "/v1/evaluate", "/get_reward", "/healthz", "/readyz", "/metrics")


def endpoint_of(path: str) -> str:
    """The ``endpoint`` label of a request path.

    >>> endpoint_of("/v1/score/tox"), endpoint_of("/get_reward"), endpoint_of("/etc/passwd")
    ('/v1/score', '/get_reward', 'other')
    """
    for endpoint in ENDPOINTS:
        if path == endpoint or path.startswith(endpoint + "/"):
            return endpoint
    return "other"


class RequestMetrics:
    """ASGI middleware: count each HTTP request by endpoint and status code, and time it."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests = Counter("medreward_requests", "HTTP requests served, by endpoint and status code.",
                                ("endpoint", "code"), registry=registry)  # fmt: skip
        self.latency = Histogram("medreward_request_seconds", "Time from request to the end of the response, by endpoint.",
                                 ("endpoint",), buckets=_BUCKETS, registry=registry)  # fmt: skip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        code = 500  # if the app fails before it starts a response

        async def watch(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            endpoint = endpoint_of(scope["path"])
            self.requests.labels(endpoint, str(code)).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - started)


class ScorerCollector(Collector):
    """Scoring counters read from the routes' shared scorers at scrape time.

    ``routes`` yields ``(route name, SharedScorer)`` pairs; each scorer's ``total`` is read under
    its lock (the scoring threads merge into it under the same lock).
    """

    def __init__(self, routes: Any) -> None:
        self.routes = routes

    def collect(self) -> Iterable[Metric]:
        rollouts = CounterMetricFamily("medreward_rollouts", "Rollouts scored, by route and record status.", labels=("spec", "status"))
        components = CounterMetricFamily("medreward_component_statuses", "Component results, by route, component and status.",
                                         labels=("spec", "component", "status"))  # fmt: skip
        backend = {
            field: CounterMetricFamily(f"medreward_backend_{field}", help_text, labels=("spec", "backend"))
            for field, help_text in _BACKEND_HELP.items()
        }
        for name, shared in self._pairs():
            with shared.lock:
                total = shared.total
                statuses = dict(total.statuses)
                comps = [(c.name, dict(c.counts)) for c in total.components.values()]
                backends = [(b, {f: getattr(s, f) for f in _BACKEND_HELP}) for b, s in total.backends.items()]
            for status in Status:
                rollouts.add_metric((name, status.value), statuses.get(status.value, 0))
            for component, counts in comps:
                for status in Status:
                    components.add_metric((name, component, status.value), counts.get(status.value, 0))
            for backend_name, fields in backends:
                for field, value in fields.items():
                    backend[field].add_metric((name, backend_name), value)
        yield rollouts
        yield components
        yield from backend.values()

    def _pairs(self) -> Sequence[tuple[str, Any]]:
        return list(self.routes())


_BACKEND_HELP = {
    "calls": "Model backend requests made (cache misses), by route and backend.",
    "cache_hits": "Model backend answers served from the response cache, by route and backend.",
    "failures": "Model backend requests that failed after retries, by route and backend.",
    "prompt_tokens": "Prompt tokens sent to the model backend, by route and backend.",
    "completion_tokens": "Completion tokens received from the model backend, by route and backend.",
}


def coalescing_histogram(registry: CollectorRegistry) -> Histogram:
    """``medreward_coalesced_requests``: requests served per scoring call."""
    return Histogram("medreward_coalesced_requests", "Requests scored together in one call of a scoring thread.",
                     buckets=_GROUP_BUCKETS, registry=registry)  # fmt: skip


def new_registry() -> CollectorRegistry:
    """A registry of its own per app (several apps in one process, as in tests, do not clash)."""
    return CollectorRegistry(auto_describe=True)
