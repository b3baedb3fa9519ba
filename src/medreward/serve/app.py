"""The FastAPI app of ``medreward serve`` (:func:`create_app`).

Endpoints (docs/serving.md has the full reference):

* ``POST /v1/score``, ``POST /v1/score/{name}`` — rollout records in (a JSON array, or
  ``{"records": [...]}``), ``{"records": [scored records]}`` out, in input order, one per input
  (the record contract of docs/contracts.md: a bad record is an ``error`` record, not a failed request);
  ``?echo=false`` returns each record's ``id`` and scores without the rest of the input record;
* ``POST /get_reward``, ``POST /get_reward/{name}`` — OpenRLHF's remote reward model protocol:
  ``{"query", "prompts", "labels"}`` → ``{"rewards", "scores", "extra_logs"}``
  (:class:`medreward.integrations.openrlhf.OpenRLHFReward`);
* ``POST /v1/evaluate``, ``POST /v1/evaluate/{name}`` — reward-kit / eval-protocol ``EvaluateResult``
  for ``{"messages", "ground_truth"}`` requests (one, or an array) (:mod:`medreward.serve.evaluate`);
* ``GET /healthz`` (the process answers), ``GET /readyz`` (specs loaded, model servers reachable),
  ``GET /metrics`` (Prometheus).

Scoring runs on a thread pool, off the event loop, so health checks answer while it is busy. Every
error is ``{"error": {"code", "message"}}``: no traceback or path reaches a client (unexpected
failures are logged here and answered with a generic 500). No CORS headers are sent, and there is
no interactive documentation page.
"""

from __future__ import annotations

import functools
import gc
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from ..integrations.openrlhf import OpenRLHFReward, PayloadError
from ..integrations.scorers import SharedScorer
from ..records import ScoredRecord
from .auth import authorized
from .coalesce import Coalescer, Scored, Work
from .config import ServeConfig
from .limits import BodyLimit, Receive, Scope, Send
from .metrics import RequestMetrics, ScorerCollector, coalescing_histogram, new_registry
from .readiness import Readiness
from .responses import ApiError, api_error_response, error_body, json_response
from .routing import Route, Router

__all__ = ["OPEN_PATHS", "app_from_env", "create_app"]

log = logging.getLogger("medreward.serve")

#: The generation-0 garbage collection threshold of a serving process (Python's default: 700).
_GC_THRESHOLD = 50_000

#: Paths that answer without a key (health probes carry none).
OPEN_PATHS = frozenset({"/healthz", "/readyz"})


