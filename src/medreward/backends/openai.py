"""The ``openai`` backend: any OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp
server, TGI, Ollama, hosted APIs), called with ``aiohttp`` (the ``judge`` extra).

One backend owns a private event loop in a daemon thread (uvloop's when it is installed), with one
``aiohttp`` session, one concurrency semaphore, one rate limiter and one circuit breaker. aiohttp on
uvloop rather than httpx because a judge client at high concurrency spends its time in the HTTP
layer: on the 2-core dev VM (benchmarks/bench_judge_client.py, 64 requests in flight) httpx took
1.1–1.2 ms of CPU per request and this client takes 0.3–0.4 ms. That CPU comes out of the trainer the
reward runs in. The environment's ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``NO_PROXY`` are honoured (read
when the backend is made). A backend that is garbage-collected, or still open at interpreter exit,
closes its session and stops its loop.

:meth:`OpenAIBackend.complete` is synchronous and may be called from any thread — also one whose
event loop is running (TRL's async reward path): the batch runs on the private loop and the caller
waits for it. Several threads calling at once share the same limits.

Per request: cache lookup (a hit makes no call) → ``max_concurrency`` slot → requests-per-minute and
tokens-per-minute reservations → POST ``{base_url}/chat/completions`` → on 429/5xx/connection errors,
retries with exponential back-off and jitter that honour ``Retry-After`` → one :class:`ChatResponse`
or one :class:`BackendFailure`. A timeout is final (not retried: a slow judge asked again is slower
still). Only complete answers are cached (``finish_reason`` other than ``"length"``, unless the request
reads only the start of the answer: :attr:`ChatRequest.reads_prefix`).

:meth:`OpenAIBackend.logprobs` (likelihood rewards) takes the same path to the legacy
``{base_url}/completions`` endpoint with ``echo`` and ``logprobs``, which vLLM and llama-cpp-python's
server answer with the prompt's token log-probs; a server that does not gets a clear failure.

If the server refuses ``response_format`` or ``logprobs`` (a 400 or 422, or a 500 whose message names
them), the request is sent again at once, in the same concurrency slot: with the ``{"type":
"json_object", "schema": …}`` form that llama.cpp's server takes in place of OpenAI's ``json_schema``
form, else without the feature. When that succeeds the backend remembers it
(:attr:`OpenAIBackend.unsupported`, logged once), so servers that lack these features still work,
and requests still waiting for a slot are sent without it.

The API key is read from the environment variable named by ``api_key_env`` for every request and
kept nowhere else: not on the object, not in ``repr``, pickles, logs or failure messages (a
server that echoes it back in an error body has it replaced by ``***``).

Pickling keeps only ``(name, config)``: a worker process rebuilds the client, limits and stats, and
has no cache — the Scorer re-binds its cache in each worker (``bind_cache``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import urllib.request
import weakref
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import aiohttp

from ..errors import SpecError
from ..text import clean_surrogates
from .base import BackendFailure, ChatRequest, ChatResponse, ResponseCache, TokenLogprob
from .caching import CachingBackend
from .config import BackendConfig
from .limits import CircuitBreaker, TokenBucket, backoff_delay, estimate_tokens, parse_retry_after
from .scoring import LogprobRequest, LogprobResponse

__all__ = ["OpenAIBackend"]

log = logging.getLogger(__name__)

R = TypeVar("R")

#: logprob positions kept per response (judges read the first token or few)
MAX_LOGPROB_POSITIONS = 16
#: error-body characters quoted in a failure message
_BODY_EXCERPT = 200
_CUT_MARK = "\n[... {n} characters cut to fit the model's context ...]\n"
#: optional request features a server may reject; "json_schema" is OpenAI's form of response_format,
#: "response_format" any form (llama.cpp's server takes only {"type": "json_object", "schema": ...})
_OPTIONAL_FEATURES = ("json_schema", "response_format", "logprobs")
#: the start of the message of a log-prob request the server cannot answer (no echo of prompt log-probs)
_NO_ECHO = "the server does not return the prompt's log-probabilities (/completions with echo + logprobs), which likelihood rewards need"
#: echoed tokens that do not end with the target: the server's log-probs cannot be matched to the text
_MISALIGNED = (
    "the echoed tokens do not line up with the prompt text, so their log-probs cannot be trusted "
    "(llama-cpp-python's server shifts them by one token when the prompt does not start with the model's "
    "BOS token: render the prompt with a template that starts with it, e.g. the likelihood component's "
    "prompt_layout = 'chatml' for ChatML models such as SmolLM2 or Qwen)"
)
#: refusals that mean the endpoint or its echo/logprobs parameters are not supported
_NO_ECHO_STATUSES = (400, 404, 405, 422, 501)
#: runtimes a forked child inherited from its parent: kept alive and never shut down here (the
#: parent's loop thread does not exist in the child, and closing its session would touch the
#: parent's sockets or, once collected, warn about an unclosed session)
_INHERITED: list[_Runtime] = []


class _Attempt(Exception):
    """One failed attempt: ``retry`` says whether another may help; ``delay`` is the server's
    ``Retry-After``; ``connection`` marks failures that count towards the circuit breaker."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        retry: bool = False,
        delay: float | None = None,
        connection: bool = False,
        status: int | None = None,
        body: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retry = retry
        self.delay = delay
        self.connection = connection
        self.status = status
        self.body = body


