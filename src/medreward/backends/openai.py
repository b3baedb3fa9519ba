"""The ``openai`` backend: any OpenAI-compatible chat-completions server (vLLM, SGLang, llama.cpp
server, TGI, Ollama, hosted APIs), called with ``httpx`` (the ``judge`` extra).

One backend owns a private event loop in a daemon thread, with one ``httpx.AsyncClient``, one
concurrency semaphore, one rate limiter and one circuit breaker. :meth:`OpenAIBackend.complete` is
synchronous and may be called from any thread — also one whose event loop is running (TRL's async
reward path): the batch runs on the private loop and the caller waits for it. Several threads
calling at once share the same limits.

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
them), the request is sent again: with the ``{"type": "json_object", "schema": …}`` form that
llama.cpp's server takes in place of OpenAI's ``json_schema`` form, else without the feature. When
that succeeds the backend remembers it (:attr:`OpenAIBackend.unsupported`, logged once), so servers
that lack these features still work.

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

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
#: connections per httpx client (see OpenAIBackend._client_slots)
_POOL_SHARD = 8


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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._clients: list[httpx.AsyncClient] = []
        self._slots: asyncio.Queue[int] | None = None
        self._pid = os.getpid()
        self._breaker = CircuitBreaker(config.circuit_failures, config.circuit_reset_s)
        self._rpm = TokenBucket.per_minute(config.requests_per_minute) if config.requests_per_minute else None
        self._tpm = TokenBucket.per_minute(config.tokens_per_minute) if config.tokens_per_minute else None

    # -- identity ---------------------------------------------------------------------------
    def __repr__(self) -> str:
        return f"OpenAIBackend(name={self.name!r}, model={self.model!r}, base_url={_safe_url(self.config.base_url)!r})"

    # -- public API -------------------------------------------------------------------------
    def _call(self, requests: list[ChatRequest]) -> list[ChatResponse | BackendFailure]:
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            raise RuntimeError("OpenAIBackend.complete called from its own event loop thread")
        return asyncio.run_coroutine_threadsafe(self._run_batch(requests), loop).result()

    def close(self) -> None:
        """Close the HTTP client and stop the private event loop (the backend restarts them if used again)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or self._pid != os.getpid():
            return
        if self._clients and loop.is_running():
            for client in self._clients:
                asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = None
        self._clients = []
        self._slots = None

    # -- the private event loop -------------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._pid != os.getpid():  # forked: the parent's loop thread does not exist here
                self._loop = self._thread = None
                self._clients = []
                self._slots = None
                self._pid = os.getpid()
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name=f"medreward-{self.name}", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
                self._clients = []
                self._slots = None
            return self._loop

    def _client_slots(self) -> tuple[list[httpx.AsyncClient], asyncio.Queue[int]]:
        """The HTTP clients and a queue of free slots (one per allowed request in flight, each naming
        the client to use). Created on the loop thread, where they are used.

        The connections are split over clients of at most ``_POOL_SHARD`` each: httpcore's pool scans
        all its connections for every request it assigns, which at 64 connections costs ~9 ms of CPU
        a request (measured); shards keep that scan short. A slot is taken before a request is
        sent, so at most ``max_concurrency`` requests are in flight and no pool ever queues."""
        if self._slots is None:
            n = self.config.max_concurrency
            sizes = [min(_POOL_SHARD, n - start) for start in range(0, n, _POOL_SHARD)]
            self._clients = [
                httpx.AsyncClient(
                    timeout=httpx.Timeout(self.config.timeout_s),
                    limits=httpx.Limits(max_connections=size, max_keepalive_connections=size),
                )
                for size in sizes
            ]
            slots: asyncio.Queue[int] = asyncio.Queue()
            for _ in range(max(sizes)):
                for shard, size in enumerate(sizes):
                    if size > 0:
                        slots.put_nowait(shard)
                sizes = [size - 1 for size in sizes]
            self._slots = slots
        return self._clients, self._slots

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
        clients, slots = self._client_slots()
        retries = 0
        while True:
            if not self._breaker.allow():
                return BackendFailure(
                    "circuit_open",
                    f"circuit open: {self.config.circuit_failures} consecutive connection failures to "
                    f"{_safe_url(self.config.base_url)}; next trial after {self.config.circuit_reset_s:g} s",
                    retries,
                )
            body = make_body()
            try:
                shard = await slots.get()
                try:
                    await self._wait_for_rate(estimate)
                    result = await self._post(clients[shard], url, body, parse)
                finally:
                    slots.put_nowait(shard)
            except _Attempt as failure:
                if failure.connection:
                    self._breaker.record_failure()
                else:
                    self._breaker.record_success()
                if refused is not None and refused(failure, body):
                    continue  # not a retry of the same request: a different one
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

    async def _post(self, client: httpx.AsyncClient, url: str, body: dict[str, Any], parse: Callable[[bytes, float], R]) -> R:
        headers = {"Content-Type": "application/json"}
        key = self.config.api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        started = time.perf_counter()
        try:
            reply = await asyncio.wait_for(
                client.post(url, content=json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass"), headers=headers),
                timeout=self.config.timeout_s,
            )
        except httpx.ConnectTimeout:
            raise _Attempt("connection", f"connect timeout to {_safe_url(self.config.base_url)}", retry=True, connection=True) from None
        except (asyncio.TimeoutError, httpx.TimeoutException):
            raise _Attempt("timeout", f"no answer within {self.config.timeout_s:g} s") from None
        except httpx.ConnectError as exc:
            raise _Attempt(
                "connection", f"cannot connect to {_safe_url(self.config.base_url)} ({_reason(exc)})", retry=True, connection=True
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            # the server closed the connection mid-exchange (dropped, or a truncated body)
            raise _Attempt("connection", f"connection dropped ({_reason(exc)})", retry=True) from None
        except httpx.HTTPError as exc:
            raise _Attempt("connection", f"HTTP transport error ({type(exc).__name__})", retry=True) from None
        latency = time.perf_counter() - started
        status = reply.status_code
        if status != 200:
            excerpt = " ".join(reply.text[:_BODY_EXCERPT].split())
            detail = f"HTTP {status}" + (f": {excerpt}" if excerpt else "")
            if status == 429:
                raise _Attempt("rate_limited", detail, retry=True, delay=parse_retry_after(reply.headers.get("retry-after")), status=status)
            if status >= 500 or status == 408:
                raise _Attempt(
                    "http", detail, retry=True, delay=parse_retry_after(reply.headers.get("retry-after")),
                    status=status, body=reply.text[:2000],
                )
            raise _Attempt("http", detail, status=status, body=reply.text[:2000])
        return parse(reply.content, latency)

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
        loop = self._ensure_loop()
        if threading.current_thread() is self._thread:
            raise RuntimeError("OpenAIBackend.logprobs called from its own event loop thread")
        results = asyncio.run_coroutine_threadsafe(self._logprob_batch(requests), loop).result()
        return self.account(results)

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
    for _ in range(8):  # httpx wraps the OS error ("All connection attempts failed")
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