def create_app(config: ServeConfig) -> Any:
    """The ASGI app serving ``config.specs`` (loaded and built now: a bad spec fails here)."""
    router = Router(config.specs, time_limit=config.time_limit)
    for route in router.routes.values():
        _ = route.scorer  # build every scorer before the first request
    registry = new_registry()
    registry.register(ScorerCollector(lambda: [(r.name, r.scorer) for r in router.routes.values()]))
    readiness = Readiness(router)
    executor = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="medreward-score")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        log.info("serving %s", ", ".join(f"{n} ({r.spec.name})" for n, r in router.routes.items()))
        gc.freeze()  # the loaded specs and modules live for good: keep them out of every collection
        # Collect less often. The generation-0 count is containers allocated minus freed: a scoring
        # call leaves its records alive until they are sent, so at the default threshold (700) a
        # collection ran after nearly every call and traversed them all: 1.2 s of collector time in
        # 10 s of load on one worker (gc.callbacks, bench_serve's client). Nearly all of it is freed
        # by reference counting anyway; this process serves, so the setting is ours to make.
        gc.set_threshold(_GC_THRESHOLD, *gc.get_threshold()[1:])
        yield
        executor.shutdown(wait=False, cancel_futures=True)  # uvicorn has let in-flight requests finish

    api = FastAPI(title="medreward", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @api.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> Response:
        return api_error_response(exc)

    @api.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> Response:
        return _http_error_response(exc.status_code)

    @api.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        return _unexpected_response(request.method, request.url.path, exc)

    @api.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @api.get("/readyz")
    async def readyz() -> Response:
        report = await readiness.report()
        return json_response(report, status=200 if report["ready"] else 503)

    @api.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # The scoring handlers only take the body off the connection: parsing, scoring and serialising
    # run on a scoring thread, so the event loop stays free for other connections and health
    # probes; the requests that queue meanwhile are scored together (medreward.serve.coalesce).
    coalescer = Coalescer(executor, slots=config.threads, max_bytes=config.max_body_bytes, trim=_trim,
                          enabled=config.coalesce, on_group=coalescing_histogram(registry).observe)  # fmt: skip
    limit = config.max_rollouts

    async def score(name: str | None, query: dict[str, str], body: bytes) -> Response:
        route = None if name is None else router.route(name)
        echo = _flag(query, "echo", default=True)
        return await coalescer.run(functools.partial(_score_work, router, route, limit, echo, body), len(body))

    async def evaluate(name: str | None, query: dict[str, str], body: bytes) -> Response:
        route = None if name is None else router.route(name)
        return await coalescer.run(functools.partial(_evaluate_work, router, route, limit, body), len(body))

    async def get_reward(name: str | None, query: dict[str, str], body: bytes) -> Response:
        reward = router.openrlhf if name is None else router.openrlhf_by_route[router.route(name).name]
        return await coalescer.run(functools.partial(_reward_work, reward, limit, body), len(body))

    scoring = ScoringPaths(api, {"/v1/score": score, "/v1/evaluate": evaluate, "/get_reward": get_reward})
    app: Any = BodyLimit(scoring, max_bytes=config.max_body_bytes, timeout=config.body_timeout)
    if config.api_key is not None:
        app = KeyRequired(app, config.api_key)
    app = RequestMetrics(app, registry)
    app.fastapi = api  # for tests and embedding
    return app


def app_from_env() -> Any:
    """The app of the configuration ``medreward serve`` put in the environment (uvicorn's factory,
    run in each worker process)."""
    return create_app(ServeConfig.from_env())


class KeyRequired:
    """ASGI middleware: every path but :data:`OPEN_PATHS` needs the key (401 otherwise), checked
    before the body is read."""

    def __init__(self, app: Any, key: str) -> None:
        self.app = app
        self.key = key.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            header = next((v for k, v in scope.get("headers", ()) if k == b"authorization"), None)
            if not authorized(header, self.key):
                response = api_error_response(ApiError(401, "unauthorized", "missing or wrong API key: send 'Authorization: Bearer <key>'"))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


Handler = Callable[[str | None, dict[str, str], bytes], Awaitable[Response]]


class ScoringPaths:
    """ASGI: the scoring endpoints, ``POST {path}`` and ``POST {path}/{name}`` for each path of
    ``handlers``, answered here; every other request goes to ``app`` (FastAPI).

    Under load (py-spy, 16 rollouts a request) FastAPI's routing, dependency and middleware layers
    held the GIL about as long as scoring did, and the scoring endpoints need none of them: a
    handler gets the route name (or ``None``), the query parameters and the body, and returns the
    response.
    """

    def __init__(self, app: Any, handlers: dict[str, Handler]) -> None:
        self.app = app
        self.handlers = handlers

    def _match(self, path: str) -> tuple[Handler | None, str | None]:
        for prefix, handler in self.handlers.items():
            if path == prefix:
                return handler, None
            if path.startswith(prefix + "/"):
                name = path[len(prefix) + 1:]
                if name and "/" not in name:
                    return handler, name
        return None, None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler, name = self._match(scope["path"]) if scope["type"] == "http" else (None, None)
        if handler is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] != "POST":
            response = _http_error_response(405, {"Allow": "POST"})
        else:
            try:
                query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
                body = b""
                while True:
                    message = await receive()
                    body += message.get("body", b"")
                    if not message.get("more_body", False):
                        break
                response = await handler(name, query, body)
            except ApiError as exc:
                response = api_error_response(exc)
            except Exception as exc:  # noqa: BLE001 - answered 500 and logged, like FastAPI's handler
                response = _unexpected_response(scope["method"], scope["path"], exc)
        await response(scope, receive, send)


