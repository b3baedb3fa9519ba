"""The backend contract: the only code that talks to a model.

Rewards build :class:`ChatRequest` objects for a whole batch and hand them to a :class:`Backend`
in one call; the backend sends them concurrently within its limits (or packs them into batches
for a local model), consults the persistent cache, and returns one :class:`ChatResponse` or one
:class:`BackendFailure` per request, in order. A failed call is never a score: the reward turns a
failure into that sample's ``error``/``timeout`` status. Backends know nothing of rewards, specs
or trainers.

The contract is in ``docs/contracts.md#model-backed-rewards``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

__all__ = [
    "Backend",
    "BackendFailure",
    "BackendStats",
    "ChatRequest",
    "ChatResponse",
    "Message",
    "ResponseCache",
    "TokenLogprob",
    "cacheable",
]

Message = Mapping[str, str]  # {"role": "system" | "user" | "assistant", "content": "..."}


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make.

    ``template`` names the prompt template and its version (e.g. ``"rubric.batched/1"``): it is part
    of the cache key, so changing a template never serves verdicts made with the old one.
    ``response_schema`` is a JSON schema the server should constrain its output to, where it can
    (``response_format = {"type": "json_schema", ...}``); ``top_logprobs`` asks for the log-probs of
    the most likely first tokens (servers that cannot give them answer without, and
    :attr:`ChatResponse.logprobs` is ``None``).
    """

    messages: tuple[Message, ...]
    template: str = ""
    max_tokens: int = 512
    temperature: float = 0.0
    seed: int | None = 0
    response_schema: Mapping[str, Any] | None = None
    top_logprobs: int | None = None
    stop: tuple[str, ...] = ()
    #: the caller reads only the start of the answer (a first-token log-prob, a leading YES/NO), so an
    #: answer cut at ``max_tokens`` is complete for it and may be cached
    reads_prefix: bool = False

    def canonical(self) -> str:
        """The request as canonical JSON (sorted keys, no whitespace): what the cache key hashes."""
        data = asdict(self)
        data["messages"] = [dict(m) for m in self.messages]
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    def cache_key(self, backend_kind: str, model: str) -> str:
        """sha256 of backend kind + model + canonical request (docs/contracts.md#cache)."""
        text = json.dumps([backend_kind, model, self.canonical()], separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class TokenLogprob:
    """A candidate token at one position and its log-probability."""

    token: str
    logprob: float


@dataclass(frozen=True)
class ChatResponse:
    """What the model answered.

    ``logprobs``: for each generated position (at most the first few are kept), the top
    candidates with their log-probabilities, when requested and offered. ``cached``: served from
    the persistent cache (no call made). ``truncated_input``: the prompt was cut to fit the
    model's context (the reward records this in ``info``).
    """

    text: str
    model: str
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: tuple[tuple[TokenLogprob, ...], ...] | None = None
    cached: bool = False
    latency_s: float = 0.0
    truncated_input: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ChatResponse:
        data = dict(data)
        if data.get("logprobs") is not None:
            data["logprobs"] = tuple(tuple(TokenLogprob(**t) for t in pos) for pos in data["logprobs"])
        return cls(**data)


def cacheable(request: ChatRequest, result: ChatResponse | BackendFailure) -> bool:
    """Whether a backend may store ``result``: never a failure, and never an answer cut at
    ``max_tokens`` (a partial verdict) unless the request reads only its start."""
    return isinstance(result, ChatResponse) and (result.finish_reason != "length" or request.reads_prefix)


@dataclass(frozen=True)
class BackendFailure:
    """A request that got no usable answer. ``kind`` decides the sample's status:
    ``"timeout"`` → ``timeout``; every other kind → ``error``. ``message`` is short, names what
    happened (``"HTTP 429 after 3 retries"``, ``"connection refused"``, ``"circuit open"``) and never
    holds a secret."""

    kind: Literal["timeout", "http", "connection", "rate_limited", "circuit_open", "malformed", "other"]
    message: str
    retries: int = 0

    @property
    def status(self) -> str:
        return "timeout" if self.kind == "timeout" else "error"


#: latencies a merged :class:`BackendStats` keeps (the most recent): percentiles over a long run are
#: those of its last calls
MAX_LATENCIES = 100_000


@dataclass
class BackendStats:
    """Accounting of one backend over a run (merged across threads and worker processes)."""

    calls: int = 0  # requests sent to the model (retries not counted)
    cache_hits: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, one per call that answered
    #: local models' token-budget batches (backends/batching.py): tokens of the rows, and rows x longest row
    real_tokens: int = 0
    padded_tokens: int = 0

    def record(self, response: Any) -> None:
        """Count one result: a :class:`ChatResponse`, a scoring response (:mod:`~medreward.backends.scoring`:
        same ``cached``/``prompt_tokens``/``completion_tokens``/``latency_s`` fields) or a :class:`BackendFailure`."""
        if isinstance(response, BackendFailure):
            self.calls += 1
            self.failures += 1
            self.retries += response.retries
        elif response.cached:
            self.cache_hits += 1
        else:
            self.calls += 1
            self.prompt_tokens += response.prompt_tokens
            self.completion_tokens += response.completion_tokens
            self.latencies.append(response.latency_s)

    def merge(self, other: BackendStats) -> None:
        self.calls += other.calls
        self.cache_hits += other.cache_hits
        self.retries += other.retries
        self.failures += other.failures
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens
        self.latencies.extend(other.latencies)
        if len(self.latencies) > MAX_LATENCIES:  # a trainer's run-long totals must not grow without bound
            del self.latencies[:-MAX_LATENCIES]
        self.real_tokens += other.real_tokens
        self.padded_tokens += other.padded_tokens

    def percentile(self, q: float) -> float | None:
        """Latency percentile ``q`` in [0, 100] (nearest rank), or None before any call; a merged
        total keeps the last :data:`MAX_LATENCIES` calls."""
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        rank = max(1, math.ceil(q / 100 * len(ordered)))
        return ordered[rank - 1]

    def summary(self) -> dict[str, Any]:
        """What ``--stats-json`` writes for this backend."""
        return {
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "failures": self.failures,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_p50_s": self.percentile(50),
            "latency_p95_s": self.percentile(95),
            # share of a local model's computed tokens that were padding (None: no local batches)
            "padding_fraction": 1 - self.real_tokens / self.padded_tokens if self.padded_tokens else None,
        }


@runtime_checkable
class Backend(Protocol):
    """A model endpoint. ``complete`` is synchronous and batch-first: it may be called from any
    thread (also one with a running event loop) and returns one result per request, in order.
    Implementations are picklable by their configuration (worker processes rebuild them)."""

    name: str
    kind: str
    model: str
    stats: BackendStats

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResponse | BackendFailure]: ...

    def forget(self, requests: Sequence[ChatRequest]) -> None:
        """Drop these requests' answers from the cache: a reward calls it for an answer it could not
        use (a malformed or incomplete verdict), so that no partial verdict is served again."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ResponseCache(Protocol):
    """Persistent responses by cache key (:meth:`ChatRequest.cache_key`). Only complete, successful
    responses are stored; writes are transactional, so a killed process leaves a readable cache."""

    def get(self, key: str) -> ChatResponse | None: ...

    def put(self, key: str, response: ChatResponse, *, kind: str = "") -> None: ...

    def delete(self, key: str) -> None: ...

    def close(self) -> None: ...
