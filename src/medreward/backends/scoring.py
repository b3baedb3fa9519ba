"""Requests and responses of the local scoring calls: reward-model scores, log-probabilities of a
given text, and embeddings (docs/contracts.md#model-backed-rewards).

A chat judge *generates* (:class:`~medreward.backends.base.ChatRequest`); these calls only run a
forward pass over text the caller supplies, so they need no sampling parameters. Like every
backend call they are batch-first: a backend takes the requests of a whole batch and returns one
response or one :class:`~medreward.backends.base.BackendFailure` per request, in order. A
response's ``prompt_tokens`` counts the tokens the model read (after truncation), so
:class:`~medreward.backends.base.BackendStats` accounts for them like chat calls.

Truncation (``truncation``): a text longer than the model's context is cut, never refused —
``"prompt_left"`` drops the start of the prompt (the completion, which is what is scored, stays
whole), ``"completion_right"`` drops the end of the completion (the prompt stays whole). The
response's ``truncated_input`` records it, and the reward copies it into ``info``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

from .base import BackendFailure, BackendStats, Message

__all__ = [
    "EmbedRequest",
    "EmbedResponse",
    "EmbeddingBackend",
    "LogprobBackend",
    "LogprobRequest",
    "LogprobResponse",
    "ScoreRequest",
    "ScoreResponse",
    "ScoringBackend",
    "Truncation",
]

Truncation = Literal["prompt_left", "completion_right"]


@dataclass(frozen=True)
class ScoreRequest:
    """Score one conversation with a sequence-classification (reward) model.

    ``messages`` are the prompt's turns; ``completion`` is the assistant answer being scored. The
    backend lays them out with the model's own chat template (as the reward model was trained).
    """

    messages: tuple[Message, ...]
    completion: str
    truncation: Truncation = "prompt_left"


@dataclass(frozen=True)
class ScoreResponse:
    """The head's raw outputs for one conversation: one value for a Bradley–Terry head, one per
    attribute for a regression head, one logit per level for an ordinal head."""

    values: tuple[float, ...]
    model: str
    prompt_tokens: int = 0
    truncated_input: bool = False
    latency_s: float = 0.0
    cached: bool = False
    completion_tokens: int = 0


@dataclass(frozen=True)
class LogprobRequest:
    """The log-probability of ``target`` after ``messages`` (chat-templated, generation prompt
    added) followed by ``prefix`` (text the assistant already wrote, e.g. its reasoning).

    Used by likelihood rewards: the probability of the reference answer given the policy's
    reasoning (VeriFree/RLPR), or of a follow-up utterance (FLR).
    """

    messages: tuple[Message, ...]
    target: str
    prefix: str = ""
    truncation: Truncation = "prompt_left"


@dataclass(frozen=True)
class LogprobResponse:
    """Per-token log-probabilities of the request's ``target`` (natural log), with the tokens."""

    logprobs: tuple[float, ...]
    tokens: tuple[str, ...]
    model: str
    prompt_tokens: int = 0
    truncated_input: bool = False
    latency_s: float = 0.0
    cached: bool = False
    completion_tokens: int = 0


@dataclass(frozen=True)
class EmbedRequest:
    """Embed one text."""

    text: str


@dataclass(frozen=True)
class EmbedResponse:
    """A unit-normalised embedding (so the dot product of two is their cosine similarity)."""

    vector: tuple[float, ...]
    model: str
    prompt_tokens: int = 0
    truncated_input: bool = False
    latency_s: float = 0.0
    cached: bool = False
    completion_tokens: int = 0


@runtime_checkable
class ScoringBackend(Protocol):
    """A backend that scores conversations with a reward model."""

    name: str
    kind: str
    model: str
    stats: BackendStats

    def score(self, requests: Sequence[ScoreRequest]) -> list[ScoreResponse | BackendFailure]: ...


@runtime_checkable
class LogprobBackend(Protocol):
    """A backend that gives the log-probabilities of supplied text (teacher forcing)."""

    name: str
    kind: str
    model: str
    stats: BackendStats

    def logprobs(self, requests: Sequence[LogprobRequest]) -> list[LogprobResponse | BackendFailure]: ...


@runtime_checkable
class EmbeddingBackend(Protocol):
    """A backend that embeds texts."""

    name: str
    kind: str
    model: str
    stats: BackendStats

    def embed(self, requests: Sequence[EmbedRequest]) -> list[EmbedResponse | BackendFailure]: ...