def _flag(query: dict[str, str], name: str, *, default: bool) -> bool:
    """A true/false query parameter (``true/false``, ``1/0``, ``yes/no``, ``on/off``); 422 otherwise."""
    value = query.get(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in ("true", "1", "yes", "on", "t", "y"):
        return True
    if lowered in ("false", "0", "no", "off", "f", "n"):
        return False
    raise ApiError(422, "bad_parameter", f"invalid request parameter: query.{name} (true or false, got {value[:20]!r})")


def _http_error_response(status: int, headers: dict[str, str] | None = None) -> Response:
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    message = {404: "no such endpoint", 405: "method not allowed"}.get(status, "request refused")
    return Response(error_body(code, message), status_code=status, media_type="application/json", headers=headers)


def _unexpected_response(method: str, path: str, exc: BaseException) -> Response:
    log.error("unexpected error on %s %s", method, path, exc_info=exc)
    return Response(error_body("internal", "internal error (see the server log)"), status_code=500, media_type="application/json")


def _loads(body: bytes) -> Any:
    """JSON text → value; orjson first, the standard library for what orjson refuses (lone
    surrogate escapes, which records may carry), 400 for what neither reads."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        message = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise ApiError(400, "bad_json", f"the request body is not valid JSON: {message}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _dumps(data: Any) -> bytes:
    """JSON bytes; the standard library (surrogates escaped as ``\\ud800``) for text orjson cannot
    encode (a lone surrogate that a record brought in is echoed back as it came)."""
    try:
        return orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:
        return json.dumps(data, default=str, allow_nan=False).encode()


def _records(body: bytes, limit: int) -> list[Any]:
    data = _loads(body)
    if isinstance(data, dict) and "records" in data:
        data = data["records"]
    if not isinstance(data, list):
        raise ApiError(422, "bad_schema", "the body must be a JSON array of rollout records, or {\"records\": [...]}")
    if len(data) > limit:
        raise ApiError(413, "too_many_rollouts", f"{len(data)} rollouts in one request; the limit is {limit}")
    return data


def _openrlhf_payload(body: bytes, limit: int) -> dict[str, Any]:
    data = _loads(body)
    if not isinstance(data, dict):
        raise ApiError(422, "bad_schema", "the body must be a JSON object {\"query\": [...], \"prompts\": [...], \"labels\": [...]}")
    if "query" not in data:
        raise ApiError(422, "bad_schema", f"the body has no 'query' (keys: {sorted(data)[:20]})")
    query = data["query"]
    if isinstance(query, list) and len(query) > limit:
        raise ApiError(413, "too_many_rollouts", f"{len(query)} queries in one request; the limit is {limit}")
    return data


def _score_work(router: Router, route: Route | None, limit: int, echo: bool, body: bytes) -> Work:
    """``/v1/score``: parse, route (``route``, else by each record's task); the response holds
    each input record with its scores added, or (``echo=False``) only its ``id`` (when it has
    one) and the scores, in input order."""
    records = _records(body, limit)
    groups = router.split(records) if route is None else [(route, list(range(len(records))), records)]

    def finish(scored: list[Scored]) -> Response:
        out = _in_input_order(groups, scored, len(records), ScoredRecord.to_dict if echo else _scores_only)
        return Response(_dumps({"records": out}), media_type="application/json")

    return Work([(r.scorer, items) for r, _, items in groups], finish)


def _evaluate_work(router: Router, route: Route | None, limit: int, body: bytes) -> Work:
    """``/v1/evaluate``: reward-kit / eval-protocol ``EvaluateResult`` (see :mod:`.evaluate`)."""
    from ..integrations.reward_kit import to_evaluate_result
    from .evaluate import evaluation_groups

    single, groups = evaluation_groups(router, route, _loads(body), limit)

    def finish(scored: list[Scored]) -> Response:
        out = _in_input_order(groups, scored, sum(len(where) for _, where, _ in groups), to_evaluate_result)
        return json_response(out[0] if single else out)

    return Work([(shared, items) for shared, _, items in groups], finish)


def _in_input_order(groups: Sequence[tuple[Any, list[int], list[Any]]], scored: Sequence[Scored], n: int,
                    convert: Callable[[ScoredRecord], Any]) -> list[Any]:  # fmt: skip
    """``convert`` of each scored record, put back at its input position (``groups`` hold the
    positions of each piece's items, in the order of ``scored``)."""
    out: list[Any] = [None] * n
    for (_, where, _), piece in zip(groups, scored, strict=True):
        for i, record in zip(where, piece.records, strict=True):
            out[i] = convert(record)
    return out


def _scores_only(record: ScoredRecord) -> dict[str, Any]:
    out: dict[str, Any] = {"id": record.record["id"]} if "id" in record.record else {}
    out.update(reward=record.reward, components=record.components, status=record.status.value, info=record.info)
    return out


def _reward_work(reward: OpenRLHFReward, limit: int, body: bytes) -> Work:
    """``/get_reward``: OpenRLHF's remote reward model protocol (:class:`OpenRLHFReward`)."""
    payload = _openrlhf_payload(body, limit)
    try:
        plan = reward.plan(payload["query"], payload.get("prompts"), payload.get("labels"))
    except PayloadError as exc:
        raise ApiError(422, "bad_schema", str(exc)) from None

    def finish(scored: list[Scored]) -> Response:
        return json_response(reward.result(plan, [(s.records, s.stats, s.size) for s in scored]))

    return Work([(scorer, items) for scorer, _, items in plan.groups], finish)


def _trim(shared: SharedScorer) -> None:
    """Drop what a scorer's running totals keep per sample (run-level observations, backend call
    latencies): a server runs for weeks, and /metrics reads only the counters."""
    with shared.lock:
        for seen in shared.total.observations.values():
            seen.clear()
        for backend in shared.total.backends.values():
            backend.latencies.clear()