class OpenAIBackend(CachingBackend):
    """A backend over an OpenAI-compatible ``/chat/completions`` endpoint (see the module docstring)."""

    kind = "openai"
    #: first back-off step in seconds (doubles per retry, capped at ``retry_cap_s``)
    retry_base_s = 0.25
    retry_cap_s = 8.0
    #: a ``Retry-After`` longer than this (or than ``timeout_s``, if larger) fails the request instead of waiting
    max_retry_after_s = 60.0

    def __init__(self, name: str, config: BackendConfig, *, cache: ResponseCache | None = None) -> None:
        if not config.base_url:
            raise SpecError(
                f"backends.{name}: kind 'openai' needs base_url (or --backend-url, or the MEDREWARD_*_BASE_URL variable)"
            )
        super().__init__(name, config, cache=cache)
        #: optional request features this server rejected (``"response_format"``, ``"logprobs"``)
        self.unsupported: set[str] = set()
        self._url = config.base_url.rstrip("/") + "/chat/completions"
        self._completions_url = config.base_url.rstrip("/") + "/completions"
        self._start_lock = threading.Lock()
        self._runtime: _Runtime | None = None
        self._finalizer: weakref.finalize | None = None
        self._proxy = _env_proxy(config.base_url)
        self._breaker = CircuitBreaker(config.circuit_failures, config.circuit_reset_s)
        self._rpm = TokenBucket.per_minute(config.requests_per_minute) if config.requests_per_minute else None
        self._tpm = TokenBucket.per_minute(config.tokens_per_minute) if config.tokens_per_minute else None

    # -- identity ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"OpenAIBackend(name={self.name!r}, model={self.model!r}, base_url={_safe_url(self.config.base_url)!r})"

    # -- public API -------------------------------------------------------------------------
    def _call(self, requests: list[ChatRequest]) -> list[ChatResponse | BackendFailure]:
        return self._run(self._run_batch(requests), "complete")

    def close(self) -> None:
        """Close the HTTP session and stop the private event loop (the backend restarts them if used
        again). A backend that is collected, or still open when the interpreter exits, is closed then."""
        with self._start_lock:
            finalizer, self._runtime, self._finalizer = self._finalizer, None, None
        if finalizer is not None:
            finalizer()

    # -- the private event loop -------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, R], method: str) -> R:
        """Run ``coro`` on the private loop and wait for its result (from any thread but the loop's)."""
        runtime = self._ensure_runtime()
        if threading.current_thread() is runtime.thread:
            coro.close()
            raise RuntimeError(f"OpenAIBackend.{method} called from its own event loop thread")
        return asyncio.run_coroutine_threadsafe(coro, runtime.loop).result()

    def _ensure_runtime(self) -> _Runtime:
        with self._start_lock:
            runtime = self._runtime
            if runtime is not None and runtime.pid != os.getpid():  # forked: the parent's loop thread is not here
                if self._finalizer is not None:
                    self._finalizer()  # shutdown() in a child keeps the parent's runtime aside, untouched
                runtime = None
            if runtime is None:
                runtime = _Runtime(self.name, self.config)
                self._runtime = runtime
                self._finalizer = weakref.finalize(self, runtime.shutdown)  # also runs at interpreter exit
            return runtime

    async def _run_batch(self, requests: list[ChatRequest]) -> list[ChatResponse | BackendFailure]:
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    # -- one request ------------------------------------------------------------------------
    async def _one(self, request: ChatRequest) -> ChatResponse | BackendFailure:
        try:
            return await self._one_unsafe(request)
        except Exception as exc:  # a bug or an unforeseen error is this request's failure, not the batch's
            self._breaker.record_success()  # never leave a half-open trial outstanding
            log.debug("backend %s: unexpected %s", self.name, type(exc).__name__, exc_info=True)
            return BackendFailure("other", self._scrub(f"{type(exc).__name__}: {exc}"))

    async def _one_unsafe(self, request: ChatRequest) -> ChatResponse | BackendFailure:
        messages, truncated = self._fit_context(request)
        estimate = estimate_tokens(sum(len(m.get("content", "")) for m in messages)) + request.max_tokens
        dropped: set[str] = set()

        def refused(failure: _Attempt, body: Mapping[str, Any]) -> bool:
            retry_without = self._rejected_features(failure, body, dropped)
            dropped.update(retry_without)
            return bool(retry_without)

        result = await self._exchange(
            self._url, lambda: self._body(request, messages, dropped), estimate, self._parse, refused=refused
        )
        if isinstance(result, BackendFailure):
            return result
        for feature in dropped - self.unsupported:
            log.warning("backend %s: the server rejects %r; sending requests without it", self.name, feature)
        self.unsupported |= dropped
        return replace(result, truncated_input=truncated)

    async def _exchange(
        self,
        url: str,
        make_body: Callable[[], dict[str, Any]],
        estimate: int,
        parse: Callable[[bytes, float], R],
        *,
        refused: Callable[[_Attempt, Mapping[str, Any]], bool] | None = None,
    ) -> R | BackendFailure:
        """POST ``make_body()`` to ``url`` under the backend's limits (circuit breaker, concurrency
        slot, rate limits) with retries and back-off; ``parse(content, latency)`` reads a 200 reply.
        ``refused(failure, body)`` may change what ``make_body`` returns after a refusal and return
        True to send again at once (a different request, not a retry)."""
        runtime = self._runtime
        if runtime is None:  # close() ran in another thread while this request waited
            return BackendFailure("other", "the backend was closed before the request was sent")
        session, slots = runtime.transport()
        retries = 0
        while True:
            if not self._breaker.allow():
                return BackendFailure(
                    "circuit_open",
                    f"circuit open: {self.config.circuit_failures} consecutive connection failures to "
                    f"{_safe_url(self.config.base_url)}; next trial after {self.config.circuit_reset_s:g} s",
                    retries,
                )
            try:
                async with slots:
                    result = await self._send_in_slot(session, url, make_body, estimate, parse, refused)
            except _Attempt as failure:
                if failure.connection:
                    self._breaker.record_failure()
                else:
                    self._breaker.record_success()
                if not failure.retry or retries >= self.config.max_retries:
                    return self._final(failure, retries)
                delay = backoff_delay(retries, base=self.retry_base_s, cap=self.retry_cap_s)
                if failure.delay is not None:
                    if failure.delay > max(self.max_retry_after_s, self.config.timeout_s):
                        return BackendFailure(
                            "rate_limited", f"{failure.message}; server asked to retry after {failure.delay:g} s", retries
                        )
                    delay = max(delay, failure.delay)
                retries += 1
                await asyncio.sleep(delay)
                continue
            self._breaker.record_success()
            if retries:
                with self._stats_lock:
                    self.stats.retries += retries
            return result

    async def _send_in_slot(
        self,
        session: aiohttp.ClientSession,
        url: str,
        make_body: Callable[[], dict[str, Any]],
        estimate: int,
        parse: Callable[[bytes, float], R],
        refused: Callable[[_Attempt, Mapping[str, Any]], bool] | None,
    ) -> R:
        """Send in the slot the caller holds; after a refusal that ``refused`` answers (a different
        request: without the feature the server rejected), send again at once in the same slot.
        The body is built here, once a slot is free, so a request that waited for one leaves out
        what the server has refused meanwhile; and the slot is kept until the answer, so the
        requests queued behind a refusal do not all repeat it before the first one learns."""
        while True:
            body = make_body()
            await self._wait_for_rate(estimate)
            try:
                return await self._post(session, url, body, parse)
            except _Attempt as failure:
                if refused is None or not refused(failure, body):
                    raise
                self._breaker.record_success()  # the server answered

    def _final(self, failure: _Attempt, retries: int) -> BackendFailure:
        message = failure.message if not retries else f"{failure.message} after {retries} retries"
        return BackendFailure(failure.kind, self._scrub(message), retries)  # type: ignore[arg-type]

    async def _wait_for_rate(self, tokens: int) -> None:
        wait = 0.0
        if self._rpm is not None:
            wait = max(wait, self._rpm.reserve(1))
        if self._tpm is not None:
            wait = max(wait, self._tpm.reserve(tokens))
        if wait > 0:
            await asyncio.sleep(wait)

    def _body(self, request: ChatRequest, messages: list[dict[str, str]], dropped: set[str]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.seed is not None:
            body["seed"] = request.seed
        if request.stop:
            body["stop"] = list(request.stop)
        skip = dropped | self.unsupported
        if request.response_schema is not None and "response_format" not in skip:
            if "json_schema" not in skip:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {
                        "name": _schema_name(request.template),
                        "schema": dict(request.response_schema),
                        "strict": True,
                    },
                }
            else:  # the form llama.cpp's server (and some others) accept instead
                body["response_format"] = {"type": "json_object", "schema": dict(request.response_schema)}
        if request.top_logprobs and "logprobs" not in skip:
            body["logprobs"] = True
            body["top_logprobs"] = request.top_logprobs
        return body

    @staticmethod
    def _rejected_features(failure: _Attempt, body: Mapping[str, Any], dropped: set[str]) -> set[str]:
        """The optional features to drop after the server refused the request: those its error names
        (after a 400, 422 or 500), else after a 400 or 422 all that were sent. A rejected OpenAI
        ``json_schema`` form is first replaced by the ``json_object`` + ``schema`` form."""
        if failure.status not in (400, 422, 500):
            return set()
        sent = set()
        if "response_format" in body:
            sent.add("json_schema" if body["response_format"].get("type") == "json_schema" else "response_format")
        if "logprobs" in body:
            sent.add("logprobs")
        sent -= dropped
        if not sent:
            return set()
        text = failure.body.lower()
        format_named = any(word in text for word in ("response_format", "json_schema", "json_object"))
        named = {f for f in sent if f in text or (f in ("json_schema", "response_format") and format_named)}
        return named or (sent if failure.status in (400, 422) else set())

    async def _post(
        self, session: aiohttp.ClientSession, url: str, body: dict[str, Any], parse: Callable[[bytes, float], R]
    ) -> R:
        headers = {"Content-Type": "application/json"}
        key = self.config.api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        data = json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.config.timeout_s):
                async with session.post(url, data=data, headers=headers, proxy=self._proxy) as reply:
                    content = await reply.read()
                    status = reply.status
                    retry_after = reply.headers.get("Retry-After")
        except aiohttp.ConnectionTimeoutError:
            raise _Attempt("connection", f"connect timeout to {_safe_url(self.config.base_url)}", retry=True, connection=True) from None
        except TimeoutError:
            raise _Attempt("timeout", f"no answer within {self.config.timeout_s:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            raise _Attempt(
                "connection", f"cannot connect to {_safe_url(self.config.base_url)} ({_reason(exc)})", retry=True, connection=True
            ) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
            # the server closed the connection mid-exchange (dropped, or a body shorter than promised)
            raise _Attempt("connection", f"connection dropped ({_reason(exc)})", retry=True) from None
        except aiohttp.ClientError as exc:
            raise _Attempt("connection", f"HTTP transport error ({type(exc).__name__})", retry=True) from None
        latency = time.perf_counter() - started
        if status != 200:
            text = content.decode("utf-8", "replace")
            excerpt = " ".join(text[:_BODY_EXCERPT].split())
            detail = f"HTTP {status}" + (f": {excerpt}" if excerpt else "")
            if status == 429:
                raise _Attempt("rate_limited", detail, retry=True, delay=parse_retry_after(retry_after), status=status)
            if status >= 500 or status == 408:
                raise _Attempt(
                    "http", detail, retry=True, delay=parse_retry_after(retry_after), status=status, body=text[:2000]
                )
            raise _Attempt("http", detail, status=status, body=text[:2000])
        return parse(content, latency)

    def _parse(self, content: bytes, latency: float) -> ChatResponse:
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            raise _Attempt("malformed", f"response is not JSON ({len(content)} bytes)") from None
        try:
            choice = data["choices"][0]
            message = choice.get("message") or {}
            text = message.get("content")
            if text is None:
                text = ""
            if not isinstance(text, str):
                raise TypeError("content is not a string")
            usage = data.get("usage") or {}
            return ChatResponse(
                text=text,
                model=str(data.get("model") or self.model),
                finish_reason=choice.get("finish_reason"),
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                logprobs=_logprobs(choice.get("logprobs")),
                latency_s=latency,
            )
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise _Attempt("malformed", f"response is not a chat completion ({type(exc).__name__}: {exc})"[:300]) from None

    # -- log-probabilities of given text: /completions with echo ----------------------------
    def logprobs(self, requests: Sequence[LogprobRequest]) -> list[LogprobResponse | BackendFailure]:
        """Per-token log-probabilities of each request's ``target`` after its context, from the
        server's legacy ``/completions`` endpoint with ``echo`` (one :class:`LogprobResponse` or
        :class:`BackendFailure` per request, in order; not cached).

        The context is rendered as text here, in a plain layout: ``"{role}: {content}\n"`` per message,
        then ``"assistant:"`` and the request's ``prefix`` (no messages: the prefix alone). The server
        never sees a chat template; to score under the model's own template, render it yourself and
        send it as ``prefix`` with no messages (the ``likelihood`` component's ``prompt_layout =
        "chatml"`` does this for ChatML models). The request is ``prompt = context + target``,
        ``echo = true``, ``logprobs = 1``, ``max_tokens = 1`` (llama-cpp-python's server reads
        ``max_tokens = 0`` as "no limit"; the one generated token is dropped), ``temperature = 0``.
        The target's tokens are the trailing echoed prompt tokens that overlap the last
        ``len(target)`` characters: the server tokenizes context and target together, so a token that
        straddles the boundary counts as the target's (the ``transformers`` backend tokenizes them
        apart). ``truncation`` is applied to characters when ``max_context_tokens`` is set (4
        characters a token, as for chat requests). Retries, limits, the circuit breaker and stats are
        those of chat requests.

        A server that refuses the request or does not echo the prompt's log-probs (a chat-only
        server, or one that ignores ``echo``) fails each request with a message saying so, logged
        once. Echoed tokens whose text does not end with the target fail the request too: measured
        on llama-cpp-python 0.3's server, echoed log-probs are shifted by one token unless the prompt
        starts with the model's BOS token (SmolLM2's ``<|im_start|>``, so a ChatML prompt is fine and
        the plain layout is not); this check turns that into a clear error rather than a wrong score.
        """
        requests = list(requests)
        if not requests:
            return []
        return self.account(self._run(self._logprob_batch(requests), "logprobs"))

    async def _logprob_batch(self, requests: list[LogprobRequest]) -> list[LogprobResponse | BackendFailure]:
        return list(await asyncio.gather(*(self._logprob_one(r) for r in requests)))

    async def _logprob_one(self, request: LogprobRequest) -> LogprobResponse | BackendFailure:
        try:
            return await self._logprob_unsafe(request)
        except Exception as exc:  # a bug or an unforeseen error is this request's failure, not the batch's
            self._breaker.record_success()
            log.debug("backend %s: unexpected %s", self.name, type(exc).__name__, exc_info=True)
            return BackendFailure("other", self._scrub(f"{type(exc).__name__}: {exc}"))

    async def _logprob_unsafe(self, request: LogprobRequest) -> LogprobResponse | BackendFailure:
        context, target, truncated = self._logprob_text(request)
        if not target:
            return LogprobResponse((), (), self.model, truncated_input=truncated)
        if not context:
            return BackendFailure("other", "the context is empty: no token to predict the target's first token from")
        body = {
            "model": self.model,
            "prompt": context + target,
            "echo": True,
            "logprobs": 1,
            "max_tokens": 1,
            "temperature": 0.0,
        }
        refusal: list[int | None] = []

        def refused(failure: _Attempt, _body: Mapping[str, Any]) -> bool:
            if failure.status in _NO_ECHO_STATUSES:
                refusal.append(failure.status)
            return False

        def parse(content: bytes, latency: float) -> LogprobResponse:
            return self._parse_echo(content, latency, target, truncated)

        result = await self._exchange(
            self._completions_url, lambda: body, estimate_tokens(len(context) + len(target)) + 1, parse, refused=refused
        )
        if isinstance(result, BackendFailure) and (refusal or result.message.startswith(_NO_ECHO)):
            if refusal:
                result = replace(
                    result, message=f"{_NO_ECHO} (the server refused {self._completions_url.rsplit('/', 2)[-1]}"
                    f" with echo and logprobs: {result.message})",
                )
            if "echo" not in self.unsupported:
                self.unsupported.add("echo")
                log.warning("backend %s: %s", self.name, result.message)
        return result

    def _logprob_text(self, request: LogprobRequest) -> tuple[str, str, bool]:
        """(context, target, truncated) as text, cut to ``max_context_tokens`` (estimated) if set."""
        context = clean_surrogates(request.prefix)
        if request.messages:
            turns = "".join(
                f"{clean_surrogates(str(m.get('role', 'user')))}: {clean_surrogates(str(m.get('content', '')))}\n"
                for m in request.messages
            )
            context = turns + "assistant:" + context
        target = clean_surrogates(request.target)
        limit = self.config.max_context_tokens
        if limit is None or len(context) + len(target) <= limit * 4:
            return context, target, False
        room = limit * 4
        if request.truncation == "completion_right":
            context = context[len(context) - min(len(context), room - 4) :]
            target = target[: room - len(context)]
        else:
            target = target[: room - 4]
            context = context[len(context) - (room - len(target)) :]
        return context, target, True

    def _parse_echo(self, content: bytes, latency: float, target: str, truncated: bool) -> LogprobResponse:
        try:
            data = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            raise _Attempt("malformed", f"response is not JSON ({len(content)} bytes)") from None
        try:
            choice = data["choices"][0]
            logprobs = choice.get("logprobs")
            if not isinstance(logprobs, Mapping) or not logprobs.get("tokens"):
                raise _Attempt("malformed", f"{_NO_ECHO} (the response has no token log-probs)")
            tokens = [str(t) for t in logprobs["tokens"]]
            offsets = [int(o) for o in logprobs["text_offset"]]
            values = list(logprobs["token_logprobs"])
            if not (len(tokens) == len(offsets) == len(values)):
                raise ValueError("tokens, text_offset and token_logprobs differ in length")
            usage = data.get("usage") or {}
            generated = int(usage.get("completion_tokens") or 0)
            echoed = len(tokens) - generated
            if echoed <= 0 or offsets[0] != 0:
                raise _Attempt("malformed", f"{_NO_ECHO} (the log-probs cover only the generated text)")
            end = offsets[echoed] if echoed < len(offsets) else offsets[-1] + len(tokens[-1])
            start = end - len(target)
            first = echoed
            while first > 0 and (offsets[first - 1] >= start or offsets[first - 1] + len(tokens[first - 1]) > start):
                first -= 1
            picked = values[first:echoed]
            if first == 0 or any(v is None for v in picked):
                raise _Attempt("malformed", "the server gave no log-prob for the target's first token (no context before it)")
            if not _ascii("".join(tokens[first:echoed])).endswith(_ascii(target)):
                raise _Attempt("malformed", _MISALIGNED)
            return LogprobResponse(
                logprobs=tuple(float(v) for v in picked),
                tokens=tuple(tokens[first:echoed]),
                model=str(data.get("model") or self.model),
                prompt_tokens=first,
                completion_tokens=echoed - first,
                truncated_input=truncated,
                latency_s=latency,
            )
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as exc:
            raise _Attempt("malformed", f"response is not an echoed completion ({type(exc).__name__}: {exc})"[:300]) from None

    # -- context fitting --------------------------------------------------------------------
    def _fit_context(self, request: ChatRequest) -> tuple[list[dict[str, str]], bool]:
        """The messages, with the middle of the last user message cut when the prompt (estimated
        at 4 characters a token) would not leave ``max_tokens`` of room in ``max_context_tokens``."""
        messages = [dict(m) for m in request.messages]
        limit = self.config.max_context_tokens
        if limit is None:
            return messages, False
        budget = max(limit - request.max_tokens, limit // 2)
        total = sum(len(m.get("content", "")) for m in messages)
        excess = total - budget * 4
        if excess <= 0:
            return messages, False
        users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
        if not users:
            return messages, False
        content = messages[users[-1]].get("content", "")
        cut = min(len(content), excess + len(_CUT_MARK) + 8)
        keep = len(content) - cut
        head, tail = content[: keep // 2], content[len(content) - (keep - keep // 2) :] if keep else ""
        messages[users[-1]]["content"] = head + _CUT_MARK.format(n=cut) + tail
        return messages, True

    # -- secrets ------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        key = self.config.api_key()
        if key and len(key) >= 4:
            text = text.replace(key, "***")
        return text


class _Runtime:
    """A backend's private event loop (run by a daemon thread), its HTTP session and the semaphore
    of requests in flight, owned by the process that started them. Holds no reference to the
    backend, so a finaliser on the backend can shut it down."""

    def __init__(self, name: str, config: BackendConfig) -> None:
        self.pid = os.getpid()
        self.config = config
        self.loop = _new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"medreward-{name}", daemon=True)
        self.thread.start()
        self.session: aiohttp.ClientSession | None = None
        self.slots: asyncio.Semaphore | None = None

    def transport(self) -> tuple[aiohttp.ClientSession, asyncio.Semaphore]:
        """The session and the semaphore, created on first use on the loop thread (where aiohttp
        needs them). A request holds a slot while it is sent, so the pool never queues."""
        if self.session is None or self.slots is None:
            n = self.config.max_concurrency
            self.session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=n, limit_per_host=n),
                # each request's total time is bounded in _post; connecting has its own bound, so a
                # server that never accepts is a (retried) connection failure rather than a timeout
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=self.config.timeout_s),
                trust_env=False,  # the environment's proxy is read once per backend (_env_proxy)
            )
            self.slots = asyncio.Semaphore(n)
        return self.session, self.slots

    def shutdown(self) -> None:
        """Close the session and stop the loop; in a forked child, leave the parent's untouched."""
        if self.pid != os.getpid():
            _INHERITED.append(self)
            return
        loop = self.loop
        if loop.is_closed():
            return
        if threading.current_thread() is self.thread:  # collected on the loop's own thread: finish there
            loop.create_task(self._close_and_stop())
            return
        if loop.is_running():
            if self.session is not None:
                try:
                    asyncio.run_coroutine_threadsafe(self.session.close(), loop).result(timeout=10)
                except Exception:  # noqa: BLE001 - a session that cannot close must not stop the shutdown
                    log.debug("closing the HTTP session failed", exc_info=True)
            loop.call_soon_threadsafe(loop.stop)
        self.thread.join(timeout=10)
        if not self.thread.is_alive():
            loop.close()

    async def _close_and_stop(self) -> None:
        try:
            if self.session is not None:
                await self.session.close()
        finally:
            asyncio.get_running_loop().stop()


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (its sockets and callbacks cost a fraction of asyncio's,
    which at high concurrency is most of the client's CPU), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def _env_proxy(url: str | None) -> str | None:
    """The proxy that ``HTTP_PROXY`` / ``HTTPS_PROXY`` name for ``url``, unless ``NO_PROXY`` excludes
    its host (the environment convention httpx and requests follow), read once per backend."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.hostname and urllib.request.proxy_bypass(parts.hostname):
        return None
    return urllib.request.getproxies().get(parts.scheme) or None


def _ascii(text: str) -> str:
    """``text`` without its non-ASCII characters: servers decode a token that holds part of a
    multi-byte character as "" or U+FFFD, so only ASCII is compared when checking the alignment."""
    return text.encode("ascii", "ignore").decode("ascii")


def _schema_name(template: str) -> str:
    name = "".join(c if c.isalnum() or c in "_-" else "_" for c in template.split("/")[0])[:64]
    return name or "response"


def _safe_url(url: str | None) -> str:
    """``url`` without user:password (a URL may carry credentials)."""
    if not url:
        return ""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    cause: BaseException | None = exc
    for _ in range(8):  # aiohttp wraps the OS error ("Cannot connect to host ... [Connect call failed ...]")
        if cause is None:
            break
        if isinstance(cause, ConnectionRefusedError) or "refused" in str(cause).lower():
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    return (text or type(exc).__name__)[:120]


def _logprobs(data: Any) -> tuple[tuple[TokenLogprob, ...], ...] | None:
    """Top log-probs per position from either the chat format (``content: [{token, logprob,
    top_logprobs: [...]}]``) or the legacy completions format (``top_logprobs: [{token: lp}]``)."""
    if not isinstance(data, Mapping):
        return None
    out: list[tuple[TokenLogprob, ...]] = []
    content = data.get("content")
    if isinstance(content, list):
        for pos in content[:MAX_LOGPROB_POSITIONS]:
            tops = pos.get("top_logprobs") or [pos]
            out.append(tuple(TokenLogprob(str(t["token"]), float(t["logprob"])) for t in tops if "token" in t and "logprob" in t))
        return tuple(out)
    legacy = data.get("top_logprobs")
    if isinstance(legacy, list):
        for pos in legacy[:MAX_LOGPROB_POSITIONS]:
            if isinstance(pos, Mapping):
                out.append(tuple(TokenLogprob(str(t), float(lp)) for t, lp in pos.items()))
        return tuple(out)
    return None
