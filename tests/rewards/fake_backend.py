"""An in-process :class:`~medreward.backends.Backend` for unit tests: answers each request from a
script (a list of answers, or a function of the request) and records every request and call."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Union

from medreward.backends.base import BackendFailure, BackendStats, ChatRequest, ChatResponse

Answer = Union[ChatResponse, BackendFailure, str]


class FakeBackend:
    """``answers`` is either a callable ``request -> answer`` or a list consumed in request order
    (across calls). An answer given as a string becomes a ChatResponse with that text."""

    kind = "fake"

    def __init__(self, answers: Sequence[Answer] | Callable[[ChatRequest], Answer], *, name: str = "judge",
                 model: str = "fake-judge-1") -> None:  # fmt: skip
        self.name = name
        self.model = model
        self.stats = BackendStats()
        self._answers = answers if callable(answers) else list(answers)
        self.requests: list[ChatRequest] = []
        self.calls: list[list[ChatRequest]] = []  # one list per complete() call
        self.forgotten: list[ChatRequest] = []  # requests whose answers the caller asked to drop

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResponse | BackendFailure]:
        self.calls.append(list(requests))
        out = []
        for request in requests:
            self.requests.append(request)
            if callable(self._answers):
                answer = self._answers(request)
            else:
                if not self._answers:
                    raise AssertionError("FakeBackend ran out of scripted answers")
                answer = self._answers.pop(0)
            if isinstance(answer, str):
                answer = ChatResponse(text=answer, model=self.model, prompt_tokens=10, completion_tokens=5)
            self.stats.record(answer)
            out.append(answer)
        return out

    def forget(self, requests: Sequence[ChatRequest]) -> None:
        self.forgotten.extend(requests)

    def close(self) -> None:
        pass


class FakeScoringBackend(FakeBackend):
    """A :class:`FakeBackend` that also scores conversations like a reward model
    (:class:`~medreward.backends.scoring.ScoringBackend`): ``scorer(request)`` gives the head's
    outputs (a tuple of floats) or a :class:`BackendFailure`; the default is a deterministic function
    of the text (its length and checksum). ``score_calls`` records each ``score()`` call's requests."""

    def __init__(self, answers=(), *, scorer=None, name: str = "rm", model: str = "fake-rm-1", outputs: int = 1) -> None:
        super().__init__(answers, name=name, model=model)
        self._scorer = scorer
        self.outputs = outputs
        self.score_calls: list[list] = []

    def _default(self, request) -> tuple[float, ...]:
        text = "".join(str(m.get("content", "")) for m in request.messages) + "\x00" + request.completion
        checksum = sum(ord(c) for c in text) % 997
        return tuple(len(text) / 100.0 - checksum / 997.0 * (k + 1) for k in range(self.outputs))

    def score(self, requests):
        from medreward.backends.scoring import ScoreResponse

        self.score_calls.append(list(requests))
        out = []
        for request in requests:
            answer = (self._scorer or self._default)(request)
            if not isinstance(answer, BackendFailure):
                answer = ScoreResponse(values=tuple(answer), model=self.model, prompt_tokens=len(request.completion) // 4 + 1)
            self.stats.record(answer)
            out.append(answer)
        return out


class FakeLogprobBackend(FakeScoringBackend):
    """A :class:`FakeScoringBackend` that also gives target log-probabilities
    (:class:`~medreward.backends.scoring.LogprobBackend`): ``scorer(request)`` gives the target's
    per-token log-probs (a tuple of floats) or a :class:`BackendFailure`; the default gives one value
    per character of the target, a deterministic function of the whole text in ``(-5, -0.01]``.
    ``logprob_calls`` records each ``logprobs()`` call's requests."""

    def __init__(self, answers=(), *, logprobs=None, name: str = "lm", model: str = "fake-lm-1") -> None:
        super().__init__(answers, name=name, model=model)
        self._logprobs = logprobs
        self.logprob_calls: list[list] = []

    @staticmethod
    def _default_logprobs(request) -> tuple[float, ...]:
        context = "".join(str(m.get("content", "")) for m in request.messages) + request.prefix
        base = sum(ord(c) for c in context) % 89
        return tuple(-0.01 - ((base + 7 * i + ord(c)) % 500) / 100.0 for i, c in enumerate(request.target))

    def logprobs(self, requests):
        from medreward.backends.scoring import LogprobResponse

        self.logprob_calls.append(list(requests))
        out = []
        for request in requests:
            answer = (self._logprobs or self._default_logprobs)(request)
            if not isinstance(answer, BackendFailure):
                answer = LogprobResponse(
                    logprobs=tuple(answer), tokens=tuple(request.target)[: len(answer)], model=self.model,
                    prompt_tokens=len(request.prefix) // 4 + 1, completion_tokens=len(answer),
                )  # fmt: skip
            self.stats.record(answer)
            out.append(answer)
        return out


class FakeEmbedder:
    """An in-process embedding backend (``embed``): a text's vector is its unit-normalised counts of
    characters bucketed by code point mod ``dims`` (deterministic, any text in, no model). ``fail``
    names texts whose embedding fails; every call's texts are recorded in ``calls``."""

    kind = "fake-embeddings"

    def __init__(self, *, name: str = "embeddings", model: str = "fake-embedder-1", dims: int = 8,
                 fail: Sequence[str] = ()) -> None:  # fmt: skip
        from medreward.backends.scoring import EmbedResponse

        self._response = EmbedResponse
        self.name = name
        self.model = model
        self.dims = dims
        self.fail = set(fail)
        self.stats = BackendStats()
        self.calls: list[list[str]] = []

    def vector(self, text: str) -> tuple[float, ...]:
        counts = [0.0] * self.dims
        for ch in text:
            counts[ord(ch) % self.dims] += 1.0
        norm = sum(c * c for c in counts) ** 0.5
        return tuple(c / norm for c in counts) if norm else (1.0,) + (0.0,) * (self.dims - 1)

    def embed(self, requests):
        self.calls.append([r.text for r in requests])
        out = []
        for r in requests:
            if r.text in self.fail:
                answer = BackendFailure("other", f"cannot embed {r.text[:20]!r}")
            else:
                answer = self._response(self.vector(r.text), self.model, prompt_tokens=len(r.text))
            self.stats.record(answer)
            out.append(answer)
        return out

    def close(self) -> None:
        pass


class FakeModelBackend(FakeLogprobBackend):
    """The richest fake above that also embeds (as :class:`FakeEmbedder` does), so one fake serves
    every model-backed kind (the fuzz test binds it to each)."""

    def __init__(self, answers=(), *, name: str = "model", model: str = "fake-model-1") -> None:
        super().__init__(answers, name=name, model=model)
        self._embedder = FakeEmbedder(name=name, model=model)
        self._embedder.stats = self.stats

    def embed(self, requests):
        return self._embedder.embed(requests)
